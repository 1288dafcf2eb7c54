# Ingestion, Kafka -> PostgreSQL, through faults: every message's effect
# exists exactly once and each partition is applied in offset order.  The
# handler records the (topic, partition, offset) of every message it is
# given in a table without a unique key, so that an effect applied twice, or
# one that is missing, shows.  The faults, one subscription (and one topic)
# each:
#
#  1. the broker stopped for ~10 s mid-stream and started again, while the
#     relay has events to send: ingest_status says "broker unreachable", and
#     once the broker is back everything is consumed, once;
#  2. a transactional producer that commits some transactions and aborts
#     others: only the committed records reach the handler;
#  3. a compacted topic with tombstones, read with event_id => 'offset':
#     the handler gets payload IS NULL for a tombstone;
#  4. a handler that fails with a deadlock (40P01) the first time it sees
#     some messages: the batch is retried, nothing is dead-lettered even
#     with max_attempts => 1, and the effects exist once; and a deadlock
#     that lasts: the retries back off, and once it is gone the batch goes
#     through once;
#  5. a retention gap (a seek far beyond the end of a partition): a row in
#     ingest_gap, "stopped: gap" for that partition only while the others
#     go on, and a seek back to a valid offset resumes it;
#  6. a partition added to a topic while the subscription runs: its
#     messages are ingested within 30 s;
#  7. a failover: the primary is stopped with -m immediate mid-stream and a
#     streaming standby promoted; there the worker resumes from the offsets
#     that replicated with the effects, and every effect of every topic
#     exists once.
#
# Clients: kcat (through InboxOutbox::Kafka) and Debian's python3 with
# python3-confluent-kafka for the transactional producer and
# create_partitions; without them the test fails instead of skipping.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $started = time;
my $python = '/usr/bin/python3';
ok(system($python, '-c', 'import confluent_kafka') == 0,
	"$python imports confluent_kafka")
  or die 'scripts/lib.sh installs python3-confluent-kafka';

my $kafka = InboxOutbox::Kafka->new(name => 'ingest_faults');
my $node = relay_node('ingest_primary', $kafka->bootstrap,
	init => { allows_streaming => 1 },
	conf => "restart_after_crash = on\n");

# The transactional producer, a producer of many messages with headers (kcat
# takes a run per message when each has its own header) and the partition
# adder.
my $tool = "$PostgreSQL::Test::Utils::tmp_check/081_kafka_tool.py";
open(my $tool_fh, '>', $tool) or die "could not write $tool: $!";
print $tool_fh <<'PY';
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewPartitions

command, bootstrap, topic = sys.argv[1:4]
if command == 'transactions':
    # Each step: (commit or abort, event id prefix, first n, last n).
    plan = [('commit', 'c', 1, 40), ('abort', 'a', 1, 40),
            ('commit', 'c', 41, 80), ('abort', 'a', 41, 60),
            ('commit', 'c', 81, 100)]
    p = Producer({'bootstrap.servers': bootstrap,
                  'transactional.id': 'inbox_outbox-081',
                  'enable.idempotence': True})
    p.init_transactions(60)
    for end, prefix, first, last in plan:
        p.begin_transaction()
        for n in range(first, last + 1):
            p.produce(topic, key=('k%d' % n).encode(),
                      value=json.dumps({'n': n, 'end': end}).encode(),
                      partition=n % 2,
                      headers=[('event_id', ('%s-%d' % (prefix, n)).encode())])
        # the aborted records are in the log, between committed ones
        if p.flush(60) != 0:
            sys.exit('records not delivered')
        if end == 'commit':
            p.commit_transaction(60)
        else:
            p.abort_transaction(60)
    print('done')
