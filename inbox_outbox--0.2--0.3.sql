/* inbox_outbox--0.2--0.3.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION inbox_outbox UPDATE TO '0.3'" to load this file. \quit

--
-- The inbox: one narrow row per claimed (consumer, event id).
--

CREATE TABLE inbox_outbox.inbox (
	consumer	text NOT NULL,
	event_id	text NOT NULL,
	claimed_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (consumer, event_id)
);

COMMENT ON TABLE inbox_outbox.inbox IS
	'claims of inbox_try_claim(); kept for inbox_outbox.inbox_retention';

-- Retention deletes the oldest claims first, in batches that each start
-- where the last one ended.  A btree, not BRIN: once pruning frees pages,
-- new claims refill them, and a BRIN range would then span old and new
-- claims for good and match every search.  Claims arrive in time order, so
-- its inserts go to the rightmost leaf.
CREATE INDEX inbox_claimed_at ON inbox_outbox.inbox (claimed_at);

SELECT pg_catalog.pg_extension_config_dump('inbox_outbox.inbox', '');

CREATE FUNCTION @extschema@.inbox_try_claim(event_id text, consumer text DEFAULT 'default')
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'inbox_try_claim'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.inbox_try_claim(text, text) IS
	'true for the first claim of an event id by a consumer, false for a duplicate; released if the transaction rolls back';

CREATE FUNCTION @extschema@.inbox_try_claim(event_id @extschema@.ulid, consumer text DEFAULT 'default')
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'inbox_try_claim_ulid'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.inbox_try_claim(@extschema@.ulid, text) IS
	'claim a ULID event id, under its 26-character text form';

CREATE FUNCTION @extschema@.inbox_try_claim(event_id uuid, consumer text DEFAULT 'default')
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'inbox_try_claim_ulid'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.inbox_try_claim(uuid, text) IS
	'claim a uuid event id, under the ULID text form of its 128 bits';

--
-- Retention
--

CREATE FUNCTION inbox_outbox.inbox_prune_once(retention interval, batch_size integer,
											  from_claimed_at timestamptz,
											  OUT deleted bigint, OUT newest timestamptz)
	AS 'MODULE_PATHNAME', 'inbox_prune_once'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION inbox_outbox.inbox_prune_once(interval, integer, timestamptz) IS
	'one batch of inbox_prune(): delete up to batch_size expired claims claimed at or after from_claimed_at, oldest first; newest is where the next batch starts';

-- After each batch the procedure rests twice as long as the batch took, so
-- a large prune takes at most about a third of one core and of the WAL
-- rate it could reach (as the relay's does).
CREATE PROCEDURE @extschema@.inbox_prune(retention interval DEFAULT NULL,
										 batch_size integer DEFAULT 10000)
	LANGUAGE plpgsql
	-- no SET search_path here: it would forbid the COMMITs; all names are qualified
AS $$
DECLARE
	keep interval := coalesce(retention,
							  pg_catalog.current_setting('inbox_outbox.inbox_retention')::interval);
	done bigint;
	next_from timestamptz := '-infinity';
	started timestamptz;
BEGIN
	IF pg_catalog.current_setting('inbox_outbox.inbox_retention') OPERATOR(pg_catalog.=) '-1'
	   AND retention IS NULL THEN
		RETURN;
	END IF;
	LOOP
		started := pg_catalog.clock_timestamp();
		SELECT p.deleted, p.newest INTO done, next_from
		FROM inbox_outbox.inbox_prune_once(keep, batch_size, next_from) p;
		COMMIT;
		EXIT WHEN done OPERATOR(pg_catalog.<) batch_size;
		PERFORM pg_catalog.pg_sleep(pg_catalog.date_part('epoch',
										pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started)
									OPERATOR(pg_catalog.*) 2);
	END LOOP;
END
$$;

COMMENT ON PROCEDURE @extschema@.inbox_prune(interval, integer) IS
	'delete claims older than the retention, in batches that each commit (CALL it outside a transaction block)';

--
-- Observability
--

CREATE FUNCTION inbox_outbox.inbox_duplicates(OUT consumer text, OUT duplicates bigint)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'inbox_duplicates'
	LANGUAGE C VOLATILE STRICT PARALLEL SAFE ROWS 10;

CREATE VIEW inbox_outbox.inbox_consumers AS
SELECT coalesce(c.consumer, d.consumer) AS consumer,
	   coalesce(c.claims, 0) AS claims,
	   c.oldest_claim,
	   coalesce(d.duplicates, 0) AS duplicates_absorbed
FROM (SELECT i.consumer, pg_catalog.count(*) AS claims, pg_catalog.min(i.claimed_at) AS oldest_claim
	  FROM inbox_outbox.inbox i GROUP BY i.consumer) c
FULL JOIN inbox_outbox.inbox_duplicates() d ON d.consumer = c.consumer;

COMMENT ON VIEW inbox_outbox.inbox_consumers IS
	'per consumer: claims held, the oldest claim, duplicates absorbed since server start';
