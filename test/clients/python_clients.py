"""Python drivers against inbox_outbox, as docs/clients.md shows them.

Run by test/t/060_clients_python.pl with the interpreter that scripts/lib.sh
installs (psycopg 3, SQLAlchemy 2).  Every call binds its parameters the way
the driver does by default: no casts in the SQL.  Prints one JSON object:
"checks", [name, got, expected] triples that the TAP test compares, and
"published", the events it committed, which the TAP test then looks for in
Kafka.  Any exception fails the run.
"""
import argparse
import json
import sys
import uuid

import psycopg
from psycopg.types.json import Jsonb
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.string import StrDumperVarchar
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid_text(u: uuid.UUID) -> str:
    """The 26-digit text of the ULID with the bytes of u."""
    n = u.int
    return "".join(CROCKFORD[(n >> (5 * i)) & 31] for i in reversed(range(26)))


checks = []
published = []


def check(name, got, expected):
    checks.append([name, got, expected])


def record(conn_or_session, how, event_id, key, payload, headers):
    """Remember a published event, with its created_at in microseconds."""
    sql = ("SELECT (extract(epoch FROM created_at) * 1000000)::int8"
           " FROM inbox_outbox.outbox WHERE id = %s")
    if isinstance(conn_or_session, Session):
        created_us = conn_or_session.execute(
            sa.text(sql.replace("%s", ":id")), {"id": event_id}).scalar_one()
    else:
        created_us = conn_or_session.execute(sql, (event_id,)).fetchone()[0]
    published.append({
        "how": how, "id": str(event_id), "key": key,
        "payload_hex": None if payload is None else payload.hex(),
        "headers": headers, "created_us": created_us,
    })


class UntypedBytesDumper(Dumper):
    """bytes as node-postgres sends a Buffer: binary format, no type."""
    format = Format.BINARY
    oid = 0

    def dump(self, obj):
        return bytes(obj)


def untyped_bytes_part(dsn):
    with psycopg.connect(dsn) as conn:
        conn.adapters.register_dumper(bytes, UntypedBytesDumper)
        utf8 = "naïve €".encode()
        cur = conn.execute("SELECT outbox_publish(%s, %s, %b)", ("clients", "untyped-utf8", utf8))
        record(conn, "untyped bytes that are UTF-8", cur.fetchone()[0], "untyped-utf8", utf8, {})
        conn.commit()
        try:
            conn.execute("SELECT outbox_publish(%s, %s, %b)",
                         ("clients", "untyped-raw", bytes([0, 1, 0xFF])))
            check("untyped bytes that are not UTF-8 are refused", "published", "refused")
        except psycopg.Error as e:
            check("untyped bytes that are not UTF-8: SQLSTATE", e.sqlstate, "22021")
            check("untyped bytes that are not UTF-8: the hint says how to pass bytes",
                  e.diag.message_hint,
                  "An untyped parameter of outbox_publish() is read as text. To publish bytes, "
                  "bind the payload as bytea or cast its parameter, "
                  "as in outbox_publish($1, $2, $3::bytea).")
            conn.rollback()
        # the same bytes with the cast the hint names
        raw = bytes([0, 1, 0xFF])
        cur = conn.execute("SELECT outbox_publish(%s, %s, %b::bytea)", ("clients", "untyped-cast", raw))
        record(conn, "untyped bytes cast to bytea", cur.fetchone()[0], "untyped-cast", raw, {})
        conn.commit()


