"""Django against inbox_outbox, as docs/clients.md shows it.

Run by test/t/063_clients_orms.pl with the interpreter that scripts/lib.sh
installs (Django 5.2 on psycopg 3):

  django_clients.py publish --host H --port P --topic T
  django_clients.py find --host H --port P [--server-side-binding]
  django_clients.py claim --host H --port P --consumer NAME EVENT_ID...

publish creates the tables of the models in shop/ with Django's schema
editor, commits events, with outbox_publish() and through the Outbox
model, each with a business change in the same transaction, checks that
a transaction that rolls back leaves nothing, then does what find does:
query, insert and update ulid keys as str and as uuid.UUID (and roll that
back).  Parameters are bound as Django binds them by default, on the
client, or with --server-side-binding by psycopg 3 on the server.  Both
print {"checks": [[name, got, expected], ...], "published": [events]};
claim prints {"claims": [[event_id, first, again], ...]}.  No SQL here
casts a ulid.  The blocks between "docs:" comments appear verbatim in
docs/clients.md.  Any unexpected error is an exception and a non-zero
exit.
"""
import argparse
import json
import os
import sys
import uuid

import django


def arguments():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["publish", "find", "claim"])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", required=True)
    ap.add_argument("--server-side-binding", action="store_true")
    ap.add_argument("--topic")
    ap.add_argument("--consumer")
    ap.add_argument("event_ids", nargs="*")
    return ap.parse_intermixed_args()


# The settings module reads the connection from the environment, and the
# models can be imported only once Django is set up.
ARGS = arguments()
os.environ.update(PGHOST=ARGS.host, PGPORT=ARGS.port, DJANGO_SETTINGS_MODULE="settings",
                  INBOX_OUTBOX_SERVER_SIDE_BINDING="1" if ARGS.server_side_binding else "0")
django.setup()

from django.db import connection, models, transaction  # noqa: E402
from django.db.models.functions import Cast  # noqa: E402

from shop.models import Account, AppliedEvent, Customer, Outbox  # noqa: E402

# The same 128 bits as a ULID's text and as a UUID.
ALICE = "01GV5PA9EQG7D82Q3Y4PKBZSYV"
ALICE_UUID = uuid.UUID("0186cb65-25d7-81da-815c-7e25a6bfe7db")
BOB = "01GV5PA9EQG7D82Q3Y4PKBZSYW"
BOB_UUID = uuid.UUID("0186cb65-25d7-81da-815c-7e25a6bfe7dc")
CAROL_UUID = uuid.UUID("0186cb65-25d7-81da-815c-7e25a6bfe7e0")

checks = []
published = []


def check(name, got, expected):
    checks.append([name, got, expected])


def record(how, event_id, key, payload, headers):
    """Remember a committed event for the TAP test to find in Kafka."""
    published.append({
        "how": how, "id": event_id, "key": key, "payload_hex": payload.hex(),
        "headers": headers,
    })


def create_tables():
    with connection.schema_editor() as editor:
        editor.create_model(Account)
        editor.create_model(Customer)
    with connection.cursor() as cur:
        cur.execute("SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attrelid)"
                    " FROM pg_attribute WHERE attname = 'id'"
                    " AND attrelid IN ('shop_account'::regclass, 'shop_customer'::regclass)")
        check("Django: the schema editor makes ulid keys", cur.fetchone()[0], "ulid,ulid")


def publish_part(topic):
    # docs: begin django-publish
    with transaction.atomic():
        account = Account.objects.create(name="alice")      # the business change
        with connection.cursor() as cur:
            cur.execute("SELECT outbox_publish(%s, %s, %s, %s)",
                        [topic, "account-" + account.id,
                         json.dumps({"event": "AccountOpened", "name": account.name}),
                         json.dumps({"trace": "t1"})])      # str payload and headers
            event_id = cur.fetchone()[0]                    # '01HX…' (str)
            cur.execute("SELECT outbox_publish(%s, %s, %s)",
                        [topic, "django-bytes", b"\x00\x01\xfe\xff"])  # bytes: bytea
            bytes_id = cur.fetchone()[0]
    # docs: end django-publish
    record("Django outbox_publish, str payload, headers as JSON text", event_id,
           "account-" + account.id,
           json.dumps({"event": "AccountOpened", "name": "alice"}).encode(), {"trace": "t1"})
    record("Django outbox_publish, bytes payload", bytes_id, "django-bytes",
           b"\x00\x01\xfe\xff", {})

    # docs: begin django-outbox
    with transaction.atomic():
        Account.objects.filter(id=account.id).update(name="alice b.")  # the business change
        row = Outbox.objects.create(topic=topic, key="django-row",
                                    payload=b'{"event": "AccountRenamed"}',
                                    headers={"via": "django"})
        # row.id: the event id (str); row.created_at: the server's clock_timestamp()
    # docs: end django-outbox
    check("Django: Outbox.objects.create returns the server's id and created_at",
          [len(row.id), row.created_at is not None], [26, True])
    record("Django Outbox model, server id", row.id, "django-row",
           b'{"event": "AccountRenamed"}', {"via": "django"})

    given = Outbox.objects.create(id="01gv5pa9eqg7d82q3y4pkbzt90", topic=topic,
                                  key="django-given", payload=b"given")
    check("Django: Outbox row saved with a str id of its own, read back upper case",
          Outbox.objects.get(id=given.id).id, "01GV5PA9EQG7D82Q3Y4PKBZT90")
    record("Django Outbox model, str id", "01GV5PA9EQG7D82Q3Y4PKBZT90", "django-given",
           b"given", {})


