-- Objects of bench/inbox.sh, created in the benchmark's throwaway database.

CREATE EXTENSION inbox_outbox;

-- Baseline of the claim benchmark: what an application would do without the
-- extension, an INSERT ... ON CONFLICT DO NOTHING into a table of the
-- inbox's shape (same columns, default, primary key and index on
-- claimed_at, which any such table needs for its retention).
CREATE TABLE raw_claims (LIKE inbox_outbox.inbox INCLUDING ALL);
