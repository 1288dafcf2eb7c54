/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  Publishing: validation of outbox rows, outbox_publish(), and the
 *	  commit-time wake-up of the relay.
 *
 * An event is a row of inbox_outbox.outbox written in the application's own
 * transaction, so it exists if and only if that transaction commits.
 * outbox_publish() checks its arguments with SQLSTATE-coded errors before
 * inserting; rows inserted directly (an ORM mapping the table) are held to
 * the same topic and header rules by CHECK constraints that call the
 * valid_* functions below.
 *
 * The relay sleeps on its latch.  A statement trigger on the outbox table
 * marks the transaction, and a transaction callback sets the relay's latch
 * once the commit is visible, so the relay reads the new rows at once; a
 * rolled-back or prepared transaction wakes nobody.  COMMIT PREPARED runs
 * no callback of the transaction it commits, so a ProcessUtility hook wakes
 * the relay of the database once it has committed (it must run there), the
 * prepared transaction's rows or not: a wake-up more is one read more.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "nodes/value.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "inbox_outbox.h"
#include "ingest_admin.h"
#include "pg_compat.h"
#include "shared_state.h"
#include "spi_plan.h"
#include "ulid.h"

PG_FUNCTION_INFO_V1(outbox_publish);
PG_FUNCTION_INFO_V1(outbox_valid_topic);
PG_FUNCTION_INFO_V1(outbox_valid_headers);
PG_FUNCTION_INFO_V1(outbox_wakeup);
PG_FUNCTION_INFO_V1(relay_launcher_wakeup);
PG_FUNCTION_INFO_V1(relay_ddl_wakeup);

/* Kafka's own limit on topic names. */
#define KAFKA_TOPIC_MAX_LEN 249

#define RESERVED_HEADER "event_id"

static bool xact_callback_registered = false;
static ProcessUtility_hook_type prev_process_utility = NULL;
static bool relay_wake_pending = false;
static bool launcher_wake_pending = false;

static SPIPlanPtr insert_plan = NULL;
static Oid	insert_plan_ulid = InvalidOid;	/* the ulid type insert_plan uses */

/*
 * Why a topic name is invalid, or NULL if Kafka accepts it.  *detail gets a
 * sentence for errdetail.
 */
const char *
outbox_topic_problem(const char *topic, int len, const char **detail)
{
	*detail = NULL;
	if (len == 0)
		return "topic must not be empty";
	if (len > KAFKA_TOPIC_MAX_LEN)
	{
		*detail = "Kafka topic names have at most 249 characters.";
		return "topic name is too long";
	}
	if ((len == 1 && topic[0] == '.') ||
		(len == 2 && topic[0] == '.' && topic[1] == '.'))
	{
		*detail = "Kafka does not allow the topic names \".\" and \"..\".";
		return "invalid topic name";
	}
	for (int i = 0; i < len; i++)
	{
		char		c = topic[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
		{
			*detail = "Kafka topic names consist of ASCII letters, digits, \".\", \"_\" and \"-\".";
			return "invalid character in topic name";
		}
	}
	return NULL;
}

/*
 * Why a headers document is invalid, or NULL if it is an object of string
 * values without the reserved name.  *name gets the offending header name.
 */
static const char *
headers_problem(Jsonb *headers, char **name, int *total_len)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *current = NULL;

	*name = NULL;
	*total_len = 0;
	if (!JB_ROOT_IS_OBJECT(headers))
		return "headers must be a JSON object";

	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			current = pnstrdup(v.val.string.val, v.val.string.len);
			*total_len += v.val.string.len;
			if (strcmp(current, RESERVED_HEADER) == 0)
			{
				*name = current;
				return "header name \"event_id\" is reserved";
			}
		}
		else if (tok == WJB_VALUE)
		{
			if (v.type != jbvString)
			{
				*name = current;
				return "header values must be JSON strings";
			}
			*total_len += v.val.string.len;
		}
	}
	return NULL;
}

/* inbox_outbox.valid_topic(text): CHECK constraint of the outbox table */
Datum
outbox_valid_topic(PG_FUNCTION_ARGS)
{
	text	   *topic = PG_GETARG_TEXT_PP(0);
	const char *detail;

	PG_RETURN_BOOL(outbox_topic_problem(VARDATA_ANY(topic), VARSIZE_ANY_EXHDR(topic),
								 &detail) == NULL);
}

