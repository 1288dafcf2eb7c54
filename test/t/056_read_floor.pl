# The relay's read bound (src/outbox_floor.c): the relay reads from the
# lowest id a row it has not read can have, not from the low end of the
# primary key, and still misses no row.
#
# Each case makes a row that a bound taken from the ids the relay has seen
# would skip: a transaction that publishes early and commits late, an id
# chosen by the client far in the past, a prepared transaction committed
# later (also across a restart), and a row written with the trigger
# disabled.  Each must leave the outbox well before the relay's periodic
# read from the low end (120 poll intervals), except the last, which only
# the read from the low end that follows enabling the trigger again finds.  Then the cost: with a snapshot held open over
# 20,000 deleted rows, a hundred single-event rounds must not walk them
# (counted in pg_stat_user_indexes.idx_tup_read of the primary key).
use strict;
use warnings;

use IPC::Cmd qw(can_run);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use InboxOutbox::Kafka;
use InboxOutbox::MockCluster;
use InboxOutbox::Relay;

BAIL_OUT('kcat is required for the mock cluster tests') unless can_run('kcat');

my $topic = 'orders';
my $mc = InboxOutbox::MockCluster->new(brokers => 1, topics => ["$topic:3"]);
my $boot = $mc->bootstrap;

# poll_interval 2 s: the periodic read from the low end comes every 240 s,
# far beyond the 6 s within which the bound must find each row.
my $node = relay_node('floor', $boot, conf => q{
max_prepared_transactions = 5
inbox_outbox.poll_interval = '2s'
});

END
{
	local $?;
	$node->teardown_node if $node;
}

my %published;				# event id => 1

sub publish
{
	my ($key, $payload) = @_;
	my $id = $node->safe_psql('postgres',
		"SELECT outbox_publish('$topic', '$key', '$payload'::text)");
	$published{$id} = 1;
	return $id;
}

# Publish $n events, one transaction each, and wait until they are sent.
# The wait scans the table by TID range: section 5 counts the reads of the
# primary key, and an index-only count(*), which the planner may choose
# after an ANALYZE, would walk the dead entries itself.
sub traffic
{
	my ($n, $tag) = @_;
	publish("key" . ($_ % 5), "$tag-$_") for 1 .. $n;
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM inbox_outbox.outbox WHERE ctid >= '(0,0)'::tid})
	  or die "outbox did not drain ($tag)";
	return;
}

# Seconds until the row with this id has left the outbox (sent), or undef.
sub seconds_until_sent
{
	my ($id, $limit) = @_;
	my $t0 = time();
	while (time() - $t0 < $limit)
	{
		return time() - $t0
		  if $node->safe_psql('postgres',
			"SELECT count(*) FROM inbox_outbox.outbox WHERE id = '$id'") eq '0';
		select(undef, undef, undef, 0.1);
	}
	return undef;
}

traffic(10, 'warm-up');

# 1. A transaction that publishes early and commits late.
my $late = $node->background_psql('postgres');
$late->query_safe('BEGIN');
my $early_id = $late->query_safe(
	qq{SELECT outbox_publish('$topic', 'late', 'published early'::text)});
$published{$early_id} = 1;
traffic(30, 'meanwhile');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM inbox_outbox.outbox WHERE id::text < '$early_id'"),
	'0', 'no row below the open transaction\'s id is visible');
