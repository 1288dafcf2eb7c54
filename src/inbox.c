/*-------------------------------------------------------------------------
 *
 * inbox.c
 *	  The inbox: inbox_try_claim() for idempotent consumers, pruning of old
 *	  claims, and the per-consumer count of absorbed duplicates.
 *
 * A claim is a narrow row (consumer, event_id, claimed_at) whose primary key
 * makes the first claim of an id win.  inbox_try_claim() is one INSERT ...
 * ON CONFLICT DO NOTHING in the caller's transaction: it never raises on a
 * duplicate, a rollback of the caller releases the claim, and a concurrent
 * claim of the same id waits on the unique index for the first claimant's
 * outcome.  So "claim, then apply the business change" in one transaction
 * applies each event once, however often it is delivered.
 *
 * Absorbed duplicates are counted in shared memory per database and
 * consumer (since server start); counting them in a table would make every
 * duplicate a write.  A database names at most INBOX_CONSUMERS_PER_DB
 * consumers there; the duplicates of its others are counted together, so
 * that one database cannot take every entry.
 *
 * Old claims are deleted by the relay between rounds (inbox_prune_paced():
 * bounded batches in short transactions, oldest first through the btree on
 * claimed_at, each batch starting where the last one ended, paced so that
 * retention takes a bounded share of the machine), or by CALL inbox_prune()
 * where no relay runs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "inbox_outbox.h"
#include "pg_compat.h"
#include "shared_state.h"
#include "spi_plan.h"
#include "ulid.h"

PG_FUNCTION_INFO_V1(inbox_try_claim);
PG_FUNCTION_INFO_V1(inbox_try_claim_ulid);
PG_FUNCTION_INFO_V1(inbox_prune_once);
PG_FUNCTION_INFO_V1(inbox_duplicates);


static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr prune_plan = NULL;

/* This database's counter for the consumer; the caller holds the lock. */
static InboxConsumerStats *
find_consumer(InboxOutboxShared *shared, const char *consumer, int len)
{
	for (int i = 0; i < shared->nconsumers; i++)
	{
		InboxConsumerStats *c = &shared->consumers[i];

		if (c->dbid == MyDatabaseId && !c->others &&
			strncmp(c->consumer, consumer, len) == 0 && c->consumer[len] == '\0')
			return c;
	}
	return NULL;
}

/*
 * A new counter for the consumer, or this database's counter of the other
 * consumers once it has INBOX_CONSUMERS_PER_DB named ones, so that one
 * database cannot take every entry.  NULL if the table is full.  The
 * caller holds the lock exclusively.
 */
static InboxConsumerStats *
add_consumer(InboxOutboxShared *shared, const char *consumer, int len)
{
	InboxConsumerStats *others = NULL;
	InboxConsumerStats *c;
	int			named = 0;

	for (int i = 0; i < shared->nconsumers; i++)
	{
		c = &shared->consumers[i];
		if (c->dbid != MyDatabaseId)
			continue;
		if (c->others)
			others = c;
		else
			named++;
	}
	if (named < INBOX_CONSUMERS_PER_DB || others == NULL)
	{
		if (shared->nconsumers >= INBOX_MAX_CONSUMERS)
			return others;
		c = &shared->consumers[shared->nconsumers++];
		c->dbid = MyDatabaseId;
		c->others = named >= INBOX_CONSUMERS_PER_DB;
		if (c->others)
			c->consumer[0] = '\0';
		else
		{
			memcpy(c->consumer, consumer, len);
			c->consumer[len] = '\0';
		}
		pg_atomic_init_u64(&c->duplicates, 0);
		return c;
	}
	return others;
}

static void
count_duplicate(const char *consumer, int len)
{
	InboxOutboxShared *shared = inbox_outbox_shared;
	InboxConsumerStats *found;

	if (shared == NULL)
		return;

	LWLockAcquire(shared->lock, LW_SHARED);
	found = find_consumer(shared, consumer, len);
	LWLockRelease(shared->lock);

	if (found == NULL)
	{
		/* look again: another backend may have added it meanwhile */
		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		found = find_consumer(shared, consumer, len);
		if (found == NULL)
			found = add_consumer(shared, consumer, len);
		LWLockRelease(shared->lock);
	}

	if (found != NULL)
		pg_atomic_fetch_add_u64(&found->duplicates, 1);
}

