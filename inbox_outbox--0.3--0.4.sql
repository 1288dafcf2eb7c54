/* inbox_outbox--0.3--0.4.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION inbox_outbox UPDATE TO '0.4'" to load this file. \quit

--
-- Least privilege.  PUBLIC keeps the ulid type, its operators and its
-- functions; everything else is handed out per role by the grant_*
-- functions below.  Without a grant, a role cannot publish, claim, or read
-- or write any table of the extension.
--

REVOKE ALL ON FUNCTION @extschema@.outbox_publish(text, text, bytea, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.outbox_publish(text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.outbox_publish(text, text, jsonb, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.outbox_redrive(@extschema@.ulid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.outbox_discard(@extschema@.ulid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.inbox_try_claim(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.inbox_try_claim(@extschema@.ulid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.inbox_try_claim(uuid, text) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.inbox_prune(interval, integer) FROM PUBLIC;

REVOKE ALL ON FUNCTION inbox_outbox.valid_topic(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.valid_headers(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.outbox_wakeup() FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.relay_worker() FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.relay_launcher_wakeup() FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.relay_ddl_wakeup() FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.inbox_prune_once(interval, integer, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.inbox_duplicates() FROM PUBLIC;

--
-- The database the outbox publishes for: this server's system identifier
-- and this database's OID.  A copy of the database takes its pending
-- events along (pg_dump dumps the outbox, CREATE DATABASE ... TEMPLATE
-- copies it), and the relay publishes only while every row here names the
-- database it runs in; inbox_outbox.adopt_outbox() makes a copy publish, or
-- discards what it copied.  pg_dump dumps these rows too, so a restore adds
-- the source's row beside the one CREATE EXTENSION recorded: no unique key,
-- so that the restore never fails on it.  The name sorts before "outbox":
-- pg_dump loads a schema's tables in name order, so a serial restore
-- commits this table's rows before the restored events.  REPLICA IDENTITY
-- FULL, so that adopting the outbox of a database that publishes the table
-- (FOR ALL TABLES) can delete its rows.  See src/outbox_identity.c.
--

CREATE TABLE inbox_outbox.database_identity (
	system_identifier	bigint NOT NULL,
	database_oid		oid NOT NULL,
	recorded_at			timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE inbox_outbox.database_identity IS
	'the database the outbox publishes for; a copy of the database pauses its relay until inbox_outbox.adopt_outbox()';
ALTER TABLE inbox_outbox.database_identity REPLICA IDENTITY FULL;

INSERT INTO inbox_outbox.database_identity (system_identifier, database_oid)
SELECT c.system_identifier, d.oid
FROM pg_catalog.pg_control_system() c, pg_catalog.pg_database d
WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database();

SELECT pg_catalog.pg_extension_config_dump('inbox_outbox.database_identity', '');

-- A change here (adopt_outbox(), a restore) wakes the relay at commit.
CREATE TRIGGER database_identity_wakeup
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON inbox_outbox.database_identity
	FOR EACH STATEMENT EXECUTE FUNCTION inbox_outbox.outbox_wakeup();

CREATE FUNCTION inbox_outbox.adopt_outbox(discard_pending boolean DEFAULT false,
										  OUT pending bigint, OUT discarded bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'adopt_outbox'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION inbox_outbox.adopt_outbox(boolean) IS
	'make this database the one its outbox publishes for, after a restore, a template copy or pg_upgrade; with discard_pending, delete the copied pending events first';
REVOKE ALL ON FUNCTION inbox_outbox.adopt_outbox(boolean) FROM PUBLIC;

--
-- What each kind of role needs, in one place: the grant and revoke
-- functions below read these lists, and docs/security.md prints them.
-- Objects are held by OID (a regclass or regprocedure constant is resolved
-- when this function is created) and named at each call, so that a schema
-- renamed since, and a look-alike made under the old name, change nothing.
--

CREATE FUNCTION inbox_outbox.role_privileges(kind text,
											 OUT privilege text, OUT object text)
	RETURNS SETOF record
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT p.privilege, p.objtype OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) p.name
	FROM (VALUES
		(1, 'publisher', 'USAGE', 'SCHEMA', '@extschema@'::regnamespace::text),
		(2, 'publisher', 'USAGE', 'SCHEMA', 'inbox_outbox'::regnamespace::text),
		(3, 'publisher', 'EXECUTE', 'FUNCTION', '@extschema@.outbox_publish(text, text, bytea, jsonb)'::regprocedure::text),
		(4, 'publisher', 'EXECUTE', 'FUNCTION', '@extschema@.outbox_publish(text, text, text, jsonb)'::regprocedure::text),
		(5, 'publisher', 'EXECUTE', 'FUNCTION', '@extschema@.outbox_publish(text, text, jsonb, jsonb)'::regprocedure::text),
		(6, 'publisher', 'INSERT', 'TABLE', 'inbox_outbox.outbox'::regclass::text),
		(7, 'publisher', 'SELECT (id, created_at)', 'TABLE', 'inbox_outbox.outbox'::regclass::text),
		(8, 'publisher', 'EXECUTE', 'FUNCTION', 'inbox_outbox.valid_topic(text)'::regprocedure::text),
		(9, 'publisher', 'EXECUTE', 'FUNCTION', 'inbox_outbox.valid_headers(jsonb)'::regprocedure::text),
		(10, 'consumer', 'USAGE', 'SCHEMA', '@extschema@'::regnamespace::text),
		(11, 'consumer', 'USAGE', 'SCHEMA', 'inbox_outbox'::regnamespace::text),
		(12, 'consumer', 'EXECUTE', 'FUNCTION', '@extschema@.inbox_try_claim(text, text)'::regprocedure::text),
		(13, 'consumer', 'EXECUTE', 'FUNCTION', '@extschema@.inbox_try_claim(@extschema@.ulid, text)'::regprocedure::text),
		(14, 'consumer', 'EXECUTE', 'FUNCTION', '@extschema@.inbox_try_claim(uuid, text)'::regprocedure::text),
		(15, 'consumer', 'INSERT', 'TABLE', 'inbox_outbox.inbox'::regclass::text),
		(16, 'monitor', 'USAGE', 'SCHEMA', 'inbox_outbox'::regnamespace::text),
		(17, 'monitor', 'SELECT', 'TABLE', 'inbox_outbox.relay_status'::regclass::text),
		(18, 'monitor', 'SELECT', 'TABLE', 'inbox_outbox.inbox_consumers'::regclass::text),
		(19, 'monitor', 'EXECUTE', 'FUNCTION', 'inbox_outbox.relay_worker()'::regprocedure::text),
		(20, 'monitor', 'EXECUTE', 'FUNCTION', 'inbox_outbox.inbox_duplicates()'::regprocedure::text),
		(21, 'relay', 'USAGE', 'SCHEMA', '@extschema@'::regnamespace::text),
		(22, 'relay', 'USAGE', 'SCHEMA', 'inbox_outbox'::regnamespace::text),
		(23, 'relay', 'SELECT, UPDATE, DELETE', 'TABLE', 'inbox_outbox.outbox'::regclass::text),
		(24, 'relay', 'SELECT, INSERT, UPDATE', 'TABLE', 'inbox_outbox.outbox_dead_letter'::regclass::text),
		(25, 'relay', 'SELECT, DELETE', 'TABLE', 'inbox_outbox.inbox'::regclass::text),
		(26, 'relay', 'EXECUTE', 'FUNCTION', 'inbox_outbox.valid_topic(text)'::regprocedure::text),
		(27, 'relay', 'EXECUTE', 'FUNCTION', 'inbox_outbox.valid_headers(jsonb)'::regprocedure::text),
		(28, 'relay', 'SELECT, INSERT', 'TABLE', 'inbox_outbox.database_identity'::regclass::text)
	) AS p(n, kind, privilege, objtype, name)
	WHERE p.kind OPERATOR(pg_catalog.=) role_privileges.kind
	ORDER BY p.n;
END;

COMMENT ON FUNCTION inbox_outbox.role_privileges(text) IS
	'the privileges that grant_publisher, grant_consumer, grant_monitor and grant_relay hand out';

-- Grant or revoke one kind's privileges.  A revoke leaves the two schemas
-- alone (the role may still need them for objects of its own), and gives
-- back what another kind the role still holds needs too (a publisher and a
-- relay both need the CHECK functions).  A role holds a kind while it has
-- that kind's mark: the privilege no other kind has.
CREATE FUNCTION inbox_outbox.change_privileges(grant_them boolean, kind text, role regrole)
	RETURNS void
	LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p record;
	other text;
	found_kind boolean := false;
BEGIN
	FOR p IN SELECT * FROM inbox_outbox.role_privileges(kind) LOOP
		found_kind := true;
		IF grant_them THEN
			EXECUTE pg_catalog.format('GRANT %s ON %s TO %s', p.privilege, p.object, role);
		ELSIF p.object OPERATOR(pg_catalog.!~~) 'SCHEMA %' THEN
			EXECUTE pg_catalog.format('REVOKE %s ON %s FROM %s', p.privilege, p.object, role);
		END IF;
	END LOOP;
	IF NOT found_kind THEN
		RAISE EXCEPTION 'unknown kind of role "%"', kind
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The kinds are publisher, consumer, monitor and relay.';
	END IF;
	IF grant_them THEN
		RETURN;
	END IF;
	FOR other IN
		SELECT m.kind
		FROM (VALUES ('publisher', 'inbox_outbox.outbox'::regclass, 'INSERT'),
					 ('consumer', 'inbox_outbox.inbox'::regclass, 'INSERT'),
					 ('monitor', 'inbox_outbox.relay_status'::regclass, 'SELECT'),
					 ('relay', 'inbox_outbox.outbox'::regclass, 'DELETE')) AS m(kind, rel, mark)
		WHERE m.kind OPERATOR(pg_catalog.<>) change_privileges.kind
		  AND EXISTS (SELECT FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
					  WHERE c.oid OPERATOR(pg_catalog.=) m.rel
						AND a.grantee OPERATOR(pg_catalog.=) role::oid
						AND a.privilege_type OPERATOR(pg_catalog.=) m.mark)
	LOOP
		PERFORM inbox_outbox.change_privileges(true, other, role);
	END LOOP;
END
$$;

REVOKE ALL ON FUNCTION inbox_outbox.role_privileges(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.change_privileges(boolean, text, regrole) FROM PUBLIC;

CREATE FUNCTION inbox_outbox.grant_publisher(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(true, 'publisher', role);
CREATE FUNCTION inbox_outbox.revoke_publisher(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(false, 'publisher', role);
CREATE FUNCTION inbox_outbox.grant_consumer(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(true, 'consumer', role);
CREATE FUNCTION inbox_outbox.revoke_consumer(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(false, 'consumer', role);
CREATE FUNCTION inbox_outbox.grant_monitor(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(true, 'monitor', role);
CREATE FUNCTION inbox_outbox.revoke_monitor(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(false, 'monitor', role);
CREATE FUNCTION inbox_outbox.grant_relay(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(true, 'relay', role);
CREATE FUNCTION inbox_outbox.revoke_relay(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(false, 'relay', role);

COMMENT ON FUNCTION inbox_outbox.grant_publisher(regrole) IS
	'let a role call outbox_publish() and insert into inbox_outbox.outbox';
COMMENT ON FUNCTION inbox_outbox.grant_consumer(regrole) IS
	'let a role call inbox_try_claim()';
COMMENT ON FUNCTION inbox_outbox.grant_monitor(regrole) IS
	'let a role read inbox_outbox.relay_status and inbox_outbox.inbox_consumers';
COMMENT ON FUNCTION inbox_outbox.grant_relay(regrole) IS
	'give a role what the relay needs when inbox_outbox.relay_role names it';
COMMENT ON FUNCTION inbox_outbox.revoke_publisher(regrole) IS
	'take back what grant_publisher gave (schema usage stays)';
COMMENT ON FUNCTION inbox_outbox.revoke_consumer(regrole) IS
	'take back what grant_consumer gave (schema usage stays)';
COMMENT ON FUNCTION inbox_outbox.revoke_monitor(regrole) IS
	'take back what grant_monitor gave (schema usage stays)';
COMMENT ON FUNCTION inbox_outbox.revoke_relay(regrole) IS
	'take back what grant_relay gave (schema usage stays)';

-- Only superusers and the extension's owner, who owns everything granted.
REVOKE ALL ON FUNCTION inbox_outbox.grant_publisher(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.revoke_publisher(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.grant_consumer(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.revoke_consumer(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.grant_monitor(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.revoke_monitor(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.grant_relay(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.revoke_relay(regrole) FROM PUBLIC;

--
-- The relay's read bound (src/outbox_floor.c): every transaction that writes
-- an outbox row records the lowest id it wrote, so that the relay can read
-- from there instead of walking the rows it deleted.  Enabled ALWAYS so that
-- it fires under session_replication_role = replica too, and named to fire
-- after any other BEFORE trigger, so that it sees the id that is written.
--
CREATE FUNCTION inbox_outbox.outbox_floor() RETURNS trigger
	AS 'MODULE_PATHNAME', 'outbox_floor'
	LANGUAGE C;
REVOKE ALL ON FUNCTION inbox_outbox.outbox_floor() FROM PUBLIC;

CREATE TRIGGER zz_outbox_floor BEFORE INSERT OR UPDATE OF id ON inbox_outbox.outbox
	FOR EACH ROW EXECUTE FUNCTION inbox_outbox.outbox_floor();
ALTER TABLE inbox_outbox.outbox ENABLE ALWAYS TRIGGER zz_outbox_floor;
