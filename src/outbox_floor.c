/*-------------------------------------------------------------------------
 *
 * outbox_floor.c
 *	  A lower bound for the relay's read: no row that the relay has not read
 *	  yet can have a lower id.
 *
 * The relay reads the outbox in id order.  Reading from the low end of the
 * primary key every round, it walks the index entries of the rows it
 * deleted until vacuum removes them, and while an old snapshot holds vacuum
 * back that is every row deleted since: with a million of them a round
 * takes 170 ms, and at 100 events/s the relay needs a whole core.  The ids
 * the relay has seen give no bound, because an id is taken before commit:
 * a transaction that took a low id and commits late would be skipped.  So
 * every transaction that writes an outbox row says so, here.
 *
 *	- A row trigger on the outbox (BEFORE INSERT OR UPDATE OF id, enabled
 *	  ALWAYS, so that it fires under session_replication_role = replica too)
 *	  records in the backend's entry the lowest id its open transaction has
 *	  written.
 *	- When the transaction has committed and become visible, the backend
 *	  moves that id into its database's committed bound and clears its
 *	  entry; on abort it clears the entry; on PREPARE TRANSACTION it moves
 *	  the id into the prepared bound, which holds until no prepared
 *	  transaction is left in the database.
 *	- At the start of a round the relay, holding the same lock, takes the
 *	  lowest id of its database's open entries, the committed bound (which
 *	  it empties) and the prepared bound, and takes the round's snapshot
 *	  before it lets go of the lock (outbox_floor_snapshot()).  It reads
 *	  from the lowest of these and of its own floor: the lowest id of the
 *	  rows it read and left in the table, or where its last read stopped
 *	  short (relay.c).
 *
 * Why no row is skipped: a row visible in the round's snapshot belongs to
 * a transaction that committed before the snapshot was taken.  That
 * transaction recorded the row's id, under the lock, before it committed.
 * If it had not yet moved the id into the committed bound when the relay
 * took the lock, its entry was still open; if it had, the committed bound
 * held the id.  Either way the read starts at or below the row.  A row
 * not visible in the snapshot comes up in a later round on the same terms,
 * and rows the relay read and left behind (a failure waiting for a retry,
 * rows a shutdown purged) keep its own floor down.
 *
 * What the trigger cannot see: rows written while it is disabled (ALTER
 * TABLE ... DISABLE TRIGGER ALL, which pg_restore --disable-triggers
 * runs).  So the relay also reads from the low end after any change to the
 * outbox's definition (a relcache invalidation: enabling the trigger again
 * is one), every 120 poll intervals, and whenever rows wait for a retry
 * (relay_store.c).  Prepared transactions
 * outlive a restart and the bounds in shared memory do not: a relay that
 * starts while its database has prepared transactions holds its floor at
 * the lowest id until none is left (outbox_floor_hold_for_prepared()).
 *
 * Locking: one LWLock, taken exclusively by a backend when its transaction
 * first writes an outbox row, when it writes a lower id than before, and
 * when it ends; and by each relay once a round.  No other lock is taken
 * while it is held, except the relay's ProcArrayLock for its snapshot,
 * which no holder of ProcArrayLock ever waits on this lock for.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/snapmgr.h"

#include "outbox_floor.h"
#include "pg_compat.h"
#include "shared_state.h"

PG_FUNCTION_INFO_V1(outbox_floor);

/* The lowest id an open transaction of a backend has written. */
typedef struct FloorBackend
{
	Oid			dbid;
	bool		open;
	pg_ulid		floor;
} FloorBackend;

/* A database whose relay runs. */
typedef struct FloorDatabase
{
	Oid			dbid;			/* InvalidOid: free */
	bool		has_committed;
	pg_ulid		committed;		/* lowest id committed since the last round */
	bool		has_prepared;
	pg_ulid		prepared;		/* lowest id of prepared transactions */
	uint64		prepares;		/* PREPAREs seen, to settle the bound */
} FloorDatabase;

typedef struct FloorShared
{
	LWLock	   *lock;
	FloorDatabase databases[RELAY_MAX_DATABASES];
	int			nbackends;
	FloorBackend backends[FLEXIBLE_ARRAY_MEMBER];	/* by process number */
} FloorShared;

