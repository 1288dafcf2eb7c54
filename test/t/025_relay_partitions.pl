# A slow partition delays only its own events.  The relay's rounds overlap
# (relay.c, relay_round()): a round whose rows are all queued stays in
# flight while the next rounds are read and produced, and is recorded once
# Kafka has answered for every row of it.  So while the leader of one
# partition takes seconds to answer, the events of the other partitions
# keep flowing at their usual pace, and no key loses its order.
#
# librdkafka's mock cluster: three brokers, each the leader of one
# partition of a three-partition topic.  Broker 1 answers after 8 s; 60
# events over 30 keys are published one per transaction over about a
# second.  Before the rounds overlapped, the first round with an event of
# partition 0 held every later event for the 8 s.

use strict;
use warnings;

use IPC::Cmd qw(can_run);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

use InboxOutbox::Kafka;
use InboxOutbox::MockCluster;
use InboxOutbox::Relay;

BAIL_OUT('kcat is required for the mock cluster tests') unless can_run('kcat');

my $topic = 'lanes';
my $partitions = 3;
my $nkeys = 30;
my $slow_ms = 8000;

my $mc = InboxOutbox::MockCluster->new(
	brokers => 3,
	topics => ["$topic:$partitions"]);
my $boot = $mc->bootstrap;
$mc->command("leader $topic $_ " . ($_ + 1)) for 0 .. $partitions - 1;

# One request in flight per connection: see 023 for what the mock does
# with more.
my $node = relay_node('lanes', $boot,
	conf => "inbox_outbox.kafka_config = 'max.in.flight.requests.per.connection=1'\n");
END
{
	local $?;
	$node->teardown_node if $node;
}

my %partition_of = map {
	my $k = sprintf('key%02d', $_);
	($k => kafka_partition($k, $partitions))
} 1 .. $nkeys;
my @slow_keys = sort grep { $partition_of{$_} == 0 } keys %partition_of;
cmp_ok(scalar @slow_keys, '>', 0, 'some keys live in partition 0');
cmp_ok(scalar @slow_keys, '<', $nkeys, 'some keys live elsewhere');

$node->safe_psql('postgres',
	'CREATE TABLE sent (n int, id text, key text, payload text, at float8)');

# A consumer of partitions 1 and 2 from their end, which notes when each
# event arrives: "<epoch seconds> <partition> event_id=<id>".
my $arrivals = "$PostgreSQL::Test::Utils::tmp_check/025_arrivals.txt";
my $consumer = IPC::Run::start(
	[ 'sh', '-c',
		"kcat -C -u -q -b '$boot' -t $topic -o end -X fetch.wait.max.ms=5 -f '%p %h\\n' | "
		  . q{perl -MTime::HiRes=time -ne '$|=1; printf "%.6f %s", time, $_ if /^[12] /'}
		  . " > '$arrivals'" ]);
END
{
	local $?;
	$consumer->kill_kill if $consumer;
}
sleep(2);    # the consumer has its partitions

# Publish events $first .. $last, one per transaction, $pause s apart.
sub publish
{
	my ($first, $last, $pause) = @_;
	$node->safe_psql(
		'postgres', qq{
		DO \$\$
		BEGIN
			FOR i IN $first .. $last LOOP
				INSERT INTO sent
				SELECT i, outbox_publish('$topic', k, 'event-' || i), k, 'event-' || i,
					   extract(epoch FROM clock_timestamp())
				FROM (SELECT 'key' || lpad((i % $nkeys + 1)::text, 2, '0') AS k) s;
				COMMIT;
				PERFORM pg_sleep($pause);
			END LOOP;
		END \$\$});
	return;
}

sub sent_events
{
	my %events;
	for my $line (split /\n/,
		$node->safe_psql('postgres', 'SELECT id, key, payload FROM sent ORDER BY n'))
	{
		my ($id, $key, $payload) = split /\|/, $line;
		$events{$id} = [ $key, $payload ];
	}
	return \%events;
}

sub consume
{
	my (%opts) = @_;
	my $messages = [];
	for my $p (@{ $opts{partitions} })
	{
		push @$messages,
		  @{ InboxOutbox::Kafka::kcat_consume($boot, $topic, timeout => 0, partition => $p) };
	}
	return $messages;
}

