# examples/order_consumer.py, the consumer docs/inbox.md offers to copy,
# against a real broker and the relay:
#
#  A. two instances of one group share a four-partition topic: the second
#     joins while the first works, each applies some of the events, the
#     second takes over when the first is stopped, and every event is
#     applied once;
#  B. an instance killed mid-batch, after a database commit and before its
#     offset commit, is restarted: nothing is applied twice;
#  C. a tombstone, a null key, values that are not JSON or not an object, an
#     amount that is not a number, a change the database refuses, a message
#     without an event_id header and a redelivered copy are each handled by
#     their rule on one partition, and the events after them are applied;
#     replaying the topic changes nothing;
#  D. a lost connection and a lock timeout are retried until the database
#     answers, without skipping or dead-lettering anything;
#  E. a second instance started with the group.instance.id of a running one
#     fences it: the first stops with an error, the second goes on.
#
# Every check reads the business tables, the dead-letter table or the inbox.
# The consumer runs on Debian's python3 with python3-confluent-kafka and
# python3-psycopg2, which scripts/lib.sh installs; without them the test
# fails.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $python = '/usr/bin/python3';
my $example = "$ENV{TESTDIR}/examples/order_consumer.py";
ok(system($python, '-c', 'import confluent_kafka, psycopg2') == 0,
	"$python imports confluent_kafka and psycopg2")
  or die 'scripts/lib.sh installs python3-confluent-kafka and python3-psycopg2';

my $kafka = InboxOutbox::Kafka->new(
	name => 'consumer_example',
	config => { 'auto.create.topics.enable' => 'false' });
$kafka->create_topic('orders_a', 4);
$kafka->create_topic('orders_b', 2);
$kafka->create_topic('orders_c', 1);
$kafka->create_topic('orders_d', 2);
$kafka->create_topic('orders_e', 1);

my $node = relay_node('consumer_example', $kafka->bootstrap);
my $dsn = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';

# What the test published: the consumer's results are checked against it.
$node->safe_psql('postgres',
	'CREATE TABLE published (event_id text PRIMARY KEY, key text, amount int)');

sub psql
{
	return $node->safe_psql('postgres', $_[0]);
}

# Publish one OrderPaid event per key through the outbox.
sub publish
{
	my ($topic, $amount, @keys) = @_;
	my $keys = join(',', map { "'$_'" } @keys);
	psql(qq{
		INSERT INTO published
		SELECT outbox_publish('$topic', k, jsonb_build_object('amount', $amount)), k, $amount
		FROM unnest(ARRAY[$keys]) k});
	return;
}

sub consumer_command
{
	my ($topic, $group, $app, @options) = @_;
	return [
		$python, $example,
		'--brokers', $kafka->bootstrap,
		'--dsn', "$dsn application_name=$app options='-c lock_timeout=1s'",
		'--topic', $topic, '--group', $group, @options
	];
}

# Run the consumer to its end; returns (exit status, stdout, stderr).
sub run_consumer
{
	my ($out, $err) = ('', '');
	IPC::Run::run(consumer_command(@_), '>', \$out, '2>', \$err,
		IPC::Run::timeout(60));
	return ($? >> 8, $out, $err);
}

# Start the consumer in the background; stop_consumer() stops it.
sub start_consumer
{
	my %c = (out => '', err => '');
	$c{harness} = IPC::Run::start(consumer_command(@_, '--idle-exit', 60),
		'>', \$c{out}, '2>', \$c{err}, IPC::Run::timeout(90));
	return \%c;
}

# SIGTERM, as an orchestrator stops an instance: it exits cleanly.
sub stop_consumer
{
	my ($c, $what) = @_;
	$c->{harness}->signal('TERM');
	$c->{harness}->finish;
	is($c->{harness}->full_result(0), 0, "$what: SIGTERM stopped the consumer cleanly")
	  or diag("stdout:\n$c->{out}\nstderr:\n$c->{err}");
	return;
}

