#!/usr/bin/env bash
# Runs each pg_regress file of the Makefile's REGRESS on its own, in a fresh
# temporary instance, to show that none depends on another having run
# first.  `make installcheck-alone` runs it from the top of the tree, as
# the user that runs the tests:  test/regress_alone.sh PG_CONFIG FILE...
set -euo pipefail
pg_config=$1
shift
files=("$@")
regress=$("$pg_config" --pkglibdir)/pgxs/src/test/regress/pg_regress
failed=()
for f in "${files[@]}"; do
	out=tmp_check_alone/$f
	rm -rf "$out"
	mkdir -p "$out"
	# the output directory is the tree, as for make installcheck: the
	# files load test helpers from there
	if ! "$regress" --temp-instance="$out/instance" --temp-config=test/regress.conf \
		--load-extension=inbox_outbox --dbname=contrib_regression \
		--inputdir=. --outputdir=. \
		--bindir="$("$pg_config" --bindir)" "$f" >"$out/output.txt" 2>&1; then
		cat regression.diffs 2>/dev/null || cat "$out/output.txt"
		failed+=("$f")
	fi
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "failed when run alone: ${failed[*]}"
	exit 1
fi
echo "each of ${#files[@]} regression files passed on its own"