# Seconds from publish to arrival of the events $first .. $last of
# partitions 1 and 2, sorted; undef for one that has not arrived.
sub latencies
{
	my ($first, $last) = @_;
	my %arrived;
	open(my $fh, '<', $arrivals) or die "cannot read $arrivals: $!";
	while (<$fh>)
	{
		$arrived{$2} //= $1 if /^(\S+) [12] .*event_id=(\w+)/;
	}
	close($fh);
	my @lat;
	for my $line (split /\n/,
		$node->safe_psql('postgres',
			"SELECT id, key, at FROM sent WHERE n BETWEEN $first AND $last"))
	{
		my ($id, $key, $at) = split /\|/, $line;
		next if $partition_of{$key} == 0;
		push @lat, defined $arrived{$id} ? $arrived{$id} - $at : undef;
	}
	return [ sort { ($a // 1e9) <=> ($b // 1e9) } @lat ];
}

sub median { my ($l) = @_; return $l->[ int($#$l / 2) ]; }

# Warm up: every broker answered once, the topic's metadata is known.
publish(1, $nkeys, 0);
wait_outbox_empty($node, 'postgres', 'warm-up');

# The same load with every broker answering at once: how long events of
# partitions 1 and 2 take normally.
my $normal_from = $nkeys + 1;
publish($normal_from, $normal_from + 59, 0.02);
wait_outbox_empty($node, 'postgres', 'normal');
sleep(0.5);
my $normal = latencies($normal_from, $normal_from + 59);

# Broker 1, leader of partition 0, now answers after $slow_ms.
$mc->rtt(1, $slow_ms);
my $slow_from = $normal_from + 60;
my $started = time();
publish($slow_from, $slow_from + 59, 0.02);
my $published_in = time() - $started;
my $events = sent_events();
my %fast = map { $_ => 1 } grep { $partition_of{ $events->{$_}[0] } != 0 } keys %$events;

# Wait for every event of partitions 1 and 2; they must all arrive while
# partition 0's first answer is still outstanding.
my ($missing, $arrived_after);
while (1)
{
	my %in = map { ($_->{headers}{event_id} // '') => 1 } @{ consume(partitions => [ 1, 2 ]) };
	$missing = grep { !$in{$_} } keys %fast;
	$arrived_after = time() - $started;
	last if $missing == 0 || $arrived_after > $slow_ms / 1000 - 1;
	sleep(0.05);
}
my $slow_waiting = $node->safe_psql(
	'postgres', "SELECT count(*) FROM inbox_outbox.outbox WHERE key IN ('"
	  . join("', '", @slow_keys) . "')");
is($missing, 0, 'every event of partitions 1 and 2 reached Kafka while partition 0 was slow');
cmp_ok($arrived_after, '<', $slow_ms / 1000 - 1,
	"they arrived within ${arrived_after}s of the first publish, before partition 0 answered");
is( $slow_waiting,
	$node->safe_psql(
		'postgres', "SELECT count(*) FROM sent WHERE n >= $slow_from AND key IN ('"
		  . join("', '", @slow_keys) . "')"),
	'meanwhile the events of partition 0 all waited for its answer');
note(sprintf('published 60 events in %.2fs; partitions 1 and 2 complete after %.2fs',
		$published_in, $arrived_after));

# How long they took, against the same load with no slow broker.  The
# median is compared, with 20 ms for the noise of a busy machine; any one
# event may meet a pause of the machine.
my $slow = latencies($slow_from, $slow_from + 59);
my @late = grep { !defined } @$slow;
is(scalar @late, 0, 'the consumer saw every event of partitions 1 and 2');
note(sprintf('partitions 1 and 2, publish to arrival: normally median %.1f ms, max %.1f ms; '
		  . 'with partition 0 slow: median %.1f ms, max %.1f ms',
		1000 * median($normal), 1000 * ($normal->[-1] // 0),
		1000 * (median($slow) // 0), 1000 * ($slow->[-1] // 0)));
cmp_ok(median($slow) // 1e9, '<=', 2 * median($normal) + 0.020,
	'partitions 1 and 2 stay within twice their normal median while partition 0 is slow');
cmp_ok($slow->[-1] // 1e9, '<', 2, 'none of their events waited for partition 0');

# Broker 1 answers; everything arrives, each key in order, nothing failed.
$mc->rtt(1, 0);
wait_outbox_empty($node, 'postgres', 'slow partition');
my $all = InboxOutbox::Kafka::kcat_consume($boot, $topic,
	timeout => $PostgreSQL::Test::Utils::timeout_default,
	min => scalar(keys %$events));
my $r = first_arrivals($all, $events, $partitions);
is(scalar @{ $r->{unexpected} } + $r->{bad_value}, 0, 'no unexpected message');
is(scalar(keys %{ $r->{seen} }), scalar(keys %$events), 'every event is in Kafka');
is($r->{misplaced}, 0, 'each key is in its murmur2 partition');
my %by_key;
push @{ $by_key{ $events->{$_}[0] } }, $_ for sort keys %$events;
my @disordered =
  grep { join(',', @{ $r->{first}{$_} // [] }) ne join(',', @{ $by_key{$_} }) }
  sort keys %by_key;
is_deeply(\@disordered, [], 'per key, first occurrences of event ids are in id order');
is($node->safe_psql('postgres', 'SELECT failed, dead_letters FROM inbox_outbox.relay_status'),
	'0|0', 'no row failed');

#
# A new producer while partition 0's leader is down.  A new producer sends
# the first message of each partition alone and holds back that
# partition's others until it is answered (kafka_topic.c): partition 0's
# never is while broker 1 is down, and partitions 1 and 2 must not wait
# for it.
#
my $offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET inbox_outbox.kafka_config =
		'max.in.flight.requests.per.connection=1; client.rack=fresh';
	SELECT pg_reload_conf();
});
$node->wait_for_log(qr/Kafka configuration changed, reconnecting/, $offset);
$mc->broker_down(1);
my $fresh_from = $slow_from + 60;
$started = time();
publish($fresh_from, $fresh_from + 59, 0.02);
my $fresh_events = sent_events();
my @fresh_fast = grep {
	$partition_of{ $fresh_events->{$_}[0] } != 0 && !exists $events->{$_}
} keys %$fresh_events;
my @fresh_slow = grep {
	$partition_of{ $fresh_events->{$_}[0] } == 0 && !exists $events->{$_}
} keys %$fresh_events;
while (1)
{
	my %in = map { ($_->{headers}{event_id} // '') => 1 } @{ consume(partitions => [ 1, 2 ]) };
	$missing = grep { !$in{$_} } @fresh_fast;
	$arrived_after = time() - $started;
	last if $missing == 0 || $arrived_after > 20;
	sleep(0.1);
}
is($missing, 0,
	'with a new producer and partition 0 down, every event of partitions 1 and 2 reached Kafka');
note(sprintf('partitions 1 and 2 complete %.2fs after the first publish', $arrived_after));
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM inbox_outbox.outbox WHERE id IN ('"
		  . join("', '", @fresh_slow) . "')"),
	scalar @fresh_slow,
	'meanwhile the events of partition 0 all wait in the outbox');

$mc->broker_up(1);
wait_outbox_empty($node, 'postgres', 'partition 0 back');
$all = InboxOutbox::Kafka::kcat_consume($boot, $topic,
	timeout => $PostgreSQL::Test::Utils::timeout_default,
	min => scalar(keys %$fresh_events));
$r = first_arrivals($all, $fresh_events, $partitions);
is(scalar(keys %{ $r->{seen} }), scalar(keys %$fresh_events), 'every event is in Kafka');
%by_key = ();
push @{ $by_key{ $fresh_events->{$_}[0] } }, $_ for sort keys %$fresh_events;
@disordered =
  grep { join(',', @{ $r->{first}{$_} // [] }) ne join(',', @{ $by_key{$_} }) }
  sort keys %by_key;
is_deeply(\@disordered, [], 'per key, first occurrences of event ids are in id order');
is($node->safe_psql('postgres', 'SELECT failed, dead_letters FROM inbox_outbox.relay_status'),
	'0|0', 'still no row failed');

$node->stop;
done_testing();