/* inbox_outbox.valid_headers(jsonb): CHECK constraint of the outbox table */
Datum
outbox_valid_headers(PG_FUNCTION_ARGS)
{
	Jsonb	   *headers = PG_GETARG_JSONB_P(0);
	char	   *name;
	int			len;

	PG_RETURN_BOOL(headers_problem(headers, &name, &len) == NULL);
}

static void
check_topic(text *topic)
{
	const char *detail;
	const char *problem;
	char	   *str;
	int			len;

	if (topic == NULL)
		ereport(ERROR,
				errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				errmsg("topic must not be null"));

	str = VARDATA_ANY(topic);
	len = VARSIZE_ANY_EXHDR(topic);
	problem = outbox_topic_problem(str, len, &detail);
	if (problem == NULL)
		return;
	if (len == 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("%s", problem));
	ereport(ERROR,
			errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			errmsg("%s: \"%s\"", problem, text_to_cstring(topic)),
			errdetail("%s", detail));
}

static int
check_headers(Jsonb *headers)
{
	const char *problem;
	char	   *name;
	int			len;

	if (headers == NULL)
		return 0;

	problem = headers_problem(headers, &name, &len);
	if (problem == NULL)
		return len;
	if (name == NULL)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("%s", problem),
				errdetail("Headers are given as an object whose values are strings, such as {\"trace_id\": \"abc\"}."));
	else if (strcmp(name, RESERVED_HEADER) == 0)
		ereport(ERROR,
				errcode(ERRCODE_RESERVED_NAME),
				errmsg("%s", problem),
				errdetail("The relay sets the header event_id to the event's id."));
	ereport(ERROR,
			errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			errmsg("%s", problem),
			errdetail("The value of header \"%s\" is not a string.", name));
	return 0;					/* keep compiler quiet */
}

/*
 * Remember to wake the relay when the current transaction commits.
 */
static void
outbox_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (relay_wake_pending)
				relay_wake(MyDatabaseId);
			if (launcher_wake_pending)
				launcher_wake(true);
			relay_wake_pending = false;
			launcher_wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			relay_wake_pending = false;
			launcher_wake_pending = false;
			break;
		default:
			break;
	}
}

/* Ask for the relay and/or the launcher to be woken at commit. */
static void
wake_at_commit(bool relay, bool launcher)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(outbox_xact_callback, NULL);
		xact_callback_registered = true;
	}
	relay_wake_pending |= relay;
	launcher_wake_pending |= launcher;
}

/*
 * outbox_publish(topic text, key text, payload bytea, headers jsonb)
 *
 * The text and jsonb overloads are SQL functions that convert their payload
 * to UTF-8 bytes and call this one.
 */
Datum
outbox_publish(PG_FUNCTION_ARGS)
{
	text	   *topic = PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0);
	text	   *key = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	bytea	   *payload = PG_ARGISNULL(2) ? NULL : PG_GETARG_BYTEA_PP(2);
	Jsonb	   *headers = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	int64		size;
	pg_ulid    *id;
	Datum		values[5];
	char		nulls[5];
	int			ret;

	/*
	 * The size counts what the relay will send, as the relay counts it:
	 * payload, key, and the names and values of the headers, the event_id
	 * header included.  What passes here, the relay sends.
	 */
	check_topic(topic);
	size = check_headers(headers);
	size += strlen(RESERVED_HEADER) + ULID_TEXT_LEN;
	size += key ? VARSIZE_ANY_EXHDR(key) : 0;
	size += payload ? VARSIZE_ANY_EXHDR(payload) : 0;
	if (size > inbox_outbox_max_message_bytes)
		ereport(ERROR,
				errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				errmsg("outbox message is too large"),
				errdetail("Payload, key and headers, with the %d bytes of the event_id header, take %lld bytes; inbox_outbox.max_message_bytes is %d.",
						  (int) (strlen(RESERVED_HEADER) + ULID_TEXT_LEN),
						  (long long) size, inbox_outbox_max_message_bytes));

	id = palloc(sizeof(pg_ulid));
	ulid_generate(id);

	SPI_connect();

	/*
	 * The plan names the ulid type by OID.  After DROP and CREATE EXTENSION
	 * in this session's lifetime that OID is gone, and the plan must go too.
	 */
	if (insert_plan != NULL && insert_plan_ulid != get_fn_expr_rettype(fcinfo->flinfo))
	{
		SPI_freeplan(insert_plan);
		insert_plan = NULL;
	}
	if (insert_plan == NULL)
	{
		Oid			argtypes[5];

		insert_plan_ulid = get_fn_expr_rettype(fcinfo->flinfo);
		argtypes[0] = insert_plan_ulid;
		argtypes[1] = TEXTOID;
		argtypes[2] = TEXTOID;
		argtypes[3] = BYTEAOID;
		argtypes[4] = JSONBOID;
		insert_plan = spi_prepare_kept("INSERT INTO inbox_outbox.outbox"
									   " (id, topic, key, payload, headers)"
									   " VALUES ($1, $2, $3, $4, $5)",
									   5, argtypes);
	}

	values[0] = PointerGetDatum(id);
	values[1] = PointerGetDatum(topic);
	values[2] = PointerGetDatum(key);
	values[3] = PointerGetDatum(payload);
	values[4] = PointerGetDatum(headers);
	nulls[0] = ' ';
	nulls[1] = ' ';
	nulls[2] = key ? ' ' : 'n';
	nulls[3] = payload ? ' ' : 'n';
	nulls[4] = headers ? ' ' : 'n';

	ret = spi_insert_in_caller_snapshot(insert_plan, values, nulls);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not insert outbox row: %s", SPI_result_code_string(ret));
	SPI_finish();

	PG_RETURN_POINTER(id);
}

