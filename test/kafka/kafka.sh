#!/usr/bin/env bash
#
# kafka.sh - a single-node Apache Kafka broker on 127.0.0.1 for the tests.
#
# The tests need a real broker: only a real one shows read_committed
# visibility, consumer groups, and a broker that goes away and comes back at
# the same address.  The broker runs in KRaft mode (broker and controller in
# one JVM) from jars that Maven fetches from Maven Central (pom.xml beside
# this file) into a cache that outlives test runs.  Everything one broker
# writes lives in the directory given to "start": ports, configuration,
# data, pid file and logs.
#
#   kafka.sh fetch                        fill the jar cache
#   kafka.sh start DIR [key=value ...]    start the broker of DIR, print its address
#   kafka.sh stop DIR                     stop it; nothing to do is no error
#   kafka.sh status DIR                   exit 0 if it runs, 3 if not
#   kafka.sh bootstrap DIR                print its address
#   kafka.sh create-topic DIR TOPIC PARTITIONS [key=value ...]
#   kafka.sh describe-topic DIR TOPIC       print its partition count and configuration overrides
#
# key=value arguments of "start" override the broker configuration and are
# kept in DIR, so a later "start DIR" brings back the same broker on the same
# ports.
#
# Environment: INBOX_OUTBOX_CACHE (cache root, default ~/.cache/inbox_outbox),
# KAFKA_PORT and KAFKA_CONTROLLER_PORT (ports for a first start, default any
# free ones), KAFKA_OWNER_PID (stop the broker once that process is gone),
# KAFKA_START_TIMEOUT and KAFKA_STOP_TIMEOUT (seconds before giving up and
# before SIGKILL, default 120 and 60), KAFKA_JVM_OPTS, JAVA.

set -euo pipefail

KAFKA_VERSION=3.9.1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self=$here/$(basename "${BASH_SOURCE[0]}")
cache=${INBOX_OUTBOX_CACHE:-${HOME:?set HOME or INBOX_OUTBOX_CACHE}/.cache/inbox_outbox}/kafka-$KAFKA_VERSION
java=${JAVA:-java}
# C1 alone starts the broker about a second sooner; tests need no more speed.
jvm_opts=${KAFKA_JVM_OPTS:--Xms128m -Xmx512m -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError}

log() { echo "kafka.sh: $*" >&2; }
die() { log "$*"; exit 1; }

need() {
	local cmd
	for cmd; do
		command -v "$cmd" >/dev/null || die "$cmd not found"
	done
}

