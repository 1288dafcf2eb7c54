#!/usr/bin/env python3
"""A Kafka consumer that applies each event once, through inbox_outbox's inbox.

    order_consumer.py --brokers 127.0.0.1:9092 --dsn 'dbname=shop' \\
                      --topic orders --group billing

It runs on Debian's python3 with python3-confluent-kafka and python3-psycopg2
(what scripts/lib.sh installs).  The business change adds each event's
"amount" to order_totals under the message key and records the event in
applied_events; copy the loop and the rules, replace apply_change().

The rules, in the order they are checked for each message:

  tombstone (null value)     skipped: nothing to apply and nothing to claim
  no usable event_id header  dead-lettered (the inbox cannot deduplicate it)
  event id claimed before    a duplicate: nothing changes
  null or empty key,
  non-JSON value,
  value not an object,
  amount not a number        dead-lettered, claim kept
  data error in the change   (SQLSTATE class 22 or 23) the change is rolled
                             back to a savepoint and the message is
                             dead-lettered, claim kept
  otherwise                  applied

Each message gets one database transaction: claim, then the business change
or the dead letter, then COMMIT.  A dead letter is written in the claim's
transaction, so a redelivery finds the claim and the message is never tried
again; the partition moves on.  One transaction per message keeps a crash's
redelivery small and the code plain; a batch in one transaction with a
savepoint per message commits less often but must be replayed whole on a
transient error.

Offsets: auto-commit is off and so is librdkafka's automatic offset store.
A message's offset is stored only after its transaction committed, and the
stored offsets are committed after each batch, when partitions are revoked
and at shutdown.  (With automatic storing, a commit at revocation or
shutdown would also cover messages handed out but not yet applied.)  A
crash between the database commit and the offset commit redelivers
messages whose claims then turn them into duplicates.

Transient database errors (connection lost, serialization failure,
deadlock, lock timeout, shutdown) roll back, rewind the batch's partitions
to their first message not committed and poll again after a backoff (0.2 s
doubling up to 5 s): nothing is skipped and the consumer keeps its place in
the group meanwhile.  Any other error is a bug in this code or the schema:
the consumer stops without committing the failing message's offset.

Rebalances: a revocation commits the offsets stored so far, so the next
owner starts after them; an assignment needs nothing, because what the next
owner gets again is absorbed by the inbox.  Rebalance callbacks run inside
consume(), between two batches, never in the middle of a message.

SIGTERM and SIGINT stop the consumer between two messages: it commits the
offsets stored so far and closes; without --instance-id it leaves the group,
so its partitions move to the other instances at once.

group.instance.id is unset unless --instance-id is given; it makes the
instance a static member that gets its partitions back at once after a
restart, and must then be unique per running instance: a second instance
with the same id fences the first.

--crash-after N exits abruptly after the Nth applied event, once its
transaction committed and before its offset is stored; --idle-exit S stops
after S seconds without a message once partitions are assigned.
"""
import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from decimal import Decimal

import psycopg2
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

log = logging.getLogger("order_consumer")

SCHEMA = """
SELECT pg_advisory_xact_lock(hashtext('examples/order_consumer.py schema'));
CREATE TABLE IF NOT EXISTS order_totals (
    order_key text PRIMARY KEY,
    total numeric NOT NULL CHECK (total >= 0));
CREATE TABLE IF NOT EXISTS applied_events (
    event_id text NOT NULL,
    order_key text NOT NULL,
    instance text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS consumer_dead_letter (
    consumer text NOT NULL,
    topic text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    event_id text,
    key bytea,
    value bytea,
    error text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, kafka_partition, kafka_offset));
"""

APPLIED, DUPLICATE, SKIPPED, DEAD_LETTERED = (
    "applied", "duplicates absorbed", "skipped", "dead-lettered")

# SQLSTATEs worth retrying: connection exceptions, transaction rollbacks
# (serialization failure, deadlock), insufficient resources, lock not
# available, and the server shutting down or starting up.
TRANSIENT_CLASSES = ("08", "40", "53")
TRANSIENT_CODES = ("55P03", "57P01", "57P02", "57P03")

# SQLSTATE classes that mean "this message's data cannot be applied":
# data exceptions and integrity constraint violations.
DATA_ERROR_CLASSES = ("22", "23")

MAX_EVENT_ID_BYTES = 512        # inbox_try_claim()'s limit
MAX_BACKOFF = 5.0


class Poison(Exception):
    """A message that can never be applied as it is."""


def is_transient(err):
    if err.pgcode is None:
        # No SQLSTATE: the client lost (or never had) its connection.
        return isinstance(err, (psycopg2.OperationalError, psycopg2.InterfaceError))
    return err.pgcode[:2] in TRANSIENT_CLASSES or err.pgcode in TRANSIENT_CODES


