#!/usr/bin/env bash
# Benchmark of the outbox, each figure beside a baseline measured in the same
# run on the same throwaway server, with a real Kafka broker (test/kafka):
#   1. publish overhead: pgbench tps of a transaction that calls
#      outbox_publish() against one that inserts the same row into a plain
#      table of the outbox's shape, with the relay running (publishing to
#      Kafka) and with no relay at all;
#   2. drain throughput: 1,000,000 pending events (~200-byte payloads) sent
#      by the relay with batch_size 1000, 5000 and 10000 (and linger.ms=1),
#      against the PostgreSQL-only ceiling of reading and deleting the same
#      rows in batches of the same size without Kafka; kcat checks the topic;
#   3. latency from commit to Kafka: p50 and p99 from the publishing
#      statement to a consumer's receipt, at 1,000 events/s (beside kcat
#      producing straight to the broker, with linger.ms 0, 1 and 5, and with
#      a million deleted rows not yet vacuumed) and at rising rates up to
#      the highest the machine sustains.
# pg_stat_statements is preloaded to report the relay's time per round, and
# the CPU of the relay, the broker and of other processes is reported.
# Usage: bash bench/outbox.sh   (as root or as a user that can install);
# about 11 minutes on 2 cores.  Logs stay in the work directory
# (postgres.log, kafka/server.log).
# Environment: OUTBOX_BENCH_SECONDS (pgbench run length in part 1, default
# 30), OUTBOX_BENCH_REPS (runs of each side in part 1, default 3).
set -euo pipefail

started=$SECONDS
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$src/scripts/lib.sh"
work=${INBOX_OUTBOX_BENCH_DIR:-/var/tmp/inbox_outbox-bench-outbox}
prepare_work_tree "$src" "$work"
libs_before=$(installed_libs_digest)

as_test_user env OUTBOX_BENCH_SECONDS="${OUTBOX_BENCH_SECONDS:-30}" \
	OUTBOX_BENCH_REPS="${OUTBOX_BENCH_REPS:-3}" bash -s "$work" <<'BENCH'
set -euo pipefail
work=$1
. "$work/scripts/lib.sh"
. "$work/bench/lib.sh"
b=$work/bench/outbox
kdir=$work/kafka
secs=$OUTBOX_BENCH_SECONDS
reps=$OUTBOX_BENCH_REPS
hz=$(getconf CLK_TCK)
consumer_pid=

