/*-------------------------------------------------------------------------
 *
 * ingest_store.c
 *	  The database side of an ingestion worker: its subscription, its
 *	  offsets, and the one transaction per batch that makes consumption
 *	  exactly-once.
 *
 * A batch's transaction:
 *
 *	1. locks the offset row of every partition in the batch (FOR UPDATE)
 *	   and checks that it says what the worker believes: the offset after
 *	   the last message the worker committed.  Anything else (a
 *	   subscription_seek(), an unsubscribe(), a second worker a slip let in,
 *	   a restore) fences the batch: it is rolled back and the worker reads
 *	   its offsets again;
 *	2. for each message, claims its event id in the inbox under the
 *	   subscription's name (INSERT ... ON CONFLICT DO NOTHING), and calls the
 *	   handler as the subscription's owner if the claim is the first;
 *	3. moves each partition's offset past its last message;
 *	4. commits.  The effects, the claims and the offsets commit or vanish
 *	   together, so that a crash at any point re-reads exactly the messages
 *	   whose effects are gone, and the inbox absorbs what a producer sent
 *	   twice or a seek backwards re-reads.
 *
 * No savepoint per message: more than 64 subtransactions in one transaction
 * overflow every backend's snapshot cache.  A batch that fails is rolled
 * back whole, and ingest.c replays it one message per transaction.
 *
 * Errors are classified by SQLSTATE: serialization failures and deadlocks
 * (class 40), lock and statement timeouts (55P03, 57014) and lack of
 * resources (class 53) are transient, and retried without counting against
 * the message; an unusable handler (gone, a wrong signature, no EXECUTE, an
 * owner that became superuser or was dropped, or a permission error
 * anywhere, 42501) stops the subscription: that is a configuration error,
 * not a bad message; everything else is the message's fault.
 *
 * The worker's statements run as the bootstrap superuser with search_path
 * "pg_catalog, pg_temp", qualified operators, and typed parameters, like
 * the relay's.  Its commits wait for the WAL flush like any other
 * (synchronous_commit as configured): a handler may publish events through
 * the outbox, which the relay may send as soon as the commit is visible.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ingest_store.h"
#include "relay_api.h"
#include "spi_plan.h"

static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr advance_plan = NULL;
static SPIPlanPtr dead_letter_plan = NULL;

static void
prepare_plans(void)
{
	if (lock_plan == NULL)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, INT4OID};

		lock_plan = spi_prepare_kept("SELECT next_offset FROM inbox_outbox.subscription_offset "
									 "WHERE subscription OPERATOR(pg_catalog.=) $1 "
									 "AND topic OPERATOR(pg_catalog.=) $2 "
									 "AND partition OPERATOR(pg_catalog.=) $3 FOR UPDATE",
									 3, types);
	}
	if (claim_plan == NULL)
	{
		Oid			types[2] = {TEXTOID, TEXTOID};

		claim_plan = spi_prepare_kept("INSERT INTO inbox_outbox.inbox (consumer, event_id) "
									  "VALUES ('" INGEST_CONSUMER_PREFIX "' OPERATOR(pg_catalog.||) $1, $2) "
									  "ON CONFLICT DO NOTHING",
									  2, types);
	}
	if (advance_plan == NULL)
	{
		Oid			types[5] = {TEXTOID, TEXTOID, INT4OID, INT8OID, INT8OID};

		advance_plan = spi_prepare_kept("UPDATE inbox_outbox.subscription_offset "
										"SET next_offset = $4, high_watermark = $5, "
										"    updated_at = pg_catalog.clock_timestamp() "
										"WHERE subscription OPERATOR(pg_catalog.=) $1 "
										"AND topic OPERATOR(pg_catalog.=) $2 "
										"AND partition OPERATOR(pg_catalog.=) $3",
										5, types);
	}
	if (dead_letter_plan == NULL)
	{
		Oid			types[12] = {TEXTOID, TEXTOID, INT4OID, INT8OID, BYTEAOID, BYTEAOID,
		JSONBOID, TIMESTAMPTZOID, INT4OID, TEXTOID, TEXTOID, TEXTOID};

		dead_letter_plan = spi_prepare_kept("INSERT INTO inbox_outbox.ingest_dead_letter "
											"(subscription, topic, partition, \"offset\", key, payload, "
											" headers, ts, attempts, sqlstate, error, event_id) "
											"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
											12, types);
	}
}

IngestSubscription *
ingest_store_subscription(const char *name)
{
	Datum		arg = CStringGetTextDatum(name);
	Oid			argtype = TEXTOID;
	IngestSubscription *sub;
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	Datum		topics;
	Datum	   *elems;
	int			n;
	MemoryContext caller = CurrentMemoryContext;

	SPI_connect();
	if (SPI_execute_with_args("SELECT owner::pg_catalog.oid, "
							  " pg_catalog.to_regprocedure(handler)::pg_catalog.oid, topics, "
							  " start_from, event_id, batch_size, max_attempts, on_gap, "
							  " workers, enabled "
							  "FROM inbox_outbox.subscription WHERE name OPERATOR(pg_catalog.=) $1",
							  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read subscription \"%s\"", name);
	if (SPI_processed == 0)
	{
		SPI_finish();
		return NULL;
	}
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	sub = MemoryContextAllocZero(caller, sizeof(IngestSubscription));
	sub->name = MemoryContextStrdup(caller, name);
	sub->owner = DatumGetObjectId(SPI_getbinval(tuple, desc, 1, &isnull));
	sub->handler = DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull));
	if (isnull)
		sub->handler = InvalidOid;	/* dropped or renamed: unusable */
	topics = SPI_getbinval(tuple, desc, 3, &isnull);
	deconstruct_array(DatumGetArrayTypeP(topics), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, NULL, &n);
	for (int i = 0; i < n; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		sub->topics = lappend(sub->topics, TextDatumGetCString(elems[i]));
		MemoryContextSwitchTo(old);
	}
	sub->start_from = MemoryContextStrdup(caller, SPI_getvalue(tuple, desc, 4));
	sub->event_id = MemoryContextStrdup(caller, SPI_getvalue(tuple, desc, 5));
	sub->batch_size = DatumGetInt32(SPI_getbinval(tuple, desc, 6, &isnull));
	sub->max_attempts = DatumGetInt32(SPI_getbinval(tuple, desc, 7, &isnull));
	sub->on_gap = MemoryContextStrdup(caller, SPI_getvalue(tuple, desc, 8));
	sub->workers = DatumGetInt32(SPI_getbinval(tuple, desc, 9, &isnull));
	sub->enabled = DatumGetBool(SPI_getbinval(tuple, desc, 10, &isnull));
	SPI_finish();
	return sub;
}

