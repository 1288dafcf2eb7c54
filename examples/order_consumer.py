#!/usr/bin/env python3
"""An idempotent Kafka consumer built on inbox_outbox's inbox.

For every message it opens one database transaction that claims the
event's id with inbox_try_claim() and, only if the claim is new, applies the
business change; then it commits the transaction.  Kafka offsets are
committed after the database, so a crash in between redelivers messages
whose changes are already applied: the claim turns those into no-ops.

    order_consumer.py --brokers 127.0.0.1:9092 --dsn 'dbname=shop' \
                      --topic orders --group billing

The business change here adds each OrderPaid amount to order_totals and
logs the event in applied_events (see SCHEMA).  --crash-after N exits
abruptly after N applied events, before committing offsets, to show the
redelivery being absorbed; --idle-exit S stops after S quiet seconds.
"""
import argparse
import json
import os
import sys

import psycopg2
from confluent_kafka import Consumer, KafkaException

SCHEMA = """
CREATE TABLE IF NOT EXISTS order_totals (order_key text PRIMARY KEY, total numeric NOT NULL);
CREATE TABLE IF NOT EXISTS applied_events (event_id text, order_key text, applied_at timestamptz DEFAULT now());
"""


def apply_event(cur, consumer_name, event_id, key, value):
    """Claim the event and apply it; returns False for a duplicate."""
    cur.execute("SELECT inbox_try_claim(%s, %s)", (event_id, consumer_name))
    if not cur.fetchone()[0]:
        return False
    amount = json.loads(value).get("amount", 0)
    cur.execute(
        "INSERT INTO order_totals VALUES (%s, %s) "
        "ON CONFLICT (order_key) DO UPDATE SET total = order_totals.total + EXCLUDED.total",
        (key, amount))
    cur.execute("INSERT INTO applied_events (event_id, order_key) VALUES (%s, %s)",
                (event_id, key))
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--brokers", required=True)
    p.add_argument("--dsn", required=True)
    p.add_argument("--topic", default="orders")
    p.add_argument("--group", default="billing")
    p.add_argument("--crash-after", type=int, default=0)
    p.add_argument("--idle-exit", type=float, default=0)
    args = p.parse_args()

    db = psycopg2.connect(args.dsn)
    with db, db.cursor() as cur:
        cur.execute(SCHEMA)

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        # a restarted instance takes its partitions back at once
        "group.instance.id": args.group + "-1",
        "session.timeout.ms": 10000,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    })
    consumer.subscribe([args.topic])

    applied = duplicates = 0
    idle = 0.0
    try:
        while True:
            messages = consumer.consume(num_messages=200, timeout=0.5)
            if not messages:
                idle += 0.5
                if args.idle_exit and idle >= args.idle_exit:
                    break
                continue
            idle = 0.0
            for msg in messages:
                if msg.error():
                    raise KafkaException(msg.error())
                headers = dict(msg.headers() or [])
                event_id = headers["event_id"].decode()
                key = msg.key().decode() if msg.key() is not None else None
                with db, db.cursor() as cur:        # one transaction per event
                    if apply_event(cur, args.group, event_id, key, msg.value()):
                        applied += 1
                    else:
                        duplicates += 1
                if args.crash_after and applied >= args.crash_after:
                    print(f"crashing after {applied} applied, {duplicates} duplicates",
                          flush=True)
                    os._exit(3)                     # offsets not committed
            consumer.commit(asynchronous=False)     # after the database commit
    finally:
        print(f"applied {applied}, duplicates absorbed {duplicates}", flush=True)
    consumer.close()
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