elif command == 'produce':
    # event id header PREFIX-n, key kn, value {"n": n}, for n in FIRST..LAST
    prefix, first, last = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    where = {'partition': int(sys.argv[7])} if len(sys.argv) > 7 else {}
    failed = []
    p = Producer({'bootstrap.servers': bootstrap, 'enable.idempotence': True})
    for n in range(first, last + 1):
        p.produce(topic, key=('k%d' % n).encode(), value=json.dumps({'n': n}).encode(),
                  headers=[('event_id', ('%s-%d' % (prefix, n)).encode())],
                  on_delivery=lambda err, msg: err and failed.append(str(err)), **where)
    if p.flush(60) != 0 or failed:
        sys.exit('not delivered: %s' % failed[:3])
    print('done')
elif command == 'add-partitions':
    admin = AdminClient({'bootstrap.servers': bootstrap})
    for f in admin.create_partitions([NewPartitions(topic, int(sys.argv[4]))]).values():
        f.result(60)
    print('done')
else:
    sys.exit('unknown command ' + command)
PY
close($tool_fh) or die "could not write $tool: $!";

sub kafka_tool
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	my $ok = eval {
		IPC::Run::run([ $python, $tool, $args[0], $kafka->bootstrap, @args[ 1 .. $#args ] ],
			'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(120));
	};
	$err .= $@ if $@;
	ok($ok && $out =~ /^done$/m, "python confluent_kafka: @args")
	  or die "$tool failed:\n$out\n$err";
	return;
}

# The owner of the subscriptions, an ordinary role without LOGIN; the
# handler records every message.  fail_once names the messages on which the
# handler raises a deadlock error the first "failures" times it runs; their
# tries are counted in sequences, since a row written by the failing
# transaction would roll back with it.
$node->safe_psql('postgres', q{
	CREATE ROLE ingester NOLOGIN;
	SELECT inbox_outbox.grant_subscriber('ingester');
	CREATE TABLE effects (topic text, partition int, "offset" bigint, event_id text,
	                      key text, payload text, tombstone boolean, seq bigserial);
	CREATE TABLE fail_once (event_id text PRIMARY KEY, tries regclass NOT NULL,
	                        failures int NOT NULL DEFAULT 1);
	CREATE TABLE published (event_id text);
	GRANT INSERT ON effects TO ingester;
	GRANT USAGE ON SEQUENCE effects_seq_seq TO ingester;
	GRANT SELECT ON fail_once TO ingester;
	CREATE FUNCTION apply_message(topic text, partition int, "offset" bigint, key bytea,
	                              payload bytea, headers jsonb, ts timestamptz)
	RETURNS void LANGUAGE plpgsql AS $$
	DECLARE
		tries regclass;
		failures int;
	BEGIN
		SELECT f.tries, f.failures INTO tries, failures FROM public.fail_once f
		WHERE f.event_id = headers ->> 'event_id';
		IF tries IS NOT NULL AND nextval(tries) <= failures THEN
			RAISE EXCEPTION 'deadlock injected at % [%] offset %', topic, partition, "offset"
				USING ERRCODE = '40P01';
		END IF;
		-- slow enough that a fault meets a backlog in flight
		IF topic IN ('stream', 'failover') THEN
			PERFORM pg_sleep(0.004);
		END IF;
		INSERT INTO public.effects (topic, partition, "offset", event_id, key, payload, tombstone)
		VALUES (topic, partition, "offset", headers ->> 'event_id', convert_from(key, 'UTF8'),
		        convert_from(payload, 'UTF8'), payload IS NULL);
	END $$;
	ALTER FUNCTION apply_message OWNER TO ingester;
});
my $handler = 'apply_message(text, int, bigint, bytea, bytea, jsonb, timestamptz)';

sub subscribe
{
	my ($name, $topic, $options) = @_;
	$options = $options ? ", $options" : '';
	$node->safe_psql('postgres', qq{
		SET ROLE ingester;
		SELECT subscribe('$name', ARRAY['$topic'], '$handler'$options);
	});
	return;
}

sub status
{
	my ($n, $sub) = @_;
	return $n->safe_psql('postgres', qq{
		SELECT string_agg(format('%s [%s] next %s high %s: %s%s', topic, partition,
		                         next_offset, high_watermark, state,
		                         ' (' || last_error || ')'), E'\n' ORDER BY partition)
		FROM inbox_outbox.ingest_status WHERE subscription = '$sub'});
}

# Poll $query on node $n until it returns 't', for at most $seconds; a
# test that fails with $diag's output (SQL, or a sub) if it never does, and
# the end of the file then, as what follows depends on it (unless soft).
sub wait_for
{
	my ($n, $query, $seconds, $what, $diag, %opts) = @_;
	my $from = time;
	my ($out, $err) = ('', '');
	while (time - $from < $seconds)
	{
		my $ret;
		($ret, $out, $err) = $n->psql('postgres', $query);
		if ($out eq 't')
		{
			pass(sprintf('%s (%.1f s)', $what, time - $from));
			return 1;
		}
		sleep 0.2;
	}
	fail(sprintf('%s within %.0f s', $what, $seconds));
	diag("last answer: $out $err");
	diag(ref $diag eq 'CODE' ? $diag->() : $n->safe_psql('postgres', $diag)) if $diag;
	die "gave up waiting: $what" unless $opts{soft};
	return 0;
}

# Poll the server log of node $n for $re, for at most $seconds.
sub wait_for_log
{
	my ($n, $re, $seconds, $what) = @_;
	my $from = time;
	while (time - $from < $seconds)
	{
		if (slurp_file($n->logfile) =~ $re)
		{
			pass($what);
			return;
		}
		sleep 0.2;
	}
	fail($what);
	diag("not in the server log: $re");
	return;
}

sub effects_of
{
	my ($n, $topic) = @_;
	return $n->safe_psql('postgres',
		"SELECT count(*) FROM effects WHERE topic = '$topic'");
}

# Every expected message has exactly one effect, there is no other, and
# each partition was applied in offset order.  $expected: the identities of
# the messages, "partition/offset" (the default) or event ids (id =>
# 'event_id', for a topic the relay sends to, where Kafka may hold a
# message twice and the inbox absorbs the second).
sub check_topic
{
	my ($n, $topic, $expected, $what, %opts) = @_;
	my $id = ($opts{id} // '') eq 'event_id' ? 'event_id' : q{partition || '/' || "offset"};
	my %count;
	$count{$_}++
	  foreach split /\n/, $n->safe_psql('postgres',
		"SELECT $id FROM effects WHERE topic = '$topic'");
	my %want = map { $_ => 1 } @$expected;
	my @missing = grep { !$count{$_} } sort keys %want;
	my @twice = grep { $count{$_} > 1 } sort keys %count;
	my @other = grep { !$want{$_} } sort keys %count;
	my $total = 0;
	$total += $_ foreach values %count;
	is_deeply(
		{
			effects => $total,
			missing => [ @missing[ 0 .. ($#missing < 9 ? $#missing : 9) ] ],
			twice => [ @twice[ 0 .. ($#twice < 9 ? $#twice : 9) ] ],
			unexpected => [ @other[ 0 .. ($#other < 9 ? $#other : 9) ] ]
		},
		{ effects => scalar(keys %want), missing => [], twice => [], unexpected => [] },
		"$what: every message of $topic has exactly one effect ("
		  . scalar(@$expected) . ')');
	is( $n->safe_psql('postgres', qq{
			SELECT count(*) || ' of ' || (SELECT count(*) FROM effects WHERE topic = '$topic')
			FROM (SELECT "offset" <= lag("offset") OVER (PARTITION BY partition ORDER BY seq) AS back
			      FROM effects WHERE topic = '$topic') s
			WHERE back}),
		'0 of ' . scalar(@$expected),
		"$what: each partition of $topic applied once, in offset order");
	return;
}

# What Kafka holds (read_committed), as "partition/offset".
sub in_kafka
{
	my ($topic, $min, %opts) = @_;
	my $messages = $kafka->consume_raw($topic, min => $min, %opts);
	is(scalar @$messages, $min, "Kafka holds the $min messages of $topic")
	  or die 'the messages did not reach Kafka';
	return [ map { "$_->{partition}/$_->{offset}" } @$messages ];
}

sub publish_stream
{
	my ($from, $to) = @_;
	$node->safe_psql('postgres', qq{
		INSERT INTO published
		SELECT outbox_publish('stream', 'k' || (g % 10), jsonb_build_object('n', g))::text
		FROM generate_series($from, $to) g;
	});
	return;
}

sub published
{
	my ($n) = @_;
	return [ split /\n/, $n->safe_psql('postgres', 'SELECT event_id FROM published') ];
}

my $part_started = time;
sub part_done
{
	my ($what) = @_;
	note(sprintf('%s took %.1f s (%.1f s since the start)',
		$what, time - $part_started, time - $started));
	$part_started = time;
	return;
}

#
# 1. The broker stopped mid-stream for ~10 s.
#
$kafka->create_topic('stream', 3);
$kafka->create_topic('compact', 2, 'cleanup.policy' => 'compact');
is($kafka->describe_topic('compact')->{config}{'cleanup.policy'}, 'compact',
	'the topic of part 3 is compacted');
subscribe('s_stream', 'stream', 'batch_size => 50');
# an idle subscription through the outage (its topic is filled in part 3)
subscribe('s_compact', 'compact', q{event_id => 'offset'});
wait_for($node, q{
	SELECT count(*) = 2 AND bool_and(state = 'idle') FROM inbox_outbox.ingest_status
	WHERE subscription = 's_compact'}, 30,
	'the idle subscription has its offsets', sub { status($node, 's_compact') });
publish_stream(1, 400);
wait_for($node, q{SELECT count(*) >= 60 FROM effects WHERE topic = 'stream'}, 60,
	'the stream is being applied', sub { status($node, 's_stream') });
my $down_at = time;
$kafka->stop;
my $at_stop = effects_of($node, 'stream');
note("the broker stopped with $at_stop of 400 effects of the first lot");
publish_stream(401, 600);
# The idle subscription notices at once.
wait_for($node, q{
	SELECT bool_and(state = 'broker unreachable') FROM inbox_outbox.ingest_status
	WHERE subscription = 's_compact'}, 30,
	'ingest_status says "broker unreachable" for an idle subscription while the broker is stopped',
	sub { status($node, 's_compact') });
is($node->safe_psql('postgres', 'SELECT count(*) > 0 FROM inbox_outbox.outbox'),
	't', 'the events of the outage wait in the outbox');
# The one that had a backlog in hand when the broker went away: until the
# broker has been away for 10 s in all.
{
	wait_for($node, q{
		SELECT bool_and(state = 'broker unreachable') FROM inbox_outbox.ingest_status
		WHERE subscription = 's_stream'}, ($down_at + 10 - time > 3 ? $down_at + 10 - time : 3),
		'ingest_status says "broker unreachable" for a subscription that was consuming when the broker stopped',
		sub { status($node, 's_stream') }, soft => 1);
}
# keep the broker away for 10 s in all (a fault's length, not a wait)
sleep(10 - (time - $down_at)) if time - $down_at < 10;
note(sprintf('the broker was away for %.1f s', time - $down_at));
$kafka->start;
my $up_at = time;
wait_outbox_empty($node, 'postgres', 'the relay sent the events of the outage');
wait_for($node, q{SELECT count(*) >= 600 FROM effects WHERE topic = 'stream'}, 60,
	'the stream is consumed after the broker came back', sub { status($node, 's_stream') });
wait_for($node, q{
	SELECT bool_and(state = 'idle') FROM inbox_outbox.ingest_status
	WHERE subscription = 's_stream'}, 30,
	'ingest_status says "idle" once the stream has caught up', sub { status($node, 's_stream') });
check_topic($node, 'stream', published($node), 'broker stopped and started', id => 'event_id');
{
	wait_for($node, q{
		SELECT bool_and(state = 'idle') FROM inbox_outbox.ingest_status
		WHERE subscription = 's_compact'}, ($up_at + 15 - time > 3 ? $up_at + 15 - time : 3),
		'an idle subscription no longer says "broker unreachable" once the broker is back',
		sub { status($node, 's_compact') }, soft => 1);
}
part_done('part 1 (broker stopped and started)');

# What each topic's effects must be, for the check on the promoted standby.
my %expected = (stream => [ published($node), id => 'event_id' ]);

#
# 2. A transactional producer that commits some transactions and aborts
#    others: only the committed records reach the handler.
#
$kafka->create_topic('txn', 2);
subscribe('s_txn', 'txn');
kafka_tool('transactions', 'txn');
my $committed = in_kafka('txn', 100);
my $uncommitted = $kafka->consume_raw('txn', isolation => 'read_uncommitted', min => 160);
is(scalar(grep { ($_->{headers}{event_id} // '') =~ /^a-\d+$/ } @$uncommitted), 60,
	'the log holds the 60 records of the aborted transactions, between committed ones');
wait_for($node, q{SELECT count(*) >= 100 FROM effects WHERE topic = 'txn'}, 30,
	'the committed records are applied', sub { status($node, 's_txn') });
# the last transaction, committed, comes after every aborted one in both
# partitions: once it is applied, an aborted record would have been too
check_topic($node, 'txn', $committed, 'transactions');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE event_id ~ '^c-\d+$' AND payload::jsonb ->> 'end' = 'commit')
		       || '/' || count(*) FILTER (WHERE event_id LIKE 'a-%')
		FROM effects WHERE topic = 'txn'}),
	'100/0', 'the handler saw the 100 committed records and none of the 60 aborted ones');
$expected{txn} = [$committed];
part_done('part 2 (transactional producer)');

#
# 3. A compacted topic with tombstones, read with event_id => 'offset'
#    (s_compact has waited idle since part 1).
#
$kafka->produce('compact',
	[ map { [ 'key-' . ($_ % 7), ($_ % 10 == 0 ? undef : "value-$_") ] } 1 .. 60 ]);
my $compacted = $kafka->consume_raw('compact', min => 60);
is(scalar @$compacted, 60, 'Kafka holds the 60 records of the compacted topic');
my %tombstone = map { ("$_->{partition}/$_->{offset}" => defined $_->{value} ? 'f' : 't') }
  @$compacted;
is(scalar(grep { $_ eq 't' } values %tombstone), 6, 'six of them are tombstones (null values)');
wait_for($node, q{SELECT count(*) >= 60 FROM effects WHERE topic = 'compact'}, 30,
	'the compacted topic is applied', sub { status($node, 's_compact') });
check_topic($node, 'compact', [ sort keys %tombstone ], 'compacted topic');
is_deeply(
	{
		map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
			SELECT partition || '/' || "offset", CASE WHEN payload IS NULL THEN 't' ELSE 'f' END
			FROM effects WHERE topic = 'compact'})
	},
	\%tombstone,
	'the handler got payload IS NULL for exactly the tombstones');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM effects
		WHERE topic = 'compact' AND tombstone AND key ~ '^key-\d$' AND event_id IS NULL}),
	'6', 'a tombstone comes with its key (and no headers)');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM inbox_outbox.inbox i
		JOIN effects e ON i.event_id = e.topic || '/' || e.partition || '/' || e."offset"
		WHERE i.consumer = 'ingest:s_compact' AND e.topic = 'compact'}),
	'60', 'event_id => offset claimed topic/partition/offset for every record');
$expected{compact} = [ [ sort keys %tombstone ] ];
part_done('part 3 (compacted topic, tombstones)');

#
# 4. A handler that fails with a deadlock the first time it sees five of
#    the messages.  max_attempts => 1: a failure counted against a message
#    would dead-letter it at once.
#
$kafka->create_topic('flaky', 2);
my @flagged = map { "f-$_" } (17, 58, 99, 140, 181);
$node->safe_psql('postgres', join("\n", map { qq{
	CREATE SEQUENCE "tries_$_";
	GRANT USAGE ON SEQUENCE "tries_$_" TO ingester;
	INSERT INTO fail_once VALUES ('$_', '"tries_$_"');} } @flagged));
kafka_tool('produce', 'flaky', 'f', 1, 200);
my $flaky = in_kafka('flaky', 200);
subscribe('s_flaky', 'flaky', 'batch_size => 20, max_attempts => 1');
wait_for($node, q{SELECT count(*) >= 200 FROM effects WHERE topic = 'flaky'}, 60,
	'the messages of the flaky handler are applied', sub { status($node, 's_flaky') });
check_topic($node, 'flaky', $flaky, 'deadlocks');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM pg_sequences WHERE sequencename LIKE 'tries_f-%' AND last_value >= 2}),
	'5', 'each of the five messages failed with a deadlock, and was tried again');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM inbox_outbox.ingest_dead_letter WHERE subscription = 's_flaky'}),
	'0', 'nothing was dead-lettered');
