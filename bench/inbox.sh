#!/usr/bin/env bash
# Benchmark of the inbox, each figure beside a baseline measured in the same
# run on the same throwaway server:
#   1. claim throughput: pgbench tps of inbox_try_claim() against a raw
#      INSERT ... ON CONFLICT DO NOTHING into a table of the inbox's shape,
#      1 and 8 clients, on an empty inbox and on one holding 10,000,000
#      claims, with synchronous_commit on (the default) and off;
#   2. pruning 10,000,000 expired claims with CALL inbox_prune('7 days')
#      while 8 clients keep claiming: their tps during the prune against
#      their tps just before it, and the prune's own rate.
# Usage: bash bench/inbox.sh   (as root or as a user that can install)
# Environment: INBOX_BENCH_SECONDS (pgbench run length in part 1, default
# 20), INBOX_BENCH_REPS (runs of each side in part 1, default 3),
# INBOX_BENCH_ROWS (claims loaded, default 10000000),
# INBOX_BENCH_PRUNE_SYNC (synchronous_commit of the claims in part 2,
# default on).
set -euo pipefail

started=$SECONDS
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$src/scripts/lib.sh"
work=${INBOX_OUTBOX_BENCH_DIR:-/var/tmp/inbox_outbox-bench-inbox}
prepare_work_tree "$src" "$work"
libs_before=$(installed_libs_digest)

as_test_user env INBOX_BENCH_SECONDS="${INBOX_BENCH_SECONDS:-20}" \
	INBOX_BENCH_REPS="${INBOX_BENCH_REPS:-3}" INBOX_BENCH_ROWS="${INBOX_BENCH_ROWS:-10000000}" \
	INBOX_BENCH_PRUNE_SYNC="${INBOX_BENCH_PRUNE_SYNC:-on}" \
	bash -s "$work" <<'BENCH'
set -euo pipefail
work=$1
. "$work/scripts/lib.sh"
. "$work/bench/lib.sh"
b=$work/bench/inbox
secs=$INBOX_BENCH_SECONDS
reps=$INBOX_BENCH_REPS
rows=$INBOX_BENCH_ROWS
prune_sc=$INBOX_BENCH_PRUNE_SYNC
load_start=$(cut -d ' ' -f 1-3 /proc/loadavg)
bg_pids=()

cleanup() {
	local p
	for p in "${bg_pids[@]}"; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	[[ -n ${PG_THROWAWAY_DATA:-} ]] && pg_ctl -D "$PG_THROWAWAY_DATA" -m fast stop >/dev/null 2>&1
	return 0
}
trap 'exit 130' INT TERM

# No relay: inbox_outbox.databases names no database, so the launcher starts
# none, and nothing but the benchmark prunes the inbox.  Both tables (about
# 2 GB each with 10,000,000 claims) fit in shared_buffers; checkpoints
# happen only where the benchmark asks for them.
pg_throwaway_start "$work" "shared_buffers = '8GB'" "max_wal_size = '16GB'" \
	"checkpoint_timeout = '30min'" \
	"inbox_outbox.databases = 'no_database_has_this_name'"
trap cleanup EXIT
psql -XqAt -v ON_ERROR_STOP=1 -f "$b/setup.sql" >/dev/null

postmaster_pid=$(head -n 1 "$PG_THROWAWAY_DATA/postmaster.pid")

pgbench_tps() {
	local file=$1 clients=$2 sc=$3 out
	out=$(PGOPTIONS="-c synchronous_commit=$sc" pgbench -n -M prepared -c "$clients" \
		-j "$((clients < 2 ? clients : 2))" -T "$secs" -f "$file" 2>&1) || { echo "$out" >&2; exit 1; }
	grep -q '^number of failed transactions: 0 ' <<<"$out" || { echo "$out" >&2; exit 1; }
	sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out"
}

# Every run starts from the same state: the fill (no claims, or the loaded
# ones plus those of earlier runs, vacuumed) and a fresh checkpoint, so
# that each run pays the same full-page writes.
before_run() {
	if [[ $1 == empty ]]; then
		q -c 'TRUNCATE inbox_outbox.inbox, raw_claims'
	else
		q -c 'VACUUM inbox_outbox.inbox, raw_claims'
	fi
	q -c 'CHECKPOINT'
}

