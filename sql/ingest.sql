--
-- Subscriptions: the functions' checks, errors and privileges (the worker
-- itself is tested against a real broker in test/t/080_ingest.pl; no worker
-- runs here, see test/regress.conf)
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS inbox_outbox;
CREATE EXTENSION inbox_outbox;
RESET client_min_messages;

CREATE ROLE regress_io_sub;
CREATE ROLE regress_io_sub2;
CREATE ROLE regress_io_nosub;
SELECT inbox_outbox.grant_subscriber('regress_io_sub');
SELECT inbox_outbox.grant_subscriber('regress_io_sub2');

CREATE FUNCTION regress_handler(topic text, partition int, "offset" bigint, key bytea,
                                payload bytea, headers jsonb, ts timestamptz)
	RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION regress_not_handler(topic text, partition int, "offset" bigint)
	RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION regress_private_handler(topic text, partition int, "offset" bigint, key bytea,
                                        payload bytea, headers jsonb, ts timestamptz)
	RETURNS void LANGUAGE sql AS $$ SELECT $$;
REVOKE EXECUTE ON FUNCTION regress_private_handler FROM PUBLIC;

-- A superuser may not own a subscription: its handler would run as one.
SELECT subscribe('orders_in', ARRAY['orders'], 'regress_handler'::regproc);
\echo :LAST_ERROR_SQLSTATE

-- A role without grant_subscriber cannot call the functions.
SET ROLE regress_io_nosub;
SELECT subscribe('orders_in', ARRAY['orders'], 'regress_handler'::regproc);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM inbox_outbox.subscription;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

