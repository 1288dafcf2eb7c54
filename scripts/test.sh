#!/usr/bin/env bash
# Runs every test of inbox_outbox on this machine: installs what is missing,
# builds with -Werror, installs, then runs pg_regress (against a temporary,
# preloaded server) and the TAP tests (real Kafka broker, librdkafka mock
# cluster) as an unprivileged user, and then each libFuzzer harness for
# FUZZ_SECONDS (default 60; 0 skips them).  Everything it starts, it stops.
# Exit status is non-zero if anything failed; on failure the regression
# diffs and server logs are printed.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$src/scripts/lib.sh"

work=${INBOX_OUTBOX_TEST_DIR:-/var/tmp/inbox_outbox-check}
prepare_work_tree "$src" "$work"

log "running the tests in $work"
status=0
as_test_user make -C "$work" -s installcheck WERROR=1 \
	PG_CONFIG="$PG_BINDIR/pg_config" ${PROVE_TESTS:+PROVE_TESTS="$PROVE_TESTS"} || status=$?

if [ "$status" -ne 0 ]; then
	log "tests failed (exit $status)"
	for f in "$work/regression.diffs" "$work/output_iso/regression.diffs"; do
		[ -f "$f" ] && { log "$f"; cat "$f"; }
	done
	for f in "$work"/tmp_check_regress/log/*.log "$work"/tmp_check_isolation/log/*.log "$work"/tmp_check/log/*; do
		[ -f "$f" ] || continue
		log "$f (last 200 lines)"
		tail -n 200 "$f"
	done
	exit "$status"
fi
fuzz_seconds=${FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" -gt 0 ]; then
	log "fuzzing each parser for $fuzz_seconds s"
	as_test_user make -C "$work" -s fuzz FUZZ_SECONDS="$fuzz_seconds" \
		PG_CONFIG="$PG_BINDIR/pg_config" || {
		log "fuzzing failed"
		exit 1
	}
fi
log "all tests passed"