int64
ingest_store_offset(const char *subscription, const char *topic, int32 partition)
{
	Datum		args[3];
	Oid			types[3] = {TEXTOID, TEXTOID, INT4OID};
	int64		offset = -1;

	args[0] = CStringGetTextDatum(subscription);
	args[1] = CStringGetTextDatum(topic);
	args[2] = Int32GetDatum(partition);
	SPI_connect();
	if (SPI_execute_with_args("SELECT next_offset FROM inbox_outbox.subscription_offset "
							  "WHERE subscription OPERATOR(pg_catalog.=) $1 "
							  "AND topic OPERATOR(pg_catalog.=) $2 "
							  "AND partition OPERATOR(pg_catalog.=) $3",
							  3, types, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read an offset of subscription \"%s\"", subscription);
	if (SPI_processed == 1)
	{
		bool		isnull;

		offset = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	return offset;
}

int64
ingest_store_start_offset(const char *subscription, const char *topic,
						  int32 partition, int64 next_offset)
{
	Datum		args[4];
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, INT8OID};
	bool		isnull;
	int64		stored;

	args[0] = CStringGetTextDatum(subscription);
	args[1] = CStringGetTextDatum(topic);
	args[2] = Int32GetDatum(partition);
	args[3] = Int64GetDatum(next_offset);
	SPI_connect();
	/* the row's offset, whether this made it or another worker or a seek did */
	if (SPI_execute_with_args("INSERT INTO inbox_outbox.subscription_offset AS o "
							  "(subscription, topic, partition, next_offset) "
							  "VALUES ($1, $2, $3, $4) "
							  "ON CONFLICT (subscription, topic, partition) "
							  "DO UPDATE SET next_offset = o.next_offset "
							  "RETURNING o.next_offset",
							  4, types, args, NULL, false, 0) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "could not write an offset of subscription \"%s\"", subscription);
	stored = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										 1, &isnull));
	SPI_finish();
	return stored;
}

