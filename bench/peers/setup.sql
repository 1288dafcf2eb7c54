-- Objects of bench/peers.sh, created in its throwaway database.  psql
-- variable "events" is the number of events of a drain.
--
-- Three outboxes, one per relay under test, fed the same events:
--   io    inbox_outbox.outbox, written by outbox_publish();
--   dbz   the table Debezium's outbox event router reads, kept empty by
--         inserting and deleting each event in the same transaction, as
--         Debezium's documentation recommends: only the WAL carries it;
--   poll  a table of inbox_outbox.outbox's shape with a bigint identity
--         key, as the outboxes that frameworks ship look.

CREATE EXTENSION inbox_outbox;

CREATE TABLE poll_outbox (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	topic		text NOT NULL,
	key			text,
	payload		bytea,
	headers		jsonb,
	created_at	timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- payload is text: Debezium's string format sends it as it is, the same
-- bytes the other two relays send.  aggregatetype names the topic.
CREATE TABLE dbz_outbox (
	id				uuid PRIMARY KEY,
	aggregatetype	varchar(255) NOT NULL,
	aggregateid		varchar(255) NOT NULL,
	type			varchar(255) NOT NULL,
	payload			text
);
-- The deletes that keep the table empty stay in the server.
CREATE PUBLICATION dbz_publication FOR TABLE dbz_outbox WITH (publish = 'insert');

-- Two statements: a DELETE in the same statement as the INSERT would not
-- see the inserted row.
CREATE FUNCTION dbz_publish(topic text, key text, payload text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	eid uuid := gen_random_uuid();
BEGIN
	INSERT INTO dbz_outbox VALUES (eid, topic, key, 'event', payload);
	DELETE FROM dbz_outbox WHERE id = eid;
END $$;

-- The events of the drains, computed once: JSON payloads over 10,000 keys,
-- of about 200 bytes (those of bench/outbox.sh) and of 4 KiB.  The large
-- ones carry a random hexadecimal block, so that neither TOAST nor anything
-- else compresses them away.
CREATE TABLE events_200 AS
SELECT i, (i % 10000)::text AS key,
	   convert_to(jsonb_build_object(
		   'order_id', i, 'customer_id', i % 100000, 'status', 'created',
		   'currency', 'EUR', 'amount', 123.45,
		   'items', jsonb_build_array(
			   jsonb_build_object('sku', 'SKU-' || i, 'qty', 2, 'price', 19.99),
			   jsonb_build_object('sku', 'SKU-' || (i % 100000), 'qty', 1, 'price', 83.47)))::text,
		   'UTF8') AS payload
FROM generate_series(1, :events) i;

CREATE TABLE events_4096 AS
WITH block AS (
	SELECT string_agg(md5(random()::text || g), '') AS hex
	FROM generate_series(1, 128) g)
SELECT i, (i % 10000)::text AS key,
	   convert_to(rpad(format('{"order_id": %s, "status": "created", "blob": "', i)
						   || substr(block.hex, 1 + i % 64), 4094, block.hex) || '"}',
				  'UTF8') AS payload
FROM generate_series(1, :events) i, block;
ALTER TABLE events_200 ADD PRIMARY KEY (i);
ALTER TABLE events_4096 ADD PRIMARY KEY (i);

-- Puts the events of table src into the outbox of relay sys (io, dbz or
-- poll) for topic t, per_tx events to a transaction, as an application
-- that had been writing them while the relay was down would have.
CREATE PROCEDURE load_events(sys text, src regclass, t text, per_tx int)
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
	lo bigint := 1;
	ids uuid[];
BEGIN
	EXECUTE format('SELECT max(i) FROM %s', src) INTO n;
	WHILE lo <= n LOOP
		IF sys = 'io' THEN
			EXECUTE format('INSERT INTO inbox_outbox.outbox (topic, key, payload)
							SELECT $1, key, payload FROM %s WHERE i >= $2 AND i < $3', src)
			USING t, lo, lo + per_tx;
		ELSIF sys = 'poll' THEN
			EXECUTE format('INSERT INTO poll_outbox (topic, key, payload)
							SELECT $1, key, payload FROM %s WHERE i >= $2 AND i < $3', src)
			USING t, lo, lo + per_tx;
		ELSIF sys = 'dbz' THEN
			EXECUTE format('WITH e AS (
								INSERT INTO dbz_outbox
								SELECT gen_random_uuid(), $1, key, ''event'', convert_from(payload, ''UTF8'')
								FROM %s WHERE i >= $2 AND i < $3
								RETURNING id)
							SELECT array_agg(id) FROM e', src)
			INTO ids USING t, lo, lo + per_tx;
			DELETE FROM dbz_outbox WHERE id = ANY (ids);
		ELSE
			RAISE EXCEPTION 'unknown relay "%"', sys;
		END IF;
		COMMIT;
		lo := lo + per_tx;
	END LOOP;
END $$;
