#!/usr/bin/env bash
# The part of bench/peers.sh that runs as the test user, in the work
# directory WORK that bench/peers.sh prepared: servers, runs, report.
#
# Only the relay being measured runs.  inbox_outbox's relay is stopped by
# naming no database in inbox_outbox.databases (the launcher then runs
# none); Debezium Server and the polling relay are started for a run and
# stopped after it.  Debezium's replication slot is created at the end of
# WAL before each of its runs and dropped after it, so that it never
# decodes the others' WAL, nor holds WAL back between its runs.
#
# Every run appends one line to WORK/results.tsv: the kind of run, the
# relay, the round, the size or rate, then key=value pairs; report.py
# turns the file into tables and plots.
# Usage: run.sh WORK
set -euo pipefail
work=$1
. "$work/scripts/lib.sh"
. "$work/bench/lib.sh"
here=$work/bench/peers
py=$PEERS_PYTHON
events=${PEERS_EVENTS:-1000000}
sizes=${PEERS_SIZES:-200 4096}
rounds=${PEERS_ROUNDS:-2}
lat_secs=${PEERS_LATENCY_SECONDS:-60}
rates=${PEERS_RATES:-2000 4000 6000 8000 12000 16000}
step_secs=${PEERS_STEP_SECONDS:-20}
warm_secs=${PEERS_WARMUP_SECONDS:-5}
load_tx=${PEERS_LOAD_TX:-100}
poll_batch=${PEERS_POLL_BATCH:-1000}
poll_ms=${PEERS_POLL_INTERVAL_MS:-100}
dbz_max_batch=${PEERS_DBZ_MAX_BATCH:-8192}
dbz_max_queue=${PEERS_DBZ_MAX_QUEUE:-32768}
dbz_poll_ms=${PEERS_DBZ_POLL_MS:-10}
dbz_linger_ms=${PEERS_DBZ_LINGER_MS:-5}
dbz_producer_batch=${PEERS_DBZ_PRODUCER_BATCH:-262144}
dbz_java_opts=${PEERS_DBZ_JAVA_OPTS:-}
# What Debezium's own launcher would add: Quarkus resets thread-locals
# through java.lang internals, which Java 24 and later keep closed.
dbz_java_required="--add-opens java.base/java.lang=ALL-UNNAMED"
# A rate is sustained when the publishers reach this share of it and the
# consumer has every event at most this long after they stop.
sustain_share=0.97
sustain_clear_s=1.0

results=$work/results.tsv
kdir=$work/kafka
hz=$(getconf CLK_TCK)
relay_child=   # the Debezium JVM's or the polling relay's pid while it runs
relay_pid=     # the measured relay's process, any of the three
sampler_pid=
consumer_pid=
mem=           # peak memory of the last sampled process, set by sampler_stop

