/*-------------------------------------------------------------------------
 *
 * ingest_admin.c
 *	  The SQL functions that manage subscriptions (subscribe(),
 *	  unsubscribe(), subscription_pause(), subscription_resume(),
 *	  subscription_seek(), ingest_redrive(), ingest_discard()), and the
 *	  ingestion workers' slots in shared memory that they change at commit.
 *
 * Who may do what.  A subscription belongs to the role that called
 * subscribe(), and its handler always runs as that role, which therefore
 * may not be a superuser.  Calling these functions takes EXECUTE on them
 * (grant_subscriber()); changing an existing subscription or its dead
 * letters takes membership in its owner's privileges, or superuser.  The
 * tables behind them are granted to no one: the functions write them as the
 * bootstrap superuser, with search_path "pg_catalog, pg_temp" and every
 * operator qualified, like the relay's statements.  No function here is
 * SECURITY DEFINER; the checks above are made in C before any write.
 *
 * Starting and stopping.  Each function that changes a subscription notes
 * its name; when the transaction commits, the slots of its workers in shared
 * memory are set to what the committed row says (wanted and a generation
 * bump that the running workers notice, or not wanted), the workers' latches
 * are set and the launcher is woken, which starts what is wanted and not
 * running.  A rollback changes nothing.  After a server restart the relay
 * of each database asks for the slots of its enabled subscriptions once
 * (ingest_slots_sync()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"

#include "ingest_admin.h"
#include "ingest_handler.h"
#include "inbox_outbox.h"
#include "pg_compat.h"
#include "shared_state.h"
#include "ulid.h"

PG_FUNCTION_INFO_V1(ingest_subscribe);
PG_FUNCTION_INFO_V1(ingest_unsubscribe);
PG_FUNCTION_INFO_V1(ingest_pause);
PG_FUNCTION_INFO_V1(ingest_resume);
PG_FUNCTION_INFO_V1(ingest_seek);
PG_FUNCTION_INFO_V1(ingest_redrive);
PG_FUNCTION_INFO_V1(ingest_discard);

#define INGEST_MAX_TOPICS		64
#define INGEST_MAX_BATCH		10000
#define INGEST_MAX_ATTEMPTS		1000
#define INGEST_MAX_SUB_WORKERS	8
#define INGEST_HEADER_MAXLEN	255

/* Subscriptions changed by the current transaction, applied at commit. */
typedef struct IngestChange
{
	char		name[INGEST_NAME_MAXLEN + 1];
	bool		enabled;		/* as the transaction left the row */
	int			workers;
	int			level;			/* the subtransaction that made it */
} IngestChange;

static List *pending_changes = NIL;	/* in TopMemoryContext */
static int	drop_all_level = 0;	/* DROP EXTENSION's subtransaction, or 0 */
static bool callback_registered = false;

/* The caller's identity while a function writes as the superuser. */
typedef struct AdminSection
{
	Oid			userid;
	int			context;
	int			nest;
} AdminSection;

static void
admin_begin(AdminSection *section)
{
	GetUserIdAndSecContext(&section->userid, &section->context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   section->context | SECURITY_LOCAL_USERID_CHANGE);
	section->nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	SPI_connect();
}

static void
admin_end(AdminSection *section)
{
	SPI_finish();
	AtEOXact_GUC(true, section->nest);
	SetUserIdAndSecContext(section->userid, section->context);
}

/*
 * Slots.  The caller holds the lock exclusively.
 */
static IngestSlot *
slot_find(Oid dbid, const char *name, int worker)
{
	for (int i = 0; i < INGEST_MAX_WORKERS; i++)
	{
		IngestSlot *slot = &inbox_outbox_shared->ingest[i];

		if (slot->dbid == dbid && slot->worker == worker &&
			strcmp(slot->subscription, name) == 0)
			return slot;
	}
	return NULL;
}

static IngestSlot *
slot_take(Oid dbid, const char *name, int worker)
{
	for (int i = 0; i < INGEST_MAX_WORKERS; i++)
	{
		IngestSlot *slot = &inbox_outbox_shared->ingest[i];

		if (slot->dbid != InvalidOid)
			continue;
		memset(slot, 0, sizeof(IngestSlot));
		slot->dbid = dbid;
		strlcpy(slot->subscription, name, sizeof(slot->subscription));
		slot->worker = worker;
		slot->state = INGEST_STARTING;
		return slot;
	}
	return NULL;
}