static FloorShared *floor_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This backend's open transaction: whether it wrote a row, and its floor. */
static bool floor_open = false;
static pg_ulid floor_local;
static bool floor_callback_registered = false;

/* The relay's database entry, once attached. */
static FloorDatabase *floor_attached = NULL;

static Size
floor_shmem_size(void)
{
	return add_size(offsetof(FloorShared, backends),
					mul_size(sizeof(FloorBackend), MaxBackends));
}

static void
floor_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(MAXALIGN(floor_shmem_size()));
	RequestNamedLWLockTranche("inbox_outbox_floor", 1);
}

static void
floor_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	floor_shared = ShmemInitStruct("inbox_outbox_floor", floor_shmem_size(), &found);
	if (!found)
	{
		memset(floor_shared, 0, floor_shmem_size());
		floor_shared->lock = &(GetNamedLWLockTranche("inbox_outbox_floor"))->lock;
		floor_shared->nbackends = MaxBackends;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Install the hooks that create the shared state.  Called from _PG_init
 * while shared_preload_libraries is being processed.
 */
void
outbox_floor_request(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = floor_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = floor_shmem_startup;
}

static FloorDatabase *
find_database(Oid dbid)
{
	for (int i = 0; i < RELAY_MAX_DATABASES; i++)
	{
		if (floor_shared->databases[i].dbid == dbid)
			return &floor_shared->databases[i];
	}
	return NULL;
}

static void
lower(pg_ulid *bound, bool *has, const pg_ulid *id)
{
	if (!*has || ulid_compare(id, bound) < 0)
		*bound = *id;
	*has = true;
}

/* The transaction ended: hand its floor on, as its end requires. */
static void
floor_xact_callback(XactEvent event, void *arg)
{
	FloorDatabase *db;

	if (!floor_open)
		return;
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PREPARE)
		return;

	LWLockAcquire(floor_shared->lock, LW_EXCLUSIVE);
	db = find_database(MyDatabaseId);
	if (db != NULL && event == XACT_EVENT_COMMIT)
		lower(&db->committed, &db->has_committed, &floor_local);
	else if (db != NULL && event == XACT_EVENT_PREPARE)
	{
		lower(&db->prepared, &db->has_prepared, &floor_local);
		db->prepares++;
	}
	floor_shared->backends[MyProcNumber].open = false;
	LWLockRelease(floor_shared->lock);

	floor_open = false;
}

/* The open transaction wrote an outbox row with this id. */
static void
floor_note(const pg_ulid *id)
{
	FloorBackend *entry;

	if (floor_shared == NULL)
		return;					/* not preloaded: no relay runs */
	if (floor_open && ulid_compare(id, &floor_local) >= 0)
		return;					/* the common case: a higher id */

	if (!floor_callback_registered)
	{
		RegisterXactCallback(floor_xact_callback, NULL);
		floor_callback_registered = true;
	}
	if (MyProc == NULL || MyProcNumber >= floor_shared->nbackends)
		elog(ERROR, "inbox_outbox: no floor entry for process number %d",
			 MyProc ? (int) MyProcNumber : -1);

	entry = &floor_shared->backends[MyProcNumber];
	LWLockAcquire(floor_shared->lock, LW_EXCLUSIVE);
	entry->dbid = MyDatabaseId;
	entry->floor = *id;
	entry->open = true;
	LWLockRelease(floor_shared->lock);

	floor_local = *id;
	floor_open = true;
}

/*
 * inbox_outbox.outbox_floor(): BEFORE INSERT OR UPDATE OF id row trigger
 * on the outbox.
 */
Datum
outbox_floor(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	int			attnum;
	bool		isnull;
	Datum		id;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				errmsg("outbox_floor() must be fired as a BEFORE ROW trigger"));

	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	desc = RelationGetDescr(trigdata->tg_relation);
	attnum = SPI_fnumber(desc, "id");
	if (attnum <= 0 || TupleDescAttr(desc, attnum - 1)->attlen != ULID_LEN)
		ereport(ERROR,
				errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				errmsg("outbox_floor() must be fired on a table with a ulid column \"id\""));

	id = heap_getattr(tuple, attnum, desc, &isnull);
	if (!isnull)
		floor_note(DatumGetUlidP(id));

	return PointerGetDatum(tuple);
}

