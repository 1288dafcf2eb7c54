#!/usr/bin/env bash
# Benchmark of ingestion (Kafka -> PostgreSQL, docs/ingest.md), each figure
# beside a baseline measured in the same run on the same throwaway server,
# with a real Kafka broker (test/kafka):
#   1. ingestion rate: N messages (200-byte payloads, an event_id header
#      each) published to a 3-partition topic by the relay (outbox_publish()
#      in one statement) before anyone subscribes, then a subscription with
#      a one-row INSERT PL/pgSQL handler (batch_size 500, the default),
#      timed from the commit of subscribe() to the commit of the last batch;
#   2. the handler's own ceiling: the same handler called by one SQL session
#      over the same N messages loaded into a table, alone, after
#      inbox_try_claim() in one statement, and after inbox_try_claim() in
#      transactions of 500 (what the worker does, without Kafka); the ratio
#      of 1 to each;
#   3. latency at 1,000 messages/s: from a Kafka producer's send to the
#      commit of the batch that applied the message, beside a plain Kafka
#      consumer's receipt of the same messages; and from outbox_publish()
#      through the relay, Kafka and the worker back into the database;
#   4. the idle worker's CPU, beside the relay's, over the same seconds.
# Runs 1 and 2 alternate, INGEST_BENCH_REPS times each; medians.  Each run
# of 1 is made again with inbox_outbox.kafka_config =
# 'queued.min.messages=10000' (librdkafka's threshold before the worker's
# default of 1,000,000), which shows how much time the worker spends
# waiting for librdkafka's fetcher under it; a last ingestion run with
# pg_stat_statements.track = all shows where the rest goes.
# Usage: bash bench/ingest.sh   (as root or as a user that can install);
# about 3 minutes on 2 cores.  Logs stay in the work directory
# (postgres.log, kafka/server.log).
# Environment: INGEST_BENCH_MESSAGES (N, default 200000), INGEST_BENCH_REPS
# (runs of each side of 1 and 2, default 3), INGEST_BENCH_LATENCY_SECONDS
# (default 20), INGEST_BENCH_IDLE_SECONDS (default 20).
set -euo pipefail

started=$SECONDS
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$src/scripts/lib.sh"
work=${INBOX_OUTBOX_BENCH_DIR:-/var/tmp/inbox_outbox-bench-ingest}
commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git -C "$src" diff --quiet HEAD -- src inbox_outbox--1.0.sql Makefile 2>/dev/null; then
	commit="$commit with uncommitted changes to the code"
fi
prepare_work_tree "$src" "$work"
libs_before=$(installed_libs_digest)

as_test_user env INGEST_BENCH_MESSAGES="${INGEST_BENCH_MESSAGES:-200000}" \
	INGEST_BENCH_REPS="${INGEST_BENCH_REPS:-3}" \
	INGEST_BENCH_LATENCY_SECONDS="${INGEST_BENCH_LATENCY_SECONDS:-20}" \
	INGEST_BENCH_IDLE_SECONDS="${INGEST_BENCH_IDLE_SECONDS:-20}" \
	INGEST_BENCH_COMMIT="$commit" bash -s "$work" <<'BENCH'
set -euo pipefail
work=$1
. "$work/scripts/lib.sh"
. "$work/bench/lib.sh"
b=$work/bench/ingest
kdir=$work/kafka
n=$INGEST_BENCH_MESSAGES
reps=$INGEST_BENCH_REPS
lat_secs=$INGEST_BENCH_LATENCY_SECONDS
idle_secs=$INGEST_BENCH_IDLE_SECONDS
hz=$(getconf CLK_TCK)
handler='ingest_row(text, int, bigint, bytea, bytea, jsonb, timestamptz)'
load_start=$(cut -d ' ' -f 1-3 /proc/loadavg)
consumer_pid=

# Stop everything; drop the data of what stopped, keep the logs.
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
	for t in ingest latency; do
		"$work/test/kafka/kafka.sh" create-topic "$kdir" "$t" 3 2>/dev/null
	done
) &
topics_pid=$!

# pg_stat_statements is loaded but off (track = none) except in the
# diagnostic run; track_commit_timestamp gives every batch's commit time.
pg_throwaway_start "$work" "shared_buffers = '1GB'" "max_wal_size = '4GB'" \
	"checkpoint_timeout = '30min'" \
	"shared_preload_libraries = 'inbox_outbox, pg_stat_statements'" \
	"pg_stat_statements.track = 'none'" "track_commit_timestamp = on" \
	"max_worker_processes = 16" "inbox_outbox.brokers = '$kafka'"
