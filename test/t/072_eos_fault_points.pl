# Exactly once at each fault point of exactly-once mode (test/relay_faults):
#
# 1. eos_after_commit: the round is committed in Kafka, its rows not yet
#    deleted.  After a crash (kill -9 of the relay) and after an immediate
#    shutdown, recovery deletes exactly that round's rows ("recovered N"),
#    and nothing is sent twice.
# 2. eos_before_commit: the round is produced, every message acknowledged,
#    no commit.  After a crash the next relay's init_transactions() aborts
#    it and the rows go again: read_committed sees them once, and
#    read_uncommitted twice, which shows that the aborted copy was written.
# 3. eos_recovery_read: a crash after recovery has read the last record and
#    before it deleted the record's rows; the next start recovers the same
#    record.
# 4. The flush rule (docs/exactly_once.md, section 2): the relay commits a
#    transaction only once the previous round's DELETE, committed
#    asynchronously, is durable.  With wal_writer_delay = 10s nothing else
#    writes that DELETE out in time, and an immediate shutdown right after
#    the next commit would bring its rows back, to be sent twice.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use InboxOutbox::ExactlyOnce;
use InboxOutbox::Faults;
use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $topic = 'points';
my $partitions = 3;
my $kafka = InboxOutbox::Kafka->new(name => 'eos_points');
$kafka->create_topic($topic, $partitions);
my $node = fault_node('eos_points', $kafka->bootstrap, conf => $eos_conf);
$node->poll_query_until('postgres',
	q{SELECT delivery = 'exactly_once' FROM inbox_outbox.relay_status})
  or die 'the relay is not in exactly-once mode';

# Every event published: id => [ key, payload ]; each key's ids in order.
my (%expected, %order);
my $published = 0;

# Publish $n events over 10 keys in one transaction; returns their ids.
sub publish
{
	my ($n, $tag) = @_;
	my @ids;
	my $out = $node->safe_psql('postgres', qq{
		SELECT outbox_publish('$topic', 'key-' || (i % 10), '$tag-' || i), 'key-' || (i % 10), '$tag-' || i
		FROM generate_series(1, $n) i ORDER BY i});
	foreach my $line (split /\n/, $out)
	{
		my ($id, $key, $payload) = split /\|/, $line;
		$expected{$id} = [ $key, $payload ];
		push @{ $order{$key} }, $id;
		push @ids, $id;
	}
	$published += $n;
	return @ids;
}

sub pending
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.outbox');
}

sub check_topic
{
	my ($name) = @_;
	wait_outbox_empty($node, 'postgres', $name);
	my $messages = $kafka->consume_raw($topic, min => $published, timeout => 60);
	check_exactly_once($messages, \%expected, \%order, $partitions, $name);
	return;
}

#
# 1a. eos_after_commit, crash
#
my $offset = -s $node->logfile;
set_fault($node, at => 'eos_after_commit', action => 'crash');
my $old = relay_pid($node);
publish(200, 'after-crash');
$offset = wait_fault($node, 'crash', 'eos_after_commit', $offset);
wait_new_relay($node, $old);
wait_outbox_empty($node, 'postgres', 'after the crash at eos_after_commit');
clear_fault($node);
is_deeply([ map { $_->[0] } @{ recovered_lines($node, $offset) } ], [200],
	'crash at eos_after_commit: the next relay recovered the round of 200 events');
check_topic('crash at eos_after_commit');

#
# 1b. eos_after_commit, immediate shutdown
#
$offset = -s $node->logfile;
set_fault($node, at => 'eos_after_commit', action => 'immediate');
publish(150, 'after-immediate');
wait_fault($node, 'immediate', 'eos_after_commit', $offset);
wait_server_gone($node);
$offset = -s $node->logfile;
$node->start;
wait_outbox_empty($node, 'postgres', 'after the immediate shutdown at eos_after_commit');
clear_fault($node);
is_deeply([ map { $_->[0] } @{ recovered_lines($node, $offset) } ], [150],
	'immediate shutdown at eos_after_commit: the restarted relay recovered the round of 150 events');
