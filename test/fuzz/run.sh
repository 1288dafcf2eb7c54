#!/bin/bash
#
# Build the libFuzzer harnesses and run each for a while on a copy of its
# seed corpus (the committed corpus never grows).  Fails if any harness
# finds a crash, a leak, undefined behaviour or a broken property; the
# input that did it is kept under test/fuzz/work/<harness>/artifacts/.
#
#   test/fuzz/run.sh [SECONDS] [HARNESS...]
#
# SECONDS per harness defaults to $FUZZ_SECONDS, else 60.  HARNESS is any
# of ulid, kafka_config, kafka_headers, progress_record (default: all).  PG_CONFIG and CLANG
# may be set in the environment, and FUZZ_BUILD and FUZZ_WORK to build and
# run elsewhere than test/fuzz/build and test/fuzz/work.
#
# Installs nothing and needs no privileges.  It needs clang with its
# libFuzzer runtime (Debian: clang-14 libclang-rt-14-dev) and PostgreSQL's
# server development files (postgresql-server-dev-15).

set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-${FUZZ_SECONDS:-60}}
if [ $# -gt 0 ]; then shift; fi
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
	harnesses=(ulid kafka_config kafka_headers progress_record)
fi
PG_CONFIG=${PG_CONFIG:-pg_config}
build=${FUZZ_BUILD:-$here/build}
work=${FUZZ_WORK:-$here/work}

die() {
	echo "fuzz: $*" >&2
	exit 2
}

case $seconds in
	'' | *[!0-9]*) die "SECONDS must be a whole number, not \"$seconds\"" ;;
esac

if [ -z "${CLANG:-}" ]; then
	for candidate in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
		if command -v "$candidate" > /dev/null; then
			CLANG=$candidate
			break
		fi
	done
fi
[ -n "${CLANG:-}" ] || die "clang not found; install clang (Debian: clang-14 libclang-rt-14-dev) or set CLANG"
command -v "$PG_CONFIG" > /dev/null || die "pg_config not found; set PG_CONFIG"

# Without the compiler-rt package clang compiles but cannot link libFuzzer.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n' > "$probe/probe.c"
if ! "$CLANG" -fsanitize=fuzzer,address,undefined "$probe/probe.c" -o "$probe/probe" 2> "$probe/err"; then
	cat "$probe/err" >&2
	die "$CLANG cannot build a libFuzzer program; install its runtime (Debian: libclang-rt-14-dev for clang-14)"
fi

echo "fuzz: building with $CLANG and $PG_CONFIG"
make -s -C "$here" CLANG="$CLANG" PG_CONFIG="$PG_CONFIG" BUILD="$build" \
	$(printf "$build/fuzz_%s " "${harnesses[@]}")

failed=0
for h in "${harnesses[@]}"; do
	[ -d "$here/corpus/$h" ] || die "unknown harness \"$h\""
	dir=$work/$h
	rm -rf "$dir"
	mkdir -p "$dir/corpus" "$dir/artifacts"
	cp "$here/corpus/$h"/* "$dir/corpus/"

	echo "fuzz: fuzz_$h for ${seconds}s on a copy of corpus/$h ($(ls "$dir/corpus" | wc -l) seeds)"
	status=0
	"$build/fuzz_$h" -max_total_time="$seconds" -timeout=25 -max_len=4096 \
		-print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
		"$dir/corpus" > "$dir/log" 2>&1 || status=$?

	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
	cov=$({ grep -o 'cov: [0-9]*' "$dir/log" || true; } | tail -1 | cut -d' ' -f2)
	if [ "$status" -ne 0 ]; then
		failed=1
		echo "fuzz: fuzz_$h FAILED (exit $status) after ${execs:-?} executions; log: $dir/log" >&2
		grep -E 'ERROR|fuzz_[a-z_]*:|SUMMARY|Test unit written' "$dir/log" | head -20 >&2 || true
	else
		echo "fuzz: fuzz_$h passed: ${execs:-?} executions, coverage ${cov:-?} edges, $(ls "$dir/corpus" | wc -l) inputs in the work corpus"
	fi
done

if [ "$failed" -ne 0 ]; then
	echo "fuzz: failed; reproduce with $build/fuzz_<harness> <artifact>" >&2
	exit 1
fi
echo "fuzz: all ${#harnesses[@]} harnesses passed"