trap cleanup EXIT
log "creating the benchmark's tables"
psql -XqAt -v ON_ERROR_STOP=1 -f "$b/setup.sql" >/dev/null
wait "$topics_pid"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# ns the process's main thread spent runnable, waiting for a CPU
run_wait_ns() { awk '{ print $2 }' "/proc/$1/schedstat" 2>/dev/null || echo 0; }
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

# Poll in short transactions (psql's \watch); prints the first row that
# satisfies the awk condition.
poll_until() {
	local sql=$1 cond=$2 limit=$3
	(
		set +o pipefail
		printf '%s\n' "$sql" '\watch 0.02' | timeout "$limit" psql -XqAt 2>/dev/null |
			awk -F'|' "$cond { print; found = 1; exit } END { if (!found) exit 1 }"
	)
}

topic_messages() {
	local t=$1
	kcat -Q -b "$kafka" -t "$t:0:-1" -t "$t:1:-1" -t "$t:2:-1" 2>/dev/null |
		awk '/ offset / { n += $NF } END { print n + 0 }'
}

as_owner() { q -c 'SET ROLE bench_ingester' "$@"; }

echo
echo "# inbox_outbox ingestion benchmark ($(date -u '+%F %H:%M UTC'), commit $INGEST_BENCH_COMMIT)"
echo
echo "Machine: $(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)), $(free -g | awk '/^Mem:/ { print $2 }') GiB,"
echo "Linux $(uname -r). PostgreSQL $(q -c 'SHOW server_version'), Kafka 3.9.1 (one broker, -Xmx1g) on the same"
echo "machine, librdkafka $(dpkg-query -W -f='${Version}' librdkafka1). Throwaway server: shared_buffers 1GB,"
echo "max_wal_size 4GB, checkpoint_timeout 30min, track_commit_timestamp on, pg_stat_statements loaded"
echo "with track = none; everything else default (synchronous_commit on, for the worker and the ceilings"
echo "alike). PostgreSQL, the worker, the broker and the load generators share the $(nproc) cores."
echo "Load average when the benchmark started: $load_start."

#
# Publishing N messages before anyone subscribes
#
wait_until "the relay to start" \
	"SELECT pid IS NOT NULL AND state IN ('idle', 'publishing') FROM inbox_outbox.relay_worker()"
log "publishing $n messages to topic ingest through the relay"
t0=$(date +%s.%N)
q -c "SELECT count(outbox_publish('ingest', (g % 10000)::text, convert_to(lpad(g::text, 200, 'x'), 'UTF8')))
      FROM generate_series(1, $n) g" >/dev/null
t1=$(date +%s.%N)
wait_until "the relay to empty the outbox" "SELECT NOT EXISTS (SELECT 1 FROM inbox_outbox.outbox)" 300
t2=$(date +%s.%N)
in_topic=$(topic_messages ingest)
((in_topic == n)) || { log "topic ingest holds $in_topic messages, not $n"; exit 1; }
q -c 'VACUUM inbox_outbox.outbox' >/dev/null

#
# 1. and 2.: ingestion runs and ceilings, alternating
#

# Every run starts from the same state: no effects, an empty inbox,
# vacuumed, and a fresh checkpoint.
before_run() {
	q -c 'TRUNCATE ingested, inbox_outbox.inbox' \
		-c 'VACUUM ingested, inbox_outbox.inbox, inbox_outbox.subscription_offset' -c 'CHECKPOINT' >/dev/null
}

check_ingested() {
	local what=$1 got
	got=$(q -F ' ' -c 'SELECT count(*), count(DISTINCT (partition, "offset")) FROM ingested')
	[[ $got == "$n $n" ]] || { log "$what: ingested holds $got (rows, distinct messages), not $n"; exit 1; }
}

# inbox_outbox.kafka_config for the workers started from now on (the relay
# reads it too), checked in a new session.
set_kafka_config() {
	if [[ -n $1 ]]; then
		q -c "ALTER SYSTEM SET inbox_outbox.kafka_config = '$1'" -c 'SELECT pg_reload_conf()' >/dev/null
	else
		q -c 'ALTER SYSTEM RESET inbox_outbox.kafka_config' -c 'SELECT pg_reload_conf()' >/dev/null
	fi
	wait_until "inbox_outbox.kafka_config to be '$1'" "SELECT current_setting('inbox_outbox.kafka_config') = '$1'" 30
}