# Stop everything; drop the data (gigabytes) of what stopped, keep the logs.
cleanup() {
	[[ -n $consumer_pid ]] && kill "$consumer_pid" 2>/dev/null && wait "$consumer_pid" 2>/dev/null
	if [[ -n ${PG_THROWAWAY_DATA:-} ]] && pg_ctl -D "$PG_THROWAWAY_DATA" -m fast stop >/dev/null 2>&1; then
		rm -rf "$PG_THROWAWAY_DATA"
	fi
	if "$work/test/kafka/kafka.sh" stop "$kdir"; then
		rm -rf "$kdir/data"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A broker of our own: C2-compiled like a production broker, stopped by its
# watchdog should this shell die without running the trap.
export KAFKA_OWNER_PID=$$ KAFKA_JVM_OPTS='-Xms1g -Xmx1g -XX:+ExitOnOutOfMemoryError'
mkdir -p "$kdir"
kafka=$("$work/test/kafka/kafka.sh" start "$kdir")
kafka_pid=$(<"$kdir/kafka.pid")
log "Kafka on $kafka (log: $kdir/server.log)"
(
	for t in orders latency drain_b1000 drain_b5000 drain_b10000 drain_limit; do
		"$work/test/kafka/kafka.sh" create-topic "$kdir" "$t" 3 2>/dev/null
	done
) &
topics_pid=$!

pg_throwaway_start "$work" "shared_buffers = '1GB'" "max_wal_size = '4GB'" \
	"checkpoint_timeout = '30min'" \
	"shared_preload_libraries = 'inbox_outbox, pg_stat_statements'" \
	"inbox_outbox.brokers = '$kafka'"
trap cleanup EXIT
log "creating the benchmark's tables"
psql -XqAt -v ON_ERROR_STOP=1 -f "$b/setup.sql" >/dev/null
wait "$topics_pid"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
postmaster_pid=$(head -n 1 "$PG_THROWAWAY_DATA/postmaster.pid")

wait_until() {
	local what=$1 sql=$2 limit=${3:-120} deadline
	deadline=$((SECONDS + limit))
	until [[ $(q -c "$sql") == t ]]; do
		if ((SECONDS >= deadline)); then
			log "gave up after $limit s waiting for $what"
			exit 1
		fi
		sleep 0.1
	done
}

# Pausing names no database in inbox_outbox.databases: the launcher stops
# the relay, and no relay process runs at all.
relay_pause() {
	q -c "ALTER SYSTEM SET inbox_outbox.databases = 'no_database_has_this_name'" \
		-c 'SELECT pg_reload_conf()' >/dev/null
	# published = 0 once the launcher has freed the relay's slot, so the
	# next relay counts from zero.
	wait_until "the relay to stop" \
		"SELECT pid IS NULL AND published = 0 FROM inbox_outbox.relay_worker()"
}
relay_resume() {
	q -c 'ALTER SYSTEM RESET inbox_outbox.databases' -c 'SELECT pg_reload_conf()' >/dev/null
	wait_until "the relay to start" \
		"SELECT pid IS NOT NULL AND state IN ('idle', 'publishing') FROM inbox_outbox.relay_worker()"
}
relay_pid() { q -c 'SELECT pid FROM inbox_outbox.relay_worker()'; }

# Poll in short transactions (psql's \watch): a snapshot held across the
# wait would keep the relay's deleted rows visible, and every later round
# would walk them again.  Prints the time of the first poll that satisfies
# the awk condition.
poll_until() {
	local sql=$1 cond=$2 limit=$3
	(
		set +o pipefail
		printf '%s\n' "$sql" '\watch 0.01' | timeout "$limit" psql -XqAt 2>/dev/null |
			awk -F'|' "$cond { print; found = 1; exit } END { if (!found) exit 1 }"
	)
}
# Prints the time until the outbox is empty, from $1 (epoch seconds).
time_to_empty() {
	local t
	t=$(poll_until "SELECT extract(epoch FROM clock_timestamp()), EXISTS (SELECT 1 FROM inbox_outbox.outbox)" \
		'$2 == "f"' 300) || { log "the relay did not empty the outbox within 300 s"; exit 1; }
	awk -v a="$1" -v b="${t%%|*}" 'BEGIN { printf "%.3f\n", b - a }'
}

# The relay's reads (calls, including those that found nothing), its deletes
# (one per round that sent rows) and the rows they deleted, and the ms spent
# in each.  pg_stat_statements counts no rows for the cursor the read uses.
relay_sql_stats() {
	q -F ' ' -c "SELECT coalesce(sum(calls) FILTER (WHERE f), 0),
	                    coalesce(sum(calls) FILTER (WHERE d), 0),
	                    coalesce(sum(rows) FILTER (WHERE d), 0),
	                    round(coalesce(sum(total_exec_time) FILTER (WHERE f), 0)::numeric),
	                    round(coalesce(sum(total_exec_time) FILTER (WHERE d), 0)::numeric)
	             FROM (SELECT *, query LIKE 'SELECT o.ctid, o.id, o.topic%' AS f,
	                          query LIKE 'DELETE FROM inbox_outbox.outbox WHERE ctid%' AS d
	                   FROM pg_stat_statements) s"
}

topic_messages() {
	local t=$1
	kcat -Q -b "$kafka" -t "$t:0:-1" -t "$t:1:-1" -t "$t:2:-1" 2>/dev/null |
		awk '/ offset / { n += $NF } END { print n + 0 }'
}

echo
echo "# inbox_outbox outbox benchmark ($(date -u +%F), $(nproc) cores, PostgreSQL $(q -c 'SHOW server_version'), Kafka 3.9.1 on the same machine, librdkafka $(dpkg-query -W -f='${Version}' librdkafka1))"
echo
echo "Relay settings are the defaults (linger.ms=0, batch_size 5000) unless a table says otherwise;"
echo "topics have 3 partitions; synchronous_commit = on. PostgreSQL, the relay, the broker and the"
echo "load generators all share the $(nproc) cores."

#
# 1. Publish overhead
#
before_run() {
	q -c 'TRUNCATE plain_outbox'
	if [[ $1 == paused ]]; then
		q -c 'TRUNCATE inbox_outbox.outbox'
	else
		wait_until "the relay to empty the outbox" \
			"SELECT NOT EXISTS (SELECT 1 FROM inbox_outbox.outbox)" 300
	fi
	q -c 'VACUUM plain_outbox, inbox_outbox.outbox' -c 'CHECKPOINT'
}

pgbench_tps() {
	local out
	out=$(pgbench -n -M prepared -c 4 -j 2 -T "$secs" -f "$1" 2>&1) || { echo "$out" >&2; exit 1; }
	grep -q '^number of failed transactions: 0 ' <<<"$out" || { echo "$out" >&2; exit 1; }
	sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out"
}

declare -A pub_runs plain_runs pub_med plain_med
cpu_mark "$postmaster_pid" "$kafka_pid"
relay_ticks=0 broker_ticks=0 max_backlog=0
for mode in running paused; do
	if [[ $mode == running ]]; then
		relay_resume
		q -c 'SELECT pg_stat_statements_reset()' >/dev/null
	else
		relay_pause
	fi
	log "publish overhead, relay $mode: $reps x 2 pgbench runs of $secs s"
	pubs=() plains=()
	for ((i = 0; i < reps; i++)); do
		if ((i % 2)); then order="publish plain"; else order="plain publish"; fi
		for f in $order; do
			before_run "$mode"
			if [[ $f == publish && $mode == running ]]; then
				rpid=$(relay_pid)
				r0=$(cpu_ticks "$rpid") k0=$(cpu_ticks "$kafka_pid")
			fi
			tps=$(pgbench_tps "$b/$f.pgb")
			if [[ $f == publish ]]; then
				pubs+=("$tps")
				if [[ $mode == running ]]; then
					backlog=$(q -c 'SELECT count(*) FROM inbox_outbox.outbox')
					relay_ticks=$((relay_ticks + $(cpu_ticks "$rpid") - r0))
					broker_ticks=$((broker_ticks + $(cpu_ticks "$kafka_pid") - k0))
					((backlog > max_backlog)) && max_backlog=$backlog
				fi
			else
				plains+=("$tps")
			fi
		done
	done
	pub_runs[$mode]=$(printf '%.0f ' "${pubs[@]}")
	plain_runs[$mode]=$(printf '%.0f ' "${plains[@]}")
	pub_med[$mode]=$(printf '%s\n' "${pubs[@]}" | median)
	plain_med[$mode]=$(printf '%s\n' "${plains[@]}" | median)
	if [[ $mode == running ]]; then
		wait_until "the relay to empty the outbox" "SELECT NOT EXISTS (SELECT 1 FROM inbox_outbox.outbox)" 300
		read -r p_reads p_rounds p_rows p_fetch_ms p_delete_ms < <(relay_sql_stats)
	fi
done
other1=$(other_cpu)

echo
echo "## 1. Publish overhead: outbox_publish() vs INSERT into a plain table"
echo
echo "pgbench -M prepared, 4 clients, 2 threads, $secs s per run; one statement per transaction with a"
echo "~200-byte jsonb payload (bench/outbox/publish.pgb, plain.pgb); the plain table has the outbox's"
echo "columns and a ulid primary key. $reps runs of each side, alternating; medians."
echo
echo "| relay | outbox_publish() tps | plain INSERT tps | ratio | runs: publish / plain |"
echo "|---|---|---|---|---|"
for mode in running paused; do
	case $mode in
	running) label="running, publishing to Kafka (realistic)" ;;
	paused) label="no relay (inbox_outbox.databases names no database)" ;;
	esac
	awk -v l="$label" -v p="${pub_med[$mode]}" -v q="${plain_med[$mode]}" \
		-v rp="${pub_runs[$mode]% }" -v rq="${plain_runs[$mode]% }" 'BEGIN {
		printf "| %s | %.0f | %.0f | %.2f | %s / %s |\n", l, p, q, p / q, rp, rq }'
