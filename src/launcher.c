/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: a static background worker that keeps one relay running
 *	  for every database in which the extension is installed.
 *
 * The launcher connects to no database, so it can only read shared
 * catalogs: it lists the databases that accept connections (optionally
 * only those named in inbox_outbox.databases) and starts a relay for each.
 * A relay that finds no extension in its database records that and exits;
 * the launcher leaves that database alone until some transaction creates or
 * updates the extension, which bumps a generation counter in shared memory
 * and wakes the launcher at commit (see relay_launcher_wakeup()).  So
 * CREATE EXTENSION starts a relay without a server restart, and DROP
 * EXTENSION stops it (the relay notices on its next round).
 *
 * A relay that exits for any other reason (an error, a lost broker
 * configuration) is started again after RELAY_RESTART_DELAY.  A relay that
 * is killed outright takes the whole server through crash recovery, as any
 * backend would; the launcher is restarted by the postmaster and starts
 * the relays again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "inbox_outbox.h"
#include "shared_state.h"

PGDLLEXPORT void inbox_outbox_launcher_main(Datum main_arg);

#define RELAY_RESTART_DELAY		2000	/* ms */
#define LAUNCHER_NAP			10000	/* ms between database rescans */

/* The launcher's private view of a slot. */
typedef struct LauncherEntry
{
	BackgroundWorkerHandle *handle;
	TimestampTz restart_at;
	bool		absent;			/* no extension at generation absent_gen */
	uint32		absent_gen;
	bool		seen;			/* database still listed in this scan */
} LauncherEntry;

static LauncherEntry entries[RELAY_MAX_DATABASES];

void
launcher_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "inbox_outbox", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "inbox_outbox_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "inbox_outbox launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "inbox_outbox launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static bool
database_allowed(const char *name, List *allowed)
{
	ListCell   *lc;

	if (allowed == NIL)
		return true;
	foreach(lc, allowed)
	{
		if (strcmp((char *) lfirst(lc), name) == 0)
			return true;
	}
	return false;
}

/* The OIDs of the databases that may have a relay. */
static List *
list_databases(void)
{
	List	   *result = NIL;
	List	   *allowed = NIL;
	char	   *rawlist;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext caller = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	pgstat_report_activity(STATE_RUNNING, "inbox_outbox launcher: listing databases");

	/*
	 * The check hook refuses a bad list, so this cannot fail; were it to,
	 * no database is a safer answer than every database.
	 */
	if (inbox_outbox_refused_at_start & REFUSED_DATABASES)
	{
		static bool logged = false;

		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		if (logged)
			return NIL;
		logged = true;
		ereport(LOG,
				errmsg("inbox_outbox launcher starts no relay: the value of inbox_outbox.databases in the configuration file was refused when the server started"),
				errhint("Correct inbox_outbox.databases and reload the configuration."));
		return NIL;
	}

	rawlist = pstrdup(inbox_outbox_databases);
	if (!SplitIdentifierString(rawlist, ',', &allowed))
	{
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		elog(LOG, "invalid list syntax in parameter \"%s\"", "inbox_outbox.databases");
		return NIL;
	}

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;

		if (!db->datallowconn || db->datistemplate)
			continue;
		if (!database_allowed(NameStr(db->datname), allowed))
			continue;
		old = MemoryContextSwitchTo(caller);
		result = lappend_oid(result, db->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return result;
}

/* Find the slot of a database, assigning a free one if needed. */
static int
slot_for_database(Oid dbid)
{
	int			free_slot = -1;

	for (int i = 0; i < RELAY_MAX_DATABASES; i++)
	{
		Oid			slot_db = inbox_outbox_shared->relays[i].dbid;

		if (slot_db == dbid)
			return i;
		if (slot_db == InvalidOid && free_slot < 0 && entries[i].handle == NULL)
			free_slot = i;
	}
	if (free_slot >= 0)
	{
		RelaySlot  *slot = &inbox_outbox_shared->relays[free_slot];

		memset(slot, 0, sizeof(RelaySlot));
		slot->dbid = dbid;
		slot->state = RELAY_STOPPED;
		memset(&entries[free_slot], 0, sizeof(LauncherEntry));
	}
	return free_slot;
}

static void
start_relay(int i, Oid dbid)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "inbox_outbox_relay", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "inbox_outbox_relay_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "inbox_outbox relay for database %u", dbid);
	strlcpy(worker.bgw_type, "inbox_outbox relay", BGW_MAXLEN);
	worker.bgw_main_arg = ObjectIdGetDatum(dbid);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &entries[i].handle))
	{
		entries[i].handle = NULL;
		entries[i].restart_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															RELAY_RESTART_DELAY);
		ereport(WARNING,
				errmsg("inbox_outbox launcher could not start a relay for database %u", dbid),
				errhint("Raise max_worker_processes."));
	}
}

