#!/usr/bin/env bash
#
# run.sh - build the spike, start a throwaway broker with test/kafka/kafka.sh,
# run every experiment against it, stop the broker.  Not part of the tests or
# of CI (README.md).
#
#   test/spike_eos/run.sh [DIR]     DIR holds the broker (default: a new
#                                   temporary directory); librdkafka's own log
#                                   lines go to DIR/librdkafka.log
#
# Exit status 1 if a check failed.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kafka=$here/../kafka/kafka.sh
dir=${1:-$(mktemp -d /tmp/spike_eos.XXXXXX)}

make -s -C "$here"
bootstrap=$("$kafka" start "$dir")
trap '"$kafka" stop "$dir"' EXIT

# "outage" stops and starts this broker
export SPIKE_KAFKA_SH=$kafka SPIKE_KAFKA_DIR=$dir

rc=0
for cmd in record fence abort destroy recover latency outage stall; do
	"$here/spike_eos" "$bootstrap" "$cmd" 2>>"$dir/librdkafka.log" || rc=1
	echo
done

# "latency" once more with librdkafka's transaction debug log, which lets it
# count the coordinator's CONCURRENT_TRANSACTIONS answers
echo "latency again, with SPIKE_DEBUG=eos (debug log in $dir/librdkafka-eos-debug.log)"
SPIKE_DEBUG=eos "$here/spike_eos" "$bootstrap" latency 2>"$dir/librdkafka-eos-debug.log" || rc=1
exit $rc
