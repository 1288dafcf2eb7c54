--
-- Publishing to the outbox: outbox_publish(), direct inserts, dead letters
--
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

SELECT extversion FROM pg_extension WHERE extname = 'inbox_outbox';

-- the three payload types, headers, null key and null payload
SELECT outbox_publish('orders', 'order-1', '\x00ff'::bytea) IS NOT NULL AS bytea_published;
SELECT outbox_publish('orders', 'order-1', 'héllo'::text, '{"trace": "t-1"}') IS NOT NULL AS text_published;
SELECT outbox_publish('orders', 'order-2', '{"total": 42, "items": [1, 2]}'::jsonb) IS NOT NULL AS jsonb_published;
SELECT outbox_publish('orders.v2', NULL, NULL) IS NOT NULL AS tombstone_without_key;
SELECT outbox_publish('orders', 'order-3', 'untyped literal') IS NOT NULL AS unknown_resolves_to_text;
SELECT topic, key, payload, encode(payload, 'escape') AS escaped, headers, attempts,
       last_error IS NULL AS no_error, next_attempt_at IS NULL AS not_waiting,
       created_at <= clock_timestamp() AS created
FROM inbox_outbox.outbox ORDER BY id;

-- ids come from gen_ulid(): in publish order, returned to the caller
SELECT array_agg(key ORDER BY id) FROM inbox_outbox.outbox;
SELECT outbox_publish('orders', 'order-4', 'x') AS id \gset
SELECT key FROM inbox_outbox.outbox WHERE id = :'id';

-- a rolled-back transaction leaves nothing behind
BEGIN;
SELECT outbox_publish('orders', 'rolled-back', 'x') IS NOT NULL;
ROLLBACK;
SELECT count(*) FROM inbox_outbox.outbox WHERE key = 'rolled-back';

-- topic validation
SELECT outbox_publish(NULL, 'k', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('', 'k', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish(repeat('t', 249), 'k', 'x') IS NOT NULL AS longest_topic_accepted;
SELECT outbox_publish(repeat('t', 250), 'k', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('.', 'k', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('..', 'k', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('my topic', 'k', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('orders/eu', 'k', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('tópico', 'k', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('Orders_2024-01.v1', 'k', 'x') IS NOT NULL AS all_legal_characters;

-- header validation
SELECT outbox_publish('orders', 'k', 'x', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('orders', 'k', 'x', '"trace"');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('orders', 'k', 'x', '{"trace": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('orders', 'k', 'x', '{"trace": null}');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('orders', 'k', 'x', '{"trace": {"a": "b"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('orders', 'k', 'x', '{"event_id": "mine"}');
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('orders', 'k', 'x', '{}') IS NOT NULL AS empty_headers_accepted;

-- size limit: payload, key and headers together, with the 34 bytes of the
-- event_id header the relay adds, exactly as the relay counts them
SET inbox_outbox.max_message_bytes = 1000;
SELECT outbox_publish('orders', 'k', repeat('x', 965)::text) IS NOT NULL AS at_limit;
SELECT outbox_publish('orders', 'k', repeat('x', 966)::text);
\echo :LAST_ERROR_SQLSTATE
SELECT outbox_publish('orders', 'k', repeat('x', 956)::text, '{"trace": "0123456789"}');
\echo :LAST_ERROR_SQLSTATE
RESET inbox_outbox.max_message_bytes;

-- the setting is for superusers and bounded
CREATE ROLE regress_outbox_user;
SET ROLE regress_outbox_user;
SET inbox_outbox.max_message_bytes = 100000000;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- (PostgreSQL 18 words the range of the message with units: the bounds
-- are checked in pg_settings instead)
\set VERBOSITY sqlstate
SET inbox_outbox.max_message_bytes = 10;
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
SELECT min_val, max_val, unit FROM pg_settings
WHERE name = 'inbox_outbox.max_message_bytes';
DROP ROLE regress_outbox_user;

-- direct inserts (an ORM mapping the table) get an id and a creation time,
-- and the same topic and header rules
INSERT INTO inbox_outbox.outbox (topic, key, payload)
VALUES ('orders', 'orm-1', convert_to('{"via": "orm"}', 'UTF8'))
RETURNING length(id::text) AS id_length, created_at IS NOT NULL AS has_created_at;
\set VERBOSITY terse
INSERT INTO inbox_outbox.outbox (topic, payload) VALUES ('bad topic', '\x00');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO inbox_outbox.outbox (topic, payload, headers) VALUES ('orders', '\x00', '{"event_id": "x"}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO inbox_outbox.outbox (topic, payload, headers) VALUES ('orders', '\x00', '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO inbox_outbox.outbox (key, payload) VALUES ('no-topic', '\x00');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- the relay's status when no relay runs in this database
SELECT database = current_database() AS this_database, pid, state, pending, published,
       failed, dead_letters, last_error
FROM inbox_outbox.relay_status;

-- dead letters: redrive keeps the id, discard deletes
TRUNCATE inbox_outbox.outbox;
INSERT INTO inbox_outbox.outbox_dead_letter (id, topic, key, payload, created_at, attempts, last_error)
VALUES ('01GV5PA9EQG7D82Q3Y4PKBZSYV', 'orders', 'k1', '\x01', '2023-03-10 12:00:49.111+00', 10, 'MSG_SIZE_TOO_LARGE'),
       ('01GV5PA9EQG7D82Q3Y4PKBZSYW', 'orders', 'k1', '\x02', '2023-03-10 12:00:49.111+00', 10, 'MSG_SIZE_TOO_LARGE'),
       ('01GV5PA9EQG7D82Q3Y4PKBZSYX', 'orders', 'k2', '\x03', '2023-03-10 12:00:49.111+00', 3, 'UNKNOWN_TOPIC');
SELECT outbox_redrive(ARRAY['01GV5PA9EQG7D82Q3Y4PKBZSYV']::ulid[]);
SELECT id, topic, key, payload, created_at, attempts, last_error FROM inbox_outbox.outbox;
SELECT outbox_discard(ARRAY['01GV5PA9EQG7D82Q3Y4PKBZSYW', '01GV5PA9EQG7D82Q3Y4PKBZSYV']::ulid[]);
SELECT outbox_redrive();
SELECT id, key FROM inbox_outbox.outbox ORDER BY id;
SELECT count(*) FROM inbox_outbox.outbox_dead_letter;
SELECT outbox_discard(NULL);

-- pg_dump keeps pending events
SELECT extconfig::regclass[] FROM pg_extension WHERE extname = 'inbox_outbox';

-- the objects and where they live
SELECT n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'inbox_outbox' ORDER BY c.relname;
SELECT p.oid::regprocedure, p.provolatile, p.proparallel
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'inbox_outbox'
WHERE p.proname LIKE 'outbox%' OR p.pronamespace = 'inbox_outbox'::regnamespace
ORDER BY p.oid::regprocedure::text;
TRUNCATE inbox_outbox.outbox;
