# Shared by scripts/demo.sh and scripts/test.sh: install what is missing,
# build, install, and hand a copy of the tree to an unprivileged user
# (initdb refuses to run as root).

PG_MAJOR=15
PG_BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin
TEST_USER=${INBOX_OUTBOX_TEST_USER:-iotest}
PACKAGES=(
	build-essential
	postgresql-$PG_MAJOR
	postgresql-server-dev-$PG_MAJOR
	postgresql-contrib
	librdkafka-dev
	kcat
	libipc-run-perl
	openjdk-17-jdk-headless
	maven
)

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	else
		sudo "$@"
	fi
}

ensure_packages() {
	local missing=()
	for p in "${PACKAGES[@]}"; do
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
# owns; prints its path.
copy_tree_for_test_user() {
	local src=$1 dst=$2
	rm -rf "$dst"
	mkdir -p "$dst"
	tar -C "$src" -cf - --exclude=.git --exclude='tmp_check*' --exclude=results \
		--exclude='*.o' --exclude='*.so' --exclude='*.bc' . | tar -C "$dst" -xf -
	if [ "$(id -u)" -eq 0 ]; then
		id "$TEST_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$TEST_USER"
		chown -R "$TEST_USER": "$dst"
	fi
}
