# Exactly once through crashes: a backlog of 300,000 events over 1,000 keys
# is delivered while the relay is killed three times (kill -9, at both
# fault points), the server is stopped with -m immediate once, and the
# broker is stopped for 10 s once, each in the middle of the stream.
# Afterwards a read_committed consumer sees each of the 300,000 events once,
# each key's events in order, and the log holds one "recovered" line for
# each fault between a Kafka commit and its DELETE.
#
# Every fault hits a round exactly there: the relay stalls at the fault
# point (test/relay_faults; skip makes each relay process pass 50 rounds
# of 1,000 rows first), and while it stands there the test strikes.  The
# rows are written in one transaction before any fault, and no publisher is
# connected afterwards, since a kill -9 restarts every backend.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use InboxOutbox::ExactlyOnce;
use InboxOutbox::Faults;
use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $rows = 300_000;
my $keys = 1000;
my $partitions = 6;
my $skip = 50;
my $t0 = time();

my $kafka = InboxOutbox::Kafka->new(name => 'eos_backlog');
$kafka->create_topic('backlog', $partitions);

my $node = fault_node('eos_backlog', $kafka->bootstrap, conf => $eos_conf . q{
inbox_outbox.batch_size = 1000
});
$node->safe_psql('postgres',
	'CREATE TABLE ledger (event_id ulid PRIMARY KEY, key int, seq int)');

sub pending
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.outbox');
}

# Wait for the stall at $point, and see that it is mid-stream.
sub stalled
{
	my ($point, $offset, $what) = @_;
	my ($end, $hit) = wait_fault($node, 'stall', $point, $offset);
	is($hit, $skip + 1, "$what: the relay stalls at $point after $skip rounds");
	my $left = pending();
	cmp_ok($left, '>', 0, "$what happens mid-stream ($left rows left)");
	return $end;
}

set_fault($node, at => 'eos_before_commit', action => 'stall', skip => $skip);
my $offset = -s $node->logfile;
$node->safe_psql('postgres', qq{
	INSERT INTO ledger
	SELECT outbox_publish('backlog', 'key-' || (i % $keys), i::text), i % $keys, i
	FROM generate_series(1, $rows) i});
note(sprintf('%d rows written in %.0f s', $rows, time() - $t0));

# 1. kill -9 with the round produced and not committed
$offset = stalled('eos_before_commit', $offset, 'kill -9 number 1');
my $pid = kill_stalled($node, at => 'eos_after_commit');
wait_new_relay($node, $pid);

# 2. kill -9 with the round committed in Kafka and not deleted
$offset = stalled('eos_after_commit', $offset, 'kill -9 number 2');
$pid = kill_stalled($node, at => 'eos_before_commit');
wait_new_relay($node, $pid);

# 3. kill -9 before the commit again
$offset = stalled('eos_before_commit', $offset, 'kill -9 number 3');
$pid = kill_stalled($node, at => 'eos_after_commit');
wait_new_relay($node, $pid);

# 4. immediate shutdown with a round committed and not deleted
$offset = stalled('eos_after_commit', $offset, 'immediate shutdown');
set_fault($node, at => 'eos_before_commit', reload => 0);
$node->stop('immediate');
$node->start;

# 5. the broker stops for 10 s under a produced round; the round is let go
# during the outage
$offset = stalled('eos_before_commit', $offset, 'broker stop');
$kafka->stop;
my $down_at = time();
clear_fault($node);
my $held = pending();
sleep(10 - (time() - $down_at)) if time() - $down_at < 10;    # the outage itself
is(pending(), $held, 'no row is deleted while the broker is down');
$kafka->start;

ok(poll_until($node, 'SELECT count(*) FROM inbox_outbox.outbox', '0', 600),
	'the outbox empties');
note(sprintf('drained %.0f s after the start', time() - $t0));

my $recovered = recovered_lines($node);
is(scalar @$recovered, 2, 'one "recovered" line per fault at eos_after_commit');
is(join(',', map { $_->[0] } @$recovered), '1000,1000', 'each recovered one round of 1,000 events');

my (%expected, %order);
foreach my $line (split /\n/,
	$node->safe_psql('postgres', 'SELECT event_id, key, seq FROM ledger ORDER BY seq'))
{
	my ($id, $key, $seq) = split /\|/, $line;
	$expected{$id} = [ "key-$key", $seq ];
	push @{ $order{"key-$key"} }, $id;
}
is(scalar keys %expected, $rows, "the ledger holds $rows events");

my $messages = $kafka->consume_raw('backlog', min => $rows, timeout => 300);
check_exactly_once($messages, \%expected, \%order, $partitions, 'read_committed');
is(scalar @$messages, $rows, "$rows messages, no more");
note(sprintf('done %.0f s after the start', time() - $t0));

$node->stop;
$kafka->stop;
done_testing();
