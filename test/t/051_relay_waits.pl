# Every wait of the relay watches its latch, even with librdkafka's queue
# full and no broker reachable.
#
# 300 events of 896 kB are more than librdkafka's queue holds (128 MB), so
# with no broker the relay finds the queue full in the middle of a round.
# It used to loop inside librdkafka there, ignoring reloads, SIGTERM and
# the death of the postmaster.  Now it waits for room as it waits for
# acknowledgements: a new broker list is taken at once, and a fast stop
# finishes within inbox_outbox.shutdown_timeout.  The relay's memory is
# bounded per row: 50 MB rows are dead-lettered without being read, and a
# full queue holds the relay's peak memory to its round of 64 MB and
# librdkafka's copy.
use strict;
use warnings;

use InboxOutbox::Kafka;
use InboxOutbox::Relay;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $kafka = InboxOutbox::Kafka->new(name => 'waits');
$kafka->create_topic('big', 3);

my $dead = '127.0.0.1:' . PostgreSQL::Test::Cluster::get_free_port();
my $node = relay_node(
	'waits', $dead,
	conf => q{
inbox_outbox.shutdown_timeout = '2s'
});

my $publish_big = q{SELECT count(outbox_publish('big', 'k' || i % 10,
	convert_to(repeat(md5(i::text), 28000), 'UTF8'))) FROM generate_series(1, 300) i};

# 1. A reload reaches a relay whose queue is full.
$node->safe_psql('postgres', $publish_big);
$node->poll_query_until('postgres',
	q{SELECT state = 'broker unreachable' AND pending = 300 FROM inbox_outbox.relay_status})
  or die 'the relay did not report the unreachable broker';
pass('with the queue full and no broker, the relay says the broker is unreachable');
my $t0 = time();
$node->safe_psql('postgres',
	"ALTER SYSTEM SET inbox_outbox.brokers = '" . $kafka->bootstrap . "'; SELECT pg_reload_conf();");
wait_outbox_empty($node, 'postgres', 'new broker list');
cmp_ok(time() - $t0, '<', 60, 'a new broker list is taken and the 300 events delivered');
my $messages = $kafka->consume('big', min => 300, timeout => 60);
my %ids = map { $_->{headers}{event_id} => 1 } @$messages;
is(scalar(keys %ids), 300, 'all 300 events are in Kafka');

# The relay's peak memory, from a reset: the peak resident set size since
# then, less the resident set size at the reset.
sub reset_peak
{
	my $pid = relay_pid($node);
	open(my $fh, '>', "/proc/$pid/clear_refs") or die "clear_refs: $!";
	print $fh "5\n";
	close($fh);
	return { pid => $pid, base => proc_kb($pid, 'VmRSS') };
}

sub peak_growth_mb
{
	my ($mark) = @_;
	return (proc_kb($mark->{pid}, 'VmHWM') - $mark->{base}) / 1024;
}

sub proc_kb
{
	my ($pid, $field) = @_;
	my ($kb) = slurp_file("/proc/$pid/status") =~ /^$field:\s+(\d+) kB/m;
	return $kb;
}

$node->safe_psql('postgres',
	"ALTER SYSTEM SET inbox_outbox.brokers = '$dead'; SELECT pg_reload_conf();");
$node->poll_query_until('postgres',
	q{SELECT state IN ('idle', 'broker unreachable') FROM inbox_outbox.relay_status})
  or die 'the relay did not settle';

# 2. Memory: rows above inbox_outbox.max_message_bytes are never read.
# Twenty rows of 50 MB inserted directly go to the dead-letter table, and
# the relay's peak memory hardly moves (it used to read them all, 2.25 GB).
my $mark = reset_peak();
$node->safe_psql('postgres',
	q{INSERT INTO inbox_outbox.outbox (topic, key, payload)
	  SELECT 'big', 'poison', convert_to(repeat(chr(65 + i), 50000000), 'UTF8')
	  FROM generate_series(1, 20) i});
$node->poll_query_until('postgres',
	'SELECT count(*) = 20 FROM inbox_outbox.outbox_dead_letter')
  or die 'the 50 MB rows were not dead-lettered';
my $growth = peak_growth_mb($mark);
cmp_ok($growth, '<', 50,
	sprintf('twenty 50 MB rows raised the relay\'s peak memory by %.0f MB', $growth));

# 3. Memory and a fast stop with the queue full and no broker.  A round
# holds at most 64 MB of values, each once, and librdkafka its copy of
# what was produced: the peak stays well under what 300 x 896 kB would
# take (it grew by 567 MB before).
$mark = reset_peak();
$node->safe_psql('postgres', $publish_big);
$node->poll_query_until('postgres',
	q{SELECT state = 'broker unreachable' AND pending = 300 FROM inbox_outbox.relay_status})
  or die 'the relay did not report the unreachable broker';
$growth = peak_growth_mb($mark);
cmp_ok($growth, '<', 200,
	sprintf('300 events of 896 kB raised the relay\'s peak memory by %.0f MB', $growth));
$t0 = time();
$node->stop('fast');
my $took = time() - $t0;
cmp_ok($took, '<', 2 + 5, sprintf('a fast stop took %.1f s (shutdown_timeout 2 s)', $took));

$node->start;
$node->poll_query_until('postgres',
	'SELECT count(*) = 300 FROM inbox_outbox.outbox')
  or die 'the events were lost';
pass('the undelivered events are still in the outbox after the stop');

# 4. DROP EXTENSION while a round waits on brokers that never answer: the
# relay leaves within a second or two instead of waiting for good with the
# rows gone, and logs no error about the dropped tables.
$node->poll_query_until('postgres',
	q{SELECT state = 'broker unreachable' FROM inbox_outbox.relay_status})
  or die 'the relay did not wait on the broker again';
my $relay = $node->safe_psql('postgres', 'SELECT pid FROM inbox_outbox.relay_status');
my $log_offset = -s $node->logfile;
$t0 = time();
$node->safe_psql('postgres', 'DROP EXTENSION inbox_outbox');
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $relay")
  or die 'the relay stayed after DROP EXTENSION';
$took = time() - $t0;
cmp_ok($took, '<', 5,
	sprintf('DROP EXTENSION ended a round stuck on a dead broker in %.1f s', $took));
ok(!$node->log_contains(qr/ERROR:/, $log_offset), 'and nothing was logged as an error');

$node->stop;
done_testing();
