/*-------------------------------------------------------------------------
 *
 * relay.c
 *	  The relay worker: publishes committed outbox rows of one database to
 *	  Kafka and deletes each row only once Kafka has acknowledged it.
 *
 * The launcher starts one relay per database in which the extension exists.
 * A relay works in rounds:
 *
 *	1. In a short transaction, read the oldest rows still in the table
 *	   (ORDER BY id, at most inbox_outbox.batch_size).  Only committed rows
 *	   are visible.  The relay never keeps a high-water mark: an id is
 *	   assigned before commit, so a transaction that commits late would hide
 *	   behind it.  Rows waiting for a retry are skipped, and so is every
 *	   later row with the same topic and key, which the query excludes with
 *	   an anti-join on a partial index of failed rows.
 *	2. With no transaction open and no lock held, produce the rows and serve
 *	   delivery reports until every message has one, sleeping on the latch
 *	   and on librdkafka's event pipe.  Messages never time out (see
 *	   kafka.c), so during a broker outage the round simply waits, in state
 *	   "broker unreachable", holding at most one batch in memory.
 *	3. In a short transaction, delete the acknowledged rows and record
 *	   failures: a row that failed gets attempts + 1, its error, and a retry
 *	   time with exponential backoff; after inbox_outbox.max_attempts, or at
 *	   once for a message librdkafka refuses to queue (too large, say), it
 *	   moves to inbox_outbox.outbox_dead_letter and the rows of its key flow
 *	   on.
 *
 * A message that fails for good makes the producer fail fatally (gapless
 * delivery), which also fails every other message of the round with purge
 * errors; those count as no attempt and are simply sent again.  The relay
 * then recreates the producer.  A broker refuses a whole produce request at
 * once, so messages batched with a bad one get its error too: every row
 * that failed is therefore retried alone, in a round of its own (retry
 * rounds alternate with ordinary ones), and only a failure of its own can
 * send it to the dead-letter table.  A crash between acknowledgement and
 * delete sends the acknowledged rows again; consumers deduplicate by the
 * event_id header.
 *
 * States shown in inbox_outbox.relay_status: idle (nothing to send),
 * publishing (a round is under way), backing off (only rows waiting for a
 * retry are left), broker unreachable (a round is waiting and librdkafka
 * reports all brokers down).
 *
 * Only one relay may run per database: it holds a session-level advisory
 * lock for its lifetime, so two relays can never reorder a key.
 *
 * This file and kafka.c form inbox_outbox_relay.so, the only library linked
 * with librdkafka; application backends never load it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "inbox_outbox.h"
#include "kafka.h"
#include "shared_state.h"
#include "spi_plan.h"
#include "ulid.h"

PG_MODULE_MAGIC;

PGDLLEXPORT void inbox_outbox_relay_main(Datum main_arg);

/* Advisory lock key that marks a database's running relay. */
#define RELAY_LOCK_KEY1		0x696F7278	/* "iorx" */
#define RELAY_LOCK_KEY2		0

/* Inbox pruning: claims per transaction, and how often to look. */
#define PRUNE_BATCH				10000
#define PRUNE_INTERVAL_MS		10000

/* Most payload, key and header bytes one round reads and produces. */
#define RELAY_ROUND_BYTES		(64 * 1024 * 1024)

/* Longest wait between retries of a failed row. */
#define RELAY_MAX_BACKOFF_MS	60000

typedef struct RelayRow
{
	pg_ulid		id;
	char		id_text[ULID_TEXT_LEN + 1];
	char	   *topic;
	char	   *key;			/* NULL for a null key */
	int			key_len;
	char	   *payload;		/* NULL for a null value (tombstone) */
	int			payload_len;
	KafkaHeader *headers;		/* user headers, then event_id */
	int			nheaders;
	int			headers_len;
	int64		created_ms;
	int			attempts;
	bool		oversize;		/* above inbox_outbox.max_message_bytes */
	rd_kafka_resp_err_t local_err;	/* librdkafka refused it for good */
} RelayRow;

static RelaySlot *my_slot = NULL;
static KafkaProducer *producer = NULL;
static char *producer_brokers = NULL;
static char *producer_config = NULL;

static char *database_name = NULL;
static MemoryContext round_context = NULL;
static KafkaResult *results = NULL;
static int	results_size = 0;