static bool
claim(text *event_id, text *consumer)
{
	int			id_len;
	int			consumer_len;
	Datum		values[2];
	bool		claimed;
	int			ret;

	if (event_id == NULL)
		ereport(ERROR,
				errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				errmsg("event id must not be null"));
	if (consumer == NULL)
		ereport(ERROR,
				errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				errmsg("consumer must not be null"));

	id_len = VARSIZE_ANY_EXHDR(event_id);
	consumer_len = VARSIZE_ANY_EXHDR(consumer);
	if (id_len == 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("event id must not be empty"));
	if (id_len > INBOX_EVENT_ID_MAXLEN)
		ereport(ERROR,
				errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				errmsg("event id is too long"),
				errdetail("An event id has at most %d bytes; this one has %d.",
						  INBOX_EVENT_ID_MAXLEN, id_len));
	if (consumer_len == 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("consumer must not be empty"));
	if (consumer_len > INBOX_CONSUMER_MAXLEN)
		ereport(ERROR,
				errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				errmsg("consumer name is too long"),
				errdetail("A consumer name has at most %d bytes; this one has %d.",
						  INBOX_CONSUMER_MAXLEN, consumer_len));

	SPI_connect();
	if (claim_plan == NULL)
	{
		Oid			argtypes[2] = {TEXTOID, TEXTOID};

		claim_plan = spi_prepare_kept("INSERT INTO inbox_outbox.inbox (consumer, event_id) "
									  "VALUES ($1, $2) ON CONFLICT DO NOTHING",
									  2, argtypes);
	}

	values[0] = PointerGetDatum(consumer);
	values[1] = PointerGetDatum(event_id);
	ret = spi_insert_in_caller_snapshot(claim_plan, values, NULL);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not insert inbox claim: %s", SPI_result_code_string(ret));
	claimed = (SPI_processed == 1);
	SPI_finish();

	if (!claimed)
		count_duplicate(VARDATA_ANY(consumer), consumer_len);
	return claimed;
}

/* inbox_try_claim(event_id text, consumer text) */
Datum
inbox_try_claim(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(claim(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0),
						 PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1)));
}

/*
 * inbox_try_claim(event_id ulid, consumer text), also used for uuid: the id
 * is claimed under its 26-character ULID text, the form of the event_id
 * header, so a claim by value and a claim by header text are the same.
 */
Datum
inbox_try_claim_ulid(PG_FUNCTION_ARGS)
{
	char		buf[ULID_TEXT_LEN + 1];

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(claim(NULL, NULL));
	ulid_to_text(PG_GETARG_ULID_P(0), buf);
	PG_RETURN_BOOL(claim(cstring_to_text(buf),
						 PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1)));
}

/*
 * Delete at most batch_size claims older than retention_ms, oldest first,
 * among those claimed at or after *from; set *from to the claimed_at of the
 * newest claim deleted (unchanged when none was).  Returns the number
 * deleted.  Runs inside the caller's transaction.
 *
 * The rows are found through the btree on claimed_at.  Deleted rows keep
 * their index entries until vacuum, so a scan that began at the low end of
 * the index every time would walk past all the rows deleted so far, and a
 * long prune would slow down batch by batch; starting at *from makes each
 * batch cost the same.  *from is inclusive because several claims can share
 * a timestamp.
 */
int64
inbox_prune_batch(int64 retention_ms, int batch_size, TimestampTz *from)
{
	Datum		values[3];
	int			ret;
	int64		deleted;
	bool		isnull;
	Datum		newest;
	TimestampTz cutoff;

	/*
	 * The cutoff is computed here rather than in SQL, so that the statement
	 * needs no arithmetic operator, and so cannot run one planted in a
	 * schema on the caller's search_path.  A retention beyond the range of
	 * timestamps prunes nothing.
	 */
	if (retention_ms > PG_INT64_MAX / 1000 ||
		pg_sub_s64_overflow(GetCurrentTransactionStartTimestamp(), retention_ms * 1000,
							&cutoff) ||
		!IS_VALID_TIMESTAMP(cutoff))
		TIMESTAMP_NOBEGIN(cutoff);

	SPI_connect();
	if (prune_plan == NULL)
	{
		Oid			argtypes[3] = {TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID};

		prune_plan = spi_prepare_kept("WITH gone AS ("
									  " DELETE FROM inbox_outbox.inbox"
									  "  WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
									  "   SELECT ctid FROM inbox_outbox.inbox"
									  "    WHERE claimed_at OPERATOR(pg_catalog.>=) $3"
									  "      AND claimed_at OPERATOR(pg_catalog.<) $1"
									  "    ORDER BY claimed_at LIMIT $2))"
									  " RETURNING claimed_at)"
									  "SELECT pg_catalog.count(*), pg_catalog.max(claimed_at) FROM gone",
									  3, argtypes);
	}
	values[0] = TimestampTzGetDatum(cutoff);
	values[1] = Int32GetDatum(batch_size);
	values[2] = TimestampTzGetDatum(*from);
	ret = SPI_execute_plan(prune_plan, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not prune the inbox: %s", SPI_result_code_string(ret));
	deleted = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	newest = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull)
		*from = DatumGetTimestampTz(newest);
	SPI_finish();
	return deleted;
}