cleanup() {
	set +e
	[[ -n $sampler_pid ]] && kill "$sampler_pid" 2>/dev/null
	[[ -n $consumer_pid ]] && kill "$consumer_pid" 2>/dev/null
	stop_child
	if [[ -n ${PG_THROWAWAY_DATA:-} ]] && pg_ctl -D "$PG_THROWAWAY_DATA" -m fast stop >/dev/null 2>&1; then
		rm -rf "$PG_THROWAWAY_DATA"
	fi
	if "$work/test/kafka/kafka.sh" stop "$kdir"; then
		rm -rf "$kdir/data"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

dbz_home=$("$here/debezium.sh" fetch)
log "Debezium Server in $dbz_home"
dbz_java=$(PEERS_PYTHON=$py "$here/debezium.sh" java)
log "Debezium's Java: $dbz_java"

export KAFKA_OWNER_PID=$$ KAFKA_JVM_OPTS='-Xms1g -Xmx1g -XX:+ExitOnOutOfMemoryError'
mkdir -p "$kdir"
kafka=$("$work/test/kafka/kafka.sh" start "$kdir")
kafka_pid=$(<"$kdir/kafka.pid")
log "Kafka on $kafka (log: $kdir/server.log)"

pg_throwaway_start "$work" "shared_buffers = '1GB'" "max_wal_size = '4GB'" \
	"checkpoint_timeout = '30min'" "wal_level = logical" \
	"max_replication_slots = 4" "max_wal_senders = 4" \
	"inbox_outbox.brokers = '$kafka'"
trap cleanup EXIT
postmaster_pid=$(head -n 1 "$PG_THROWAWAY_DATA/postmaster.pid")
log "creating the tables and $(commas "$events") events of each size"
q -v events="$events" -f "$here/setup.sql" >/dev/null
: >"$results"

ticks() { "$py" "$here/procwatch.py" ticks "$@"; }
seconds() { awk -v t="$1" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }'; }
lsn() { q -c 'SELECT pg_current_wal_lsn()'; }
wal_between() { q -c "SELECT pg_wal_lsn_diff('$2', '$1')"; }
probe() { "$py" "$here/kafka_probe.py" "$1" "$kafka" "${@:2}"; }
record() {
	local IFS=$'\t'
	echo "$*" >>"$results"
}

wait_until() {
	local what=$1 sql=$2 limit=${3:-120} deadline
	deadline=$((SECONDS + limit))
	until [[ $(q -c "$sql") == t ]]; do
		((SECONDS < deadline)) || { log "gave up after $limit s waiting for $what"; exit 1; }
		sleep 0.1
	done
}

#
# Starting and stopping each relay.  relay_start sets relay_pid once the
# relay's process runs.
#
io_pause() {
	q -c "ALTER SYSTEM SET inbox_outbox.databases = 'no_database_has_this_name'" \
		-c 'SELECT pg_reload_conf()' >/dev/null
	wait_until "inbox_outbox's relay to stop" \
		"SELECT pid IS NULL AND published = 0 FROM inbox_outbox.relay_worker()"
}

dbz_slot() {
	q -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'peers_debezium'" >/dev/null
	if [[ $1 == create ]]; then
		q -c "SELECT pg_create_logical_replication_slot('peers_debezium', 'pgoutput')" >/dev/null
	fi
}

dbz_start() {
	local run=$work/debezium
	rm -rf "$run"
	mkdir -p "$run/config"
	sed -e "s|@HTTP_PORT@|$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')|" \
		-e "s|@PGPORT@|$PGPORT|; s|@PGUSER@|$PGUSER|; s|@PGDATABASE@|$PGDATABASE|; s|@RUN_DIR@|$run|" \
		-e "s|@BROKERS@|$kafka|; s|@MAX_BATCH@|$dbz_max_batch|; s|@MAX_QUEUE@|$dbz_max_queue|" \
		-e "s|@POLL_MS@|$dbz_poll_ms|; s|@LINGER_MS@|$dbz_linger_ms|; s|@PRODUCER_BATCH@|$dbz_producer_batch|" \
		"$here/debezium.properties" >"$run/config/application.properties"
	# Started by env in its directory, so that $! is the JVM itself.
	# shellcheck disable=SC2086 # the options are words
	env -C "$run" "$dbz_java" $dbz_java_required $dbz_java_opts \
		-cp "$(ls "$dbz_home"/debezium-server-*runner.jar):$dbz_home/config/lib:$dbz_home/lib/*" \
		io.debezium.server.Main </dev/null >>"$work/debezium.log" 2>&1 &
	relay_child=$!
}

poll_start() {
	"$py" "$here/poll_relay.py" "host=$PGHOST port=$PGPORT user=$PGUSER dbname=$PGDATABASE" \
		"$kafka" "$poll_batch" "$poll_ms" >>"$work/poll_relay.log" 2>&1 &
	relay_child=$!
}

stop_child() {
	local pid=$relay_child i
	[[ -n $pid ]] || return 0
	relay_child=
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

relay_start() {
	local deadline=$((SECONDS + 60))
	case $1 in
	io)
		q -c 'ALTER SYSTEM RESET inbox_outbox.databases' -c 'SELECT pg_reload_conf()' >/dev/null
		until relay_pid=$(q -c 'SELECT pid FROM inbox_outbox.relay_worker()') && [[ -n $relay_pid ]]; do
			((SECONDS < deadline)) || { log "inbox_outbox's relay did not start within 60 s"; exit 1; }
			sleep 0.02
		done
		;;
	dbz)
		dbz_start
		relay_pid=$relay_child
		;;
	poll)
		poll_start
		relay_pid=$relay_child
		;;
	esac
}

