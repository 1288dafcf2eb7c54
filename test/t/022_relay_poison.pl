# Poison events against a real broker: rows that Kafka refuses for good.
#
# The broker refuses messages above 100,000 bytes and creates no topic on
# its own.  K1's head event is too large for the broker (but not for the
# relay's own limit); K3's head goes to a topic that does not exist.  Each
# is tried inbox_outbox.max_attempts times, holding back the later events
# of its key while other keys flow on, and then moves to the dead-letter
# table with the broker's reason; the later events of its key then proceed
# (the documented gap).  A dead letter redriven once its topic exists
# arrives with its original event id; outbox_discard drops the other.  A
# row above inbox_outbox.max_message_bytes goes to the dead-letter table at
# once, without reaching Kafka.
#
# 077_eos_poison.pl runs this file again with inbox_outbox.delivery =
# 'exactly_once' (INBOX_OUTBOX_TEST_DELIVERY): the same rows end the same
# way, each row failing inside a transaction that is aborted, and the
# events that arrive arrive once.

use strict;
use warnings;

use InboxOutbox::Kafka;
use InboxOutbox::Relay;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $delivery = $ENV{INBOX_OUTBOX_TEST_DELIVERY} // 'at_least_once';
my $max_attempts = 3;
my $partitions = 3;
my $topic = 'poison_events';
my $missing = 'poison_missing';

# Healthy keys: K5 and K6 share K1's partition (murmur2, as the relay's
# partitioner), K2, K4 and K7 do not.
my @healthy_keys = qw(K2 K4 K5 K6 K7);
my $poison_partition = kafka_partition('K1', $partitions);
my @beside = grep { kafka_partition($_, $partitions) == $poison_partition }
  @healthy_keys;
my @elsewhere = grep { kafka_partition($_, $partitions) != $poison_partition }
  @healthy_keys;
is_deeply(\@beside, [qw(K5 K6)], 'K5 and K6 hash to the partition of K1');

my $kafka = InboxOutbox::Kafka->new(
	name => "poison_$delivery",
	config => {
		'auto.create.topics.enable' => 'false',
		'message.max.bytes' => '100000',
	});
$kafka->create_topic($topic, $partitions);
is($kafka->partition_count($missing), 0, "topic $missing does not exist");

# The backoff keeps a poison head in the outbox between its attempts for
# the few seconds it takes to read the topic.
my $node = relay_node(
	'poison',
	$kafka->bootstrap,
	conf => qq{
inbox_outbox.max_attempts = $max_attempts
inbox_outbox.retry_backoff = '3s'
} . ($delivery eq 'exactly_once' ? "inbox_outbox.delivery = 'exactly_once'\n" : ''));
is($node->safe_psql('postgres', 'SELECT delivery FROM inbox_outbox.relay_status'),
	$delivery, "the relay delivers $delivery") if $delivery ne 'at_least_once';

# Everything in one transaction, so that the first round holds every row:
# K1's head (200,000 bytes) and three more K1 events, K3's head to the
# missing topic and two more K3 events, and the healthy keys around them.
my @plan = ([ $topic, 'K1', 'big' ]);
for my $i (1 .. 4)
{
	push @plan, [ $topic, $_, "v$i" ] for @healthy_keys;
	push @plan, [ $topic, 'K1', "v$i" ] if $i <= 3;
}
push @plan, [ $missing, 'K3', 'head' ];
for my $i (5 .. 7)
{
	push @plan, [ $topic, $_, "v$i" ] for @healthy_keys;
	push @plan, [ $missing, 'K3', "v$i" ] if $i <= 6;
}

my $sql = "BEGIN;\n";
for my $p (@plan)
{
	my ($t, $k, $v) = @$p;
	$sql .=
	  $v eq 'big'
	  ? "SELECT outbox_publish('$t', '$k', repeat('x', 200000));\n"
	  : "SELECT outbox_publish('$t', '$k', '$v');\n";
}
$sql .= "COMMIT;\n";
my @ids = split /\n/, $node->safe_psql('postgres', $sql);
is(scalar @ids, scalar @plan, 'published ' . scalar(@plan) . ' events');

