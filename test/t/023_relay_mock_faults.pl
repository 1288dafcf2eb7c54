# The relay against a misbehaving cluster: librdkafka's mock cluster with
# retriable Produce errors, a broker that goes down and comes back, all
# brokers down, and slow brokers.  None of it may lose an event, reorder a
# key or fail a row: librdkafka retries these errors itself (idempotent
# producer, messages that never time out), so afterwards the outbox is
# empty, no row was counted as failed, and Kafka holds every event, with
# the first occurrences of the event ids of each key in id order.
#
# The mock does not deduplicate the retries of a producer that is
# idempotent but not transactional (see test/mock_cluster/mock_cluster.c):
# a request that was appended but whose response was lost is appended
# again.  So duplicates are allowed here and counted in the test's notes; a
# real broker drops them.
#
# Nor does the mock check the sequence numbers of such a producer, and that
# can lose events here that a real broker keeps: with several requests of a
# partition in flight, if the first is refused (NOT_LEADER_FOR_PARTITION) and
# the mock appends the next, librdkafka takes the later success as proof
# that the earlier messages were persisted too ("implicit ack", sound only
# because a real broker refuses a request whose sequence leaves a gap, with
# OUT_OF_ORDER_SEQUENCE_NUMBER).  So the relay runs here with one request
# in flight per connection; the real-broker tests (020, 021) run it with
# librdkafka's default of five.
#
# Which errors librdkafka 2.0.2 retries for an idempotent producer: the
# ones injected below.  NETWORK_EXCEPTION is not among them: it fails the
# request's messages for good, so it is no retriable error here.

use strict;
use warnings;

use IPC::Cmd qw(can_run);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

use InboxOutbox::Kafka;
use InboxOutbox::MockCluster;
use InboxOutbox::Relay;

BAIL_OUT('kcat is required for the mock cluster tests') unless can_run('kcat');

my $topic = 'faults';
my $partitions = 6;
my $nkeys = 20;
my @retriable = qw(NOT_LEADER_FOR_PARTITION REQUEST_TIMED_OUT
  NOT_ENOUGH_REPLICAS NOT_ENOUGH_REPLICAS_AFTER_APPEND LEADER_NOT_AVAILABLE
  _TRANSPORT);

my $mc = InboxOutbox::MockCluster->new(
	brokers => 3,
	topics => ["$topic:$partitions"]);
my $boot = $mc->bootstrap;

# Pin the leaders, two partitions per broker, so that taking a broker down
# stalls a known part of the topic.
sub leader_of { return $_[0] % 3 + 1 }
$mc->command("leader $topic $_ " . leader_of($_)) for 0 .. $partitions - 1;

my $node = relay_node(
	'faults', $boot,
	conf => "inbox_outbox.batch_size = 200\n"
	  . "inbox_outbox.kafka_config = 'max.in.flight.requests.per.connection=1'\n");

# The mock cluster does not quit while a client is connected, and the
# modules' END blocks would stop it before the node: stop the node first.
END
{
	local $?;
	$node->teardown_node if $node;
}

# Every event published so far: id => [ key, payload ]; the ids of each key
# in id order.
my (%events, %by_key);
my $published = 0;

# Publish $n events over the keys in one transaction.
sub publish
{
	my ($n, $tag) = @_;
	my $first = $published + 1;
	my $last = $published + $n;
	my $out = $node->safe_psql(
		'postgres', qq{
		SELECT outbox_publish('$topic', k, '$tag-' || i), k, '$tag-' || i
		FROM generate_series($first, $last) i,
			 LATERAL (SELECT 'key' || lpad((i % $nkeys + 1)::text, 2, '0') AS k) k
		ORDER BY i});
	for my $line (split /\n/, $out)
	{
		my ($id, $key, $payload) = split /\|/, $line;
		$events{$id} = [ $key, $payload ];
		push @{ $by_key{$key} }, $id;
	}
	$published = $last;
	return;
}

# Read the topic (or the given partitions) from the beginning, until at
# least $min messages are there (bounded wait).
sub consume
{
	my ($min, @only) = @_;
	my @opts = (timeout => $PostgreSQL::Test::Utils::timeout_default);
	return InboxOutbox::Kafka::kcat_consume($boot, $topic, @opts, min => $min)
	  unless @only;
	return [ map { @{ InboxOutbox::Kafka::kcat_consume($boot, $topic, @opts, partition => $_) } }
		  @only ];
}

# The partition of each key: murmur2, as the Java client's partitioner.
my %partition_of = map {
	my $k = sprintf('key%02d', $_);
	($k => kafka_partition($k, $partitions))
} 1 .. $nkeys;

