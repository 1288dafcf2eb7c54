# A fresh producer's first request to a partition, refused for good, lets
# nothing of the same key through behind it.
#
# Key order rests on gapless delivery: once a message fails for good, the
# broker refuses the later requests of its partition (their sequence
# numbers leave a gap) and the producer fails before any of them is
# written.  But a broker checks sequence numbers only for a producer id it
# holds state for, and it holds none for a producer id whose first request
# to the partition it refused.  So the relay sends a new producer's first
# message to each partition alone and holds back the rest of that
# partition until Kafka has answered for it (kafka.c, "first message of a
# partition").
#
# Here the broker refuses messages above 100,000 bytes, the relay's
# producer makes requests of about 20,000 bytes (batch.size), and one
# transaction publishes K1's head of 200,000 bytes, then 300 more K1
# events of 1,000 bytes, then 100 events of other keys.  Without the
# first-message rule, the head goes out alone in the first request of the
# partition and the next requests, already in flight, are accepted: K1's
# later events arrive while its head waits for its next attempt.  With it,
# none does; once the head is dead-lettered the rest arrive in order.

use strict;
use warnings;

use InboxOutbox::Kafka;
use InboxOutbox::Relay;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $topic = 'first_request';
my $partitions = 2;
my $nlater = 300;
my $nothers = 100;

my $kafka = InboxOutbox::Kafka->new(
	name => 'first_request',
	config => {
		'auto.create.topics.enable' => 'false',
		'message.max.bytes' => '100000',
	});
$kafka->create_topic($topic, $partitions);

my $node = relay_node(
	'first_request',
	$kafka->bootstrap,
	conf => q{
inbox_outbox.max_attempts = 2
inbox_outbox.retry_backoff = '5s'
inbox_outbox.kafka_config = 'batch.size=20000'
});

my $sql = "BEGIN;\n"
  . "SELECT outbox_publish('$topic', 'K1', repeat('x', 200000));\n";
$sql .= "SELECT outbox_publish('$topic', 'K1', '$_:' || repeat('y', 1000));\n"
  for 1 .. $nlater;
$sql .= "SELECT outbox_publish('$topic', 'O' || $_, 'o$_');\n"
  for 1 .. $nothers;
$sql .= "COMMIT;\n";
my @ids = split /\n/, $node->safe_psql('postgres', $sql);
is(scalar @ids, 1 + $nlater + $nothers, 'published every event');
my $head = $ids[0];
my @later = @ids[ 1 .. $nlater ];
my @others = @ids[ $nlater + 1 .. $#ids ];

# The head was tried once and waits 5 s for its second and last attempt.
$node->poll_query_until('postgres',
	"SELECT attempts >= 1 FROM inbox_outbox.outbox WHERE id = '$head'")
  or die 'K1 head was never attempted';
my $error = $node->safe_psql('postgres',
	"SELECT last_error FROM inbox_outbox.outbox WHERE id = '$head'");
like($error, qr/^MSG_SIZE_TOO_LARGE: /, 'the broker refused K1 head');

# The other keys flow on meanwhile; K1 has nothing in Kafka.  (At least
# once: the fatal error of the producer that the head's refusal causes can
# have the other keys' messages sent twice.)
my ($during, %others_seen);
for my $try (1 .. 10)
{
	$during = $kafka->consume($topic, min => $nothers, timeout => 10);
	%others_seen = map { ($_->{headers}{event_id} // '') => 1 }
	  grep { ($_->{key} // '') =~ /^O/ } @$during;
	last if keys %others_seen >= $nothers;
	sleep 1;
}
my @k1 = grep { ($_->{key} // '') eq 'K1' } @$during;
is(scalar @k1, 0, 'no later K1 event is in Kafka while its head waits')
  or diag(scalar(@k1) . ' K1 events arrived ahead of their head');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM inbox_outbox.outbox WHERE key = 'K1'"),
	1 + $nlater,
	'every K1 event is still in the outbox');
is(scalar(keys %others_seen), $nothers, 'the other keys arrived');

# Once the head is dead-lettered, K1's events go, in order.
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM inbox_outbox.outbox")
  or die 'the outbox did not empty';
my $after = $kafka->consume($topic, min => $nlater + $nothers, timeout => 30);
my %want;
$want{ $later[$_ - 1] } = [ 'K1', "$_:" . ('y' x 1000) ] for 1 .. $nlater;
$want{ $others[$_ - 1] } = [ "O$_", "o$_" ] for 1 .. $nothers;
my $r = first_arrivals($after, \%want, $partitions);
is(scalar @{ $r->{unexpected} }, 0, 'no unexpected message');
is($r->{misplaced}, 0, 'every key in its murmur2 partition');
is_deeply($r->{first}{K1}, \@later, 'K1: every later event, in id order');
is(scalar(keys %{ $r->{seen} }), $nlater + $nothers, 'every event arrived');

# Only the head's two attempts count as failures: the rows that the failed
# producer purged or refused were not sent, and cost no attempt.
is($node->safe_psql('postgres', 'SELECT failed, dead_letters FROM inbox_outbox.relay_status'),
	'2|1', 'two failed attempts, one dead letter');

$node->stop;
done_testing();