class RollBack(Exception):
    """Raised to roll back a transaction on purpose."""


def rolled_back_part(topic):
    """A transaction that rolls back publishes nothing and changes nothing."""
    try:
        with transaction.atomic():
            Account.objects.create(name="rolled back")
            with connection.cursor() as cur:
                cur.execute("SELECT outbox_publish(%s, %s, %s)",
                            [topic, "django-rolled-back", "never sent"])
            Outbox.objects.create(topic=topic, key="django-rolled-back", payload=b"never sent")
            raise RollBack
    except RollBack:
        pass
    check("Django: a rolled-back transaction left no account and no event",
          [Account.objects.filter(name="rolled back").count(),
           Outbox.objects.filter(key="django-rolled-back").count()], [0, 0])


def table_part(binding):
    """The application's ulid keys, as str and as uuid.UUID; rolled back."""
    name = f"Django ({binding} binding)"
    with transaction.atomic():
        Account.objects.create(id=ALICE.lower(), name="alice")
        Account.objects.create(id=BOB, name="bob")
        Customer.objects.create(id=ALICE_UUID, name="alice")
        carol = Customer.objects.create(name="carol")
        check(f"{name}: Customer created with the server's id reads it as uuid.UUID",
              type(carol.id).__name__, "UUID")

        # docs: begin django-find
        alice = Account.objects.get(id="01gv5pa9eqg7d82q3y4pkbzsyv")   # str, either case
        alice.id                                    # '01GV5PA9EQG7D82Q3Y4PKBZSYV'
        uid = (Account.objects.annotate(uid=Cast("id", models.UUIDField()))
               .get(id=alice.id).uid)               # UUID('0186cb65-25d7-81da-815c-7e25a6bfe7db')
        customer = Customer.objects.get(id=uuid.UUID("0186cb65-25d7-81da-815c-7e25a6bfe7db"))
        customer.id                                 # UUID('0186cb65-25d7-81da-815c-7e25a6bfe7db')
        # docs: end django-find
        check(f"{name}: Account.get(id=str, lower case); id reads back as str",
              [alice.name, alice.id], ["alice", ALICE])
        check(f"{name}: Cast(id, UUIDField()) reads a uuid.UUID", str(uid), str(ALICE_UUID))
        check(f"{name}: Customer.get(id=uuid.UUID); id reads back as uuid.UUID",
              [customer.name, type(customer.id).__name__, str(customer.id)],
              ["alice", "UUID", str(ALICE_UUID)])

        check(f"{name}: Account id__in (str)",
              sorted(Account.objects.filter(id__in=[ALICE, BOB.lower()])
                     .values_list("name", flat=True)),
              ["alice", "bob"])
        check(f"{name}: Account id__gt, id__lte (str), order_by id",
              list(Account.objects.filter(id__gt=ALICE.lower(), id__lte=BOB).order_by("id")
                   .values_list("id", flat=True)),
              [BOB])
        check(f"{name}: Customer id__in (uuid.UUID), values_list as uuid.UUID",
              [str(u) for u in Customer.objects.filter(id__in=[ALICE_UUID, BOB_UUID])
               .values_list("id", flat=True)],
              [str(ALICE_UUID)])
        check(f"{name}: Customer id__lt (uuid.UUID)",
              list(Customer.objects.filter(id__lt=BOB_UUID).values_list("name", flat=True)),
              ["alice"])
        check(f"{name}: Account primary key updated with a str",
              Account.objects.filter(id=BOB).update(id="00000000000000000000000007"), 1)
        check(f"{name}: Customer primary key updated with a uuid.UUID",
              Customer.objects.filter(id=ALICE_UUID).update(id=CAROL_UUID), 1)
        check(f"{name}: Customer get by the new uuid.UUID",
              Customer.objects.get(id=CAROL_UUID).name, "alice")
        transaction.set_rollback(True)


def claim_part():
    """One event claimed by its str, then by its uuid.UUID: one claim."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT inbox_try_claim(%s, %s)", [BOB, "django"])
        check("Django: inbox_try_claim(str) first", cur.fetchone()[0], True)
        cur.execute("SELECT inbox_try_claim(%s, %s)", [BOB_UUID, "django"])
        check("Django: inbox_try_claim(uuid.UUID) of the same event", cur.fetchone()[0], False)


def claim_events(consumer, event_ids):
    """Each id as a consumer gets it from a Kafka header, handled twice."""

    def handle(event_id):
        # docs: begin django-claim
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("SELECT inbox_try_claim(%s, %s)", [event_id, consumer])
                first = cur.fetchone()[0]
            if first:                                   # the business change
                AppliedEvent.objects.create(consumer=consumer, event_id=event_id)
        # committed: now commit the Kafka offset
        # docs: end django-claim
        return first

    return [[e, handle(e), handle(e)] for e in event_ids]


def main():
    binding = "server-side" if ARGS.server_side_binding else "client-side"
    if ARGS.mode == "claim":
        json.dump({"claims": claim_events(ARGS.consumer, ARGS.event_ids)}, sys.stdout)
        return
    if ARGS.mode == "publish":
        create_tables()
        publish_part(ARGS.topic)
        rolled_back_part(ARGS.topic)
        claim_part()
    table_part(binding)
    json.dump({"checks": checks, "published": published}, sys.stdout)


if __name__ == "__main__":
    main()