is( $node->safe_psql('postgres', q{
		SELECT dead_lettered FROM inbox_outbox.ingest_workers() WHERE subscription = 's_flaky'}),
	'0', 'the worker counted no dead letter');
$expected{flaky} = [$flaky];
part_done('part 4 (deadlocks)');

#
# 4b. A transient error that lasts: the batch is retried after
#     inbox_outbox.retry_backoff (200 ms here), doubling, also when more
#     messages arrive meanwhile; then it goes through, once.
#
$kafka->create_topic('backoff', 1);
$node->safe_psql('postgres', q{
	CREATE SEQUENCE "tries_b-1";
	GRANT USAGE ON SEQUENCE "tries_b-1" TO ingester;
	INSERT INTO fail_once VALUES ('b-1', '"tries_b-1"', 1000000);
});
subscribe('s_backoff', 'backoff');
kafka_tool('produce', 'backoff', 'b', 1, 1);
wait_for($node, q{
	SELECT state = 'retrying' AND last_error LIKE 'deadlock injected at backoff [0] offset 0'
	FROM inbox_outbox.ingest_status WHERE subscription = 's_backoff'}, 30,
	'ingest_status says "retrying", with the deadlock, while the handler fails',
	sub { status($node, 's_backoff') });
# messages that arrive while the first one is retried
kafka_tool('produce', 'backoff', 'b', 2, 10);
{
	my $tries = sub {
		return $node->safe_psql('postgres', q{SELECT last_value FROM "tries_b-1"});
	};
	my ($from, $first) = (time, $tries->());
	# the length of a measure, not a wait for something to happen
	sleep 2;
	my ($seconds, $during) = (time - $from, $tries->() - $first);
	cmp_ok($during, '<=', 6,
		sprintf('at most 6 tries in %.1f s of a backoff of 200 ms, doubling', $seconds));
}
$node->safe_psql('postgres', q{UPDATE fail_once SET failures = 0 WHERE event_id = 'b-1'});
wait_for($node, q{SELECT count(*) >= 10 FROM effects WHERE topic = 'backoff'}, 30,
	'the batch goes through once the transient error is gone',
	sub { status($node, 's_backoff') });