load() {
	log "loading $rows claims into inbox_outbox.inbox and raw_claims"
	q -c 'TRUNCATE inbox_outbox.inbox, raw_claims'
	q -v table=inbox_outbox.inbox -v rows="$rows" -f "$b/load.sql" &
	bg_pids+=($!)
	q -v table=raw_claims -v rows="$rows" -f "$b/load.sql"
	wait "${bg_pids[-1]}"
	unset 'bg_pids[-1]'
	q -c 'VACUUM ANALYZE inbox_outbox.inbox, raw_claims' -c 'CHECKPOINT'
}

#
# 1. Claim throughput
#
rows1=()
declare -A ratio1
cpu_mark "$postmaster_pid"
for fill in empty loaded; do
	[[ $fill == loaded ]] && load
	for sc in on off; do
		for clients in 1 8; do
			log "claims, $fill inbox, synchronous_commit=$sc, $clients clients: $reps x 2 runs of $secs s"
			claims=() raws=()
			for ((i = 0; i < reps; i++)); do
				if ((i % 2)); then order="claim raw"; else order="raw claim"; fi
				for f in $order; do
					before_run "$fill"
					tps=$(pgbench_tps "$b/$f.pgb" "$clients" "$sc")
					if [[ $f == claim ]]; then claims+=("$tps"); else raws+=("$tps"); fi
				done
			done
			c=$(printf '%s\n' "${claims[@]}" | median)
			r=$(printf '%s\n' "${raws[@]}" | median)
			ratio1[$fill/$sc/$clients]=$(awk -v c="$c" -v r="$r" 'BEGIN { printf "%.2f", c / r }')
			case $fill in
			empty) label="empty" ;;
			loaded) label="$(commas "$rows") claims" ;;
			esac
			rows1+=("$(awk -v l="$label" -v sc="$sc" -v n="$clients" -v c="$c" -v r="$r" \
				-v rc="$(printf '%.0f ' "${claims[@]}")" -v rr="$(printf '%.0f ' "${raws[@]}")" 'BEGIN {
				sub(/ $/, "", rc); sub(/ $/, "", rr)
				printf "| %s | %s | %d | %.0f | %.0f | %.2f | %s / %s |", l, sc, n, c, r, c / r, rc, rr }')")
		done
	done