# The events of keys LIKE $prefix: applied exactly once, each published one
# applied, and each order's total the sum of its amounts.
sub check_applied_once
{
	my ($prefix, $what) = @_;
	my $n = psql("SELECT count(*) FROM published WHERE key LIKE '$prefix%'");
	is( psql(qq{
			SELECT count(*), count(DISTINCT event_id) FROM applied_events
			WHERE order_key LIKE '$prefix%'}),
		"$n|$n", "$what: $n events applied, none twice");
	is( psql(qq{
			SELECT count(*) FROM published p
			FULL JOIN (SELECT * FROM applied_events WHERE order_key LIKE '$prefix%') a
			  USING (event_id)
			WHERE p.key LIKE '$prefix%' AND (a.event_id IS NULL OR a.order_key <> p.key)
			   OR p.event_id IS NULL}),
		0, "$what: the applied events are the published ones");
	is( psql(qq{
			SELECT count(*) FROM
			  (SELECT key, sum(amount) AS total FROM published
			    WHERE key LIKE '$prefix%' GROUP BY key) p
			FULL JOIN (SELECT * FROM order_totals WHERE order_key LIKE '$prefix%') t
			  ON t.order_key = p.key
			WHERE t.total IS DISTINCT FROM p.total}),
		0, "$what: every order's total is the sum of its amounts");
	return;
}

sub wait_applied
{
	my ($prefix, $what) = @_;
	$node->poll_query_until('postgres', qq{
		SELECT (SELECT count(*) FROM applied_events WHERE order_key LIKE '$prefix%')
		     = (SELECT count(*) FROM published WHERE key LIKE '$prefix%')})
	  or die "the consumer did not apply the events ($what)";
	return;
}

# Poll until the query returns something; return it.
sub poll_value
{
	my ($sql, $what) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		my $value = psql($sql);
		return $value if $value ne '';
		sleep(0.1);
	}
	die $what;
}

sub duplicates_absorbed
{
	my ($consumer) = @_;
	return psql(qq{
		SELECT coalesce(sum(duplicates_absorbed), 0) FROM inbox_outbox.inbox_consumers
		WHERE consumer = '$consumer'});
}

# A. Two instances of group "billing", without group.instance.id.  The
# first applies a round of events alone; the second joins, and events are
# published in rounds, each applied before the next, until both instances
# have applied some.  Then the first is stopped with SIGTERM, and the second
# takes over its partitions.
my @a_keys = map { "a-$_" } 1 .. 16;
my $instances_a = q{
	SELECT count(DISTINCT instance) FROM applied_events WHERE order_key LIKE 'a-%'};
my $a1 = start_consumer('orders_a', 'billing', 'consumer_a1');
publish('orders_a', 1, @a_keys);
wait_applied('a-', 'round 1');
is(psql($instances_a), 1, 'A: the first instance applied the first round');
my $a2 = start_consumer('orders_a', 'billing', 'consumer_a2');
my $rounds = 1;
while ($rounds < 40 && psql($instances_a) < 2)
{
	$rounds++;
	publish('orders_a', $rounds, @a_keys);
	wait_applied('a-', "round $rounds");
}
is(psql($instances_a), 2, "A: both instances applied events (rounds: $rounds)");
stop_consumer($a1, 'A, the first instance');
publish('orders_a', 1000, @a_keys);
wait_applied('a-', 'the round after the first instance stopped');
is( psql(q{
		SELECT count(*) FROM published p JOIN applied_events a USING (event_id)
		WHERE p.key LIKE 'a-%' AND p.amount = 1000
		  AND a.instance = (SELECT a1.instance FROM applied_events a1
		                    JOIN published p1 USING (event_id)
		                    WHERE p1.key LIKE 'a-%' AND p1.amount = 1 LIMIT 1)}),
	0, 'A: the second instance applied the last round alone');
stop_consumer($a2, 'A, the second instance');
check_applied_once('a-', 'A');

# B. Killed after the 15th applied event's commit, before its offset is
# stored; restarted under the same group.instance.id, which takes its
# partitions back at once.
publish('orders_b', $_, map { "b-$_" } 1 .. 8) foreach 1 .. 5;
wait_outbox_empty($node, 'postgres', 'B');
my ($status, $out, $err) =
  run_consumer('orders_b', 'crash', 'consumer_b', '--crash-after', 15,
	'--instance-id', 'crash-1');
is($status, 3, 'B: the first run exited abruptly') or diag("$out\n$err");
is(psql(q{SELECT count(*) FROM applied_events WHERE order_key LIKE 'b-%'}),
	15, 'B: it had committed 15 events');