relay_stop() {
	case $1 in
	io) io_pause ;;
	dbz)
		stop_child
		dbz_slot drop
		;;
	poll) stop_child ;;
	esac
}

# CPU ticks of PostgreSQL's processes but inbox_outbox's relay, which is
# one of them and counted as the relay.
pg_ticks() {
	local all
	all=$(ticks "$postmaster_pid")
	if [[ $1 == io ]]; then
		echo $((all - $(ticks "$2")))
	else
		echo "$all"
	fi
}

sampler_start() {
	local i
	rm -f "$work/peak"
	"$py" "$here/procwatch.py" peak "$1" "$work/peak" &
	sampler_pid=$!
	for ((i = 0; i < 500; i++)); do
		[[ -e $work/peak ]] && return 0
		sleep 0.02
	done
	log "the memory sampler did not start within 10 s"
	exit 1
}
# Sets mem to "private_kb rss_kb".  Not in a subshell: only this shell
# can wait for the sampler to write its last reading.
sampler_stop() {
	kill -TERM "$sampler_pid"
	wait "$sampler_pid" || true
	sampler_pid=
	mem=$(<"$work/peak")
}

# The topic a relay's events for topic $2 land in: Debezium's router adds
# a prefix of its own.
kafka_topic() {
	if [[ $1 == dbz ]]; then echo "outbox.event.$2"; else echo "$2"; fi
}

#
# 1. Drain
#
drain() {
	local sys=$1 round=$2 size=$3 topic kt t0 pid lsn0 lsn1 lsn2 lsn3 pg0 k0 r p k first last n others
	topic=drain_${round}_${size}_$sys
	kt=$(kafka_topic "$sys" "$topic")
	probe create 3 "$kt"
	[[ $sys == dbz ]] && dbz_slot create
	q -c 'CHECKPOINT'
	lsn0=$(lsn)
	log "drain $sys, $size-byte events, round $round: loading"
	q -c 'SET synchronous_commit = off' -c "CALL load_events('$sys', 'events_$size', '$topic', $load_tx)"
	lsn1=$(lsn)
	q -c 'VACUUM ANALYZE inbox_outbox.outbox, poll_outbox, dbz_outbox' -c 'CHECKPOINT'
	lsn2=$(lsn)
	pg0=$(pg_ticks x) k0=$(ticks "$kafka_pid")
	cpu_mark "$postmaster_pid" "$kafka_pid"
	log "drain $sys, $size-byte events, round $round: starting the relay"
	t0=$(date +%s.%N)
	relay_start "$sys"
	pid=$relay_pid
	sampler_start "$pid"
	probe wait "$kt" "$events" 1800 "$pid" >/dev/null ||
		{ log "the relay did not deliver $events events (logs in $work)"; exit 1; }
	case $sys in
	io) wait_until "the relay to empty the outbox" "SELECT NOT EXISTS (SELECT 1 FROM inbox_outbox.outbox)" ;;
	poll) wait_until "the relay to empty the outbox" "SELECT NOT EXISTS (SELECT 1 FROM poll_outbox)" ;;
	esac
	r=$(ticks "$pid") p=$(($(pg_ticks "$sys" "$pid") - pg0)) k=$(($(ticks "$kafka_pid") - k0))
	others=$(other_cpu)
	sampler_stop
	lsn3=$(lsn)
	relay_stop "$sys"
	read -r first last < <(probe span "$kt")
	n=$(probe count "$kt")
	((n >= events)) || { log "topic $kt holds $n messages, fewer than $events"; exit 1; }
	probe delete "$kt"
	record drain "$sys" "$round" "$size" "events=$events" "messages=$n" \
		"span_s=$(awk -v a="$first" -v b="$last" 'BEGIN { printf "%.3f", b - a }')" \
		"start_s=$(awk -v a="$t0" -v b="$last" 'BEGIN { printf "%.3f", b - a }')" \
		"relay_cpu_s=$(seconds "$r")" "pg_cpu_s=$(seconds "$p")" "broker_cpu_s=$(seconds "$k")" \
		"peak_private_kb=${mem% *}" "peak_rss_kb=${mem#* }" \
		"wal_load=$(wal_between "$lsn0" "$lsn1")" "wal_drain=$(wal_between "$lsn2" "$lsn3")" \
		"others_pct=$others"
	log "$(tail -n 1 "$results")"
}

