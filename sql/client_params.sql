--
-- Parameters as drivers send them: an id bound as varchar or text (PgJDBC's
-- setString, SQLAlchemy's String), as uuid (setObject(UUID), psycopg's
-- uuid.UUID, pgx's pgtype.UUID) or untyped; headers bound as varchar.
-- Comparisons use the index, untyped literals still resolve to ulid = ulid,
-- and INSERT/UPDATE take the value by assignment.
--
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

CREATE TABLE docs (id ulid PRIMARY KEY, n int NOT NULL, t text, u uuid);

-- The nodes of a plan, where their printed form differs between
-- PostgreSQL versions: whether some line of EXPLAIN matches each pattern.
CREATE FUNCTION pg_temp.plan_has(query text, VARIADIC patterns text[])
RETURNS TABLE (pattern text, found boolean) LANGUAGE plpgsql AS $$
DECLARE
	lines text[] := '{}';
	line text;
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
		lines := lines || line;
	END LOOP;
	RETURN QUERY SELECT p, EXISTS (SELECT FROM unnest(lines) l WHERE l ~ p)
		FROM unnest(patterns) p;
END
$$;
CREATE INDEX docs_id_hash ON docs USING hash (id);
INSERT INTO docs
SELECT gen_ulid('2023-03-10 12:00:00+00'::timestamptz + g * interval '1 second'), g, NULL, NULL
FROM generate_series(1, 2000) g;
UPDATE docs SET t = id::text, u = id::uuid;
ANALYZE docs;
SELECT id::text AS id_text, lower(id::text) AS id_lower, id::uuid AS id_uuid
FROM docs WHERE n = 1000 \gset

-- an untyped literal resolves to ulid = ulid, as before
EXPLAIN (COSTS OFF, VERBOSE) SELECT n FROM docs WHERE id = '01GV5PA9EQG7D82Q3Y4PKBZSYV';
SELECT n FROM docs WHERE id = :'id_text';
SELECT n FROM docs WHERE id IN (:'id_text', :'id_lower');

-- each parameter type, with a generic plan: which operator, and the index
SET plan_cache_mode = force_generic_plan;
PREPARE by_varchar(varchar) AS SELECT n FROM docs WHERE id = $1;
PREPARE by_text(text) AS SELECT n FROM docs WHERE id = $1;
PREPARE by_uuid(uuid) AS SELECT n FROM docs WHERE id = $1;
PREPARE by_ulid(ulid) AS SELECT n FROM docs WHERE id = $1;
PREPARE by_untyped AS SELECT n FROM docs WHERE id = $1;
SELECT name, parameter_types FROM pg_prepared_statements WHERE name LIKE 'by\_%' ORDER BY name;
EXPLAIN (COSTS OFF, VERBOSE) EXECUTE by_varchar(:'id_text');
EXPLAIN (COSTS OFF, VERBOSE) EXECUTE by_text(:'id_text');
EXPLAIN (COSTS OFF, VERBOSE) EXECUTE by_uuid(:'id_uuid');
EXPLAIN (COSTS OFF, VERBOSE) EXECUTE by_untyped(:'id_text');
EXECUTE by_varchar(:'id_text');
EXECUTE by_varchar(:'id_lower');
EXECUTE by_text(:'id_text');
EXECUTE by_uuid(:'id_uuid');
EXECUTE by_ulid(:'id_lower');
EXECUTE by_untyped(:'id_lower');

-- the hash index serves them too
SET enable_indexscan = off;
SET enable_bitmapscan = on;
DROP INDEX docs_pkey CASCADE;
ALTER TABLE docs DROP CONSTRAINT docs_pkey;
EXPLAIN (COSTS OFF) EXECUTE by_varchar(:'id_text');
EXPLAIN (COSTS OFF) EXECUTE by_uuid(:'id_uuid');
EXECUTE by_varchar(:'id_lower');
EXECUTE by_uuid(:'id_uuid');
RESET enable_indexscan;
RESET enable_bitmapscan;
ALTER TABLE docs ADD PRIMARY KEY (id);

-- order comparisons and <> agree with ulid's, for each parameter type
PREPARE cmp_varchar(varchar) AS
SELECT count(*) FILTER (WHERE id < $1), count(*) FILTER (WHERE id <= $1),
       count(*) FILTER (WHERE id > $1), count(*) FILTER (WHERE id >= $1),
       count(*) FILTER (WHERE id <> $1), count(*) FILTER (WHERE $1 < id),
       count(*) FILTER (WHERE $1 >= id)
FROM docs;
PREPARE cmp_uuid(uuid) AS
SELECT count(*) FILTER (WHERE id < $1), count(*) FILTER (WHERE id <= $1),
       count(*) FILTER (WHERE id > $1), count(*) FILTER (WHERE id >= $1),
       count(*) FILTER (WHERE id <> $1), count(*) FILTER (WHERE $1 < id),
       count(*) FILTER (WHERE $1 >= id)
FROM docs;
PREPARE cmp_ulid(ulid) AS
SELECT count(*) FILTER (WHERE id < $1), count(*) FILTER (WHERE id <= $1),
       count(*) FILTER (WHERE id > $1), count(*) FILTER (WHERE id >= $1),
       count(*) FILTER (WHERE id <> $1), count(*) FILTER (WHERE $1 < id),
       count(*) FILTER (WHERE $1 >= id)
FROM docs;
EXECUTE cmp_varchar(:'id_lower');
EXECUTE cmp_uuid(:'id_uuid');
EXECUTE cmp_ulid(:'id_text');
-- a range over the index
PREPARE range_varchar(varchar, varchar) AS
SELECT count(*) FROM docs WHERE id >= $1 AND id < $2;
EXPLAIN (COSTS OFF) EXECUTE range_varchar(:'id_text', '7ZZZZZZZZZZZZZZZZZZZZZZZZZ');
EXECUTE range_varchar(:'id_text', '7ZZZZZZZZZZZZZZZZZZZZZZZZZ');

-- IN lists and arrays of parameters
PREPARE in_varchar(varchar, varchar) AS SELECT n FROM docs WHERE id IN ($1, $2) ORDER BY n;
PREPARE in_uuid(uuid, uuid) AS SELECT n FROM docs WHERE id IN ($1, $2) ORDER BY n;
PREPARE any_varchar(varchar[]) AS SELECT n FROM docs WHERE id = ANY ($1) ORDER BY n;
PREPARE any_uuid(uuid[]) AS SELECT n FROM docs WHERE id = ANY ($1) ORDER BY n;
SELECT id::text AS other_text, id::uuid AS other_uuid FROM docs WHERE n = 7 \gset
EXECUTE in_varchar(:'id_text', :'other_text');
EXECUTE in_uuid(:'id_uuid', :'other_uuid');
EXPLAIN (COSTS OFF) EXECUTE any_varchar(ARRAY[:'id_text', :'other_text']);
EXECUTE any_varchar(ARRAY[:'id_lower', :'other_text', :'id_text']);
EXPLAIN (COSTS OFF) EXECUTE any_uuid(ARRAY[:'id_uuid', :'other_uuid']::uuid[]);
EXECUTE any_uuid(ARRAY[:'id_uuid', :'other_uuid']::uuid[]);
RESET plan_cache_mode;

-- a text that is no ULID fails as the type's input does
EXECUTE by_varchar('01GV5PA9EQG7D82Q3Y4PKBZSY');
EXECUTE by_varchar('01GV5PA9EQG7D82Q3Y4PKBZSYI');
EXECUTE by_text('8ZZZZZZZZZZZZZZZZZZZZZZZZZ');

-- joins: ulid = ulid, ulid = text and ulid = uuid agree, whatever the plan
SELECT count(*) FROM docs a JOIN docs b ON a.id = b.id;
SELECT count(*) FROM docs a JOIN docs b ON a.id = lower(b.t);
SELECT count(*) FROM docs a JOIN docs b ON b.u = a.id;
SET enable_nestloop = off;
SET enable_mergejoin = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM docs a JOIN docs b ON a.id = lower(b.t);
SELECT count(*) FROM docs a JOIN docs b ON a.id = lower(b.t);
EXPLAIN (COSTS OFF) SELECT count(*) FROM docs a JOIN docs b ON b.u = a.id;
SELECT count(*) FROM docs a JOIN docs b ON b.u = a.id;
SET enable_hashjoin = off;
SET enable_mergejoin = on;
-- another table: PostgreSQL 18 removes a join of a table to itself on its key
CREATE TABLE docs_copy (id ulid PRIMARY KEY);
INSERT INTO docs_copy SELECT id FROM docs;
ANALYZE docs_copy;
SELECT * FROM pg_temp.plan_has('SELECT count(*) FROM docs a JOIN docs_copy b ON a.id = b.id',
	'Merge Join', 'Merge Cond: \(a\.id = b\.id\)', 'Scan using docs_pkey', 'Scan using docs_copy_pkey');
SELECT count(*) FROM docs a JOIN docs_copy b ON a.id = b.id;
DROP TABLE docs_copy;
RESET enable_nestloop;
RESET enable_mergejoin;
RESET enable_hashjoin;

-- the text hash of the hash family is the hash of the ulid it spells,
-- lower case too, so hash partitions prune to the right one
SELECT count(*) FILTER (WHERE ulid_text_hash(lower(t)) <> ulid_hash(id)
                           OR ulid_text_hash_extended(lower(t), 7) <> ulid_hash_extended(id, 7)
                           OR ulid_uuid_hash(u) <> ulid_hash(id)
                           OR ulid_uuid_hash_extended(u, 7) <> ulid_hash_extended(id, 7))
       AS hash_mismatches
FROM docs;
CREATE TABLE parts (id ulid, n int) PARTITION BY HASH (id);
CREATE TABLE parts_0 PARTITION OF parts FOR VALUES WITH (MODULUS 4, REMAINDER 0);
CREATE TABLE parts_1 PARTITION OF parts FOR VALUES WITH (MODULUS 4, REMAINDER 1);
CREATE TABLE parts_2 PARTITION OF parts FOR VALUES WITH (MODULUS 4, REMAINDER 2);
CREATE TABLE parts_3 PARTITION OF parts FOR VALUES WITH (MODULUS 4, REMAINDER 3);
INSERT INTO parts SELECT id, n FROM docs;
SELECT count(*) AS found_in_its_partition
FROM docs d WHERE (SELECT p.n FROM parts p WHERE p.id = lower(d.t)) = d.n
              AND (SELECT p.n FROM parts p WHERE p.id = d.u) = d.n;
-- both spellings of one id prune to the same partition
EXPLAIN (COSTS OFF) SELECT n FROM parts WHERE id = '01gv5pa9eqg7d82q3y4pkbzsyv'::text;
EXPLAIN (COSTS OFF) SELECT n FROM parts WHERE id = '0186cb65-25d7-81da-815c-7e25a6bfe7db'::uuid;
EXPLAIN (COSTS OFF) SELECT n FROM parts WHERE id = '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid;
DROP TABLE parts;

-- untyped and text literals elsewhere resolve as before
SELECT 'a' = 'b' AS unknown_eq, 'a' < 'b' AS unknown_lt, 'a'::varchar = 'a'::text AS varchar_text;
SELECT count(*) FROM docs WHERE t = :'id_text';
SELECT count(*) FROM docs WHERE t = :'id_lower';
SELECT count(*) FROM docs WHERE u = :'id_uuid';
SELECT count(*) FROM docs WHERE t::varchar = t;
SELECT pg_typeof(x) FROM (SELECT id FROM docs WHERE n = 1 UNION ALL SELECT '01GV5PA9EQG7D82Q3Y4PKBZSYV') s(x) LIMIT 1;
SELECT id || 'x' = t || 'x' AS concat_is_text FROM docs WHERE n = 1;
-- uuid = text stays an error, as in PostgreSQL
SELECT count(*) FROM docs WHERE u = t;
\echo :LAST_ERROR_SQLSTATE
-- and nothing converts to ulid implicitly: a text argument does not reach a
-- function that takes only ulid
SELECT ulid_cmp(id, t) FROM docs WHERE n = 1;
\echo :LAST_ERROR_SQLSTATE

-- INSERT and UPDATE by assignment
CREATE TABLE tickets (id ulid PRIMARY KEY, note text);
PREPARE ins_varchar(varchar, text) AS INSERT INTO tickets VALUES ($1, $2);
PREPARE ins_uuid(uuid, text) AS INSERT INTO tickets VALUES ($1, $2);
PREPARE upd_varchar(varchar, varchar) AS UPDATE tickets SET id = $2 WHERE id = $1;
PREPARE upd_uuid(uuid, uuid) AS UPDATE tickets SET id = $2 WHERE id = $1;
EXECUTE ins_varchar('01gv5pa9eqg7d82q3y4pkbzsyv', 'varchar, lower case');
EXECUTE ins_uuid('0186cb65-25d7-81da-815c-7e25a6bfe7dc', 'uuid');
INSERT INTO tickets SELECT t, 'text column' FROM docs WHERE n = 1;
EXECUTE upd_varchar('01GV5PA9EQG7D82Q3Y4PKBZSYV', '01GV5PA9EQG7D82Q3Y4PKBZSZ0');
EXECUTE upd_uuid('0186cb65-25d7-81da-815c-7e25a6bfe7dc', '0186cb65-25d7-81da-815c-7e25a6bfe7dd');
SELECT note, CASE WHEN note = 'text column' THEN id = (SELECT id FROM docs WHERE n = 1) END AS from_docs,
       CASE WHEN note <> 'text column' THEN id END AS id,
       CASE WHEN note <> 'text column' THEN id::uuid END AS id_uuid
FROM tickets ORDER BY note;
EXECUTE ins_varchar('not a ulid', 'refused');
\echo :LAST_ERROR_SQLSTATE
DROP TABLE tickets;

-- ulid_timestamp() of each parameter type
PREPARE ts_varchar(varchar) AS SELECT ulid_timestamp($1);
PREPARE ts_uuid(uuid) AS SELECT ulid_timestamp($1);
EXECUTE ts_varchar(:'id_lower');
EXECUTE ts_uuid(:'id_uuid');
SELECT ulid_timestamp(:'id_text'), ulid_timestamp(:'id_text'::ulid);

-- inbox_try_claim() of each parameter type: one event, one claim
PREPARE claim_varchar(varchar, varchar) AS SELECT inbox_try_claim($1, $2);
PREPARE claim_uuid(uuid, varchar) AS SELECT inbox_try_claim($1, $2);
PREPARE claim_untyped AS SELECT inbox_try_claim($1, $2);
SELECT name, parameter_types FROM pg_prepared_statements WHERE name LIKE 'claim\_%' ORDER BY name;
BEGIN;
EXECUTE claim_varchar(:'id_text', 'regress_clients');
EXECUTE claim_uuid(:'id_uuid', 'regress_clients');
EXECUTE claim_untyped(:'id_text', 'regress_clients');
ROLLBACK;

-- min(ulid) and max(ulid), from the index
SELECT * FROM pg_temp.plan_has('SELECT min(id), max(id) FROM docs',
	'InitPlan 1', 'Index Only Scan using docs_pkey', 'Index Only Scan Backward using docs_pkey', 'Seq Scan');
SELECT min(id) = (SELECT id FROM docs ORDER BY id LIMIT 1) AS min_ok,
       max(id) = (SELECT id FROM docs ORDER BY id DESC LIMIT 1) AS max_ok
FROM docs;
SELECT n % 3 AS g, min(id) = min(t COLLATE "C")::ulid AS min_ok,
       max(id) = max(t COLLATE "C")::ulid AS max_ok
FROM docs GROUP BY 1 ORDER BY 1;
SELECT min(id), max(id) FROM docs WHERE false;
SELECT min(x), max(x) FROM (VALUES ('01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid), (NULL), ('00000000000000000000000000')) v(x);
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SELECT * FROM pg_temp.plan_has('SELECT min(id), max(id) FROM docs WHERE n > 0',
	'Index Scan using docs_pkey', 'Index Scan Backward using docs_pkey', 'Filter: \(n > 0\)', 'Seq Scan');
SELECT min(id) = (SELECT id FROM docs ORDER BY id LIMIT 1) AS min_ok,
       max(id) = (SELECT id FROM docs ORDER BY id DESC LIMIT 1) AS max_ok
FROM docs WHERE n > 0;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- outbox_publish() with headers bound as varchar, and untyped
PREPARE pub_varchar(varchar, varchar, varchar, varchar) AS SELECT outbox_publish($1, $2, $3, $4);
PREPARE pub_bytea(varchar, varchar, bytea, varchar) AS SELECT outbox_publish($1, $2, $3, $4);
PREPARE pub_jsonb(varchar, varchar, jsonb, varchar) AS SELECT outbox_publish($1, $2, $3, $4);
PREPARE pub_untyped AS SELECT outbox_publish($1, $2, $3, $4);
PREPARE pub_untyped3 AS SELECT outbox_publish($1, $2, $3);
SELECT name, parameter_types FROM pg_prepared_statements WHERE name LIKE 'pub\_%' ORDER BY name;
TRUNCATE inbox_outbox.outbox;
EXECUTE pub_varchar('orders', 'k1', 'text payload', '{"trace": "t1"}') \gset v_
EXECUTE pub_bytea('orders', 'k2', '\x00ff', '{"trace": "t2"}') \gset b_
EXECUTE pub_jsonb('orders', 'k3', '{"n": 3}', '{"trace": "t3"}') \gset j_
EXECUTE pub_untyped('orders', 'k4', 'untyped', '{"trace": "t4"}') \gset u_
EXECUTE pub_varchar('orders', 'k5', NULL, NULL) \gset n_
SELECT key, payload, headers,
       id = ANY (ARRAY[:'v_outbox_publish', :'b_outbox_publish', :'j_outbox_publish',
                       :'u_outbox_publish', :'n_outbox_publish']) AS returned_id
FROM inbox_outbox.outbox ORDER BY id;
EXECUTE pub_varchar('orders', 'k6', 'bad headers', '{"trace": ');
\echo :LAST_ERROR_SQLSTATE
EXECUTE pub_varchar('orders', 'k6', 'bad headers', '["not", "an object"]');
\echo :LAST_ERROR_SQLSTATE
TRUNCATE inbox_outbox.outbox;

DEALLOCATE ALL;
DROP TABLE docs;

-- uuid -> ulid is an assignment cast, so that INSERT and UPDATE take a
-- uuid parameter; user objects that use it (a default, a view, an
-- expression index) work.
CREATE TABLE t (u uuid, id ulid DEFAULT '0186cb65-25d7-81da-815c-7e25a6bfe7db'::uuid::ulid);
CREATE VIEW v AS SELECT u::ulid AS id FROM t;
CREATE INDEX ON t ((u::ulid));
INSERT INTO t (u) VALUES ('0186cb65-25d7-81da-815c-7e25a6bfe7dc');
SELECT v.id, t.id AS default_id FROM v JOIN t ON t.u::ulid = v.id ORDER BY v.id;
SELECT castcontext FROM pg_cast WHERE castsource = 'uuid'::regtype AND casttarget = 'ulid'::regtype;
DROP VIEW v;
DROP TABLE t;
