# Exactly-once mode against librdkafka's mock cluster: how the relay sorts
# the answers of the transactional calls (docs/exactly_once.md, section 7).
#
# - Retriable errors on EndTxn (COORDINATOR_NOT_AVAILABLE,
#   CONCURRENT_TRANSACTIONS) and AddPartitionsToTxn: the call is made
#   again; no recovery, no producer recreated, nothing sent twice.
# - A produce error of one row: the round aborts, that row alone gets an
#   attempt, the other keys go on in the next transaction, and its isolated
#   retry delivers it.
# - A fatal error on EndTxn (INVALID_TXN_STATE): a new producer, and
#   recovery of the round whose outcome is unknown.
# - TRANSACTIONAL_ID_AUTHORIZATION_FAILED at init_transactions: the relay
#   stops with the reason, without a restart loop, until a setting changes.
#
# The mock writes no transaction markers, so it cannot show read_committed
# visibility (DESIGN section 9): aborted messages are visible here.  These
# checks are on the relay's actions, its log and the outbox; the real
# broker tests (070-075) check what consumers see.
use strict;
use warnings;

use IPC::Cmd qw(can_run);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use InboxOutbox::ExactlyOnce;
use InboxOutbox::Kafka;
use InboxOutbox::MockCluster;
use InboxOutbox::Relay;

BAIL_OUT('kcat is required for the mock cluster tests') unless can_run('kcat');

my $topic = 'eos_faults';
my $partitions = 3;
my $mc = InboxOutbox::MockCluster->new(
	brokers => 3,
	topics => [ "$topic:$partitions", 'inbox_outbox_progress:1' ]);
my $boot = $mc->bootstrap;

# Partition p is led by broker p + 1, so that an error of one broker's
# Produce requests hits the rows of one partition only.
$mc->command("leader $topic $_ " . ($_ + 1)) for 0 .. $partitions - 1;

# The progress records go to broker 1, never to the broker whose Produce
# error part 2 injects (that of partition 1): an error that hit a record
# instead of the row would abort the round without charging anybody.
$mc->command('leader inbox_outbox_progress 0 1');

my $node = relay_node('eos_mock', $boot, conf => $eos_conf . q{
inbox_outbox.retry_backoff = '3s'
inbox_outbox.kafka_config = 'max.in.flight.requests.per.connection=1'
});

# The mock does not quit while a client is connected, and the modules' END
# blocks would stop it before the node: stop the node first.
END
{
	local $?;
	$node->teardown_node if $node;
}

$node->poll_query_until('postgres',
	q{SELECT delivery = 'exactly_once' AND state = 'idle' FROM inbox_outbox.relay_status})
  or die 'the relay did not come up in exactly-once mode: '
  . $node->safe_psql('postgres', 'SELECT state, last_error FROM inbox_outbox.relay_status');

my (%events, %by_key);
my $n = 0;