def psycopg_part(dsn):
    with psycopg.connect(dsn) as conn:
        # str, bytes, a Jsonb payload, headers as a JSON string and as Jsonb
        cur = conn.execute("SELECT outbox_publish(%s, %s, %s)",
                           ("clients", "pg-str", "plain text é"))
        record(conn, "psycopg str payload", cur.fetchone()[0], "pg-str",
               "plain text é".encode(), {})
        raw = bytes([0, 1, 0xFE, 0xFF, 0])
        cur = conn.execute("SELECT outbox_publish(%s, %s, %s, %s)",
                           ("clients", "pg-bytes", raw, json.dumps({"kind": "bytes"})))
        record(conn, "psycopg bytes payload, str headers", cur.fetchone()[0], "pg-bytes",
               raw, {"kind": "bytes"})
        cur = conn.execute("SELECT outbox_publish(%s, %s, %s, %s)",
                           ("clients", "pg-json", Jsonb({"n": 1}), Jsonb({"kind": "json"})))
        record(conn, "psycopg Jsonb payload and headers", cur.fetchone()[0], "pg-json",
               b'{"n": 1}', {"kind": "json"})
        conn.commit()

        conn.execute("CREATE TABLE accounts (id ulid PRIMARY KEY, name text NOT NULL)")
        alice = uuid.UUID("0186cb65-25d7-81da-815c-7e25a6bfe7db")
        bob = ulid_text(uuid.UUID("0186cb65-25d7-81da-815c-7e25a6bfe7dc"))
        conn.execute("INSERT INTO accounts VALUES (%s, %s)", (alice, "alice"))
        conn.execute("INSERT INTO accounts VALUES (%s, %s)", (bob.lower(), "bob"))
        check("psycopg: WHERE id = uuid.UUID",
              conn.execute("SELECT name FROM accounts WHERE id = %s", (alice,)).fetchone()[0],
              "alice")
        check("psycopg: WHERE id = str",
              conn.execute("SELECT name FROM accounts WHERE id = %s", (bob,)).fetchone()[0], "bob")
        check("psycopg: WHERE id = ANY(list of uuid.UUID)",
              conn.execute("SELECT count(*) FROM accounts WHERE id = ANY(%s)",
                           ([alice, uuid.UUID(int=0)],)).fetchone()[0], 1)
        check("psycopg: WHERE id > uuid.UUID",
              conn.execute("SELECT name FROM accounts WHERE id > %s", (alice,)).fetchone()[0],
              "bob")
        check("psycopg: ulid comes back as str",
              conn.execute("SELECT id FROM accounts WHERE name = 'alice'").fetchone()[0],
              ulid_text(alice))
        check("psycopg: id::uuid comes back as uuid.UUID",
              str(conn.execute("SELECT id::uuid FROM accounts WHERE name = 'bob'").fetchone()[0]),
              "0186cb65-25d7-81da-815c-7e25a6bfe7dc")
        check("psycopg: ulid_timestamp(uuid.UUID) = ulid_timestamp(str)",
              conn.execute("SELECT ulid_timestamp(%s) = ulid_timestamp(%s)",
                           (alice, ulid_text(alice))).fetchone()[0], True)
        # str bound as varchar, as SQLAlchemy's String and PgJDBC's setString do
        conn.adapters.register_dumper(str, StrDumperVarchar)
        conn.execute("INSERT INTO accounts VALUES (%s, %s)",
                     (ulid_text(uuid.UUID(int=5)), "carol"))
        check("psycopg: WHERE id = varchar",
              conn.execute("SELECT name FROM accounts WHERE id = %s",
                           (ulid_text(uuid.UUID(int=5)).lower(),)).fetchone()[0], "carol")
        cur = conn.execute("SELECT outbox_publish(%s, %s, %s, %s)",
                           ("clients", "pg-varchar", "all varchar", '{"kind": "varchar"}'))
        record(conn, "psycopg all varchar, headers as JSON text", cur.fetchone()[0],
               "pg-varchar", b"all varchar", {"kind": "varchar"})

        # one event claimed as str, then as uuid.UUID: the second is a duplicate
        event = uuid.UUID("0186cb65-25d7-81da-815c-7e25a6bfe7e0")
        check("psycopg: inbox_try_claim(str varchar) first",
              conn.execute("SELECT inbox_try_claim(%s, %s)",
                           (ulid_text(event), "py")).fetchone()[0], True)
        check("psycopg: inbox_try_claim(uuid.UUID) of the same event",
              conn.execute("SELECT inbox_try_claim(%s, %s)", (event, "py")).fetchone()[0], False)
        conn.commit()


class Base(DeclarativeBase):
    pass


class Outbox(Base):
    """The outbox table; the id comes from the server unless given."""
    __tablename__ = "outbox"
    __table_args__ = {"schema": "inbox_outbox"}
    id: Mapped[str] = mapped_column(sa.String, primary_key=True,
                                    server_default=sa.FetchedValue())
    topic: Mapped[str]
    key: Mapped[str | None]
    payload: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    headers: Mapped[dict | None] = mapped_column(JSONB)
    created_at = mapped_column(sa.DateTime(timezone=True), server_default=sa.FetchedValue())