done
echo
awk -v rt="$relay_ticks" -v bt="$broker_ticks" -v hz="$hz" -v s="$((secs * reps))" \
	-v bl="$max_backlog" -v n="$p_rounds" -v r="$p_rows" -v nr="$p_reads" -v fm="$p_fetch_ms" -v dm="$p_delete_ms" 'BEGIN {
	printf "With the relay running, during the outbox_publish() runs the relay used %.0f%% of a core and the\n", 100 * rt / hz / s
	printf "broker %.0f%%; the backlog when a run ended was at most %d rows. The relay ran %d rounds of\n", 100 * bt / hz / s, bl, n
	printf "%.1f rows on average; a read took %.2f ms (%d reads, with those that found nothing) and a\n", (n ? r / n : 0), (nr ? fm / nr : 0), nr
	printf "delete %.2f ms.\n", (n ? dm / n : 0) }'
other_note "$other1"

#
# 2. Drain throughput
#
drain_load() {
	relay_pause
	q -c 'TRUNCATE inbox_outbox.outbox'
	q -c "INSERT INTO inbox_outbox.outbox (topic, key, payload) SELECT '$1', key, payload FROM drain_src"
	q -c 'VACUUM ANALYZE inbox_outbox.outbox' -c 'CHECKPOINT'
}

