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
 * Only one relay may run per database, so two relays can never reorder a
 * key: a relay claims its database's slot in shared memory by writing its
 * pid there under the extension's lock, and leaves if another pid is there.
 * No SQL can take or hold the slot.
 *
 * Trust: the relay's statements resolve no name through a schema that a
 * database role can write.  Its search_path is "pg_catalog, pg_temp",
 * every operator is qualified (the ulid operators with the extension's
 * schema), and every constant and parameter has the exact type its
 * operator takes, so that no implicit cast can make an operator planted
 * elsewhere a better match.  Time arithmetic is done in C.  With
 * inbox_outbox.relay_role set, every statement runs with that role's
 * privileges (see relay_become_role()).
 *
 * This file and kafka.c form inbox_outbox_relay.so, the only library linked
 * with librdkafka; application backends never load it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/itemptr.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "inbox_outbox.h"
#include "kafka.h"
#include "outbox_identity.h"
#include "shared_state.h"
#include "spi_plan.h"
#include "ulid.h"

PG_MODULE_MAGIC;

PGDLLEXPORT void inbox_outbox_relay_main(Datum main_arg);

static bool producer_settings_changed(void);
static bool producer_settings_accepted(void);
static void relay_wait_until_resolved(RelayState state, const char *reason,
									  const char *hint,
									  bool (*resolved) (void)) pg_attribute_noreturn();
static void relay_pause_if_copy(void);

/* Inbox pruning: claims per transaction, and how often to look. */
#define PRUNE_BATCH				10000
#define PRUNE_INTERVAL_MS		10000

/* Most payload, key and header bytes one round reads and produces. */
#define RELAY_ROUND_BYTES		(64 * 1024 * 1024)

/* Longest wait between retries of a failed row. */
#define RELAY_MAX_BACKOFF_MS	60000

typedef struct RelayRow
{
	ItemPointerData ctid;		/* where the row was read */
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
	int64		created_ms;		/* Kafka timestamp; 0 lets the producer choose */
	int			attempts;
	bool		oversize;		/* above inbox_outbox.max_message_bytes */
	char	   *unsendable;		/* why the row cannot become a message */
	rd_kafka_resp_err_t local_err;	/* librdkafka refused it for good */
} RelayRow;

static RelaySlot *my_slot = NULL;
static KafkaProducer *producer = NULL;
static char *producer_brokers = NULL;
static char *producer_config = NULL;

static char *database_name = NULL;
static char *relay_role_name = NULL;	/* NULL: the bootstrap superuser */
static Oid	relay_role_oid = InvalidOid;
static Oid	saved_userid;
static int	saved_sec_context;
static char *wanted_role = NULL;	/* a relay_role that did not exist */
static MemoryContext round_context = NULL;
static KafkaResult *results = NULL;
static int	results_size = 0;

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

/* A round went through: the last error no longer holds (its time stays). */
static void
relay_clear_error(void)
{
	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	my_slot->last_error[0] = '\0';
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
	/* the launcher may have given the slot to another database meanwhile */
	if (my_slot->pid == MyProcPid && my_slot->dbid == MyDatabaseId)
	{
		my_slot->pid = 0;
		my_slot->latch = NULL;
		my_slot->state = RELAY_STOPPED;
	}
	LWLockRelease(inbox_outbox_shared->lock);
}

/*
 * With inbox_outbox.relay_role set, each of the relay's transactions runs
 * as that role.  A background worker cannot connect as a role without LOGIN
 * before PostgreSQL 17, and the relay's role needs no LOGIN, so the relay
 * connects as the bootstrap superuser and becomes the role inside every
 * transaction it starts, as autovacuum and logical replication's apply
 * worker become a table's owner: SECURITY_LOCAL_USERID_CHANGE forbids SET
 * ROLE and SET SESSION AUTHORIZATION meanwhile, and an error's abort
 * restores the user the transaction started with.  (PostgreSQL insists
 * that no transaction starts in such a context, so it is entered and left
 * within each.)
 */
