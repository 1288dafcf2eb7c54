#!/usr/bin/env bash
#
# build.sh - builds the Java, Node and Go programs that
# test/t/061_clients_jvm_node_go.pl and test/t/063_clients_orms.pl run,
# once, into a cache outside the source tree, and prints the directory
# that holds them:
#
#   DIR/java/clients.jar DIR/java/lib/   java -cp 'DIR/java/clients.jar:DIR/java/lib/*'
#                                        (PgJDBC, kafka-clients, Hibernate, Spring Data)
#   DIR/node/clients.js                  with its node_modules (npm ci)
#   DIR/typeorm/dist/clients.js          the TypeORM program, compiled by tsc
#   DIR/go/clients                       the pgx program
#
# The directory is named for a digest of the programs' sources, this script
# and the tools' versions, so that the test on each PostgreSQL version of a
# run, and later runs of the same sources, build nothing.  A build happens
# in a temporary directory that is renamed into place when complete, under
# a lock, so that concurrent runs neither race nor see half a build.
# Dependencies come from Maven Central, the npm registry and the Go module
# proxy into the user's own caches (~/.m2, ~/.npm, GOMODCACHE), pinned by
# pom.xml, package-lock.json and go.sum.  Each use touches the directory;
# a build removes those of other sources unused for a week.
#
# Environment: INBOX_OUTBOX_CACHE (cache root, default
# ~/.cache/inbox_outbox), INBOX_OUTBOX_GO (the go command, default go).

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${INBOX_OUTBOX_CACHE:-${HOME:?set HOME or INBOX_OUTBOX_CACHE}/.cache/inbox_outbox}
go=${INBOX_OUTBOX_GO:-go}

log() { echo "build.sh: $*" >&2; }
die() { log "$*"; exit 1; }

for cmd in java mvn node npm "$go" sha256sum flock; do
	command -v "$cmd" >/dev/null || die "$cmd not found (scripts/lib.sh installs what the client test needs)"
done

mapfile -t java_sources < <(find "$here/java/src" -name '*.java' | LC_ALL=C sort)
sources=(
	"$here/build.sh"
	"$here/java/pom.xml" "${java_sources[@]}"
	"$here/node/package.json" "$here/node/package-lock.json" "$here/node/clients.js"
	"$here/typeorm/package.json" "$here/typeorm/package-lock.json" "$here/typeorm/tsconfig.json"
	"$here"/typeorm/src/*.ts
	"$here/go/go.mod" "$here/go/go.sum" "$here"/go/*.go
)
digest=$(
	for f in "${sources[@]}"; do
		printf '%s\n' "${f#"$here"/}"
		cat "$f"
	done
	java -version 2>&1
	node --version
	GOTOOLCHAIN=local "$go" version
)
dir=$root/clients-$(sha256sum <<<"$digest" | cut -c1-16)

# Runs a build step quietly; on failure shows its output and gives up.
step() {
	local what=$1
	shift
	"$@" >"$tmp/$what.log" 2>&1 || { cat "$tmp/$what.log" >&2; die "$what failed"; }
}

if [[ ! -d $dir ]]; then
	mkdir -p "$root"
	exec 9>"$root/clients.lock"
	flock 9
	if [[ ! -d $dir ]]; then
		rm -rf "$dir".tmp.*
		tmp=$(mktemp -d "$dir.tmp.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		log "building the client programs into $dir"
		mkdir -p "$tmp/src" "$tmp/java" "$tmp/node" "$tmp/typeorm" "$tmp/go"

		cp -R "$here/java" "$tmp/src/java"
		step maven mvn -q -B -Dstyle.color=never -f "$tmp/src/java/pom.xml" package
		mv "$tmp/src/java/target/clients.jar" "$tmp/src/java/target/lib" "$tmp/java/"

		cp "$here/node/package.json" "$here/node/package-lock.json" "$here/node/clients.js" "$tmp/node/"
		step npm npm ci --prefix "$tmp/node" --ignore-scripts --no-audit --no-fund \
			--no-update-notifier --loglevel=error

		cp -R "$here/typeorm/package.json" "$here/typeorm/package-lock.json" \
			"$here/typeorm/tsconfig.json" "$here/typeorm/src" "$tmp/typeorm/"
		step npm-typeorm npm ci --prefix "$tmp/typeorm" --ignore-scripts --no-audit --no-fund \
			--no-update-notifier --loglevel=error
		step tsc "$tmp/typeorm/node_modules/.bin/tsc" -p "$tmp/typeorm"

		cp -R "$here/go" "$tmp/src/go"
		step go env GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
			"$go" build -C "$tmp/src/go" -trimpath -buildvcs=false -o "$tmp/go/clients" .

		rm -rf "$tmp/src" "$tmp"/*.log
		mv -T "$tmp" "$dir"
		trap - EXIT
		find "$root" -mindepth 1 -maxdepth 1 -type d -name 'clients-????????????????' \
			-mtime +7 -exec rm -rf {} +
	fi
	exec 9>&-
fi
touch "$dir"
echo "$dir"