static Oid	ulid_type = InvalidOid;
static SPIPlanPtr fetch_plan = NULL;
static SPIPlanPtr next_retry_plan = NULL;
static SPIPlanPtr delete_plan = NULL;
static SPIPlanPtr fail_plan = NULL;
static SPIPlanPtr dead_letter_plan = NULL;

static void
relay_set_state(RelayState state)
{
	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	my_slot->state = state;
	LWLockRelease(inbox_outbox_shared->lock);
}

static void
relay_record_error(const char *error)
{
	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	strlcpy(my_slot->last_error, error, RELAY_ERROR_LEN);
	my_slot->last_error_at = GetCurrentTimestamp();
	LWLockRelease(inbox_outbox_shared->lock);
}

static void
relay_count(uint64 published, uint64 failed, uint64 dead_lettered)
{
	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	my_slot->published += published;
	my_slot->failed += failed;
	my_slot->dead_lettered += dead_lettered;
	LWLockRelease(inbox_outbox_shared->lock);
}

static void
relay_shmem_exit(int code, Datum arg)
{
	if (my_slot == NULL)
		return;
	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	my_slot->pid = 0;
	my_slot->latch = NULL;
	my_slot->state = RELAY_STOPPED;
	LWLockRelease(inbox_outbox_shared->lock);
}

static void
begin_work(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Prepare the relay's statements.  Runs inside a transaction, once the
 * extension is known to exist.
 */
static void
prepare_plans(void)
{
	Oid			argtypes[3];
	Oid			outbox;
	Oid			ulid_array;
	HeapTuple	tup;
	char	   *path;

	if (fetch_plan != NULL)
		return;

	/* the ulid type lives in the extension's schema, which may vary */
	outbox = get_relname_relid("outbox", get_namespace_oid("inbox_outbox", false));
	ulid_type = get_atttype(outbox, get_attnum(outbox, "id"));
	ulid_array = get_array_type(ulid_type);

	/* the statements use ulid's operators, found through search_path */
	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(ulid_type));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for type %u", ulid_type);
	path = psprintf("pg_catalog, %s",
					quote_identifier(get_namespace_name(((Form_pg_type) GETSTRUCT(tup))->typnamespace)));
	ReleaseSysCache(tup);
	SetConfigOption("search_path", path, PGC_USERSET, PGC_S_SESSION);

	argtypes[0] = INT4OID;
	fetch_plan = spi_prepare_kept(
		"SELECT o.id, o.topic, o.key, o.payload, o.headers,"
		"       (extract(epoch FROM o.created_at) * 1000)::int8, o.attempts"
		"  FROM inbox_outbox.outbox o"
		" WHERE (o.attempts = 0 OR o.next_attempt_at <= now())"
		"   AND NOT EXISTS (SELECT 1 FROM inbox_outbox.outbox f"
		"                    WHERE f.attempts > 0 AND f.topic = o.topic"
		"                      AND f.key = o.key AND f.id < o.id)"
		" ORDER BY o.id LIMIT $1",
		1, argtypes);

	next_retry_plan = spi_prepare_kept(
		"SELECT (extract(epoch FROM min(next_attempt_at) - now()) * 1000)::int8"
		"  FROM inbox_outbox.outbox WHERE attempts > 0",
		0, NULL);

	argtypes[0] = ulid_array;
	delete_plan = spi_prepare_kept(
		"DELETE FROM inbox_outbox.outbox WHERE id = ANY($1)",
		1, argtypes);

	argtypes[0] = ulid_type;
	argtypes[1] = TEXTOID;
	argtypes[2] = INT4OID;
	fail_plan = spi_prepare_kept(
		"UPDATE inbox_outbox.outbox"
		"   SET attempts = attempts + 1, last_error = $2,"
		"       next_attempt_at = now() + $3 * interval '1 millisecond'"
		" WHERE id = $1 RETURNING attempts",
		3, argtypes);

	dead_letter_plan = spi_prepare_kept(
		"WITH moved AS (DELETE FROM inbox_outbox.outbox WHERE id = $1 RETURNING *)"
		" INSERT INTO inbox_outbox.outbox_dead_letter"
		"   (id, topic, key, payload, headers, created_at, attempts, last_error)"
		" SELECT id, topic, key, payload, headers, created_at, attempts + $3, $2"
		"   FROM moved",
		3, argtypes);
}

