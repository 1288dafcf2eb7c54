#!/usr/bin/env python3
"""Produce to Kafka at a fixed rate, each message with an event_id header.

Usage: produce.py BROKERS TOPIC TAG RATE SECONDS

Each message is "TAG SENT_US PADDING" (about 200 bytes) with a random key
and the header event_id = "TAG-n"; SENT_US is the time, in microseconds
since the epoch, just before the message is handed to librdkafka
(confluent_kafka, idempotent, acks=all, linger.ms=0: the relay's producer
settings).  Messages are evenly spaced, after one probe message (tag
TAG_probe) that waits for the producer to be ready.  Waits for every acknowledgement,
then prints the number of messages.
"""
import random
import sys
import time

from confluent_kafka import Producer


def main():
    brokers, topic, tag, rate, seconds = sys.argv[1:6]
    rate, seconds = float(rate), float(seconds)
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 0})
    failed = []

    def report(err, msg):
        if err is not None:
            failed.append(err)

    padding = "x" * 180
    # Connected, and the idempotent producer's id obtained, before the
    # first timed message: its startup is not the latency measured.
    producer.produce(topic, value=("%s_probe 0 %s" % (tag, padding)).encode(),
                     headers=[("event_id", "%s-probe" % tag)], on_delivery=report)
    if producer.flush(30) != 0 or failed:
        sys.exit("produce.py: the probe message was not acknowledged: %s" % failed[:1])
    start = time.monotonic()
    n = 0
    while True:
        due = start + n / rate
        if due - start >= seconds:
            break
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        value = "%s %d %s" % (tag, time.time_ns() // 1000, padding)
        producer.produce(topic, value=value.encode(), key=str(random.randint(1, 100000)).encode(),
                         headers=[("event_id", "%s-%d" % (tag, n))], on_delivery=report)
        producer.poll(0)
        n += 1
    if producer.flush(60) != 0 or failed:
        sys.exit("produce.py: %d messages not acknowledged: %s" % (len(failed), failed[:3]))
    print(n)


if __name__ == "__main__":
    main()
