#!/usr/bin/env bash
# Runs every test of inbox_outbox on this machine, on each PostgreSQL
# version in PG_VERSIONS (default: 15 16 18, see scripts/lib.sh): installs
# what is missing, and for each version builds with -Werror, installs, and
# runs pg_regress and the isolation tests (against a temporary, preloaded
# server) and the TAP tests (real Kafka broker, librdkafka mock cluster) as
# an unprivileged user.  Then it runs each libFuzzer harness for
# FUZZ_SECONDS (default 60; 0 skips them), once, built against the last
# version.  Everything it starts, it stops.  Exit status is non-zero if
# anything failed; on failure the regression diffs and server logs are
# printed.
#
#   PG_VERSIONS=16 bash scripts/test.sh            # one version
#   PROVE_TESTS=test/t/010_ulid_order.pl bash scripts/test.sh
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$src/scripts/lib.sh"

work=${INBOX_OUTBOX_TEST_DIR:-/var/tmp/inbox_outbox-check}
read -r -a versions <<<"${PG_VERSIONS:-${PG_TEST_VERSIONS[*]}}"
[ ${#versions[@]} -gt 0 ] || {
	log "PG_VERSIONS names no version"
	exit 2
}

ensure_packages
ensure_python_clients
ensure_jvm_node_go_clients
for v in "${versions[@]}"; do
	ensure_postgres "$v"
done

# Print what tells why the tests in DIR failed.
show_failure() {
	local dir=$1 f
	for f in "$dir/regression.diffs" "$dir/output_iso/regression.diffs"; do
		[ -f "$f" ] && { log "$f"; cat "$f"; }
	done
	for f in "$dir"/tmp_check_regress/log/*.log "$dir"/tmp_check_isolation/log/*.log "$dir"/tmp_check/log/*; do
		[ -f "$f" ] || continue
		log "$f (last 200 lines)"
		tail -n 200 "$f"
	done
}

failed=()
for v in "${versions[@]}"; do
	pg_config=$(pg_config_of "$v")
	dir=$work/pg$v
	start=$(date +%s)
	copy_tree_for_test_user "$src" "$dir"
	log "PostgreSQL $v: building with -Werror and installing ($pg_config)"
	as_test_user make -C "$dir" -s WERROR=1 PG_CONFIG="$pg_config" >/dev/null
	as_root make -C "$dir" -s install PG_CONFIG="$pg_config" >/dev/null

	log "PostgreSQL $v: running the tests in $dir"
	status=0
	as_test_user make -C "$dir" -s installcheck WERROR=1 PG_CONFIG="$pg_config" \
		PG_TEST_PERL="$PG_TEST_PERL" ${PROVE_TESTS:+PROVE_TESTS="$PROVE_TESTS"} || status=$?
	# once: each regression file passes without the others before it
	if [ "$status" -eq 0 ] && [ "$v" = "${versions[0]}" ] && [ -z "${PROVE_TESTS:-}" ]; then
		as_test_user make -C "$dir" -s installcheck-alone PG_CONFIG="$pg_config" || status=$?
	fi
	if [ "$status" -ne 0 ]; then
		log "PostgreSQL $v: tests failed (exit $status)"
		show_failure "$dir"
		failed+=("$v")
	fi
	log "PostgreSQL $v: done in $(($(date +%s) - start)) s"
done

fuzz_seconds=${FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" -gt 0 ]; then
	v=${versions[-1]}
	log "fuzzing each parser for $fuzz_seconds s (built against PostgreSQL $v)"
	as_test_user make -C "$work/pg$v" -s fuzz FUZZ_SECONDS="$fuzz_seconds" \
		PG_CONFIG="$(pg_config_of "$v")" || failed+=("fuzzing")
fi

if [ ${#failed[@]} -gt 0 ]; then
	log "failed: ${failed[*]}"
	exit 1
fi
log "all tests passed on PostgreSQL ${versions[*]}"