static void
relay_enter_role(void)
{
	if (!OidIsValid(relay_role_oid))
		return;
	GetUserIdAndSecContext(&saved_userid, &saved_sec_context);
	SetUserIdAndSecContext(relay_role_oid,
						   saved_sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

static void
relay_leave_role(void)
{
	if (!OidIsValid(relay_role_oid))
		return;
	SetUserIdAndSecContext(saved_userid, saved_sec_context);
}

static void
begin_work(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	relay_enter_role();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	relay_leave_role();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Prepare the relay's statements.  Runs inside a transaction, once the
 * extension is known to exist.
 *
 * No statement names a ulid operator.  A saved plan is parsed again from its
 * text whenever a schema or an operator changes, so a name such as
 * OPERATOR(public.=) would be looked up afresh, and whoever may rename the
 * extension's schema (a database owner owns public) could rename it and
 * put an operator of theirs under the old name.  A ulid has the bytes of a
 * uuid and the same order, so the statements compare ids as uuid with
 * pg_catalog's operators, after a cast that PostgreSQL finds by type, not
 * by name.  Rows are found by their ctid, a TID scan, and checked by id:
 * a failure record matches both, so a row that moved between the read and
 * the write (VACUUM FULL) is simply not found and is read again; the delete
 * of acknowledged rows is checked in C (relay_delete_acknowledged()).
 * ORDER BY o.id takes the type's default operator class, also found by
 * type.
 */
static void
prepare_plans(void)
{
	Oid			argtypes[4];

	if (fetch_plan != NULL)
		return;

	/*
	 * A value larger than $2 (inbox_outbox.max_message_bytes) is not read
	 * at all: its row can only go to the dead-letter table, and reading it
	 * could take gigabytes.  octet_length() and pg_column_size() look at a
	 * value's header only.
	 */
	argtypes[0] = INT4OID;
	argtypes[1] = INT4OID;
	fetch_plan = spi_prepare_kept(
		"SELECT o.ctid, o.id, o.topic,"
		"       CASE WHEN pg_catalog.octet_length(o.key) OPERATOR(pg_catalog.<=) $2 THEN o.key END,"
		"       CASE WHEN pg_catalog.octet_length(o.payload) OPERATOR(pg_catalog.<=) $2 THEN o.payload END,"
		"       CASE WHEN pg_catalog.pg_column_size(o.headers) OPERATOR(pg_catalog.<=) $2"
		"            THEN o.headers::pg_catalog.text END,"
		"       o.created_at, o.attempts,"
		"       pg_catalog.octet_length(o.key), pg_catalog.octet_length(o.payload),"
		"       pg_catalog.pg_column_size(o.headers)"
		"  FROM inbox_outbox.outbox o"
		" WHERE (o.attempts OPERATOR(pg_catalog.=) 0 OR o.next_attempt_at IS NULL"
		"        OR o.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now())"
		"   AND NOT EXISTS (SELECT 1 FROM inbox_outbox.outbox f"
		"                    WHERE f.attempts OPERATOR(pg_catalog.>) 0"
		"                      AND f.topic OPERATOR(pg_catalog.=) o.topic"
		"                      AND f.key OPERATOR(pg_catalog.=) o.key"
		"                      AND f.id::pg_catalog.uuid OPERATOR(pg_catalog.<) o.id::pg_catalog.uuid)"
		" ORDER BY o.id LIMIT $1",
		2, argtypes);

	next_retry_plan = spi_prepare_kept(
		"SELECT pg_catalog.min(next_attempt_at) FROM inbox_outbox.outbox"
		" WHERE attempts OPERATOR(pg_catalog.>) 0",
		0, NULL);

	/* the ids are checked in C: see relay_delete_acknowledged() */
	argtypes[0] = get_array_type(TIDOID);
	delete_plan = spi_prepare_kept(
		"DELETE FROM inbox_outbox.outbox"
		" WHERE ctid OPERATOR(pg_catalog.=) ANY ($1)"
		" RETURNING ctid, id",
		1, argtypes);

	argtypes[0] = TIDOID;
	argtypes[1] = TEXTOID;
	argtypes[2] = TIMESTAMPTZOID;
	argtypes[3] = UUIDOID;
	fail_plan = spi_prepare_kept(
		"UPDATE inbox_outbox.outbox"
		"   SET attempts = attempts OPERATOR(pg_catalog.+) 1, last_error = $2,"
		"       next_attempt_at = $3"
		" WHERE ctid OPERATOR(pg_catalog.=) $1"
		"   AND id::pg_catalog.uuid OPERATOR(pg_catalog.=) $4",
		4, argtypes);

	/*
	 * An id can be in the dead-letter table already: a dead letter copied
	 * back into the outbox by hand keeps its old row there.  The newer
	 * failure replaces it.
	 */
	argtypes[2] = INT4OID;
	dead_letter_plan = spi_prepare_kept(
		"WITH moved AS (DELETE FROM inbox_outbox.outbox"
		"                WHERE ctid OPERATOR(pg_catalog.=) $1"
		"                  AND id::pg_catalog.uuid OPERATOR(pg_catalog.=) $4"
		"                RETURNING *)"
		" INSERT INTO inbox_outbox.outbox_dead_letter"
		"   (id, topic, key, payload, headers, created_at, attempts, last_error)"
		" SELECT id, topic, key, payload, headers, created_at,"
		"        attempts OPERATOR(pg_catalog.+) $3, $2"
		"   FROM moved"
		" ON CONFLICT (id) DO UPDATE"
		"   SET topic = excluded.topic, key = excluded.key,"
		"       payload = excluded.payload, headers = excluded.headers,"
		"       created_at = excluded.created_at, attempts = excluded.attempts,"
		"       last_error = excluded.last_error, failed_at = excluded.failed_at",
		4, argtypes);
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
	relay_leave_role();
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

/*
 * A row's created_at as a Kafka timestamp: milliseconds since 1970,
 * truncated as a ULID's time is.  A time Kafka cannot carry (infinite, or
 * before 1970) gives 0, which lets the producer stamp the message.
 */
static int64
kafka_timestamp(TimestampTz ts)
{
	int64		us;

	if (TIMESTAMP_NOT_FINITE(ts) ||
		pg_add_s64_overflow(ts, (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY, &us) ||
		us < 0)
		return 0;
	return us / 1000;
}

/* Milliseconds from now until ts, at least 0 and at most a day. */
static int64
ms_until(TimestampTz ts)
{
	TimestampTz now = GetCurrentTimestamp();

	if (ts <= now)
		return 0;
	if (TIMESTAMP_IS_NOEND(ts) || ts - now > USECS_PER_DAY)
		return (int64) SECS_PER_DAY * 1000;
	return (ts - now) / 1000;
}

/*
 * A key or payload, detoasted straight into the round's memory: one copy,
 * the one librdkafka is handed.
 */
static char *
copy_bytes(Datum value, int *len)
{
	bytea	   *b = DatumGetByteaPCopy(value);

	*len = VARSIZE(b) - VARHDRSZ;
	return VARDATA(b);
}

/* An int4 column that is NULL when the value it measures is. */
static int
size_of(HeapTuple tup, TupleDesc desc, int column)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, column, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

/*
 * The row's headers, from the text of its jsonb, plus event_id.  A row
 * whose headers cannot be sent (the CHECK constraint on the outbox keeps
 * them out, but a row restored from elsewhere may lack it) gets the reason
 * in row->unsendable and goes to the dead-letter table.
 */
static void
copy_headers(RelayRow *row, Datum value, bool isnull)
{
	size_t		bytes = 0;
	int			n = 0;

	if (isnull)
		row->headers = palloc(sizeof(KafkaHeader));
	else
	{
		text	   *json = DatumGetTextPP(value);
		char		errbuf[256];

		if (!kafka_headers_from_json(VARDATA_ANY(json), VARSIZE_ANY_EXHDR(json),
									 GetDatabaseEncoding(), &row->headers, &n,
									 &bytes, errbuf, sizeof(errbuf)))
		{
			row->unsendable = psprintf("headers cannot be sent (%s)", errbuf);
			row->headers = palloc(sizeof(KafkaHeader));
			n = 0;
			bytes = 0;
		}
	}

	row->headers[n].name = KAFKA_EVENT_ID_HEADER;
	row->headers[n].value = row->id_text;
	row->headers[n].value_len = ULID_TEXT_LEN;
	row->nheaders = n + 1;
	row->headers_len = bytes + strlen(KAFKA_EVENT_ID_HEADER) + ULID_TEXT_LEN;
}

/*
 * Step 1: read the next batch into round_context.  Returns the number of
 * rows; *next_retry_ms is set to the wait until the earliest pending retry,
 * or -1 if none.
 *
 * The batch ends at inbox_outbox.batch_size rows or before the row that
 * would take it past RELAY_ROUND_BYTES (one row is always taken), counted
 * per row from the values' sizes before they are read.  A row above
 * inbox_outbox.max_message_bytes costs nothing: its values are not read, and
 * it goes to the dead-letter table.  The cursor hands over rows 256 at a
 * time, holding toasted values as pointers, so that is all the memory a
 * round takes besides its rows' values, each held once.
 */
static int
relay_fetch(RelayRow **rows_out, int64 *next_retry_ms, uint32 generation)
{
	int			batch = inbox_outbox_batch_size;
	Datum		args[2];
	int			n = 0;
	int64		bytes = 0;
	bool		full = false;
	RelayRow   *rows;
	Portal		portal;
	MemoryContext old;

	begin_work("inbox_outbox relay: reading outbox");
	exit_unless_extension(generation);
	relay_pause_if_copy();
	prepare_plans();

	old = MemoryContextSwitchTo(round_context);
	rows = palloc0(sizeof(RelayRow) * batch);
	MemoryContextSwitchTo(old);

	args[0] = Int32GetDatum(batch);
	args[1] = Int32GetDatum(inbox_outbox_max_message_bytes);
	portal = SPI_cursor_open(NULL, fetch_plan, args, NULL, true);
	while (n < batch && !full)
	{
		SPI_cursor_fetch(portal, true, Min(256, batch - n));
		if (SPI_processed == 0)
			break;

		old = MemoryContextSwitchTo(round_context);
		for (uint64 i = 0; i < SPI_processed && !full; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			RelayRow   *row = &rows[n];
			int			key_size = size_of(tup, desc, 9);
			int			payload_size = size_of(tup, desc, 10);
			int			headers_size = size_of(tup, desc, 11);
			bool		withheld = key_size > inbox_outbox_max_message_bytes ||
				payload_size > inbox_outbox_max_message_bytes ||
				headers_size > inbox_outbox_max_message_bytes;
			int64		cost = withheld ? 0 :
				(int64) key_size + payload_size + headers_size;
			bool		isnull;
			Datum		d;

			if (n > 0 && bytes + cost > RELAY_ROUND_BYTES)
			{
				full = true;	/* this row and the rest wait for a later round */
				break;
			}
			n++;
			bytes += cost;

			ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 1, &isnull)),
							&row->ctid);
			memcpy(&row->id, DatumGetPointer(SPI_getbinval(tup, desc, 2, &isnull)),
				   sizeof(pg_ulid));
			ulid_to_text(&row->id, row->id_text);
			row->topic = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
			row->created_ms = kafka_timestamp(DatumGetTimestampTz(SPI_getbinval(tup, desc, 7, &isnull)));
			row->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
			if (withheld)
			{
				/* sizes only, for the dead-letter reason */
				row->oversize = true;
				row->key_len = key_size;
				row->payload_len = payload_size;
				row->headers_len = headers_size;
				continue;
			}
			d = SPI_getbinval(tup, desc, 4, &isnull);
			if (!isnull)
				row->key = copy_bytes(d, &row->key_len);
			d = SPI_getbinval(tup, desc, 5, &isnull);
			if (!isnull)
				row->payload = copy_bytes(d, &row->payload_len);
			d = SPI_getbinval(tup, desc, 6, &isnull);
			copy_headers(row, d, isnull);
		}
		MemoryContextSwitchTo(old);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);

	*next_retry_ms = -1;
	if (n < batch && !full)
	{
		int			ret;

		ret = SPI_execute_plan(next_retry_plan, NULL, NULL, true, 1);
		if (ret == SPI_OK_SELECT && SPI_processed == 1)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
				*next_retry_ms = ms_until(DatumGetTimestampTz(d));
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
	return producer != NULL && producer_settings_changed();
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
 * One step of a round's wait: sleep until the latch, librdkafka's event
 * pipe or 100 ms, then serve delivery reports and look at what happened.
 * Returns false when the round must end now: the producer failed fatally
 * (*fatal is set), the Kafka settings changed while no broker answers (the
 * round cannot end otherwise; its rows stay and the next round uses the new
 * settings), or a shutdown was asked for and *shutdown_deadline, set at the
 * first step that sees the request, has passed.
 */
static bool
relay_wait_step(TimestampTz *shutdown_deadline, bool *fatal)
{
	char		errbuf[RELAY_ERROR_LEN];
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
		*fatal = true;
		return false;
	}

	relay_process_reload();
	if (producer_config_changed() && kafka_brokers_down(producer))
	{
		ereport(LOG,
				errmsg("inbox_outbox relay: Kafka configuration changed while no broker answers, abandoning the round"));
		return false;
	}

	if (ShutdownRequestPending)
	{
		if (*shutdown_deadline == 0)
			*shutdown_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															 inbox_outbox_shutdown_timeout);
		else if (GetCurrentTimestamp() >= *shutdown_deadline)
			return false;
	}

	relay_set_state(kafka_brokers_down(producer) ?
					RELAY_BROKER_UNREACHABLE : RELAY_PUBLISHING);
	return true;
}

/*
 * Step 2: produce the rows and wait until each has a delivery report, the
 * producer fails fatally, or (when shutting down) shutdown_timeout passes.
 * Returns false if the producer failed fatally and must be recreated.
 *
 * When librdkafka's queue is full, the relay waits for room the same way
 * it waits for acknowledgements, so that a stop, a reload or the death of
 * the postmaster is seen at once; once a stop is asked for, no further row
 * is produced.  Rows not produced have no delivery report and stay in the
 * outbox for a later round.
 */
static bool
relay_produce(RelayRow *rows, int n)
{
	bool		fatal = false;
	bool		going_on = true;
	TimestampTz shutdown_deadline = 0;

	if (results_size < n)
	{
		if (results)
			pfree(results);
		results = MemoryContextAlloc(TopMemoryContext, sizeof(KafkaResult) * n);
		results_size = n;
	}
	kafka_begin_round(producer, results, n);
	relay_set_state(RELAY_PUBLISHING);

	for (int i = 0; i < n && going_on; i++)
	{
		RelayRow   *row = &rows[i];
		rd_kafka_resp_err_t err;

		if (row->unsendable != NULL || row->oversize)
			continue;
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
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		{
			if (ShutdownRequestPending)
				break;
			going_on = relay_wait_step(&shutdown_deadline, &fatal);
			i--;				/* the same row again */
		}
		else if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
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

	while (going_on && kafka_outstanding(producer) > 0)
		going_on = relay_wait_step(&shutdown_deadline, &fatal);

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

/*
 * Record one row's failure: a later retry, or (dead) a move to the
 * dead-letter table.  Each record runs in a subtransaction of its own, so
 * that a record that fails, for whatever reason, costs only itself: the
 * error is logged, the row stays as it was and comes back in a later
 * round.  Returns whether the record was made.
 */
static bool
record_failure(RelayRow *row, const char *reason, bool dead)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool recorded = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		Datum		values[4];
		int			ret;

		values[0] = PointerGetDatum(&row->ctid);
		values[1] = CStringGetTextDatum(reason);
		values[3] = UUIDPGetDatum((pg_uuid_t *) &row->id);
		if (dead)
		{
			values[2] = Int32GetDatum(1);
			ret = SPI_execute_plan(dead_letter_plan, values, NULL, false, 0);
			if (ret != SPI_OK_INSERT)
				elog(ERROR, "could not move outbox row to the dead-letter table: %s",
					 SPI_result_code_string(ret));
		}
		else
		{
			values[2] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																		backoff_ms(row->attempts + 1)));
			ret = SPI_execute_plan(fail_plan, values, NULL, false, 0);
			if (ret != SPI_OK_UPDATE)
				elog(ERROR, "could not record outbox delivery failure: %s",
					 SPI_result_code_string(ret));
		}
		/* a row that moved or went since it was read is read again later */
		if (SPI_processed == 0)
			recorded = false;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;

		ereport(LOG,
				errcode(edata->sqlerrcode),
				errmsg("inbox_outbox relay could not record the failure of event %s: %s",
					   row->id_text, edata->message),
				errdetail("The event stays in the outbox and is tried again."));
		FreeErrorData(edata);
		recorded = false;
	}
	PG_END_TRY();
	return recorded;
}

