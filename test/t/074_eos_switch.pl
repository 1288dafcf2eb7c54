# Switching inbox_outbox.delivery back and forth at reload, under load,
# loses nothing, duplicates nothing for a read_committed consumer and keeps
# each key's order: the relay applies the setting between rounds, and each
# round is complete in Kafka before the next begins.
#
# 4 pgbench sessions publish over 100 keys for 20 s while the test flips
# the setting every second, waiting (bounded) for each switch to show in
# relay_status.delivery.  relay_progress exists exactly while the relay is
# in exactly-once mode.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

use InboxOutbox::ExactlyOnce;
use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $partitions = 4;
my $kafka = InboxOutbox::Kafka->new(name => 'eos_switch');
$kafka->create_topic('switch', $partitions);
my $node = relay_node('eos_switch', $kafka->bootstrap, conf => q{
inbox_outbox.batch_size = 200
});
is($node->safe_psql('postgres', 'SELECT delivery FROM inbox_outbox.relay_status'),
	'at_least_once', 'the relay starts in at-least-once mode by default');

$node->safe_psql('postgres', q{
	CREATE TABLE aggregate (key int PRIMARY KEY, version int NOT NULL DEFAULT 0);
	INSERT INTO aggregate SELECT g FROM generate_series(1, 100) g;
	CREATE TABLE ledger (event_id ulid PRIMARY KEY, key int, version int);
});
my $script = "$PostgreSQL::Test::Utils::tmp_check/eos_switch.pgb";
PostgreSQL::Test::Utils::append_to_file($script, q{
\set k random(1, 100)
BEGIN;
UPDATE aggregate SET version = version + 1 WHERE key = :k RETURNING version
\gset
INSERT INTO ledger
SELECT outbox_publish('switch', 'key-' || :k, :version::text), :k, :version;
COMMIT;
});

my ($out, $err) = ('', '');
my $pgbench = IPC::Run::start(
	[
		'pgbench', '-n', '-c', '4', '-j', '2', '-T', '20', '-f', $script,
		'-h', $node->host, '-p', $node->port, 'postgres'
	],
	'>', \$out, '2>', \$err, IPC::Run::timeout(120));

my %switches = (exactly_once => 0, at_least_once => 0);
my $mode = 'at_least_once';
my $deadline = time() + 100;
while (time() < $deadline)
{
	my $started = time();
	$mode = $mode eq 'at_least_once' ? 'exactly_once' : 'at_least_once';
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET inbox_outbox.delivery = '$mode'; SELECT pg_reload_conf();");
	$node->poll_query_until('postgres',
		"SELECT delivery FROM inbox_outbox.relay_status", $mode)
	  or die "the relay did not switch to $mode";
	$switches{$mode}++;
	last if !$pgbench->pumpable && $switches{exactly_once} >= 10 && $switches{at_least_once} >= 10;
	$pgbench->pump_nb if $pgbench->pumpable;
	sleep(1 - (time() - $started)) if time() - $started < 1;
}
ok($pgbench->finish, 'pgbench ran 20 s of transactions') or diag($err);
cmp_ok($switches{exactly_once}, '>=', 10, "switched to exactly_once $switches{exactly_once} times");
cmp_ok($switches{at_least_once}, '>=', 10, "switched to at_least_once $switches{at_least_once} times");

is($node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.relay_progress'),
	$mode eq 'exactly_once' ? 1 : 0, "relay_progress matches the mode in effect ($mode)");
$mode = $mode eq 'at_least_once' ? 'exactly_once' : 'at_least_once';
$node->safe_psql('postgres',
	"ALTER SYSTEM SET inbox_outbox.delivery = '$mode'; SELECT pg_reload_conf();");
$node->poll_query_until('postgres', "SELECT delivery FROM inbox_outbox.relay_status", $mode)
  or die "the relay did not switch to $mode";
is($node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.relay_progress'),
	$mode eq 'exactly_once' ? 1 : 0, "relay_progress matches the mode in effect ($mode)");

wait_outbox_empty($node, 'postgres', 'after the switches');
my (%expected, %order);
foreach my $row (split /\n/,
	$node->safe_psql('postgres', 'SELECT event_id, key, version FROM ledger ORDER BY key, version'))
{
	my ($id, $key, $version) = split /\|/, $row;
	$expected{$id} = [ "key-$key", $version ];
	push @{ $order{"key-$key"} }, $id;
}
my $committed = scalar keys %expected;
cmp_ok($committed, '>', 1000, "pgbench committed $committed events");
my $messages = $kafka->consume_raw('switch', min => $committed, timeout => 120);
check_exactly_once($messages, \%expected, \%order, $partitions, 'read_committed');

# A restart into at-least-once mode: the row exactly-once mode left is
# settled (recovery, then the row goes) and the relay publishes.
if ($mode ne 'exactly_once')
{
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET inbox_outbox.delivery = 'exactly_once'; SELECT pg_reload_conf();");
	$node->poll_query_until('postgres', "SELECT delivery FROM inbox_outbox.relay_status",
		'exactly_once')
	  or die 'the relay did not switch to exactly_once';
}
$node->safe_psql('postgres', "ALTER SYSTEM SET inbox_outbox.delivery = 'at_least_once'");
$node->restart;
ok( $node->poll_query_until('postgres', q{
		SELECT delivery = 'at_least_once' AND state = 'idle'
		  AND NOT EXISTS (SELECT FROM inbox_outbox.relay_progress)
		FROM inbox_outbox.relay_status}),
	'after a restart into at-least-once mode the relay settles the progress row and runs');
my @after = split /\n/, $node->safe_psql('postgres',
	q{SELECT outbox_publish('switch', 'restart-' || i, i::text) FROM generate_series(1, 10) i});
wait_outbox_empty($node, 'postgres', 'after the restart');
my %got = map { $_->{headers}{event_id} => 1 } @{ $kafka->consume_raw('switch', min => $committed + 10, timeout => 60) };
is(scalar(grep { $got{$_} } @after), 10, 'and its events reach Kafka');

$node->stop;
$kafka->stop;
done_testing();