static void
floor_detach(int code, Datum arg)
{
	if (floor_attached == NULL)
		return;
	LWLockAcquire(floor_shared->lock, LW_EXCLUSIVE);
	floor_attached->dbid = InvalidOid;
	LWLockRelease(floor_shared->lock);
	floor_attached = NULL;
}

/*
 * The relay of MyDatabaseId starts taking bounds.  Transactions that end
 * from now on hand their floors to it; it reads everything in its first
 * round anyway.
 */
void
outbox_floor_attach(void)
{
	FloorDatabase *db;

	LWLockAcquire(floor_shared->lock, LW_EXCLUSIVE);
	db = find_database(MyDatabaseId);
	if (db == NULL)
		db = find_database(InvalidOid);
	if (db == NULL)
	{
		/* one entry per relay slot: cannot happen */
		LWLockRelease(floor_shared->lock);
		elog(ERROR, "inbox_outbox: no free floor entry for database %u", MyDatabaseId);
	}
	memset(db, 0, sizeof(FloorDatabase));
	db->dbid = MyDatabaseId;
	LWLockRelease(floor_shared->lock);

	floor_attached = db;
	before_shmem_exit(floor_detach, (Datum) 0);
}

/*
 * Prepared transactions exist in the database whose floors were lost (or
 * never handed to this relay): hold the bound at the lowest id until none
 * is left.  Called after outbox_floor_attach(), so that a transaction
 * prepared meanwhile is seen either here or by its PREPARE.
 */
void
outbox_floor_hold_for_prepared(void)
{
	pg_ulid		lowest;

	memset(&lowest, 0, sizeof(lowest));
	LWLockAcquire(floor_shared->lock, LW_EXCLUSIVE);
	lower(&floor_attached->prepared, &floor_attached->has_prepared, &lowest);
	LWLockRelease(floor_shared->lock);
}

/*
 * Whether the prepared bound holds; *prepares is the count of PREPAREs so
 * far, to hand to outbox_floor_prepared_settled() once the caller has seen
 * no prepared transaction left in the database.
 */
bool
outbox_floor_prepared_held(uint64 *prepares)
{
	bool		held;

	LWLockAcquire(floor_shared->lock, LW_SHARED);
	held = floor_attached->has_prepared;
	*prepares = floor_attached->prepares;
	LWLockRelease(floor_shared->lock);
	return held;
}

/*
 * No prepared transaction was left after the count of PREPAREs was
 * *prepares.  Unless one came since, the prepared bound goes into the
 * committed bound: the last of them may have just committed, and the next
 * round must read from there once.
 */
void
outbox_floor_prepared_settled(uint64 prepares)
{
	LWLockAcquire(floor_shared->lock, LW_EXCLUSIVE);
	if (floor_attached->has_prepared && floor_attached->prepares == prepares)
	{
		lower(&floor_attached->committed, &floor_attached->has_committed,
			  &floor_attached->prepared);
		floor_attached->has_prepared = false;
	}
	LWLockRelease(floor_shared->lock);
}

/*
 * Push the snapshot of the relay's round, and lower *floor to the lowest
 * id that a row visible in it and written by others since the last round
 * can have.  See the top of the file.
 */
void
outbox_floor_snapshot(pg_ulid *floor)
{
	FloorDatabase *db = floor_attached;
	bool		has = true;

	LWLockAcquire(floor_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < floor_shared->nbackends; i++)
	{
		FloorBackend *entry = &floor_shared->backends[i];

		if (entry->open && entry->dbid == MyDatabaseId)
			lower(floor, &has, &entry->floor);
	}
	if (db->has_committed)
		lower(floor, &has, &db->committed);
	if (db->has_prepared)
		lower(floor, &has, &db->prepared);
	db->has_committed = false;

	PushActiveSnapshot(GetTransactionSnapshot());
	LWLockRelease(floor_shared->lock);
}