class UlidAsUuid(sa.types.TypeDecorator):
    """A ulid column read and written as uuid.UUID."""
    impl = sa.Uuid
    cache_ok = True

    def column_expression(self, col):
        return sa.cast(col, sa.Uuid)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[uuid.UUID] = mapped_column(UlidAsUuid, primary_key=True)
    name: Mapped[str]


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[str] = mapped_column(sa.String, primary_key=True)
    note: Mapped[str]


def sqlalchemy_part(dsn):
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(dsn))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id ulid PRIMARY KEY, name text NOT NULL)")
        conn.exec_driver_sql("CREATE TABLE tickets (id ulid PRIMARY KEY, note text NOT NULL)")

    with Session(engine) as s:
        row = Outbox(topic="clients", key="orm-default", payload=b"\x00orm",
                     headers={"via": "sqlalchemy"})
        s.add(row)
        s.flush()
        record(s, "SQLAlchemy, server id", row.id, "orm-default", b"\x00orm", {"via": "sqlalchemy"})
        given = ulid_text(uuid.UUID("0186cb65-25d7-81da-815c-7e25a6bfe800"))
        row = Outbox(id=given, topic="clients", key="orm-given", payload=b"given",
                     headers={"via": "sqlalchemy"})
        s.add(row)
        s.flush()
        check("SQLAlchemy: explicit str id kept", row.id, given)
        record(s, "SQLAlchemy, str id", given, "orm-given", b"given", {"via": "sqlalchemy"})
        # a created_at just short of the next millisecond: Kafka's timestamp
        # must be truncated to ...999, not rounded up
        late = Outbox(topic="clients", key="orm-late", payload=b"late",
                      created_at=sa.literal_column("'2026-11-30 12:00:00.9999+00'::timestamptz"))
        s.add(late)
        s.flush()
        record(s, "SQLAlchemy, created_at .9999", late.id, "orm-late", b"late", {})
        check("SQLAlchemy: outbox row found by str id",
              s.get(Outbox, given.lower()).key, "orm-given")
        s.commit()

        a = uuid.UUID("0186cb65-25d7-81da-815c-7e25a6bfe7db")
        s.add_all([Customer(id=a, name="alice"), Customer(id=uuid.UUID(int=9), name="zed")])
        s.add(Ticket(id=ulid_text(a).lower(), note="lower-case str"))
        s.commit()

    with Session(engine) as s:
        c = s.scalars(sa.select(Customer).where(Customer.id == a)).one()
        check("SQLAlchemy: Uuid-mapped where id == uuid.UUID", c.name, "alice")
        check("SQLAlchemy: Uuid-mapped id reads back as uuid.UUID",
              [type(c.id).__name__, str(c.id)], ["UUID", str(a)])
        check("SQLAlchemy: Uuid-mapped id IN (...)",
              s.scalar(sa.select(sa.func.count()).select_from(Customer)
                       .where(Customer.id.in_([a, uuid.UUID(int=9)]))), 2)
        t = s.get(Ticket, ulid_text(a))
        check("SQLAlchemy: String-mapped get by upper-case str", t.note, "lower-case str")
        check("SQLAlchemy: String-mapped id reads back upper case", t.id, ulid_text(a))
        t.id = ulid_text(uuid.UUID(int=10))
        s.commit()
        check("SQLAlchemy: String-mapped primary key updated",
              s.scalar(sa.select(Ticket.note).where(Ticket.id == ulid_text(uuid.UUID(int=10)))),
              "lower-case str")
        check("SQLAlchemy: min/max over a ulid column",
              [str(v) for v in s.execute(
                  sa.select(sa.func.min(Ticket.id), sa.func.max(Customer.id))
                  .select_from(Ticket).join(Customer, sa.true())).one()],
              [ulid_text(uuid.UUID(int=10)), str(a)])
        check("SQLAlchemy: inbox_try_claim with a uuid.UUID bind",
              s.scalar(sa.select(sa.func.inbox_try_claim(
                  sa.bindparam("e", uuid.UUID("0186cb65-25d7-81da-815c-7e25a6bfe7e1"),
                               type_=sa.Uuid), "orm"))), True)
        s.commit()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    args = ap.parse_args()
    psycopg_part(args.dsn)
    untyped_bytes_part(args.dsn)
    sqlalchemy_part(args.dsn)
    json.dump({"checks": checks, "published": published}, sys.stdout)


if __name__ == "__main__":
    main()
