#!/usr/bin/env python3
"""The polling relay of bench/peers.sh: the outbox relay most frameworks ship.

Usage: poll_relay.py CONNINFO BROKERS [BATCH [INTERVAL_MS]]

Each round is one transaction: lock up to BATCH (1000) rows of poll_outbox
in id order with FOR UPDATE SKIP LOCKED, so that several such relays could
share the table; produce them all; wait for every acknowledgement; delete
them; commit.  A round that found a full batch is followed at once by the
next; any other waits INTERVAL_MS (100).  Should Kafka refuse a message,
the round rolls back and the rows are tried again later.  The producer is
idempotent (acks=all) and partitions by key with murmur2, as the other two
relays do.  SIGTERM or SIGINT stops it after the round in progress.
"""
import signal
import sys
import time

import psycopg
from confluent_kafka import Producer

LOCK = ("SELECT id, topic, key, payload FROM poll_outbox"
        " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED")
DELETE = "DELETE FROM poll_outbox WHERE id = ANY (%s)"


class Relay:
    def __init__(self, conninfo, brokers, batch, interval):
        self.batch = batch
        self.interval = interval
        self.stopping = False
        self.failures = []
        self.producer = Producer({
            "bootstrap.servers": brokers,
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
        })
        self.conn = psycopg.connect(conninfo, application_name="poll_relay")

    def delivered(self, err, msg):
        if err is not None:
            self.failures.append(err)

    def send(self, topic, key, payload):
        while True:
            try:
                self.producer.produce(topic, value=payload, key=key,
                                      on_delivery=self.delivered)
                return
            except BufferError:
                # the local queue is full: let acknowledgements drain it
                self.producer.poll(0.01)

    def round(self):
        """One transaction; returns the number of rows sent."""
        with self.conn.transaction() as tx, self.conn.cursor() as cur:
            cur.execute(LOCK, (self.batch,), prepare=True)
            rows = cur.fetchall()
            if not rows:
                return 0
            for _, topic, key, payload in rows:
                self.send(topic, key.encode() if key is not None else None, payload)
            self.producer.flush()
            if self.failures:
                print("poll_relay: delivery failed, retrying later: %s" % self.failures[0],
                      file=sys.stderr)
                self.failures.clear()
                raise psycopg.Rollback(tx)
            cur.execute(DELETE, ([r[0] for r in rows],), prepare=True)
            return len(rows)

    def run(self):
        while not self.stopping:
            if self.round() < self.batch:
                time.sleep(self.interval)
        self.conn.close()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[2])
    conninfo, brokers = sys.argv[1:3]
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    interval = (int(sys.argv[4]) if len(sys.argv) > 4 else 100) / 1000.0
    relay = Relay(conninfo, brokers, batch, interval)

    def stop(signum, frame):
        relay.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    relay.run()


if __name__ == "__main__":
    main()
