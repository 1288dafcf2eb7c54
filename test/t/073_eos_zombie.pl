# A zombie relay is fenced and publishes nothing.
#
# A primary and its streaming standby, whose slot is in
# inbox_outbox.standby_slots.  The primary's relay stalls with a round
# produced and not committed (eos_before_commit), as a relay that is cut
# off or starved would.  The standby is promoted; its relay has the same
# transactional id, fences the old one, finishes what it left and
# publishes the round's events itself.  Then the stall is released: the
# old relay's commit fails, it stops in state "fenced" with a WARNING, and
# events published on the old primary afterwards do not reach Kafka.  A
# read_committed consumer sees every event once; the zombie's round is
# visible only to read_uncommitted.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use InboxOutbox::ExactlyOnce;
use InboxOutbox::Faults;
use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $topic = 'zombie';
my $partitions = 3;
my $kafka = InboxOutbox::Kafka->new(name => 'eos_zombie');
$kafka->create_topic($topic, $partitions);

my $primary = fault_node('eos_zombie_primary', $kafka->bootstrap,
	init => { allows_streaming => 1 }, conf => $eos_conf);
$primary->safe_psql('postgres',
	q{SELECT pg_create_physical_replication_slot('standby1', true)});
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('eos_zombie_standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->append_conf('postgresql.conf', q{primary_slot_name = 'standby1'});
$standby->start;
$primary->wait_for_catchup($standby, 'flush');

# Only the primary waits for the standby (ALTER SYSTEM is not replicated).
$primary->safe_psql('postgres',
	q{ALTER SYSTEM SET inbox_outbox.standby_slots = 'standby1'; SELECT pg_reload_conf();});
$primary->poll_query_until('postgres',
	q{SELECT current_setting('inbox_outbox.standby_slots') = 'standby1'})
  or die 'standby_slots was not reloaded';

my (%expected, %order);

sub publish
{
	my ($node, $n, $tag) = @_;
	my @ids;
	my $out = $node->safe_psql('postgres', qq{
		SELECT outbox_publish('$topic', 'key-' || (i % 5), '$tag-' || i), 'key-' || (i % 5), '$tag-' || i
		FROM generate_series(1, $n) i ORDER BY i});
	foreach my $line (split /\n/, $out)
	{
		my ($id, $key, $payload) = split /\|/, $line;
		push @ids, [ $id, $key, $payload ];
	}
	return @ids;
}

sub expect
{
	foreach my $e (@_)
	{
		my ($id, $key, $payload) = @$e;
		$expected{$id} = [ $key, $payload ];
		push @{ $order{$key} }, $id;
	}
	return;
}

# Events before the failover flow as usual.
expect(publish($primary, 50, 'early'));
wait_outbox_empty($primary, 'postgres', 'before the failover');

# The zombie's round: produced, acknowledged, not committed.
my $offset = -s $primary->logfile;
set_fault($primary, at => 'eos_before_commit', action => 'stall');
my @round = publish($primary, 40, 'round');
expect(@round);
wait_fault($primary, 'stall', 'eos_before_commit', $offset);
$primary->wait_for_catchup($standby, 'flush');

# The standby takes over: same transactional id, so its relay fences the
# stalled one, and publishes the round's events from its own outbox.
my $tid = transactional_id($primary);
$standby->promote;
$standby->poll_query_until('postgres',
	q{SELECT delivery = 'exactly_once' AND state NOT IN ('in recovery', 'starting', 'recovering') FROM inbox_outbox.relay_status})
  or die 'the promoted standby\'s relay did not start in exactly-once mode';
is(transactional_id($standby), $tid, 'the promoted standby has the same transactional id');
wait_outbox_empty($standby, 'postgres', 'the promoted standby delivers the round');
expect(publish($standby, 30, 'promoted'));
wait_outbox_empty($standby, 'postgres', 'after the promotion');

# Release the zombie: its commit fails, it stops as fenced.
$offset = -s $primary->logfile;
clear_fault($primary);
$primary->poll_query_until('postgres',
	q{SELECT state = 'fenced' FROM inbox_outbox.relay_status})
  or die 'the old primary\'s relay was not fenced';
pass('the old primary\'s relay is fenced');
ok( $primary->log_contains(
		qr/WARNING:  inbox_outbox relay for database "postgres" stops: another relay publishes for this database with transactional id "\Q$tid\E"/,
		$offset),
	'the fenced relay says why it stops');

# The zombie publishes nothing more, even with nothing else holding it back.
$primary->safe_psql('postgres',
	q{ALTER SYSTEM RESET inbox_outbox.standby_slots; SELECT pg_reload_conf();});
my $published = $primary->safe_psql('postgres', 'SELECT published FROM inbox_outbox.relay_status');
my @late = publish($primary, 10, 'late');
my $before = scalar @{ $kafka->consume_raw($topic, isolation => 'read_uncommitted') };
$primary->safe_psql('postgres', 'SELECT pg_sleep(3)');    # several poll intervals
is( $primary->safe_psql('postgres',
		'SELECT state, published, pending FROM inbox_outbox.relay_status'),
	'fenced|' . $published . '|' . (scalar(@round) + scalar(@late)),
	'the fenced relay stays fenced, publishes nothing, and its round and the 10 new events wait');
is(scalar @{ $kafka->consume_raw($topic, isolation => 'read_uncommitted') }, $before,
	'nothing more reached the topic');

my $messages = $kafka->consume_raw($topic, min => scalar(keys %expected));
check_exactly_once($messages, \%expected, \%order, $partitions, 'read_committed');

my $seen = count_arrivals($kafka->consume_raw($topic, isolation => 'read_uncommitted'));
is(scalar(grep { ($seen->{ $_->[0] } // 0) == 2 } @round), scalar @round,
	'read_uncommitted sees the zombie\'s aborted round as well: each of its events twice');
is(scalar(grep { $seen->{ $_->[0] } } @late), 0, 'no late event of the old primary is in the topic');

$standby->stop;
$primary->stop;
$kafka->stop;
done_testing();
