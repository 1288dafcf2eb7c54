#!/usr/bin/env bash
# Tests the Debian package as a user gets it.  Builds it with
# dpkg-buildpackage -us -uc from a copy of the tree (outside the tree, with
# an upstream tarball made from the same copy), installs it, and runs the
# demo (scripts/demo.sh with INBOX_OUTBOX_INSTALLED=1) against what was
# installed, from a directory that holds no sources and no build products.
# Fails unless the package depends on postgresql-15 and librdkafka1, every
# installed file of the extension is the package's, the committed events of
# the demo reach Kafka (and the rolled-back ones do not), in order per key,
# and the inbox absorbs the events redelivered to the crashed consumer.
#
#   bash scripts/test_package.sh           # system: apt-get install the .deb
#   bash scripts/test_package.sh private   # into a private copy of PostgreSQL
#
# system installs the package into Debian's PostgreSQL 15 with apt-get, which
# resolves its dependencies, and removes it again at the end unless it was
# installed before.  First it deletes the files of inbox_outbox there that no
# package owns (a "make install" left them), so that the server is clean.
# This is for a machine of its own, such as CI's.
#
# private touches nothing shared, for a machine where others run tests
# against Debian's PostgreSQL: it copies PostgreSQL 15 without any file of
# inbox_outbox into the work directory (the server finds its share and lib
# directories relative to its binaries), extracts the package into that copy
# with dpkg-deb -x, and has apt-get only simulate the install to show that
# the package's dependencies are all installed.
#
# The work directory is INBOX_OUTBOX_PACKAGE_DIR (default
# /var/tmp/inbox_outbox-deb); it is emptied first.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$src/scripts/lib.sh"

mode=${1:-system}
case $mode in
system | private) ;;
*)
	echo "usage: $0 [system|private]" >&2
	exit 2
	;;
esac

work=${INBOX_OUTBOX_PACKAGE_DIR:-/var/tmp/inbox_outbox-deb}
package=postgresql-$PG_MAJOR-inbox-outbox
# The demo may wait on a consumer for events that never come; this bounds it.
demo_timeout=${INBOX_OUTBOX_DEMO_TIMEOUT:-900}

fail() {
	log "FAILED: $*"
	exit 1
}

ensure_packages "${DEB_BUILD_PACKAGES[@]}"
rm -rf "$work"
mkdir -p "$work"

# -- Build -----------------------------------------------------------------

source_name=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Source)
version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
upstream=${version%-*}
extversion=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" "$src/inbox_outbox.control")
[ "$upstream" = "$extversion" ] ||
	fail "debian/changelog packages version $upstream, inbox_outbox.control says $extversion"
build=$work/build
tree=$build/$source_name-$upstream

copy_tree_for_test_user "$src" "$tree"
chown --reference="$tree" "$build" # dpkg-buildpackage writes beside the tree
as_test_user tar -C "$build" --exclude="$source_name-$upstream/debian" \
	-cJf "$build/${source_name}_$upstream.orig.tar.xz" "$source_name-$upstream"
log "building $package $version (log: $build/build.log)"
start=$(date +%s)
(cd "$tree" && as_test_user dpkg-buildpackage -us -uc) >"$build/build.log" 2>&1 || {
	tail -n 60 "$build/build.log"
	fail "dpkg-buildpackage -us -uc"
}
log "built in $(($(date +%s) - start)) s"