# Publish one event on each of the given keys, in one transaction.
sub publish
{
	my ($tag, @keys) = @_;
	my @rows = map { $n++; [ $_, "$tag-$n" ] } @keys;
	my @ids = split /\n/, $node->safe_psql('postgres', join("\n", 'BEGIN;',
		(map { "SELECT outbox_publish('$topic', '$_->[0]', '$_->[1]');" } @rows), 'COMMIT;'));
	for my $i (0 .. $#ids)
	{
		$events{ $ids[$i] } = $rows[$i];
		push @{ $by_key{ $rows[$i][0] } }, $ids[$i];
	}
	return @ids;
}

# One key per partition.
my @keys;
for (my $i = 0; @keys < $partitions; $i++)
{
	my $k = "k$i";
	push @keys, $k unless grep { kafka_partition($_, $partitions) == kafka_partition($k, $partitions) } @keys;
}
@keys = sort { kafka_partition($a, $partitions) <=> kafka_partition($b, $partitions) } @keys;

# Every event so far in the topic, first arrivals in order per key; no
# other message.  Duplicates (aborted copies) are allowed on the mock.
sub check_topic
{
	my ($name) = @_;
	my $messages = InboxOutbox::Kafka::kcat_consume_raw($boot, $topic, min => scalar(keys %events));
	my $r = first_arrivals($messages, \%events, $partitions);
	is(scalar @{ $r->{unexpected} } + $r->{bad_value}, 0, "$name: no unexpected message");
	is(scalar(keys %{ $r->{seen} }), scalar(keys %events), "$name: every event is in the topic");
	my @disordered = grep { join(',', @{ $r->{first}{$_} // [] }) ne join(',', @{ $by_key{$_} }) } sort keys %by_key;
	is_deeply(\@disordered, [], "$name: each key's events in order");
	return $r;
}

sub publish_many
{
	my ($tag, $count) = @_;
	my $sql = "BEGIN;\n";
	my @rows;
	for (1 .. $count)
	{
		$n++;
		my $key = $keys[ $n % @keys ];
		$sql .= "SELECT outbox_publish('$topic', '$key', '$tag-$n');\n";
		push @rows, [ $key, "$tag-$n" ];
	}
	$sql .= "COMMIT;\n";
	my @ids = split /\n/, $node->safe_psql('postgres', $sql);
	for my $i (0 .. $#ids)
	{
		$events{ $ids[$i] } = $rows[$i];
		push @{ $by_key{ $rows[$i][0] } }, $ids[$i];
	}
	return @ids;
}

#
# 1. Retriable errors: the call is made again.
#
my $offset = -s $node->logfile;
$mc->push_errors('EndTxn', 'COORDINATOR_NOT_AVAILABLE', 2);
$mc->push_errors('EndTxn', 'CONCURRENT_TRANSACTIONS', 2);
publish_many('endtxn', 60);
wait_outbox_empty($node, 'postgres', 'retriable EndTxn errors');
$mc->push_errors('AddPartitionsToTxn', 'CONCURRENT_TRANSACTIONS', 3);
$mc->push_errors('AddPartitionsToTxn', 'COORDINATOR_NOT_AVAILABLE', 2);
publish_many('addpartitions', 60);
wait_outbox_empty($node, 'postgres', 'retriable AddPartitionsToTxn errors');
my $r = check_topic('retriable errors');
is($r->{duplicates}, 0, 'retriable errors: nothing was produced twice');
is(scalar @{ recovered_lines($node, $offset) }, 0, 'retriable errors: nothing was recovered');
ok(!$node->log_contains(qr/Kafka producer failed/, $offset), 'retriable errors: the producer was kept');
is($node->safe_psql('postgres', 'SELECT failed, dead_letters FROM inbox_outbox.relay_status'),
	'0|0', 'retriable errors: no row was charged');

#
# 2. A produce error on one partition: the round aborts, its row alone is
# charged, the other keys go on, and its isolated retry delivers it.
#
my $bad_broker = kafka_partition($keys[1], $partitions) + 1;
die 'the progress topic shares the failing broker' if $bad_broker == 1;
$mc->command("broker_error $bad_broker Produce INVALID_RECORD 0 1");
my @ids = publish('produce', @keys);
ok( $node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 AND bool_and(id = '$ids[1]' AND attempts = 1 AND last_error ~ 'INVALID_RECORD')
	FROM inbox_outbox.outbox}),
	'the failing row alone waits with one attempt; the other keys went on')
  or diag('outbox: ' . $node->safe_psql('postgres', 'SELECT id, attempts, last_error FROM inbox_outbox.outbox'));
wait_outbox_empty($node, 'postgres', 'the isolated retry');
ok($mc->command('clear'), 'the relay met the injected produce error');
is($node->safe_psql('postgres', 'SELECT failed, dead_letters FROM inbox_outbox.relay_status'),
	'1|0', 'one failure recorded, no dead letter');
check_topic('produce error');

#
# 3. A fatal error on EndTxn: a new producer, and recovery.
#
$offset = -s $node->logfile;
$mc->push_errors('EndTxn', 'INVALID_TXN_STATE', 1);
my @fatal = publish_many('fatal', 30);
wait_outbox_empty($node, 'postgres', 'after the fatal error');
my $rec = recovered_lines($node, $offset);
ok($node->log_contains(qr/INVALID_TXN_STATE/, $offset), 'the relay logs the fatal error');
is_deeply([ map { $_->[0] } @$rec ], [30],
	'recovery found the record of the round whose outcome was unknown (the mock wrote it)');
check_topic('fatal error');

#
# 4. init_transactions refused: stopped with the reason, no restart loop.
#
$offset = -s $node->logfile;
$mc->push_errors('InitProducerId', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED', 1);
my $pid = relay_pid($node);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$node->poll_query_until('postgres', qq{
	SELECT pid <> $pid AND state = 'stopped' AND last_error ~ 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED'
	FROM inbox_outbox.relay_status})
  or die 'the relay did not stop with the reason: '
  . $node->safe_psql('postgres', 'SELECT pid, state, last_error FROM inbox_outbox.relay_status');
pass('refused at init_transactions: the relay stops, the reason in relay_status');
my $stopped_pid = relay_pid($node);
my @held = publish('held', @keys);
$node->safe_psql('postgres', 'SELECT pg_sleep(3)');    # several poll intervals
is($node->safe_psql('postgres', 'SELECT pid, state, pending FROM inbox_outbox.relay_status'),
	"$stopped_pid|stopped|" . scalar(@keys), 'it stays stopped, in the same process, and sends nothing');
ok($mc->command('clear'), 'the relay met the injected refusal');
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET inbox_outbox.delivery = 'at_least_once'; SELECT pg_reload_conf();});
wait_outbox_empty($node, 'postgres', 'after delivery changed');
check_topic('after the refusal');

$node->stop;
is($mc->stop, 0, 'mock cluster exits cleanly');
done_testing();