check_topic('immediate shutdown at eos_after_commit');

#
# 2. eos_before_commit, crash.  The stall comes first, so that the relay
# after the crash, which produces the same rows again, does not crash too.
#
$offset = -s $node->logfile;
set_fault($node, at => 'eos_before_commit', action => 'stall');
my @before = publish(100, 'before-crash');
$offset = wait_fault($node, 'stall', 'eos_before_commit', $offset);
is(pending(), 100, 'stalled before the commit: the round\'s rows are all in the outbox');
$old = relay_pid($node);
fire_stalled($node, 'crash');
$offset = wait_fault($node, 'crash', 'eos_before_commit', $offset);
wait_new_relay($node, $old);
wait_outbox_empty($node, 'postgres', 'after the crash at eos_before_commit');
clear_fault($node);
is(scalar @{ recovered_lines($node, $offset) }, 0,
	'crash at eos_before_commit: nothing to recover (the transaction was aborted)');
check_topic('crash at eos_before_commit');
my $seen = count_arrivals(
	$kafka->consume_raw($topic, isolation => 'read_uncommitted', min => $published + 100));
is(scalar(grep { ($seen->{$_} // 0) == 2 } @before), 100,
	'read_uncommitted sees each event of that round twice: the aborted copy and the committed one');
is(scalar(grep { ($seen->{$_} // 0) != 1 } grep { my $id = $_; !grep { $_ eq $id } @before } keys %expected),
	0, 'read_uncommitted sees every other event once');

#
# 3. eos_recovery_read, crash.  A round is left committed and not deleted
# (a kill -9 at eos_after_commit, armed at eos_recovery_read for the next
# relay); recovery stalls after the read, then crashes there.
#
$offset = -s $node->logfile;
set_fault($node, at => 'eos_after_commit', action => 'stall');
publish(120, 'recovery');
$offset = wait_fault($node, 'stall', 'eos_after_commit', $offset);
kill_stalled($node, at => 'eos_recovery_read', action => 'stall', skip => 0);
$offset = wait_fault($node, 'stall', 'eos_recovery_read', $offset);
is(pending(), 120, 'recovery stalls after reading the record, its 120 rows still in the outbox');
is($node->safe_psql('postgres', 'SELECT state FROM inbox_outbox.relay_status'),
	'recovering', 'relay_status says the relay is recovering');
$old = relay_pid($node);
fire_stalled($node, 'crash');
wait_fault($node, 'crash', 'eos_recovery_read', $offset);
wait_new_relay($node, $old);
wait_outbox_empty($node, 'postgres', 'after the crash during recovery');
clear_fault($node);
is_deeply([ map { $_->[0] } @{ recovered_lines($node, $offset) } ], [120],
	'the next start recovered the same record: its 120 events, once');
check_topic('crash during recovery');

#
# 4. The flush rule: two rounds of 100; the relay shuts the server down
# right after the second commit.  The first round's DELETE must be on disk.
#
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET wal_writer_delay = '10s';
	ALTER SYSTEM SET inbox_outbox.batch_size = 100;
	SELECT pg_reload_conf();});
$node->poll_query_until('postgres', q{SELECT current_setting('wal_writer_delay') = '10s'})
  or die 'wal_writer_delay was not reloaded';
$offset = -s $node->logfile;
set_fault($node, at => 'eos_after_commit', action => 'immediate', skip => 1);
publish(200, 'flush');
wait_fault($node, 'immediate', 'eos_after_commit', $offset);
wait_server_gone($node);
$offset = -s $node->logfile;
$node->start;
wait_outbox_empty($node, 'postgres', 'after the immediate shutdown following two rounds');
clear_fault($node);
is_deeply([ map { $_->[0] } @{ recovered_lines($node, $offset) } ], [100],
	'the restarted relay recovered the second round only');
check_topic('immediate shutdown after the second round (flush rule)');

$node->stop;
$kafka->stop;
done_testing();