my $backoff = in_kafka('backoff', 10);
check_topic($node, 'backoff', $backoff, 'a lasting transient error');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM inbox_outbox.ingest_dead_letter WHERE subscription = 's_backoff'}),
	'0', 'a lasting transient error dead-letters nothing');
$expected{backoff} = [$backoff];
part_done('part 4b (a lasting transient error)');

#
# 5. A retention gap: a seek far beyond the end of partition 1.
#
$kafka->create_topic('gap', 3);
kafka_tool('produce', 'gap', "g$_", 1, 30, $_) for 0 .. 2;
subscribe('s_gap', 'gap');
wait_for($node, q{SELECT count(*) >= 90 FROM effects WHERE topic = 'gap'}, 30,
	'the first lot of the gap topic is applied', sub { status($node, 's_gap') });
$node->safe_psql('postgres',
	q{SET ROLE ingester; SELECT subscription_seek('s_gap', 'gap', 1, 1000000)});
wait_for($node, q{
	SELECT count(*) = 1 FROM inbox_outbox.ingest_gap
	WHERE subscription = 's_gap' AND topic = 'gap' AND partition = 1
	  AND from_offset = 1000000 AND action = 'stopped'}, 30,
	'the gap is recorded in ingest_gap, action stopped',
	sub { status($node, 's_gap') . "\n" . $node->safe_psql('postgres', 'TABLE inbox_outbox.ingest_gap') });
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM inbox_outbox.ingest_gap WHERE subscription = 's_gap'}),
	'1', 'one gap, of partition 1 only');
