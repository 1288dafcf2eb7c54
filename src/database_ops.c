/*-------------------------------------------------------------------------
 *
 * database_ops.c
 *	  Keeping the relay out of the way of the commands that need its
 *	  database to themselves.
 *
 * DROP DATABASE, ALTER DATABASE ... RENAME TO, ALTER DATABASE ... SET
 * TABLESPACE and CREATE DATABASE ... TEMPLATE (for the template) refuse to
 * run while another session is connected to the database: PostgreSQL's
 * CountOtherDBBackends() waits up to 5 s for such sessions to leave, and
 * stops only autovacuum workers.  The relay is such a session.  DROP
 * DATABASE ... WITH (FORCE) sends it SIGTERM first, but a relay that stops
 * during a round waits up to inbox_outbox.shutdown_timeout for
 * acknowledgements that never come while no broker answers, and the
 * launcher may start it again meanwhile; FORCE also lets only a superuser or
 * a member of pg_signal_backend signal the relay, so a database owner
 * cannot use it at all.
 *
 * So a ProcessUtility hook, for each of those commands:
 *
 *	1. takes a hold on the database in shared memory.  While the hold lasts
 *	   the launcher starts no relay there, and a relay that starts anyway
 *	   (the launcher started it just before the hold) leaves instead of
 *	   claiming its slot;
 *	2. sends the running relay SIGTERM.  A relay that stops while a hold is
 *	   on its database does not wait for acknowledgements: it purges what is
 *	   in flight and leaves at once.  Those rows stay in the outbox and the
 *	   next relay sends them again (at least once, as after any stop);
 *	3. waits, for at most RELAY_LEAVE_TIMEOUT, until the relay's pid is gone
 *	   from its slot.  A relay still there then is left to PostgreSQL's own
 *	   check, which reports it as another session using the database;
 *	4. runs the command, and when it ends, whether it succeeded or failed,
 *	   releases the hold and wakes the launcher, which starts the relay
 *	   again after its usual restart delay (in the renamed, moved or copied
 *	   database; after a DROP it finds no database and frees the slot).
 *
 * The hold ends with the statement, not with the transaction.  Of these
 * commands only RENAME may run in a transaction block; a relay started
 * after it waits in its connection until the renaming transaction ends,
 * because the rename keeps the database locked until then, and then works
 * on in the database under its new name (or its old one, after a
 * rollback).
 *
 * A hold must not outlive its holder: an ERROR releases it through
 * PG_FINALLY, a FATAL (the backend terminated while it waits) through a
 * before_shmem_exit callback, and a backend that dies without either takes
 * the server through crash recovery, which makes shared memory anew.  Even
 * so, the launcher and the relay ignore a hold whose holder is no longer a
 * live backend, so that no slip can keep a database without its relay.
 *
 * Privileges: the hook acts only for a user who owns the database (or is a
 * superuser).  Such a user can already stop the relay without any help:
 * ALTER DATABASE ... ALLOW_CONNECTIONS false or IS_TEMPLATE true makes the
 * launcher stop it.  So the hook gives nobody a new way to interrupt a
 * relay, and it never lets a command run that would not run otherwise:
 * PostgreSQL still checks every privilege the command needs.  Anyone may
 * copy a database marked as a template, but the launcher runs no relay in
 * one, so there is nothing to stop.  A command that fails after the relay
 * left (a RENAME to a name that exists) costs a relay restart, no more.
 *
 * A statement that PostgreSQL refuses before it looks for other sessions,
 * because it runs in a transaction block (all but RENAME) or names the
 * current database (all but CREATE), is passed on untouched.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/timestamp.h"

#include "database_ops.h"
#include "shared_state.h"

/* How long a command waits for the relay to leave before it runs anyway. */
#define RELAY_LEAVE_TIMEOUT		5000	/* ms */
#define RELAY_LEAVE_POLL		10		/* ms */

static ProcessUtility_hook_type prev_process_utility = NULL;
static bool exit_callback_registered = false;