/*
 * Make the slots of a subscription what its row says: workers 0 .. n - 1
 * wanted (their generation bumped if bump), the others not.  Returns the
 * number of workers left without a slot.
 */
static int
slots_apply(Oid dbid, const char *name, bool enabled, int workers, bool bump)
{
	int			missing = 0;

	for (int i = 0; i < INGEST_MAX_WORKERS; i++)
	{
		IngestSlot *slot = &inbox_outbox_shared->ingest[i];

		if (slot->dbid != dbid || strcmp(slot->subscription, name) != 0)
			continue;
		if (!enabled || slot->worker >= workers)
		{
			slot->wanted = false;
			if (slot->latch)
				SetLatch(slot->latch);
		}
	}
	if (!enabled)
		return 0;
	for (int w = 0; w < workers; w++)
	{
		IngestSlot *slot = slot_find(dbid, name, w);

		if (slot == NULL)
			slot = slot_take(dbid, name, w);
		if (slot == NULL)
		{
			missing++;
			continue;
		}
		if (bump || !slot->wanted)
			slot->generation++;
		slot->wanted = true;
		if (slot->latch)
			SetLatch(slot->latch);
	}
	return missing;
}

/* Free slots, counting those the subscription already has. */
static int
slots_available(Oid dbid, const char *name)
{
	int			n = 0;

	for (int i = 0; i < INGEST_MAX_WORKERS; i++)
	{
		IngestSlot *slot = &inbox_outbox_shared->ingest[i];

		if (slot->dbid == InvalidOid ||
			(slot->dbid == dbid && strcmp(slot->subscription, name) == 0))
			n++;
	}
	return n;
}

static void
ingest_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;
	bool		any = false;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (inbox_outbox_shared == NULL)
				break;
			if (drop_all_level > 0)
			{
				/* the subscriptions went with the extension */
				LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
				for (int i = 0; i < INGEST_MAX_WORKERS; i++)
				{
					IngestSlot *slot = &inbox_outbox_shared->ingest[i];

					if (slot->dbid != MyDatabaseId)
						continue;
					slot->wanted = false;
					if (slot->latch)
						SetLatch(slot->latch);
				}
				LWLockRelease(inbox_outbox_shared->lock);
				launcher_wake(false);
				break;
			}
			if (pending_changes == NIL)
				break;
			LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
			foreach(lc, pending_changes)
			{
				IngestChange *change = lfirst(lc);
				int			missing;

				missing = slots_apply(MyDatabaseId, change->name, change->enabled,
									  change->workers, true);
				if (missing > 0)
					elog(LOG, "inbox_outbox: %d workers of subscription \"%s\" have no slot",
						 missing, change->name);
				any = true;
			}
			LWLockRelease(inbox_outbox_shared->lock);
			if (any)
				launcher_wake(false);
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (pending_changes != NIL || drop_all_level > 0)
				ereport(ERROR,
						errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("cannot PREPARE a transaction that changed a subscription"));
			return;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			break;
		default:
			return;
	}
	list_free_deep(pending_changes);
	pending_changes = NIL;
	drop_all_level = 0;
}

/*
 * A subtransaction that rolls back takes its changes with it; one that
 * commits hands them to its parent.
 */
static void
ingest_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	ListCell   *lc;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	foreach(lc, pending_changes)
	{
		IngestChange *change = lfirst(lc);

		if (change->level < level)
			continue;
		if (event == SUBXACT_EVENT_COMMIT_SUB)
			change->level = level - 1;
		else
		{
			pending_changes = foreach_delete_current(pending_changes, lc);
			pfree(change);
		}
	}
	if (drop_all_level >= level)
		drop_all_level = (event == SUBXACT_EVENT_COMMIT_SUB) ? level - 1 : 0;
}

static void
register_callback(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(ingest_xact_callback, NULL);
		RegisterSubXactCallback(ingest_subxact_callback, NULL);
		callback_registered = true;
	}
}

/* DROP EXTENSION: stop this database's ingestion workers at commit. */
void
ingest_drop_all_at_commit(void)
{
	register_callback();
	if (drop_all_level == 0)
		drop_all_level = GetCurrentTransactionNestLevel();
}