static int
compare_row_ctids(const void *a, const void *b)
{
	return ItemPointerCompare(&(*(RelayRow *const *) a)->ctid,
							  &(*(RelayRow *const *) b)->ctid);
}

/*
 * Delete the acknowledged rows, in a transaction of their own.
 *
 * The rows are found by ctid, a TID scan, and the statement returns the id
 * of each row it deleted, which is checked here against the id read at that
 * ctid.  A row can have left its place since it was read (deleted by hand
 * and its slot reused after a vacuum, or moved by VACUUM FULL); then another
 * row may stand there, and deleting it would lose an event.  So any row whose
 * id differs raises an error, which undoes the whole delete; the relay
 * starts again and reads its rows afresh (their events reach Kafka twice).
 */
static void
relay_delete_acknowledged(RelayRow **acked, int nacked)
{
	Datum	   *ctids = palloc(sizeof(Datum) * nacked);
	Datum		arg;
	int			ret;

	qsort(acked, nacked, sizeof(RelayRow *), compare_row_ctids);
	for (int i = 0; i < nacked; i++)
		ctids[i] = PointerGetDatum(&acked[i]->ctid);

	begin_work("inbox_outbox relay: deleting acknowledged rows");
	arg = PointerGetDatum(construct_array(ctids, nacked, TIDOID,
										  sizeof(ItemPointerData), false,
										  TYPALIGN_SHORT));
	ret = SPI_execute_plan(delete_plan, &arg, NULL, false, 0);
	if (ret != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "could not delete acknowledged outbox rows: %s",
			 SPI_result_code_string(ret));

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		RelayRow	key;
		RelayRow   *keyp = &key;
		RelayRow  **found;

		ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 1, &isnull)),
						&key.ctid);
		found = bsearch(&keyp, acked, nacked, sizeof(RelayRow *), compare_row_ctids);
		if (found == NULL ||
			memcmp(&(*found)->id, DatumGetPointer(SPI_getbinval(tup, desc, 2, &isnull)),
				   sizeof(pg_ulid)) != 0)
			ereport(ERROR,
					errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					errmsg("inbox_outbox relay found another row where an acknowledged one was read"),
					errdetail("The outbox changed under the relay (a row deleted by hand and its place reused, or VACUUM FULL); the round's deletes are undone and its rows are read again, so some events reach Kafka twice."));
	}
	end_work();
	pfree(ctids);
}