/* Is the partition's offset row where the worker is?  Locks it. */
static bool
lock_offset(IngestSubscription *sub, IngestPartition *part)
{
	Datum		args[3];
	bool		isnull;

	args[0] = CStringGetTextDatum(sub->name);
	args[1] = CStringGetTextDatum(part->topic);
	args[2] = Int32GetDatum(part->partition);
	if (SPI_execute_plan(lock_plan, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock an offset of subscription \"%s\"", sub->name);
	return SPI_processed == 1 &&
		DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									1, &isnull)) == part->next_offset;
}

static void
advance_offset(IngestSubscription *sub, IngestPartition *part, int64 next_offset)
{
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	args[0] = CStringGetTextDatum(sub->name);
	args[1] = CStringGetTextDatum(part->topic);
	args[2] = Int32GetDatum(part->partition);
	args[3] = Int64GetDatum(next_offset);
	args[4] = Int64GetDatum(part->high);
	if (part->high < 0)
		nulls[4] = 'n';
	if (SPI_execute_plan(advance_plan, args, nulls, false, 0) != SPI_OK_UPDATE ||
		SPI_processed != 1)
		elog(ERROR, "could not move an offset of subscription \"%s\"", sub->name);
}

/* Whether a claim of the event id is the first. */
static bool
claim(IngestSubscription *sub, IngestMessage *m)
{
	Datum		args[2];

	if (m->event_id == NULL)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("message at offset " INT64_FORMAT " of %s [%d] has no event id",
					   m->offset, m->part->topic, m->part->partition),
				errdetail("%s", m->event_id_error));
	args[0] = CStringGetTextDatum(sub->name);
	args[1] = CStringGetTextDatum(m->event_id);
	if (SPI_execute_plan(claim_plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not claim an event id for subscription \"%s\"", sub->name);
	return SPI_processed == 1;
}

static void
call_handler(IngestSubscription *sub, FmgrInfo *flinfo, IngestMessage *m)
{
	Datum		args[INGEST_HANDLER_NARGS];
	bool		nulls[INGEST_HANDLER_NARGS];

	memset(nulls, 0, sizeof(nulls));
	args[0] = CStringGetTextDatum(m->part->topic);
	args[1] = Int32GetDatum(m->part->partition);
	args[2] = Int64GetDatum(m->offset);
	args[3] = PointerGetDatum(m->key);
	nulls[3] = (m->key == NULL);
	args[4] = PointerGetDatum(m->payload);
	nulls[4] = (m->payload == NULL);
	args[5] = m->headers;
	nulls[5] = (m->headers == (Datum) 0);
	args[6] = TimestampTzGetDatum(m->ts);
	nulls[6] = !m->has_ts;
	relay_api->ingest_handler_call(flinfo, sub->owner, args, nulls);
}

static IngestOutcome
classify(int sqlstate)
{
	if (ERRCODE_TO_CATEGORY(sqlstate) == ERRCODE_TRANSACTION_ROLLBACK ||
		ERRCODE_TO_CATEGORY(sqlstate) == ERRCODE_INSUFFICIENT_RESOURCES ||
		sqlstate == ERRCODE_LOCK_NOT_AVAILABLE ||
		sqlstate == ERRCODE_QUERY_CANCELED)
		return INGEST_TRANSIENT;
	if (sqlstate == ERRCODE_INSUFFICIENT_PRIVILEGE)
		return INGEST_UNUSABLE;
	return INGEST_PERMANENT;
}

/*
 * Run work in a transaction of its own; an error rolls it back and is
 * classified into *failure.  work returns INGEST_DONE to commit, anything
 * else to roll back.
 */