/*
 * Is the extension (still) installed in this database, at a version with
 * an outbox?  If not, record why the relay stops and exit; the launcher
 * starts a relay again after the next CREATE or ALTER EXTENSION.  Runs
 * inside a transaction.
 */
static void
exit_unless_extension(uint32 generation)
{
	/* version 0.1 has no outbox: wait for ALTER EXTENSION ... UPDATE */
	if (OidIsValid(get_extension_oid("inbox_outbox", true)) &&
		OidIsValid(get_namespace_oid("inbox_outbox", true)))
		return;

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	my_slot->no_extension = true;
	my_slot->seen_generation = generation;
	LWLockRelease(inbox_outbox_shared->lock);

	ereport(DEBUG1,
			errmsg("inbox_outbox relay for database %u stops: the extension is not installed",
				   MyDatabaseId));
	proc_exit(0);
}

/* Payload, key and header bytes: what inbox_outbox.max_message_bytes limits. */
static int64
row_size(const RelayRow *row)
{
	return (int64) row->payload_len + row->key_len + row->headers_len;
}

static char *
copy_bytes(Datum value, int *len)
{
	bytea	   *b = DatumGetByteaPP(value);
	char	   *copy;

	*len = VARSIZE_ANY_EXHDR(b);
	copy = palloc(*len + 1);
	memcpy(copy, VARDATA_ANY(b), *len);
	copy[*len] = '\0';
	return copy;
}

/* User headers from the jsonb object, plus event_id, into row->headers. */
static void
copy_headers(RelayRow *row, Datum value, bool isnull)
{
	int			n = 0;
	int			max = 1;
	Jsonb	   *jb = NULL;

	row->headers_len = ULID_TEXT_LEN + 8;
	if (!isnull)
	{
		jb = DatumGetJsonbP(value);
		if (JB_ROOT_IS_OBJECT(jb))
			max += JB_ROOT_COUNT(jb);
	}
	row->headers = palloc(sizeof(KafkaHeader) * max);

	if (jb != NULL && JB_ROOT_IS_OBJECT(jb))
	{
		JsonbIterator *it = JsonbIteratorInit(&jb->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *name = NULL;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
				name = pnstrdup(v.val.string.val, v.val.string.len);
			else if (tok == WJB_VALUE && v.type == jbvString && n < max - 1)
			{
				row->headers[n].name = name;
				row->headers[n].value = pnstrdup(v.val.string.val, v.val.string.len);
				row->headers[n].value_len = v.val.string.len;
				row->headers_len += strlen(name) + v.val.string.len;
				n++;
			}
		}
	}

	row->headers[n].name = "event_id";
	row->headers[n].value = row->id_text;
	row->headers[n].value_len = ULID_TEXT_LEN;
	row->nheaders = n + 1;
}

/*
 * Step 1: read the next batch into round_context.  Returns the number of
 * rows; *next_retry_ms is set to the wait until the earliest pending retry,
 * or -1 if none.
 */
static int
relay_fetch(RelayRow **rows_out, int64 *next_retry_ms, uint32 generation)
{
	int			batch = inbox_outbox_batch_size;
	Datum		arg = Int32GetDatum(batch);
	int			n = 0;
	int64		bytes = 0;
	RelayRow   *rows;
	Portal		portal;
	MemoryContext old;

	begin_work("inbox_outbox relay: reading outbox");
	exit_unless_extension(generation);
	prepare_plans();

	old = MemoryContextSwitchTo(round_context);
	rows = palloc0(sizeof(RelayRow) * batch);
	MemoryContextSwitchTo(old);

	/* read in chunks, so that a batch of large rows stops at the byte cap */
	portal = SPI_cursor_open(NULL, fetch_plan, &arg, NULL, true);
	while (n < batch && bytes < RELAY_ROUND_BYTES)
	{
		SPI_cursor_fetch(portal, true, Min(256, batch - n));
		if (SPI_processed == 0)
			break;

		old = MemoryContextSwitchTo(round_context);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			RelayRow   *row = &rows[n++];
			bool		isnull;
			Datum		d;

			memcpy(&row->id, DatumGetPointer(SPI_getbinval(tup, desc, 1, &isnull)),
				   sizeof(pg_ulid));
			ulid_to_text(&row->id, row->id_text);
			row->topic = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
			d = SPI_getbinval(tup, desc, 3, &isnull);
			if (!isnull)
				row->key = copy_bytes(d, &row->key_len);
			d = SPI_getbinval(tup, desc, 4, &isnull);
			if (!isnull)
				row->payload = copy_bytes(d, &row->payload_len);
			d = SPI_getbinval(tup, desc, 5, &isnull);
			copy_headers(row, d, isnull);
			row->created_ms = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
			row->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
			bytes += row_size(row);
		}
		MemoryContextSwitchTo(old);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);

	*next_retry_ms = -1;
	if (n < batch && bytes < RELAY_ROUND_BYTES)
	{
		int			ret;

		ret = SPI_execute_plan(next_retry_plan, NULL, NULL, true, 1);
		if (ret == SPI_OK_SELECT && SPI_processed == 1)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
				*next_retry_ms = Max(DatumGetInt64(d), 0);
		}
	}

	end_work();
	*rows_out = rows;
	return n;
}