($status, $out, $err) =
  run_consumer('orders_b', 'crash', 'consumer_b', '--idle-exit', 3,
	'--instance-id', 'crash-1');
is($status, 0, 'B: the restarted run exited cleanly') or diag("$out\n$err");
check_applied_once('b-', 'B');
my $dups = duplicates_absorbed('crash');
ok($dups >= 1 && $dups <= 15,
	"B: the restart absorbed $dups redelivered events of the killed batch");

# C. One partition holding, in this order:
#   0 c-1 amount 5            applied
#   1 c-1 tombstone           skipped
#   2 null key                dead-lettered
#   3 c-2 text, not JSON      dead-lettered
#   4 c-2 bytes, not UTF-8    dead-lettered
#   5 c-2 a JSON array        dead-lettered
#   6 c-2 amount "lots"       dead-lettered
#   7 c-3 amount -100         refused by order_totals' CHECK: dead-lettered
#   8 c-4 without event_id    dead-lettered (produced by kcat)
#   9 c-1 tombstone, no id    skipped (kcat)
#  10 copy of offset 0        a duplicate (kcat, same event_id)
#  11 c-1 amount 11           applied
#  12 c-3 amount 2            applied
my %c = map { my ($name, $sql) = @$_; ($name => psql("SELECT $sql")) } (
	[ first => q{outbox_publish('orders_c', 'c-1', '{"amount": 5}'::jsonb)} ],
	[ tombstone => q{outbox_publish('orders_c', 'c-1', NULL::jsonb)} ],
	[ null_key => q{outbox_publish('orders_c', NULL, '{"amount": 7}'::jsonb)} ],
	[ text => q{outbox_publish('orders_c', 'c-2', 'amount: 7'::text)} ],
	[ bytes => q{outbox_publish('orders_c', 'c-2', '\xff00'::bytea)} ],
	[ array => q{outbox_publish('orders_c', 'c-2', '[7]'::jsonb)} ],
	[ lots => q{outbox_publish('orders_c', 'c-2', '{"amount": "lots"}'::jsonb)} ],
	[ poison => q{outbox_publish('orders_c', 'c-3', '{"amount": -100}'::jsonb)} ]);
wait_outbox_empty($node, 'postgres', 'C, first part');
$kafka->produce(
	'orders_c',
	[
		[ 'c-4', '{"amount": 3}' ],
		[ 'c-1', undef ],
		[ 'c-1', '{"amount": 5}', { event_id => $c{first} } ]
	],
	partition => 0);
$c{later} = psql(q{SELECT outbox_publish('orders_c', 'c-1', '{"amount": 11}'::jsonb)});
$c{after_poison} = psql(q{SELECT outbox_publish('orders_c', 'c-3', '{"amount": 2}'::jsonb)});
wait_outbox_empty($node, 'postgres', 'C, second part');
is(scalar @{ $kafka->consume('orders_c', min => 13) }, 13, 'C: 13 messages on the partition');

($status, $out, $err) = run_consumer('orders_c', 'odd', 'consumer_c', '--idle-exit', 3);
is($status, 0, 'C: the consumer went through them all and exited cleanly')
  or diag("$out\n$err");

my $c_totals = q{
	SELECT string_agg(order_key || '=' || total, ' ' ORDER BY order_key)
	FROM order_totals WHERE order_key LIKE 'c-%'};
is(psql($c_totals), 'c-1=16 c-3=2',
	'C: the events after the odd ones were applied, the odd ones were not');
is( psql(q{SELECT string_agg(event_id, ' ' ORDER BY applied_at)
			FROM applied_events WHERE order_key LIKE 'c-%'}),
	"$c{first} $c{later} $c{after_poison}",
	'C: three events applied, once each');

my $dead_letters = q{
	SELECT kafka_offset, coalesce(event_id, '-'), coalesce(convert_from(key, 'UTF8'), '-'),
	       encode(value, 'hex'), error
	FROM consumer_dead_letter WHERE consumer = 'odd' ORDER BY kafka_offset};