#
# 2. Latency
#
# The publishing transaction of each relay, as pgbench runs it: one event,
# whose payload starts with the tag and the statement's time in
# microseconds (what bench/outbox/latency.py reads), about 200 bytes.
pgbench_script() {
	local sys=$1 topic=$2 payload
	payload=":tag::text || ' ' || (extract(epoch FROM clock_timestamp()) * 1000000)::int8 || ' ' || repeat('x', 180)"
	echo '\set k random(1, 100000)'
	case $sys in
	io) echo "SELECT outbox_publish('$topic', :k::text, $payload);" ;;
	dbz) echo "SELECT dbz_publish('$topic', :k::text, $payload);" ;;
	poll) echo "INSERT INTO poll_outbox (topic, key, payload) VALUES ('$topic', :k::text, convert_to($payload, 'UTF8'));" ;;
	esac
}

received() { wc -l <"$1"; }
# Whether process $1 runs (a zombie does not).
alive() {
	local state
	state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) && [[ $state != Z ]]
}

# Waits until FILE has N lines; prints the seconds since T.  Fails after
# LIMIT seconds, or as soon as the relay's process is gone.
wait_received() {
	local file=$1 n=$2 t=$3 limit=$4 deadline
	deadline=$((SECONDS + limit))
	while (($(received "$file") < n)); do
		((SECONDS < deadline)) && alive "$relay_pid" || return 1
		sleep 0.02
	done
	awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f\n", b - a }'
}

consumer_start() {
	: >"$2"
	/usr/bin/python3 "$work/bench/outbox/consume.py" "$kafka" "$1" "$2" &
	consumer_pid=$!
}
consumer_stop() {
	kill -TERM "$consumer_pid" 2>/dev/null || true
	wait "$consumer_pid" 2>/dev/null || true
	consumer_pid=
}

# One step: RATE events/s for SECS seconds.  Records a line and returns 1
# if the rate was not sustained.
latency_step() {
	local sys=$1 round=$2 pid=$3 rate=$4 secs=$5 topic kt file out n t_end cleared lsn0 lsn1 r0 p0 k0 r p k ok others
	local cnt p50 p90 p99 p999 max
	topic=lat_${round}_${sys}_$rate
	kt=$(kafka_topic "$sys" "$topic")
	file=$work/latency/$topic.txt
	probe create 3 "$kt"
	pgbench_script "$sys" "$topic" >"$work/latency/$topic.pgb"
	consumer_start "$kt" "$file"
	sampler_start "$pid"
	r0=$(ticks "$pid") p0=$(pg_ticks "$sys" "$pid") k0=$(ticks "$kafka_pid")
	cpu_mark "$postmaster_pid" "$kafka_pid"
	lsn0=$(lsn)
	out=$(pgbench -n -M prepared -c 4 -j 2 -T "$secs" --rate "$rate" -D tag=m -f "$work/latency/$topic.pgb" 2>&1) ||
		{ echo "$out" >&2; exit 1; }
	t_end=$(date +%s.%N)
	n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
	cleared=$(wait_received "$file" "$n" "$t_end" 120) || cleared=-
	r=$(($(ticks "$pid") - r0)) p=$(($(pg_ticks "$sys" "$pid") - p0)) k=$(($(ticks "$kafka_pid") - k0))
	others=$(other_cpu)
	lsn1=$(lsn)
	sampler_stop
	consumer_stop
	probe delete "$kt"
	read -r cnt p50 p90 p99 p999 max < <(/usr/bin/python3 "$work/bench/outbox/latency.py" "$file" m)
	ok=$(awk -v n="$n" -v rate="$rate" -v s="$secs" -v c="$cleared" -v share="$sustain_share" -v lim="$sustain_clear_s" \
		'BEGIN { print (n >= share * rate * s && c != "-" && c <= lim) ? "yes" : "no" }')
	record latency "$sys" "$round" "$rate" "seconds=$secs" "published=$n" "received=$cnt" \
		"p50=$p50" "p90=$p90" "p99=$p99" "p999=$p999" "max=$max" "cleared_s=$cleared" "sustained=$ok" \
		"relay_cpu_s=$(seconds "$r")" "pg_cpu_s=$(seconds "$p")" "broker_cpu_s=$(seconds "$k")" \
		"peak_private_kb=${mem% *}" "peak_rss_kb=${mem#* }" "wal=$(wal_between "$lsn0" "$lsn1")" \
		"others_pct=$others"
	log "$(tail -n 1 "$results")"
	[[ $ok == yes ]]
}