/*
 * Step 3: delete what Kafka acknowledged, then record failures.  Returns
 * false if a failure could not be recorded.
 *
 * The deletes commit on their own, before any failure is recorded, so
 * that nothing about a failed row can undo them (which would send the
 * acknowledged rows again, round after round).
 *
 * A broker refuses a whole produce request at once, so a row that failed
 * in a round with others may have failed for another row's sake.  Only a
 * failure in an isolated round (the row alone) moves a row to the
 * dead-letter table; see relay_next_round().
 */
static bool
relay_record(RelayRow *rows, int n, bool isolated)
{
	RelayRow  **acked = MemoryContextAlloc(round_context, sizeof(RelayRow *) * Max(n, 1));
	int			nacked = 0;
	uint64		nfailed = 0;
	uint64		ndead = 0;
	char		last_failure[RELAY_ERROR_LEN];
	char		last_dead[RELAY_ERROR_LEN];
	bool		any_failure = false;
	bool		all_recorded = true;

	last_failure[0] = '\0';
	last_dead[0] = '\0';
	for (int i = 0; i < n; i++)
	{
		RelayRow   *row = &rows[i];

		if (row->unsendable != NULL || row->oversize ||
			row->local_err != RD_KAFKA_RESP_ERR_NO_ERROR)
			any_failure = true;
		else if (results[i].done && results[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
			acked[nacked++] = row;
		else if (results[i].done && !is_collateral(results[i].err))
			any_failure = true;
	}

	if (nacked > 0)
		relay_delete_acknowledged(acked, nacked);

	if (any_failure)
	{
		begin_work("inbox_outbox relay: recording failures");
		for (int i = 0; i < n; i++)
		{
			RelayRow   *row = &rows[i];
			rd_kafka_resp_err_t err;
			char	   *reason;
			bool		dead;

			if (row->unsendable != NULL || row->oversize ||
				row->local_err != RD_KAFKA_RESP_ERR_NO_ERROR)
			{
				/* can never be sent: final */
				if (row->unsendable != NULL)
					reason = row->unsendable;
				else if (row->oversize)
					reason = psprintf("message of %lld bytes is larger than inbox_outbox.max_message_bytes (%d)",
									  (long long) row_size(row), inbox_outbox_max_message_bytes);
				else
					reason = psprintf("%s: %s (above the producer's message.max.bytes)",
									  rd_kafka_err2name(row->local_err),
									  rd_kafka_err2str(row->local_err));
				dead = true;
			}
			else
			{
				if (!results[i].done)
					continue;	/* purged at shutdown: sent again later */
				err = results[i].err;
				if (err == RD_KAFKA_RESP_ERR_NO_ERROR || is_collateral(err))
					continue;
				reason = psprintf("%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
				dead = isolated && row->attempts + 1 >= inbox_outbox_max_attempts;
			}

			nfailed++;
			strlcpy(last_failure, reason, sizeof(last_failure));
			if (!record_failure(row, reason, dead))
				all_recorded = false;
			else if (dead)
			{
				ndead++;
				snprintf(last_dead, sizeof(last_dead), "event %s: %s", row->id_text, reason);
			}
		}
		end_work();
	}

	if (ndead > 0)
		ereport(LOG,
				errmsg_plural("inbox_outbox relay moved %llu event to inbox_outbox.outbox_dead_letter",
							  "inbox_outbox relay moved %llu events to inbox_outbox.outbox_dead_letter",
							  ndead, (unsigned long long) ndead),
				errdetail("The last was %s.", last_dead));

	relay_count(nacked, nfailed, ndead);
	if (last_failure[0] != '\0')
		relay_record_error(last_failure);
	else if (nacked > 0)
		relay_clear_error();
	return all_recorded;
}

/*
 * Rest for ms milliseconds, seeing a stop, a reload and the postmaster's
 * death at once.  A commit that sets the latch meanwhile is kept for the
 * next round rather than ending the rest.
 */
static void
relay_rest(long ms)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	bool		woken = false;

	while (!ShutdownRequestPending)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), end);

		if (left <= 0)
			break;
		if (WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					  left, PG_WAIT_EXTENSION) & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			woken = true;
		}
		CHECK_FOR_INTERRUPTS();
		relay_process_reload();
	}
	if (woken)
		SetLatch(MyLatch);
}

