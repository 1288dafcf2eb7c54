--
-- ulid text and binary I/O, casts to and from uuid
--
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- reference vectors
SELECT '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid;
SELECT '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid::uuid;
SELECT '0186cb65-25d7-81da-815c-7e25a6bfe7db'::uuid::ulid;
SELECT ulid_timestamp('01GV5PA9EQG7D82Q3Y4PKBZSYV');
SELECT '7ZZZZZZZZZZZZZZZZZZZZZZZZZ'::ulid;
SELECT '7ZZZZZZZZZZZZZZZZZZZZZZZZZ'::ulid::uuid;
SELECT ulid_timestamp('7ZZZZZZZZZZZZZZZZZZZZZZZZZ');
SELECT '00000000000000000000000000'::ulid::uuid;
SELECT ulid_timestamp('00000000000000000000000000');

-- input is case-insensitive, output is upper case
SELECT '01gv5pa9eqg7d82q3y4pkbzsyv'::ulid;
SELECT '01Gv5Pa9eQg7D82q3Y4pKbZsYv'::ulid;
SELECT '01gv5pa9eqg7d82q3y4pkbzsyv'::ulid = '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid;

-- I, L, O and U are not Crockford digits, in either case
SELECT '01GV5PA9EQG7D82Q3Y4PKBZSYI'::ulid;
\echo :LAST_ERROR_SQLSTATE
SELECT '01GV5PA9EQG7D82Q3Y4PKBZSYl'::ulid;
\echo :LAST_ERROR_SQLSTATE
SELECT '01GV5PA9EQG7D82Q3Y4PKBZSYO'::ulid;
\echo :LAST_ERROR_SQLSTATE
SELECT '01GV5PA9EQG7D82Q3Y4PKBZSYu'::ulid;
\echo :LAST_ERROR_SQLSTATE
SELECT '01GV5PA9EQG7D82Q3Y4PKBZSY-'::ulid;
\echo :LAST_ERROR_SQLSTATE

-- lengths other than 26
SELECT ''::ulid;
\echo :LAST_ERROR_SQLSTATE
SELECT '01GV5PA9EQG7D82Q3Y4PKBZSY'::ulid;
\echo :LAST_ERROR_SQLSTATE
SELECT '01GV5PA9EQG7D82Q3Y4PKBZSYV0'::ulid;
\echo :LAST_ERROR_SQLSTATE

-- surrounding spaces are not trimmed
SELECT ' 01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid;
\echo :LAST_ERROR_SQLSTATE
SELECT '01GV5PA9EQG7D82Q3Y4PKBZSYV '::ulid;
\echo :LAST_ERROR_SQLSTATE

-- a first digit above 7 would need more than 128 bits
SELECT '80000000000000000000000000'::ulid;
\echo :LAST_ERROR_SQLSTATE
SELECT 'ZZZZZZZZZZZZZZZZZZZZZZZZZZ'::ulid;
\echo :LAST_ERROR_SQLSTATE

-- a multibyte character is rejected, not split
SELECT '01GV5PA9EQG7D82Q3Y4PKBZSé'::ulid;
\echo :LAST_ERROR_SQLSTATE

-- NULLs pass through the type and the functions
SELECT NULL::ulid, NULL::ulid::uuid, NULL::uuid::ulid;
SELECT ulid_timestamp(NULL), ulid_min(NULL), ulid_max(NULL), gen_ulid(NULL);
SELECT count(*) FROM (VALUES (NULL::ulid), ('01GV5PA9EQG7D82Q3Y4PKBZSYV')) v(u) WHERE u IS NULL;

-- text round trip for many random values, and uuid round trip
SELECT count(*) AS mismatches
FROM (SELECT gen_random_uuid()::ulid AS u FROM generate_series(1, 10000)) s
WHERE u::text::ulid <> u OR u::uuid::ulid <> u OR length(u::text) <> 26
   OR u::text !~ '^[0-7][0-9A-HJKMNP-TV-Z]{25}$';

-- casts: none implicit; into ulid by assignment from uuid, text and varchar
-- (docs/design.md, "Parameters as drivers send them")
SELECT castsource::regtype, casttarget::regtype, castcontext, castmethod FROM pg_cast
WHERE casttarget = 'ulid'::regtype OR castsource = 'ulid'::regtype
ORDER BY castsource::regtype::text, casttarget::regtype::text;
CREATE TEMP TABLE uuids (u uuid);
INSERT INTO uuids VALUES ('01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid);
\echo :LAST_ERROR_SQLSTATE
SELECT 'x' || '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid;

-- binary send/recv: COPY (FORMAT binary) round trip
CREATE TEMP TABLE io_src (n int, u ulid);
INSERT INTO io_src
SELECT i, CASE WHEN i % 100 = 0 THEN NULL ELSE gen_ulid() END
FROM generate_series(1, 1000) i;
INSERT INTO io_src VALUES (0, '00000000000000000000000000'),
                          (-1, '7ZZZZZZZZZZZZZZZZZZZZZZZZZ');
\getenv abs_builddir PG_ABS_BUILDDIR
\set copyfile :abs_builddir '/results/ulid_io.bin'
COPY io_src TO :'copyfile' (FORMAT binary);
CREATE TEMP TABLE io_dst (LIKE io_src);
COPY io_dst FROM :'copyfile' (FORMAT binary);
SELECT count(*) AS copied,
       count(*) FILTER (WHERE s.u IS NOT DISTINCT FROM d.u) AS equal
FROM io_src s JOIN io_dst d USING (n);
SELECT ulid_send('01GV5PA9EQG7D82Q3Y4PKBZSYV') = uuid_send('0186cb65-25d7-81da-815c-7e25a6bfe7db');