/*
 * Choose what the round sends from the fetched rows.  A row that failed
 * before is retried alone, so that its outcome is its own: a failure in a
 * shared produce request may have been another row's.  Retry rounds and
 * ordinary rounds alternate, so many failing rows cannot starve the rest.
 * Returns the number of rows; *rows is updated.
 */
static int
relay_next_round(RelayRow **rows, int n, bool *isolated)
{
	static bool last_was_retry = false;
	RelayRow   *all = *rows;
	int			retry = -1;
	int			kept = 0;

	for (int i = 0; i < n && retry < 0; i++)
	{
		if (all[i].attempts > 0)
			retry = i;
	}

	*isolated = false;
	if (retry < 0)
	{
		last_was_retry = false;
		return n;
	}

	/* after a retry round, the rows that never failed, if there are any */
	if (last_was_retry)
	{
		for (int i = 0; i < n; i++)
		{
			if (all[i].attempts == 0)
				all[kept++] = all[i];
		}
		if (kept > 0)
		{
			last_was_retry = false;
			return kept;
		}
	}

	/* none was kept, so all[retry] is still in place */
	last_was_retry = true;
	*isolated = true;
	*rows = &all[retry];
	return 1;
}

static void
relay_process_reload(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

static bool
producer_config_changed(void)
{
	return producer != NULL &&
		(strcmp(producer_brokers, inbox_outbox_brokers) != 0 ||
		 strcmp(producer_config, inbox_outbox_kafka_config) != 0);
}

/* Errors that a message suffers because another one failed or we purged. */
static bool
is_collateral(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
		err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT ||
		err == RD_KAFKA_RESP_ERR__FATAL ||
		err == RD_KAFKA_RESP_ERR__DESTROY;
}

/*
 * Step 2: produce the rows and wait until each has a delivery report, the
 * producer fails fatally, or (when shutting down) shutdown_timeout passes.
 * Returns false if the producer failed fatally and must be recreated.
 */
static bool
relay_produce(RelayRow *rows, int n)
{
	bool		fatal = false;
	TimestampTz shutdown_deadline = 0;
	char		errbuf[RELAY_ERROR_LEN];

	if (results_size < n)
	{
		if (results)
			pfree(results);
		results = MemoryContextAlloc(TopMemoryContext, sizeof(KafkaResult) * n);
		results_size = n;
	}
	kafka_begin_round(producer, results, n);
	relay_set_state(RELAY_PUBLISHING);

	for (int i = 0; i < n; i++)
	{
		RelayRow   *row = &rows[i];
		rd_kafka_resp_err_t err;

		if (row_size(row) > inbox_outbox_max_message_bytes)
		{
			row->oversize = true;
			continue;
		}
		err = kafka_produce(producer, i, row->topic,
							row->key, row->key_len,
							row->payload, row->payload_len,
							row->headers, row->nheaders,
							row->created_ms);
		if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
			row->local_err = err;	/* above the producer's message.max.bytes */
		else if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			/*
			 * Refused now but maybe not later (a topic the producer has
			 * learnt does not exist may be created): an ordinary failure.
			 */
			results[i].done = true;
			results[i].err = err;
		}
	}

	while (kafka_outstanding(producer) > 0)
	{
		int			rc;

		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT |
							   WL_EXIT_ON_PM_DEATH,
							   kafka_wait_fd(producer), 100, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		kafka_serve(producer);

		if (kafka_take_error(producer, errbuf, sizeof(errbuf)))
			relay_record_error(errbuf);

		if (kafka_fatal_error(producer, errbuf, sizeof(errbuf)))
		{
			ereport(LOG,
					errmsg("inbox_outbox relay: Kafka producer failed: %s", errbuf),
					errdetail("The producer is recreated; unacknowledged rows are sent again."));
			relay_record_error(errbuf);
			fatal = true;
			break;
		}

		/*
		 * New Kafka settings wait for the round to end, unless the round
		 * cannot end because no broker answers: then it is abandoned, its
		 * rows stay, and the next round uses the new settings.
		 */
		relay_process_reload();
		if (producer_config_changed() && kafka_brokers_down(producer))
		{
			ereport(LOG,
					errmsg("inbox_outbox relay: Kafka configuration changed while no broker answers, abandoning the round"));
			break;
		}

		if (ShutdownRequestPending)
		{
			if (shutdown_deadline == 0)
				shutdown_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																inbox_outbox_shutdown_timeout);
			else if (GetCurrentTimestamp() >= shutdown_deadline)
				break;
		}

		relay_set_state(kafka_brokers_down(producer) ?
						RELAY_BROKER_UNREACHABLE : RELAY_PUBLISHING);
	}

	/* anything still outstanding is purged; its rows stay */
	if (kafka_outstanding(producer) > 0)
		kafka_purge(producer, 1000);

	return !fatal;
}