$late->query_safe('COMMIT');
$late->quit;
my $took = seconds_until_sent($early_id, 30);
ok(defined $took && $took < 6,
	'an event published early and committed late is sent at once (' . ($took // 'never') . ' s)');

# 2. An id chosen by the client, far below everything sent so far.
traffic(10, 'before old id');
my $old_id = '01ARZ3NDEKTSV4RRFFQ69G5FAV';	# 2016
$node->safe_psql('postgres',
	qq{INSERT INTO inbox_outbox.outbox (id, topic, key, payload)
	   VALUES ('$old_id', '$topic', 'old', 'chosen by the client')});
$published{$old_id} = 1;
$took = seconds_until_sent($old_id, 30);
ok(defined $took && $took < 6,
	'a row with an old id chosen by the client is sent at once (' . ($took // 'never') . ' s)');

# 3. A prepared transaction, committed after later events were sent.
my $prep = $node->background_psql('postgres');
$prep->query_safe('BEGIN');
my $prepared_id = $prep->query_safe(
	qq{SELECT outbox_publish('$topic', 'prepared', 'prepared early'::text)});
$published{$prepared_id} = 1;
$prep->query_safe(q{PREPARE TRANSACTION 'p1'});
$prep->quit;
traffic(20, 'after prepare');
# A poll interval of a minute: only a wake-up at COMMIT PREPARED sends the
# event within seconds.
$node->safe_psql('postgres', q{ALTER SYSTEM SET inbox_outbox.poll_interval = '60s'});
$node->reload;
$node->safe_psql('postgres', 'SELECT pg_sleep(1)');
$node->safe_psql('postgres', q{COMMIT PREPARED 'p1'});
$took = seconds_until_sent($prepared_id, 70);
ok(defined $took && $took < 6,
	'a prepared transaction\'s event is sent at once when committed, woken by COMMIT PREPARED ('
	  . ($took // 'never') . ' s)');

# Still without polls: 200 commits in a burst, most within the relay's 2 ms
# gathering of wake-ups (src/relay.c, relay_read_now()).  A wake-up lost
# while gathering would leave the last events for the next poll, a minute on.
$node->safe_psql('postgres', q{
	CREATE TABLE burst (id text);
	DO $$
	BEGIN
		FOR i IN 1 .. 200 LOOP
			INSERT INTO burst
			SELECT outbox_publish('orders', 'burst' || i % 7, 'burst ' || i)::text;
			COMMIT;
		END LOOP;
	END $$});
my @burst = split /\n/, $node->safe_psql('postgres', 'SELECT id FROM burst ORDER BY id');
$published{$_} = 1 for @burst;
$took = seconds_until_sent($burst[-1], 70);
ok(defined $took && $took < 6 &&
	  $node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.outbox') eq '0',
	'200 commits in a burst are all sent without a poll (' . ($took // 'never') . ' s)');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET inbox_outbox.poll_interval');
$node->reload;

# ... and across a restart, which loses the bounds in shared memory.
$prep = $node->background_psql('postgres');
$prep->query_safe('BEGIN');
$prepared_id = $prep->query_safe(
	qq{SELECT outbox_publish('$topic', 'prepared', 'prepared before restart'::text)});
$published{$prepared_id} = 1;
$prep->query_safe(q{PREPARE TRANSACTION 'p2'});
$prep->quit;
$node->restart;
wait_relay_running($node);
traffic(20, 'after restart');
$node->safe_psql('postgres', q{COMMIT PREPARED 'p2'});
$took = seconds_until_sent($prepared_id, 30);
ok(defined $took && $took < 6,
	'a transaction prepared before a restart is sent at once when committed ('
	  . ($took // 'never') . ' s)');

# 4. With the trigger disabled the bound cannot see a row: every read
# starts from the low end while the trigger does not fire, and once more
# after it fires again, long before the periodic one.
traffic(10, 'before disabled trigger');
$node->safe_psql('postgres',
	'ALTER TABLE inbox_outbox.outbox DISABLE TRIGGER zz_outbox_floor');
traffic(3, 'while the trigger is disabled');
my $hidden_id = '01BX5ZZKBKACTAV9WEVGEMMVRZ';	# 2017
$node->safe_psql('postgres',
	qq{INSERT INTO inbox_outbox.outbox (id, topic, key, payload)
	   VALUES ('$hidden_id', '$topic', 'hidden', 'trigger disabled')});
$published{$hidden_id} = 1;
$took = seconds_until_sent($hidden_id, 60);
ok(defined $took && $took < 10,
	'a row written while the trigger is disabled is sent while it still is ('
	  . ($took // 'never') . ' s)');
# Disabled and enabled again in one transaction, with a row between: the
# trigger's version changed.
my $between_id = '01BX5ZZKBKACTAV9WEVGEMMVS0';
$node->safe_psql('postgres', qq{
	BEGIN;
	ALTER TABLE inbox_outbox.outbox DISABLE TRIGGER zz_outbox_floor;
	INSERT INTO inbox_outbox.outbox (id, topic, key, payload)
	VALUES ('$between_id', '$topic', 'hidden', 'between disable and enable');
	ALTER TABLE inbox_outbox.outbox ENABLE ALWAYS TRIGGER zz_outbox_floor;
	COMMIT});
$published{$between_id} = 1;
$took = seconds_until_sent($between_id, 60);
ok(defined $took && $took < 10,
	'a row written between DISABLE and ENABLE in one transaction is sent ('
	  . ($took // 'never') . ' s)');
traffic(3, 'after disabled trigger');

# 5. The cost: 20,000 rows deleted while a snapshot holds vacuum back.
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$holder->query_safe('SELECT count(*) FROM pg_class');
my @bulk = split /\n/, $node->safe_psql('postgres',
	qq{SELECT outbox_publish('$topic', 'bulk' || g % 50, 'bulk ' || g)
	   FROM generate_series(1, 20000) g});
$published{$_} = 1 for @bulk;
wait_outbox_empty($node, 'postgres', 'bulk');

sub pkey_reads
{
	# the relay's statistics reach shared memory at least once a second
	$node->safe_psql('postgres', 'SELECT pg_sleep(1.5)');
	return $node->safe_psql('postgres',
		q{SELECT idx_tup_read FROM pg_stat_user_indexes
		  WHERE indexrelid = 'inbox_outbox.outbox_pkey'::regclass});
}
my $before = pkey_reads();
my $t0 = time();
for my $i (1 .. 5)
{
	traffic(20, 'single');
	# a change to the outbox's statistics is no change to its trigger
	$node->safe_psql('postgres', 'ANALYZE inbox_outbox.outbox');
}
my $reads = pkey_reads() - $before;
my $seconds = time() - $t0;
note("100 single-event rounds and 5 ANALYZEs over 20,000 dead rows read $reads index entries in $seconds s");
# Reading from the low end, each round would return every dead entry:
# at least 100 × 20,000, and so would each read after an ANALYZE if every
# relcache invalidation of the outbox led to one (5 × 20,000).  The bound
# leaves the rounds' own rows, and at most one periodic read from the low
# end (every 240 s: a slow machine reaches it within the test).
cmp_ok($reads, '<', 40_000,
	'rounds and ANALYZE do not make the relay walk the rows deleted under an old snapshot');
$holder->query_safe('COMMIT');
$holder->quit;

# Everything published arrived.
my $messages = InboxOutbox::Kafka::kcat_consume($boot, $topic,
	min => scalar(keys %published), timeout => 60);
my %seen = map { ($_->{headers}{event_id} // '') => 1 } @$messages;
my @missing = grep { !$seen{$_} } keys %published;
is(scalar(@missing), 0, 'every published event reached Kafka')
  or diag("missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)]");

# the server first: the mock cluster's exit waits for its clients
$node->stop;
$mc->stop;
done_testing();