shopt -s nullglob
debs=("$build/${package}_${version}"_*.deb)
shopt -u nullglob
[ ${#debs[@]} -eq 1 ] || fail "expected one ${package}_${version}_*.deb in $build, found ${#debs[@]}"
deb=${debs[0]}
log "$(basename "$deb"): $(stat -c %s "$deb") bytes"
dpkg-deb -I "$deb"

depends=$(dpkg-deb -f "$deb" Depends)
for dep in "postgresql-$PG_MAJOR" librdkafka1; do
	grep -Eq "(^|, )$dep( |,|$)" <<<"$depends" || fail "Depends lacks $dep: $depends"
done

# The package's files, as absolute paths, and those of them that PostgreSQL
# loads: the libraries, their bitcode, the control file and SQL scripts.
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' | sort >"$work/package.files"
grep -E '/inbox_outbox[^/]*$|/bitcode/inbox_outbox/' "$work/package.files" >"$work/package.extension" ||
	fail "the package holds no file of the extension"
for f in "inbox_outbox.so" "inbox_outbox_relay.so"; do
	grep -qx "/usr/lib/postgresql/$PG_MAJOR/lib/$f" "$work/package.extension" || fail "the package lacks lib/$f"
done
# Every script of the tree, whatever its version, and the control file.
(cd "$src" && ls inbox_outbox.control inbox_outbox--*.sql) |
	sed "s|^|/usr/share/postgresql/$PG_MAJOR/extension/|" | sort >"$work/tree.extension"
comm -23 "$work/tree.extension" "$work/package.extension" >"$work/missing"
[ ! -s "$work/missing" ] || fail "the package lacks $(tr '\n' ' ' <"$work/missing")"

# -- Install ---------------------------------------------------------------

# List the extension's files installed under PostgreSQL's directories below
# ROOT, as absolute paths without ROOT.
installed_extension_files() {
	local root=$1
	(cd "$root" && find "usr/lib/postgresql/$PG_MAJOR/lib" "usr/share/postgresql/$PG_MAJOR/extension" \
		-type f \( -name 'inbox_outbox*' -o -path '*/bitcode/inbox_outbox/*' \)) |
		sed 's|^|/|' | sort
}

# Fail unless the extension's files below ROOT are exactly the package's.
check_installed_files() {
	local root=$1
	installed_extension_files "$root" >"$work/installed.extension"
	diff -u "$work/package.extension" "$work/installed.extension" ||
		fail "the extension's files below $root are not exactly the package's (- package, + installed)"
}

if [ "$mode" = system ]; then
	bindir=$PG_BINDIR
	installed_before=no
	dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' && installed_before=yes
	if [ "$installed_before" = no ]; then
		trap 'as_root env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q '"$package"' >/dev/null || true' EXIT
	fi
	# A clean server: what "make install" left there (on CI, the tests just
	# before) goes first, or a stale script could stay beside the package's.
	unowned=()
	while read -r f; do
		dpkg -S "$f" >/dev/null 2>&1 || unowned+=("$f")
	done < <(installed_extension_files /)
	if [ ${#unowned[@]} -gt 0 ]; then
		log "removing ${#unowned[@]} files of inbox_outbox that no package installed"
		as_root rm -f "${unowned[@]}"
	fi
	log "installing $(basename "$deb") with apt-get"
	(cd "$build" && as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --reinstall "./$(basename "$deb")") || fail "apt-get install ./$(basename "$deb")"
	check_installed_files /
	while read -r f; do
		owner=$(dpkg -S "$f" 2>/dev/null | cut -d: -f1 || true)
		[ "$owner" = "$package" ] || fail "$f belongs to ${owner:-no package}, not $package"
	done <"$work/installed.extension"
	# dpkg --verify reports a changed file but still exits with 0.
	changed=$(dpkg --verify "$package")
	[ -z "$changed" ] || fail "installed files differ from the package: $changed"
else
	root=$work/root
	bindir=$root/usr/lib/postgresql/$PG_MAJOR/bin
	log "checking that the package's dependencies are installed (apt-get install -s)"
	as_root apt-get install -s -q "$deb" >"$work/apt-simulate.log" 2>&1 || {
		cat "$work/apt-simulate.log"
		fail "apt-get cannot install $(basename "$deb")"
	}
	others=$(grep -E '^(Inst|Remv|Conf) ' "$work/apt-simulate.log" | grep -v "^\(Inst\|Conf\) $package " || true)
	[ -z "$others" ] || fail "installing the package would also change: $others"
	grep -q "^Inst $package " "$work/apt-simulate.log" || {
		cat "$work/apt-simulate.log"
		fail "apt-get would not install $package"
	}

	log "copying PostgreSQL $PG_MAJOR without inbox_outbox to $root"
	mkdir -p "$root/usr/lib/postgresql" "$root/usr/share/postgresql"
	tar -C /usr/lib/postgresql -cf - --exclude='inbox_outbox*' "$PG_MAJOR" | tar -C "$root/usr/lib/postgresql" -xf -
	tar -C /usr/share/postgresql -cf - --exclude='inbox_outbox*' "$PG_MAJOR" | tar -C "$root/usr/share/postgresql" -xf -
	[ -z "$(installed_extension_files "$root")" ] || fail "the copy of PostgreSQL in $root has files of inbox_outbox"

	log "extracting $(basename "$deb") into $root"
	dpkg-deb -x "$deb" "$root"
	dpkg-deb -e "$deb" "$work/DEBIAN"
	check_installed_files "$root"
	(cd "$root" && md5sum -c --quiet "$work/DEBIAN/md5sums") || fail "files in $root differ from the package's md5sums"
	chmod -R a+rX "$root"
fi
[ "$("$bindir/pg_config" --pkglibdir)" = "${root:-}/usr/lib/postgresql/$PG_MAJOR/lib" ] ||
	fail "$bindir/pg_config does not find the libraries where the package put them"

# -- Demo ------------------------------------------------------------------

demo=$work/demo
log "running the demo against the installed package in $demo (log: $work/demo.log)"
status=0
INBOX_OUTBOX_INSTALLED=1 INBOX_OUTBOX_PG_BINDIR=$bindir INBOX_OUTBOX_DEMO_DIR=$demo \
	timeout -k 30 "$demo_timeout" bash "$src/scripts/demo.sh" >"$work/demo.log" 2>&1 || status=$?
cat "$work/demo.log"
[ "$status" -eq 0 ] || fail "the demo exited with status $status"

built=$(cd "$demo" && find . \( -name Makefile -o -name '*.c' -o -name '*.h' -o -name '*.o' \
	-o -name "*.so" -o -name '*.bc' -o -name 'inbox_outbox*' -o -name debian \) -print)
[ -z "$built" ] || fail "the demo ran in a directory with sources or build products: $built"
grep -q "using the installed extension ($("$bindir/pg_config" --sharedir)/extension/inbox_outbox.control)" \
	"$work/demo.log" || fail "the demo did not use the installed extension"

# What reached Kafka: one line per message, "partition P  key K  headers H
# value V".  Exactly the four committed events, each with an event_id, and
# per key in the order they were committed.
grep -E '^   partition [0-9]+  key ' "$work/demo.log" >"$work/kafka.messages" || true
[ "$(wc -l <"$work/kafka.messages")" -eq 4 ] || fail "Kafka received $(wc -l <"$work/kafka.messages") messages, not 4"
[ "$(grep -Ec 'headers ([^ ]*,)?event_id=[0-9A-HJKMNP-TV-Z]{26}([, ]|$)' "$work/kafka.messages")" -eq 4 ] ||
	fail "not every message carries an event_id header with a ULID"
awk '{ print $4 ":" $0 }' "$work/kafka.messages" | sed -E 's/^([^:]*):.*"event": "([A-Za-z]*)".*/\1 \2/' \
	>"$work/kafka.events"
printf '%s\n' "order-1 OrderCreated" "order-1 OrderPaid" >"$work/expected.order-1"
printf '%s\n' "order-3 OrderCreated" "order-3 OrderShipped" >"$work/expected.order-3"
for key in order-1 order-3; do
	grep "^$key " "$work/kafka.events" | diff -u "$work/expected.$key" - ||
		fail "the events of $key did not reach Kafka once each in commit order"
done
grep -q 'key order-1 .*trace_id=demo-42' "$work/kafka.messages" || fail "the trace_id header did not reach Kafka"

# The relay acknowledged and deleted everything: nothing pending or failed.
relay_status=$(awk '/^ state +\| pending +\| published +\| failed +\| dead_letters/ {
	getline; getline; gsub(/ /, ""); print; exit }' "$work/demo.log")
[[ $relay_status =~ ^[a-z]+\|0\|4\|0\|0$ ]] ||
	fail "relay_status (state|pending|published|failed|dead_letters) is $relay_status, not 4 published and nothing else"

# The consumer crashed after applying 2 events without committing its
# offsets; its second run got them again, applied the 2 others and absorbed
# the redelivered ones (1 or 2, depending on whether an offset commit came
# before the crash).
grep -Eq '^   crashing after 2 applied, 0 duplicates$' "$work/demo.log" || fail "the consumer's first run did not apply 2 events"
absorbed=$(sed -nE 's/^   applied 2, duplicates absorbed ([12]), skipped 0, dead-lettered 0$/\1/p' "$work/demo.log")
[ -n "$absorbed" ] || fail "the consumer's second run did not apply 2 events and absorb the redelivered ones"
grep -Eq "^ billing +\| +4 +\| +$absorbed\$" "$work/demo.log" ||
	fail "inbox_consumers does not show 4 claims and $absorbed duplicates absorbed for billing"
grep -Eq '^ order-1 +\| +10$' "$work/demo.log" && grep -Eq '^ order-3 +\| +0$' "$work/demo.log" ||
	fail "order_totals is not order-1 10, order-3 0: an event was applied twice or not at all"

log "the package $(basename "$deb") passed ($mode mode)"