# One subscription reads the topic from its start, its worker with
# inbox_outbox.kafka_config $2.  Prints: messages/s from the commit of
# subscribe() to the last batch's commit, messages/s from the first batch's
# commit to the last's, seconds to the first commit, batches, the worker's
# CPU s, the broker's CPU s, wall s.
ingest_run() {
	local name=$1 config=$2 t0 t wpid k0 k1 wticks first last nb first_rows
	before_run
	set_kafka_config "$config"
	k0=$(cpu_ticks "$kafka_pid")
	t0=$(as_owner -c "SELECT subscribe('$name', ARRAY['ingest'], '$handler')" \
		-c 'SELECT extract(epoch FROM clock_timestamp())' | tail -n 1)
	t=$(poll_until "SELECT extract(epoch FROM clock_timestamp()), coalesce(sum(consumed), 0), max(pid)
	                FROM inbox_outbox.ingest_workers() WHERE subscription = '$name'" "\$2 >= $n" 600) ||
		{ log "subscription $name did not consume $n messages within 600 s"; q -c 'SELECT * FROM inbox_outbox.ingest_status' >&2; exit 1; }
	wpid=$(cut -d '|' -f 3 <<<"$t")
	wticks=$(cpu_ticks "$wpid")
	k1=$(cpu_ticks "$kafka_pid")
	check_ingested "$name"
	read -r first last nb first_rows < <(q -F ' ' -c "
		WITH b AS (SELECT pg_xact_commit_timestamp(xmin) AS at, count(*) AS n FROM ingested GROUP BY xmin)
		SELECT extract(epoch FROM min(at)), extract(epoch FROM max(at)), count(*),
		       (SELECT n FROM b ORDER BY at LIMIT 1) FROM b")
	# the longest wait between two commits, and the time in waits over 100 ms
	read -r gap_max gap_sum < <(q -F ' ' -c "
		WITH b AS (SELECT pg_xact_commit_timestamp(xmin) AS at FROM ingested GROUP BY xmin),
		     g AS (SELECT extract(epoch FROM at - lag(at) OVER (ORDER BY at)) AS gap FROM b)
		SELECT round(max(gap), 3), round(coalesce(sum(gap) FILTER (WHERE gap > 0.1), 0), 2) FROM g")
	as_owner -c "SELECT unsubscribe('$name')" >/dev/null
	wait_until "the worker of $name to stop" "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $wpid)"
	[[ -z $config ]] || set_kafka_config ""
	awk -v n="$n" -v t0="$t0" -v a="$first" -v z="$last" -v nb="$nb" -v fr="$first_rows" \
		-v wt="$wticks" -v kt="$((k1 - k0))" -v hz="$hz" -v gm="$gap_max" -v gs="$gap_sum" 'BEGIN {
		printf "%.0f %.0f %.2f %d %.2f %.1f %.2f %.3f %.2f\n", n / (z - t0), (n - fr) / (z - a), a - t0, nb,
			wt / hz, kt / hz, z - t0, gm, gs }'
}

# The same handler from one SQL session, as the subscription's owner, with
# the worker's synchronous_commit.  Prints messages/s.
ceiling() {
	local v=$1 sql out ms args='m.topic, m.partition, m."offset", m.key, m.payload, m.headers, m.ts'
	before_run
	case $v in
	handler) sql="SELECT count(ingest_row($args)) FROM messages m" ;;
	claim) sql="SELECT count(CASE WHEN inbox_try_claim(m.headers ->> 'event_id', 'ceiling')
	                          THEN ingest_row($args) END) FROM messages m" ;;
	batches) sql="CALL ceiling_batches('ceiling', 500)" ;;
	esac
	out=$(q -c 'SET ROLE bench_ingester' -c '\timing on' -c "$sql")
	ms=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -n 1)
	check_ingested "ceiling $v"
	awk -v n="$n" -v ms="$ms" 'BEGIN { printf "%.0f\n", n / ms * 1000 }'
}

declare -A runs
tuned_config='queued.min.messages=10000'
run_worker() {
	local r
	log "ingestion run $1 of $reps: $n messages"
	r=$(ingest_run "ingest_r$1" "")
	runs[worker]+="$(cut -d ' ' -f 1 <<<"$r") "
	runs[steady]+="$(cut -d ' ' -f 2 <<<"$r") "
	worker_rows+=("$r")
	if [[ -z $messages_loaded ]]; then
		# the ceilings' input: these very messages, in the order of their commits
		q -c 'INSERT INTO messages SELECT i.*, row_number() OVER (ORDER BY ctid) FROM ingested i' \
			-c 'CREATE INDEX ON messages (seq)' -c 'VACUUM ANALYZE messages' >/dev/null
		messages_loaded=yes
	fi
	log "ingestion run $1 of $reps with inbox_outbox.kafka_config = '$tuned_config'"
	r=$(ingest_run "ingest_t$1" "$tuned_config")
	runs[tuned]+="$(cut -d ' ' -f 1 <<<"$r") "
	runs[tuned_steady]+="$(cut -d ' ' -f 2 <<<"$r") "
	tuned_rows+=("$r")
}
run_ceilings() {
	local v
	for v in handler claim batches; do
		log "ceiling $v, run $1 of $reps"
		runs[$v]+="$(ceiling "$v") "
	done
}

