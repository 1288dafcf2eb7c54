#!/usr/bin/env python3
"""What bench/peers.sh asks of the broker, through librdkafka.

  kafka_probe.py create BROKERS PARTITIONS TOPIC   create TOPIC and wait
      until every partition has a leader.  Messages carry the time the
      broker appended them (LogAppendTime): the drain's throughput is
      measured on the broker's clock, whoever produced.
  kafka_probe.py delete BROKERS TOPIC              delete TOPIC
  kafka_probe.py count BROKERS TOPIC               print its number of messages
  kafka_probe.py wait BROKERS TOPIC N SECONDS [PID]   wait until it holds
      N messages; print the time (epoch seconds) it was first seen to.
      Gives up at once if process PID (the producer) is gone
  kafka_probe.py span BROKERS TOPIC                print the append times
      (epoch seconds) of its earliest and of its latest message
Exits non-zero, saying why, when the broker does not answer in time.
"""
import sys
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def alive(pid):
    """Whether process pid runs (a zombie does not)."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            text = f.read()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def consumer(brokers):
    return Consumer({"bootstrap.servers": brokers, "group.id": "peers-probe",
                     "enable.auto.commit": False})


def partitions(c, topic):
    return [TopicPartition(topic, p)
            for p in sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)]


def watermarks(c, parts):
    return [c.get_watermark_offsets(tp, timeout=10) for tp in parts]


def count(c, parts):
    return sum(hi - lo for lo, hi in watermarks(c, parts))


def create(brokers, n, topic):
    admin = AdminClient({"bootstrap.servers": brokers})
    new = NewTopic(topic, n, 1, config={"message.timestamp.type": "LogAppendTime"})
    admin.create_topics([new])[topic].result(timeout=60)
    c = consumer(brokers)
    deadline = time.monotonic() + 60
    while True:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if (md is not None and md.error is None and len(md.partitions) == n
                and all(p.leader >= 0 for p in md.partitions.values())):
            break
        if time.monotonic() > deadline:
            sys.exit("topic %s has no leader for every partition after 60 s" % topic)
        time.sleep(0.1)
    c.close()


def append_time(c, tp, offset):
    c.assign([TopicPartition(tp.topic, tp.partition, offset)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = c.poll(1)
        if m is not None and m.error() is None:
            return m.timestamp()[1] / 1000.0
    sys.exit("no message at offset %d of %s[%d] within 30 s" % (offset, tp.topic, tp.partition))


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    cmd, brokers = sys.argv[1:3]
    if cmd == "create":
        create(brokers, int(sys.argv[3]), sys.argv[4])
        return
    topic = sys.argv[3]
    if cmd == "delete":
        admin = AdminClient({"bootstrap.servers": brokers})
        admin.delete_topics([topic])[topic].result(timeout=60)
        return
    c = consumer(brokers)
    parts = partitions(c, topic)
    if cmd == "count":
        print(count(c, parts))
    elif cmd == "wait":
        n, limit = int(sys.argv[4]), float(sys.argv[5])
        producer = sys.argv[6] if len(sys.argv) > 6 else None
        deadline = time.monotonic() + limit
        while True:
            got = count(c, parts)
            if got >= n:
                print("%.3f" % time.time())
                break
            if time.monotonic() > deadline:
                sys.exit("topic %s holds %d of %d messages after %.0f s" % (topic, got, n, limit))
            if producer and not alive(producer):
                sys.exit("topic %s holds %d of %d messages, and process %s is gone"
                         % (topic, got, n, producer))
            time.sleep(0.05)
    elif cmd == "span":
        times = []
        for tp, (lo, hi) in zip(parts, watermarks(c, parts)):
            if hi > lo:
                times += [append_time(c, tp, lo), append_time(c, tp, hi - 1)]
        if not times:
            sys.exit("topic %s is empty" % topic)
        print("%.3f %.3f" % (min(times), max(times)))
    else:
        sys.exit(__doc__)
    c.close()


if __name__ == "__main__":
    main()
