-- Objects of bench/ingest.sh, created in the benchmark's throwaway database.

CREATE EXTENSION inbox_outbox;
CREATE EXTENSION pg_stat_statements;

-- The owner of the subscriptions: handlers never run as a superuser.  It
-- may also claim, for the ceilings that call inbox_try_claim() themselves.
CREATE ROLE bench_ingester NOLOGIN;
SELECT inbox_outbox.grant_subscriber('bench_ingester');
SELECT inbox_outbox.grant_consumer('bench_ingester');

-- The throughput handler: one INSERT of every argument, no index.
CREATE TABLE ingested (
	topic		text,
	partition	int,
	"offset"	bigint,
	key			bytea,
	payload		bytea,
	headers		jsonb,
	ts			timestamptz
);
GRANT INSERT ON ingested TO bench_ingester;

CREATE FUNCTION ingest_row(topic text, partition int, "offset" bigint, key bytea,
						   payload bytea, headers jsonb, ts timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.ingested VALUES (topic, partition, "offset", key, payload, headers, ts);
END $$;
ALTER FUNCTION ingest_row OWNER TO bench_ingester;

-- The ceilings' input: the messages of the first ingestion run, exactly as
-- the worker handed them to the handler (bench/ingest.sh fills it), in the
-- order of their commits.
CREATE TABLE messages (LIKE ingested, seq bigint);
GRANT SELECT ON messages TO bench_ingester;

-- Ceiling (c): what the worker does per message, claim then handler, in
-- transactions of batch messages each, without Kafka.
CREATE PROCEDURE ceiling_batches(consumer text, batch int)
LANGUAGE plpgsql AS $$
DECLARE
	last bigint;
BEGIN
	SELECT max(seq) INTO last FROM public.messages;
	FOR lo IN 0 .. last - 1 BY batch LOOP
		PERFORM CASE WHEN inbox_try_claim(m.headers ->> 'event_id', consumer)
					 THEN public.ingest_row(m.topic, m.partition, m."offset", m.key,
											m.payload, m.headers, m.ts) END
		FROM public.messages m
		WHERE m.seq > lo AND m.seq <= lo + batch
		ORDER BY m.seq;
		COMMIT;
	END LOOP;
END $$;

-- The latency handler: payloads are "TAG SENT_US PADDING", SENT_US the
-- producer's clock when it handed the message over.  The handler records
-- its own clock; the batch's commit time comes from the row's xmin
-- (track_commit_timestamp).
CREATE TABLE latency (tag text, sent_us bigint, handled_at timestamptz);
GRANT INSERT ON latency TO bench_ingester;

CREATE FUNCTION record_latency(topic text, partition int, "offset" bigint, key bytea,
							   payload bytea, headers jsonb, ts timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	f text[] := string_to_array(convert_from(payload, 'UTF8'), ' ');
BEGIN
	INSERT INTO public.latency VALUES (f[1], f[2]::bigint, clock_timestamp());
END $$;
ALTER FUNCTION record_latency OWNER TO bench_ingester;

-- The same messages as a plain consumer (kcat) received them, to compare
-- each message's commit with its receipt by Kafka alone.
CREATE TABLE kcat_seen (tag text, sent_us bigint, received_us bigint);