messages_loaded=
worker_rows=()
tuned_rows=()
cpu_mark "$postmaster_pid" "$kafka_pid"
for ((i = 1; i <= reps; i++)); do
	if ((i % 2)); then
		run_worker "$i"
		run_ceilings "$i"
	else
		run_ceilings "$i"
		run_worker "$i"
	fi
done
other1=$(other_cpu)
load1=$(cut -d ' ' -f 1-3 /proc/loadavg)
med() { tr ' ' '\n' <<<"${runs[$1]}" | grep . | median; }
w_med=$(med worker)
s_med=$(med steady)
t_med=$(med tuned)
ts_med=$(med tuned_steady)
h_med=$(med handler)
c_med=$(med claim)
bt_med=$(med batches)

# Where the worker's time goes: one more run with pg_stat_statements
# tracking every statement, nested ones too.
log "diagnostic run with pg_stat_statements.track = all"
q -c "ALTER SYSTEM SET pg_stat_statements.track = 'all'" -c 'SELECT pg_reload_conf()' >/dev/null
sleep 0.5
q -c 'SELECT pg_stat_statements_reset()' >/dev/null
diag=$(ingest_run ingest_diag "")
stmts=$(q -F ' | ' -c "
	SELECT regexp_replace(left(query, 70), '\s+', ' ', 'g') || CASE WHEN length(query) > 70 THEN '…' ELSE '' END,
	       calls, rows, round(total_exec_time::numeric), round((1000 * total_exec_time / calls)::numeric, 1)
	FROM pg_stat_statements
	WHERE query ~ 'inbox_outbox\.(inbox|subscription_offset)|public\.ingested'
	  AND query !~ '^(TRUNCATE|VACUUM|SELECT count)'
	ORDER BY total_exec_time DESC LIMIT 6" | sed 's/^/| /; s/$/ |/')
q -c 'ALTER SYSTEM RESET pg_stat_statements.track' -c 'SELECT pg_reload_conf()' >/dev/null

echo
echo "## 1. Ingestion rate and 2. the handler's ceiling"
echo
awk -v n="$n" -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
	printf "%d messages (200-byte text payloads, 10,000 keys, the event_id header outbox_publish() sets)\n", n
	printf "were published to topic ingest (3 partitions) before anyone subscribed, by the relay of the same\n"
	printf "server: one statement of outbox_publish() calls (%.1f s), then the relay drained them (%.1f s,\n", b - a, c - b
	printf "%.0f messages/s); kcat -Q counted them in the topic.\n", n / (c - b) }'
