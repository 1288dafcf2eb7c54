"""Django settings of test/clients/django/django_clients.py.

The database is the one libpq's environment names (PGHOST, PGPORT, PGUSER,
PGDATABASE), which the runner sets from its arguments.  Django binds
parameters on the client, as SQL literals, unless psycopg 3's server-side
binding is asked for; the runner asks for it with --server-side-binding,
so that the ulid columns are checked both ways.
"""
import os

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("PGDATABASE", "postgres"),
        "OPTIONS": {
            "server_side_binding": os.environ.get("INBOX_OUTBOX_SERVER_SIDE_BINDING") == "1",
        },
    },
}
INSTALLED_APPS = ["shop"]
USE_TZ = True