static IngestOutcome
in_transaction(IngestOutcome (*work) (void *arg, IngestFailure *failure),
			   void *arg, IngestFailure *failure)
{
	MemoryContext caller = CurrentMemoryContext;
	volatile IngestOutcome outcome = INGEST_DONE;

	failure->sqlstate = 0;
	failure->message = NULL;
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		SPI_connect();
		prepare_plans();
		outcome = work(arg, failure);
		/* the message lives in SPI's memory, which SPI_finish() frees */
		if (failure->message != NULL)
			failure->message = MemoryContextStrdup(caller, failure->message);
		SPI_finish();
		PopActiveSnapshot();
		if (outcome == INGEST_DONE)
			CommitTransactionCommand();
		else
			AbortCurrentTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		/* out of every (sub)transaction the error may have left open */
		HOLD_INTERRUPTS();
		AbortOutOfAnyTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();
		MemoryContextSwitchTo(caller);
		failure->sqlstate = edata->sqlerrcode;
		failure->message = pstrdup(edata->message ? edata->message : "unknown error");
		outcome = classify(edata->sqlerrcode);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	/* table statistics for autovacuum: the offsets, the inbox, the handler's */
	pgstat_report_stat(false);
	return outcome;
}

typedef struct BatchWork
{
	IngestSubscription *sub;
	IngestMessage **messages;
	int			n;
	IngestTally *tally;
	const IngestFailure *why;	/* for a dead letter */
} BatchWork;

static IngestOutcome
check_usable(IngestSubscription *sub, IngestFailure *failure)
{
	IngestHandlerProblem problem;

	if (relay_api->ingest_handler_usable(sub->handler, sub->owner, &problem))
		return INGEST_DONE;
	failure->sqlstate = problem.sqlstate;
	failure->message = problem.message;
	return INGEST_UNUSABLE;
}

/* Lock the offset row of every partition of the messages; false if fenced. */
static bool
lock_partitions(IngestSubscription *sub, IngestMessage **messages, int n)
{
	for (int i = 0; i < n; i++)
	{
		bool		seen = false;

		for (int j = 0; j < i && !seen; j++)
			seen = (messages[j]->part == messages[i]->part);
		if (!seen && !lock_offset(sub, messages[i]->part))
			return false;
	}
	return true;
}

/* Move every partition of the messages past its last one. */
static void
advance_partitions(IngestSubscription *sub, IngestMessage **messages, int n)
{
	for (int i = n - 1; i >= 0; i--)
	{
		bool		later = false;

		for (int j = i + 1; j < n && !later; j++)
			later = (messages[j]->part == messages[i]->part);
		if (!later)
			advance_offset(sub, messages[i]->part, messages[i]->offset + 1);
	}
}

static IngestOutcome
batch_work(void *arg, IngestFailure *failure)
{
	BatchWork  *w = (BatchWork *) arg;
	IngestOutcome usable = check_usable(w->sub, failure);
	FmgrInfo	flinfo;
	int64		duplicates = 0;

	if (usable != INGEST_DONE)
		return usable;
	if (!lock_partitions(w->sub, w->messages, w->n))
		return INGEST_FENCED;
	fmgr_info(w->sub->handler, &flinfo);
	for (int i = 0; i < w->n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (claim(w->sub, w->messages[i]))
			call_handler(w->sub, &flinfo, w->messages[i]);
		else
			duplicates++;
	}
	advance_partitions(w->sub, w->messages, w->n);
	w->tally->consumed += w->n;
	w->tally->duplicates += duplicates;
	return INGEST_DONE;
}

IngestOutcome
ingest_store_batch(IngestSubscription *sub, IngestMessage **messages, int n,
				   IngestFailure *failure, IngestTally *tally)
{
	BatchWork	w;
	IngestTally mine = {0, 0};
	IngestOutcome outcome;

	w.sub = sub;
	w.messages = messages;
	w.n = n;
	w.tally = &mine;
	w.why = NULL;
	outcome = in_transaction(batch_work, &w, failure);
	if (outcome == INGEST_DONE)
	{
		tally->consumed += mine.consumed;
		tally->duplicates += mine.duplicates;
	}
	return outcome;
}

