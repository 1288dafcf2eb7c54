# Trust inside a production database.
#
# A database owner who is not a superuser plants, in the schema public
# (the extension's schema, which that owner may write), an operator for
# every combination of the usual operator names and 25 types that public
# lacks: where pg_catalog has no exact match, a statement that leaves a
# cast to resolve would pick it; where pg_catalog has one, a caller whose
# search_path puts public first would.  Also look-alikes of the functions
# and aggregates the extension's statements call.  Each planted object only
# logs a WARNING naming the role that ran it.  The traps are planted before
# CREATE EXTENSION (those over the extension's own types, after it).  Then,
# with the relay running as the bootstrap superuser, every path runs:
# publishing (three overloads and a direct INSERT), delivery, a failing row
# that is retried and dead-lettered, an oversize row, redrive and discard,
# claims of every overload, pruning by the relay and by CALL
# inbox_prune(), adopt_outbox(), callers with public first on their
# search_path.  No planted object may run.
#
# Then the relay runs as a NOLOGIN role holding only what grant_relay()
# gives: taking those grants back stops delivery, giving them again
# resumes it.  A role that does not exist makes the relay wait and say why.
# No role can keep the relay away by holding the advisory lock it once
# used.  Last, the database owner renames the schema public and plants
# ulid look-alikes under the old name: the running relay and the grant
# functions still use the extension's own objects.
use strict;
use warnings;

use InboxOutbox::Kafka;
use InboxOutbox::Relay;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $kafka = InboxOutbox::Kafka->new(
	name => 'security',
	config => { 'auto.create.topics.enable' => 'false' });
$kafka->create_topic('orders', 3);

my $node = relay_node(
	'security',
	$kafka->bootstrap,
	no_extension => 1,
	conf => q{
inbox_outbox.databases = 'appdb'
inbox_outbox.max_attempts = 2
inbox_outbox.max_message_bytes = 100000
inbox_outbox.inbox_retention = '1s'
});

$node->safe_psql(
	'postgres', q{
CREATE ROLE regress_owner LOGIN;
CREATE ROLE regress_relay NOLOGIN;
CREATE ROLE regress_app LOGIN;
CREATE ROLE regress_intruder LOGIN;
CREATE DATABASE appdb OWNER regress_owner;
});

sub as
{
	my ($role, $sql) = @_;
	return $node->safe_psql('appdb', $sql, extra_params => [ '-U', $role ]);
}

# The keys of the distinct events among consumed messages (a redelivery
# after a purge is a duplicate, which at-least-once allows).
sub event_keys
{
	my ($messages) = @_;
	my %key_of = map { $_->{headers}{event_id} => $_->{key} } @$messages;
	return [ sort values %key_of ];
}

# Plant, in schema $schema, a trap for every operator over @types that the
# schema lacks.  Idempotent.
sub plant_operators
{
	my ($schema, @types) = @_;
	my $types = join(', ', map { "'$_'" } @types);
	my $sql = <<'SQL';
DO $plant$
DECLARE
	types regtype[] := ARRAY[@TYPES@]::regtype[];
	ops text[] := ARRAY['=', '<>', '<', '<=', '>', '>=', '+', '-', '*', '/',
		'||', '~~', '!~~', '@>', '<@', '?'];
	l regtype;
	r regtype;
	o text;
BEGIN
	FOREACH l IN ARRAY types LOOP
		FOREACH r IN ARRAY types LOOP
			IF pg_catalog.to_regprocedure(pg_catalog.format('@SCHEMA@.trap(%s, %s)', l, r)) IS NULL THEN
				EXECUTE pg_catalog.format(
					'CREATE FUNCTION @SCHEMA@.trap(%s, %s) RETURNS boolean LANGUAGE plpgsql AS '
					'$b$BEGIN PERFORM public_traps.trap_log(%L); RETURN NULL; END$b$',
					l, r, pg_catalog.format('operator (%s, %s)', l, r));
			END IF;
			FOREACH o IN ARRAY ops LOOP
				IF NOT EXISTS (SELECT FROM pg_catalog.pg_operator p
							   WHERE p.oprname OPERATOR(pg_catalog.=) o::name
								 AND p.oprleft OPERATOR(pg_catalog.=) l::oid
								 AND p.oprright OPERATOR(pg_catalog.=) r::oid
								 AND p.oprnamespace OPERATOR(pg_catalog.=) '@SCHEMA@'::regnamespace::oid) THEN
					EXECUTE pg_catalog.format(
						'CREATE OPERATOR @SCHEMA@.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = @SCHEMA@.trap)',
						o, l, r);
				END IF;
			END LOOP;
		END LOOP;
	END LOOP;
END
$plant$;
SQL
	$sql =~ s/\@TYPES\@/$types/g;
	$sql =~ s/\@SCHEMA\@/$schema/g;
	as('regress_owner', $sql);
	return;
}