def describe(err):
    """One line for a database error: its SQLSTATE and primary message."""
    message = err.diag.message_primary or " ".join(str(err).split())
    return f"{err.pgcode}: {message}" if err.pgcode else message


def is_data_error(err):
    return err.pgcode is not None and err.pgcode[:2] in DATA_ERROR_CLASSES


def event_id_of(msg):
    """The event_id header as text; Poison if it is missing or unusable."""
    values = [v for name, v in (msg.headers() or []) if name == "event_id"]
    if not values or values[-1] is None:
        raise Poison("no event_id header")
    try:
        event_id = values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise Poison("event_id header is not UTF-8") from None
    if not event_id or "\x00" in event_id or len(values[-1]) > MAX_EVENT_ID_BYTES:
        raise Poison("event_id header is empty, too long or contains NUL")
    return event_id


def reject_constant(name):
    """Python's json reads NaN and Infinity, which are not JSON."""
    raise ValueError(f"{name} is not JSON")


def order_change(msg):
    """The order key and amount of a message; Poison if they cannot be read."""
    key = msg.key()
    if not key:
        raise Poison("message has no key, so no order to change")
    try:
        order_key = key.decode("utf-8")
    except UnicodeDecodeError:
        raise Poison("key is not UTF-8") from None
    if "\x00" in order_key:
        raise Poison("key contains NUL")

    try:
        body = json.loads(msg.value(), parse_float=Decimal, parse_constant=reject_constant)
    except ValueError as e:             # also bad UTF-8 and bad JSON
        raise Poison(f"value is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise Poison("value is not a JSON object")
    amount = body.get("amount", 0)
    if isinstance(amount, bool) or not isinstance(amount, (int, Decimal)):
        raise Poison("amount is not a number")
    return order_key, Decimal(amount)


def apply_change(cur, event_id, order_key, amount, instance):
    """The business change; a CHECK keeps totals from going negative."""
    cur.execute(
        "INSERT INTO order_totals (order_key, total) VALUES (%s, %s) "
        "ON CONFLICT (order_key) DO UPDATE SET total = order_totals.total + EXCLUDED.total",
        (order_key, amount))
    cur.execute(
        "INSERT INTO applied_events (event_id, order_key, instance) VALUES (%s, %s, %s)",
        (event_id, order_key, instance))


def dead_letter(cur, consumer, msg, event_id, error):
    """Keep the message and the reason; a redelivered copy adds no row."""
    def as_bytea(b):
        return None if b is None else psycopg2.Binary(b)

    cur.execute(
        "INSERT INTO consumer_dead_letter (consumer, topic, kafka_partition, kafka_offset, "
        "event_id, key, value, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING",
        (consumer, msg.topic(), msg.partition(), msg.offset(), event_id,
         as_bytea(msg.key()), as_bytea(msg.value()), error.replace("\x00", "")))
    log.warning("dead-lettered %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), error)


def handle(cur, msg, consumer, instance):
    """Run the rules for one message inside the caller's transaction."""
    if msg.value() is None:
        return SKIPPED
    try:
        event_id = event_id_of(msg)
    except Poison as e:
        dead_letter(cur, consumer, msg, None, str(e))
        return DEAD_LETTERED

    cur.execute("SELECT inbox_try_claim(%s, %s)", (event_id, consumer))
    if not cur.fetchone()[0]:
        return DUPLICATE
    try:
        order_key, amount = order_change(msg)
    except Poison as e:
        dead_letter(cur, consumer, msg, event_id, str(e))
        return DEAD_LETTERED

    cur.execute("SAVEPOINT business_change")
    try:
        apply_change(cur, event_id, order_key, amount, instance)
    except psycopg2.Error as e:
        if not is_data_error(e):
            raise
        cur.execute("ROLLBACK TO SAVEPOINT business_change")
        dead_letter(cur, consumer, msg, event_id, describe(e))
        return DEAD_LETTERED
    return APPLIED


def is_fatal(err):
    """Whether the Kafka client cannot go on; librdkafka reports a fatal
    error (such as being fenced by an instance with the same
    group.instance.id) as an error of code _FATAL."""
    return err.fatal() or err.code() in (KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID)


def commit_offsets(consumer):
    """Commit the stored offsets: those of messages whose transaction committed."""
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as e:
        err = e.args[0]
        if err.code() == KafkaError._NO_OFFSET:
            return
        if is_fatal(err):
            raise
        # Not committed: the messages come again and the inbox absorbs them.
        log.warning("could not commit offsets: %s", err)


class OrderConsumer:
    """The consume loop, its rebalance callbacks and its database connection."""

    def __init__(self, args):
        self.args = args
        self.consumer_name = args.consumer or args.group
        self.instance = args.instance_id or f"{socket.gethostname()}:{os.getpid()}"
        self.counts = dict.fromkeys((APPLIED, DUPLICATE, SKIPPED, DEAD_LETTERED), 0)
        self.db = None
        self.failures = 0           # consecutive transient errors
        self.assigned = False
        self.last_message = time.monotonic()
        self.stopping = False

        config = {
            "bootstrap.servers": args.brokers,
            "group.id": args.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Matters when the relay publishes in Kafka transactions
            # (inbox_outbox.delivery = 'exactly_once').
            "isolation.level": "read_committed",
            "session.timeout.ms": int(args.session_timeout * 1000),
        }
        if args.instance_id:
            config["group.instance.id"] = args.instance_id
        self.kafka = Consumer(config)

    def on_assign(self, kafka, partitions):
        names = ", ".join(f"{p.topic}[{p.partition}]" for p in partitions)
        log.info("assigned %s", names or "nothing")
        self.assigned = True
        self.last_message = time.monotonic()

    def on_revoke(self, kafka, partitions):
        commit_offsets(kafka)

    def connection(self):
        if self.db is None:
            self.db = psycopg2.connect(self.args.dsn)
        return self.db

    def forget_transaction(self):
        """Roll back after an error; drop a connection that is gone."""
        if self.db is None:
            return
        if not self.db.closed:
            try:
                self.db.rollback()
                return
            except psycopg2.Error:
                pass
        self.db.close()
        self.db = None

    def rewind(self, messages, err):
        """Seek each partition back to its first message of the batch not
        committed, then back off before the next poll."""
        firsts = {}
        for m in messages:
            firsts.setdefault((m.topic(), m.partition()), m.offset())
        for (topic, partition), offset in firsts.items():
            self.kafka.seek(TopicPartition(topic, partition, offset))
        self.failures += 1
        delay = min(0.1 * 2 ** self.failures, MAX_BACKOFF)
        log.warning("transient database error, retrying in %.1f s: %s", delay, describe(err))
        time.sleep(delay)

    def process(self, messages):
        for i, msg in enumerate(messages):
            if self.stopping:
                return              # the rest comes again to the next owner
            if msg.error():
                if is_fatal(msg.error()):
                    raise KafkaException(msg.error())
                log.warning("consumer error: %s", msg.error())
                continue
            try:
                db = self.connection()
                with db.cursor() as cur:
                    outcome = handle(cur, msg, self.consumer_name, self.instance)
                db.commit()
            except psycopg2.Error as e:
                self.forget_transaction()
                if not is_transient(e):
                    raise
                self.rewind([m for m in messages[i:] if not m.error()], e)
                return
            self.failures = 0
            self.counts[outcome] += 1
            if outcome == APPLIED and self.counts[APPLIED] == self.args.crash_after:
                print(f"crashing after {self.counts[APPLIED]} applied, "
                      f"{self.counts[DUPLICATE]} duplicates", flush=True)
                os._exit(3)
            self.kafka.store_offsets(message=msg)

    def run(self):
        self.kafka.subscribe([self.args.topic], on_assign=self.on_assign,
                             on_revoke=self.on_revoke)
        try:
            while not self.stopping:
                messages = self.kafka.consume(num_messages=self.args.batch_size, timeout=0.5)
                if messages:
                    self.last_message = time.monotonic()
                    self.process(messages)
                    commit_offsets(self.kafka)
                elif (self.args.idle_exit and self.assigned
                      and time.monotonic() - self.last_message >= self.args.idle_exit):
                    break
        finally:
            try:
                commit_offsets(self.kafka)
            except KafkaException as e:
                log.warning("could not commit offsets: %s", e.args[0])
            self.kafka.close()
            if self.db is not None:
                self.db.close()
            print(", ".join(f"{k} {v}" for k, v in self.counts.items()), flush=True)

    def stop(self, signum, frame):
        self.stopping = True


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--brokers", required=True, help="Kafka bootstrap servers")
    p.add_argument("--dsn", required=True, help="libpq connection string")
    p.add_argument("--topic", default="orders")
    p.add_argument("--group", default="billing", help="Kafka consumer group")
    p.add_argument("--consumer", help="inbox consumer name (default: the group)")
    p.add_argument("--instance-id",
                   help="group.instance.id, unique per running instance (default: none)")
    p.add_argument("--session-timeout", type=float, default=10, metavar="SECONDS")
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--crash-after", type=int, default=0, metavar="N")
    p.add_argument("--idle-exit", type=float, default=0, metavar="SECONDS")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    with psycopg2.connect(args.dsn) as db, db.cursor() as cur:
        cur.execute(SCHEMA)
    db.close()

    consumer = OrderConsumer(args)
    signal.signal(signal.SIGTERM, consumer.stop)
    signal.signal(signal.SIGINT, consumer.stop)
    try:
        consumer.run()
    except KafkaException as e:
        log.error("stopping: %s", e.args[0])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
