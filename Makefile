# inbox_outbox: transactional outbox and inbox for Kafka, as a PostgreSQL
# extension.  Build with PGXS:
#
#   make && make install && make installcheck
#
# installcheck starts its own temporary server with the library preloaded
# (see test/regress.conf) and then runs the TAP tests in test/t.

EXTENSION = inbox_outbox
EXTVERSION = 0.1

MODULE_big = inbox_outbox
OBJS = \
	src/inbox_outbox.o \
	src/shared_state.o \
	src/ulid.o

DATA = $(wildcard inbox_outbox--*.sql)

REGRESS = ulid_io ulid_ops ulid_gen ulid_schema
REGRESS_OPTS = \
	--temp-instance=$(CURDIR)/tmp_check_regress \
	--temp-config=$(srcdir)/test/regress.conf

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl
PROVE_FLAGS = -I $(srcdir)/test/perl

# PostgreSQL's own headers are not -Wextra clean for unused parameters.
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter
ifdef WERROR
PG_CFLAGS += -Werror
endif

EXTRA_CLEAN = tmp_check_regress test/ulid_clock/*.o test/ulid_clock/*.so

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Test-only helpers, built in place and never installed.
test-helpers:
	$(MAKE) -C test/ulid_clock PG_CONFIG=$(PG_CONFIG)
	$(MAKE) -C test/mock_cluster

installcheck: test-helpers

.PHONY: test-helpers