/*
 * One pass: start the relays that should run, stop those whose database is
 * no longer listed.  Returns how long to sleep.
 */
static long
launcher_pass(void)
{
	List	   *databases = list_databases();
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	long		nap = LAUNCHER_NAP;
	uint32		generation;

	for (int i = 0; i < RELAY_MAX_DATABASES; i++)
		entries[i].seen = false;

	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	generation = inbox_outbox_shared->extension_generation;

	foreach(lc, databases)
	{
		Oid			dbid = lfirst_oid(lc);
		int			i = slot_for_database(dbid);
		LauncherEntry *e;
		RelaySlot  *slot;

		if (i < 0)
		{
			ereport(WARNING,
					errmsg("inbox_outbox launcher has no free relay slot for database %u", dbid),
					errdetail("At most %d databases can have a relay.", RELAY_MAX_DATABASES));
			continue;
		}
		e = &entries[i];
		slot = &inbox_outbox_shared->relays[i];
		e->seen = true;

		if (e->handle != NULL)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(e->handle, &pid) != BGWH_STOPPED)
				continue;
			pfree(e->handle);
			e->handle = NULL;
			if (slot->no_extension)
			{
				e->absent = true;
				e->absent_gen = slot->seen_generation;
			}
			else
				e->restart_at = TimestampTzPlusMilliseconds(now, RELAY_RESTART_DELAY);
		}

		if (e->absent && e->absent_gen == generation)
			continue;
		/* a relay started by an earlier launcher that exited */
		if (e->handle == NULL && slot->pid != 0)
			continue;
		if (e->restart_at > now)
		{
			long		wait = (long) ((e->restart_at - now) / 1000);

			nap = Min(nap, Max(wait, 10));
			continue;
		}
		e->absent = false;
		slot->no_extension = false;
		start_relay(i, dbid);
	}

	/* databases dropped or no longer listed: stop their relay, free the slot */
	for (int i = 0; i < RELAY_MAX_DATABASES; i++)
	{
		RelaySlot  *slot = &inbox_outbox_shared->relays[i];

		if (slot->dbid == InvalidOid || entries[i].seen)
			continue;

		/*
		 * A relay still in the slot (one an earlier launcher started, so
		 * without a handle here) keeps it until it exits: freeing it now
		 * could let a second relay start for the same database.
		 */
		if (entries[i].handle == NULL && slot->pid != 0)
		{
			if (kill(slot->pid, SIGTERM) != 0 && errno == ESRCH)
				slot->pid = 0;
			else
			{
				nap = Min(nap, 100);
				continue;
			}
		}
		if (entries[i].handle != NULL)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(entries[i].handle, &pid) != BGWH_STOPPED)
			{
				TerminateBackgroundWorker(entries[i].handle);
				nap = Min(nap, 100);
				continue;
			}
			pfree(entries[i].handle);
			entries[i].handle = NULL;
		}
		memset(slot, 0, sizeof(RelaySlot));
	}
	LWLockRelease(inbox_outbox_shared->lock);

	list_free(databases);
	return nap;
}

void
inbox_outbox_launcher_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	inbox_outbox_shared->launcher_latch = MyLatch;
	inbox_outbox_shared->launcher_pid = MyProcPid;
	LWLockRelease(inbox_outbox_shared->lock);

	ereport(LOG, errmsg("inbox_outbox launcher started"));

	while (!ShutdownRequestPending)
	{
		long		nap;

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		nap = launcher_pass();

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 nap, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	inbox_outbox_shared->launcher_latch = NULL;
	inbox_outbox_shared->launcher_pid = 0;
	LWLockRelease(inbox_outbox_shared->lock);

	/*
	 * Exit code 1, so that the postmaster starts the launcher again after
	 * bgw_restart_time unless the server is shutting down: a launcher
	 * stopped by pg_terminate_backend() would otherwise leave every
	 * database without a relay until the next restart.
	 */
	proc_exit(1);
}
