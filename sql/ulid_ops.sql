--
-- ulid comparison, indexes, joins and partitioning
--
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- operators agree with uuid's byte order and with text order
CREATE TEMP TABLE ids AS
SELECT i, gen_random_uuid()::ulid AS u FROM generate_series(1, 5000) i;
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE a.u = b.u) AS equal_pairs,
       count(*) FILTER (WHERE
          (a.u < b.u) <> (a.u::text < b.u::text COLLATE "C")
       OR (a.u < b.u) <> (a.u::uuid < b.u::uuid)
       OR (a.u <= b.u) <> (a.u::text <= b.u::text COLLATE "C")
       OR (a.u > b.u) <> (a.u::text > b.u::text COLLATE "C")
       OR (a.u >= b.u) <> (a.u::text >= b.u::text COLLATE "C")
       OR (a.u = b.u) <> (a.u::text = b.u::text)
       OR (a.u <> b.u) <> (a.u::text <> b.u::text)
       OR sign(ulid_cmp(a.u, b.u)) <> CASE WHEN a.u::text < b.u::text COLLATE "C" THEN -1
                                           WHEN a.u::text = b.u::text THEN 0 ELSE 1 END)
       AS disagreements
FROM ids a JOIN ids b ON a.i <= 200 AND b.i <= 200;
SELECT array_agg(u ORDER BY u) = array_agg(u ORDER BY u::text COLLATE "C") AS sort_matches_text
FROM ids;

SELECT '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid < '01GV5PA9EQG7D82Q3Y4PKBZSYW'::ulid,
       '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid <= '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid,
       '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid > '01GV5PA9EQG7D82Q3Y4PKBZSYW'::ulid,
       '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid >= '7ZZZZZZZZZZZZZZZZZZZZZZZZZ'::ulid,
       '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid <> '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid;

-- operator properties
SELECT o.oprname, o.oprcom::regoperator AS commutator, o.oprnegate::regoperator AS negator,
       o.oprcanhash AS hashes, o.oprcanmerge AS merges
FROM pg_operator o
WHERE o.oprleft = 'ulid'::regtype AND o.oprright = 'ulid'::regtype
ORDER BY o.oprname;

-- opclasses and their support functions
SELECT am.amname, opc.opcname, opc.opcdefault, p.amprocnum, p.amproc::regproc
FROM pg_opclass opc
JOIN pg_am am ON am.oid = opc.opcmethod
JOIN pg_amproc p ON p.amprocfamily = opc.opcfamily
WHERE opc.opcintype = 'ulid'::regtype
ORDER BY am.amname, p.amprocnum;

-- hash functions: the extended hash with seed 0 has the standard hash in its low bits
SELECT count(*) FILTER (WHERE ulid_hash(u)::bigint & 4294967295
                         <> ulid_hash_extended(u, 0) & 4294967295) AS low_bits_differ,
       count(*) FILTER (WHERE ulid_hash_extended(u, 0) = ulid_hash_extended(u, 42)) AS seed_ignored,
       count(*) FILTER (WHERE ulid_hash(u) <> uuid_hash(u::uuid)) AS differs_from_uuid
FROM ids;

-- btree index: unique, ordered scans, range scans with ulid_min/ulid_max
CREATE TEMP TABLE events (id ulid PRIMARY KEY, n int);
INSERT INTO events
SELECT gen_ulid('2024-01-01 00:00:00+00'::timestamptz + i * interval '1 second'), i
FROM generate_series(0, 9999) i;
ANALYZE events;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF)
SELECT n FROM events
WHERE id BETWEEN ulid_min('2024-01-01 00:00:10+00') AND ulid_max('2024-01-01 00:00:14+00')
ORDER BY id;
SELECT array_agg(n ORDER BY id) FROM events
WHERE id BETWEEN ulid_min('2024-01-01 00:00:10+00') AND ulid_max('2024-01-01 00:00:14+00');
SELECT array_agg(n) FROM (SELECT n FROM events ORDER BY id DESC LIMIT 3) s;
RESET enable_seqscan;
RESET enable_bitmapscan;
\set VERBOSITY terse
INSERT INTO events SELECT id, -1 FROM events WHERE n = 5;
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT count(*) = 10000 AS all_ordered
FROM (SELECT n, lag(n) OVER (ORDER BY id) AS prev FROM events) s
WHERE prev IS NULL OR prev = n - 1;

-- hash index
CREATE TEMP TABLE hashed (id ulid, n int);
INSERT INTO hashed SELECT id, n FROM events;
CREATE INDEX hashed_id ON hashed USING hash (id);
ANALYZE hashed;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF)
SELECT n FROM hashed WHERE id = '01HK1S4C000000000000000000';
SELECT h.n FROM hashed h JOIN events e USING (id) WHERE e.n = 1234;
RESET enable_seqscan;
RESET enable_bitmapscan;

-- merge join and hash join
CREATE TEMP TABLE events2 AS SELECT id, n * 2 AS m FROM events;
ANALYZE events2;
SET enable_hashjoin = off;
SET enable_nestloop = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM events JOIN events2 USING (id);
SELECT count(*), sum(m - 2 * n) FROM events JOIN events2 USING (id);
RESET enable_hashjoin;
SET enable_mergejoin = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM events JOIN events2 USING (id);
SELECT count(*), sum(m - 2 * n) FROM events JOIN events2 USING (id);
RESET enable_mergejoin;
RESET enable_nestloop;

-- hashed aggregation and DISTINCT
SET enable_sort = off;
SELECT count(*) FROM (SELECT DISTINCT id FROM (SELECT id FROM events UNION ALL SELECT id FROM events) s) d;
RESET enable_sort;

-- hash partitioning
CREATE TABLE ulid_parts (id ulid, n int) PARTITION BY HASH (id);
CREATE TABLE ulid_parts_0 PARTITION OF ulid_parts FOR VALUES WITH (MODULUS 4, REMAINDER 0);
CREATE TABLE ulid_parts_1 PARTITION OF ulid_parts FOR VALUES WITH (MODULUS 4, REMAINDER 1);
CREATE TABLE ulid_parts_2 PARTITION OF ulid_parts FOR VALUES WITH (MODULUS 4, REMAINDER 2);
CREATE TABLE ulid_parts_3 PARTITION OF ulid_parts FOR VALUES WITH (MODULUS 4, REMAINDER 3);
INSERT INTO ulid_parts SELECT id, n FROM events;
INSERT INTO ulid_parts VALUES ('01HK1S4C000000000000000000', -1);
SELECT sum(c) AS routed, min(c) > 2000 AS spread
FROM (SELECT tableoid, count(*) AS c FROM ulid_parts GROUP BY tableoid) s;
SELECT tableoid::regclass FROM ulid_parts WHERE id = '01HK1S4C000000000000000000';
EXPLAIN (COSTS OFF) SELECT * FROM ulid_parts WHERE id = '01HK1S4C000000000000000000';
DROP TABLE ulid_parts;