static int
backoff_ms(int attempts)
{
	int64		ms = inbox_outbox_retry_backoff;

	for (int i = 1; i < attempts && ms < RELAY_MAX_BACKOFF_MS; i++)
		ms *= 2;
	return (int) Min(ms, RELAY_MAX_BACKOFF_MS);
}

static void
move_to_dead_letter(RelayRow *row, const char *reason, int increment)
{
	Datum		values[3];
	int			ret;

	values[0] = PointerGetDatum(&row->id);
	values[1] = CStringGetTextDatum(reason);
	values[2] = Int32GetDatum(increment);
	ret = SPI_execute_plan(dead_letter_plan, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not move outbox row to the dead-letter table: %s",
			 SPI_result_code_string(ret));
	ereport(LOG,
			errmsg("inbox_outbox relay: event %s moved to inbox_outbox.outbox_dead_letter: %s",
				   row->id_text, reason));
}

/*
 * Step 3: delete what Kafka acknowledged, record failures.
 *
 * A broker refuses a whole produce request at once, so a row that failed
 * in a round with others may have failed for another row's sake.  Only a
 * failure in an isolated round (the row alone) moves a row to the
 * dead-letter table; see relay_next_round().
 */
static void
relay_record(RelayRow *rows, int n, bool isolated)
{
	Datum	   *acked = palloc(sizeof(Datum) * Max(n, 1));
	int			nacked = 0;
	uint64		nfailed = 0;
	uint64		ndead = 0;
	char	   *last_failure = NULL;

	for (int i = 0; i < n; i++)
	{
		if (!rows[i].oversize && rows[i].local_err == RD_KAFKA_RESP_ERR_NO_ERROR &&
			results[i].done && results[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
			acked[nacked++] = PointerGetDatum(&rows[i].id);
	}

	begin_work("inbox_outbox relay: recording deliveries");

	if (nacked > 0)
	{
		ArrayType  *array = construct_array(acked, nacked, ulid_type,
											sizeof(pg_ulid), false, TYPALIGN_CHAR);
		Datum		arg = PointerGetDatum(array);
		int			ret = SPI_execute_plan(delete_plan, &arg, NULL, false, 0);

		if (ret != SPI_OK_DELETE)
			elog(ERROR, "could not delete acknowledged outbox rows: %s",
				 SPI_result_code_string(ret));
	}

	for (int i = 0; i < n; i++)
	{
		RelayRow   *row = &rows[i];
		rd_kafka_resp_err_t err;
		char	   *reason;

		if (row->oversize || row->local_err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			/* too large to ever be sent: final */
			if (row->oversize)
				reason = psprintf("message of %lld bytes is larger than inbox_outbox.max_message_bytes (%d)",
								  (long long) row_size(row), inbox_outbox_max_message_bytes);
			else
				reason = psprintf("%s: %s (above the producer's message.max.bytes)",
								  rd_kafka_err2name(row->local_err),
								  rd_kafka_err2str(row->local_err));
			move_to_dead_letter(row, reason, 1);
			nfailed++;
			ndead++;
			last_failure = reason;
			continue;
		}

		if (!results[i].done)
			continue;			/* purged at shutdown: sent again later */
		err = results[i].err;
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR || is_collateral(err))
			continue;

		reason = psprintf("%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
		nfailed++;
		last_failure = reason;
		if (isolated && row->attempts + 1 >= inbox_outbox_max_attempts)
		{
			move_to_dead_letter(row, reason, 1);
			ndead++;
		}
		else
		{
			Datum		values[3];
			int			ret;

			values[0] = PointerGetDatum(&row->id);
			values[1] = CStringGetTextDatum(reason);
			values[2] = Int32GetDatum(backoff_ms(row->attempts + 1));
			ret = SPI_execute_plan(fail_plan, values, NULL, false, 0);
			if (ret != SPI_OK_UPDATE_RETURNING)
				elog(ERROR, "could not record outbox delivery failure: %s",
					 SPI_result_code_string(ret));
		}
	}

	end_work();

	relay_count(nacked, nfailed, ndead);
	if (last_failure != NULL)
		relay_record_error(last_failure);
}

static void
relay_create_producer(void)
{
	char	   *client_id = psprintf("inbox_outbox-%s", database_name);

	if (producer_brokers)
		pfree(producer_brokers);
	if (producer_config)
		pfree(producer_config);
	producer_brokers = MemoryContextStrdup(TopMemoryContext, inbox_outbox_brokers);
	producer_config = MemoryContextStrdup(TopMemoryContext, inbox_outbox_kafka_config);
	producer = kafka_producer_create(producer_brokers, producer_config, client_id);
	pfree(client_id);
}

/*
 * A new broker list or producer configuration means a new producer.  It is
 * made between rounds, when nothing is in flight, so no row is lost or sent
 * twice; only a round stuck on unreachable brokers is abandoned for it (see
 * relay_produce).
 */
static void
relay_reconnect_if_changed(void)
{
	if (producer_config_changed())
	{
		ereport(LOG,
				errmsg("inbox_outbox relay: Kafka configuration changed, reconnecting"));
		kafka_producer_destroy(producer, 1000);
		producer = NULL;
	}
}

/*
 * Delete expired inbox claims in bounded batches, each in its own short
 * transaction, so claims continue meanwhile.
 *
 * A pass starts every PRUNE_INTERVAL_MS and goes through the expired claims
 * oldest first, each batch starting where the last one ended.  After each
 * batch the relay rests twice as long as the batch took, so pruning takes
 * at most about a third of one core, and writes WAL (full-page images,
 * mostly, of the pages it empties) at a third of the rate it could, however
 * much has expired: the claims' commits wait for that WAL too.  A commit
 * that wakes the relay interrupts the pass (publishing comes first); the
 * pass goes on after the next round rather than at the next interval, so a
 * busy outbox cannot starve retention.
 */
static void
relay_prune_inbox(void)
{
	static TimestampTz last_pass = 0;
	static bool pass_open = false;
	static TimestampTz from;
	int64		retention_ms = (int64) inbox_outbox_inbox_retention * 1000;

	if (inbox_outbox_inbox_retention < 0)
	{
		pass_open = false;
		return;
	}
	if (!pass_open)
	{
		TimestampTz now = GetCurrentTimestamp();

		if (!TimestampDifferenceExceeds(last_pass, now, PRUNE_INTERVAL_MS))
			return;
		last_pass = now;
		pass_open = true;
		TIMESTAMP_NOBEGIN(from);
	}

	for (;;)
	{
		int64		deleted;
		Oid			inbox;
		instr_time	started;
		instr_time	took;

		INSTR_TIME_SET_CURRENT(started);
		begin_work("inbox_outbox relay: pruning inbox");
		inbox = get_relname_relid("inbox", get_namespace_oid("inbox_outbox", true));
		if (!OidIsValid(inbox))
		{
			/* extension not yet updated to a version with an inbox */
			end_work();
			pass_open = false;
			return;
		}
		deleted = inbox_prune_batch(retention_ms, PRUNE_BATCH, &from);
		end_work();
		INSTR_TIME_SET_CURRENT(took);
		INSTR_TIME_SUBTRACT(took, started);

		if (deleted < PRUNE_BATCH)
		{
			pass_open = false;
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

static void
relay_claim(void)
{
	LOCKTAG		tag;
	uint32		generation;

	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	my_slot = relay_slot_find(MyDatabaseId);
	generation = inbox_outbox_shared->extension_generation;
	LWLockRelease(inbox_outbox_shared->lock);
	if (my_slot == NULL)
		elog(ERROR, "no relay slot assigned to database %u", MyDatabaseId);

	begin_work("inbox_outbox relay: starting");
	exit_unless_extension(generation);
	database_name = MemoryContextStrdup(TopMemoryContext,
										get_database_name(MyDatabaseId));

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, RELAY_LOCK_KEY1, RELAY_LOCK_KEY2, 2);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		end_work();
		ereport(LOG,
				errmsg("inbox_outbox relay for database \"%s\" is already running",
					   database_name));
		proc_exit(0);
	}
	end_work();

	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	my_slot->pid = MyProcPid;
	my_slot->latch = MyLatch;
	my_slot->state = RELAY_STARTING;
	my_slot->no_extension = false;
	LWLockRelease(inbox_outbox_shared->lock);
	before_shmem_exit(relay_shmem_exit, (Datum) 0);
}

void
inbox_outbox_relay_main(Datum main_arg)
{
	Oid			dbid = DatumGetObjectId(main_arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);
	pgstat_report_appname("inbox_outbox relay");

	/*
	 * The relay's own commits need not wait for their WAL to reach disk: a
	 * crash can lose only the last few of them, and each is safe to lose.
	 * A lost DELETE of acknowledged rows sends them again (a duplicate, as a
	 * crash between acknowledgement and DELETE would anyway), a lost failure
	 * record retries the row once more, a lost inbox prune is pruned again.
	 * Rounds then end without waiting for a flush, which shortens the wait
	 * of the events committed meanwhile.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);

	if (inbox_outbox_shared == NULL)
		elog(ERROR, "inbox_outbox relay requires shared_preload_libraries");

	relay_claim();
	ereport(LOG,
			errmsg("inbox_outbox relay started for database \"%s\"",
				   database_name));

	round_context = AllocSetContextCreate(TopMemoryContext, "inbox_outbox relay round",
										  ALLOCSET_DEFAULT_SIZES);

	while (!ShutdownRequestPending)
	{
		RelayRow   *rows;
		int			n;
		int64		next_retry_ms;
		uint32		generation;
		long		timeout;
		int			rc;

		CHECK_FOR_INTERRUPTS();
		relay_process_reload();
		relay_reconnect_if_changed();
		if (producer == NULL)
			relay_create_producer();

		LWLockAcquire(inbox_outbox_shared->lock, LW_SHARED);
		generation = inbox_outbox_shared->extension_generation;
		LWLockRelease(inbox_outbox_shared->lock);

		MemoryContextReset(round_context);
		n = relay_fetch(&rows, &next_retry_ms, generation);
		if (n > 0)
		{
			bool		isolated;

			n = relay_next_round(&rows, n, &isolated);
			if (!relay_produce(rows, n))
			{
				relay_record(rows, n, isolated);
				kafka_producer_destroy(producer, 1000);
				producer = NULL;
				continue;
			}
			relay_record(rows, n, isolated);

			/* a busy outbox must not starve the inbox's retention */
			relay_prune_inbox();

			/*
			 * Look again before sleeping: more rows may be waiting, and a
			 * commit that set the latch during the round was consumed by
			 * the round's own waits.
			 */
			continue;
		}

		relay_set_state(next_retry_ms >= 0 ? RELAY_BACKING_OFF : RELAY_IDLE);
		relay_prune_inbox();
		timeout = inbox_outbox_poll_interval;
		if (next_retry_ms >= 0 && next_retry_ms < timeout)
			timeout = (long) next_retry_ms;

		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT |
							   WL_EXIT_ON_PM_DEATH,
							   kafka_wait_fd(producer), timeout, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		kafka_serve(producer);
	}

	kafka_producer_destroy(producer, 1000);
	ereport(LOG,
			errmsg("inbox_outbox relay for database \"%s\" stopped",
				   database_name));
	proc_exit(0);
}
