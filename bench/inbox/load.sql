-- :rows claims of consumer 'bench' with random uuid text ids, inserted in
-- random id order as a live inbox receives them (the primary key ends up as
-- full as under production traffic), claimed_at 8 days ago and rising, one
-- millisecond apart, in insertion order.  Run with -v table=... -v rows=...
INSERT INTO :table (consumer, event_id, claimed_at)
SELECT 'bench', gen_random_uuid()::text,
	   now() - interval '8 days' - (:rows - n) * interval '1 millisecond'
FROM generate_series(1, :rows) n;
