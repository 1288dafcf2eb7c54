-- The inbox_outbox demo, run by scripts/demo.sh against a throwaway server.
\pset footer off
CREATE EXTENSION inbox_outbox;
SET timezone = 'UTC';

\echo
\echo '== ULID event ids: 26 characters, time first, in the 16 bytes of a uuid'
SELECT id, id::uuid AS as_uuid, ulid_timestamp(id) AS created
FROM (SELECT gen_ulid() AS id FROM generate_series(1, 5)) s;

\echo '== Ids drawn in the same millisecond still increase'
SELECT count(*) AS drawn,
       count(DISTINCT ulid_timestamp(id)) AS distinct_milliseconds,
       bool_and(prev < id) AS strictly_increasing
FROM (SELECT id, lag(id) OVER (ORDER BY n) AS prev
      FROM (SELECT n, gen_ulid() AS id FROM generate_series(1, 100000) n) g) s
WHERE prev IS NOT NULL;

\echo '== Text order, uuid order and time order agree'
CREATE TEMP TABLE events AS
SELECT gen_ulid(now() - (n || ' minutes')::interval) AS id, n AS minutes_ago
FROM generate_series(1, 5) n;
SELECT id, minutes_ago FROM events ORDER BY id;

\echo '== A time range is an id range: ulid_min() and ulid_max() bound it'
SELECT count(*) AS in_last_3_minutes FROM events
WHERE id >= ulid_min(now() - interval '3 minutes 30 seconds');