latency() {
	local sys=$1 round=$2 pid topic kt rate n
	log "latency $sys, round $round: starting the relay"
	q -c 'VACUUM inbox_outbox.outbox, poll_outbox, dbz_outbox' -c 'CHECKPOINT'
	[[ $sys == dbz ]] && dbz_slot create
	relay_start "$sys"
	pid=$relay_pid
	# Warm up, and wait for the first events to arrive: Debezium's JVM takes
	# seconds to start streaming.
	topic=lat_${round}_${sys}_warm
	kt=$(kafka_topic "$sys" "$topic")
	probe create 3 "$kt"
	pgbench_script "$sys" "$topic" >"$work/latency/$topic.pgb"
	consumer_start "$kt" "$work/latency/$topic.txt"
	pgbench -n -M prepared -c 4 -j 2 -T "$warm_secs" --rate 500 -D tag=w \
		-f "$work/latency/$topic.pgb" >"$work/latency/$topic.out" 2>&1
	n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/latency/$topic.out")
	wait_received "$work/latency/$topic.txt" "$n" "$(date +%s.%N)" 300 >/dev/null ||
		{ log "$sys did not deliver its $n warm-up events within 300 s"; exit 1; }
	consumer_stop
	probe delete "$kt"

	log "latency $sys, round $round: 1000 events/s for $lat_secs s"
	latency_step "$sys" "$round" "$pid" 1000 "$lat_secs" || true
	for rate in $rates; do
		log "latency $sys, round $round: $rate events/s for $step_secs s"
		latency_step "$sys" "$round" "$pid" "$rate" "$step_secs" || break
	done
	relay_stop "$sys"
}

mkdir -p "$work/latency"
io_pause
for ((round = 1; round <= rounds; round++)); do
	for size in $sizes; do
		for sys in io dbz poll; do
			drain "$sys" "$round" "$size"
		done
	done
	for sys in io dbz poll; do
		latency "$sys" "$round"
	done
done

# What the report states about the run.
{
	echo "date=$(date -u +%F)"
	echo "cores=$(nproc)"
	echo "postgresql=$(q -c 'SHOW server_version')"
	echo "kafka=3.9.1"
	echo "librdkafka=$(dpkg-query -W -f='${Version}' librdkafka1)"
	echo "commit=${PEERS_COMMIT:-unknown}"
	echo "debezium=$(basename "$dbz_home" | sed 's/^debezium-server-//')"
	echo "debezium_java=$("$dbz_java" -version 2>&1 | head -n 1)"
	echo "debezium_java_opts=${dbz_java_opts:-none}"
	echo "broker_java=$(java -version 2>&1 | head -n 1)"
	echo "python=$("$py" -c 'import platform; print(platform.python_version())')"
	echo "confluent_kafka=$("$py" -c 'import confluent_kafka as c; print("%s (librdkafka %s)" % (c.__version__, c.libversion()[0]))')"
	echo "psycopg=$("$py" -c 'import psycopg; print(psycopg.__version__)')"
	echo "events=$events"
	echo "sizes=$sizes"
	echo "rounds=$rounds"
	echo "latency_seconds=$lat_secs"
	echo "rates=$rates"
	echo "step_seconds=$step_secs"
	echo "warmup_seconds=$warm_secs"
	echo "load_tx=$load_tx"
	echo "poll_batch=$poll_batch"
	echo "poll_interval_ms=$poll_ms"
	echo "dbz_max_batch=$dbz_max_batch"
	echo "dbz_max_queue=$dbz_max_queue"
	echo "dbz_poll_ms=$dbz_poll_ms"
	echo "dbz_linger_ms=$dbz_linger_ms"
	echo "dbz_producer_batch=$dbz_producer_batch"
	echo "sustain_share=$sustain_share"
	echo "sustain_clear_s=$sustain_clear_s"
} >"$work/settings.txt"
"$py" "$here/report.py" "$results" "$work/settings.txt" "$work/img"