# Maven downloads into a temporary directory that is renamed into place when
# complete, so the cache directory exists only whole.  The lock keeps
# concurrent fetches from racing; whoever holds it may remove leftovers of
# fetches that were killed.
fetch_tmp=
fetch() {
	[[ -d $cache ]] && return 0
	need mvn
	local root=${cache%/*}
	mkdir -p "$root"
	exec 9>"$root/kafka-$KAFKA_VERSION.lock"
	flock 9
	if [[ ! -d $cache ]]; then
		rm -rf "$cache".tmp.*
		fetch_tmp=$(mktemp -d "$cache.tmp.XXXXXX")
		trap 'rm -rf "$fetch_tmp"' EXIT
		log "fetching Kafka $KAFKA_VERSION jars into $cache"
		cp "$here/pom.xml" "$fetch_tmp/pom.xml"
		# -U: retry downloads that an earlier, failed run marked as missing.
		mvn -q -B -U -f "$fetch_tmp/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
			dependency:copy-dependencies -DincludeScope=runtime \
			-DoutputDirectory="$fetch_tmp/libs" >"$fetch_tmp/mvn.log" 2>&1 ||
			{ cat "$fetch_tmp/mvn.log" >&2; die "Maven could not fetch the Kafka jars"; }
		[[ -f $fetch_tmp/libs/kafka_2.13-$KAFKA_VERSION.jar ]] ||
			die "Maven did not fetch kafka_2.13-$KAFKA_VERSION.jar"
		mv -T "$fetch_tmp/libs" "$cache"
		rm -rf "$fetch_tmp"
		trap - EXIT
	fi
	exec 9>&-
}

# The broker's pid if it runs.  The command line is checked so that a stale
# pid file never names some other process (or a zombie, whose is empty).
broker_pid() {
	local dir=$1 pid cmd
	[[ -s $dir/kafka.pid ]] || return 1
	pid=$(<"$dir/kafka.pid")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
	[[ $cmd == *" $dir/server.properties"* ]] || return 1
	echo "$pid"
}

# Whether process $1 runs (a zombie does not).  Unlike broker_pid, true
# also in the instant between fork and exec of the JVM.
alive() {
	local state
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [[ $state != Z ]]
}

ports() {
	[[ -s $1/ports ]] || die "no broker was started in $1"
	read -r port cport <"$1/ports"
}

bootstrap() {
	local port cport
	ports "$1"
	echo "127.0.0.1:$port"
}

log_tail() {
	local f
	if grep -q -E '^\[[^]]*\] (ERROR|FATAL) ' "$1/server.log" 2>/dev/null; then
		echo "--- first errors in $1/server.log" >&2
		grep -m 5 -A 1 -E '^\[[^]]*\] (ERROR|FATAL) ' "$1/server.log" >&2
	fi
	for f in "$1/server.log" "$1/stdout.log"; do
		[[ -s $f ]] || continue
		echo "--- last lines of $f" >&2
		tail -n 40 "$f" >&2
	done
}

# Two ports free now, taken while both sockets are open so they differ.
free_ports() {
	perl -MIO::Socket::INET -e '
		my @s = map { IO::Socket::INET->new(LocalAddr => "127.0.0.1",
			LocalPort => 0, Listen => 1, ReuseAddr => 1) or die "$!\n" } 1 .. 2;
		print join(" ", map { $_->sockport } @s), "\n";'
}

valid_setting() {
	[[ $1 =~ ^[A-Za-z0-9._-]+=[^$'\n']*$ ]] || die "not a key=value setting: $1"
}

# Broker configuration: defaults, then the overrides kept in DIR, then the
# new ones; the last value given for a key wins.
write_config() {
	local dir=$1 port=$2 cport=$3 kv key
	shift 3
	local -A value=()
	local -a keys=() overrides=()
	if [[ -f $dir/overrides.properties ]]; then
		mapfile -t overrides <"$dir/overrides.properties"
	fi
	overrides+=("$@")
	for kv in \
		process.roles=broker,controller \
		node.id=1 \
		controller.quorum.voters="1@127.0.0.1:$cport" \
		listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport" \
		advertised.listeners="PLAINTEXT://127.0.0.1:$port" \
		listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT \
		controller.listener.names=CONTROLLER \
		inter.broker.listener.name=PLAINTEXT \
		log.dirs="$dir/data" \
		num.partitions=3 \
		auto.create.topics.enable=true \
		default.replication.factor=1 \
		offsets.topic.replication.factor=1 \
		offsets.topic.num.partitions=3 \
		transaction.state.log.replication.factor=1 \
		transaction.state.log.min.isr=1 \
		transaction.state.log.num.partitions=3 \
		group.initial.rebalance.delay.ms=0 \
		"${overrides[@]}"; do
		key=${kv%%=*}
		[[ -v value[$key] ]] || keys+=("$key")
		value[$key]=${kv#*=}
	done
	{
		echo "# written by kafka.sh start; overrides go to overrides.properties"
		for key in "${keys[@]}"; do
			echo "$key=${value[$key]}"
		done
	} >"$dir/server.properties"
	if ((${#overrides[@]})); then
		printf '%s\n' "${overrides[@]}" >"$dir/overrides.properties"
	fi
	cat >"$dir/log4j.properties" <<-EOF
		log4j.rootLogger=INFO, file
		log4j.appender.file=org.apache.log4j.FileAppender
		log4j.appender.file.File=$dir/server.log
		log4j.appender.file.Append=true
		log4j.appender.file.layout=org.apache.log4j.PatternLayout
		log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
		log4j.logger.kafka.request.logger=WARN
	EOF
}

start() {
	local dir=$1 pid port cport kv id out deadline
	shift
	for kv; do
		valid_setting "$kv"
	done
	need "$java" kcat perl
	fetch
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if pid=$(broker_pid "$dir"); then
		(($# == 0)) || die "broker already runs in $dir; stop it to change its settings"
		log "broker already runs in $dir (pid $pid)"
		bootstrap "$dir"
		return 0
	fi
	if [[ ! -s $dir/ports ]]; then
		if [[ -n ${KAFKA_PORT:-} && -n ${KAFKA_CONTROLLER_PORT:-} ]]; then
			echo "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" >"$dir/ports"
		else
			free_ports >"$dir/ports"
		fi
	fi
	ports "$dir"
	write_config "$dir" "$port" "$cport" "$@"

	if [[ ! -f $dir/data/meta.properties ]]; then
		# A cluster id is 16 random bytes in URL-safe base64; one that starts
		# with "-" would read as an option.
		id=-
		while [[ $id == -* ]]; do
			id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
		done
		# shellcheck disable=SC2086
		"$java" $jvm_opts -cp "$cache/*" \
			-Dlog4j.configuration="file:$dir/log4j.properties" \
			kafka.tools.StorageTool format --cluster-id "$id" \
			--config "$dir/server.properties" >>"$dir/stdout.log" 2>&1 ||
			{ log_tail "$dir"; die "could not format storage in $dir/data"; }
	fi

	log "starting Kafka $KAFKA_VERSION in $dir on 127.0.0.1:$port"
	# shellcheck disable=SC2086
	"$java" $jvm_opts -cp "$cache/*" \
		-Dlog4j.configuration="file:$dir/log4j.properties" \
		kafka.Kafka "$dir/server.properties" \
		</dev/null >>"$dir/stdout.log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/kafka.pid"

	if [[ -n ${KAFKA_OWNER_PID:-} ]]; then
		# A watchdog, so that a test killed before it could stop its broker
		# leaves no JVM behind.
		(
			while kill -0 "$KAFKA_OWNER_PID" 2>/dev/null && alive "$pid"; do
				sleep 1
			done
			if [[ $(broker_pid "$dir") == "$pid" ]]; then
				echo "kafka.sh: process $KAFKA_OWNER_PID is gone, stopping the broker"
				"$self" stop "$dir"
			fi
		) </dev/null >>"$dir/stdout.log" 2>&1 &
	fi

	# Ready once it answers a metadata request that lists itself.  kcat
	# waits out its timeout while the port is still closed, so probe that
	# first (bounded: a stranger on the port might never accept).
	deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120}))
	while :; do
		# shellcheck disable=SC2016
		if timeout 1 bash -c ': <"/dev/tcp/127.0.0.1/$1"' _ "$port" 2>/dev/null &&
			out=$(kcat -L -b "127.0.0.1:$port" -m 2 2>/dev/null) &&
			[[ $out == *"broker 1 at 127.0.0.1:$port"* ]] &&
			broker_pid "$dir" >/dev/null; then
			break
		fi
		if ! alive "$pid"; then
			log_tail "$dir"
			die "broker in $dir exited during startup"
		fi
		if ((SECONDS >= deadline)); then
			log_tail "$dir"
			stop "$dir"
			die "broker in $dir not ready after ${KAFKA_START_TIMEOUT:-120} s"
		fi
		sleep 0.2
	done
	bootstrap "$dir"
}

stop() {
	local dir=$1 pid deadline
	[[ -d $dir ]] || return 0
	dir=$(cd "$dir" && pwd)
	if pid=$(broker_pid "$dir"); then
		kill -TERM "$pid" 2>/dev/null || true
		deadline=$((SECONDS + ${KAFKA_STOP_TIMEOUT:-60}))
		while broker_pid "$dir" >/dev/null; do
			if ((SECONDS >= deadline)); then
				log "broker $pid ignored SIGTERM for ${KAFKA_STOP_TIMEOUT:-60} s, sending SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				deadline=$((SECONDS + 10))
				while broker_pid "$dir" >/dev/null; do
					((SECONDS < deadline)) || die "broker $pid survived SIGKILL"
					sleep 0.1
				done
			fi
			sleep 0.1
		done
	fi
	rm -f "$dir/kafka.pid"
}

status() {
	local dir=$1 pid
	[[ -d $dir ]] && dir=$(cd "$dir" && pwd)
	if pid=$(broker_pid "$dir"); then
		echo "running: pid $pid, bootstrap $(bootstrap "$dir")"
	else
		echo "stopped"
		return 3
	fi
}

# Kafka's command-line tools log warnings only, to stderr.
tools_log4j() {
	printf '%s\n' "log4j.rootLogger=WARN, err" \
		"log4j.appender.err=org.apache.log4j.ConsoleAppender" \
		"log4j.appender.err.Target=System.err" \
		"log4j.appender.err.layout=org.apache.log4j.PatternLayout" \
		"log4j.appender.err.layout.ConversionPattern=%p %m (%c)%n" \
		>"$1/tools-log4j.properties"
}

create_topic() {
	local dir=$1 topic=$2 partitions=$3 addr kv out deadline
	local -a configs=()
	shift 3
	for kv; do
		valid_setting "$kv"
		configs+=(--config "$kv")
	done
	[[ $partitions =~ ^[1-9][0-9]*$ ]] || die "not a partition count: $partitions"
	dir=$(cd "$dir" && pwd)
	addr=$(bootstrap "$dir")
	fetch
	tools_log4j "$dir"
	# shellcheck disable=SC2086
	"$java" $jvm_opts -cp "$cache/*" \
		-Dlog4j.configuration="file:$dir/tools-log4j.properties" \
		org.apache.kafka.tools.TopicCommand --bootstrap-server "$addr" \
		--create --topic "$topic" --partitions "$partitions" \
		--replication-factor 1 "${configs[@]}" >&2 ||
		die "could not create topic $topic"
	# The controller has the topic; wait until the broker serves all of it.
	deadline=$((SECONDS + 60))
	until out=$(kcat -L -b "$addr" -t "$topic" -m 2 2>/dev/null) &&
		(($(grep -Ec '^ +partition [0-9]+, leader 1,' <<<"$out") == partitions)); do
		((SECONDS < deadline)) || die "topic $topic has no leaders after 60 s"
		sleep 0.2
	done
}

# TopicCommand's summary line of the topic: "PartitionCount: N" and
# "Configs: key=value,..." (the overrides the topic was created with).
describe_topic() {
	local dir=$1 topic=$2 addr
	dir=$(cd "$dir" && pwd)
	addr=$(bootstrap "$dir")
	fetch
	tools_log4j "$dir"
	# shellcheck disable=SC2086
	"$java" $jvm_opts -cp "$cache/*" \
		-Dlog4j.configuration="file:$dir/tools-log4j.properties" \
		org.apache.kafka.tools.TopicCommand --bootstrap-server "$addr" \
		--describe --topic "$topic" | grep -E "^Topic: $topic\b.*PartitionCount" ||
		die "could not describe topic $topic"
}

usage() {
	{
		echo "usage:"
		sed -n 's/^#   \(kafka.sh\)/  \1/p' "$self"
	} >&2
	exit 2
}

(($#)) || usage
cmd=$1
shift
case $cmd:$# in
fetch:0) fetch ;;
start:*) (($#)) || usage; start "$@" ;;
stop:1) stop "$1" ;;
status:1) status "$1" ;;
bootstrap:1) bootstrap "$1" ;;
create-topic:*) (($# >= 3)) || usage; create_topic "$@" ;;
describe-topic:2) describe_topic "$@" ;;
*) usage ;;
esac