static IngestOutcome
dead_letter_work(void *arg, IngestFailure *failure)
{
	BatchWork  *w = (BatchWork *) arg;
	IngestMessage *m = w->messages[0];
	Datum		args[12];
	char		nulls[12];

	if (!lock_partitions(w->sub, w->messages, 1))
		return INGEST_FENCED;
	memset(nulls, ' ', sizeof(nulls));
	args[0] = CStringGetTextDatum(w->sub->name);
	args[1] = CStringGetTextDatum(m->part->topic);
	args[2] = Int32GetDatum(m->part->partition);
	args[3] = Int64GetDatum(m->offset);
	args[4] = PointerGetDatum(m->key);
	if (m->key == NULL)
		nulls[4] = 'n';
	args[5] = PointerGetDatum(m->payload);
	if (m->payload == NULL)
		nulls[5] = 'n';
	args[6] = m->headers;
	if (m->headers == (Datum) 0)
		nulls[6] = 'n';
	args[7] = TimestampTzGetDatum(m->ts);
	if (!m->has_ts)
		nulls[7] = 'n';
	args[8] = Int32GetDatum(m->attempts);
	args[9] = CStringGetTextDatum(unpack_sql_state(w->why->sqlstate));
	args[10] = CStringGetTextDatum(w->why->message ? w->why->message : "");
	if (m->event_id != NULL)
		args[11] = CStringGetTextDatum(m->event_id);
	else
		nulls[11] = 'n';
	if (SPI_execute_plan(dead_letter_plan, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write a dead letter of subscription \"%s\"", w->sub->name);
	advance_partitions(w->sub, w->messages, 1);
	return INGEST_DONE;
}

IngestOutcome
ingest_store_dead_letter(IngestSubscription *sub, IngestMessage *message,
						 const IngestFailure *why, IngestFailure *failure)
{
	BatchWork	w;

	w.sub = sub;
	w.messages = &message;
	w.n = 1;
	w.tally = NULL;
	w.why = why;
	return in_transaction(dead_letter_work, &w, failure);
}

void
ingest_store_gap(IngestSubscription *sub, IngestPartition *part, int64 to_offset,
				 const char *action, int64 new_offset)
{
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Oid			types[6] = {TEXTOID, TEXTOID, INT4OID, INT8OID, INT8OID, TEXTOID};
	MemoryContext caller = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	args[0] = CStringGetTextDatum(sub->name);
	args[1] = CStringGetTextDatum(part->topic);
	args[2] = Int32GetDatum(part->partition);
	args[3] = Int64GetDatum(part->next_offset);
	args[4] = Int64GetDatum(to_offset);
	if (to_offset < 0)
		nulls[4] = 'n';
	args[5] = CStringGetTextDatum(action);
	if (SPI_execute_with_args("INSERT INTO inbox_outbox.ingest_gap "
							  "(subscription, topic, partition, from_offset, to_offset, action) "
							  "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
							  6, types, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record a gap of subscription \"%s\"", sub->name);
	if (new_offset >= 0)
	{
		Oid			move_types[5] = {TEXTOID, TEXTOID, INT4OID, INT8OID, INT8OID};
		Datum		move_args[5];

		/* only from where the worker is: a seek committed meanwhile wins */
		move_args[0] = args[0];
		move_args[1] = args[1];
		move_args[2] = args[2];
		move_args[3] = Int64GetDatum(part->next_offset);
		move_args[4] = Int64GetDatum(new_offset);
		if (SPI_execute_with_args("UPDATE inbox_outbox.subscription_offset "
								  "SET next_offset = $5, updated_at = pg_catalog.clock_timestamp() "
								  "WHERE subscription OPERATOR(pg_catalog.=) $1 "
								  "AND topic OPERATOR(pg_catalog.=) $2 "
								  "AND partition OPERATOR(pg_catalog.=) $3 "
								  "AND next_offset OPERATOR(pg_catalog.=) $4",
								  5, move_types, move_args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not move an offset of subscription \"%s\"", sub->name);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
}