/* Apply the subscription's row, as this transaction leaves it, at commit. */
static void
note_change(const char *name, bool enabled, int workers)
{
	MemoryContext old;
	IngestChange *change = NULL;
	ListCell   *lc;

	register_callback();
	/* one entry per subtransaction level: a rollback to it drops only its own */
	foreach(lc, pending_changes)
	{
		IngestChange *c = lfirst(lc);

		if (strcmp(c->name, name) == 0 && c->level == GetCurrentTransactionNestLevel())
			change = c;
	}
	if (change == NULL)
	{
		old = MemoryContextSwitchTo(TopMemoryContext);
		change = palloc0(sizeof(IngestChange));
		strlcpy(change->name, name, sizeof(change->name));
		change->level = GetCurrentTransactionNestLevel();
		pending_changes = lappend(pending_changes, change);
		MemoryContextSwitchTo(old);
	}
	change->enabled = enabled;
	change->workers = workers;
}

/*
 * Validation of the arguments.
 */
static char *
arg_text(FunctionCallInfo fcinfo, int n, const char *what)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				errmsg("%s must not be null", what));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static void
check_name(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0 || len > INGEST_NAME_MAXLEN ||
		strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != len)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("invalid subscription name \"%s\"", name),
				errdetail("A subscription name has 1 to %d letters, digits, '.', '_' or '-'.",
						  INGEST_NAME_MAXLEN));
}

static void
check_range(const char *what, int value, int min, int max)
{
	if (value < min || value > max)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("%s must be between %d and %d", what, min, max));
}

static void
check_event_id(const char *event_id)
{
	if (strcmp(event_id, "key") == 0 || strcmp(event_id, "offset") == 0)
		return;
	if (strncmp(event_id, "header:", 7) == 0 && strlen(event_id) > 7 &&
		strlen(event_id) <= 7 + INGEST_HEADER_MAXLEN)
		return;
	ereport(ERROR,
			errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			errmsg("invalid event_id \"%s\"", event_id),
			errhint("Use 'header:<name>' (the value of that header), 'key' or 'offset' (topic/partition/offset)."));
}

static void
check_choice(const char *what, const char *value, const char *a, const char *b,
			 const char *c)
{
	if (strcmp(value, a) == 0 || strcmp(value, b) == 0 || (c && strcmp(value, c) == 0))
		return;
	ereport(ERROR,
			errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			errmsg("invalid %s \"%s\"", what, value),
			c ? errhint("Use '%s', '%s' or '%s'.", a, b, c) :
			errhint("Use '%s' or '%s'.", a, b));
}