done
other1=$(other_cpu)
sizes=$(q -F ' | ' -c "SELECT pg_size_pretty(pg_relation_size('inbox_outbox.inbox')),
                              pg_size_pretty(pg_relation_size('inbox_outbox.inbox_pkey')),
                              pg_size_pretty(pg_relation_size('raw_claims')),
                              pg_size_pretty(pg_relation_size('raw_claims_pkey')),
                              (SELECT count(*) FROM inbox_outbox.inbox)")

echo
echo "# inbox_outbox inbox benchmark ($(date -u +%F), $(nproc) cores, PostgreSQL $(q -c 'SHOW server_version'))"
echo
echo "Throwaway server: shared_buffers 8GB, max_wal_size 16GB, checkpoint_timeout 30min, no relay"
echo "running; everything else default. pgbench and the server share the $(nproc) cores. Load average"
echo "when the benchmark started: $load_start."
echo
echo "## 1. Claim throughput: inbox_try_claim() vs raw INSERT … ON CONFLICT DO NOTHING"
echo
echo "pgbench -M prepared, $secs s per run, one claim per transaction, ids gen_random_uuid()::text on"
echo "both sides (bench/inbox/claim.pgb, raw.pgb); the raw table is LIKE inbox_outbox.inbox INCLUDING"
echo "ALL (same primary key and index on claimed_at). $reps runs of each side, alternating, each after VACUUM"
echo "(or TRUNCATE for the empty inbox) and CHECKPOINT; medians. The loaded tables hold"
echo "$(commas "$rows") claims inserted in random id order, plus those of the earlier runs; at"
echo "the end: inbox heap | inbox primary key | raw heap | raw primary key | inbox rows = $sizes."
echo
echo "| inbox | synchronous_commit | clients | inbox_try_claim() tps | raw INSERT tps | ratio | runs: claim / raw |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows1[@]}"
other_note "$other1"

#
# 2. Pruning under load
#
# The inbox still holds the loaded claims, now expired (8 days old), and
# the recent claims of part 1, which the prune must keep.  8 clients claim
# throughout (synchronous_commit $prune_sc); the prune starts after $before s and
# the claims go on for $after s after it ends.  pgbench reports tps every
# second; the windows are cut from those reports.
before=20 after=20
expired_sql="SELECT count(*) FROM inbox_outbox.inbox WHERE claimed_at < now() - interval '7 days'"
q -c 'VACUUM ANALYZE inbox_outbox.inbox' -c 'CHECKPOINT'
expired_before=$(q -c "$expired_sql")
kept_before=$(q -c "SELECT count(*) FROM inbox_outbox.inbox WHERE claimed_at >= now() - interval '7 days'")
av_before=$(q -c "SELECT autovacuum_count FROM pg_stat_user_tables WHERE relid = 'inbox_outbox.inbox'::regclass")

log "pruning $expired_before expired claims while 8 clients claim"
cpu_mark "$postmaster_pid"
PGOPTIONS="-c synchronous_commit=$prune_sc" pgbench -n -M prepared -c 8 -j 2 -T 1500 -P 1 --progress-timestamp -f "$b/claim.pgb" \
	>"$work/prune_pgbench.out" 2>"$work/prune_pgbench.progress" &
bg_pids+=($!)
sleep 2
lsn_b=$(q -c 'SELECT pg_current_wal_lsn()')
sleep "$((before - 2))"
lsn_0=$(q -c 'SELECT pg_current_wal_lsn()')
t0=$(date +%s.%N)
log_offset=$(stat -c %s "$work/postgres.log")
pages_before=$(q -c "SELECT pg_relation_size('inbox_outbox.inbox') / current_setting('block_size')::int")
# auto_explain logs each batch's DELETE with its duration and plan.
timeout 1200 psql -XqAt -v ON_ERROR_STOP=1 -c "LOAD 'auto_explain'" \
	-c 'SET auto_explain.log_min_duration = 0' -c 'SET auto_explain.log_nested_statements = on' \
	-c "CALL inbox_prune('7 days')"
t1=$(date +%s.%N)
lsn_1=$(q -c 'SELECT pg_current_wal_lsn()')
sleep "$after"
vacuuming=$(q -c "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_stat_progress_vacuum
                                           WHERE relid = 'inbox_outbox.inbox'::regclass)
                            THEN 'yes' ELSE 'no' END")
kill "${bg_pids[-1]}" 2>/dev/null || true
wait "${bg_pids[-1]}" 2>/dev/null || true
unset 'bg_pids[-1]'
other2=$(other_cpu)
expired_after=$(q -c "$expired_sql")
av_after=$(q -c "SELECT autovacuum_count FROM pg_stat_user_tables WHERE relid = 'inbox_outbox.inbox'::regclass")
kept_after=$(q -c "SELECT count(*) FROM inbox_outbox.inbox WHERE claimed_at >= now() - interval '7 days'")
grep -q '^progress: ' "$work/prune_pgbench.progress" ||
	{ cat "$work/prune_pgbench.progress" >&2; log "pgbench reported no progress"; exit 1; }
if grep '^progress: ' "$work/prune_pgbench.progress" | grep -vq ', 0 failed'; then
	log "claims failed during the prune:"
	grep -v ', 0 failed' "$work/prune_pgbench.progress" >&2
	exit 1
fi

# Windows of whole reports: each report covers the second before its stamp.
window() {
	awk -v a="$1" -v z="$2" '/^progress: / {
		t = $2 + 0; tps = $4 + 0; lat = $7 + 0
		if (t - 1 >= a && t <= z) { n++; s += tps; l += tps * lat }
	} END { if (n == 0 || s == 0) { print "0 0 0"; exit } printf "%.0f %.2f %d\n", s / n, l / s, n }' \
		"$work/prune_pgbench.progress"
}
read -r tps_b lat_b n_b < <(window "$(awk -v t="$t0" -v d="$before" 'BEGIN { printf "%.3f", t - d + 2 }')" "$t0")
read -r tps_d lat_d n_d < <(window "$t0" "$t1")
read -r tps_a lat_a n_a < <(window "$t1" "$(awk -v t="$t1" -v d="$after" 'BEGIN { printf "%.3f", t + d }')")
read -r batches seq_plans index_plans tenths < <(tail -c "+$((log_offset + 1))" "$work/postgres.log" |
	awk -f "$b/prune_batches.awk")