echo
echo "Worker: a subscription of role bench_ingester (NOLOGIN, grant_subscriber()) reading the topic"
echo "from its start, batch_size 500, handler ingest_row(): PL/pgSQL, one INSERT of its seven arguments"
echo "into a table without indexes (bench/ingest/setup.sql). Timed from the commit of subscribe() (which"
echo "starts the worker) to the commit time (track_commit_timestamp) of the last batch; \"steady\" is from"
echo "the first batch's commit to the last's. Each run is a new subscription; before each run of either"
echo "side the table and the inbox are truncated, vacuumed, and a checkpoint taken. Every run is also"
echo "made a second time with inbox_outbox.kafka_config = '$tuned_config' (the worker's"
echo "default is 1,000,000, kafka_consumer.c; 10,000 was the first cut's): see \"waits\" below."
echo
echo "Ceilings: one psql session as bench_ingester, synchronous_commit on as the worker's, over the same $n messages"
echo "copied from the first run's table (its rows are the handler's arguments as the worker passed them):"
echo "(a) \`SELECT count(ingest_row(…)) FROM messages\`, the handler alone, one transaction;"
echo "(b) \`SELECT count(CASE WHEN inbox_try_claim(headers ->> 'event_id', …) THEN ingest_row(…) END)\`,"
echo "the claim then the handler, one transaction; (c) the same as (b) in transactions of 500 messages"
echo "(a procedure that commits after each), which is what the worker does, without Kafka."
echo
echo "Waits: the longest time between two consecutive batch commits, and the sum of those over 100 ms."
echo "Worker CPU: the worker process, all threads (librdkafka's too), from its start to the last commit."
echo
echo "| kafka_config | run | messages/s, subscribe → last commit | messages/s, first → last commit | s to the first commit | batches | messages per batch | longest wait s | waits > 0.1 s, sum s | worker CPU s | worker CPU µs per message | broker CPU s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
run_rows() {
	local label=$1 i r1 r2 st nb wc kc wall gm gs
	shift
	i=0
	for row; do
		i=$((i + 1))
		read -r r1 r2 st nb wc kc wall gm gs <<<"$row"
		awk -v l="$label" -v i="$i" -v r1="$r1" -v r2="$r2" -v st="$st" -v nb="$nb" -v wc="$wc" -v kc="$kc" \
			-v wall="$wall" -v gm="$gm" -v gs="$gs" -v n="$n" 'BEGIN {
			printf "| %s | %d | %d | %d | %.2f | %d | %.0f | %.3f | %.2f | %.2f (%.0f%% of a core) | %.1f | %.1f |\n",
				l, i, r1, r2, st, nb, n / nb, gm, gs, wc, 100 * wc / wall, 1e6 * wc / n, kc }'
	done
}
run_rows "default" "${worker_rows[@]}"
run_rows "$tuned_config" "${tuned_rows[@]}"
worker_us=$(printf '%s\n' "${worker_rows[@]}" | awk -v n="$n" '{ print 1e6 * $5 / n }' | median)
tuned_us=$(printf '%s\n' "${tuned_rows[@]}" | awk -v n="$n" '{ print 1e6 * $5 / n }' | median)
echo
echo "| measure | messages/s (median) | runs | CPU µs per message | default worker / it | tuned worker / it |"
echo "|---|---|---|---|---|---|"
awk -v w="$w_med" -v s="$s_med" -v t="$t_med" -v ts="$ts_med" -v h="$h_med" -v c="$c_med" -v bt="$bt_med" \
	-v wu="$worker_us" -v tu="$tuned_us" -v tc="$tuned_config" \
	-v rw="${runs[worker]% }" -v rs="${runs[steady]% }" -v rt="${runs[tuned]% }" -v rts="${runs[tuned_steady]% }" \
	-v rh="${runs[handler]% }" -v rc="${runs[claim]% }" -v rb="${runs[batches]% }" 'BEGIN {
	printf "| **worker**, subscribe → last commit | **%d** | %s | %.1f | | |\n", w, rw, wu
	printf "| worker, first → last commit | %d | %s | | | |\n", s, rs
	printf "| worker with %s, subscribe → last commit | %d | %s | %.1f | | |\n", tc, t, rt, tu
	printf "| worker with %s, first → last commit | %d | %s | | | |\n", tc, ts, rts
	printf "| ceiling (a): handler alone, one transaction | %d | %s | %.1f | %.2f | %.2f |\n", h, rh, 1e6 / h, w / h, t / h
	printf "| ceiling (b): claim + handler, one transaction | %d | %s | %.1f | %.2f | %.2f |\n", c, rc, 1e6 / c, w / c, t / c
	printf "| ceiling (c): claim + handler, transactions of 500 (**fair baseline**) | %d | %s | %.1f | **%.2f** | %.2f |\n", bt, rb, 1e6 / bt, w / bt, t / bt }'
echo
echo "(c) is the fair baseline: the same statements per message and the same transactions as the"
echo "worker, so the ratio is what Kafka, building the handler's arguments and calling it through fmgr"
echo "as the owner cost. (b) differs from it only by the commits; (a) leaves out the inbox claim, which"
echo "the exactly-once guarantee needs: the gap between (a) and (b) is the inbox's own cost. A ceiling's"
echo "CPU per message is its session's wall time per message (one process, nothing to wait for)."
other_note "$other1"
echo "Load average at the end of this part: $load1."

read -r d1 d2 dst dnb dwc dkc dwall dgm dgs <<<"$diag"
echo
echo "Where the worker's time goes: one more run ($d1 messages/s with every statement tracked;"
awk -v wc="$dwc" -v wall="$dwall" 'BEGIN { printf "worker CPU %.1f s over %.1f s). pg_stat_statements, track = all:\n", wc, wall }'
echo
echo "| statement | calls | rows | total ms | µs per call |"
echo "|---|---|---|---|---|"
printf '%s\n' "$stmts"
echo
echo "The handler itself is called through fmgr, not as a statement; its INSERT is the nested"
echo "statement above. What the statements do not cover is the worker's own work: Kafka, building each"
echo "message's arguments (headers as jsonb), the call as the owner, commits."