/* The topics, checked, without duplicates, as a text[] datum. */
static Datum
check_topics(ArrayType *topics)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			kept = 0;

	if (ARR_NDIM(topics) > 1)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("topics must be a one-dimensional array"));
	deconstruct_array(topics, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("a subscription needs at least one topic"));
	if (n > INGEST_MAX_TOPICS)
		ereport(ERROR,
				errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				errmsg("a subscription has at most %d topics", INGEST_MAX_TOPICS));
	for (int i = 0; i < n; i++)
	{
		text	   *t;
		const char *detail = NULL;
		const char *problem;
		bool		dup = false;

		if (nulls[i])
			ereport(ERROR,
					errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					errmsg("a topic must not be null"));
		t = DatumGetTextPP(elems[i]);
		problem = outbox_topic_problem(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &detail);
		if (problem)
			ereport(ERROR,
					errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					errmsg("%s", problem),
					detail ? errdetail("%s", detail) : 0);
		for (int j = 0; j < kept; j++)
		{
			if (DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID, elems[j], elems[i])))
				dup = true;
		}
		if (!dup)
			elems[kept++] = elems[i];
	}
	return PointerGetDatum(construct_array(elems, kept, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * The owner of a subscription, locked FOR UPDATE, or InvalidOid if there is
 * none; inside an admin section.
 */
static Oid
lock_subscription(const char *name, bool *enabled, int *workers)
{
	Datum		arg = CStringGetTextDatum(name);
	Oid			argtype = TEXTOID;
	bool		isnull;
	Oid			owner;

	if (SPI_execute_with_args("SELECT owner::pg_catalog.oid, enabled, workers "
							  "FROM inbox_outbox.subscription "
							  "WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							  1, &argtype, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read subscription \"%s\"", name);
	if (SPI_processed == 0)
		return InvalidOid;
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (enabled)
		*enabled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (workers)
		*workers = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	return owner;
}

static void
check_owner(const char *name, Oid owner, Oid caller)
{
	if (!OidIsValid(owner))
		ereport(ERROR,
				errcode(ERRCODE_UNDEFINED_OBJECT),
				errmsg("subscription \"%s\" does not exist", name));
	if (!superuser_arg(caller) && !has_privs_of_role(caller, owner))
		ereport(ERROR,
				errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				errmsg("must be owner of subscription \"%s\"", name));
}

static void
require_shared(void)
{
	if (inbox_outbox_shared == NULL)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("inbox_outbox must be in shared_preload_libraries to consume Kafka"));
}

Datum
ingest_subscribe(PG_FUNCTION_ARGS)
{
	char	   *name = arg_text(fcinfo, 0, "name");
	Datum		topics;
	Oid			handler;
	char	   *start_from = arg_text(fcinfo, 3, "start_from");
	char	   *event_id = arg_text(fcinfo, 4, "event_id");
	int			batch_size;
	int			max_attempts;
	char	   *on_gap = arg_text(fcinfo, 7, "on_gap");
	int			workers;
	Oid			caller = GetUserId();
	IngestHandlerProblem problem;
	AdminSection section;
	Oid			owner;
	int			available;

	for (int i = 1; i < 9; i++)
	{
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					errmsg("argument %d of subscribe() must not be null", i + 1));
	}
	require_shared();
	check_name(name);
	topics = check_topics(PG_GETARG_ARRAYTYPE_P(1));
	handler = PG_GETARG_OID(2);
	check_choice("start_from", start_from, "earliest", "latest", NULL);
	check_event_id(event_id);
	batch_size = PG_GETARG_INT32(5);
	max_attempts = PG_GETARG_INT32(6);
	workers = PG_GETARG_INT32(8);
	check_range("batch_size", batch_size, 1, INGEST_MAX_BATCH);
	check_range("max_attempts", max_attempts, 1, INGEST_MAX_ATTEMPTS);
	check_choice("on_gap", on_gap, "stop", "earliest", "latest");
	check_range("workers", workers, 1, INGEST_MAX_SUB_WORKERS);

	if (superuser_arg(caller))
		ereport(ERROR,
				errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				errmsg("a subscription cannot belong to a superuser"),
				errdetail("Its handler runs as the role that subscribes."),
				errhint("Subscribe as the role the handler should run as, for example after SET ROLE."));
	if (!ingest_handler_usable(handler, caller, &problem))
		ereport(ERROR,
				errcode(problem.sqlstate),
				errmsg("%s", problem.message),
				problem.hint ? errhint("%s", problem.hint) : 0);

	LWLockAcquire(inbox_outbox_shared->lock, LW_SHARED);
	available = slots_available(MyDatabaseId, name);
	LWLockRelease(inbox_outbox_shared->lock);
	if (available < workers)
		ereport(ERROR,
				errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				errmsg("no free ingestion worker slot for subscription \"%s\"", name),
				errdetail("The server runs at most %d ingestion workers; %d are free.",
						  INGEST_MAX_WORKERS, available));

	admin_begin(&section);
	owner = lock_subscription(name, NULL, NULL);
	if (OidIsValid(owner))
		check_owner(name, owner, caller);
	{
		Oid			argtypes[10] = {TEXTOID, OIDOID, TEXTARRAYOID, TEXTOID, TEXTOID,
		TEXTOID, INT4OID, INT4OID, TEXTOID, INT4OID};
		Datum		values[10];

		values[0] = CStringGetTextDatum(name);
		values[1] = ObjectIdGetDatum(caller);
		values[2] = topics;
		values[3] = CStringGetTextDatum(format_procedure_qualified(handler));
		values[4] = CStringGetTextDatum(start_from);
		values[5] = CStringGetTextDatum(event_id);
		values[6] = Int32GetDatum(batch_size);
		values[7] = Int32GetDatum(max_attempts);
		values[8] = CStringGetTextDatum(on_gap);
		values[9] = Int32GetDatum(workers);
		if (SPI_execute_with_args("INSERT INTO inbox_outbox.subscription AS s "
								  "(name, owner, topics, handler, start_from, event_id, "
								  " batch_size, max_attempts, on_gap, workers, enabled) "
								  "VALUES ($1, $2::pg_catalog.regrole, $3, $4, "
								  " $5, $6, $7, $8, $9, $10, true) "
								  "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
								  " topics = excluded.topics, handler = excluded.handler, "
								  " start_from = excluded.start_from, event_id = excluded.event_id, "
								  " batch_size = excluded.batch_size, max_attempts = excluded.max_attempts, "
								  " on_gap = excluded.on_gap, workers = excluded.workers, enabled = true",
								  10, argtypes, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not write subscription \"%s\"", name);
	}
	admin_end(&section);
	note_change(name, true, workers);
	PG_RETURN_VOID();
}

Datum
ingest_unsubscribe(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	AdminSection section;
	Oid			owner;
	Datum		arg = CStringGetTextDatum(name);
	Oid			argtype = TEXTOID;

	admin_begin(&section);
	owner = lock_subscription(name, NULL, NULL);
	check_owner(name, owner, section.userid);
	/*
	 * Everything of the subscription goes, so that a subscription made later
	 * under the same name, by any role, inherits no claims, dead letters or
	 * gaps.
	 */
	if (SPI_execute_with_args("DELETE FROM inbox_outbox.subscription_offset "
							  "WHERE subscription OPERATOR(pg_catalog.=) $1",
							  1, &argtype, &arg, NULL, false, 0) != SPI_OK_DELETE ||
		SPI_execute_with_args("DELETE FROM inbox_outbox.ingest_gap "
							  "WHERE subscription OPERATOR(pg_catalog.=) $1",
							  1, &argtype, &arg, NULL, false, 0) != SPI_OK_DELETE ||
		SPI_execute_with_args("DELETE FROM inbox_outbox.ingest_dead_letter "
							  "WHERE subscription OPERATOR(pg_catalog.=) $1",
							  1, &argtype, &arg, NULL, false, 0) != SPI_OK_DELETE ||
		SPI_execute_with_args("DELETE FROM inbox_outbox.inbox "
							  "WHERE consumer OPERATOR(pg_catalog.=) ('" INGEST_CONSUMER_PREFIX "' OPERATOR(pg_catalog.||) $1)",
							  1, &argtype, &arg, NULL, false, 0) != SPI_OK_DELETE ||
		SPI_execute_with_args("DELETE FROM inbox_outbox.subscription "
							  "WHERE name OPERATOR(pg_catalog.=) $1",
							  1, &argtype, &arg, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete subscription \"%s\"", name);
	admin_end(&section);
	note_change(name, false, 0);
	PG_RETURN_VOID();
}

static void
set_enabled(const char *name, bool enabled)
{
	AdminSection section;
	Oid			owner;
	int			workers;
	Datum		args[2];
	Oid			argtypes[2] = {TEXTOID, BOOLOID};

	admin_begin(&section);
	owner = lock_subscription(name, NULL, &workers);
	check_owner(name, owner, section.userid);
	args[0] = CStringGetTextDatum(name);
	args[1] = BoolGetDatum(enabled);
	if (SPI_execute_with_args("UPDATE inbox_outbox.subscription SET enabled = $2 "
							  "WHERE name OPERATOR(pg_catalog.=) $1",
							  2, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update subscription \"%s\"", name);
	admin_end(&section);
	note_change(name, enabled, workers);
}

Datum
ingest_pause(PG_FUNCTION_ARGS)
{
	set_enabled(text_to_cstring(PG_GETARG_TEXT_PP(0)), false);
	PG_RETURN_VOID();
}

Datum
ingest_resume(PG_FUNCTION_ARGS)
{
	require_shared();
	set_enabled(text_to_cstring(PG_GETARG_TEXT_PP(0)), true);
	PG_RETURN_VOID();
}

Datum
ingest_seek(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *topic = PG_GETARG_TEXT_PP(1);
	int32		partition = PG_GETARG_INT32(2);
	int64		next_offset = PG_GETARG_INT64(3);
	AdminSection section;
	Oid			owner;
	bool		enabled;
	int			workers;
	Datum		args[4];
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, INT8OID};

	if (partition < 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("partition must not be negative"));
	if (next_offset < 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("next_offset must not be negative"));

	admin_begin(&section);
	owner = lock_subscription(name, &enabled, &workers);
	check_owner(name, owner, section.userid);
	args[0] = CStringGetTextDatum(name);
	args[1] = PointerGetDatum(topic);
	args[2] = Int32GetDatum(partition);
	args[3] = Int64GetDatum(next_offset);
	if (SPI_execute_with_args("SELECT FROM inbox_outbox.subscription "
							  "WHERE name OPERATOR(pg_catalog.=) $1 "
							  "AND $2 OPERATOR(pg_catalog.=) ANY (topics)",
							  2, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read subscription \"%s\"", name);
	if (SPI_processed == 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("subscription \"%s\" does not consume topic \"%s\"",
					   name, text_to_cstring(topic)));
	if (SPI_execute_with_args("INSERT INTO inbox_outbox.subscription_offset AS o "
							  "(subscription, topic, partition, next_offset, updated_at) "
							  "VALUES ($1, $2, $3, $4, pg_catalog.clock_timestamp()) "
							  "ON CONFLICT (subscription, topic, partition) DO UPDATE "
							  "SET next_offset = excluded.next_offset, "
							  "    updated_at = excluded.updated_at",
							  4, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write the offset of subscription \"%s\"", name);
	/* a gap there is settled by the seek */
	if (SPI_execute_with_args("DELETE FROM inbox_outbox.ingest_gap "
							  "WHERE subscription OPERATOR(pg_catalog.=) $1 "
							  "AND topic OPERATOR(pg_catalog.=) $2 "
							  "AND partition OPERATOR(pg_catalog.=) $3 "
							  "AND action OPERATOR(pg_catalog.=) 'stopped'",
							  3, argtypes, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not settle the gaps of subscription \"%s\"", name);
	admin_end(&section);
	note_change(name, enabled, workers);
	PG_RETURN_VOID();
}

/*
 * The dead letters the caller may redrive or discard: those given (or all)
 * of subscriptions it owns (all, for a superuser), with what running their
 * handler again takes.  Inside an admin section.
 */
#define DEAD_LETTER_COLUMNS \
	"SELECT d.id::pg_catalog.uuid, s.owner::pg_catalog.oid, " \
	" pg_catalog.to_regprocedure(s.handler)::pg_catalog.oid, " \
	" '" INGEST_CONSUMER_PREFIX "' OPERATOR(pg_catalog.||) d.subscription, " \
	" d.topic, d.partition, d.\"offset\", d.key, d.payload, d.headers, d.ts, d.event_id " \
	"FROM inbox_outbox.ingest_dead_letter d " \
	"JOIN inbox_outbox.subscription s ON s.name OPERATOR(pg_catalog.=) d.subscription "

static SPITupleTable *
dead_letters(FunctionCallInfo fcinfo, bool lock)
{
	int			ret;

	if (PG_ARGISNULL(0))
		ret = SPI_execute(lock ? DEAD_LETTER_COLUMNS "ORDER BY d.id FOR UPDATE OF d" :
						  DEAD_LETTER_COLUMNS "ORDER BY d.id", false, 0);
	else
	{
		Datum		arg = PG_GETARG_DATUM(0);
		Oid			argtype = UUIDARRAYOID;
		ArrayType  *ids = PG_GETARG_ARRAYTYPE_P(0);
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		/* a ulid is stored as a uuid's 16 bytes: compare them as uuids */
		if (array_contains_nulls(ids))
			ereport(ERROR,
					errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					errmsg("dead letter ids must not be null"));
		deconstruct_array(ids, ARR_ELEMTYPE(ids), ULID_LEN, false, TYPALIGN_CHAR,
						  &elems, &nulls, &n);
		arg = PointerGetDatum(construct_array(elems, n, UUIDOID, ULID_LEN, false,
											  TYPALIGN_CHAR));
		ret = SPI_execute_with_args(lock ?
									DEAD_LETTER_COLUMNS
									"WHERE d.id::pg_catalog.uuid OPERATOR(pg_catalog.=) ANY ($1) "
									"ORDER BY d.id FOR UPDATE OF d" :
									DEAD_LETTER_COLUMNS
									"WHERE d.id::pg_catalog.uuid OPERATOR(pg_catalog.=) ANY ($1) "
									"ORDER BY d.id",
									1, &argtype, &arg, NULL, false, 0);
	}
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the dead letters of subscriptions");
	return SPI_tuptable;
}

static bool
may_change(Oid caller, Oid owner)
{
	return superuser_arg(caller) || has_privs_of_role(caller, owner);
}

static void
delete_dead_letter(Datum id)
{
	Oid			argtype = UUIDOID;

	if (SPI_execute_with_args("DELETE FROM inbox_outbox.ingest_dead_letter "
							  "WHERE id::pg_catalog.uuid OPERATOR(pg_catalog.=) $1",
							  1, &argtype, &id, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete a dead letter");
}

Datum
ingest_redrive(PG_FUNCTION_ARGS)
{
	AdminSection section;
	SPITupleTable *rows;
	int64		done = 0;

	admin_begin(&section);
	rows = dead_letters(fcinfo, true);
	for (uint64 r = 0; r < rows->numvals; r++)
	{
		HeapTuple	tuple = rows->vals[r];
		TupleDesc	desc = rows->tupdesc;
		bool		isnull;
		Datum		id = SPI_getbinval(tuple, desc, 1, &isnull);
		Oid			owner = DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull));
		Oid			handler = DatumGetObjectId(SPI_getbinval(tuple, desc, 3, &isnull));
		Oid			handler_or_none = isnull ? InvalidOid : handler;
		Datum		subscription = SPI_getbinval(tuple, desc, 4, &isnull);
		Datum		event_id;
		bool		no_event_id;
		Datum		claim_args[2];
		Oid			claim_types[2] = {TEXTOID, TEXTOID};
		IngestHandlerProblem problem;

		if (!may_change(section.userid, owner))
			continue;
		/* the id the worker would have claimed; a message without one stays */
		event_id = SPI_getbinval(tuple, desc, 12, &no_event_id);
		if (no_event_id)
			continue;
		claim_args[0] = subscription;
		claim_args[1] = event_id;
		if (SPI_execute_with_args("INSERT INTO inbox_outbox.inbox (consumer, event_id) "
								  "VALUES ($1, $2) ON CONFLICT DO NOTHING",
								  2, claim_types, claim_args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not claim a dead letter's event id");
		if (SPI_processed == 1)
		{
			FmgrInfo	flinfo;
			Datum		args[INGEST_HANDLER_NARGS];
			bool		nulls[INGEST_HANDLER_NARGS];

			if (!ingest_handler_usable(handler_or_none, owner, &problem))
				ereport(ERROR,
						errcode(problem.sqlstate),
						errmsg("%s", problem.message),
						problem.hint ? errhint("%s", problem.hint) : 0);
			for (int i = 0; i < INGEST_HANDLER_NARGS; i++)
				args[i] = SPI_getbinval(tuple, desc, 5 + i, &nulls[i]);
			fmgr_info(handler_or_none, &flinfo);
			ingest_handler_call(&flinfo, owner, args, nulls);
		}
		delete_dead_letter(id);
		done++;
	}
	admin_end(&section);
	PG_RETURN_INT64(done);
}

Datum
ingest_discard(PG_FUNCTION_ARGS)
{
	AdminSection section;
	SPITupleTable *rows;
	int64		done = 0;

	admin_begin(&section);
	rows = dead_letters(fcinfo, true);
	for (uint64 r = 0; r < rows->numvals; r++)
	{
		bool		isnull;
		Datum		id = SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull);
		Oid			owner = DatumGetObjectId(SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull));

		if (!may_change(section.userid, owner))
			continue;
		delete_dead_letter(id);
		done++;
	}
	admin_end(&section);
	PG_RETURN_INT64(done);
}

/*
 * Called by the relay when it starts (through relay_api): ask for the
 * slots of this database's enabled subscriptions, which a server restart
 * emptied.  Slots already there keep their generation.
 */
void
ingest_slots_sync(void)
{
	int			ret;
	List	   *names = NIL;
	List	   *counts = NIL;
	ListCell   *ln,
			   *lw;
	bool		any = false;

	if (inbox_outbox_shared == NULL)
		return;
	SPI_connect();
	ret = SPI_execute("SELECT name, workers FROM inbox_outbox.subscription WHERE enabled",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the subscriptions");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;

		names = lappend(names, SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1));
		counts = lappend_int(counts,
							 DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r],
														 SPI_tuptable->tupdesc, 2, &isnull)));
	}
	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	forboth(ln, names, lw, counts)
	{
		int			missing = slots_apply(MyDatabaseId, lfirst(ln), true,
										  Min(lfirst_int(lw), INGEST_MAX_SUB_WORKERS), false);

		if (missing > 0)
			elog(WARNING, "inbox_outbox: %d workers of subscription \"%s\" have no slot",
				 missing, (char *) lfirst(ln));
		any = true;
	}
	LWLockRelease(inbox_outbox_shared->lock);
	SPI_finish();
	if (any)
		launcher_wake(false);
}
