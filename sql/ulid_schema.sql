--
-- The extension in a schema that is not on search_path
--
DROP EXTENSION inbox_outbox;
CREATE SCHEMA ioext;
CREATE EXTENSION inbox_outbox SCHEMA ioext;
SET search_path = public;
SET datestyle = 'ISO, YMD';

SELECT '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ioext.ulid;
SELECT '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ioext.ulid::uuid;
SELECT ioext.ulid_timestamp('01GV5PA9EQG7D82Q3Y4PKBZSYV') AT TIME ZONE 'UTC';
SELECT ioext.gen_ulid() OPERATOR(ioext.<) ioext.gen_ulid();
SELECT ioext.ulid_min('2023-03-10 12:00:49.111+00');

-- the default operator classes are found without the schema
CREATE TABLE ioext_t (id ioext.ulid PRIMARY KEY, n int);
INSERT INTO ioext_t SELECT ioext.gen_ulid(), i FROM generate_series(1, 1000) i;
SELECT array_agg(n ORDER BY id) = array_agg(n ORDER BY n) AS ordered FROM ioext_t;
CREATE INDEX ON ioext_t USING hash (id);

-- unqualified operators are not, as for any type
SELECT count(*) FROM ioext_t WHERE id = id;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM ioext_t WHERE id OPERATOR(ioext.=) id;

DROP TABLE ioext_t;
DROP EXTENSION inbox_outbox;
DROP SCHEMA ioext;
CREATE EXTENSION inbox_outbox;
