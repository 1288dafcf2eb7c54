# Helpers shared by the benchmarks in bench/, sourced by the part of each
# that runs as the test user, after scripts/lib.sh.

q() { psql -XqAt -v ON_ERROR_STOP=1 "$@"; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
commas() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; }

# CPU used by processes that are not the benchmark's (the machine may be
# shared).  cpu_mark PID... takes a reading, counting the given processes
# and their descendants, and this shell's, as the benchmark's; other_cpu
# then prints the percentage of all cores that others used since.
bench_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cpu_mark() {
	cpu_pids=("$@")
	read -r mark_busy mark_ours < <(/usr/bin/python3 "$bench_lib_dir/cpu.py" "${cpu_pids[@]}" $$)
	mark_t=$(date +%s.%N)
}
other_cpu() {
	local busy ours
	read -r busy ours < <(/usr/bin/python3 "$bench_lib_dir/cpu.py" "${cpu_pids[@]}" $$)
	awk -v b="$((busy - mark_busy))" -v o="$((ours - mark_ours))" -v t0="$mark_t" -v t1="$(date +%s.%N)" \
		-v hz="$(getconf CLK_TCK)" -v n="$(nproc)" \
		'BEGIN { x = b - o; if (x < 0) x = 0; printf "%.0f", 100 * x / hz / n / (t1 - t0) }'
}
other_note() {
	local pct=$1
	echo
	if ((pct >= 5)); then
		echo "**Other processes on the machine used $pct% of its CPU during this part: the figures are disturbed.**"
	else
		echo "Other processes on the machine used $pct% of its CPU during this part."
	fi
}
