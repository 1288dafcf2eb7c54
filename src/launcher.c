/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: a static background worker that keeps one relay running
 *	  for every database in which the extension is installed, and the
 *	  ingestion workers of its subscriptions.
 *
 * The launcher connects to no database, so it can only read shared
 * catalogs: it lists the databases that accept connections (optionally
 * only those named in inbox_outbox.databases) and starts a relay for each.
 * A relay that finds no extension in its database records that and exits;
 * the launcher frees its slot, so that the slots go to databases that have
 * the extension, and leaves that database alone until some transaction
 * creates or updates the extension, which bumps a generation counter in
 * shared memory and wakes the launcher at commit (see
 * relay_launcher_wakeup()).  So CREATE EXTENSION starts a relay without a
 * server restart, and DROP EXTENSION stops it (the relay notices on its
 * next round).  A database left without a relay for want of a slot or a
 * background worker is named in a WARNING once and shown in its
 * inbox_outbox.relay_status.
 *
 * A relay that exits for any other reason (an error, a lost broker
 * configuration) is started again after RELAY_RESTART_DELAY.  A relay that
 * is killed outright takes the whole server through crash recovery, as any
 * backend would; the launcher is restarted by the postmaster and starts
 * the relays again.
 *
 * Ingestion workers: the launcher cannot read a database's subscriptions,
 * so it starts a worker for every slot in shared memory that is wanted and
 * has none (ingest_admin.c fills the slots when a subscription's change
 * commits, and the relay when it starts), and frees the slots that are no
 * longer wanted once their worker has left.  A worker that stopped for good
 * (its handler is unusable, a retention gap) is not started again until
 * its subscription changes.
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

#include "database_ops.h"
#include "inbox_outbox.h"
#include "shared_state.h"

PGDLLEXPORT void inbox_outbox_launcher_main(Datum main_arg);

#define RELAY_RESTART_DELAY		2000	/* ms */
#define LAUNCHER_NAP			10000	/* ms between database rescans */
#define HOLD_RECHECK			1000	/* ms between looks at a held database */

/* The launcher's private view of a slot. */
typedef struct LauncherEntry
{
	BackgroundWorkerHandle *handle;
	TimestampTz restart_at;
	bool		seen;			/* database still listed in this scan */
} LauncherEntry;

static LauncherEntry entries[RELAY_MAX_DATABASES];

/* ... and of an ingestion worker's slot. */
static LauncherEntry ingest_entries[INGEST_MAX_WORKERS];

typedef struct ListedDatabase
{
	Oid			dbid;
	NameData	name;
} ListedDatabase;

/*
 * Databases whose relay found no extension, with the extension generation
 * it saw.  They hold no slot, so that the slots go to databases that have
 * the extension; a CREATE or ALTER EXTENSION anywhere bumps the generation,
 * and they are tried again.
 */
typedef struct AbsentDatabase
{
	Oid			dbid;
	uint32		generation;
} AbsentDatabase;

static List *absent_databases = NIL;

/* Databases already warned about for want of a slot, or of a worker. */
static List *warned_no_slot = NIL;
static List *warned_no_worker = NIL;

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

/* The databases that may have a relay, as ListedDatabase. */
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
		{
			ListedDatabase *d = palloc(sizeof(ListedDatabase));

			d->dbid = db->oid;
			namestrcpy(&d->name, NameStr(db->datname));
			result = lappend(result, d);
		}
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

/*
 * Start a worker of the relay library (the relay or an ingestion worker)
 * for entry e, which holds its handle, or the time to try again.
 */
static bool
start_worker(LauncherEntry *e, const char *function, const char *type,
			 const char *name, Datum arg)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "inbox_outbox_relay", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker.bgw_name, name, BGW_MAXLEN);
	strlcpy(worker.bgw_type, type, BGW_MAXLEN);
	worker.bgw_main_arg = arg;
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &e->handle))
	{
		e->handle = NULL;
		e->restart_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													RELAY_RESTART_DELAY);
		return false;
	}
	return true;
}