/*
 * inbox_outbox.outbox_wakeup(): AFTER INSERT statement trigger on the
 * outbox table, and AFTER any change on inbox_outbox.database_identity (so
 * that a paused copy's relay looks again once adopt_outbox() commits).
 */
Datum
outbox_wakeup(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				errmsg("outbox_wakeup() must be called as a trigger"));

	wake_at_commit(true, false);
	return PointerGetDatum(NULL);
}

/*
 * inbox_outbox.relay_launcher_wakeup(): called by the install and upgrade
 * scripts so that, once CREATE EXTENSION commits, the launcher starts a
 * relay for this database without a server restart.
 */
Datum
relay_launcher_wakeup(PG_FUNCTION_ARGS)
{
	wake_at_commit(false, true);
	PG_RETURN_VOID();
}

/*
 * Whether a DROP statement drops this extension.
 */
static bool
drops_this_extension(Node *parsetree)
{
	DropStmt   *stmt = (DropStmt *) parsetree;
	ListCell   *lc;

	if (parsetree == NULL || !IsA(parsetree, DropStmt) ||
		stmt->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, stmt->objects)
	{
		if (strcmp(strVal(lfirst(lc)), "inbox_outbox") == 0)
			return true;
	}
	return false;
}

/*
 * Say how many events a DROP EXTENSION discards, if the caller may read
 * the outbox (a NOTICE must not make the drop fail).
 */
static void
notice_discarded_events(void)
{
	Oid			outbox = get_relname_relid("outbox",
										   get_namespace_oid("inbox_outbox", true));
	int64		pending;
	bool		isnull;

	if (!OidIsValid(outbox) ||
		pg_class_aclcheck(outbox, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		return;

	SPI_connect();
	if (SPI_execute("SELECT pg_catalog.count(*) FROM inbox_outbox.outbox", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count the outbox's rows");
	pending = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  1, &isnull));
	SPI_finish();
	if (pending > 0)
		ereport(NOTICE,
				errmsg_plural("dropping extension inbox_outbox discards %lld event not yet sent to Kafka",
							  "dropping extension inbox_outbox discards %lld events not yet sent to Kafka",
							  pending, (long long) pending));
}

/*
 * inbox_outbox.relay_ddl_wakeup(): event trigger at the start of DROP
 * EXTENSION.  The relay of this database is woken once the drop commits,
 * finds the extension gone and stops, instead of noticing only at its next
 * fallback poll.  A drop of this extension also says how many events it
 * discards.
 */
Datum
relay_ddl_wakeup(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata = (EventTriggerData *) fcinfo->context;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				errmsg("relay_ddl_wakeup() must be called as an event trigger"));

	if (drops_this_extension(trigdata->parsetree))
	{
		notice_discarded_events();
		ingest_drop_all_at_commit();
	}
	wake_at_commit(true, false);
	PG_RETURN_VOID();
}

/*
 * ProcessUtility hook: after a COMMIT PREPARED has committed, wake this
 * database's relay, as the commit of the transaction itself would have.
 */
static void
outbox_process_utility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	if (IsA(stmt, TransactionStmt) &&
		((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED)
		relay_wake(MyDatabaseId);
}

/*
 * Install the hook.  Called from _PG_init while shared_preload_libraries
 * is processed: without the shared memory there is no relay to wake.
 */
void
outbox_wake_init(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = outbox_process_utility;
}
