# inbox_outbox: transactional outbox and inbox for Kafka, as a PostgreSQL
# extension.  Build with PGXS:
#
#   make && make install && make installcheck
#
# installcheck starts its own temporary server with the library preloaded
# (see test/regress.conf) and then runs the TAP tests in test/t.

EXTENSION = inbox_outbox
EXTVERSION = 0.4

# inbox_outbox.so: everything an application backend may load.
MODULE_big = inbox_outbox
OBJS = \
	src/inbox_outbox.o \
	src/database_ops.o \
	src/guc_check.o \
	src/log_redact.o \
	src/launcher.o \
	src/inbox.o \
	src/outbox.o \
	src/outbox_floor.o \
	src/outbox_identity.o \
	src/publish_hint.o \
	src/relay_status.o \
	src/shared_state.o \
	src/spi_plan.o \
	src/standby_wait.o \
	src/ulid.o \
	src/ulid_ops.o \
	src/ulid_text.o \
	src/kafka_config.o

# inbox_outbox_relay.so: the relay worker, the only code linked with
# librdkafka.  Only the relay process loads it; it resolves the shared-state,
# ulid, parameter and kafka_config symbols from inbox_outbox.so, which is
# always preloaded there.
RELAY_LIB = inbox_outbox_relay$(DLSUFFIX)
RELAY_OBJS = src/relay.o src/relay_store.o src/kafka.o src/kafka_headers.o

DATA = $(wildcard inbox_outbox--*.sql)

REGRESS = ulid_io ulid_ops ulid_gen ulid_schema outbox_publish inbox privileges saved_plans outbox_copies client_params
REGRESS_OPTS = \
	--temp-instance=$(CURDIR)/tmp_check_regress \
	--temp-config=$(srcdir)/test/regress.conf

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

EXTRA_CLEAN = tmp_check_regress tmp_check_isolation output_iso $(RELAY_LIB) $(RELAY_OBJS) $(RELAY_OBJS:.o=.bc)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# after pgxs.mk, which resets it
PROVE_FLAGS = -I $(srcdir)/test/perl

all: $(RELAY_LIB)

# PGXS tracks no header dependencies unless PostgreSQL was configured with
# --enable-depend; a stale object with an old shared-memory layout is a
# silent memory corruption, so every object depends on every header.
$(OBJS) $(RELAY_OBJS): $(wildcard $(srcdir)/src/*.h)

$(RELAY_LIB): $(RELAY_OBJS)
	$(CC) $(CFLAGS) $(RELAY_OBJS) $(LDFLAGS) $(LDFLAGS_SL) -shared -o $@ -lrdkafka

install: install-relay
install-relay: $(RELAY_LIB)
	$(INSTALL_SHLIB) $(RELAY_LIB) '$(DESTDIR)$(pkglibdir)/$(RELAY_LIB)'

uninstall: uninstall-relay
uninstall-relay:
	rm -f '$(DESTDIR)$(pkglibdir)/$(RELAY_LIB)'

# Test-only helpers, built in place and never installed.
test-helpers:
	$(MAKE) -C test/ulid_clock PG_CONFIG=$(PG_CONFIG)
	$(MAKE) -C test/mock_cluster

installcheck: test-helpers

.PHONY: test-helpers install-relay uninstall-relay

# libFuzzer harnesses of the parsers, built with clang outside the server
# (test/fuzz/README.md).  Each runs FUZZ_SECONDS on a copy of its corpus.
FUZZ_SECONDS ?= 60
fuzz:
	PG_CONFIG=$(PG_CONFIG) $(srcdir)/test/fuzz/run.sh $(FUZZ_SECONDS)

EXTRA_CLEAN += test/fuzz/build test/fuzz/work

.PHONY: fuzz
