--
-- The inbox: inbox_try_claim(), retention, consumers view
--
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- the first claim wins, a duplicate is absorbed without an error
SELECT inbox_try_claim('01GV5PA9EQG7D82Q3Y4PKBZSYV', 'billing');
SELECT inbox_try_claim('01GV5PA9EQG7D82Q3Y4PKBZSYV', 'billing');
-- other consumers claim independently; the default consumer is 'default'
SELECT inbox_try_claim('01GV5PA9EQG7D82Q3Y4PKBZSYV', 'shipping');
SELECT inbox_try_claim('01GV5PA9EQG7D82Q3Y4PKBZSYV');
SELECT inbox_try_claim('01GV5PA9EQG7D82Q3Y4PKBZSYV', 'default');

-- ulid and uuid ids are claimed under the ULID text, as the event_id header carries it
SELECT inbox_try_claim('01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid, 'billing');
SELECT inbox_try_claim('0186cb65-25d7-81da-815c-7e25a6bfe7db'::uuid, 'billing');
SELECT inbox_try_claim('0186cb65-25d7-81da-815c-7e25a6bfe7dc'::uuid, 'billing');
SELECT consumer, event_id FROM inbox_outbox.inbox ORDER BY consumer, event_id;

-- text ids are compared exactly: any string names an event or a business fact
SELECT inbox_try_claim('01gv5pa9eqg7d82q3y4pkbzsyv', 'billing');
SELECT inbox_try_claim('like:user-7:product-42', 'likes');
SELECT inbox_try_claim('like:user-7:product-42', 'likes');

-- a rollback releases the claim
BEGIN;
SELECT inbox_try_claim('evt-rolled-back', 'billing');
ROLLBACK;
SELECT inbox_try_claim('evt-rolled-back', 'billing');

-- a claim runs in its caller's snapshot, yet sees claims made earlier in
-- the same statement and the same transaction: only the first is true
SELECT n, inbox_try_claim('evt-same-statement', 'billing') FROM generate_series(1, 3) n ORDER BY n;
BEGIN;
SELECT inbox_try_claim('evt-same-transaction', 'billing');
SELECT inbox_try_claim('evt-same-transaction', 'billing');
COMMIT;

-- claim and business change in one transaction: the change happens once
CREATE TABLE likes (user_id int, product_id int, at timestamptz DEFAULT now());
CREATE FUNCTION like_product(u int, p int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF NOT inbox_try_claim(format('like:%s:%s', u, p), 'likes') THEN
		RETURN false;
	END IF;
	INSERT INTO likes (user_id, product_id) VALUES (u, p);
	RETURN true;
END $$;
SELECT like_product(1, 10), like_product(1, 10), like_product(2, 10), like_product(1, 10);
SELECT user_id, product_id FROM likes ORDER BY 1, 2;

-- errors
SELECT inbox_try_claim(NULL::text, 'billing');
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_try_claim(NULL::ulid, 'billing');
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_try_claim('', 'billing');
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_try_claim(repeat('x', 512), 'billing') AS longest_id_accepted;
SELECT inbox_try_claim(repeat('x', 513), 'billing');
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_try_claim('evt-1', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_try_claim('evt-1', '');
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_try_claim('evt-1', repeat('c', 63)) AS longest_consumer_accepted;
SELECT inbox_try_claim('evt-1', repeat('c', 64));
\echo :LAST_ERROR_SQLSTATE

-- the consumers view: claims held, oldest claim, duplicates absorbed
SELECT consumer, claims, oldest_claim IS NOT NULL AS has_oldest, duplicates_absorbed
FROM inbox_outbox.inbox_consumers
WHERE consumer NOT LIKE 'ccc%'
ORDER BY consumer;

-- retention: claims older than it go, in batches; newer ones stay
TRUNCATE inbox_outbox.inbox;
INSERT INTO inbox_outbox.inbox (consumer, event_id, claimed_at)
SELECT 'billing', 'old-' || g, now() - interval '8 days' - g * interval '1 second'
FROM generate_series(1, 2500) g;
INSERT INTO inbox_outbox.inbox (consumer, event_id, claimed_at)
SELECT 'billing', 'new-' || g, now() - interval '6 days'
FROM generate_series(1, 100) g;
CREATE TEMP TABLE batch1 AS
	SELECT * FROM inbox_outbox.inbox_prune_once('7 days', 1000, '-infinity');
SELECT deleted FROM batch1;
-- oldest first: nothing at or before the batch's newest is left
SELECT count(*) FROM inbox_outbox.inbox WHERE claimed_at <= (SELECT newest FROM batch1);
-- the next batch starts there
SELECT p.deleted, p.newest > b.newest AS later
FROM batch1 b, inbox_outbox.inbox_prune_once('7 days', 1000, b.newest) p;
SELECT count(*) FROM inbox_outbox.inbox;
-- a batch that starts after every expired claim deletes nothing
SELECT deleted, newest = now() - interval '7 days' AS unchanged
FROM inbox_outbox.inbox_prune_once('7 days', 1000, now() - interval '7 days');
CALL inbox_prune(batch_size => 1000);
SELECT count(*), min(event_id) FROM inbox_outbox.inbox;
-- a claim older than the retention can be claimed again
SELECT inbox_try_claim('old-1', 'billing');
CALL inbox_prune('1 day');
SELECT count(*) FROM inbox_outbox.inbox;
SELECT inbox_outbox.inbox_prune_once('-1 day', 10, '-infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT inbox_outbox.inbox_prune_once('1 day', 0, '-infinity');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
CALL inbox_prune();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
TRUNCATE inbox_outbox.inbox;
DROP FUNCTION like_product(int, int);
DROP TABLE likes;

-- One database names at most 32 consumers in the duplicate counters, so
-- that it cannot take the entries of others; the duplicates of its other
-- consumers are counted together, under a NULL consumer.
SELECT current_database() AS origdb \gset
CREATE DATABASE inbox_consumer_cap;
\c inbox_consumer_cap
SET client_min_messages = warning;
CREATE EXTENSION inbox_outbox;
RESET client_min_messages;
SELECT count(*) FILTER (WHERE first AND NOT second) AS claimed_then_absorbed
FROM generate_series(1, 40) g,
	 LATERAL (SELECT inbox_try_claim('e', 'c' || g) AS first,
					 inbox_try_claim('e', 'c' || g) AS second) x;
SELECT count(*) FILTER (WHERE consumer IS NOT NULL) AS named,
	   sum(duplicates) FILTER (WHERE consumer IS NOT NULL) AS named_duplicates,
	   sum(duplicates) FILTER (WHERE consumer IS NULL) AS other_duplicates
FROM inbox_outbox.inbox_duplicates();
SELECT count(*) AS rows, count(*) FILTER (WHERE consumer IS NULL) AS others_row
FROM inbox_outbox.inbox_consumers;
\c :origdb
DROP DATABASE inbox_consumer_cap;
