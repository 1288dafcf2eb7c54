# What the relay does in C instead of a statement, it does as the statement
# would, and where it cannot, the statement runs (src/relay_store.c).
#
# - A row read straight from the primary key's index scan carries its
#   values whole: a key, a payload and headers large enough to be toasted
#   (compressed or out of line) reach Kafka byte for byte, and so do a null
#   key, value and headers; a value above max_message_bytes is measured
#   without being read and its row dead-lettered with its size.
# - Rows waiting for a retry are found by a scan of the partial index
#   outbox_retry: a failed row whose retry is not due holds back the later
#   rows of its key, and only those; and so it does when outbox_retry has
#   been replaced by an index the relay does not trust (the statement
#   answers).
# - A DELETE trigger on the outbox fires for every row the relay deletes
#   (the relay then deletes with its statement), and a foreign key to the
#   outbox (a trigger too) keeps its rule.
# - inbox_outbox.gather_window is applied at reload: under a window of a
#   second, a commit just after a read waits for the window's end; at 0
#   the relay reads at every commit.
use strict;
use warnings;

use InboxOutbox::Kafka;
use InboxOutbox::Relay;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $kafka = InboxOutbox::Kafka->new(name => 'cpaths');
$kafka->create_topic('big', 1);
$kafka->create_topic('held', 3);
$kafka->create_topic('audited', 3);

my $node = relay_node('cpaths', $kafka->bootstrap);
my $pid = relay_pid($node);

# The relay's first read after it starts is from the low end of the outbox,
# a statement; the reads after it start at the read bound, in C.
$node->safe_psql('postgres', q{SELECT outbox_publish('audited', 'warm-up', 'x'::text)});
wait_outbox_empty($node, 'postgres', 'warm-up');

# 1. Toasted values: a 3,000-byte key and 5,000-byte header value that
# compress (stored compressed in the row), and a 200 kB payload that does
# not (stored out of line).
$node->safe_psql(
	'postgres', q{
SELECT outbox_publish('big', repeat('k', 3000),
		      (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 6250) i)::text,
		      jsonb_build_object('h', repeat('v', 5000)))
});
wait_outbox_empty($node, 'postgres', 'toasted values');
my $big = $kafka->consume('big', min => 1);
my $want_payload = $node->safe_psql('postgres',
	q{SELECT string_agg(md5(i::text), '') FROM generate_series(1, 6250) i});