my @types = ('smallint', 'integer', 'bigint', 'numeric', 'real',
	'double precision', 'text', 'character varying', 'character', 'name',
	'interval', 'timestamp with time zone', 'timestamp without time zone',
	'date', 'bytea', 'jsonb', 'json', 'tid', 'oid', 'uuid', 'boolean',
	'text[]', 'tid[]', 'uuid[]');

# 1. The database owner plants its traps, most of them before the extension
# exists.  The log function lives in a schema of the owner's own, so that
# the traps keep working after public is renamed (step 6).
as(
	'regress_owner', q{
CREATE SCHEMA public_traps;
GRANT USAGE ON SCHEMA public_traps TO PUBLIC;
CREATE FUNCTION public_traps.trap_log(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	RAISE WARNING 'inbox_outbox trap % ran as % in %', what, current_user,
		pg_catalog.current_setting('application_name');
END $$;

CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM public_traps.trap_log('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM public_traps.trap_log('clock_timestamp()'); RETURN pg_catalog.clock_timestamp(); END $$;
CREATE FUNCTION public.current_setting(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public_traps.trap_log('current_setting()'); RETURN pg_catalog.current_setting($1); END $$;
CREATE FUNCTION public.convert_to(text, name) RETURNS bytea LANGUAGE plpgsql AS $$
BEGIN PERFORM public_traps.trap_log('convert_to()'); RETURN pg_catalog.convert_to($1, $2); END $$;
CREATE FUNCTION public.pg_sleep(double precision) RETURNS void LANGUAGE plpgsql AS $$
BEGIN PERFORM public_traps.trap_log('pg_sleep()'); END $$;
CREATE FUNCTION public.date_part(text, interval) RETURNS double precision LANGUAGE plpgsql AS $$
BEGIN PERFORM public_traps.trap_log('date_part()'); RETURN pg_catalog.date_part($1, $2); END $$;
CREATE FUNCTION public.unnest(anyarray, anyarray, OUT a anyelement, OUT b anyelement)
	RETURNS SETOF record LANGUAGE plpgsql AS $$
BEGIN PERFORM public_traps.trap_log('unnest()'); END $$;
CREATE FUNCTION public.trap_count(bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN PERFORM public_traps.trap_log('count(*)'); RETURN $1 OPERATOR(pg_catalog.+) 1; END $$;
CREATE AGGREGATE public.count(*) (SFUNC = public.trap_count, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION public.trap_pick(timestamptz, timestamptz) RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM public_traps.trap_log('min() or max()'); RETURN $2; END $$;
CREATE AGGREGATE public.min(timestamptz) (SFUNC = public.trap_pick, STYPE = timestamptz);
CREATE AGGREGATE public.max(timestamptz) (SFUNC = public.trap_pick, STYPE = timestamptz);
});
plant_operators('public', @types);

$node->safe_psql(
	'appdb', q{
CREATE EXTENSION inbox_outbox;
SELECT inbox_outbox.grant_publisher('regress_app');
SELECT inbox_outbox.grant_consumer('regress_app');
SELECT inbox_outbox.grant_monitor('regress_owner');
});
wait_relay_running($node, 'appdb');
plant_operators('public', @types, 'public.ulid', 'public.ulid[]');

my $planted = as('regress_owner',
	q{SELECT pg_catalog.count(*) FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) o.oprcode WHERE o.oprnamespace OPERATOR(pg_catalog.=) 'public'::regnamespace AND p.proname OPERATOR(pg_catalog.=) 'trap'}
);
cmp_ok($planted, '>', 9000, "the database owner planted $planted operators");

# The traps work: an unqualified operator that needs an implicit cast runs
# one, and so does an exact match when public comes first.
my $log_start = -s $node->logfile;
as('regress_owner', 'SELECT 2::numeric * 3');
ok( $node->wait_for_log(qr/inbox_outbox trap operator \(numeric, integer\) ran as regress_owner/,
		$log_start),
	'a planted operator runs where a statement leaves a cast to resolve');
as('regress_owner', 'SET search_path = public, pg_catalog; SELECT 2 < 3');
ok( $node->wait_for_log(qr/inbox_outbox trap operator \(integer, integer\) ran as regress_owner/,
		$log_start),
	'a planted exact match runs where public comes first');
$log_start = -s $node->logfile;

# 2. Every path, with public first on the search_path of the callers.
my $public_first = 'SET search_path = public, pg_catalog;';
as('regress_app', qq{$public_first
BEGIN;
SELECT outbox_publish('orders', 'k1', 'text payload'::text);
SELECT outbox_publish('orders', 'k1', '{"n": 1}'::jsonb, '{"trace": "t1"}');
SELECT outbox_publish('orders', 'k2', '\\x0102'::bytea);
INSERT INTO inbox_outbox.outbox (topic, key, payload) VALUES ('orders', 'k2', '\\x03');
SELECT outbox_publish('missing_topic', 'k3', 'lost for now'::text);
INSERT INTO inbox_outbox.outbox (topic, key, payload)
	VALUES ('orders', 'k4', pg_catalog.convert_to(pg_catalog.repeat('x', 200000), 'UTF8'));
COMMIT;
});

# The missing topic fails twice and is dead-lettered; the oversize row at
# once; the rest is delivered.
$node->poll_query_until('appdb',
	'SELECT pending = 0 AND dead_letters = 2 FROM inbox_outbox.relay_status')
  or die 'the outbox did not settle';
is( as('regress_owner',
		'SELECT published, dead_letters FROM inbox_outbox.relay_status'),
	'4|2',
	'four events delivered, two dead-lettered, read by a monitor');

# Redrive the dead letter once its topic exists; discard the oversize one.
# The producer may still believe for a while that the topic does not
# exist, so the redriven event may fail a few times before it goes through.
$kafka->create_topic('missing_topic', 1);
$node->safe_psql('appdb',
	'ALTER SYSTEM SET inbox_outbox.max_attempts = 50; SELECT pg_reload_conf();');
$node->safe_psql('appdb', qq{$public_first
SELECT outbox_redrive(ARRAY(SELECT id FROM inbox_outbox.outbox_dead_letter WHERE key OPERATOR(pg_catalog.=) 'k3'));
SELECT outbox_discard(ARRAY(SELECT id FROM inbox_outbox.outbox_dead_letter WHERE key OPERATOR(pg_catalog.=) 'k4'));
});
$node->poll_query_until('appdb',
	'SELECT pending = 0 AND dead_letters = 0 FROM inbox_outbox.relay_status')
  or die 'the redriven event was not delivered';

my $orders = $kafka->consume('orders', min => 4);
is_deeply(
	event_keys($orders),
	[qw(k1 k1 k2 k2)],
	'orders holds the four events of k1 and k2, and not the oversize one');
my $redriven = $kafka->consume('missing_topic', min => 1);
is_deeply(event_keys($redriven), ['k3'], 'the redriven event arrived');
is($redriven->[0]{value}, 'lost for now', 'with its payload');

# Claims by every overload, then pruning by the relay (retention 1 s).
my $claims = as('regress_app', qq{$public_first
SELECT inbox_try_claim('e1', 'c1'), inbox_try_claim('e1', 'c1'),
	   inbox_try_claim('01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid, 'c1'),
	   inbox_try_claim('0186cb65-27d7-81ce-815c-7e2596bfe7db'::uuid, 'c1');
});
is($claims, 't|f|t|t', 'claims by text, ulid and uuid; a duplicate is absorbed');
$node->poll_query_until('appdb', 'SELECT count(*) = 0 FROM inbox_outbox.inbox')
  or die 'the relay did not prune the inbox';
pass('the relay pruned the expired claims');

# Pruning by CALL, with the relay's retention off.
$node->safe_psql('appdb',
	q{ALTER SYSTEM SET inbox_outbox.inbox_retention = -1; SELECT pg_reload_conf();});
as('regress_app', qq{$public_first SELECT inbox_try_claim('e2', 'c1'), inbox_try_claim('e3', 'c2');});
$node->safe_psql('appdb', qq{$public_first CALL inbox_prune('0');});
is($node->safe_psql('appdb', 'SELECT count(*) FROM inbox_outbox.inbox'),
	'0', 'CALL inbox_prune() pruned the claims');

# Adopting the outbox (after a restore, say) with public first.
is($node->safe_psql('appdb', qq{$public_first SELECT * FROM inbox_outbox.adopt_outbox();}),
	'0|0', 'adopt_outbox() with public first');

# Nothing planted ever ran.
my $log = slurp_file($node->logfile, $log_start);
my @fired = $log =~ /(inbox_outbox trap .*)/g;
is(scalar(@fired), 0, 'no planted operator or function ran')
  or diag(join("\n", @fired[ 0 .. ($#fired < 9 ? $#fired : 9) ]));
is($node->safe_psql('postgres',
		q{SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_owner'}),
	'f', 'the database owner is still not a superuser');

# 3. The relay works with regress_relay's privileges, and only with them.
my $old_pid = relay_pid($node, 'appdb');
$node->safe_psql('appdb', q{SELECT inbox_outbox.grant_relay('regress_relay')});
$node->safe_psql('appdb',
	q{ALTER SYSTEM SET inbox_outbox.relay_role = 'regress_relay'; SELECT pg_reload_conf();});
$node->poll_query_until('appdb',
	"SELECT pid IS NOT NULL AND pid <> $old_pid AND state = 'idle' FROM inbox_outbox.relay_status")
  or die 'the relay did not restart with its role';
as('regress_app', q{SELECT outbox_publish('orders', 'k5', 'as regress_relay'::text)});
wait_outbox_empty($node, 'appdb', 'relay as regress_relay');
pass('a relay running as a NOLOGIN role with grant_relay() delivers');
$node->safe_psql('appdb', q{SELECT inbox_outbox.revoke_relay('regress_relay')});
$log_start = -s $node->logfile;
as('regress_app', q{SELECT outbox_publish('orders', 'k5b', 'after revoke'::text)});
ok( $node->wait_for_log(qr/permission denied for table (?:database_identity|outbox)/, $log_start),
	'without its grants the relay is refused its tables');
is($node->safe_psql('appdb', 'SELECT count(*) FROM inbox_outbox.outbox'),
	'1', 'and the event waits');
$node->safe_psql('appdb', q{SELECT inbox_outbox.grant_relay('regress_relay')});
wait_outbox_empty($node, 'appdb', 'grants given back');
pass('with them back, the relay delivers it');

# The relay reads and deletes its rows in C where it can (relay_store.c):
# that never skips a privilege.  Without DELETE alone, or SELECT alone, on
# the outbox, the relay is refused as its statements would be, and the
# event stays.  (A topic of their own: without DELETE, the event is sent
# again at each try.)
$kafka->create_topic('privileges', 1);
for my $privilege (qw(DELETE SELECT))
{
	$node->safe_psql('appdb',
		"REVOKE $privilege ON inbox_outbox.outbox FROM regress_relay");
	$log_start = -s $node->logfile;
	as('regress_app',
		qq{SELECT outbox_publish('privileges', 'k5c', 'without $privilege'::text)});
	ok( $node->wait_for_log(qr/permission denied for table outbox/, $log_start),
		"without $privilege on the outbox the relay is refused");
	is($node->safe_psql('appdb', 'SELECT count(*) FROM inbox_outbox.outbox'),
		'1', "and the event waits ($privilege)");
	$node->safe_psql('appdb',
		"GRANT $privilege ON inbox_outbox.outbox TO regress_relay");
	wait_outbox_empty($node, 'appdb', "$privilege given back");
}

# 4. A role that does not exist: the relay waits and says why, and starts
# working once the role exists.
$node->safe_psql('appdb',
	q{ALTER SYSTEM SET inbox_outbox.relay_role = 'regress_later'; SELECT pg_reload_conf();});
$node->poll_query_until('appdb',
	q{SELECT last_error = 'role "regress_later" named by inbox_outbox.relay_role does not exist' FROM inbox_outbox.relay_status}
) or die 'the relay did not report the missing role';
as('regress_app', q{SELECT outbox_publish('orders', 'k6', 'for a later role'::text)});
$node->safe_psql('postgres', 'CREATE ROLE regress_later NOLOGIN');
$node->safe_psql('appdb', q{SELECT inbox_outbox.grant_relay('regress_later')});
wait_outbox_empty($node, 'appdb', 'role created');
pass('the relay started working once its role existed');

# 5. No role can keep the relay away: the advisory lock the relay once
# took is meaningless now, and the relay's slot is out of SQL's reach.
my $intruder = $node->background_psql('appdb', extra_params => [ '-U', 'regress_intruder' ]);
$intruder->query_safe('SELECT pg_advisory_lock(1768911480, 0)');
$old_pid = relay_pid($node, 'appdb');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old_pid)");
$node->poll_query_until('appdb',
	"SELECT pid IS NOT NULL AND pid <> $old_pid AND state = 'idle' FROM inbox_outbox.relay_status")
  or die 'no relay came back';
as('regress_app', q{SELECT outbox_publish('orders', 'k7', 'despite the intruder'::text)});
wait_outbox_empty($node, 'appdb', 'intruder holds advisory locks');
pass('a relay runs and delivers while another role holds advisory locks');
$intruder->quit;

# 6. The database owner renames the schema public, makes a new one, and
# plants ulid look-alikes there under the extension schema's old name,
# while the relay runs as the bootstrap superuser.
$node->safe_psql('appdb',
	q{ALTER SYSTEM RESET inbox_outbox.relay_role; SELECT pg_reload_conf();});
$node->poll_query_until('appdb',
	q{SELECT pid IS NOT NULL AND state = 'idle' FROM inbox_outbox.relay_status})
  or die 'the relay did not come back as the superuser';
as('regress_owner', q{
ALTER SCHEMA public RENAME TO public_old;
CREATE SCHEMA public;
GRANT USAGE ON SCHEMA public TO PUBLIC;
});
plant_operators('public', 'public_old.ulid', 'public_old.ulid[]', 'uuid', 'tid', 'tid[]',
	'uuid[]', 'text', 'integer', 'bigint', 'timestamp with time zone');
as('regress_app',
	q{SELECT public_old.outbox_publish('orders', 'k8', 'after the rename'::text)});
wait_outbox_empty($node, 'appdb', 'schema renamed');
pass('the relay delivers after its schema was renamed and look-alikes planted');
$node->safe_psql('postgres', 'CREATE ROLE regress_late LOGIN');
$node->safe_psql('appdb', q{SELECT inbox_outbox.grant_publisher('regress_late')});
is( $node->safe_psql('appdb',
		q{SELECT has_function_privilege('regress_late', 'public_old.outbox_publish(text, text, text, jsonb)', 'EXECUTE')}),
	't',
	'grant_publisher() grants on the extension\'s functions, wherever they are now');

my $all = $kafka->consume('orders', min => 9);
is_deeply(
	event_keys($all),
	[qw(k1 k1 k2 k2 k5 k5b k6 k7 k8)],
	'every committed event reached Kafka');

$log = slurp_file($node->logfile, $log_start);
@fired = $log =~ /(inbox_outbox trap .*)/g;
is(scalar(@fired), 0, 'no planted operator or function ran later either')
  or diag(join("\n", @fired[ 0 .. ($#fired < 9 ? $#fired : 9) ]));

$node->stop;
done_testing();