ceiling() {
	local out ms n
	drain_load drain_ceiling
	# Custom plans: a generic plan of "LIMIT n" may scan the whole table.
	out=$(q -c 'SET plan_cache_mode = force_custom_plan' -c '\timing on' -c "CALL $1($2)")
	n=$(grep -E '^[0-9]+$' <<<"$out" | head -n 1)
	ms=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out")
	[[ $n == 1000000 ]] || { log "$1 deleted $n rows, not 1000000"; exit 1; }
	awk -v ms="$ms" 'BEGIN { printf "%.0f\n", 1000000 / ms * 1000 }'
}

# A REPEATABLE READ transaction that holds its snapshot, taken once the
# rows are in, until it is terminated (held_snapshot_end): the relay's
# deletes then leave dead index entries that no vacuum can remove.
held_snapshot_start() {
	(printf '%s\n' 'BEGIN ISOLATION LEVEL REPEATABLE READ;' \
		'SELECT count(*) FROM inbox_outbox.outbox;' 'SELECT pg_sleep(3600);' |
		PGAPPNAME=held_snapshot psql -XqAt >/dev/null 2>&1 || true) &
	wait_until "the held snapshot" \
		"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'held_snapshot' AND backend_xmin IS NOT NULL AND state = 'active')"
}
held_snapshot_end() {
	q -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'held_snapshot'" >/dev/null
	wait
}

# The machine's limit for the same work: the PostgreSQL-only drain
# (DELETE ... RETURNING in batches of $1, asynchronous commit) and kcat
# producing the same million messages to the same broker (idempotent,
# acks=all, linger.ms=0, as the relay does), both at once.  Prints the
# events/s of the two together, then of each.
drain_limit() {
	local bs=$1 t0 tp tk t1
	[[ -s $work/drain_msgs.txt ]] ||
		q -c "COPY (SELECT key || E'\t' || convert_from(payload, 'UTF8') FROM drain_src) TO STDOUT" \
			>"$work/drain_msgs.txt"
	drain_load drain_limit
	t0=$(date +%s.%N)
	(
		q -c 'SET synchronous_commit = off' -c 'SET plan_cache_mode = force_custom_plan' \
			-c "CALL drain_delete_returning($bs)" >/dev/null
		date +%s.%N >"$work/limit_pg_end"
	) &
	kcat -P -q -b "$kafka" -t drain_limit -K $'\t' -X enable.idempotence=true -X acks=all \
		-X linger.ms=0 -X partitioner=murmur2_random -l "$work/drain_msgs.txt"
	tk=$(date +%s.%N)
	wait
	tp=$(<"$work/limit_pg_end")
	t1=$(awk -v a="$tp" -v b="$tk" 'BEGIN { print (a > b) ? a : b }')
	awk -v t0="$t0" -v t1="$t1" -v tp="$tp" -v tk="$tk" \
		'BEGIN { printf "%.0f %.0f %.0f\n", 1e6 / (t1 - t0), 1e6 / (tp - t0), 1e6 / (tk - t0) }'
}