# Expected events per topic and key, in id order; payload by id.
my (%expect, %payload);
for my $i (0 .. $#plan)
{
	my ($t, $k, $v) = @{ $plan[$i] };
	push @{ $expect{$t}{$k} }, $ids[$i];
	$payload{ $ids[$i] } = $v eq 'big' ? 'x' x 200000 : $v;
}
my $k1_head = $expect{$topic}{K1}[0];
my @k1_later = @{ $expect{$topic}{K1} }[ 1 .. 3 ];
my $k3_head = $expect{$missing}{K3}[0];
my @k3_later = @{ $expect{$missing}{K3} }[ 1 .. 2 ];

sub id_list
{
	return "'" . join("', '", @_) . "'";
}

# Checks messages against the expected events of the given keys: every
# event present, the first occurrence of each event id in id order per key,
# each key in its murmur2 partition, nothing unexpected, payloads exact.
# Redeliveries are allowed (at least once) and reported.
sub check_events
{
	my ($messages, $expected, $name) = @_;
	my %want;
	for my $k (keys %$expected)
	{
		$want{$_} = [ $k, $payload{$_} ] for @{ $expected->{$k} };
	}
	my $r = first_arrivals($messages, \%want, $partitions);

	diag("$name: unexpected message key=" . ($_->{key} // '')
		  . ' event_id=' . ($_->{headers}{event_id} // ''))
	  for @{ $r->{unexpected} };
	is(scalar @{ $r->{unexpected} }, 0, "$name: no unexpected message");
	is($r->{bad_value}, 0, "$name: payloads are exact");
	is($r->{misplaced}, 0, "$name: every key in its murmur2 partition");
	for my $key (sort keys %$expected)
	{
		is_deeply($r->{first}{$key} // [], $expected->{$key},
			"$name: $key: every event present, in id order");
	}
	if ($delivery eq 'exactly_once')
	{
		is($r->{duplicates}, 0, "$name: no event arrived twice");
	}
	else
	{
		note("$name: $r->{duplicates} redelivered message(s)");
	}
	return;
}

sub count_messages
{
	my ($messages, @keys) = @_;
	my %keys = map { $_ => 1 } @keys;
	return scalar grep { $keys{ $_->{key} // '' } } @$messages;
}

sub expected_count
{
	my ($t, @keys) = @_;
	my $n = 0;
	$n += @{ $expect{$t}{$_} } for @keys;
	return $n;
}

#
# While K1's head waits for its next attempt, K1's later events are not in
# Kafka and the other keys have flowed on.
#
$node->poll_query_until('postgres',
	"SELECT attempts >= 1 FROM inbox_outbox.outbox WHERE id = '$k1_head'")
  or die 'K1 head was never attempted';
# (The topic's message count is no guide: K5 and K6 count too, and at least
# once allows repeats; so wait for the distinct events of the other keys.)
my $during;
my %want_elsewhere = map { $_ => 1 } map { @{ $expect{$topic}{$_} } } @elsewhere;
for my $try (1 .. 40)
{
	$during = $kafka->consume($topic,
		min => expected_count($topic, @elsewhere), timeout => 10);
	my %in = map { ($_->{headers}{event_id} // '') => 1 } @$during;
	last if !grep { !$in{$_} } keys %want_elsewhere;
	sleep(0.25);
}
my $k1_row = $node->safe_psql('postgres',
	"SELECT attempts, last_error FROM inbox_outbox.outbox WHERE id = '$k1_head'");
my ($attempts, $error) = split /\|/, $k1_row, 2;
ok( $k1_row ne '' && $attempts >= 1 && $attempts < $max_attempts,
	"K1 head is still between attempts after reading the topic ($k1_row)");
like($error, qr/^MSG_SIZE_TOO_LARGE: /,
	'K1 head last_error names the broker reason');
is(count_messages($during, 'K1'), 0,
	'no K1 event is in Kafka while its head is retried');
is( $node->safe_psql(
		'postgres',
		'SELECT count(*) FROM inbox_outbox.outbox WHERE id IN ('
		  . id_list(@k1_later) . ')'),
	scalar @k1_later,
	'later K1 events wait in the outbox');
my %elsewhere = map { $_ => 1 } @elsewhere;
check_events(
	[ grep { $elsewhere{ $_->{key} // '' } } @$during ],
	{ map { $_ => $expect{$topic}{$_} } @elsewhere },
	'keys outside K1\'s partition, while K1 head is retried');

#
# Same for K3: its later events wait while its head is retried.
#
$node->poll_query_until('postgres',
	"SELECT attempts >= 1 FROM inbox_outbox.outbox WHERE id = '$k3_head'")
  or die 'K3 head was never attempted';
my $k3_row = $node->safe_psql(
	'postgres', qq{
	SELECT o.attempts, o.last_error,
		   (SELECT count(*) FROM inbox_outbox.outbox WHERE id IN (@{[ id_list(@k3_later) ]}))
	FROM inbox_outbox.outbox o WHERE o.id = '$k3_head'});
my @k3 = split /\|/, $k3_row;
ok(@k3 == 3 && $k3[0] >= 1 && $k3[0] < $max_attempts,
	"K3 head is between attempts ($k3_row)");
like($k3[1], qr/UNKNOWN_TOPIC/, 'K3 head last_error names the unknown topic');
is($k3[2], scalar @k3_later, 'later K3 events wait in the outbox');

#
# Both heads end in the dead-letter table after max_attempts attempts, with
# the broker's reason and their data intact.
#
$node->poll_query_until(
	'postgres', qq{
	SELECT count(*) FROM inbox_outbox.outbox_dead_letter
	WHERE id IN ('$k1_head', '$k3_head')}, '2')
  or die 'poison heads did not reach the dead-letter table';
is( $node->safe_psql(
		'postgres', qq{
	SELECT topic, key, length(payload), attempts, failed_at >= created_at
	FROM inbox_outbox.outbox_dead_letter WHERE id = '$k1_head'}),
	"$topic|K1|200000|$max_attempts|t",
	'K1 head is a dead letter after max_attempts, payload intact');
like(
	$node->safe_psql(
		'postgres',
		"SELECT last_error FROM inbox_outbox.outbox_dead_letter WHERE id = '$k1_head'"),
	qr/^MSG_SIZE_TOO_LARGE: /,
	'K1 dead letter names the broker reason');
is( $node->safe_psql(
		'postgres', qq{
	SELECT topic, key, convert_from(payload, 'UTF8'), attempts
	FROM inbox_outbox.outbox_dead_letter WHERE id = '$k3_head'}),
	"$missing|K3|head|$max_attempts",
	'K3 head is a dead letter after max_attempts');
like(
	$node->safe_psql(
		'postgres',
		"SELECT last_error FROM inbox_outbox.outbox_dead_letter WHERE id = '$k3_head'"),
	qr/UNKNOWN_TOPIC/,
	'K3 dead letter names the unknown topic');

#
# K1's later events proceed once its head is dead: the topic holds every
# event but K1's head, in id order per key.
#
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM inbox_outbox.outbox WHERE topic = '$topic'")
  or die "$topic rows did not drain";
my %delivered = map { $_ => $expect{$topic}{$_} } @healthy_keys;
$delivered{K1} = \@k1_later;
my $delivered_count = 0;
$delivered_count += @$_ for values %delivered;
my $after = $kafka->consume($topic, min => $delivered_count, timeout => 10);
# The healthy events batched with K1's head in one ProduceRequest (K5 and
# K6 share its partition) fail with the same MSG_SIZE_TOO_LARGE, but each
# failed row is retried alone, so only the head dies.
check_events($after, \%delivered, "$topic after K1 head is dead");
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM inbox_outbox.outbox_dead_letter WHERE topic = '$topic'"),
	1,
	"K1's head is the only dead letter of $topic");

#
# K3's later events proceed too, but their topic is still missing: each is
# tried max_attempts times and ends in the dead-letter table.
#
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM inbox_outbox.outbox WHERE topic = '$missing'")
  or die "$missing rows did not drain";
# Once the producer has learnt that the topic does not exist, producev
# refuses its messages at once (_UNKNOWN_TOPIC); that is an ordinary failure
# with retries, not a final one.
is( $node->safe_psql(
		'postgres', qq{
	SELECT string_agg(attempts || ' ' || (last_error ~ 'UNKNOWN_TOPIC'), ',' ORDER BY id)
	FROM inbox_outbox.outbox_dead_letter WHERE id IN (@{[ id_list(@k3_later) ]})}),
	join(',', ("$max_attempts true") x @k3_later),
	'later K3 events are dead letters after max_attempts attempts each');

is( $node->safe_psql(
		'postgres', qq{
	SELECT published, failed >= 4 * $max_attempts, dead_letters, pending,
		   last_error IS NOT NULL AND last_error_at IS NOT NULL
	FROM inbox_outbox.relay_status}),
	"$delivered_count|t|4|0|t",
	'relay_status counts the published events, the failures and the dead letters');

#
# Redrive: once the missing topic exists, K3's head, redriven, arrives with
# its original event id and timestamp; then its later events.
#
$kafka->create_topic($missing, $partitions);
my $k3_created_ms = $node->safe_psql('postgres',
	"SELECT floor(extract(epoch FROM created_at) * 1000)::int8 FROM inbox_outbox.outbox_dead_letter WHERE id = '$k3_head'"
);
is( $node->safe_psql(
		'postgres', qq{
	BEGIN;
	SELECT outbox_redrive(ARRAY['$k3_head']::ulid[]);
	SELECT count(*) FROM inbox_outbox.outbox_dead_letter WHERE id = '$k3_head';
	SELECT attempts FROM inbox_outbox.outbox WHERE id = '$k3_head';
	COMMIT;}),
	"1\n0\n0",
	'outbox_redrive moves the dead letter back into the outbox, attempts reset');
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM inbox_outbox.outbox WHERE id = '$k3_head'")
  or die 'redriven event was not relayed';
# The relay's producer may still believe the topic does not exist and
# refuse the redriven event at first (_UNKNOWN_TOPIC); it is retried.
is( $node->safe_psql(
		'postgres',
		"SELECT last_error FROM inbox_outbox.outbox_dead_letter WHERE id = '$k3_head'"),
	'',
	'the redriven event was relayed, not dead-lettered again');
my $redriven = $kafka->consume($missing, min => 1, timeout => 10);
is_deeply(
	[ map { [ $_->{key}, $_->{value}, $_->{headers}{event_id}, $_->{timestamp} ] }
		  @$redriven ],
	[ [ 'K3', 'head', $k3_head, $k3_created_ms ] ],
	'the redriven event is in Kafka with its original event id and time');

is( $node->safe_psql(
		'postgres',
		'SELECT outbox_redrive(ARRAY[' . id_list(@k3_later) . ']::ulid[])'),
	scalar @k3_later,
	'redrive the later K3 events');
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM inbox_outbox.outbox WHERE topic = '$missing'")
  or die 'redriven K3 events were not relayed';
check_events(
	$kafka->consume($missing, min => scalar @{ $expect{$missing}{K3} }, timeout => 10),
	{ K3 => $expect{$missing}{K3} },
	"$missing after redrive");

#
# Discard: K1's head is dropped for good.
#
is( $node->safe_psql(
		'postgres', "SELECT outbox_discard(ARRAY['$k1_head']::ulid[])"),
	1,
	'outbox_discard drops the K1 dead letter');
is( $node->safe_psql(
		'postgres', "SELECT outbox_discard(ARRAY['$k1_head']::ulid[])"),
	0,
	'discarding it again drops nothing');
is($node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.outbox_dead_letter'),
	0, 'no dead letter is left');

#
# inbox_outbox.max_message_bytes: a row inserted directly above the limit
# goes to the dead-letter table at once, without reaching Kafka; the next
# row of its key is published.
#
my $before = $node->safe_psql('postgres',
	'SELECT published, failed FROM inbox_outbox.relay_status');
$node->safe_psql('postgres',
	"ALTER SYSTEM SET inbox_outbox.max_message_bytes = 1000; SELECT pg_reload_conf()");
# A new session sees the value only once the postmaster has reloaded, and
# the postmaster signals the relay before it forks that session.
$node->poll_query_until('postgres',
	"SELECT setting FROM pg_settings WHERE name = 'inbox_outbox.max_message_bytes'",
	'1000')
  or die 'max_message_bytes was not reloaded';
my ($big, $small) = split /\n/, $node->safe_psql(
	'postgres', qq{
	BEGIN;
	INSERT INTO inbox_outbox.outbox (topic, key, payload)
		VALUES ('$topic', 'K8', convert_to(repeat('y', 2000), 'UTF8')) RETURNING id;
	INSERT INTO inbox_outbox.outbox (topic, key, payload)
		VALUES ('$topic', 'K8', convert_to('small', 'UTF8')) RETURNING id;
	COMMIT;});
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM inbox_outbox.outbox WHERE key = 'K8'")
  or die 'K8 rows did not drain';
my $k8_dead = $node->safe_psql('postgres',
	"SELECT attempts, length(payload), last_error FROM inbox_outbox.outbox_dead_letter WHERE id = '$big'"
);
like($k8_dead,
	qr/^1\|2000\|message of \d+ bytes is larger than inbox_outbox.max_message_bytes \(1000\)$/,
	'a row above max_message_bytes is a dead letter after one attempt');
$payload{$small} = 'small';
$payload{$big} = 'y' x 2000;
my $k8 = $kafka->consume($topic, min => $delivered_count + 1, timeout => 10);
is_deeply(
	[ map { $_->{headers}{event_id} } grep { ($_->{key} // '') eq 'K8' } @$k8 ],
	[$small], 'only the small K8 row reached Kafka');
my ($published, $failed) = split /\|/, $before;
is( $node->safe_psql(
		'postgres', q{
	SELECT published, failed, dead_letters, last_error ~ 'larger than inbox_outbox.max_message_bytes'
	FROM inbox_outbox.relay_status}),
	($published + 1) . '|' . ($failed + 1) . '|1|t',
	'relay_status counts the oversized row as failed and dead');

$node->stop;
$kafka->stop;

done_testing();