/* Whether a hold's holder is still a live backend.  Caller holds the lock. */
static bool
hold_is_live(const DatabaseHold *hold)
{
	return hold->dbid != InvalidOid && hold->holder != 0 &&
		BackendPidGetProc(hold->holder) != NULL;
}

/*
 * Whether a database operation holds dbid, so that no relay may start or
 * stay there.  Caller holds inbox_outbox_shared->lock.
 */
bool
database_op_holds(Oid dbid)
{
	for (int i = 0; i < DATABASE_MAX_HOLDS; i++)
	{
		const DatabaseHold *hold = &inbox_outbox_shared->holds[i];

		if (hold->dbid == dbid && hold_is_live(hold))
			return true;
	}
	return false;
}

/*
 * For a relay that was asked to stop: whether a database operation waits
 * for it to leave its database, so that it must not wait for
 * acknowledgements.
 */
bool
relay_must_leave_now(void)
{
	bool		held;

	LWLockAcquire(inbox_outbox_shared->lock, LW_SHARED);
	held = database_op_holds(MyDatabaseId);
	LWLockRelease(inbox_outbox_shared->lock);
	return held;
}

/* Release every hold of this backend and wake the launcher. */
static void
release_holds(void)
{
	bool		released = false;

	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < DATABASE_MAX_HOLDS; i++)
	{
		DatabaseHold *hold = &inbox_outbox_shared->holds[i];

		if (hold->dbid != InvalidOid && hold->holder == MyProcPid)
		{
			hold->dbid = InvalidOid;
			hold->holder = 0;
			released = true;
		}
	}
	LWLockRelease(inbox_outbox_shared->lock);
	if (released)
		launcher_wake(false);
}

static void
release_holds_at_exit(int code, Datum arg)
{
	release_holds();
}

/*
 * Hold dbid for this backend.  With every entry taken by live holders
 * (DATABASE_MAX_HOLDS operations at once), go on without a hold: the relay
 * is still told to stop, but waits for acknowledgements as at any stop,
 * and the launcher may start it again; PostgreSQL's own check decides.
 */
static void
hold_database(Oid dbid)
{
	DatabaseHold *free_hold = NULL;

	if (!exit_callback_registered)
	{
		before_shmem_exit(release_holds_at_exit, (Datum) 0);
		exit_callback_registered = true;
	}

	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < DATABASE_MAX_HOLDS && free_hold == NULL; i++)
	{
		DatabaseHold *hold = &inbox_outbox_shared->holds[i];

		if (!hold_is_live(hold))
			free_hold = hold;
	}
	if (free_hold != NULL)
	{
		free_hold->dbid = dbid;
		free_hold->holder = MyProcPid;
	}
	LWLockRelease(inbox_outbox_shared->lock);

	if (free_hold == NULL)
		ereport(LOG,
				errmsg("inbox_outbox could not hold database %u for a database operation", dbid),
				errdetail("%d database operations are under way.", DATABASE_MAX_HOLDS));
}

/*
 * Tell the relay of dbid, if one runs, and its ingestion workers to stop,
 * and wait until they have left their slots or RELAY_LEAVE_TIMEOUT has
 * passed.
 */
static void
wait_for_relay_to_leave(Oid dbid)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   RELAY_LEAVE_TIMEOUT);
	pid_t		signalled = 0;

	for (;;)
	{
		RelaySlot  *slot;
		pid_t		relay = 0;

		pid_t		ingest[INGEST_MAX_WORKERS];
		int			ningest = 0;

		LWLockAcquire(inbox_outbox_shared->lock, LW_SHARED);
		slot = relay_slot_find(dbid);
		if (slot != NULL)
			relay = slot->pid;
		for (int i = 0; i < INGEST_MAX_WORKERS; i++)
		{
			if (inbox_outbox_shared->ingest[i].dbid == dbid &&
				inbox_outbox_shared->ingest[i].pid != 0)
				ingest[ningest++] = inbox_outbox_shared->ingest[i].pid;
		}
		LWLockRelease(inbox_outbox_shared->lock);

		/* ingestion workers keep nothing in flight: they stop at once */
		for (int i = 0; i < ningest; i++)
			(void) kill(ingest[i], SIGTERM);
		if (relay == 0 && ningest == 0)
			return;
		if (relay != 0 && relay != signalled)
		{
			/* a relay that has just exited is no error */
			(void) kill(relay, SIGTERM);
			signalled = relay;
		}
		if (GetCurrentTimestamp() >= deadline)
		{
			ereport(LOG,
					relay ?
					errmsg("inbox_outbox relay with PID %d did not leave database %u within %d ms",
						   (int) relay, dbid, RELAY_LEAVE_TIMEOUT) :
					errmsg("inbox_outbox ingestion worker with PID %d did not leave database %u within %d ms",
						   (int) ingest[0], dbid, RELAY_LEAVE_TIMEOUT));
			return;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 RELAY_LEAVE_POLL, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Whether the statement asks for a TABLESPACE among its options. */
static bool
has_tablespace_option(List *options)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
			return true;
	}
	return false;
}