is(scalar @$big, 1, 'the event with toasted values was sent once');
# (ok rather than is: a failure should not print 200 kB)
ok($big->[0]{key} eq 'k' x 3000, 'its compressed key arrived whole');
ok($big->[0]{value} eq $want_payload, 'its out-of-line payload arrived whole');
ok(($big->[0]{headers}{h} // '') eq 'v' x 5000, 'its compressed header arrived whole');

$node->safe_psql('postgres', q{SELECT outbox_publish('big', NULL, NULL::bytea, NULL)});
wait_outbox_empty($node, 'postgres', 'nulls');
$big = $kafka->consume('big', min => 2);
my ($null) = grep { !defined $_->{key} } @$big;
ok($null && !defined $null->{value} && join(',', sort keys %{ $null->{headers} }) eq 'event_id',
	'a null key, value and headers arrived as such');

$node->safe_psql('postgres', q{
INSERT INTO inbox_outbox.outbox (topic, key, payload)
	SELECT 'big', 'oversize', convert_to(string_agg(md5(i::text), ''), 'UTF8')
	  FROM generate_series(1, 40000) i});
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM inbox_outbox.outbox_dead_letter WHERE key = 'oversize'")
  or die 'the oversize row was not dead-lettered';
like(
	$node->safe_psql('postgres',
		"SELECT last_error FROM inbox_outbox.outbox_dead_letter WHERE key = 'oversize'"),
	qr/message of 1280008 bytes is larger than inbox_outbox.max_message_bytes/,
	'a value above max_message_bytes was measured from its toast pointer, key included');

# 2. A failed row whose retry is not due holds back the later rows of its
# key, and only those, whichever way the relay looks for failed rows.
sub check_held_back
{
	my ($what) = @_;
	my $key = "held-$what";
	$node->safe_psql(
		'postgres', qq{
INSERT INTO inbox_outbox.outbox (topic, key, payload, attempts, next_attempt_at)
	VALUES ('held', '$key', '\\x01', 1, now() + interval '1 day');
SELECT outbox_publish('held', '$key', 'second'::text);
SELECT outbox_publish('held', 'free-$what', 'free'::text);
});
	$node->poll_query_until('postgres',
		"SELECT NOT EXISTS (SELECT FROM inbox_outbox.outbox WHERE key = 'free-$what')")
	  or die "the free row ($what) was not sent";

	# a read or two later, the held row of the key is still there
	$node->safe_psql('postgres', q{SELECT outbox_publish('held', 'nudge', 'x'::text)});
	wait_outbox_rows($node, 2, $what);
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM inbox_outbox.outbox WHERE key = '$key'"),
		'2',
		"$what: the later row of a key waiting for a retry is held back");

	$node->safe_psql('postgres',
		"UPDATE inbox_outbox.outbox SET next_attempt_at = now() WHERE key = '$key' AND attempts > 0"
	);
	wait_outbox_empty($node, 'postgres', "$what: the retry");
	my @values = map { $_->{value} } grep { $_->{key} eq $key }
	  @{ $kafka->consume('held', min => 1) };
	is_deeply(\@values, [ "\x01", 'second' ],
		"$what: once due, the failed row went first, then the held one");
}

sub wait_outbox_rows
{
	my ($n, $n_rows, $what) = @_;
	$n->poll_query_until('postgres',
		"SELECT count(*) = $n_rows FROM inbox_outbox.outbox")
	  or die "the outbox did not come down to $n_rows rows ($what)";
	return;
}

check_held_back('index scan of outbox_retry');

# An outbox_retry the relay does not trust: the statement looks instead.
$node->safe_psql(
	'postgres', q{
DROP INDEX inbox_outbox.outbox_retry;
CREATE INDEX outbox_retry ON inbox_outbox.outbox (topic, key, id) WHERE attempts > 1;
});
check_held_back('statement');
$node->safe_psql(
	'postgres', q{
DROP INDEX inbox_outbox.outbox_retry;
CREATE INDEX outbox_retry ON inbox_outbox.outbox (topic, key, id) WHERE attempts > 0;
});

# 3. A DELETE trigger on the outbox fires for each row the relay deletes.
$node->safe_psql(
	'postgres', q{
CREATE TABLE public.deleted_events (id text, topic text);
CREATE FUNCTION public.note_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.deleted_events VALUES (OLD.id::text, OLD.topic);
	RETURN OLD;
END $$;
CREATE TRIGGER note_delete AFTER DELETE ON inbox_outbox.outbox
	FOR EACH ROW EXECUTE FUNCTION public.note_delete();
SELECT outbox_publish('audited', 'a' || i, 'x'::text) FROM generate_series(1, 50) i;
});
wait_outbox_empty($node, 'postgres', 'audited');
is($node->safe_psql('postgres', q{SELECT count(DISTINCT id) FROM public.deleted_events WHERE topic = 'audited'}),
	'50', 'a DELETE trigger on the outbox fired for every row the relay deleted');
$node->safe_psql('postgres',
	'DROP TRIGGER note_delete ON inbox_outbox.outbox; TRUNCATE public.deleted_events');

# A foreign key to the outbox: ON DELETE CASCADE removes the referencing
# rows with the events the relay deletes.
$node->safe_psql(
	'postgres', q{
CREATE TABLE public.event_notes (event public.ulid
	REFERENCES inbox_outbox.outbox (id) ON DELETE CASCADE, note text);
BEGIN;
WITH e AS (SELECT outbox_publish('audited', 'fk', 'x'::text) AS id)
INSERT INTO public.event_notes SELECT id, 'kept until sent' FROM e;
COMMIT;
});
wait_outbox_empty($node, 'postgres', 'referenced');
is($node->safe_psql('postgres', 'SELECT count(*) FROM public.event_notes'),
	'0', 'a foreign key to the outbox cascaded from the relay\'s delete');
$node->safe_psql('postgres', 'DROP TABLE public.event_notes');

# 4. gather_window at reload.  The delivery reports of a read are served
# when its gathering ends, so under a window of a second no event leaves
# the outbox sooner than a second after its commit; at 0 at once.
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET inbox_outbox.gather_window = '1s'; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', q{SELECT current_setting('inbox_outbox.gather_window') = '1s'})
  or die 'gather_window was not reloaded';
sleep 2;    # the relay has reloaded too: a reload request wakes it
my @left = split /\n/, $node->safe_psql(
	'postgres', q{
SELECT outbox_publish('audited', 'window', 'x'::text);
SELECT pg_sleep(0.5);
SELECT count(*) FROM inbox_outbox.outbox WHERE key = 'window';
});
is($left[-1], '1', 'under a window of a second, an event is still in the outbox half a second after its commit');
wait_outbox_empty($node, 'postgres', 'window');

my ($ret, $out, $err) = $node->psql('postgres',
	q{ALTER SYSTEM SET inbox_outbox.gather_window = '2s'});
like($err, qr/outside the valid range/, 'a gather_window above 1s is refused');

$node->safe_psql('postgres',
	q{ALTER SYSTEM SET inbox_outbox.gather_window = 0; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', q{SELECT current_setting('inbox_outbox.gather_window') = '0'})
  or die 'gather_window 0 was not reloaded';
sleep 2;
$node->safe_psql('postgres',
	q{SELECT outbox_publish('audited', 'g' || i, 'x'::text) FROM generate_series(1, 20) i});
wait_outbox_empty($node, 'postgres', 'gather_window 0');
pass('with gather_window 0 the relay sends');

is(relay_pid($node), $pid, 'the relay never restarted');

$node->stop;
done_testing();
