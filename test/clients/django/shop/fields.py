"""Django model fields for ulid columns.

Django knows no ulid type, and the drivers hand a ulid over as its
26-character text.  UlidField keeps that text (a str, as CharField does);
UlidUUIDField is a UUIDField whose values are uuid.UUID both ways: Django
binds a uuid.UUID as uuid, which the server compares with and assigns to
a ulid without a cast, and the text that comes back, from a SELECT or an
INSERT's RETURNING, is decoded here into the same 128 bits.  Both make
the column "ulid" when Django creates the table.
"""
import uuid

from django.db import models

# docs: begin django-fields
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class GenUlid(models.Func):
    """gen_ulid(), the server's default for a ulid key."""
    function = "gen_ulid"
    template = "%(function)s()"
    output_field = models.CharField()


class UlidField(models.CharField):
    """A ulid column as its text: '01HX…' (str)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 26)
        super().__init__(*args, **kwargs)

    def db_type(self, connection):
        return "ulid"


class UlidUUIDField(models.UUIDField):
    """A ulid column as uuid.UUID: bound as uuid, its text decoded when read."""

    def db_type(self, connection):
        return "ulid"

    def from_db_value(self, value, expression, connection):
        if value is None or isinstance(value, uuid.UUID):
            return value
        n = 0
        for c in value:
            n = n * 32 + CROCKFORD.index(c)
        return uuid.UUID(int=n)
# docs: end django-fields
