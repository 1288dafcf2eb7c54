--
-- ulid generation: gen_ulid(), gen_ulid(timestamptz), time functions
--
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- strictly increasing over 1,000,000 calls in one statement
SELECT count(*) AS calls,
       count(*) FILTER (WHERE prev >= u) AS not_increasing
FROM (SELECT u, lag(u) OVER (ORDER BY n) AS prev
      FROM (SELECT n, gen_ulid() AS u
            FROM generate_series(1, 1000000) AS n) s) t;

-- its time is the current time, to the millisecond
SELECT clock_timestamp() AS t0 \gset
SELECT gen_ulid() AS u \gset
SELECT clock_timestamp() AS t1 \gset
SELECT ulid_timestamp(:'u') >= date_trunc('milliseconds', :'t0'::timestamptz)
   AND ulid_timestamp(:'u') <= :'t1'::timestamptz AS current_time;

-- gen_ulid(timestamptz): that millisecond, fresh random bits every call
SELECT ulid_timestamp(gen_ulid('2023-03-10 12:00:49.111999+00'));
SELECT ulid_timestamp(gen_ulid('1970-01-01 00:00:00+00'));
SELECT ulid_timestamp(gen_ulid('10889-08-02 05:31:50.655+00'));
SELECT count(DISTINCT gen_ulid('2023-03-10 12:00:49.111+00')) FROM generate_series(1, 1000);
SELECT gen_ulid('1969-12-31 23:59:59.999+00');
\echo :LAST_ERROR_SQLSTATE
SELECT gen_ulid('10889-08-02 05:31:50.656+00');
\echo :LAST_ERROR_SQLSTATE
SELECT gen_ulid('infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT gen_ulid('-infinity');
\echo :LAST_ERROR_SQLSTATE

-- range bounds
SELECT ulid_min('2023-03-10 12:00:49.111+00'), ulid_max('2023-03-10 12:00:49.111+00');
SELECT ulid_min('2023-03-10 12:00:49.1119+00'), ulid_max('2023-03-10 12:00:49.1111+00');
SELECT ulid_min('1970-01-01 00:00:00+00'), ulid_max('10889-08-02 05:31:50.655+00');
SELECT ulid_min('1999-12-31 23:59:59.9995+00');
SELECT '01GV5PA9EQG7D82Q3Y4PKBZSYV'::ulid
       BETWEEN ulid_min('2023-03-10 12:00:49.111+00') AND ulid_max('2023-03-10 12:00:49.111+00');
SELECT ulid_min('1960-01-01+00');
\echo :LAST_ERROR_SQLSTATE
SELECT ulid_max('infinity');
\echo :LAST_ERROR_SQLSTATE

-- volatility and parallel labels
SELECT p.oid::regprocedure, p.provolatile, p.proparallel, p.proisstrict
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'inbox_outbox'
WHERE p.proname IN ('gen_ulid', 'ulid_timestamp', 'ulid_min', 'ulid_max', 'ulid_in', 'ulid_out')
ORDER BY p.oid::regprocedure::text;

--
-- A clock that steps back and a random part that overflows, with the clock
-- and random source pinned by the test-only module test/ulid_clock.  The
-- pinned times are a few seconds ahead of the real clock, because the
-- server-wide last value can never move back.
--
\getenv abs_builddir PG_ABS_BUILDDIR
\set testlib :abs_builddir '/test/ulid_clock/test_ulid_clock'
CREATE FUNCTION pg_temp.pin_clock(bigint) RETURNS void
	AS :'testlib', 'test_ulid_pin_clock' LANGUAGE C;
CREATE FUNCTION pg_temp.pin_random(bytea) RETURNS void
	AS :'testlib', 'test_ulid_pin_random' LANGUAGE C;

SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 3000 AS t \gset
SELECT pg_temp.pin_clock(:t);
SELECT pg_temp.pin_random('\x00000000000000000001');
SELECT gen_ulid() AS a \gset
SELECT ulid_timestamp(:'a') = to_timestamp(:t / 1000.0) AS pinned_time,
       right(:'a', 16) AS random_part;

-- the same millisecond: the random part counts up
SELECT right(gen_ulid()::text, 16) AS random_part;

-- the clock steps back half a second: time is kept, random part counts up
SELECT pg_temp.pin_clock(:t - 500);
SELECT gen_ulid() AS b \gset
SELECT :'b'::ulid > :'a'::ulid AS increasing,
       ulid_timestamp(:'b') = ulid_timestamp(:'a') AS same_time,
       right(:'b', 16) AS random_part;

-- the next millisecond: fresh random bits
SELECT pg_temp.pin_clock(:t + 1);
SELECT pg_temp.pin_random('\xfffffffffffffffffffe');
SELECT right(gen_ulid()::text, 16) AS random_part;
SELECT right(gen_ulid()::text, 16) AS random_part;

-- the random part is exhausted within the millisecond
SELECT gen_ulid();
\echo :LAST_ERROR_SQLSTATE
SELECT gen_ulid();
\echo :LAST_ERROR_SQLSTATE
-- also after the clock stepped back
SELECT pg_temp.pin_clock(:t - 100);
SELECT gen_ulid();
\echo :LAST_ERROR_SQLSTATE

-- a new millisecond recovers; the failed calls consumed nothing
SELECT pg_temp.pin_clock(:t + 2);
SELECT pg_temp.pin_random('\x00000000000000000000');
SELECT right(gen_ulid()::text, 16) AS random_part,
       ulid_timestamp(gen_ulid()) = to_timestamp((:t + 2) / 1000.0) AS pinned_time;

-- release the hooks; later ids continue after the pinned ones
SELECT pg_temp.pin_random(NULL);
SELECT pg_temp.pin_clock(:t + 3);
SELECT gen_ulid() AS c \gset
SELECT pg_temp.pin_clock(NULL);
SELECT gen_ulid() > :'c'::ulid AS increasing;