wait_for_log($node,
	qr/subscription "s_gap" stopped reading gap \[1\]: offset 1000000 is no longer in Kafka/,
	10, 'the server log says the partition stopped');
kafka_tool('produce', 'gap', "g$_", 31, 40, $_) for 0 .. 2;
wait_for($node, q{
	SELECT count(*) FILTER (WHERE partition = 0) = 40 AND count(*) FILTER (WHERE partition = 2) = 40
	FROM effects WHERE topic = 'gap'}, 30,
	'the other partitions go on', sub { status($node, 's_gap') });
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM effects WHERE topic = 'gap' AND partition = 1}),
	'30', 'nothing more of the stopped partition was applied');
is( $node->safe_psql('postgres', q{
		SELECT next_offset FROM inbox_outbox.subscription_offset
		WHERE subscription = 's_gap' AND partition = 1}),
	'1000000', 'its offset stays where the seek put it');
is( $node->safe_psql('postgres', q{
		SELECT state FROM inbox_outbox.ingest_status WHERE subscription = 's_gap' AND partition = 1}),
	'stopped: gap', 'ingest_status says "stopped: gap" for partition 1');
{
	wait_for($node, q{
		SELECT bool_and(state IN ('idle', 'consuming')) FROM inbox_outbox.ingest_status
		WHERE subscription = 's_gap' AND partition <> 1}, 5,
		'ingest_status does not say "stopped: gap" for the partitions that go on',
		sub { status($node, 's_gap') }, soft => 1);
}
$node->safe_psql('postgres',
	q{SET ROLE ingester; SELECT subscription_seek('s_gap', 'gap', 1, 30)});
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM inbox_outbox.ingest_gap WHERE subscription = 's_gap'}),
	'0', 'the seek back settled the gap');
