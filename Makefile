# inbox_outbox: transactional outbox and inbox for Kafka, as a PostgreSQL
# extension.  Build with PGXS, against PostgreSQL 15 to 18:
#
#   make && make install && make installcheck
#
# installcheck starts its own temporary server with the library preloaded
# (see test/regress.conf) and then runs the TAP tests in test/t.

EXTENSION = inbox_outbox
EXTVERSION = 1.0

# Code without state that both libraries use, linked into each (the relay
# library takes nothing from inbox_outbox.so but through src/relay_api.h).
COMMON_OBJS = src/kafka_config.o src/spi_plan.o src/ulid_text.o

# inbox_outbox.so: everything an application backend may load.
MODULE_big = inbox_outbox
OBJS = \
	src/inbox_outbox.o \
	src/database_ops.o \
	src/guc_check.o \
	src/log_redact.o \
	src/launcher.o \
	src/inbox.o \
	src/ingest_admin.o \
	src/ingest_handler.o \
	src/ingest_status.o \
	src/outbox.o \
	src/outbox_floor.o \
	src/outbox_identity.o \
	src/publish_hint.o \
	src/relay_api.o \
	src/relay_status.o \
	src/shared_state.o \
	src/standby_wait.o \
	src/ulid.o \
	src/ulid_ops.o \
	$(COMMON_OBJS)

# inbox_outbox_relay.so: the relay worker, the only code linked with
# librdkafka.  Only the relay process loads it.  Both libraries hide their
# symbols, so the relay reaches the parameters, shared memory and functions
# of inbox_outbox.so (always preloaded there) through the table that
# src/relay_api.c hands it.
RELAY_LIB = inbox_outbox_relay$(DLSUFFIX)
RELAY_OBJS = src/relay.o src/relay_store.o src/relay_progress.o \
	src/ingest.o src/ingest_store.o src/kafka_consumer.o \
	src/relay_faults.o src/progress_record.o src/kafka.o src/kafka_client.o \
	src/kafka_headers.o src/kafka_topic.o $(COMMON_OBJS)

# librdkafka, as pkg-config finds it (set PKG_CONFIG_PATH for another copy).
PKG_CONFIG ?= pkg-config
RDKAFKA_CFLAGS := $(shell $(PKG_CONFIG) --cflags rdkafka 2>/dev/null)
RDKAFKA_LIBS := $(shell $(PKG_CONFIG) --libs rdkafka 2>/dev/null)
PG_CPPFLAGS = $(RDKAFKA_CFLAGS)

DATA = $(wildcard inbox_outbox--*.sql)

# Each file starts from the extension as --load-extension creates it and
# leaves it so (test/regress_alone.sh runs each file on its own).
REGRESS = extension_versions ulid_io ulid_ops ulid_gen ulid_schema \
	outbox_publish inbox privileges saved_plans outbox_copies client_params ingest
REGRESS_OPTS = \
	--temp-instance=$(CURDIR)/tmp_check_regress \
	--temp-config=$(srcdir)/test/regress.conf \
	--load-extension=$(EXTENSION)

ISOLATION = inbox_claim
ISOLATION_OPTS = \
	--temp-instance=$(CURDIR)/tmp_check_isolation \
	--temp-config=$(srcdir)/test/regress.conf

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

# PostgreSQL's own headers are not -Wextra clean for unused parameters.
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter
ifdef WERROR
PG_CFLAGS += -Werror
endif

EXTRA_CLEAN = tmp_check_regress tmp_check_isolation tmp_check_alone output_iso $(RELAY_LIB) $(RELAY_OBJS) $(RELAY_OBJS:.o=.bc) \
	$(addprefix test/ulid_clock/test_ulid_clock,.o .bc $(DLSUFFIX)) \
	$(addprefix test/relay_faults/test_relay_faults,.o .bc $(DLSUFFIX))

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
include $(srcdir)/pgxs_compat.mk

all: $(RELAY_LIB)