rows2=()
diag2=()
declare -A ceil1 ceil2 relay2
cpu_mark "$postmaster_pid" "$kafka_pid"
# batch_size, then librdkafka properties (inbox_outbox.kafka_config), or
# "held": a REPEATABLE READ snapshot held through the drain
for config in 1000 5000 10000 "5000 linger.ms=1" "10000 linger.ms=1" "5000 held"; do
	read -r bs props <<<"$config"
	held=
	[[ $props == held ]] && { held=1; props=; }
	label=$bs${props:+, $props}${held:+, a snapshot held}
	topic=drain_b$bs
	log "drain with batch_size $label"
	drain_load "$topic"
	[[ -n $held ]] && held_snapshot_start
	before=$(topic_messages "$topic")
	q -c "ALTER SYSTEM SET inbox_outbox.batch_size = $bs" -c 'SELECT pg_stat_statements_reset()' >/dev/null
	if [[ -n $props ]]; then
		q -c "ALTER SYSTEM SET inbox_outbox.kafka_config = '$props'"
	else
		q -c 'ALTER SYSTEM RESET inbox_outbox.kafka_config'
	fi
	k0=$(cpu_ticks "$kafka_pid")
	t0=$(q -c 'ALTER SYSTEM RESET inbox_outbox.databases' \
		-c 'SELECT extract(epoch FROM clock_timestamp()) FROM pg_reload_conf()')
	# the relay's private memory (RssAnon: shared buffers left out), its
	# highest reading every 0.1 s
	(
		until rpid=$(relay_pid) && [[ -n $rpid ]]; do sleep 0.01; done
		peak=0
		while a=$(awk '/^RssAnon/ { print $2 }' "/proc/$rpid/status" 2>/dev/null) && [[ -n $a ]]; do
			((a > peak)) && peak=$a && echo "$peak" >"$work/relay_rss_kb"
			sleep 0.1
		done
	) &
	rss_sampler=$!
	t=$(poll_until "SELECT extract(epoch FROM clock_timestamp()), published FROM inbox_outbox.relay_worker()" \
		'$2 >= 1000000' 300) || { log "the relay did not publish 1,000,000 rows within 300 s"; exit 1; }
	t1=${t%%|*}
	rpid=$(relay_pid)
	rticks=$(cpu_ticks "$rpid")
	kill "$rss_sampler" 2>/dev/null || true
	wait "$rss_sampler" 2>/dev/null || true
	rss_mb=$(awk '{ printf "%.0f", $1 / 1024 }' "$work/relay_rss_kb")
	kticks=$(($(cpu_ticks "$kafka_pid") - k0))
	[[ -n $held ]] && held_snapshot_end
	left=$(q -c 'SELECT count(*) FROM inbox_outbox.outbox')
	[[ $left == 0 ]] || { log "$left rows left in the outbox after the drain"; exit 1; }
	read -r d_rounds _ _ d_fetch_ms d_delete_ms < <(relay_sql_stats)
	relay_eps=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 1000000 / (b - a) }')
	msgs=$(($(topic_messages "$topic") - before))
	((msgs >= 1000000)) || { log "topic $topic received $msgs messages, fewer than 1,000,000"; exit 1; }

	if [[ -z ${ceil1[$bs]:-} ]]; then
		log "PostgreSQL-only ceilings with batches of $bs"
		ceil1[$bs]=$(ceiling drain_delete_returning "$bs")
		ceil2[$bs]=$(ceiling drain_relay_statements "$bs")
	fi
	[[ -z $held && -z $props ]] && relay2[$bs]=$relay_eps
	rows2+=("$(awk -v l="$label" -v r="$relay_eps" -v c1="${ceil1[$bs]}" -v c2="${ceil2[$bs]}" -v m="$msgs" 'BEGIN {
		printf "| %s | %d | %d | %.2f | %d | %.2f | %d |", l, r, c1, r / c1, c2, r / c2, m }')")
	diag2+=("$(awk -v l="$label" -v a="$t0" -v b="$t1" -v rt="$rticks" -v kt="$kticks" -v hz="$hz" \
		-v n="$d_rounds" -v fm="$d_fetch_ms" -v dm="$d_delete_ms" -v rss="$rss_mb" 'BEGIN {
		s = b - a
		printf "| %s | %.2f | %.1f (%.0f%%) | %.1f (%.0f%%) | %d | %.2f | %.2f | %.1f | %d |", l, s,
			rt / hz, 100 * rt / hz / s, kt / hz, 100 * kt / hz / s, n, fm / n, dm / n, 1000 * s / n, rss }')")
	[[ -n $held ]] && held_eps=$relay_eps
done
log "the limit: PostgreSQL-only drain and kcat producing the same messages, at the same time"
read -r limit_eps limit_pg_eps limit_kcat_eps < <(drain_limit 5000)
other2=$(other_cpu)
q -c 'ALTER SYSTEM RESET inbox_outbox.batch_size' -c 'ALTER SYSTEM RESET inbox_outbox.kafka_config' >/dev/null
relay_resume

