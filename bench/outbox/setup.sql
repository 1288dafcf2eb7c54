-- Objects of bench/outbox.sh, created in the benchmark's throwaway database.

CREATE EXTENSION inbox_outbox;
CREATE EXTENSION pg_stat_statements;

-- Baseline of the publish benchmark: what an application would write
-- without the extension, in a table of the outbox's shape.
CREATE TABLE plain_outbox (
	id			ulid PRIMARY KEY DEFAULT gen_ulid(),
	topic		text NOT NULL,
	key			text,
	payload		bytea,
	headers		jsonb,
	created_at	timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The drain benchmark's million events: ~200-byte JSON payloads over
-- 10,000 keys, computed once and copied into the outbox for every run.
CREATE TABLE drain_src AS
SELECT (i % 10000)::text AS key,
	   convert_to(jsonb_build_object(
		   'order_id', i, 'customer_id', i % 100000, 'status', 'created',
		   'currency', 'EUR', 'amount', 123.45,
		   'items', jsonb_build_array(
			   jsonb_build_object('sku', 'SKU-' || i, 'qty', 2, 'price', 19.99),
			   jsonb_build_object('sku', 'SKU-' || (i % 100000), 'qty', 1, 'price', 83.47)))::text,
		   'UTF8') AS payload
FROM generate_series(1, 1000000) i;

-- PostgreSQL-only ceiling, as a queue without Kafka would drain: one
-- DELETE ... RETURNING of the n oldest rows per transaction.  Returns the
-- number of rows deleted.  "id = ANY (ARRAY(...))" rather than "id IN
-- (...)": for large n the latter is planned as a hash join over a
-- sequential scan of the whole table.
CREATE PROCEDURE drain_delete_returning(n int, INOUT total bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
	got int;
BEGIN
	LOOP
		WITH d AS (
			DELETE FROM inbox_outbox.outbox
			WHERE id = ANY (ARRAY(SELECT id FROM inbox_outbox.outbox ORDER BY id LIMIT n))
			RETURNING id, topic, key, payload, headers)
		SELECT count(*) INTO got FROM d;
		COMMIT;
		EXIT WHEN got = 0;
		total := total + got;
	END LOOP;
END $$;

-- PostgreSQL-only ceiling with the relay's own statements (src/relay.c):
-- read a batch in one transaction, delete it by ctid in another.
CREATE PROCEDURE drain_relay_statements(n int, INOUT total bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
	tids tid[];
	bytes bigint;
	deleted bigint;
BEGIN
	LOOP
		SELECT array_agg(q.ctid), sum(length(q.payload) + length(q.key))
		INTO tids, bytes
		FROM (SELECT o.ctid, o.id, o.topic,
					 CASE WHEN octet_length(o.key) <= 1000000 THEN o.key END AS key,
					 CASE WHEN octet_length(o.payload) <= 1000000 THEN o.payload END AS payload,
					 CASE WHEN pg_column_size(o.headers) <= 1000000 THEN o.headers::text END,
					 o.created_at, o.attempts, octet_length(o.key), octet_length(o.payload),
					 pg_column_size(o.headers)
				FROM inbox_outbox.outbox o
			   WHERE (o.attempts = 0 OR o.next_attempt_at IS NULL OR o.next_attempt_at <= now())
				 AND NOT EXISTS (SELECT 1 FROM inbox_outbox.outbox f
								  WHERE f.attempts > 0 AND f.topic = o.topic
									AND f.key = o.key AND f.id::uuid < o.id::uuid)
			   ORDER BY o.id LIMIT n) q;
		COMMIT;
		EXIT WHEN tids IS NULL;
		WITH d AS (DELETE FROM inbox_outbox.outbox WHERE ctid = ANY (tids) RETURNING ctid, id)
		SELECT count(*) INTO deleted FROM d;
		COMMIT;
		total := total + deleted;
	END LOOP;
END $$;

-- Latency from commit to acknowledgement: the relay deletes a row only
-- after Kafka acknowledged it, so the time of the DELETE is an upper bound
-- of the acknowledgement's.  The latency benchmark's payloads begin with
-- "TAG STATEMENT_US", and this trigger records, for each of its rows the
-- relay deletes, the time since that statement.  Only topic 'latency'.
CREATE UNLOGGED TABLE acked (tag text, latency_ms float8);

-- The relay runs with search_path = pg_catalog, pg_temp, so a trigger it
-- fires names its schema.
CREATE FUNCTION record_ack() RETURNS trigger LANGUAGE plpgsql
	SET search_path = public, pg_catalog AS $$
DECLARE
	f text[] := string_to_array(convert_from(OLD.payload, 'UTF8'), ' ');
BEGIN
	INSERT INTO acked
	VALUES (f[1], (extract(epoch FROM clock_timestamp()) * 1000000 - f[2]::float8) / 1000);
	RETURN NULL;
END $$;

-- bench/outbox.sh creates the trigger for the latency part only:
-- CREATE TRIGGER record_ack AFTER DELETE ON inbox_outbox.outbox
--	FOR EACH ROW WHEN (OLD.topic = 'latency') EXECUTE FUNCTION record_ack();