static bool
start_relay(int i, Oid dbid)
{
	char		name[BGW_MAXLEN];

	snprintf(name, sizeof(name), "inbox_outbox relay for database %u", dbid);
	return start_worker(&entries[i], "inbox_outbox_relay_main", "inbox_outbox relay",
						name, ObjectIdGetDatum(dbid));
}

static bool
start_ingest(int i)
{
	IngestSlot *slot = &inbox_outbox_shared->ingest[i];
	char		name[BGW_MAXLEN];

	snprintf(name, sizeof(name), "inbox_outbox ingest %s/%d",
			 slot->subscription, slot->worker);
	return start_worker(&ingest_entries[i], "inbox_outbox_ingest_main", "inbox_outbox ingest",
						name, Int32GetDatum(i));
}

/*
 * Start the ingestion workers that are wanted and not running (again after
 * RELAY_RESTART_DELAY if one exited, never while one stopped for good and
 * its subscription did not change since), and free the slots of those no
 * longer wanted once their worker is gone.  The caller holds the lock.
 * Returns how long to sleep at most.
 */
static long
launcher_ingest_pass(TimestampTz now)
{
	long		nap = LAUNCHER_NAP;

	for (int i = 0; i < INGEST_MAX_WORKERS; i++)
	{
		IngestSlot *slot = &inbox_outbox_shared->ingest[i];
		LauncherEntry *e = &ingest_entries[i];

		if (slot->dbid == InvalidOid)
			continue;
		if (e->handle != NULL)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(e->handle, &pid) != BGWH_STOPPED)
				continue;
			pfree(e->handle);
			e->handle = NULL;
			e->restart_at = TimestampTzPlusMilliseconds(now, RELAY_RESTART_DELAY);
		}
		if (!slot->wanted)
		{
			/* a worker an earlier launcher started leaves by itself */
			if (slot->pid == 0)
			{
				memset(slot, 0, sizeof(IngestSlot));
				memset(e, 0, sizeof(LauncherEntry));
			}
			else
				nap = Min(nap, 100);
			continue;
		}
		if (slot->pid != 0)
			continue;
		if (slot->stopped && slot->stopped_generation == slot->generation)
			continue;
		/*
		 * Only where a relay may run: a database dropped, left out of
		 * inbox_outbox.databases or closed to connections gives its slots
		 * back (its relay asks for them again when it starts there).
		 */
		if (relay_slot_find(slot->dbid) == NULL)
		{
			memset(slot, 0, sizeof(IngestSlot));
			memset(e, 0, sizeof(LauncherEntry));
			continue;
		}
		if (e->restart_at > now)
		{
			nap = Min(nap, Max((long) ((e->restart_at - now) / 1000), 10));
			continue;
		}
		if (database_op_holds(slot->dbid))
		{
			nap = Min(nap, HOLD_RECHECK);
			continue;
		}
		slot->stopped = false;
		if (!start_ingest(i))
		{
			slot->state = INGEST_NO_WORKER;
			nap = Min(nap, RELAY_RESTART_DELAY);
		}
	}
	return nap;
}

static AbsentDatabase *
find_absent(Oid dbid)
{
	ListCell   *lc;

	foreach(lc, absent_databases)
	{
		AbsentDatabase *a = lfirst(lc);

		if (a->dbid == dbid)
			return a;
	}
	return NULL;
}

static void
forget_absent(Oid dbid)
{
	AbsentDatabase *a = find_absent(dbid);

	if (a != NULL)
	{
		absent_databases = list_delete_ptr(absent_databases, a);
		pfree(a);
	}
}

static void
note_absent(Oid dbid, uint32 generation)
{
	AbsentDatabase *a = find_absent(dbid);

	if (a == NULL)
	{
		a = MemoryContextAlloc(TopMemoryContext, sizeof(AbsentDatabase));
		a->dbid = dbid;
		absent_databases = lappend(absent_databases, a);
	}
	a->generation = generation;
}

/*
 * Say once, not at every pass, that a database gets no relay, and why;
 * also record it in shared memory for inbox_outbox.relay_status.  Caller
 * holds the lock.
 */