my @dead = map { [ split /\|/ ] } split /\n/, psql($dead_letters);
is(scalar @dead, 7, 'C: seven messages dead-lettered');
my @expect = (
	[ 2, $c{null_key}, '-', qr/^message has no key/, '{"amount": 7}' ],
	[ 3, $c{text}, 'c-2', qr/^value is not JSON/, 'amount: 7' ],
	[ 4, $c{bytes}, 'c-2', qr/^value is not JSON/, "\xff\x00" ],
	[ 5, $c{array}, 'c-2', qr/^value is not a JSON object$/, '[7]' ],
	[ 6, $c{lots}, 'c-2', qr/^amount is not a number$/, '{"amount": "lots"}' ],
	[ 7, $c{poison}, 'c-3', qr/^23514: .*order_totals_total_check/, '{"amount": -100}' ],
	[ 8, '-', 'c-4', qr/^no event_id header$/, '{"amount": 3}' ]);
foreach my $i (0 .. $#expect)
{
	my ($offset, $id, $key, $error, $value) = @{ $expect[$i] };
	my $row = $dead[$i] // [];
	is_deeply([ @$row[ 0 .. 3 ] ], [ $offset, $id, $key, unpack('H*', $value) ],
		"C: dead letter at offset $offset keeps the message");
	like($row->[4] // '', $error, "C: dead letter at offset $offset says why");
}
is(psql(q{SELECT count(*) FROM inbox_outbox.inbox WHERE consumer = 'odd'}),
	9, 'C: claims for the applied and dead-lettered events, none for tombstones');
is(duplicates_absorbed('odd'), 1, 'C: the copy was absorbed as a duplicate');

# Replaying the whole topic under another group, same inbox consumer:
# every event is a duplicate, nothing is dead-lettered again.
($status, $out, $err) =
  run_consumer('orders_c', 'odd-replay', 'consumer_c', '--consumer', 'odd', '--idle-exit', 3);
is($status, 0, 'C: the replay exited cleanly') or diag("$out\n$err");
is(psql($c_totals), 'c-1=16 c-3=2', 'C: the replay changed no total');
is(psql(q{SELECT count(*) FROM consumer_dead_letter WHERE consumer = 'odd'}),
	7, 'C: and added no dead letter');
is(duplicates_absorbed('odd'), 11, 'C: it absorbed ten more duplicates');

# D. Transient errors.  The consumer runs in the background; its backend is
# terminated between two messages, and later a lock makes its change time
# out (lock_timeout = 1 s) until the lock is released.
my @d_keys = map { "d-$_" } 1 .. 5;
my $d = start_consumer('orders_d', 'retry', 'consumer_d');
publish('orders_d', 1, @d_keys);
wait_applied('d-', 'before the connection is lost');
is( psql(q{
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'consumer_d'}),
	1, "D: the consumer's backend was terminated");
publish('orders_d', 2, @d_keys);
wait_applied('d-', 'after the connection was lost');
pass('D: the consumer reconnected and applied the next events');

my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE order_totals IN SHARE MODE');
publish('orders_d', 3, @d_keys);
my $waiting = q{
	SELECT query_start FROM pg_stat_activity
	WHERE application_name = 'consumer_d' AND wait_event_type = 'Lock'};
my $first_wait = poll_value($waiting, 'the consumer does not wait for the lock');
$node->poll_query_until('postgres',
	"SELECT EXISTS ($waiting AND query_start > '$first_wait')")
  or die 'the consumer did not try again after the lock timeout';
pass('D: the change timed out on the lock and was tried again');
$locker->query_safe('COMMIT');
$locker->quit;
wait_applied('d-', 'after the lock was released');
stop_consumer($d, 'D');
check_applied_once('d-', 'D');
is(psql(q{SELECT count(*) FROM consumer_dead_letter WHERE consumer = 'retry'}),
	0, 'D: nothing was dead-lettered');

# E. The second instance with group.instance.id "same-1" fences the first.
my $e1 = start_consumer('orders_e', 'fenced', 'consumer_e1', '--instance-id', 'same-1');
publish('orders_e', 1, 'e-1');
wait_applied('e-', 'by the first instance');
my $e2 = start_consumer('orders_e', 'fenced', 'consumer_e2', '--instance-id', 'same-1');
$e1->{harness}->finish;
is($e1->{harness}->full_result(0) >> 8, 1, 'E: the fenced instance stopped with an error')
  or diag("stdout:\n$e1->{out}\nstderr:\n$e1->{err}");
publish('orders_e', 2, 'e-1');
wait_applied('e-', 'by the second instance');
stop_consumer($e2, 'E, the second instance');
check_applied_once('e-', 'E');

done_testing();
