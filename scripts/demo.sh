#!/usr/bin/env bash
# The quick start: installs what is missing, builds and installs inbox_outbox,
# starts a throwaway PostgreSQL with the library preloaded and a local Kafka
# broker, runs the demo in scripts/demo.sql, shows what reached Kafka, and
# stops both again.  Safe to run repeatedly.
#
# Environment:
#   INBOX_OUTBOX_INSTALLED=1  run against the extension as it is installed
#                             already (from the Debian package, say): build
#                             and install nothing, and give the directory the
#                             demo runs in only the files the demo runs.
#   INBOX_OUTBOX_PG_BINDIR    the bin directory of the PostgreSQL 15 to use
#                             (default Debian's, /usr/lib/postgresql/15/bin).
#   INBOX_OUTBOX_DEMO_DIR     the directory the demo runs in (default
#                             /var/tmp/inbox_outbox-demo).
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$src/scripts/lib.sh"
PG_BINDIR=${INBOX_OUTBOX_PG_BINDIR:-$PG_BINDIR}

work=${INBOX_OUTBOX_DEMO_DIR:-/var/tmp/inbox_outbox-demo}
if [ "${INBOX_OUTBOX_INSTALLED:-0}" = 1 ]; then
	ensure_packages
	control=$("$PG_BINDIR/pg_config" --sharedir)/extension/inbox_outbox.control
	if [ ! -f "$control" ]; then
		log "inbox_outbox is not installed: $control does not exist"
		exit 1
	fi
	log "using the installed extension ($control)"
	copy_tree_for_test_user "$src" "$work" scripts/lib.sh scripts/demo.sql test/kafka examples
else
	prepare_work_tree "$src" "$work"
fi

as_test_user bash -s "$work" <<'DEMO'
set -euo pipefail
work=$1
. "$work/scripts/lib.sh"

log "starting a local Kafka broker (the first run fetches its jars from Maven Central)"
"$work/test/kafka/kafka.sh" stop "$work/kafka" >/dev/null 2>&1 || true
rm -rf "$work/kafka"
brokers=$("$work/test/kafka/kafka.sh" start "$work/kafka" auto.create.topics.enable=false)
"$work/test/kafka/kafka.sh" create-topic "$work/kafka" orders 3 >/dev/null
stop_kafka() { "$work/test/kafka/kafka.sh" stop "$work/kafka" >/dev/null 2>&1 || true; }

pg_throwaway_start "$work" "inbox_outbox.brokers = '$brokers'"
trap 'pg_ctl -D "$PG_THROWAWAY_DATA" -m fast stop >/dev/null 2>&1 || true; stop_kafka' EXIT
log "Kafka on $brokers"

psql -X -v ON_ERROR_STOP=1 -f "$work/scripts/demo.sql"

echo
echo "== What Kafka received on topic orders (partition, key, event_id header, value):"
kcat -C -b "$brokers" -t orders -o beginning -e -q \
	-f '   partition %p  key %k  headers %h  value %s\n'
echo
echo "   Orders 2 and 4 rolled back: their events never left PostgreSQL."

echo
echo "== A consumer claims each event in its own transaction (examples/order_consumer.py)."
echo "   First run: it applies 2 events and crashes before committing its Kafka offsets."
# One group.instance.id for both runs: the restarted instance takes its
# partitions back at once instead of waiting for the killed one's session to
# time out.
consumer=(/usr/bin/python3 "$work/examples/order_consumer.py" --brokers "$brokers"
	--dsn "host=$PGHOST port=$PGPORT dbname=postgres user=postgres" --topic orders --group billing
	--instance-id billing-1)
"${consumer[@]}" --crash-after 2 2>&1 | sed 's/^/   /' || true
echo "   Second run: Kafka redelivers those events; the inbox absorbs them."
"${consumer[@]}" --idle-exit 3 2>&1 | sed 's/^/   /'
psql -X -f - <<'SQL'
\pset footer off
SELECT consumer, claims, duplicates_absorbed FROM inbox_outbox.inbox_consumers;
SELECT order_key, total FROM order_totals ORDER BY order_key;
SQL

echo
echo "== Ingestion, no consumer code: a subscription consumes the topic back into PostgreSQL."
echo "   Each batch claims the event ids, runs the handler and stores the offsets in one transaction."
psql -X -v ON_ERROR_STOP=1 -q -f - <<'SQL'
CREATE ROLE ledger NOLOGIN;
SELECT inbox_outbox.grant_subscriber('ledger') \g /dev/null
CREATE TABLE ledger (event_id text, order_key text, body jsonb, kafka text);
GRANT INSERT ON ledger TO ledger;
CREATE FUNCTION record_order(topic text, partition int, "offset" bigint, key bytea,
                             payload bytea, headers jsonb, ts timestamptz)
RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.ledger
	VALUES (headers ->> 'event_id', convert_from(key, 'UTF8'), convert_from(payload, 'UTF8')::jsonb,
	        topic || '/' || partition || '/' || "offset")
$$;
ALTER FUNCTION record_order OWNER TO ledger;
SET ROLE ledger;
SELECT subscribe('ledger', ARRAY['orders'],
                 'record_order(text, int, bigint, bytea, bytea, jsonb, timestamptz)') \g /dev/null
SQL
wait_for() {
	for _ in $(seq 1 600); do
		[ "$(psql -X -At -c "$1")" = t ] && return 0
		sleep 0.05
	done
	echo "timed out waiting for: $1" >&2
	return 1
}
wait_for "SELECT count(*) = 4 FROM ledger"
psql -X -f - <<'SQL'
\pset footer off
SELECT order_key, body ->> 'event' AS event, kafka FROM ledger ORDER BY kafka;
SELECT topic, partition, next_offset, lag, state FROM inbox_outbox.ingest_status ORDER BY partition;
SQL
echo "   A producer retry sends the first event again, at a new offset, with the same event_id:"
dup=$(psql -X -At -c "SELECT event_id || ' ' || order_key || ' ' || body::text FROM ledger ORDER BY kafka LIMIT 1")
read -r dup_id dup_key dup_body <<<"$dup"
printf '%s|%s\n' "$dup_key" "$dup_body" |
	kcat -P -b "$brokers" -t orders -K '|' -H "event_id=$dup_id" -X enable.idempotence=true
wait_for "SELECT duplicates = 1 FROM inbox_outbox.ingest_workers() WHERE subscription = 'ledger'"
psql -X -f - <<'SQL'
\pset footer off
SELECT subscription, consumed, duplicates, dead_lettered FROM inbox_outbox.ingest_workers();
SELECT count(*) AS ledger_rows FROM ledger;
SQL
echo "   The inbox absorbed the redelivery: 5 messages consumed, 4 rows, 1 duplicate."
DEMO