#
# 3. Latency at 1,000 messages/s
#
log "latency: subscribing to topic latency"
as_owner -c "SELECT subscribe('latency', ARRAY['latency'], 'record_latency(text, int, bigint, bytea, bytea, jsonb, timestamptz)')" >/dev/null
wait_until "the latency worker to be idle" \
	"SELECT count(*) = 3 AND bool_and(state = 'idle') FROM inbox_outbox.ingest_status WHERE subscription = 'latency'" 60
/usr/bin/python3 "$work/bench/outbox/consume.py" "$kafka" latency "$work/latency_kcat.txt" \
	fetch.wait.max.ms=100 isolation.level=read_committed &
consumer_pid=$!
lat_wpid=$(q -c "SELECT pid FROM inbox_outbox.ingest_workers() WHERE subscription = 'latency'")

wait_rows() {
	local tag=$1 want=$2
	wait_until "$want rows of $tag in table latency" "SELECT count(*) >= $want FROM latency WHERE tag = '$tag'" 60
	local deadline=$((SECONDS + 30))
	while (($(awk -v t="$tag" '$2 == t { c++ } END { print c + 0 }' "$work/latency_kcat.txt") < want)); do
		((SECONDS < deadline)) || { log "the kcat consumer did not receive $want messages of $tag"; exit 1; }
		sleep 0.2
	done
}

# One table row: source, rate, then receipt by kcat, the handler's clock
# and the batch's commit, in ms after the send, then batches.
latency_row() {
	local who=$1 d=$2 tag=$3 cnt=$4 wt=$5 kt=$6 rq=$7 k db own
	k=$(/usr/bin/python3 "$work/bench/outbox/latency.py" "$work/latency_kcat.txt" "$tag")
	awk -v t="$tag" '$2 == t { print t "\t" $3 "\t" $1 }' "$work/latency_kcat.txt" |
		q -c 'COPY kcat_seen FROM STDIN'
	# the worker's own share: each message's commit after its receipt by kcat
	own=$(q -F ' ' -c "
		SELECT round(percentile_disc(0.5) WITHIN GROUP (ORDER BY d), 2), round(percentile_disc(0.99) WITHIN GROUP (ORDER BY d), 2)
		FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(l.xmin)) * 1000 - k.received_us / 1000.0 AS d
		      FROM latency l JOIN kcat_seen k USING (tag, sent_us) WHERE l.tag = '$tag') s")
	db=$(q -F ' ' -c "
		SELECT count(*), count(DISTINCT xmin::text),
		       round(percentile_disc(0.5) WITHIN GROUP (ORDER BY h), 2), round(percentile_disc(0.99) WITHIN GROUP (ORDER BY h), 2),
		       round(percentile_disc(0.5) WITHIN GROUP (ORDER BY c), 2), round(percentile_disc(0.9) WITHIN GROUP (ORDER BY c), 2),
		       round(percentile_disc(0.99) WITHIN GROUP (ORDER BY c), 2), round(max(c), 2)
		FROM (SELECT xmin, extract(epoch FROM handled_at) * 1000 - sent_us / 1000.0 AS h,
		             extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000 - sent_us / 1000.0 AS c
		      FROM latency WHERE tag = '$tag') s")
	awk -v who="$who" -v d="$d" -v n="$cnt" -v k="$k" -v db="$db" -v own="$own" -v wt="$wt" -v kt="$kt" -v rq="$rq" -v hz="$hz" 'BEGIN {
		split(k, a, " "); split(db, x, " "); split(own, o, " ")
		if (x[1] != n) printf "warning: %d rows for %d messages\n", x[1], n > "/dev/stderr"
		printf "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %.0f%% | %.0f | %.0f%% |\n", who, n / d,
			a[2], a[4], a[6], x[3], x[4], x[5], x[6], x[7], x[8], o[1], o[2], n / x[2], 100 * wt / hz / d, rq / 1e6, 100 * kt / hz / d }'
}

