# Ingestion, Kafka -> PostgreSQL: a subscription consumes a topic through a
# handler that records every message's (topic, partition, offset) in a table
# without a unique key, so that an effect applied twice would show.  The
# relay of the same database publishes the events (with their event_id
# header).  Checked: every message's effect exists exactly once and in
# partition order, through kill -9 of the worker mid-stream (several times),
# an immediate server stop, pause and resume, a seek backwards (the inbox
# absorbs the replays), a poison message (dead-lettered, then redriven), an
# unusable handler (stopped, no restart loop), two workers splitting the
# partitions, 900 kB messages (bounded memory) and DROP EXTENSION; the
# handler runs as the subscription's owner.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $kafka = InboxOutbox::Kafka->new(name => 'ingest');
$kafka->create_topic('orders', 3);
$kafka->create_topic('echo', 1);

my $node = relay_node('ingest', $kafka->bootstrap, conf => "restart_after_crash = on\n");

# The owner of the subscription: an ordinary role without LOGIN.
$node->safe_psql('postgres', q{
	CREATE ROLE ingester NOLOGIN;
	SELECT inbox_outbox.grant_subscriber('ingester');
	SELECT inbox_outbox.grant_publisher('ingester');
	CREATE TABLE effects (topic text, partition int, "offset" bigint, event_id text,
	                      payload text, run_as name, seq bigserial);
	GRANT INSERT ON effects TO ingester;
	GRANT USAGE ON SEQUENCE effects_seq_seq TO ingester;
	CREATE FUNCTION apply_order(topic text, partition int, "offset" bigint, key bytea,
	                            payload bytea, headers jsonb, ts timestamptz)
	RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF convert_from(payload, 'UTF8')::jsonb ->> 'poison' = 'yes' THEN
			RAISE EXCEPTION 'poison message at offset %', "offset";
		END IF;
		-- slow enough that a kill -9 meets a batch in flight
		PERFORM pg_sleep(0.0005);
		-- and an event of its own through the outbox, which must leave
		-- only if the batch committed (one event id per message)
		PERFORM public.outbox_publish('echo', partition::text, partition || '/' || "offset");
		INSERT INTO public.effects (topic, partition, "offset", event_id, payload, run_as)
		VALUES (topic, partition, "offset", headers ->> 'event_id',
		        convert_from(payload, 'UTF8'), current_user);
	END $$;
	ALTER FUNCTION apply_order OWNER TO ingester;
});

# A superuser may not own a subscription.
my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT subscribe('billing', ARRAY['orders'], 'apply_order(text, int, bigint, bytea, bytea, jsonb, timestamptz)')});
like($err, qr/a subscription cannot belong to a superuser/, 'a superuser cannot subscribe');

# Publish a first lot before subscribing: start_from => 'earliest' reads it.
sub publish
{
	my ($from, $to) = @_;
	$node->safe_psql('postgres', qq{
		SELECT outbox_publish('orders', 'order-' || (g % 50),
		                      jsonb_build_object('n', g))
		FROM generate_series($from, $to) g;
	});
}
publish(1, 2000);
wait_outbox_empty($node, 'postgres', 'relay published the first lot');

$node->safe_psql('postgres', q{
	SET ROLE ingester;
	SELECT subscribe('billing', ARRAY['orders'],
	                 'apply_order(text, int, bigint, bytea, bytea, jsonb, timestamptz)',
	                 batch_size => 200);
});

sub wait_effects
{
	my ($n, $what) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) >= $n FROM effects", 't')
	  or die "timed out waiting for $what: "
	  . $node->safe_psql('postgres', 'SELECT count(*) FROM effects') . "\n"
	  . $node->safe_psql('postgres', 'SELECT * FROM inbox_outbox.ingest_status');
}

# Every message once, and each partition in offset order.
sub check_exactly_once
{
	my ($n, $what) = @_;
	is( $node->safe_psql('postgres', q{
			SELECT count(*), count(DISTINCT (topic, partition, "offset")),
			       count(DISTINCT event_id) FROM effects}),
		"$n|$n|$n", "$what: $n effects, each message once");
	is( $node->safe_psql('postgres', q{
			SELECT count(*) FROM (
				SELECT "offset" < lag("offset") OVER (PARTITION BY partition ORDER BY seq) AS back
				FROM effects WHERE payload NOT LIKE '%poison%') s WHERE back}),
		'0', "$what: each partition applied in offset order");
}

wait_effects(2000, 'the first lot');
check_exactly_once(2000, 'first lot');
is($node->safe_psql('postgres', 'SELECT DISTINCT run_as FROM effects'),
	'ingester', 'the handler ran as the subscription owner');