/*
 * Go on with the relay's retention pass: delete expired claims in batches of
 * INBOX_PRUNE_BATCH, each in a short transaction of its own (begin and end
 * start and commit one, as the relay's role), so claims continue meanwhile.
 *
 * A pass starts every INBOX_PRUNE_INTERVAL_MS and goes through the expired
 * claims oldest first, each batch starting where the last one ended.  After
 * each batch the relay rests twice as long as the batch took, so pruning
 * takes at most about a third of one core, and writes WAL (full-page images,
 * mostly, of the pages it empties) at a third of the rate it could, however
 * much has expired: the claims' commits wait for that WAL too.  A commit
 * that wakes the relay interrupts the pass (publishing comes first; the
 * latch stays set for the relay's loop), and so do a stop and a reload; the
 * pass goes on at the next call rather than at the next interval, so a busy
 * outbox cannot starve retention.
 */
void
inbox_prune_paced(InboxPrunePass *pass, void (*begin) (const char *activity),
				  void (*end) (void))
{
	int64		retention_ms = (int64) inbox_outbox_inbox_retention * 1000;

	if (inbox_outbox_inbox_retention < 0)
	{
		pass->open = false;
		return;
	}
	if (!pass->open)
	{
		TimestampTz now = GetCurrentTimestamp();

		if (!TimestampDifferenceExceeds(pass->last_pass, now, INBOX_PRUNE_INTERVAL_MS))
			return;
		pass->last_pass = now;
		pass->open = true;
		TIMESTAMP_NOBEGIN(pass->from);
	}

	for (;;)
	{
		int64		deleted;
		Oid			inbox;
		instr_time	started;
		instr_time	took;

		INSTR_TIME_SET_CURRENT(started);
		begin("inbox_outbox relay: pruning inbox");
		inbox = get_relname_relid("inbox", get_namespace_oid("inbox_outbox", true));
		if (!OidIsValid(inbox))
		{
			/* extension not yet updated to a version with an inbox */
			end();
			pass->open = false;
			return;
		}
		deleted = inbox_prune_batch(retention_ms, INBOX_PRUNE_BATCH, &pass->from);
		end();
		INSTR_TIME_SET_CURRENT(took);
		INSTR_TIME_SUBTRACT(took, started);

		if (deleted < INBOX_PRUNE_BATCH)
		{
			pass->open = false;
			return;
		}
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending || ConfigReloadPending)
			return;
		if (WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					  Max(1, (long) (2 * INSTR_TIME_GET_MILLISEC(took))),
					  PG_WAIT_EXTENSION) & WL_LATCH_SET)
			return;				/* a commit is waiting: keep the latch set */
	}
}

/*
 * inbox_outbox.inbox_prune_once(retention interval, batch_size int,
 *								  from timestamptz,
 *								  OUT deleted bigint, OUT newest timestamptz)
 *
 * One batch of inbox_prune(); "newest" is where the next batch starts.
 */
Datum
inbox_prune_once(PG_FUNCTION_ARGS)
{
	Interval   *retention = PG_GETARG_INTERVAL_P(0);
	int32		batch_size = PG_GETARG_INT32(1);
	TimestampTz from = PG_GETARG_TIMESTAMPTZ(2);
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int64		ms;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (batch_size < 1)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("batch size must be positive"));
	ms = retention->time / 1000 +
		((int64) retention->day + (int64) retention->month * DAYS_PER_MONTH) * SECS_PER_DAY * 1000;
	if (ms < 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("retention must not be negative"));
	values[0] = Int64GetDatum(inbox_prune_batch(ms, batch_size, &from));
	values[1] = TimestampTzGetDatum(from);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/* inbox_outbox.inbox_duplicates(): absorbed duplicates of this database */
Datum
inbox_duplicates(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (inbox_outbox_shared == NULL)
		return (Datum) 0;

	LWLockAcquire(inbox_outbox_shared->lock, LW_SHARED);
	for (int i = 0; i < inbox_outbox_shared->nconsumers; i++)
	{
		InboxConsumerStats *c = &inbox_outbox_shared->consumers[i];
		Datum		values[2];
		bool		nulls[2] = {false, false};

		if (c->dbid != MyDatabaseId)
			continue;
		/* the consumers past the named ones show as NULL */
		nulls[0] = c->others;
		values[0] = c->others ? (Datum) 0 : CStringGetTextDatum(c->consumer);
		values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&c->duplicates));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(inbox_outbox_shared->lock);
	return (Datum) 0;
}
