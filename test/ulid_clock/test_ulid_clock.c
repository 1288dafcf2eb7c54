/*-------------------------------------------------------------------------
 *
 * test_ulid_clock.c
 *	  Test-only module: pins the clock and the random source of gen_ulid().
 *
 * A clock that steps back and a random part that overflows cannot be
 * produced on demand with a real clock.  inbox_outbox publishes a hook slot
 * as a rendezvous variable; this module, loaded by the regression tests from
 * the build tree with LOAD, fills it.  It is never installed, so a
 * production server cannot reach the hooks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "pg_compat.h"
#include "ulid.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(test_ulid_pin_clock);
PG_FUNCTION_INFO_V1(test_ulid_pin_random);

static uint64 pinned_ms;
static unsigned char pinned_random[ULID_RANDOM_LEN];
static UlidTestHooks hooks;

static uint64
pinned_now_ms(void)
{
	return pinned_ms;
}

static void
pinned_fill_random(unsigned char *buf, size_t len)
{
	Assert(len == ULID_RANDOM_LEN);
	memcpy(buf, pinned_random, len);
}

static void
install_hooks(void)
{
	UlidTestHooks **slot;

	slot = (UlidTestHooks **) find_rendezvous_variable(ULID_TEST_HOOKS_RENDEZVOUS);
	*slot = (hooks.now_ms || hooks.fill_random) ? &hooks : NULL;
}

/* test_ulid_pin_clock(ms bigint): NULL releases the clock. */
Datum
test_ulid_pin_clock(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		hooks.now_ms = NULL;
	else
	{
		pinned_ms = (uint64) PG_GETARG_INT64(0);
		hooks.now_ms = pinned_now_ms;
	}
	install_hooks();
	PG_RETURN_VOID();
}

/* test_ulid_pin_random(bytes bytea): NULL releases the random source. */
Datum
test_ulid_pin_random(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		hooks.fill_random = NULL;
	else
	{
		bytea	   *bytes = PG_GETARG_BYTEA_PP(0);

		if (VARSIZE_ANY_EXHDR(bytes) != ULID_RANDOM_LEN)
			elog(ERROR, "expected %d random bytes", ULID_RANDOM_LEN);
		memcpy(pinned_random, VARDATA_ANY(bytes), ULID_RANDOM_LEN);
		hooks.fill_random = pinned_fill_random;
	}
	install_hooks();
	PG_RETURN_VOID();
}
