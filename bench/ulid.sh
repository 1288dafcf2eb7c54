#!/usr/bin/env bash
# Benchmark of the ulid type, each figure beside its baseline from the same
# run on the same throwaway server:
#   1. gen_ulid() against gen_random_uuid(): ids per second in one session
#      (a million calls per statement) and with two concurrent sessions
#      (pgbench), and the ratio;
#   2. the size of a 1,000,000-row table and of its primary key with ulid,
#      uuid and text ids.
# Usage: bash bench/ulid.sh   (as root or as a user that can install)
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$src/scripts/lib.sh"
work=${INBOX_OUTBOX_BENCH_DIR:-/var/tmp/inbox_outbox-bench}
prepare_work_tree "$src" "$work"

as_test_user bash -s "$work" <<'BENCH'
set -euo pipefail
work=$1
. "$work/scripts/lib.sh"
pg_throwaway_start "$work" "shared_buffers = '1GB'" "max_wal_size = '4GB'"
psql -XqAt -c 'CREATE EXTENSION inbox_outbox'

calls=1000000
reps=7

# Median of $reps timings, alternating the two functions so drift hits both.
time_calls() {
	local fn=$1
	psql -XqAt -c '\timing on' -c "SELECT count($fn) FROM generate_series(1, $calls)" |
		sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ulid_ms=(); uuid_ms=()
for ((i = 0; i < reps; i++)); do
	ulid_ms+=("$(time_calls 'gen_ulid()')")
	uuid_ms+=("$(time_calls 'gen_random_uuid()')")
done
u=$(printf '%s\n' "${ulid_ms[@]}" | median)
g=$(printf '%s\n' "${uuid_ms[@]}" | median)

# Two sessions at once: contention on the shared last value.
cat >"$work/ulid.pgb" <<SQL
SELECT count(gen_ulid()) FROM generate_series(1, 10000);
SQL
cat >"$work/uuid.pgb" <<SQL
SELECT count(gen_random_uuid()) FROM generate_series(1, 10000);
SQL
tps() { pgbench -n -c 2 -j 2 -T 10 -f "$1" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
ulid_tps=$(tps "$work/ulid.pgb")
uuid_tps=$(tps "$work/uuid.pgb")

echo
echo "## gen_ulid() vs gen_random_uuid() ($(date -u +%F), $(nproc) cores, PostgreSQL $(psql -XAtc 'SHOW server_version'))"
echo
echo "| measure | gen_ulid() | gen_random_uuid() | ratio |"
echo "|---|---|---|---|"
awk -v u="$u" -v g="$g" -v c="$calls" 'BEGIN {
	printf "| one session, ids/s (median of 7 x %d calls) | %.0f | %.0f | %.2f |\n", c, c / u * 1000, c / g * 1000, g / u }'
awk -v u="$ulid_tps" -v g="$uuid_tps" 'BEGIN {
	printf "| two sessions, ids/s (pgbench, 10 s) | %.0f | %.0f | %.2f |\n", u * 10000, g * 10000, u / g }'

psql -XqAt <<'SQL' >/dev/null
CREATE TABLE t_ulid (id ulid PRIMARY KEY, n int);
CREATE TABLE t_uuid (id uuid PRIMARY KEY, n int);
CREATE TABLE t_text (id text PRIMARY KEY, n int);
INSERT INTO t_ulid SELECT gen_ulid(), n FROM generate_series(1, 1000000) n;
INSERT INTO t_uuid SELECT gen_random_uuid(), n FROM generate_series(1, 1000000) n;
INSERT INTO t_text SELECT gen_ulid()::text, n FROM generate_series(1, 1000000) n;
VACUUM ANALYZE t_ulid, t_uuid, t_text;
SQL
echo
echo "## 1,000,000 rows (id, int4), ids inserted in generation order"
echo
echo "| id type | table | primary key |"
echo "|---|---|---|"
psql -XqAt -F ' | ' <<'SQL' | sed 's/^/| /; s/$/ |/'
SELECT t, pg_size_pretty(pg_relation_size(t::regclass)),
       pg_size_pretty(pg_relation_size((t || '_pkey')::regclass))
FROM unnest(ARRAY['t_ulid', 't_uuid', 't_text']) t;
SQL
BENCH
