"""The models of the Django client test.

Outbox maps inbox_outbox.outbox, which the extension owns (managed =
False; Django quotes no schema, so the table name is given quoted).  A row
saved through it is published at commit, as outbox_publish() would publish
it; its id and created_at are the server's defaults, returned by the
INSERT.  Account and Customer are the application's own tables with a
ulid key, read as str and as uuid.UUID; AppliedEvent is the business
change of the consumer, in the table test/t/063_clients_orms.pl creates.
"""
from django.db import models
from django.db.models.functions import Now

from .fields import GenUlid, UlidField, UlidUUIDField


# docs: begin django-models
class Outbox(models.Model):
    """Save a row to publish it when the transaction commits."""
    id = UlidField(primary_key=True, db_default=GenUlid())
    topic = models.TextField()
    key = models.TextField(null=True)
    payload = models.BinaryField(null=True)
    headers = models.JSONField(null=True)
    created_at = models.DateTimeField(db_default=Now())   # DEFAULT: the table's clock_timestamp()

    class Meta:
        managed = False
        db_table = '"inbox_outbox"."outbox"'


class Account(models.Model):                # id ulid PRIMARY KEY, as str
    id = UlidField(primary_key=True, db_default=GenUlid())
    name = models.TextField()


class Customer(models.Model):               # id ulid PRIMARY KEY, as uuid.UUID
    id = UlidUUIDField(primary_key=True, db_default=GenUlid())
    name = models.TextField()
# docs: end django-models


class AppliedEvent(models.Model):
    pk = models.CompositePrimaryKey("consumer", "event_id")
    consumer = models.TextField()
    event_id = UlidField()

    class Meta:
        managed = False
        db_table = "applied_events"
