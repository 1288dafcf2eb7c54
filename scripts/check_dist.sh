#!/usr/bin/env bash
# Builds the release archive (make dist) from the committed tree and checks
# it: the versions of META.json, the control file and the Makefile agree,
# the archive holds what PGXN and a user need, and the extension builds
# from the unpacked archive alone.  Needs a git checkout; CI runs it.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$src/scripts/lib.sh"
ensure_packages

work=$(mktemp -d /var/tmp/inbox_outbox-dist.XXXXXX)
trap 'rm -rf "$work"' EXIT
git -C "$src" clone -q "$src" "$work/clone"
make -C "$work/clone" -s dist PG_CONFIG="$PG_BINDIR/pg_config"

ext=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" "$src/inbox_outbox.control")
makefile=$(sed -n 's/^EXTVERSION = //p' "$src/Makefile")
meta=$(python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); print(m["version"], m["provides"]["inbox_outbox"]["version"], m["provides"]["inbox_outbox"]["file"])' "$src/META.json")
expected="$ext.0 $ext.0 inbox_outbox--$ext.sql"
[ "$ext" = "$makefile" ] || { log "control says $ext, Makefile says $makefile"; exit 1; }
[ "$meta" = "$expected" ] || { log "META.json says '$meta', expected '$expected'"; exit 1; }

zip=$work/clone/inbox_outbox-$ext.0.zip
python3 -m zipfile -e "$zip" "$work/unpacked"
top=$work/unpacked/inbox_outbox-$ext.0
for f in META.json LICENSE README.md CHANGELOG.md inbox_outbox.control "inbox_outbox--$ext.sql" Makefile; do
	[ -f "$top/$f" ] || { log "the archive lacks $f"; exit 1; }
done
[ ! -e "$top/.ci" ] || { log "the archive holds .ci"; exit 1; }
make -C "$top" -s WERROR=1 PG_CONFIG="$PG_BINDIR/pg_config" >/dev/null
[ -f "$top/inbox_outbox.so" ] && [ -f "$top/inbox_outbox_relay.so" ] || { log "the archive did not build both libraries"; exit 1; }
log "$(basename "$zip") ($(stat -c %s "$zip") bytes) holds version $ext and builds"
