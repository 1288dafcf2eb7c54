# What the relay records after a round can never stop it.
#
# - A round of 5,000 rows that all go to the dead-letter table at once
#   (above inbox_outbox.max_message_bytes, with no broker reachable) is
#   recorded by the same relay process, which stays up (it used to read
#   the last failure's text after freeing it).
# - A dead letter whose id is already in the dead-letter table (an
#   operator copied it back into the outbox and kept the audit row) is
#   recorded over the old row; the acknowledged rows of its round stay
#   deleted and are sent once (they used to be sent again and again).
# - Rows with an infinite or pre-1970 created_at are sent, and so are rows
#   inserted with attempts but no retry time.
# - An event exactly at inbox_outbox.max_message_bytes, as outbox_publish()
#   counts it, is sent (the relay also counted the event_id header).
# - relay_status.last_error clears once a round goes through, and its time
#   stays.
# - A producer setting librdkafka refuses makes the relay wait and say why,
#   not restart every two seconds.
# - A failure that cannot be recorded (a trigger refuses the dead letter)
#   costs only its own row.
use strict;
use warnings;

use InboxOutbox::Kafka;
use InboxOutbox::Relay;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $kafka = InboxOutbox::Kafka->new(name => 'records');
$kafka->create_topic('orders', 3);

my $node = relay_node(
	'records',
	$kafka->bootstrap,
	conf => q{
inbox_outbox.max_message_bytes = 1000
});
my $pid = relay_pid($node);

# 1. A dead letter whose id is in the dead-letter table already.
my $id = '01M8P8EV55R6PBKXBRHB8RPP00';
$node->safe_psql('postgres',
	"INSERT INTO inbox_outbox.outbox (id, topic, key, payload) VALUES ('$id', 'orders', 'big', convert_to(repeat('x', 2000), 'UTF8'))"
);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM inbox_outbox.outbox_dead_letter WHERE id = '$id'")
  or die 'the oversize row was not dead-lettered';
my $first_failed_at = $node->safe_psql('postgres',
	"SELECT failed_at FROM inbox_outbox.outbox_dead_letter WHERE id = '$id'");
like(
	$node->safe_psql('postgres', 'SELECT last_error FROM inbox_outbox.relay_status'),
	qr/larger than inbox_outbox.max_message_bytes/,
	'last_error says why the row was dead-lettered');

$node->safe_psql(
	'postgres', qq{
BEGIN;
INSERT INTO inbox_outbox.outbox (id, topic, key, payload, headers, created_at)
	SELECT id, topic, key, payload, headers, created_at FROM inbox_outbox.outbox_dead_letter;
SELECT outbox_publish('orders', 'k1', 'with the copied dead letter'::text);
COMMIT;
});
$node->poll_query_until('postgres',
	"SELECT failed_at > '$first_failed_at' FROM inbox_outbox.outbox_dead_letter WHERE id = '$id'")
  or die 'the repeated dead letter was not recorded';
wait_outbox_empty($node, 'postgres', 'repeated dead letter');
is($node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.outbox_dead_letter'),
	'1', 'the repeated dead letter replaced the old row');

# Another event after it, so that a relay that looped would have sent k1
# again by the time this one arrives.
$node->safe_psql('postgres', q{SELECT outbox_publish('orders', 'k2', 'after'::text)});
wait_outbox_empty($node, 'postgres', 'k2');
my $messages = $kafka->consume('orders', min => 2);
is_deeply([ sort map { $_->{key} } @$messages ],
	[qw(k1 k2)], 'each acknowledged event reached Kafka once');
is(relay_pid($node), $pid, 'the relay never restarted');

# Rows whose created_at Kafka cannot carry are sent, stamped by the
# producer (such a row used to stop the relay for every key).
$node->safe_psql('postgres',
	q{INSERT INTO inbox_outbox.outbox (topic, key, payload, created_at) VALUES
	  ('orders', 'inf', '\x01', 'infinity'), ('orders', 'inf', '\x02', '-infinity'),
	  ('orders', 'inf', '\x03', '1900-01-01')});
wait_outbox_empty($node, 'postgres', 'created_at out of range');
is(relay_pid($node), $pid, 'rows with infinite or pre-1970 created_at are sent without a restart');

# A row inserted directly with attempts > 0 and no retry time is due now
# (it used to be skipped for good, holding back every later row of its key).
$node->safe_psql('postgres',
	q{INSERT INTO inbox_outbox.outbox (topic, key, payload, attempts) VALUES
	  ('orders', 'stuck', '\x01', 3), ('orders', 'stuck', '\x02', 0)});
wait_outbox_empty($node, 'postgres', 'attempts without a retry time');
pass('a row with attempts but no retry time is sent, and so is the next row of its key');

# What outbox_publish() accepts, the relay sends: an event exactly at the
# limit, counting the event_id header as both do.
$node->safe_psql('postgres',
	q{SELECT outbox_publish('orders', 'edge', repeat('e', 1000 - 34 - 4)::text)});