/*
 * Wait, doing nothing, until resolved() (asked after every reload and every
 * poll_interval) says the problem is gone, or the relay is asked to stop;
 * then exit, so that the launcher starts a relay afresh.  The reason is in
 * relay_status.last_error meanwhile, and in the log once.  Called outside
 * any transaction.
 */
static void
relay_wait_until_resolved(RelayState state, const char *reason,
						  const char *hint, bool (*resolved) (void))
{
	ereport(LOG,
			errmsg("inbox_outbox relay for database \"%s\" cannot work: %s",
				   database_name, reason),
			errhint("%s", hint));
	relay_record_error(reason);
	relay_set_state(state);

	while (!ShutdownRequestPending)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 inbox_outbox_poll_interval, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		relay_process_reload();
		if (resolved())
			break;
	}
	proc_exit(0);
}

/*
 * Whether a paused copy may publish now, or paused for another reason than
 * the one it logged (a subscription dropped, the identity still another
 * database's): either way the relay starts afresh.
 */
static bool
relay_copy_resolved(void)
{
	const char *reason;
	bool		resolved;

	begin_work("inbox_outbox relay: checking whose outbox this is");
	resolved = outbox_identity_verify(&reason, NULL) ||
		strcmp(reason, my_slot->last_error) != 0;
	end_work();
	return resolved;
}