is( $node->safe_psql('postgres', q{
		SELECT sum(next_offset) FROM inbox_outbox.subscription_offset
		WHERE subscription = 'billing'}),
	'2000', 'the offsets stand after the last message of each partition');

# kill -9 of the worker mid-stream, three times: the server restarts every
# backend, the launcher starts the worker again, the offsets and the effects
# rolled back together.
sub ingest_pid
{
	return $node->safe_psql('postgres',
		q{SELECT pid FROM inbox_outbox.ingest_workers() WHERE subscription = 'billing'});
}
my $total = 2000;
for my $round (1 .. 3)
{
	publish($total + 1, $total + 3000);
	$total += 3000;
	$node->poll_query_until('postgres',
		"SELECT count(*) > $total - 2500 FROM effects", 't');
	my $pid = ingest_pid();
	ok($pid, "round $round: the worker runs (pid $pid)");
	kill 'KILL', $pid;
	poll_through_restart($node, 'postgres',
		"SELECT count(*) >= $total FROM effects")
	  or diag($node->safe_psql('postgres', 'SELECT count(*) FROM effects'));
}
wait_effects($total, 'the killed rounds');
check_exactly_once($total, 'after three kill -9');

# An immediate stop of the whole server mid-stream.
publish($total + 1, $total + 3000);
$total += 3000;
$node->poll_query_until('postgres', "SELECT count(*) > $total - 2500 FROM effects", 't');
$node->stop('immediate');
$node->start;
wait_effects($total, 'the stream after an immediate stop');
sleep 1;
check_exactly_once($total, 'after pg_ctl stop -m immediate');

# The handler's own events (outbox_publish() in the batch's transaction):
# an event reaches Kafka only if its batch committed.  A batch lost in a
# crash is applied again and publishes again, under a new event id; so
# every message must have exactly one event id in Kafka (the relay may
# send one event twice after a crash, under the same id).
wait_outbox_empty($node, 'postgres', 'relay published the handler\'s events');
my %ids;
push @{ $ids{ $_->{value} } }, $_->{headers}{event_id}
  for @{ $kafka->consume('echo', min => $total, timeout => 120) };
is(scalar(keys %ids), $total, "the handler's events: one per message ($total)");
is( scalar(grep { my %u = map { $_ => 1 } @{ $ids{$_} }; keys(%u) != 1 } keys %ids),
	0, "each message's event has exactly one event id: no event of a lost batch left");

# Pause: nothing is applied; resume: the rest is.
$node->safe_psql('postgres', q{SET ROLE ingester; SELECT subscription_pause('billing')});
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM inbox_outbox.ingest_workers()}, 't')
  or die 'the worker did not leave at pause';
publish($total + 1, $total + 500);
$total += 500;
wait_outbox_empty($node, 'postgres', 'relay published during the pause');
sleep 2;
is($node->safe_psql('postgres', 'SELECT count(*) FROM effects'),
	$total - 500, 'nothing applied while paused');
is( $node->safe_psql('postgres',
		q{SELECT DISTINCT state FROM inbox_outbox.ingest_status WHERE subscription = 'billing'}),
	'paused', 'ingest_status says paused');
$node->safe_psql('postgres', q{SET ROLE ingester; SELECT subscription_resume('billing')});
wait_effects($total, 'the messages of the pause');
check_exactly_once($total, 'after pause and resume');

# An unsubscribe inside a savepoint that rolls back changes nothing: the
# worker keeps running.
my $pid_before = ingest_pid();
$node->safe_psql('postgres', q{
	SET ROLE ingester;
	BEGIN;
	SAVEPOINT s;
	SELECT unsubscribe('billing');
	ROLLBACK TO SAVEPOINT s;
	COMMIT;
});
sleep 1;
is(ingest_pid(), $pid_before, 'an unsubscribe rolled back to a savepoint leaves the worker running');

# Seek backwards: the messages are read again, and the inbox absorbs them.
my $before = $node->safe_psql('postgres',
	q{SELECT duplicates FROM inbox_outbox.ingest_workers() WHERE subscription = 'billing'});
my $p1 = $node->safe_psql('postgres',
	q{SELECT next_offset FROM inbox_outbox.subscription_offset WHERE partition = 1});
$node->safe_psql('postgres',
	q{SET ROLE ingester; SELECT subscription_seek('billing', 'orders', 1, 0)});
$node->poll_query_until('postgres', qq{
	SELECT next_offset = $p1 FROM inbox_outbox.subscription_offset
	WHERE subscription = 'billing' AND partition = 1})
  or die 'the seek was not read again';
