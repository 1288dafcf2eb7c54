/*-------------------------------------------------------------------------
 *
 * test_relay_faults.c
 *	  Test-only module: stops the relay at a named fault point, by a crash,
 *	  an immediate shutdown of the server, or a stall.
 *
 * The exactly-once tests need the relay to fail at one exact place, such as
 * between the Kafka commit and the DELETE of the committed rows, which no
 * signal sent from outside can hit.  The relay calls RELAY_FAULT_POINT()
 * there (src/relay_faults.h), which calls this module's hook once the hook
 * table is in the rendezvous variable.  The module fills it from _PG_init
 * in the postmaster, so it must be in shared_preload_libraries (from the
 * build tree; it is never installed), and every relay inherits it.
 *
 * What happens is chosen by three settings, all reloadable:
 *
 *	test_relay_faults.at	 the point to act at; empty: none
 *	test_relay_faults.action crash: SIGKILL of the relay itself, after which
 *							 the postmaster restarts every backend, as after
 *							 kill -9; immediate: SIGQUIT to the postmaster,
 *							 which is pg_ctl stop -m immediate at that
 *							 instant; stall: wait on the latch until .at no
 *							 longer names the point, then go on
 *	test_relay_faults.skip	 hits of the point to let pass first
 *
 * Hits are counted by each relay process, from when .at last changed; a
 * relay started afresh counts from zero.  The module logs
 * "test_relay_faults: <action> at <point> (hit N)" before it acts, which is
 * what tests wait for.
 *
 * A stalled relay also takes a crash or immediate action where it stands
 * when .action is changed to one while .at still names the point.  Together
 * with a .skip that the next relay process cannot reach, changed in the
 * same reload, this crashes the relay once at the point without the relay
 * that the postmaster starts next crashing at it again.  A stalled relay
 * asked to stop leaves at once, without finishing what it was doing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"

#include "pg_compat.h"
#include "relay_faults.h"

PG_MODULE_MAGIC;

PGDLLEXPORT void _PG_init(void);

typedef enum FaultAction
{
	FAULT_CRASH,
	FAULT_IMMEDIATE,
	FAULT_STALL
} FaultAction;

static const struct config_enum_entry fault_actions[] = {
	{"crash", FAULT_CRASH, false},
	{"immediate", FAULT_IMMEDIATE, false},
	{"stall", FAULT_STALL, false},
	{NULL, 0, false}
};

/* How long the relay waits for the end it asked for before giving up. */
#define FAULT_END_WAIT_MS	60000

static char *fault_at = NULL;
static int	fault_action = FAULT_STALL;
static int	fault_skip = 0;

/* hits of the point .at names, in this process, since .at last changed */
static int	fault_hits = 0;

static void fault_hit(const char *point);

static const RelayFaultHooks fault_hooks = {
	.version = RELAY_FAULT_HOOKS_VERSION,
	.hit = fault_hit,
};

static void
fault_at_assign(const char *newval, void *extra)
{
	if (strcmp(newval, fault_at != NULL ? fault_at : "") != 0)
		fault_hits = 0;
}

/*
 * Wait for the end the relay asked for: the SIGKILL it sent itself, or the
 * SIGQUIT with which the postmaster answers an immediate shutdown (and its
 * SIGKILL a few seconds later).  Nothing else may run meanwhile, so no
 * interrupt is processed.
 */
pg_noreturn static void
fault_await_end(void)
{
	for (int waited = 0; waited < FAULT_END_WAIT_MS; waited += 100)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	elog(FATAL, "test_relay_faults: the relay was not ended within %d ms",
		 FAULT_END_WAIT_MS);
}

static void
fault_stall(const char *point)
{
	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ShutdownRequestPending)
		{
			ereport(LOG,
					errmsg("test_relay_faults: asked to stop while stalled at %s, leaving",
						   point));
			proc_exit(1);
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (strcmp(fault_at, point) != 0)
		{
			ereport(LOG,
					errmsg("test_relay_faults: released at %s", point));
			return;
		}
		if (fault_action != FAULT_STALL)
			return;
	}
}

static void
fault_act(const char *point)
{
	ereport(LOG,
			errmsg("test_relay_faults: %s at %s (hit %d)",
				   fault_actions[fault_action].name, point, fault_hits));

	switch ((FaultAction) fault_action)
	{
		case FAULT_CRASH:
			kill(MyProcPid, SIGKILL);
			fault_await_end();
			break;
		case FAULT_IMMEDIATE:
			kill(PostmasterPid, SIGQUIT);
			fault_await_end();
			break;
		case FAULT_STALL:
			fault_stall(point);
			/* a crash or an immediate shutdown asked for meanwhile */
			if (strcmp(fault_at, point) == 0 && fault_action != FAULT_STALL)
				fault_act(point);
			break;
	}
}

static void
fault_hit(const char *point)
{
	if (fault_at == NULL || strcmp(fault_at, point) != 0)
		return;
	fault_hits++;
	if (fault_hits <= fault_skip)
		return;
	fault_act(point);
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("test_relay_faults must be loaded through shared_preload_libraries"));

	DefineCustomStringVariable("test_relay_faults.at",
							   "Names the relay fault point to act at.",
							   "Empty: none.",
							   &fault_at,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, fault_at_assign, NULL);
	DefineCustomEnumVariable("test_relay_faults.action",
							 "What the relay does at the fault point.",
							 NULL,
							 &fault_action,
							 FAULT_STALL,
							 fault_actions,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("test_relay_faults.skip",
							"Hits of the fault point to let pass before acting.",
							NULL,
							&fault_skip,
							0, 0, INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("test_relay_faults");

	*(const RelayFaultHooks **)
		find_rendezvous_variable(RELAY_FAULT_HOOKS_RENDEZVOUS) = &fault_hooks;
}