cpu_mark "$postmaster_pid" "$kafka_pid"
log "latency: warming up"
cnt=$(/usr/bin/python3 "$b/produce.py" "$kafka" latency warm 500 2)
wait_rows warm "$cnt"
rows3=()
log "latency: $lat_secs s at 1000 messages/s from a Kafka producer"
w0=$(cpu_ticks "$lat_wpid") k0=$(cpu_ticks "$kafka_pid") s0=$(run_wait_ns "$lat_wpid")
cnt=$(/usr/bin/python3 "$b/produce.py" "$kafka" latency p1000 1000 "$lat_secs")
w1=$(cpu_ticks "$lat_wpid") k1=$(cpu_ticks "$kafka_pid") s1=$(run_wait_ns "$lat_wpid")
wait_rows p1000 "$cnt"
rows3+=("$(latency_row "Kafka producer (confluent_kafka, linger.ms=0)" "$lat_secs" p1000 "$cnt" "$((w1 - w0))" "$((k1 - k0))" "$((s1 - s0))")")
rt_secs=$(((lat_secs + 1) / 2))
log "latency: $rt_secs s at 1000 messages/s from outbox_publish() through the relay"
w0=$(cpu_ticks "$lat_wpid") k0=$(cpu_ticks "$kafka_pid") s0=$(run_wait_ns "$lat_wpid")
out=$(pgbench -n -M prepared -c 4 -j 2 -T "$rt_secs" --rate 1000 -D tag=r1000 -f "$work/bench/outbox/latency.pgb" 2>&1) ||
	{ echo "$out" >&2; exit 1; }
w1=$(cpu_ticks "$lat_wpid") k1=$(cpu_ticks "$kafka_pid") s1=$(run_wait_ns "$lat_wpid")
cnt=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
wait_rows r1000 "$cnt"
rows3+=("$(latency_row "outbox_publish() → relay → Kafka (pgbench --rate, 4 clients)" "$rt_secs" r1000 "$cnt" "$((w1 - w0))" "$((k1 - k0))" "$((s1 - s0))")")
kill "$consumer_pid" 2>/dev/null || true
wait "$consumer_pid" 2>/dev/null || true
consumer_pid=
other3=$(other_cpu)
load3=$(cut -d ' ' -f 1-3 /proc/loadavg)

echo
echo "## 3. Latency at 1,000 messages/s"
echo
echo "A subscription to topic latency (3 partitions) whose handler record_latency() inserts the send"
echo "time carried in the payload and its own clock_timestamp() into a table. Sources: a Python"
echo "confluent_kafka producer (bench/ingest/produce.py: evenly spaced, random keys, an event_id header,"
echo "idempotent, acks=all, linger.ms=0; ~200-byte payload \"TAG SEND_US …\", SEND_US taken just before"
echo "produce()), $lat_secs s; and pgbench --rate 1000 (Poisson arrivals) calling outbox_publish() with the"
echo "statement's clock_timestamp() in the payload (bench/outbox/latency.pgb), $rt_secs s, whose events the"
echo "relay of the same server sends. All clocks are the same machine's."
echo
echo "- **commit**: send → the commit of the worker's batch that applied the message"
echo "  (pg_xact_commit_timestamp() of the row, which is taken while committing: the message's effect,"
echo "  claim and offset are then durable and visible). It"
echo "  includes the producer's send to the broker and its acknowledgement path, the broker, the worker's"
echo "  fetch (long poll), its wake-up, and its transaction. For the relay source it also includes the"
echo "  publishing transaction's commit and the relay's read and send."
echo "- **handler**: send → clock_timestamp() inside the handler (before the batch's commit)."
echo "- **kcat receipt (baseline)**: send → receipt of the same message by a plain consumer reading the"
echo "  topic at the same time (kcat via bench/outbox/consume.py, with the worker's fetch settings:"
echo "  fetch.wait.max.ms=100, isolation.level=read_committed; the broker answers a fetch as soon as a"
echo "  message arrives): Kafka alone."
echo
echo "- **commit − kcat receipt**: for each message, its commit after its receipt by kcat: the worker's"
echo "  own share (its fetch, wake-up and transaction, less kcat's), beside whatever Kafka and the"
echo "  machine did to both."
echo "- **worker waited for a CPU**: the time the worker's main thread was runnable but not running"
echo "  (/proc/PID/schedstat) during the part: what the machine's other work cost it."
echo
echo "| source | messages/s | kcat receipt p50 ms | p99 | max | handler p50 ms | p99 | commit p50 ms | p90 | **p99** | max | commit − kcat receipt p50 ms | p99 | messages per batch | worker CPU | worker waited for a CPU, ms | broker CPU |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows3[@]}"
other_note "$other3"
echo "Load average at the end of this part: $load3."

#
# 4. Idle worker
#
log "idle: nothing produced for $idle_secs s"
sleep 2
wait_until "the latency worker to be idle" \
	"SELECT bool_and(state = 'idle') FROM inbox_outbox.ingest_status WHERE subscription = 'latency'" 30
