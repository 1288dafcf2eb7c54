# End to end: the relay publishes 10,000 events; the example consumer applies
# them to a business table and is killed before committing its Kafka offsets,
# several times; once it has caught up, every event was applied exactly once.
# Then retention: the relay deletes the expired claims and only those, also
# in a prune of several batches while a publisher keeps it busy.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $events = 10_000;
my $kafka = InboxOutbox::Kafka->new(name => 'inbox');
$kafka->create_topic('orders', 3);

my $node = relay_node('inbox', $kafka->bootstrap);
$node->safe_psql('postgres', qq{
	SELECT outbox_publish('orders', 'order-' || (g % 100),
	                      jsonb_build_object('event', 'OrderPaid', 'amount', g))
	FROM generate_series(1, $events) g;
});
wait_outbox_empty($node, 'postgres', 'relay published the events');

my $consumer = "$ENV{TESTDIR}/examples/order_consumer.py";
my @common = (
	'/usr/bin/python3', $consumer,
	'--brokers', $kafka->bootstrap,
	'--dsn', 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres',
	'--topic', 'orders', '--group', 'billing',
	# a restart takes the killed run's partitions back at once
	'--instance-id', 'billing-1');

# Killed before committing offsets, four times.
for my $run (1 .. 4)
{
	my ($stdout, $stderr);
	IPC::Run::run([ @common, '--crash-after', 1500 ], '>', \$stdout, '2>', \$stderr,
		IPC::Run::timeout(180));
	like($stdout, qr/crashing after 1500 applied/, "run $run crashed before committing offsets")
	  or diag($stderr);
}
my $applied_before = $node->safe_psql('postgres', 'SELECT count(*) FROM applied_events');
is($applied_before, 6000, '6,000 events applied by the crashing runs');

# The last run catches up and stops when idle.
my ($stdout, $stderr);
IPC::Run::run([ @common, '--idle-exit', 5 ], '>', \$stdout, '2>', \$stderr,
	IPC::Run::timeout(300));
like($stdout, qr/applied 4000, duplicates absorbed [1-9]\d*/,
	'the final run applied the rest and absorbed redeliveries')
  or diag("$stdout\n$stderr");

is( $node->safe_psql('postgres',
		'SELECT count(*), count(DISTINCT event_id) FROM applied_events'),
	"$events|$events", 'every event was applied exactly once');
is( $node->safe_psql('postgres', 'SELECT sum(total) FROM order_totals'),
	$events * ($events + 1) / 2, 'the business totals count each event once');
my $dups = $node->safe_psql('postgres',
	q{SELECT duplicates_absorbed FROM inbox_outbox.inbox_consumers WHERE consumer = 'billing'});
cmp_ok($dups, '>', 0, "the inbox absorbed $dups redelivered events");
is( $node->safe_psql('postgres',
		q{SELECT claims FROM inbox_outbox.inbox_consumers WHERE consumer = 'billing'}),
	$events, 'one claim per event');

# Retention: the relay prunes expired claims in the background.
$node->safe_psql('postgres', q{
	UPDATE inbox_outbox.inbox SET claimed_at = now() - interval '8 days'
	WHERE event_id IN (SELECT event_id FROM inbox_outbox.inbox ORDER BY event_id LIMIT 2500);
	ALTER SYSTEM SET inbox_outbox.inbox_retention = '7d';
	SELECT pg_reload_conf();
});
$node->poll_query_until('postgres', 'SELECT count(*) = 7500 FROM inbox_outbox.inbox')
  or die 'relay did not prune';
pass('the relay deleted the 2,500 claims older than the retention, and only those');

# A prune of several batches while the outbox keeps the relay busy: each
# commit interrupts the pass, which must go on after the relay's next round
# (resuming where it stopped) rather than wait for an idle relay.
$node->safe_psql('postgres', q{
	INSERT INTO inbox_outbox.inbox (consumer, event_id, claimed_at)
	SELECT 'audit', 'a-' || g, now() - interval '8 days' - g * interval '1 millisecond'
	FROM generate_series(1, 35000) g;
});
# One session publishes without pause, one event per transaction, until the
# expired claims are gone (or two minutes pass), so the relay always finds
# rows waiting and is never idle meanwhile.
$node->safe_psql('postgres', 'CREATE TABLE busy_run (pruned boolean, events int)');
$node->safe_psql('postgres', q{
DO $$
DECLARE
	n int := 0;
	deadline timestamptz := clock_timestamp() + interval '120 seconds';
BEGIN
	WHILE EXISTS (SELECT 1 FROM inbox_outbox.inbox WHERE consumer = 'audit')
		  AND clock_timestamp() < deadline LOOP
		PERFORM outbox_publish('orders', 'busy-' || (n % 10), jsonb_build_object('n', n));
		COMMIT;
		n := n + 1;
	END LOOP;
	INSERT INTO busy_run
	SELECT NOT EXISTS (SELECT 1 FROM inbox_outbox.inbox WHERE consumer = 'audit'), n;
END
$$;
});
my ($pruned, $busy_events) = split /\|/,
  $node->safe_psql('postgres', 'SELECT pruned, events FROM busy_run');
is($pruned, 't', "the relay pruned 35,000 expired claims while $busy_events events kept it busy");
wait_outbox_empty($node, 'postgres', 'relay published the busy events');
is($node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.inbox'),
	7500, 'the pruning kept every claim within the retention');

$node->stop;
$kafka->stop;
done_testing();
