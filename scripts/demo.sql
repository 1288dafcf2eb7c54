-- The inbox_outbox demo, run by scripts/demo.sh against a throwaway server
-- and a local Kafka broker.
\pset footer off
\set QUIET on
CREATE EXTENSION inbox_outbox;
SET timezone = 'UTC';
CREATE TABLE orders (id ulid PRIMARY KEY DEFAULT gen_ulid(), customer text, total numeric);
\set QUIET off

\echo
\echo '== ULID event ids: 26 characters, time first, in the 16 bytes of a uuid'
SELECT id, id::uuid AS as_uuid, ulid_timestamp(id) AS created
FROM (SELECT gen_ulid() AS id FROM generate_series(1, 3)) s;

\echo '== Five orders, each saved with its event in one transaction; orders 2 and 4 roll back'
\o /dev/null
BEGIN;
WITH o AS (INSERT INTO orders (customer, total) VALUES ('ada', 10) RETURNING *)
SELECT outbox_publish('orders', 'order-1', jsonb_build_object('event', 'OrderCreated', 'order', 1, 'total', total)) FROM o;
COMMIT;
BEGIN;
WITH o AS (INSERT INTO orders (customer, total) VALUES ('bob', 20) RETURNING *)
SELECT outbox_publish('orders', 'order-2', jsonb_build_object('event', 'OrderCreated', 'order', 2, 'total', total)) FROM o;
ROLLBACK;
BEGIN;
WITH o AS (INSERT INTO orders (customer, total) VALUES ('cy', 30) RETURNING *)
SELECT outbox_publish('orders', 'order-3', jsonb_build_object('event', 'OrderCreated', 'order', 3, 'total', total)) FROM o;
SELECT outbox_publish('orders', 'order-1', '{"event": "OrderPaid", "order": 1, "amount": 10}'::jsonb,
                      '{"trace_id": "demo-42"}');
COMMIT;
BEGIN;
SELECT outbox_publish('orders', 'order-4', '{"event": "OrderCreated", "order": 4}'::jsonb);
ROLLBACK;
BEGIN;
SELECT outbox_publish('orders', 'order-3', '{"event": "OrderShipped", "order": 3}'::jsonb);
COMMIT;
\o
SELECT customer, total FROM orders ORDER BY id;

\echo '== The relay publishes committed events at commit and deletes them once Kafka acknowledged'
DO $$
BEGIN
  -- a fresh broker takes a moment to accept its first idempotent producer
  FOR i IN 1 .. 600 LOOP
    EXIT WHEN NOT EXISTS (SELECT FROM inbox_outbox.outbox);
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT state, pending, published, failed, dead_letters FROM inbox_outbox.relay_status;