SET ROLE regress_io_sub;
-- Arguments checked: 22023 for a bad value, 22004 for a null, 42883 for a
-- function that is not a handler, 42501 for one the role may not run.
SELECT subscribe('bad name!', ARRAY['orders'], 'regress_handler'::regproc);
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe(repeat('n', 64), ARRAY['orders'], 'regress_handler'::regproc);
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe('orders_in', ARRAY[]::text[], 'regress_handler'::regproc);
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe('orders_in', ARRAY['bad topic'], 'regress_handler'::regproc);
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe('orders_in', ARRAY['orders', NULL], 'regress_handler'::regproc);
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe('orders_in', ARRAY['orders'], 'regress_handler'::regproc, start_from => 'middle');
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe('orders_in', ARRAY['orders'], 'regress_handler'::regproc, event_id => 'header:');
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe('orders_in', ARRAY['orders'], 'regress_handler'::regproc, event_id => 'value');
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe('orders_in', ARRAY['orders'], 'regress_handler'::regproc, batch_size => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe('orders_in', ARRAY['orders'], 'regress_handler'::regproc, max_attempts => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe('orders_in', ARRAY['orders'], 'regress_handler'::regproc, on_gap => 'skip');
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe('orders_in', ARRAY['orders'], 'regress_handler'::regproc, workers => 9);
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe('orders_in', ARRAY['orders'], 'regress_handler'::regproc, workers => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe('orders_in', ARRAY['orders'], 'regress_not_handler'::regproc);
\echo :LAST_ERROR_SQLSTATE
SELECT subscribe('orders_in', ARRAY['orders'], 'regress_private_handler'::regproc);
\echo :LAST_ERROR_SQLSTATE

-- A subscription, duplicate topics dropped; paused in the same transaction,
-- so that no worker is asked for.
BEGIN;
SELECT subscribe('orders_in', ARRAY['orders', 'refunds', 'orders'],
                 'regress_handler'::regproc, event_id => 'key', workers => 2);
SELECT subscription_pause('orders_in');
COMMIT;
RESET ROLE;
SELECT name, owner, topics, handler, start_from, event_id, batch_size,
       max_attempts, on_gap, workers, enabled
FROM inbox_outbox.subscription;

-- Another subscriber cannot change it, redrive or discard its dead letters.
SET ROLE regress_io_sub2;
SELECT subscription_resume('orders_in');
\echo :LAST_ERROR_SQLSTATE
SELECT subscription_seek('orders_in', 'orders', 0, 5);
\echo :LAST_ERROR_SQLSTATE
SELECT unsubscribe('orders_in');
\echo :LAST_ERROR_SQLSTATE
SELECT unsubscribe('no_such');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT subscribe('orders_in', ARRAY['orders'], 'regress_handler'::regproc);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;

-- Seeks: only for its topics, not before offset 0; they show in
-- ingest_status (no worker runs, so its state is "paused").
SET ROLE regress_io_sub;
SELECT subscription_seek('orders_in', 'payments', 0, 5);
\echo :LAST_ERROR_SQLSTATE
SELECT subscription_seek('orders_in', 'orders', -1, 5);
\echo :LAST_ERROR_SQLSTATE
SELECT subscription_seek('orders_in', 'orders', 0, -5);
\echo :LAST_ERROR_SQLSTATE
SELECT subscription_seek('orders_in', 'orders', 0, 5);
SELECT subscription_seek('orders_in', 'orders', 0, 7);
SELECT subscription_seek('orders_in', 'refunds', 3, 0);
RESET ROLE;
SELECT subscription, topic, partition, next_offset, lag, state, pid, dead_letters
FROM inbox_outbox.ingest_status ORDER BY topic, partition;

-- Dead letters: a redrive runs the handler as the owner, in the caller's
-- transaction, and claims the event id; an id already claimed is not run
-- again.  Another subscriber's calls skip them.
CREATE TABLE regress_effects (n int, run_as name);
GRANT INSERT ON regress_effects TO regress_io_sub;
CREATE OR REPLACE FUNCTION regress_handler(topic text, partition int, "offset" bigint, key bytea,
                                           payload bytea, headers jsonb, ts timestamptz)
	RETURNS void LANGUAGE sql
	AS $$ INSERT INTO public.regress_effects VALUES ("offset", current_user) $$;
INSERT INTO inbox_outbox.ingest_dead_letter
	(id, subscription, topic, partition, "offset", event_id, key, payload, attempts, sqlstate, error)
VALUES ('01JDQ2T0000000000000000001', 'orders_in', 'orders', 0, 11, 'k11', 'k11', 'p', 5, 'P0001', 'boom'),
       ('01JDQ2T0000000000000000002', 'orders_in', 'orders', 0, 12, 'k12', 'k12', 'p', 5, 'P0001', 'boom'),
       ('01JDQ2T0000000000000000003', 'orders_in', 'orders', 1, 13, 'k11', 'k11', 'p', 5, 'P0001', 'boom'),
       ('01JDQ2T0000000000000000004', 'orders_in', 'orders', 1, 14, NULL, NULL, 'p', 5, '22023', 'no event id');
SET ROLE regress_io_sub2;
SELECT ingest_redrive();
SELECT ingest_discard(ARRAY['01JDQ2T0000000000000000001']::ulid[]);
RESET ROLE;
SET ROLE regress_io_sub;
SELECT ingest_discard(ARRAY[NULL]::ulid[]);
\echo :LAST_ERROR_SQLSTATE
SELECT ingest_redrive(ARRAY['01JDQ2T0000000000000000001', '01JDQ2T0000000000000000003']::ulid[]);
SELECT ingest_discard(ARRAY['01JDQ2T0000000000000000002']::ulid[]);
RESET ROLE;
SELECT * FROM regress_effects ORDER BY n;
SELECT consumer, event_id FROM inbox_outbox.inbox ORDER BY event_id;
SELECT count(*) AS dead_letters_left FROM inbox_outbox.ingest_dead_letter;

-- A redrive of all leaves what has no event id (nothing to claim it by).
SET ROLE regress_io_sub;
SELECT ingest_redrive();
RESET ROLE;
SELECT id, event_id FROM inbox_outbox.ingest_dead_letter;

-- unsubscribe forgets the offsets, the inbox claims and the dead letters.
SET ROLE regress_io_sub;
SELECT unsubscribe('orders_in');
RESET ROLE;
SELECT count(*) AS offsets_left FROM inbox_outbox.subscription_offset;
SELECT count(*) AS claims_left FROM inbox_outbox.inbox;
SELECT count(*) AS dead_letters_left FROM inbox_outbox.ingest_dead_letter;

DROP TABLE regress_effects;
DROP FUNCTION regress_handler, regress_not_handler, regress_private_handler;
SET client_min_messages = warning;
DROP EXTENSION inbox_outbox;
CREATE EXTENSION inbox_outbox;
RESET client_min_messages;
DROP ROLE regress_io_sub, regress_io_sub2, regress_io_nosub;