echo
echo "## 2. Drain: 1,000,000 pending events, ~200-byte payloads, 10,000 keys"
echo
echo "Rows inserted while no relay ran; timed from the reload that starts the relay until it has"
echo "deleted the last acknowledged row. Ceilings: the same rows read and deleted by a procedure in"
echo "PostgreSQL, batches of the same size, one transaction per batch (or per statement), no Kafka:"
echo "\"DELETE … RETURNING\" deletes the oldest n rows and returns their columns; \"relay's statements\""
echo "runs the relay's own SELECT and DELETE … WHERE ctid = ANY."
echo
echo "| batch_size, producer | relay events/s | ceiling: DELETE … RETURNING events/s | ratio | ceiling: relay's statements events/s | ratio | messages in the topic (kcat -Q) |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows2[@]}"
echo
echo "rounds, read and delete ms per round: from pg_stat_statements, which sees the relay's statements"
echo "only (a read from the low end of the outbox, a delete where a DELETE trigger fires); its reads"
echo "from the read bound and its deletes in C are not counted there."
echo
echo "| batch_size, producer | relay drain s | relay CPU s | broker CPU s | rounds | read ms/round | delete ms/round | ms/round | relay peak private memory (RssAnon) MB |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${diag2[@]}"
echo
echo "The limit of the machine for the same work, at batch_size 5000: the PostgreSQL-only drain"
echo "(DELETE … RETURNING, asynchronous commit) and kcat producing the same 1,000,000 messages to"
echo "the same broker (idempotent, acks=all, linger.ms=0, no headers) at the same time, timed until"
echo "both are done."
echo
echo "| measure | events/s | relay / it |"
echo "|---|---|---|"
awk -v r="${relay2[5000]}" -v l="$limit_eps" -v p="$limit_pg_eps" -v k="$limit_kcat_eps" -v h="$held_eps" 'BEGIN {
	printf "| the limit: both at once | %d | **%.2f** |\n", l, r / l
	printf "| (its PostgreSQL drain alone finished at) | %d | |\n", p
	printf "| (its kcat alone finished at) | %d | |\n", k
	printf "| relay, batch_size 5000 | %d | |\n", r
	printf "| relay, batch_size 5000, a REPEATABLE READ snapshot held | %d | %.2f of the relay without |\n", h, h / r }'
other_note "$other2"

#
# 3. Latency
#
q -c "CREATE TRIGGER record_ack AFTER DELETE ON inbox_outbox.outbox
       FOR EACH ROW WHEN (OLD.topic = 'latency') EXECUTE FUNCTION record_ack()"
log "latency: starting the consumer"
/usr/bin/python3 "$b/consume.py" "$kafka" latency "$work/latency.txt" &
consumer_pid=$!

received() { awk -v t="$1" '$2 == t { n++ } END { print n + 0 }' "$work/latency.txt"; }

# One table row: publisher, target rate, published rate, percentiles,
# backlog, CPU, sustained.
latency_row() {
	local who=$1 rate=$2 d=$3 tag=$4 n=$5 drain=$6 rt=$7 kt=$8 deadline cnt p50 p90 p99 p999 max a50 a99
	deadline=$((SECONDS + 60))
	while (($(received "$tag") < n)); do
		((SECONDS < deadline)) || { log "consumer received $(received "$tag") of $n events of $tag"; exit 1; }
		sleep 0.2
	done
	read -r cnt p50 p90 p99 p999 max < <(/usr/bin/python3 "$b/latency.py" "$work/latency.txt" "$tag")
	((cnt == n)) || log "warning: consumer received $cnt events of $tag, $n were published"
	# statement -> deletion after acknowledgement (relay rows only)
	read -r a50 a99 < <(q -F ' ' -c "SELECT coalesce(round(percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms)::numeric, 2)::text, '-'),
	                                          coalesce(round(percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_ms)::numeric, 2)::text, '-')
	                                   FROM acked WHERE tag = '$tag'")
	awk -v who="$who" -v rate="$rate" -v n="$n" -v d="$d" -v dr="$drain" -v p50="$p50" -v p90="$p90" \
		-v p99="$p99" -v p999="$p999" -v max="$max" -v rt="$rt" -v kt="$kt" -v hz="$hz" \
		-v a50="$a50" -v a99="$a99" 'BEGIN {
		if (n < 0.97 * rate * d)
			ok = sprintf("no: publishers reached %.0f%%", 100 * n / rate / d)
		else if (dr != "-" && dr > 1.0)
			ok = sprintf("no: backlog took %.1f s", dr)
		else
			ok = "yes"
		printf "| %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f%% | %s |\n", who, rate, n / d,
			a50, a99, p50, p90, p99, p999, max, dr, (rt == "-" ? "-" : sprintf("%.0f%%", 100 * rt / hz / d)),
			100 * kt / hz / d, ok }'
}

# The relay publishes what pgbench commits at a fixed rate.
relay_step() {
	local who=$1 rate=$2 d=$3 tag=$4 out n t_end drain r0 k0 rpid
	rpid=$(relay_pid)
	r0=$(cpu_ticks "$rpid") k0=$(cpu_ticks "$kafka_pid")
	out=$(pgbench -n -M prepared -c 4 -j 2 -T "$d" --rate "$rate" -D tag="$tag" -f "$b/latency.pgb" 2>&1) ||
		{ echo "$out" >&2; exit 1; }
	t_end=$(date +%s.%N)
	n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
	drain=$(time_to_empty "$t_end")
	latency_row "$who" "$rate" "$d" "$tag" "$n" "$drain" \
		"$(($(cpu_ticks "$rpid") - r0))" "$(($(cpu_ticks "$kafka_pid") - k0))"
}

