# Relay slots go to databases that have the extension, and a database left
# without a relay says why.
#
# 64 databases without the extension (as many as there are relay slots)
# used to take every slot, so that a database that then created the
# extension never got a relay.  Now a database without the extension gives
# its slot back once its relay has looked.  With fewer background workers
# than databases with the extension, the one left out is named once in a
# WARNING and its relay_status says "no free worker".
use strict;
use warnings;

use InboxOutbox::MockCluster;
use InboxOutbox::Relay;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mc = InboxOutbox::MockCluster->new(brokers => 1, topics => ['orders:1']);
my $node = relay_node('slots', $mc->bootstrap, no_extension => 1);

# 1. 64 databases without the extension, then one with it.
$node->safe_psql('postgres', "CREATE DATABASE empty_$_") for 1 .. 64;
$node->safe_psql('postgres', 'CREATE DATABASE late');
$node->safe_psql('late', 'CREATE EXTENSION inbox_outbox');
wait_relay_running($node, 'late');
$node->safe_psql('late', q{SELECT outbox_publish('orders', 'k', 'late'::text)});
wait_outbox_empty($node, 'late', 'database created after 64 without the extension');
pass('a database that creates the extension after 64 without it gets a relay');

$node->stop;

# 2. Three databases with the extension, two workers for relays (the
# launcher and PostgreSQL's logical replication launcher take the other
# two): one is left out, and says so.
$node = relay_node(
	'workers',
	$mc->bootstrap,
	no_extension => 1,
	conf => q{
max_worker_processes = 4
});
$node->safe_psql('postgres', 'CREATE DATABASE late');
$node->safe_psql('late', 'CREATE EXTENSION inbox_outbox');
$node->safe_psql('postgres', 'CREATE DATABASE second');
$node->safe_psql('postgres', 'CREATE DATABASE third');
$node->safe_psql('second', 'CREATE EXTENSION inbox_outbox');
$node->safe_psql('third', 'CREATE EXTENSION inbox_outbox');

my (%state, @running, @left_out);
my $deadline = time() + 120;
while (time() < $deadline)
{
	%state = map {
		$_ => $node->safe_psql($_, 'SELECT state FROM inbox_outbox.relay_status')
	} qw(late second third);
	@running = grep { $state{$_} !~ /^(no free worker|no relay slot|stopped)$/ } keys %state;
	@left_out = grep { $state{$_} eq 'no free worker' } keys %state;
	last if @running == 2 && @left_out == 1;
	$node->safe_psql('postgres', 'SELECT pg_sleep(0.2)');
}
ok(@running == 2 && @left_out == 1,
	'two relays run and the third database reports "no free worker"')
  or diag(explain \%state);
my $left_out = @left_out == 1 ? $left_out[0] : undef;

SKIP:
{
	skip 'no database was left out', 2 unless defined $left_out;
	my $log = slurp_file($node->logfile);
	my @warnings = $log =~ /(WARNING:  inbox_outbox launcher could not start a relay for database "\Q$left_out\E")/g;
	cmp_ok(scalar(@warnings), '>=', 1, "the WARNING names database \"$left_out\"");
	is(scalar(@warnings), 1, 'and is logged once, not at every pass');
}

$node->stop;
$mc->stop;
done_testing();
