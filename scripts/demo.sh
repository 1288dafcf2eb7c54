#!/usr/bin/env bash
# The quick start: installs what is missing, builds and installs inbox_outbox,
# starts a throwaway PostgreSQL with the library preloaded, runs the demo in
# scripts/demo.sql and stops the server again.  Safe to run repeatedly.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$src/scripts/lib.sh"

ensure_packages
build_and_install "$src"

work=${INBOX_OUTBOX_DEMO_DIR:-/var/tmp/inbox_outbox-demo}
copy_tree_for_test_user "$src" "$work"

as_test_user bash -s "$work" <<'DEMO'
set -euo pipefail
work=$1
. "$work/scripts/lib.sh"
pg_throwaway_start "$work"
psql -X -v ON_ERROR_STOP=1 -f "$work/scripts/demo.sql"
DEMO
