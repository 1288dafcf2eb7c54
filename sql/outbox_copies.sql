--
-- Copies of a database: the identity its outbox publishes for, and
-- inbox_outbox.adopt_outbox().  The relays' pauses are in test/t/054_copies.pl.
--
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS inbox_outbox;
CREATE EXTENSION inbox_outbox;
RESET client_min_messages;

-- CREATE EXTENSION records this server and this database, once.
SELECT count(*) AS identities,
       bool_and(i.system_identifier = c.system_identifier) AS this_server,
       bool_and(i.database_oid = d.oid) AS this_database,
       pg_catalog.pg_relation_size('inbox_outbox.database_identity') > 0 AS stored
FROM inbox_outbox.database_identity i, pg_control_system() c, pg_database d
WHERE d.datname = current_database();

-- pg_dump keeps the rows, and a DELETE on the publisher of a FOR ALL
-- TABLES publication needs a replica identity.
SELECT 'inbox_outbox.database_identity'::regclass = ANY (extconfig) AS dumped
FROM pg_extension WHERE extname = 'inbox_outbox';
SELECT relreplident FROM pg_class WHERE oid = 'inbox_outbox.database_identity'::regclass;

-- An outbox that is not a copy: adopting changes nothing, discarding is
-- refused, since its pending events are its own to publish.
SELECT outbox_publish('orders', 'k', 'mine'::text) IS NOT NULL AS published;
SELECT * FROM inbox_outbox.adopt_outbox(discard_pending => true);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM inbox_outbox.adopt_outbox();
SELECT count(*) AS identities FROM inbox_outbox.database_identity;

-- A copy, as a restore leaves it: the source's row beside this one's.
-- Adopting keeps the pending events and leaves only this database's row.
INSERT INTO inbox_outbox.database_identity (system_identifier, database_oid, recorded_at)
VALUES (7000000000000000042, 4242, '2026-01-01 00:00+00');
SELECT * FROM inbox_outbox.adopt_outbox();
SELECT count(*) AS identities,
       bool_and(i.system_identifier = c.system_identifier AND i.database_oid = d.oid) AS this_database
FROM inbox_outbox.database_identity i, pg_control_system() c, pg_database d
WHERE d.datname = current_database();

-- Another copy, adopted with discard_pending: the pending events go,
-- dead letters stay (they are sent only if redriven).
DELETE FROM inbox_outbox.database_identity;
INSERT INTO inbox_outbox.database_identity (system_identifier, database_oid)
VALUES (7000000000000000042, 4242);
SELECT outbox_publish('orders', 'k', 'copied ' || g) IS NOT NULL AS published
FROM generate_series(1, 2) g;
INSERT INTO inbox_outbox.outbox_dead_letter (id, topic, key, payload, created_at, attempts, last_error)
VALUES (gen_ulid(), 'orders', 'k', '\x00', now(), 10, 'refused');
SELECT * FROM inbox_outbox.adopt_outbox(discard_pending => true);
SELECT (SELECT count(*) FROM inbox_outbox.outbox) AS pending,
       (SELECT count(*) FROM inbox_outbox.outbox_dead_letter) AS dead_letters,
       (SELECT count(*) FROM inbox_outbox.database_identity) AS identities;

-- A table emptied by hand is no copy either (the relay records this
-- database again when it next looks).
DELETE FROM inbox_outbox.database_identity;
SELECT * FROM inbox_outbox.adopt_outbox(true);
\echo :LAST_ERROR_SQLSTATE

-- Only superusers may adopt by default: not PUBLIC, not the database's
-- owner, not a monitor.
CREATE ROLE regress_io_adopter;
SELECT pg_catalog.pg_get_userbyid(datdba) AS owner FROM pg_database
WHERE datname = current_database() \gset
ALTER DATABASE :"DBNAME" OWNER TO regress_io_adopter;
SELECT inbox_outbox.grant_monitor('regress_io_adopter');
SELECT pg_catalog.has_function_privilege('regress_io_adopter',
	'inbox_outbox.adopt_outbox(boolean)', 'EXECUTE') AS may_adopt;
SET ROLE regress_io_adopter;
SELECT * FROM inbox_outbox.adopt_outbox();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT inbox_outbox.revoke_monitor('regress_io_adopter');
ALTER DATABASE :"DBNAME" OWNER TO :"owner";
DROP OWNED BY regress_io_adopter;
DROP ROLE regress_io_adopter;

-- The relay's role reads the table and records this database in it.
CREATE ROLE regress_io_relay;
SELECT inbox_outbox.grant_relay('regress_io_relay');
SELECT pg_catalog.has_table_privilege('regress_io_relay', 'inbox_outbox.database_identity', 'SELECT') AS relay_reads,
       pg_catalog.has_table_privilege('regress_io_relay', 'inbox_outbox.database_identity', 'INSERT') AS relay_records,
       pg_catalog.has_table_privilege('regress_io_relay', 'inbox_outbox.database_identity', 'DELETE') AS relay_deletes;
SELECT inbox_outbox.revoke_relay('regress_io_relay');
SELECT pg_catalog.has_table_privilege('regress_io_relay', 'inbox_outbox.database_identity', 'SELECT, INSERT') AS after_revoke;
DROP OWNED BY regress_io_relay;
DROP ROLE regress_io_relay;

-- The check reads the table's columns directly: one altered by hand is an
-- error that names it, not a wrong answer.
BEGIN;
ALTER TABLE inbox_outbox.database_identity ALTER COLUMN database_oid TYPE bigint;
SELECT * FROM inbox_outbox.adopt_outbox();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

TRUNCATE inbox_outbox.outbox;