# Baseline: the same rate produced straight to Kafka by kcat, with the
# relay's producer settings and no PostgreSQL.
kafka_step() {
	local who=$1 rate=$2 d=$3 tag=$4 n k0
	shift 4
	k0=$(cpu_ticks "$kafka_pid")
	n=$(/usr/bin/python3 "$b/produce.py" "$kafka" latency "$tag" "$rate" "$d" "$@")
	latency_row "$who" "$rate" "$d" "$tag" "$n" - - "$(($(cpu_ticks "$kafka_pid") - k0))"
}

set_kafka_config() {
	if [[ -n $1 ]]; then
		q -c "ALTER SYSTEM SET inbox_outbox.kafka_config = '$1'" -c 'SELECT pg_reload_conf()' >/dev/null
	else
		q -c 'ALTER SYSTEM RESET inbox_outbox.kafka_config' -c 'SELECT pg_reload_conf()' >/dev/null
	fi
	# the relay recreates its producer at its next round
	relay_step warmup 500 2 "warm${#rows3[@]}" >/dev/null
}

cpu_mark "$postmaster_pid" "$kafka_pid"
log "latency: warming up"
relay_step warmup 500 3 warm >/dev/null
/usr/bin/python3 "$b/produce.py" "$kafka" latency kwarm 500 2 >/dev/null
rows3=()

# After a backlog the relay's deleted rows stay in the primary key until
# VACUUM, and each round's read walks them.  Autovacuum is kept away for
# this one step, so that it measures that state and not autovacuum's timing.
log "latency at 1000 events/s over 1,000,000 deleted, not yet vacuumed rows"
relay_pause
q -c 'TRUNCATE inbox_outbox.outbox' \
	-c 'ALTER TABLE inbox_outbox.outbox SET (autovacuum_enabled = false)' \
	-c "INSERT INTO inbox_outbox.outbox (topic, key, payload) SELECT 'x', key, payload FROM drain_src" \
	-c 'DELETE FROM inbox_outbox.outbox' -c 'CHECKPOINT'
relay_resume
rows3+=("$(relay_step "relay, 1,000,000 deleted rows not yet vacuumed" 1000 10 dead1000)")
q -c 'ALTER TABLE inbox_outbox.outbox RESET (autovacuum_enabled)' -c 'VACUUM inbox_outbox.outbox'

log "latency at 1000 events/s: Kafka alone, then the relay"
rows3+=("$(kafka_step "kcat → Kafka, no PostgreSQL (baseline)" 1000 20 k1000)")
rows3+=("$(relay_step "relay (defaults)" 1000 20 r1000)")
# The trigger that times the DELETE makes the relay delete with its
# statement (it must fire); without one, as in production, the relay deletes
# in C (docs/design.md, "Small rounds in C").
q -c 'DROP TRIGGER record_ack ON inbox_outbox.outbox' >/dev/null
rows3+=("$(relay_step "relay (defaults), no DELETE trigger: deletes in C" 1000 20 c1000)")
q -c "CREATE TRIGGER record_ack AFTER DELETE ON inbox_outbox.outbox
       FOR EACH ROW WHEN (OLD.topic = 'latency') EXECUTE FUNCTION record_ack()" >/dev/null
for linger in 1 5; do
	log "latency at 1000 events/s with linger.ms=$linger"
	rows3+=("$(kafka_step "kcat → Kafka, no PostgreSQL, linger.ms=$linger" 1000 10 "k${linger}k1000" "linger.ms=$linger")")
	set_kafka_config "linger.ms=$linger"
	rows3+=("$(relay_step "relay, linger.ms=$linger" 1000 10 "l${linger}r1000")")
done
set_kafka_config ""

sustained=()
for rate in 2000 3000 4000 5000 6000 8000 10000 12000; do
	log "latency at $rate events/s for 10 s"
	row=$(relay_step "relay (defaults)" "$rate" 10 "r$rate")
	rows3+=("$row")
	[[ $row == *"| yes |" ]] || break
	sustained+=("$row")
done
other3=$(other_cpu)