wait_outbox_empty($node, 'postgres', 'event at the limit');
is($node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.outbox_dead_letter'),
	'1', 'an event at the size limit is sent, not dead-lettered');

# 2. last_error clears once a round goes through; its time stays.
is( $node->safe_psql('postgres',
		'SELECT last_error IS NULL, last_error_at IS NOT NULL FROM inbox_outbox.relay_status'),
	't|t',
	'last_error cleared after a good round, last_error_at kept');

# 3. A value of a valid property that librdkafka refuses (the check hook
# cannot see it) stops the relay with the reason, instead of a restart
# every two seconds; a new value starts it again.
$node->safe_psql('postgres',
	"ALTER SYSTEM SET inbox_outbox.kafka_config = 'compression.codec=bogus'; SELECT pg_reload_conf();");
$node->poll_query_until('postgres',
	q{SELECT state = 'stopped' AND last_error LIKE 'invalid Kafka producer property "compression.codec"%' FROM inbox_outbox.relay_status})
  or die 'the relay did not report the refused property';
$node->safe_psql('postgres', q{SELECT outbox_publish('orders', 'k3', 'after the fix'::text)});
# A stable pid over longer than the launcher's restart delay (2 s) shows
# that the relay waits rather than failing and being started again.
$node->safe_psql('postgres', 'SELECT pg_sleep(3)');
is(relay_pid($node), $pid, 'the relay waits instead of restarting');
is($node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.outbox'),
	'1', 'the event waits with it');
$node->safe_psql('postgres',
	"ALTER SYSTEM SET inbox_outbox.kafka_config = 'compression.codec=lz4'; SELECT pg_reload_conf();");
wait_outbox_empty($node, 'postgres', 'kafka_config fixed');
pass('a good value starts the relay again, and it delivers');
wait_relay_running($node);
$pid = relay_pid($node);

# 4. 5,000 oversize rows in one round, no broker reachable.
my $dead_port = PostgreSQL::Test::Cluster::get_free_port();
$node->safe_psql('postgres',
	"ALTER SYSTEM SET inbox_outbox.brokers = '127.0.0.1:$dead_port'; SELECT pg_reload_conf();");
$node->safe_psql('postgres',
	q{INSERT INTO inbox_outbox.outbox (topic, key, payload)
	  SELECT 'orders', 'k' || i % 10, convert_to(repeat('y', 1500), 'UTF8')
	  FROM generate_series(1, 5000) i});
$node->poll_query_until('postgres',
	'SELECT count(*) = 5001 FROM inbox_outbox.outbox_dead_letter')
  or die 'the oversize rows were not dead-lettered';
is(relay_pid($node), $pid, 'the relay recorded 5,000 dead letters in one process');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no process crashed');
like($log, qr/inbox_outbox relay moved 5000 events to inbox_outbox.outbox_dead_letter/,
	'the dead letters are logged once, with their count');
unlike($log, qr/LOG:  librdkafka: CONFWARN: .*enable\.gapless\.guarantee is experimental/,
	'librdkafka\'s warning about a property the relay sets on purpose is not logged');

# 5. A failure that cannot be recorded costs only its own row: each record
# runs in a subtransaction of its own.  A trigger refuses one dead letter;
# the others of the round are recorded, the refused row stays in the
# outbox, and the same relay records it once the trigger is gone.
$node->safe_psql('postgres', q{
CREATE FUNCTION public.refuse_dead_letter() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.key OPERATOR(pg_catalog.=) 'refused' THEN
		RAISE EXCEPTION 'dead letter refused by the test';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER refuse BEFORE INSERT ON inbox_outbox.outbox_dead_letter
	FOR EACH ROW EXECUTE FUNCTION public.refuse_dead_letter();
});
my $offset = -s $node->logfile;
$node->safe_psql('postgres',
	q{INSERT INTO inbox_outbox.outbox (topic, key, payload)
	  SELECT 'orders', k, convert_to(repeat('z', 1500), 'UTF8')
	  FROM unnest(ARRAY['before', 'refused', 'after']) k});
$node->poll_query_until('postgres',
	q{SELECT count(*) = 2 FROM inbox_outbox.outbox_dead_letter WHERE key IN ('before', 'after')})
  or die 'the recordable dead letters were not recorded';
ok($node->wait_for_log(qr/could not record the failure of event \w+: dead letter refused by the test/,
		$offset), 'the failure that could not be recorded is logged');
is($node->safe_psql('postgres', 'SELECT key FROM inbox_outbox.outbox'),
	'refused', 'its row stays in the outbox, alone');
is(relay_pid($node), $pid, 'the relay goes on in the same process');
$node->safe_psql('postgres', 'DROP TRIGGER refuse ON inbox_outbox.outbox_dead_letter');
wait_outbox_empty($node, 'postgres', 'refused dead letter');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM inbox_outbox.outbox_dead_letter WHERE key = 'refused'}),
	'1', 'once the trigger is gone, the row is recorded');

$node->stop;
done_testing();