/*
 * Called in the transaction that reads the outbox, before it does: a copy
 * of another database (a restore, a template copy, pg_upgrade) or a
 * logical replica of its outbox publishes nothing until an administrator
 * adopts it (see outbox_identity.c).
 */
static void
relay_pause_if_copy(void)
{
	const char *reason;
	const char *hint;

	if (outbox_identity_verify(&reason, &hint))
		return;
	end_work();
	relay_wait_until_resolved(RELAY_PAUSED_COPY, reason, hint, relay_copy_resolved);
}

/* Whether brokers and kafka_config hold values their check hooks passed. */
static bool
producer_settings_accepted(void)
{
	return (inbox_outbox_refused_at_start &
			(REFUSED_BROKERS | REFUSED_KAFKA_CONFIG)) == 0;
}

/* Whether brokers or kafka_config changed since producer_brokers/_config. */
static bool
producer_settings_changed(void)
{
	return strcmp(producer_brokers, inbox_outbox_brokers) != 0 ||
		strcmp(producer_config, inbox_outbox_kafka_config) != 0;
}

/*
 * The modification time and size of the file kafka_config names, if it
 * names one, so that an edit of the file counts as a change of the setting.
 */
static void
kafka_config_file_stamp(struct stat *st)
{
	memset(st, 0, sizeof(*st));
	if (inbox_outbox_kafka_config[0] == '/')
		(void) stat(inbox_outbox_kafka_config, st);
}