relay_pid=$(q -c 'SELECT pid FROM inbox_outbox.relay_worker()')
cpu_mark "$postmaster_pid" "$kafka_pid"
/usr/bin/python3 "$b/procstat.py" "$lat_wpid" >"$work/idle_worker"
/usr/bin/python3 "$b/procstat.py" "$relay_pid" >"$work/idle_relay"
k0=$(cpu_ticks "$kafka_pid")
i0=$(date +%s.%N)
sleep "$idle_secs"
read -r iw_ticks iw_sw iw_threads < <(/usr/bin/python3 "$b/procstat.py" "$lat_wpid" "$work/idle_worker")
read -r ir_ticks ir_sw ir_threads < <(/usr/bin/python3 "$b/procstat.py" "$relay_pid" "$work/idle_relay")
i1=$(date +%s.%N)
k1=$(cpu_ticks "$kafka_pid")
other4=$(other_cpu)
state4=$(q -c "SELECT string_agg(DISTINCT state, ', ') FROM inbox_outbox.ingest_status WHERE subscription = 'latency'")

echo
echo "## 4. Idle worker"
echo
echo "The latency subscription's worker with nothing produced, $idle_secs s, its state: $state4. CPU of the"
echo "whole process (/proc/PID/stat utime + stime, all threads, librdkafka's included; 1 tick ="
echo "$((1000 / hz)) ms) and its threads' context switches, each a wake-up or a preemption. Baseline: the"
echo "relay of the same database (a librdkafka producer), idle over the same seconds."
echo
echo "| process | CPU, % of a core | context switches/s | by thread: ticks/switches |"
echo "|---|---|---|---|"
awk -v a="$i0" -v z="$i1" -v hz="$hz" -v wt="$iw_ticks" -v ws="$iw_sw" -v wth="$iw_threads" \
	-v rt="$ir_ticks" -v rs="$ir_sw" -v rth="$ir_threads" -v kt="$((k1 - k0))" 'BEGIN {
	s = z - a
	printf "| **ingestion worker** | **%.2f** | %.1f | %s |\n", 100 * wt / hz / s, ws / s, wth
	printf "| relay (baseline) | %.2f | %.1f | %s |\n", 100 * rt / hz / s, rs / s, rth
	printf "| broker | %.2f | | |\n", 100 * kt / hz / s }'
other_note "$other4"

#
# Targets
#
field() { awk -F'|' -v i="$2" '{ gsub(/ /, "", $i); gsub(/\*/, "", $i); print $i }' <<<"$1"; }
p1=${rows3[0]}
echo
echo "## Targets"
echo
echo "| target | measured | met |"
echo "|---|---|---|"
awk -v w="$w_med" -v s="$s_med" -v t="$t_med" -v bt="$bt_med" -v c="$c_med" -v h="$h_med" -v tc="$tuned_config" 'BEGIN {
	printf "| ingestion ≥ 50,000 messages/s per worker | %d (subscribe → last commit), %d (first → last commit); with %s: %d | %s |\n",
		w, s, tc, t, (w >= 50000 ? "yes" : "no")
	printf "| ingestion ≥ 0.6 × the handler'"'"'s ceiling | %.2f × (c) claim + handler in transactions of 500; %.2f × (b); %.2f × (a) handler alone; with %s: %.2f × (c) | %s |\n",
		w / bt, w / c, w / h, tc, t / bt, (w / bt >= 0.6 ? "yes" : "no") }'
awk -v p50="$(field "$p1" 9)" -v p99="$(field "$p1" 11)" -v k50="$(field "$p1" 4)" -v k99="$(field "$p1" 5)" \
	-v o50="$(field "$p1" 13)" -v o99="$(field "$p1" 14)" 'BEGIN {
	printf "| p50 ≤ 5 ms, p99 ≤ 50 ms at 1,000 messages/s, send → commit | p50 %s ms, p99 %s ms (Kafka alone, send → kcat receipt: %s, %s; the worker'"'"'s share, commit − receipt: %s, %s) | %s |\n",
		p50, p99, k50, k99, o50, o99, (p50 <= 5 && p99 <= 50 ? "yes" : "no") }'
awk -v a="$i0" -v z="$i1" -v hz="$hz" -v wt="$iw_ticks" 'BEGIN {
	p = 100 * wt / hz / (z - a)
	printf "| idle worker ≤ 1%% of a core | %.2f%% | %s |\n", p, (p <= 1 ? "yes" : "no") }'
echo
echo "Load average at the end: $(cut -d ' ' -f 1-3 /proc/loadavg)."
BENCH

warn_if_libs_changed "$libs_before"
echo
echo "Whole run: $((SECONDS - started)) s."
