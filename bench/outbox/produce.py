#!/usr/bin/env python3
"""Produce to Kafka at a fixed rate with kcat, the relay's producer settings,
and no PostgreSQL: the baseline of the latency benchmark.

Usage: produce.py BROKERS TOPIC TAG RATE SECONDS [key=value ...]

Each message is "TAG SENT_US PADDING" with a random key, where SENT_US is
the time the line is handed to kcat; extra key=value arguments are
librdkafka properties (linger.ms=5, say).  Prints the number of messages.
"""
import os
import random
import subprocess
import sys
import time


def main():
    brokers, topic, tag, rate, seconds = sys.argv[1:6]
    rate, seconds = float(rate), float(seconds)
    props = ["enable.idempotence=true", "acks=all", "linger.ms=0",
             "partitioner=murmur2_random"] + sys.argv[6:]
    cmd = ["kcat", "-P", "-q", "-b", brokers, "-t", topic, "-K", "\t"]
    for p in props:
        cmd += ["-X", p]
    kcat = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    fd = kcat.stdin.fileno()
    padding = "x" * 180
    start = time.monotonic()
    n = 0
    while True:
        due = start + n / rate
        now = time.monotonic()
        if due - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        line = "%d\t%s %d %s\n" % (random.randint(1, 100000), tag,
                                    time.time_ns() // 1000, padding)
        os.write(fd, line.encode())
        n += 1
    kcat.stdin.close()
    if kcat.wait() != 0:
        sys.exit("kcat failed")
    print(n)


if __name__ == "__main__":
    main()