static struct stat refused_file_stamp;

/* Whether the settings or the file changed since the producer was refused. */
static bool
producer_settings_or_file_changed(void)
{
	struct stat st;

	if (producer_settings_changed())
		return true;
	kafka_config_file_stamp(&st);
	return st.st_mtime != refused_file_stamp.st_mtime ||
		st.st_size != refused_file_stamp.st_size;
}

/*
 * Make the producer from the current settings.  A setting librdkafka
 * refuses (a bad value of a valid property, which the check hooks cannot
 * see, a file changed since it was checked, or a TLS file that is missing)
 * stops the relay with the reason in relay_status until brokers,
 * kafka_config or the file it names change, instead of failing and
 * restarting over and over.  Other errors are raised as usual.
 */
static void
relay_create_producer(void)
{
	char	   *client_id = psprintf("inbox_outbox-%s", database_name);
	MemoryContext oldcontext = CurrentMemoryContext;
	ErrorData  *edata = NULL;

	if (producer_brokers)
		pfree(producer_brokers);
	if (producer_config)
		pfree(producer_config);
	producer_brokers = MemoryContextStrdup(TopMemoryContext, inbox_outbox_brokers);
	producer_config = MemoryContextStrdup(TopMemoryContext, inbox_outbox_kafka_config);

	PG_TRY();
	{
		producer = kafka_producer_create(producer_brokers, producer_config, client_id);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_INVALID_PARAMETER_VALUE &&
			edata->sqlerrcode != ERRCODE_INSUFFICIENT_PRIVILEGE &&
			edata->sqlerrcode != ERRCODE_CONNECTION_FAILURE &&
			edata->sqlerrcode != ERRCODE_UNDEFINED_FILE)
			PG_RE_THROW();
		FlushErrorState();
	}
	PG_END_TRY();
	pfree(client_id);

	if (edata != NULL)
	{
		kafka_config_file_stamp(&refused_file_stamp);
		relay_wait_until_resolved(RELAY_STOPPED, edata->detail ?
								  psprintf("%s: %s", edata->message, edata->detail) :
								  edata->message,
								  "Correct inbox_outbox.kafka_config, inbox_outbox.brokers or the file it names; the relay tries again when one of them changes.",
								  producer_settings_or_file_changed);
	}
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