# PGXS tracks no header dependencies unless PostgreSQL was configured with
# --enable-depend; a stale object with an old shared-memory layout is a
# silent memory corruption, so every object depends on every header.
$(OBJS) $(RELAY_OBJS): $(wildcard $(srcdir)/src/*.h)

$(RELAY_LIB): $(RELAY_OBJS)
	@test -n "$(RDKAFKA_LIBS)" || { echo "$(PKG_CONFIG) does not know librdkafka: install librdkafka-dev (Debian), or set PKG_CONFIG_PATH to the directory of its rdkafka.pc" >&2; exit 1; }
	$(CC) $(CFLAGS) $(RELAY_OBJS) $(LDFLAGS) $(LDFLAGS_SL) -shared -o $@ $(RDKAFKA_LIBS)

install: install-relay
install-relay: $(RELAY_LIB)
	$(INSTALL_SHLIB) $(RELAY_LIB) '$(DESTDIR)$(pkglibdir)/$(RELAY_LIB)'

uninstall: uninstall-relay
uninstall-relay:
	rm -f '$(DESTDIR)$(pkglibdir)/$(RELAY_LIB)'

# Test-only helpers, built in place and never installed.
test-helpers:
	$(MAKE) -C test/ulid_clock PG_CONFIG=$(PG_CONFIG) $(if $(WERROR),WERROR=1)
	$(MAKE) -C test/relay_faults PG_CONFIG=$(PG_CONFIG) $(if $(WERROR),WERROR=1)
	$(MAKE) -C test/mock_cluster

installcheck: test-helpers

# Each regression file alone, in an instance of its own.
installcheck-alone: test-helpers
	bash $(srcdir)/test/regress_alone.sh '$(PG_CONFIG)' $(REGRESS)

# The TAP tests run on PostgreSQL's own test modules (PostgreSQL::Test::
# Cluster).  PG_TEST_PERL is where they are: by default where PGXS keeps
# them, which a PostgreSQL built without --enable-tap-tests lacks (its PGXS
# would then skip the TAP tests without failing); the modules of 15 drive
# 16 and 18 as well.  This replaces PGXS's own recipe, which sets TESTDIR
# only up to 15 and TESTLOGDIR and TESTDATADIR only from 16.
PG_TEST_PERL ?= $(top_srcdir)/src/test/perl
ifeq ($(strip $(PROVE)),)
PROVE = prove
endif
PG_PROVE_FLAGS = -I '$(PG_TEST_PERL)' -I $(srcdir)/test/perl
# each test's time in the log, which tells where CI's minutes go
PROVE_FLAGS += --timer

define prove_installcheck
@test -f '$(PG_TEST_PERL)/PostgreSQL/Test/Cluster.pm' || { echo "PostgreSQL's TAP test modules are not in $(PG_TEST_PERL): set PG_TEST_PERL to the directory holding PostgreSQL/Test/Cluster.pm (Debian: /usr/lib/postgresql/15/lib/pgxs/src/test/perl, from postgresql-client-15)" >&2; exit 1; }
rm -rf '$(CURDIR)'/tmp_check && \
$(MKDIR_P) '$(CURDIR)'/tmp_check && \
cd $(srcdir) && \
   TESTDIR='$(CURDIR)' TESTLOGDIR='$(CURDIR)/tmp_check/log' \
   TESTDATADIR='$(CURDIR)/tmp_check' PATH="$(bindir):$(CURDIR):$$PATH" \
   PGPORT='6$(DEF_PGPORT)' PG_REGRESS='$(top_builddir)/src/test/regress/pg_regress' \
   $(PROVE) $(PG_PROVE_FLAGS) $(PROVE_FLAGS) $(if $(PROVE_TESTS),$(PROVE_TESTS),t/*.pl)
endef

.PHONY: test-helpers install-relay uninstall-relay installcheck-alone

# libFuzzer harnesses of the parsers, built with clang outside the server
# (test/fuzz/README.md).  Each runs FUZZ_SECONDS on a copy of its corpus.
FUZZ_SECONDS ?= 60
fuzz:
	PG_CONFIG=$(PG_CONFIG) $(srcdir)/test/fuzz/run.sh $(FUZZ_SECONDS)

EXTRA_CLEAN += test/fuzz/build test/fuzz/work

.PHONY: fuzz

# The PGXN release archive of the committed tree (META.json, LICENSE and
# all); scripts/check_dist.sh builds it and checks it.
DISTVERSION = $(EXTVERSION).0
dist:
	git archive --format=zip --prefix=$(EXTENSION)-$(DISTVERSION)/ \
		-o $(EXTENSION)-$(DISTVERSION).zip HEAD

.PHONY: dist