wait_for($node, q{SELECT count(*) >= 120 FROM effects WHERE topic = 'gap'}, 30,
	'the partition resumes after a seek back to a valid offset', sub { status($node, 's_gap') });
wait_for($node, q{
	SELECT bool_and(state = 'idle') FROM inbox_outbox.ingest_status WHERE subscription = 's_gap'}, 15,
	'ingest_status says "idle" for every partition once the gap is settled',
	sub { status($node, 's_gap') });
my $gap = in_kafka('gap', 120);
check_topic($node, 'gap', $gap, 'retention gap');
$expected{gap} = [$gap];
part_done('part 5 (retention gap)');

#
# 6. A partition added to the topic while the subscription runs.
#
$kafka->create_topic('grow', 1);
kafka_tool('produce', 'grow', 'w', 1, 20);
subscribe('s_grow', 'grow');
wait_for($node, q{SELECT count(*) >= 20 FROM effects WHERE topic = 'grow'}, 30,
	'the one partition is applied', sub { status($node, 's_grow') });
kafka_tool('add-partitions', 'grow', 3);
my $grown_at = time;
my $partitions = 0;
while (time - $grown_at < 30)
{
	$partitions = $kafka->partition_count('grow');
	last if $partitions == 3;
	sleep 0.2;
}
is($partitions, 3, 'the topic has three partitions') or die 'create_partitions did not take';
kafka_tool('produce', 'grow', 'w', 21, 40, 1);
kafka_tool('produce', 'grow', 'w', 41, 60, 2);
kafka_tool('produce', 'grow', 'w', 61, 70, 0);
wait_for($node, q{SELECT count(*) >= 70 FROM effects WHERE topic = 'grow'},
	30 - (time - $grown_at),
	'the messages of the new partitions are applied within 30 s of their creation',
	sub { status($node, 's_grow') });