static void
starve(const ListedDatabase *db, RelayStarvation why)
{
	if (inbox_outbox_shared->nstarved < RELAY_MAX_DATABASES)
	{
		inbox_outbox_shared->starved[inbox_outbox_shared->nstarved].dbid = db->dbid;
		inbox_outbox_shared->starved[inbox_outbox_shared->nstarved].why = why;
		inbox_outbox_shared->nstarved++;
	}
	{
		List	  **warned = (why == RELAY_STARVED_NO_SLOT) ?
			&warned_no_slot : &warned_no_worker;

		if (list_member_oid(*warned, db->dbid))
			return;
		*warned = lappend_oid(*warned, db->dbid);
	}
	if (why == RELAY_STARVED_NO_SLOT)
		ereport(WARNING,
				errmsg("inbox_outbox launcher has no free relay slot for database \"%s\"",
					   NameStr(db->name)),
				errdetail("At most %d databases with the extension can have a relay at the same time.",
						  RELAY_MAX_DATABASES),
				errhint("Leave databases out with inbox_outbox.databases."));
	else
		ereport(WARNING,
				errmsg("inbox_outbox launcher could not start a relay for database \"%s\"",
					   NameStr(db->name)),
				errdetail("No background worker slot is free."),
				errhint("Raise max_worker_processes: the launcher and one relay per database with the extension need one each, besides parallel query and other extensions."));
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
	inbox_outbox_shared->nstarved = 0;

	foreach(lc, databases)
	{
		ListedDatabase *db = lfirst(lc);
		AbsentDatabase *absent = find_absent(db->dbid);
		LauncherEntry *e;
		RelaySlot  *slot;
		int			i;

		if (absent != NULL && absent->generation == generation)
			continue;
		i = slot_for_database(db->dbid);
		if (i < 0)
		{
			starve(db, RELAY_STARVED_NO_SLOT);
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
				/* no extension here: give the slot to a database that has it */
				note_absent(db->dbid, slot->seen_generation);
				memset(slot, 0, sizeof(RelaySlot));
				memset(e, 0, sizeof(LauncherEntry));
				continue;
			}
			e->restart_at = TimestampTzPlusMilliseconds(now, RELAY_RESTART_DELAY);
		}

		/* a relay started by an earlier launcher that exited */
		if (e->handle == NULL && slot->pid != 0)
			continue;
		if (e->restart_at > now)
		{
			long		wait = (long) ((e->restart_at - now) / 1000);

			nap = Min(nap, Max(wait, 10));
			if (slot->state == RELAY_NO_WORKER)
				starve(db, RELAY_STARVED_NO_WORKER);
			continue;
		}
		/* a DROP, RENAME, ... of the database is under way (database_ops.c) */
		if (database_op_holds(db->dbid))
		{
			nap = Min(nap, HOLD_RECHECK);
			continue;
		}
		forget_absent(db->dbid);
		slot->no_extension = false;
		if (start_relay(i, db->dbid))
		{
			slot->state = RELAY_STOPPED;
			warned_no_slot = list_delete_oid(warned_no_slot, db->dbid);
			warned_no_worker = list_delete_oid(warned_no_worker, db->dbid);
		}
		else
		{
			slot->state = RELAY_NO_WORKER;
			starve(db, RELAY_STARVED_NO_WORKER);
		}
	}

	/* forget databases without the extension that are no longer listed */
	foreach(lc, absent_databases)
	{
		AbsentDatabase *a = lfirst(lc);
		bool		listed = false;
		ListCell   *dc;

		foreach(dc, databases)
		{
			if (((ListedDatabase *) lfirst(dc))->dbid == a->dbid)
				listed = true;
		}
		if (!listed)
		{
			absent_databases = foreach_delete_current(absent_databases, lc);
			pfree(a);
		}
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
	nap = Min(nap, launcher_ingest_pass(now));
	LWLockRelease(inbox_outbox_shared->lock);

	list_free_deep(databases);
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