/* The template CREATE DATABASE copies: its TEMPLATE, else template1. */
static const char *
template_name(List *options)
{
	const char *name = "template1";
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst(lc);

		if (strcmp(def->defname, "template") == 0 && def->arg != NULL)
			name = defGetString(def);
	}
	return name;
}

/*
 * The database that a utility statement needs to itself, or InvalidOid:
 * the one DROP DATABASE drops, ALTER DATABASE renames or moves, or CREATE
 * DATABASE copies, if it exists, the current user owns it, and PostgreSQL
 * will get as far as looking for other sessions in it.
 */
static Oid
database_op_target(Node *parsetree, ProcessUtilityContext context)
{
	const char *name = NULL;
	bool		block_allowed = false;	/* may run in a transaction block */
	bool		current_allowed = false;	/* may name the current database */
	Oid			dbid;

	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			name = ((DropdbStmt *) parsetree)->dbname;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				name = ((RenameStmt *) parsetree)->subname;
			block_allowed = true;
			break;
		case T_AlterDatabaseStmt:
			if (has_tablespace_option(((AlterDatabaseStmt *) parsetree)->options))
				name = ((AlterDatabaseStmt *) parsetree)->dbname;
			break;
		case T_CreatedbStmt:
			name = template_name(((CreatedbStmt *) parsetree)->options);
			current_allowed = true;
			break;
		default:
			break;
	}
	if (name == NULL)
		return InvalidOid;
	if (!block_allowed &&
		(context != PROCESS_UTILITY_TOPLEVEL || IsTransactionBlock()))
		return InvalidOid;

	dbid = get_database_oid(name, true);
	if (!OidIsValid(dbid) || (dbid == MyDatabaseId && !current_allowed))
		return InvalidOid;
#if PG_VERSION_NUM >= 160000
	if (!object_ownercheck(DatabaseRelationId, dbid, GetUserId()))
		return InvalidOid;
#else
	if (!pg_database_ownercheck(dbid, GetUserId()))
		return InvalidOid;
#endif
	return dbid;
}

static void
run_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			ProcessUtilityContext context, ParamListInfo params,
			QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

static void
database_ops_process_utility(PlannedStmt *pstmt, const char *queryString,
							 bool readOnlyTree, ProcessUtilityContext context,
							 ParamListInfo params, QueryEnvironment *queryEnv,
							 DestReceiver *dest, QueryCompletion *qc)
{
	Oid			dbid = database_op_target(pstmt->utilityStmt, context);

	if (!OidIsValid(dbid))
	{
		run_utility(pstmt, queryString, readOnlyTree, context, params,
					queryEnv, dest, qc);
		return;
	}

	hold_database(dbid);
	PG_TRY();
	{
		wait_for_relay_to_leave(dbid);
		run_utility(pstmt, queryString, readOnlyTree, context, params,
					queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		release_holds();
	}
	PG_END_TRY();
}

/*
 * Install the hook.  Called from _PG_init while shared_preload_libraries
 * is processed: without the shared memory there is no relay to move.
 */
void
database_ops_init(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = database_ops_process_utility;
}