my $grow = in_kafka('grow', 70);
check_topic($node, 'grow', $grow, 'partitions added');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(partition || ':' || next_offset, ' ' ORDER BY partition)
		FROM inbox_outbox.subscription_offset WHERE subscription = 's_grow'}),
	'0:30 1:20 2:20', 'the new partitions have offsets, past their messages');
$expected{grow} = [$grow];
part_done('part 6 (partitions added)');

#
# 7. Failover to a streaming standby, mid-stream.
#
$kafka->create_topic('failover', 3);
subscribe('s_fail', 'failover', 'batch_size => 50');
$node->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('ingest_standby');
$standby->init_from_backup($node, 'b', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby, 'replay');
is( $standby->safe_psql('postgres',
		q{SELECT current_setting('shared_preload_libraries') || ' ' || current_setting('inbox_outbox.brokers')}),
	'inbox_outbox ' . $kafka->bootstrap,
	'the standby has the same postgresql.conf lines (from the backup)');
kafka_tool('produce', 'failover', 'x', 1, 600);
wait_for($node, q{SELECT count(*) >= 150 FROM effects WHERE topic = 'failover'}, 60,
	'the failover topic is being applied', sub { status($node, 's_fail') });
$node->stop('immediate');
my $replicated = effects_of($standby, 'failover');
cmp_ok($replicated, '<', 600,
	"the standby had $replicated of the 600 effects when the primary stopped");