$node->poll_query_until('postgres', qq{
	SELECT duplicates >= $p1 FROM inbox_outbox.ingest_workers() WHERE subscription = 'billing'}, 't')
  or diag($node->safe_psql('postgres', 'SELECT * FROM inbox_outbox.ingest_workers()'));
check_exactly_once($total, 'after a seek back to offset 0');

# A poison message: retried max_attempts times, then dead-lettered in the
# transaction that moves its partition past it; the rest flows on.
$node->safe_psql('postgres', q{
	SET ROLE ingester;
	SELECT subscribe('billing', ARRAY['orders'],
	                 'apply_order(text, int, bigint, bytea, bytea, jsonb, timestamptz)',
	                 batch_size => 200, max_attempts => 3);
	RESET ROLE;
	SELECT outbox_publish('orders', 'order-7', '{"poison": "yes"}'::jsonb);
});
publish($total + 1, $total + 300);
$total += 300;
wait_effects($total, 'the messages after the poison one');
$node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM inbox_outbox.ingest_dead_letter WHERE attempts = 3}, 't')
  or die 'no dead letter: ' . $node->safe_psql('postgres', 'SELECT * FROM inbox_outbox.ingest_status');
like( $node->safe_psql('postgres',
		q{SELECT sqlstate || ' ' || error FROM inbox_outbox.ingest_dead_letter}),
	qr/^P0001 poison message at offset \d+$/, 'the dead letter has the SQLSTATE and the error');
check_exactly_once($total, 'after a poison message');

# Redrive as the owner, once the handler accepts it: it runs in the caller's
# transaction, as the owner.
$node->safe_psql('postgres', q{
	CREATE OR REPLACE FUNCTION apply_order(topic text, partition int, "offset" bigint, key bytea,
	                            payload bytea, headers jsonb, ts timestamptz)
	RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.effects (topic, partition, "offset", event_id, payload, run_as)
		VALUES (topic, partition, "offset", headers ->> 'event_id',
		        convert_from(payload, 'UTF8'), current_user);
	END $$;
});
is($node->safe_psql('postgres', q{SET ROLE ingester; SELECT ingest_redrive()}),
	'1', 'redrive ran the dead letter');
$total += 1;
check_exactly_once($total, 'after the redrive');
is($node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.ingest_dead_letter'),
	'0', 'the redriven dead letter is gone');

# A handler the owner may no longer execute stops the subscription with a
# clear state; nothing is dead-lettered and no worker restarts in a loop.
$node->safe_psql('postgres', q{
	ALTER FUNCTION apply_order OWNER TO CURRENT_USER;
	REVOKE EXECUTE ON FUNCTION apply_order FROM PUBLIC;
});
publish($total + 1, $total + 10);
$node->poll_query_until('postgres', q{
	SELECT state = 'stopped: error' AND last_error LIKE '%may not execute%'
	FROM inbox_outbox.ingest_status WHERE subscription = 'billing' AND partition = 0}, 't')
  or die 'not stopped: ' . $node->safe_psql('postgres', 'SELECT * FROM inbox_outbox.ingest_status');
my $stopped_log = slurp_file($node->logfile);
my $starts = () = $stopped_log =~ /ingestion worker 0 of subscription "billing" started/g;
sleep 5;
$stopped_log = slurp_file($node->logfile);
my $starts_later = () = $stopped_log =~ /ingestion worker 0 of subscription "billing" started/g;
is($starts_later, $starts, 'a stopped worker is not started again in a loop');
is($node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.ingest_dead_letter'),
	'0', 'an unusable handler dead-letters nothing');
$node->safe_psql('postgres', q{
	GRANT EXECUTE ON FUNCTION apply_order TO ingester;
	SET ROLE ingester;
	SELECT subscription_pause('billing');
	SELECT subscription_resume('billing');
});
$total += 10;
wait_effects($total, 'the messages after the handler came back');
check_exactly_once($total, 'after the handler came back');

# workers => 2: worker w reads the partitions p with p % 2 = w, and together
# they apply every message once (a new subscription: its own inbox claims).
$node->safe_psql('postgres', q{
	CREATE TABLE split_effects (partition int, "offset" bigint, pid int);
	GRANT INSERT ON split_effects TO ingester;
	CREATE FUNCTION apply_split(topic text, partition int, "offset" bigint, key bytea,
	                            payload bytea, headers jsonb, ts timestamptz)
	RETURNS void LANGUAGE sql
	AS $$ INSERT INTO public.split_effects VALUES (partition, "offset", pg_backend_pid()) $$;
	ALTER FUNCTION apply_split OWNER TO ingester;
	SET ROLE ingester;
	SELECT subscribe('split', ARRAY['orders'],
	                 'apply_split(text, int, bigint, bytea, bytea, jsonb, timestamptz)',
	                 workers => 2);
});
my $messages = $node->safe_psql('postgres', q{
	SELECT sum(next_offset) FROM inbox_outbox.subscription_offset WHERE subscription = 'billing'});