/* The OID of the role inbox_outbox.relay_role names, or InvalidOid. */
static Oid
lookup_relay_role(void)
{
	Oid			role;

	begin_work("inbox_outbox relay: looking up its role");
	role = get_role_oid(inbox_outbox_relay_role, true);
	end_work();
	return role;
}

/* Whether inbox_outbox.relay_role changed, or names a role now. */
static bool
relay_role_resolved(void)
{
	return strcmp(inbox_outbox_relay_role, wanted_role) != 0 ||
		OidIsValid(lookup_relay_role());
}

/*
 * Look up inbox_outbox.relay_role, if it names a role, so that every later
 * transaction runs as that role (relay_enter_role()).
 */
static void
relay_become_role(void)
{
	Oid			role;

	if (inbox_outbox_relay_role == NULL || inbox_outbox_relay_role[0] == '\0')
		return;

	role = lookup_relay_role();
	if (!OidIsValid(role))
	{
		wanted_role = pstrdup(inbox_outbox_relay_role);
		relay_wait_until_resolved(RELAY_STOPPED,
								  psprintf("role \"%s\" named by inbox_outbox.relay_role does not exist",
										   inbox_outbox_relay_role),
								  "Create the role, or change inbox_outbox.relay_role and reload the configuration.",
								  relay_role_resolved);
	}

	relay_role_name = MemoryContextStrdup(TopMemoryContext, inbox_outbox_relay_role);
	relay_role_oid = role;
}

/*
 * Claim the database's slot: write our pid into it, unless another relay's
 * pid is there.  A pid is removed by relay_shmem_exit() on every exit, and
 * shared memory is made anew after a crash, so a pid in the slot is that of
 * a live relay.
 */
static void
relay_claim(void)
{
	uint32		generation;
	pid_t		other = 0;

	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	my_slot = relay_slot_find(MyDatabaseId);
	generation = inbox_outbox_shared->extension_generation;
	if (my_slot != NULL)
	{
		other = my_slot->pid;
		if (other == 0)
		{
			my_slot->pid = MyProcPid;
			my_slot->latch = MyLatch;
			my_slot->state = RELAY_STARTING;
			my_slot->no_extension = false;
		}
	}
	LWLockRelease(inbox_outbox_shared->lock);
	if (my_slot == NULL)
		elog(ERROR, "no relay slot assigned to database %u", MyDatabaseId);
	if (other != 0)
	{
		my_slot = NULL;			/* not ours: leave it alone on exit */
		ereport(LOG,
				errmsg("inbox_outbox relay for database %u is already running with PID %d",
					   MyDatabaseId, (int) other));
		proc_exit(0);
	}
	before_shmem_exit(relay_shmem_exit, (Datum) 0);

	begin_work("inbox_outbox relay: starting");
	exit_unless_extension(generation);
	database_name = MemoryContextStrdup(TopMemoryContext,
										get_database_name(MyDatabaseId));
	end_work();
}

/*
 * Leave if inbox_outbox.relay_role changed: the launcher starts a relay
 * again, which takes the new role.
 */
static void
relay_exit_if_role_changed(void)
{
	const char *now = inbox_outbox_relay_role ? inbox_outbox_relay_role : "";
	const char *was = relay_role_name ? relay_role_name : "";

	if (strcmp(now, was) == 0)
		return;
	ereport(LOG,
			errmsg("inbox_outbox relay for database \"%s\" restarts: inbox_outbox.relay_role changed",
				   database_name));
	proc_exit(0);
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

	/* no name the relay uses may resolve through a writable schema */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);

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
	relay_become_role();
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
		relay_exit_if_role_changed();
		if (inbox_outbox_refused_at_start & (REFUSED_BROKERS | REFUSED_KAFKA_CONFIG))
			relay_wait_until_resolved(RELAY_STOPPED,
									  psprintf("the value of %s in the configuration file was refused when the server started",
											   (inbox_outbox_refused_at_start & REFUSED_BROKERS) ?
											   "inbox_outbox.brokers" : "inbox_outbox.kafka_config"),
									  "Correct it and reload the configuration; the relay does not fall back to the default.",
									  producer_settings_accepted);
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

			/*
			 * A failure that could not be recorded leaves its row as it
			 * was, due at once: rest before reading it again, so that the
			 * relay does not spin on it.
			 */
			if (!relay_record(rows, n, isolated))
				relay_rest(Max(inbox_outbox_retry_backoff, 1000));

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
