--
-- Privileges: what PUBLIC gets, the grant and revoke helpers, an ungranted
-- role's errors, and the extension in the schema inbox_outbox
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS inbox_outbox;
CREATE EXTENSION inbox_outbox;
RESET client_min_messages;

CREATE ROLE regress_io_none;
CREATE ROLE regress_io_pub;
CREATE ROLE regress_io_con;
CREATE ROLE regress_io_mon;
CREATE ROLE regress_io_owner;

-- Nothing but the ulid type and its functions is executable by PUBLIC.
SELECT p.oid::regprocedure AS public_function
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
	AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'inbox_outbox'
WHERE pg_catalog.has_function_privilege('regress_io_none', p.oid, 'EXECUTE')
ORDER BY 1::text;

-- ... and no table, view or schema of the extension's own.
SELECT c.oid::regclass AS readable
FROM pg_catalog.pg_class c
WHERE c.relnamespace = 'inbox_outbox'::regnamespace
  AND c.relkind IN ('r', 'v', 'p')
  AND pg_catalog.has_table_privilege('regress_io_none', c.oid, 'SELECT, INSERT, UPDATE, DELETE');
SELECT pg_catalog.has_schema_privilege('regress_io_none', 'inbox_outbox', 'USAGE') AS schema_usage;

-- An ungranted role: 42501 for everything but ulids.
SET ROLE regress_io_none;
SELECT gen_ulid() < gen_ulid() AS ulids_work;
SELECT outbox_publish('orders', 'k', 'x'::text);
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('orders', 'k', '\x00'::bytea);
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('orders', 'k', '{}'::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_try_claim('e1', 'c1');
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_try_claim('01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid, 'c1');
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_try_claim('0186cb65-27d7-81ce-815c-7e2596bfe7db'::uuid, 'c1');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM inbox_outbox.outbox;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO inbox_outbox.outbox (topic, key, payload) VALUES ('orders', 'k', '\x01');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM inbox_outbox.inbox;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM inbox_outbox.outbox_dead_letter;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM inbox_outbox.relay_status;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM inbox_outbox.inbox_consumers;
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_redrive();
\echo :LAST_ERROR_SQLSTATE
CALL inbox_prune('0');
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_outbox.grant_publisher('regress_io_none');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

SELECT inbox_outbox.grant_publisher('regress_io_pub');
SELECT inbox_outbox.grant_consumer('regress_io_con');
SELECT inbox_outbox.grant_monitor('regress_io_mon');
SELECT inbox_outbox.grant_publisher('regress_io_nobody');
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_outbox.change_privileges(true, 'superuser', 'regress_io_none');
\echo :LAST_ERROR_SQLSTATE

-- The grant helpers: a role other than a superuser or the extension's
-- owner cannot call them, even with usage of their schema.
SET ROLE regress_io_pub;
SELECT inbox_outbox.grant_publisher('regress_io_owner');
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_outbox.revoke_consumer('regress_io_con');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- What each kind gets, as docs/security.md lists it.
SELECT kind, r.privilege, r.object
FROM (VALUES ('publisher'), ('consumer'), ('monitor'), ('relay'), ('subscriber')) k(kind),
	 inbox_outbox.role_privileges(k.kind) r;

-- A publisher publishes, by function and by INSERT (RETURNING id, as ORMs
-- do), and nothing else.
SET ROLE regress_io_pub;
SELECT outbox_publish('orders', 'k', 'x'::text) IS NOT NULL AS published_text;
SELECT outbox_publish('orders', 'k', '\x00'::bytea) IS NOT NULL AS published_bytea;
SELECT outbox_publish('orders', 'k', '{"a": 1}'::jsonb, '{"h": "v"}') IS NOT NULL AS published_jsonb;
INSERT INTO inbox_outbox.outbox (topic, key, payload) VALUES ('orders', 'k', '\x01')
	RETURNING id IS NOT NULL AS inserted;
INSERT INTO inbox_outbox.outbox (topic, key, payload) VALUES ('bad topic', 'k', '\x01');
\echo :LAST_ERROR_SQLSTATE
SELECT payload FROM inbox_outbox.outbox;
\echo :LAST_ERROR_SQLSTATE
UPDATE inbox_outbox.outbox SET key = 'other';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM inbox_outbox.outbox;
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_try_claim('e1', 'c1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM inbox_outbox.relay_status;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS pending FROM inbox_outbox.outbox;

-- A consumer claims, by every overload, and nothing else.
SET ROLE regress_io_con;
SELECT inbox_try_claim('e1', 'c1') AS first, inbox_try_claim('e1', 'c1') AS again;
SELECT inbox_try_claim('01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid, 'c1') AS by_ulid;
SELECT inbox_try_claim('0186cb65-27d7-81ce-815c-7e2596bfe7db'::uuid, 'c1') AS by_uuid;
SELECT count(*) FROM inbox_outbox.inbox;
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('orders', 'k', 'x'::text);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- A monitor reads the status views, and nothing else.
SET ROLE regress_io_mon;
SELECT database IS NOT NULL AS status, pending, dead_letters FROM inbox_outbox.relay_status;
SELECT consumer, claims, duplicates_absorbed FROM inbox_outbox.inbox_consumers WHERE consumer = 'c1';
SELECT count(*) FROM inbox_outbox.outbox;
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_try_claim('e2', 'c1');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Revoking takes it all back.
SELECT inbox_outbox.revoke_publisher('regress_io_pub');
SELECT inbox_outbox.revoke_consumer('regress_io_con');
SELECT inbox_outbox.revoke_monitor('regress_io_mon');
SET ROLE regress_io_pub;
SELECT outbox_publish('orders', 'k', 'x'::text);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO inbox_outbox.outbox (topic, key, payload) VALUES ('orders', 'k', '\x01');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_io_con;
SELECT inbox_try_claim('e3', 'c1');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_io_mon;
SELECT * FROM inbox_outbox.relay_status;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- No privilege of the extension is left with the roles: on tables,
-- columns or functions.
SELECT
  (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
   WHERE c.relnamespace = 'inbox_outbox'::regnamespace
	 AND a.grantee IN ('regress_io_pub'::regrole, 'regress_io_con'::regrole, 'regress_io_mon'::regrole))
  AS on_tables,
  (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute t
   JOIN pg_catalog.pg_class c ON c.oid = t.attrelid, pg_catalog.aclexplode(t.attacl) a
   WHERE c.relnamespace = 'inbox_outbox'::regnamespace
	 AND a.grantee IN ('regress_io_pub'::regrole, 'regress_io_con'::regrole, 'regress_io_mon'::regrole))
  AS on_columns,
  (SELECT pg_catalog.count(*) FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
   WHERE p.pronamespace IN ('inbox_outbox'::regnamespace, 'public'::regnamespace)
	 AND a.grantee IN ('regress_io_pub'::regrole, 'regress_io_con'::regrole, 'regress_io_mon'::regrole))
  AS on_functions;

-- A role that is publisher and relay keeps what publishing needs when it
-- stops being the relay: both need the CHECK functions.
SELECT inbox_outbox.grant_publisher('regress_io_owner');
SELECT inbox_outbox.grant_relay('regress_io_owner');
SELECT inbox_outbox.revoke_relay('regress_io_owner');
SET ROLE regress_io_owner;
INSERT INTO inbox_outbox.outbox (topic, key, payload) VALUES ('orders', 'still', '\x01')
	RETURNING id IS NOT NULL AS still_publishes;
DELETE FROM inbox_outbox.outbox;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT inbox_outbox.revoke_publisher('regress_io_owner');

DROP EXTENSION inbox_outbox;

-- The extension in the schema inbox_outbox itself: one schema for all.
CREATE SCHEMA inbox_outbox;
CREATE EXTENSION inbox_outbox SCHEMA inbox_outbox;
SELECT inbox_outbox.grant_publisher('regress_io_pub');
SELECT inbox_outbox.grant_consumer('regress_io_con');
SET ROLE regress_io_pub;
SELECT inbox_outbox.outbox_publish('orders', 'k', 'x'::text) IS NOT NULL AS published;
SET ROLE regress_io_con;
SELECT inbox_outbox.inbox_try_claim('e1', 'c1') AS claimed;
RESET ROLE;
SELECT count(*) AS pending FROM inbox_outbox.outbox;
DROP EXTENSION inbox_outbox;
SELECT count(*) AS schema_kept FROM pg_catalog.pg_namespace WHERE nspname = 'inbox_outbox';
DROP SCHEMA inbox_outbox;

-- ... but not a schema inbox_outbox that a role other than a superuser
-- owns, or in which such a role may create objects.
CREATE SCHEMA inbox_outbox AUTHORIZATION regress_io_owner;
CREATE EXTENSION inbox_outbox SCHEMA inbox_outbox;
\echo :LAST_ERROR_SQLSTATE
ALTER SCHEMA inbox_outbox OWNER TO CURRENT_USER;
GRANT CREATE ON SCHEMA inbox_outbox TO regress_io_owner;
CREATE EXTENSION inbox_outbox SCHEMA inbox_outbox;
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA inbox_outbox;

-- A schema named inbox_outbox that someone else made is never adopted.
CREATE SCHEMA inbox_outbox;
CREATE EXTENSION inbox_outbox;
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA inbox_outbox;

DROP OWNED BY regress_io_none, regress_io_pub, regress_io_con, regress_io_mon, regress_io_owner;
DROP ROLE regress_io_none, regress_io_pub, regress_io_con, regress_io_mon, regress_io_owner;
CREATE EXTENSION inbox_outbox;