# The topic holds every event published so far and nothing else; each key
# is in its murmur2 partition; per key, the first occurrences of the event
# ids are in id order.
sub check_topic
{
	my ($name) = @_;
	my $messages = consume($published);
	my $r = first_arrivals($messages, \%events, $partitions);

	diag("$name: unexpected message at $_->{partition}/$_->{offset}: event_id "
		  . ($_->{headers}{event_id} // ''))
	  for @{ $r->{unexpected} };
	is(scalar @{ $r->{unexpected} } + $r->{bad_value}, 0, "$name: no unexpected message");
	is(scalar(keys %{ $r->{seen} }), $published, "$name: all $published events are in Kafka");
	is($r->{misplaced}, 0, "$name: each key is in its murmur2 partition");
	my @disordered =
	  grep { join(',', @{ $r->{first}{$_} // [] }) ne join(',', @{ $by_key{$_} }) }
	  sort keys %by_key;
	is_deeply(\@disordered, [],
		"$name: per key, first occurrences of event ids are in id order");
	note("$name: " . scalar(@$messages) . " messages, $r->{duplicates} duplicate(s)");
	return;
}

# Wait until the relay has relayed everything and rests; then it must have
# failed no row.
sub check_drained
{
	my ($name) = @_;
	wait_outbox_empty($node, 'postgres', $name);
	$node->poll_query_until('postgres',
		"SELECT state = 'idle' FROM inbox_outbox.relay_status")
	  or die "relay did not come to rest ($name)";
	is( $node->safe_psql(
			'postgres', q{
		SELECT pending, failed, dead_letters, published
		FROM inbox_outbox.relay_status}),
		"0|0|0|$published",
		"$name: relay_status shows every event published and none failed");
	return;
}

#
# Retriable Produce errors on every broker while 2,100 events over 20 keys
# are published in 21 transactions.  Each broker's stack holds 3 of each
# error; clear succeeds only if the relay's requests consumed all of them.
#
for my $b (1 .. 3)
{
	$mc->command("broker_error $b Produce $_ 0 3") for @retriable;
}
publish(100, "errors$_") for 1 .. 21;
check_drained('retriable errors');
ok($mc->command('clear'), 'retriable errors: the relay met every injected error');
check_topic('retriable errors');

#
# Broker 2 goes down while the relay waits for its answers: it answers
# late (30 s), so once the events of the other brokers' partitions are in
# Kafka, the requests to broker 2 are still in flight when it goes down.
# Nothing is lost; its partitions stall, the relay records the lost
# connection, and everything proceeds once it is back.
#
my @up_partitions = grep { leader_of($_) != 2 } 0 .. $partitions - 1;
my @broker2_keys =
  sort grep { leader_of($partition_of{$_}) == 2 } keys %partition_of;
cmp_ok(scalar @broker2_keys, '>', 0, 'some keys live on broker 2');
my $broker2_keys = "'" . join("', '", @broker2_keys) . "'";
my $error_at = $node->safe_psql('postgres',
	"SELECT coalesce(last_error_at, '-infinity') FROM inbox_outbox.relay_status");
$mc->rtt(2, 30000);
publish(200, 'down-a');
my @down_a = grep { $events{$_}[1] =~ /^down-a-/ } keys %events;
my %on_broker2 = map { $_ => 1 } @broker2_keys;
my @down_a_elsewhere = grep { !$on_broker2{ $events{$_}[0] } } @down_a;
my $down_a_broker2 = @down_a - @down_a_elsewhere;

# Wait until the round's events for brokers 1 and 3 are in Kafka.
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
while (1)
{
	my %in_kafka = map { ($_->{headers}{event_id} // '') => 1 } @{ consume(0, @up_partitions) };
	last unless grep { !$in_kafka{$_} } @down_a_elsewhere;
	die 'the relay did not publish to brokers 1 and 3' if time() > $deadline;
	sleep(0.1);
}
$mc->broker_down(2);
$mc->rtt(2, 0);
is( $node->safe_psql(
		'postgres', qq{
	SELECT count(*) FROM inbox_outbox.outbox
	WHERE key IN ($broker2_keys) AND convert_from(payload, 'UTF8') LIKE 'down-a-%'}),
	$down_a_broker2,
	"broker 2 went down before answering the relay: its $down_a_broker2 events wait");
publish(200, 'down-b');
my $broker2 = (split /,/, $boot)[1];
$node->poll_query_until(
	'postgres', qq{
	SELECT last_error_at > '$error_at' AND position('$broker2' in last_error) > 0
	FROM inbox_outbox.relay_status})
  or die 'the relay did not notice that broker 2 is down';
is( $node->safe_psql(
		'postgres', qq{
	SELECT count(*) FROM inbox_outbox.outbox
	WHERE key IN ($broker2_keys) AND convert_from(payload, 'UTF8') ~ '^down-[ab]-'}),
	scalar(grep { $on_broker2{ $events{$_}[0] } && $events{$_}[1] =~ /^down-[ab]-/ }
		  keys %events),
	'no event of broker 2\'s partitions left the outbox while it was down');
$mc->broker_up(2);
publish(200, 'down-c');
check_drained('broker 2 down and up');
check_topic('broker 2 down and up');

#
# All brokers down: the relay says so, and resumes when they are back.
#
$mc->broker_down(-1);
publish(300, 'all-down');
$node->poll_query_until('postgres',
	"SELECT state = 'broker unreachable' FROM inbox_outbox.relay_status")
  or die 'relay_status never showed the brokers unreachable';
is($node->safe_psql('postgres', 'SELECT pending FROM inbox_outbox.relay_status'),
	300, 'all brokers down: all 300 events wait');
$mc->broker_up(-1);
check_drained('all brokers down and up');
check_topic('all brokers down and up');

#
# Latency: brokers answer after different delays, and some answers are
# slow errors; nothing is reordered.
#
$mc->rtt(1, 300);
$mc->rtt(2, 100);
$mc->command("broker_error 3 Produce NOT_LEADER_FOR_PARTITION 500 2");
$mc->command("broker_error 2 Produce REQUEST_TIMED_OUT 400 2");
publish(200, "slow$_") for 1 .. 3;
check_drained('latency');
ok($mc->command('clear'), 'latency: the relay met every injected error');
check_topic('latency');
$mc->rtt(-1, 0);

$node->stop;
my $pid = $mc->pid;
is($mc->stop, 0, 'mock cluster exits cleanly');
ok(!kill(0, $pid), 'mock cluster process is gone');

done_testing();