prune_s=$(awk -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", z - a }')
deleted=$((expired_before - expired_after))
read -r wal_b wal_d < <(q -F ' ' -c "SELECT round(pg_wal_lsn_diff('$lsn_0', '$lsn_b') / 1048576.0 / ($before - 2), 1),
                                          round(pg_wal_lsn_diff('$lsn_1', '$lsn_0') / 1048576.0 / greatest($prune_s, 0.1), 1)")

echo
echo "## 2. Pruning $(commas "$expired_before") expired claims while claims continue"
echo
echo "CALL inbox_prune('7 days') (batches of 10,000, each committed) in one session while pgbench"
echo "claims with 8 clients (-M prepared, synchronous_commit $prune_sc, ids gen_random_uuid()::text) into"
echo "the same inbox, which also holds $(commas "$kept_before") recent claims to keep. Tps from pgbench's"
echo "per-second reports: before = the ${before} s before the prune (less the first 2), during = the"
echo "whole prune, after = the ${after} s after it; latency is the tps-weighted mean of the reports."
echo
echo "| claims, 8 clients | seconds | tps | mean latency ms |"
echo "|---|---|---|---|"
echo "| before the prune (baseline) | $n_b | $tps_b | $lat_b |"
echo "| during the prune | $n_d | $tps_d | $lat_d |"
echo "| after the prune | $n_a | $tps_a | $lat_a |"
echo
awk -v s="$prune_s" -v d="$deleted" -v l="$expired_after" -v k="$kept_after" -v av="$((av_after - av_before))" 'BEGIN {
	printf "The prune deleted %d claims in %.1f s: %.0f rows/s; %d expired claims were left, %d recent\n", d, s, d / s, l, k
	printf "ones kept. Autovacuum finished %d vacuums of the inbox during this part.\n", av }'
awk -v n="$batches" -v sp="$seq_plans" -v ip="$index_plans" -v t="${tenths:-none}" \
	-v p0="$pages_before" 'BEGIN {
	printf "auto_explain logged %d batches (DELETEs of up to 10,000 rows, each followed by a rest twice as long\n", n
	printf "as the batch took): they found their rows by Index Scan on claimed_at in %d and by Seq Scan in %d.\n", ip, sp
	printf "Mean ms per batch over each tenth of the batches, in order: %s. The heap had %d pages\n", t, p0
	printf "when the prune began.\n" }'
echo "WAL written: $wal_b MB/s before the prune (claims alone), $wal_d MB/s during it. Autovacuum was"
echo "vacuuming the inbox when the claims stopped: $vacuuming."
other_note "$other2"

echo
echo "## Targets"
echo
echo "| target | measured | met |"
echo "|---|---|---|"
for fill in empty loaded; do
	for sc in on off; do
		for clients in 1 8; do
			r=${ratio1[$fill/$sc/$clients]}
			awk -v f="$fill" -v sc="$sc" -v n="$clients" -v r="$r" 'BEGIN {
				printf "| claim tps ≥ 0.9 × raw INSERT, %s inbox, synchronous_commit=%s, %d client%s | %.2f | %s |\n",
					f, sc, n, (n == 1 ? "" : "s"), r, (r >= 0.9 ? "yes" : "no") }'
		done
	done
done
awk -v d="$tps_d" -v b="$tps_b" -v n="$n_d" 'BEGIN {
	if (n == 0)
		print "| claim tps during the prune ≥ 0.7 × before it | the prune ended within a second: no report | |"
	else
		printf "| claim tps during the prune ≥ 0.7 × before it | %.2f | %s |\n", d / b, (d / b >= 0.7 ? "yes" : "no") }'
BENCH

warn_if_libs_changed "$libs_before"
echo
echo "Whole run: $((SECONDS - started)) s."