echo
echo "## 3. Latency from commit to Kafka"
echo
echo "pgbench --rate (Poisson arrivals), 4 clients, one outbox_publish() per transaction, ~200-byte"
echo "text payload that carries clock_timestamp() of the publishing statement; a consumer (kcat,"
echo "fetch.wait.max.ms=1) stamps each message as it arrives. Latency = arrival − statement time: it"
echo "includes the commit itself and the consumer's fetch, so it is an upper bound of commit → Kafka"
echo "acknowledgement. Baseline: kcat producing the same messages at the same rate straight to the"
echo "broker with the relay's producer settings (idempotent, acks=all, linger.ms=0), stamped when"
echo "handed to kcat. Rates above 1,000/s: 10 s each, until one is not sustained (under 97% of it"
echo "published, or a backlog that takes the relay more than 1 s to clear once publishing stops)."
echo "ack p50/p99: statement → the relay's DELETE of the row, which follows Kafka's acknowledgement"
echo "(an AFTER DELETE trigger records the time; bench/outbox/setup.sql): the upper bound of commit →"
echo "acknowledgement without the consumer's fetch; none for kcat, whose acknowledgements are not seen."
echo "The relay serves the delivery reports of a read when its gathering ends, so the DELETE comes up"
echo "to inbox_outbox.gather_window (2 ms) after the acknowledgement: receipt is the closer bound."
echo
echo "| publisher | target events/s | published events/s | ack p50 ms | ack p99 ms | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | backlog cleared after s | relay CPU | broker CPU | sustained |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows3[@]}"
other_note "$other3"

field() { awk -F'|' -v i="$2" '{ gsub(/ /, "", $i); print $i }' <<<"$1"; }
r1000=${rows3[2]}
k1000=${rows3[1]}
echo
echo "## Targets"
echo
echo "| target | measured | met |"
echo "|---|---|---|"
awk -v p="${pub_med[running]}" -v q="${plain_med[running]}" -v p2="${pub_med[paused]}" -v q2="${plain_med[paused]}" 'BEGIN {
	printf "| publish tps ≥ 0.9 × plain INSERT, relay running | %.2f | %s |\n", p / q, (p / q >= 0.9 ? "yes" : "no")
	printf "| publish tps ≥ 0.9 × plain INSERT, no relay | %.2f | %s |\n", p2 / q2, (p2 / q2 >= 0.9 ? "yes" : "no") }'
for row in "${rows2[@]}"; do
	awk -F'|' '{ l = $2; gsub(/^ +| +$/, "", l); gsub(/ /, ""); printf "| drain ≥ 100,000 events/s and ≥ 0.7 × ceiling, batch_size %s | %s events/s; %s × DELETE … RETURNING, %s × relay'"'"'s statements | %s |\n",
		l, $3, $5, $7, ($3 >= 100000 && $5 >= 0.7 ? ($7 >= 0.7 ? "yes" : "yes against DELETE … RETURNING") : "no") }' <<<"$row"
done
awk -v p50="$(field "$r1000" 7)" -v p99="$(field "$r1000" 9)" -v k50="$(field "$k1000" 7)" -v k99="$(field "$k1000" 9)" \
	-v a50="$(field "$r1000" 5)" -v a99="$(field "$r1000" 6)" 'BEGIN {
	printf "| p50 ≤ 2 ms and p99 ≤ 10 ms at 1,000 events/s, commit → acknowledgement | p50 %s ms, p99 %s ms (to the DELETE that follows it) | %s |\n",
		a50, a99, (a50 <= 2 && a99 <= 10 ? "yes" : "no")
	printf "| the same, commit → receipt by a consumer | p50 %s ms, p99 %s ms (Kafka alone: %s, %s) | %s |\n",
		p50, p99, k50, k99, (p50 <= 2 && p99 <= 10 ? "yes" : "no") }'
l0k=${rows3[3]}
l0r=${rows3[4]}
awk -v p50="$(field "$l0r" 7)" -v p99="$(field "$l0r" 9)" -v k50="$(field "$l0k" 7)" -v k99="$(field "$l0k" 9)" \
	-v a50="$(field "$l0r" 5)" -v a99="$(field "$l0r" 6)" 'BEGIN {
	printf "| the same with linger.ms=1 | ack p50 %s ms, p99 %s ms; receipt p50 %s ms, p99 %s ms (Kafka alone: %s, %s) | %s |\n",
		a50, a99, p50, p99, k50, k99, (a50 <= 2 && a99 <= 10 ? "yes" : "no") }'
if ((${#sustained[@]})); then
	best=${sustained[-1]}
	echo "| highest sustained rate tried | $(field "$best" 3) events/s: ack p50 $(field "$best" 5) ms, p99 $(field "$best" 6) ms; receipt p50 $(field "$best" 7) ms, p99 $(field "$best" 9) ms | |"
else
	echo "| highest sustained rate tried | none above 1,000 events/s | |"
fi
BENCH

warn_if_libs_changed "$libs_before"
echo
echo "Whole run: $((SECONDS - started)) s."