$node->poll_query_until('postgres', "SELECT count(*) >= $messages FROM split_effects", 't')
  or die 'the two workers did not apply the topic';
is( $node->safe_psql('postgres', q{
		SELECT count(*), count(DISTINCT (partition, "offset")) FROM split_effects}),
	"$messages|$messages", "two workers applied the $messages messages once each");
is( $node->safe_psql('postgres', q{
		SELECT count(DISTINCT pid), bool_and(n = 1)
		FROM (SELECT partition, count(DISTINCT pid) AS n, min(pid) AS pid
		      FROM split_effects GROUP BY partition) s}),
	'2|t', 'each partition was applied by one worker, and two workers took part');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(DISTINCT (s.partition % 2 = w.worker)::text, ',')
		FROM split_effects s JOIN inbox_outbox.ingest_workers() w ON w.pid = s.pid}),
	'true', 'worker w applied exactly the partitions p with p % 2 = w');
$node->safe_psql('postgres', q{SET ROLE ingester; SELECT unsubscribe('split')});

# unsubscribe stops the worker and forgets the offsets.
$node->safe_psql('postgres', q{SET ROLE ingester; SELECT unsubscribe('billing')});
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM inbox_outbox.ingest_workers()}, 't')
  or die 'the worker did not leave at unsubscribe';
is($node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.subscription_offset'),
	'0', 'unsubscribe forgot the offsets');

# Large messages: 300 of 900 kB.  What the worker holds stays bounded (the
# consumer's queue caps, 16 MB of keys and values per batch; a batch of 500
# such messages would be 450 MB; the handler is slow, so that librdkafka
# fetches ahead as far as it may): its peak resident memory, read once it has
# consumed them, stays far below what all of them take.
$kafka->create_topic('big', 1, 'max.message.bytes' => 2000000);
$node->safe_psql('postgres', q{
	CREATE TABLE big_effects ("offset" bigint, bytes int);
	GRANT INSERT ON big_effects TO ingester;
	CREATE FUNCTION apply_big(topic text, partition int, "offset" bigint, key bytea,
	                          payload bytea, headers jsonb, ts timestamptz)
	RETURNS void LANGUAGE sql
	AS $$ SELECT pg_sleep(0.01); INSERT INTO public.big_effects VALUES ("offset", octet_length(payload)) $$;
	ALTER FUNCTION apply_big OWNER TO ingester;
});
$kafka->produce('big', [ map { [ "k$_", ('x' x 900_000) ] } 1 .. 300 ]);
$node->safe_psql('postgres', q{
	SET ROLE ingester;
	SELECT subscribe('bulk', ARRAY['big'],
	                 'apply_big(text, int, bigint, bytea, bytea, jsonb, timestamptz)',
	                 event_id => 'offset');
});
$node->poll_query_until('postgres', 'SELECT count(*) = 300 FROM big_effects', 't')
  or die 'the large messages were not applied';
is($node->safe_psql('postgres', 'SELECT count(*), min(bytes), count(DISTINCT "offset") FROM big_effects'),
	'300|900000|300', '300 messages of 900 kB, each applied once');
my $bulk_pid = $node->safe_psql('postgres',
	q{SELECT pid FROM inbox_outbox.ingest_workers() WHERE subscription = 'bulk'});
my ($hwm) = slurp_file("/proc/$bulk_pid/status") =~ /^VmHWM:\s+(\d+) kB/m;
ok(defined $hwm, 'the worker\'s peak memory was read');
cmp_ok($hwm // 1e9, '<', 100 * 1024,
	"the worker's peak resident memory, " . ($hwm // '?') . " kB, is under 100 MB (the messages took 270 MB)");

# DROP EXTENSION stops the workers for good: none is started again.
$node->safe_psql('postgres', 'DROP EXTENSION inbox_outbox');
$node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'inbox_outbox ingest'}, 't')
  or die 'an ingestion worker outlived DROP EXTENSION';
my $log_before = slurp_file($node->logfile);
sleep 3;
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'inbox_outbox ingest'}),
	'0', 'no ingestion worker after DROP EXTENSION');
is(length(slurp_file($node->logfile)) - length($log_before) < 2000 ? 'quiet' : 'noisy',
	'quiet', 'no worker restarts in a loop after DROP EXTENSION');

$node->stop;
$kafka->stop;
done_testing();