is( $standby->safe_psql('postgres', q{
		SELECT string_agg(format('%s: next %s, effects %s', o.partition, o.next_offset,
		                         (SELECT count(*) FROM effects e
		                          WHERE e.topic = o.topic AND e.partition = o.partition)),
		                  ', ' ORDER BY o.partition)
		FROM inbox_outbox.subscription_offset o WHERE o.subscription = 's_fail'
		  AND o.next_offset <> (SELECT count(*) FROM effects e
		                        WHERE e.topic = o.topic AND e.partition = o.partition)}),
	'', 'on the standby, each offset of s_fail stands right after the effects it has');
$standby->promote;
kafka_tool('produce', 'failover', 'x', 601, 700);
wait_for($standby, q{SELECT count(*) >= 700 FROM effects WHERE topic = 'failover'}, 60,
	'the promoted standby consumes on from the offsets it has',
	sub { status($standby, 's_fail') });
my $failover = in_kafka('failover', 700);
check_topic($standby, 'failover', $failover, 'failover');
is( $standby->safe_psql('postgres', q{
		SELECT duplicates FROM inbox_outbox.ingest_workers() WHERE subscription = 's_fail'}),
	'0', 'the promoted standby read nothing twice (the inbox absorbed no message)');
# and every topic of the other parts, as the standby has them
foreach my $topic (sort keys %expected)
{
	my ($ids, %opts) = @{ $expected{$topic} };
	check_topic($standby, $topic, $ids, 'on the promoted standby', %opts);
}
is( $standby->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.ingest_dead_letter'),
	'0', 'no dead letter anywhere');
part_done('part 7 (failover)');

$standby->stop;
$kafka->stop;
done_testing();
