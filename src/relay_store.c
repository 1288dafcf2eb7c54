/*-------------------------------------------------------------------------
 *
 * relay_store.c
 *	  The relay's side of the database: reading the outbox, choosing what a
 *	  round sends, deleting what Kafka acknowledged and recording failures.
 *
 * Everything here runs in the relay's own short transactions
 * (relay_begin_work()/relay_end_work()), as inbox_outbox.relay_role when it
 * is set, and none of it waits for Kafka: relay.c produces the rows read
 * here with no transaction open and hands back each message's outcome.
 *
 * A round's rows live in a memory context the relay resets every round.
 * A value above inbox_outbox.max_message_bytes is never read: its row can
 * only go to the dead-letter table.  Deletes of acknowledged rows commit in
 * a transaction of their own before any failure is recorded, and each
 * failure is recorded in a subtransaction of its own, so that nothing about
 * one row can undo the deletes or stop the others.
 *
 * Trust: no statement here resolves a name through a schema a database
 * role can write (see prepare_plans() and docs/design.md, "Trust").
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/itemptr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "outbox_floor.h"
#include "relay_api.h"
#include "relay_store.h"
#include "spi_plan.h"
#include "ulid_text.h"

/* Most payload, key and header bytes one round reads and produces. */
#define RELAY_ROUND_BYTES		(64 * 1024 * 1024)

/* Longest wait between retries of a failed row. */
#define RELAY_MAX_BACKOFF_MS	60000

/*
 * What both reads of a round return, columns 1 to 11 as relay_store_fetch()
 * takes them: a value larger than $2 (inbox_outbox.max_message_bytes) is
 * not read, only its size, which octet_length() and pg_column_size() take
 * from the value's header.
 */
#define FETCH_COLUMNS \
	"SELECT o.ctid, o.id, o.topic," \
	"       CASE WHEN pg_catalog.octet_length(o.key) OPERATOR(pg_catalog.<=) $2 THEN o.key END," \
	"       CASE WHEN pg_catalog.octet_length(o.payload) OPERATOR(pg_catalog.<=) $2 THEN o.payload END," \
	"       CASE WHEN pg_catalog.pg_column_size(o.headers) OPERATOR(pg_catalog.<=) $2" \
	"            THEN o.headers::pg_catalog.text END," \
	"       o.created_at, o.attempts," \
	"       pg_catalog.octet_length(o.key), pg_catalog.octet_length(o.payload)," \
	"       pg_catalog.pg_column_size(o.headers)" \
	"  FROM inbox_outbox.outbox o"

/* The store's state: the relay's role, its saved plans, the last choice. */
typedef struct RelayStore
{
	Oid			role;			/* InvalidOid: the bootstrap superuser */
	Oid			saved_userid;
	int			saved_sec_context;
	bool		last_was_retry; /* the last round was an isolated retry */
	Oid			checked_index;	/* the outbox's primary key, as fetch_from() checked it */
	SPIPlanPtr	fetch_plan;
	SPIPlanPtr	fetch_tids_plan;
	SPIPlanPtr	failed_plan;	/* whether rows wait for a retry, and until when */
	SPIPlanPtr	prepared_plan;
	SPIPlanPtr	delete_plan;
	SPIPlanPtr	fail_plan;
	SPIPlanPtr	dead_letter_plan;
	SPIPlanPtr	progress_get_plan;	/* exactly-once mode: relay_progress */
	SPIPlanPtr	progress_set_plan;
	SPIPlanPtr	progress_offset_plan;
	SPIPlanPtr	progress_delete_plan;
	int			batch_limit;	/* at most this many rows a round; 0: none */
} RelayStore;

static RelayStore store;

/*
 * Every later transaction of the relay runs as role (InvalidOid: as the
 * bootstrap superuser it connected as).
 */
void
relay_store_set_role(Oid role)
{
	store.role = role;
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
	if (!OidIsValid(store.role))
		return;
	GetUserIdAndSecContext(&store.saved_userid, &store.saved_sec_context);
	SetUserIdAndSecContext(store.role,
						   store.saved_sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

static void
relay_leave_role(void)
{
	if (!OidIsValid(store.role))
		return;
	SetUserIdAndSecContext(store.saved_userid, store.saved_sec_context);
}

/*
 * Start one of the relay's short transactions, as its role, with SPI
 * connected and a snapshot pushed.
 */
void
relay_begin_work(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	relay_enter_role();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/*
 * Start the transaction of a round's read.  Its snapshot is taken with the
 * bounds of outbox_floor.c, which lower *floor to where the read must
 * start at the latest.
 */
void
relay_begin_read(const char *activity, pg_ulid *floor)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	relay_enter_role();
	SPI_connect();
	relay_api->outbox_floor_snapshot(floor);
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* Commit a transaction relay_begin_work() started. */
void
relay_end_work(void)
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

	if (store.fetch_plan != NULL)
		return;

	/*
	 * A value larger than $2 (inbox_outbox.max_message_bytes) is not read
	 * at all: its row can only go to the dead-letter table, and reading it
	 * could take gigabytes.  octet_length() and pg_column_size() look at a
	 * value's header only.
	 */
	argtypes[0] = INT4OID;
	argtypes[1] = INT4OID;
	store.fetch_plan = spi_prepare_kept(
		FETCH_COLUMNS
		" WHERE (o.attempts OPERATOR(pg_catalog.=) 0 OR o.next_attempt_at IS NULL"
		"        OR o.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now())"
		"   AND NOT EXISTS (SELECT 1 FROM inbox_outbox.outbox f"
		"                    WHERE f.attempts OPERATOR(pg_catalog.>) 0"
		"                      AND f.topic OPERATOR(pg_catalog.=) o.topic"
		"                      AND f.key OPERATOR(pg_catalog.=) o.key"
		"                      AND f.id::pg_catalog.uuid OPERATOR(pg_catalog.<) o.id::pg_catalog.uuid)"
		" ORDER BY o.id LIMIT $1",
		2, argtypes);

	/*
	 * The same, for rows a read from a lower bound found (fetch_from()):
	 * there are no failed rows then, so nothing is held back.  Sorted as
	 * uuid, whose order is the ulid's: the outbox's primary key cannot give
	 * that order, so the plan stays a TID scan.  Sorted as ulid, a plan made
	 * after an ANALYZE that found the outbox nearly empty walked the whole
	 * primary key instead, dead entries and all, at every round.
	 */
	argtypes[0] = get_array_type(TIDOID);
	store.fetch_tids_plan = spi_prepare_kept(
		FETCH_COLUMNS
		" WHERE o.ctid OPERATOR(pg_catalog.=) ANY ($1)"
		" ORDER BY o.id::pg_catalog.uuid",
		2, argtypes);

	/* the partial index outbox_retry answers this */
	store.failed_plan = spi_prepare_kept(
		"SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0, pg_catalog.min(next_attempt_at)"
		"  FROM inbox_outbox.outbox WHERE attempts OPERATOR(pg_catalog.>) 0",
		0, NULL);

	store.prepared_plan = spi_prepare_kept(
		"SELECT EXISTS (SELECT FROM pg_catalog.pg_prepared_xacts"
		"                WHERE database OPERATOR(pg_catalog.=) pg_catalog.current_database())",
		0, NULL);

	/* the ids are checked in C: see relay_delete_acknowledged() */
	argtypes[0] = get_array_type(TIDOID);
	store.delete_plan = spi_prepare_kept(
		"DELETE FROM inbox_outbox.outbox"
		" WHERE ctid OPERATOR(pg_catalog.=) ANY ($1)"
		" RETURNING ctid, id",
		1, argtypes);

	argtypes[0] = TIDOID;
	argtypes[1] = TEXTOID;
	argtypes[2] = TIMESTAMPTZOID;
	argtypes[3] = UUIDOID;
	store.fail_plan = spi_prepare_kept(
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
	store.dead_letter_plan = spi_prepare_kept(
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

	/* exactly-once mode's one row (see relay_store_progress_get()) */
	store.progress_get_plan = spi_prepare_kept(
		"SELECT transactional_id, topic, record_offset FROM inbox_outbox.relay_progress",
		0, NULL);
	argtypes[0] = TEXTOID;
	argtypes[1] = TEXTOID;
	store.progress_set_plan = spi_prepare_kept(
		"INSERT INTO inbox_outbox.relay_progress (transactional_id, topic)"
		" VALUES ($1, $2)"
		" ON CONFLICT (single) DO UPDATE"
		"   SET transactional_id = excluded.transactional_id, topic = excluded.topic,"
		"       record_offset = NULL, since = pg_catalog.now()",
		2, argtypes);
	argtypes[0] = INT8OID;
	store.progress_offset_plan = spi_prepare_kept(
		"UPDATE inbox_outbox.relay_progress SET record_offset = $1",
		1, argtypes);
	store.progress_delete_plan = spi_prepare_kept(
		"DELETE FROM inbox_outbox.relay_progress", 0, NULL);
}

/* Payload, key and header bytes: what inbox_outbox.max_message_bytes limits. */
int64
relay_row_size(const RelayRow *row)
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

	/*
	 * A copy of the id's text, not row->id_text itself: rows are moved
	 * (the array grows, relay_store_choose() and the relay keep some), and
	 * the header must not follow the slot.
	 */
	row->headers[n].name = KAFKA_EVENT_ID_HEADER;
	row->headers[n].value = pnstrdup(row->id_text, ULID_TEXT_LEN);
	row->headers[n].value_len = ULID_TEXT_LEN;
	row->nheaders = n + 1;
	row->headers_len = bytes + strlen(KAFKA_EVENT_ID_HEADER) + ULID_TEXT_LEN;
}

/*
 * The plans that find rows by ctid must be TID scans, and the look for
 * failed rows must use the partial index of them.  The planner takes a
 * sequential scan instead while the outbox's statistics say it is empty,
 * which they do for an outbox that the relay keeps empty between vacuums;
 * but its pages are full of the rows deleted since, and every round would
 * read them all, several times.  So these plans are made, and run, with
 * enable_seqscan off, set for the one call only.  They are generic plans:
 * the planner prices a TID scan of a parameter array as if the array were
 * long, so its custom plans would look cheaper, and every round would plan
 * its statements afresh.
 */
static void
no_seqscan(void)
{
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("plan_cache_mode", "force_generic_plan", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

static int
execute_no_seqscan(SPIPlanPtr plan, Datum *args, bool read_only)
{
	int			nest = NewGUCNestLevel();
	int			ret;

	no_seqscan();
	ret = SPI_execute_plan(plan, args, NULL, read_only, 0);
	AtEOXact_GUC(true, nest);
	return ret;
}

static Portal
open_no_seqscan(SPIPlanPtr plan, Datum *args)
{
	int			nest = NewGUCNestLevel();
	Portal		portal;

	no_seqscan();
	portal = SPI_cursor_open(NULL, plan, args, NULL, true);
	AtEOXact_GUC(true, nest);
	return portal;
}

/*
 * The outbox rows visible in the active snapshot with an id of at least
 * from, in id order, at most limit of them: their ctids go to tids.
 * Returns -1 if the outbox's primary key is not what the extension made.
 *
 * This is an index scan in C rather than a statement, because a statement
 * would have to name the ulid >= operator, and a name can be made to
 * resolve elsewhere (see prepare_plans()).  The scan key compares with
 * uuid_ge, which the ulid operator class uses, found by its OID; the
 * index is checked to be a btree on id with the default operator class of
 * the column's type, whose order is uuid_cmp's.
 */
/*
 * Open the outbox and its primary key, if the key is what the extension
 * made: a btree on id with the default operator class of the column's type,
 * whose order is uuid_cmp's.  Returns false (and opens nothing) otherwise.
 */
static bool
open_outbox_key(Relation *heap_out, Relation *index_out)
{
	Oid			relid;
	Relation	heap;
	Relation	index;
	Oid			indexid;
	Oid			opclass;

	relid = get_relname_relid("outbox", get_namespace_oid("inbox_outbox", false));
	if (!OidIsValid(relid))
		return false;
	heap = table_open(relid, AccessShareLock);
#if PG_VERSION_NUM >= 180000
	indexid = RelationGetPrimaryKeyIndex(heap, false);
#else
	indexid = RelationGetPrimaryKeyIndex(heap);
#endif
	if (!OidIsValid(indexid))
	{
		table_close(heap, AccessShareLock);
		return false;
	}
	index = index_open(indexid, AccessShareLock);
	if (indexid != store.checked_index)
	{
		/* once per index, not every round: an index made anew has a new OID */
		opclass = GetDefaultOpClass(index->rd_opcintype[0], BTREE_AM_OID);
		if (index->rd_rel->relam != BTREE_AM_OID ||
			index->rd_index->indnkeyatts != 1 ||
			index->rd_index->indkey.values[0] != get_attnum(relid, "id") ||
			!OidIsValid(opclass) ||
			index->rd_opfamily[0] != get_opclass_family(opclass) ||
			index_getprocinfo(index, 1, BTORDER_PROC)->fn_addr != uuid_cmp)
		{
			index_close(index, AccessShareLock);
			table_close(heap, AccessShareLock);
			return false;
		}
		store.checked_index = indexid;
	}
	*heap_out = heap;
	*index_out = index;
	return true;
}

static IndexScanDesc
begin_key_scan(Relation heap, Relation index)
{
#if PG_VERSION_NUM >= 180000
	return index_beginscan(heap, index, GetActiveSnapshot(), NULL, 1, 0);
#else
	return index_beginscan(heap, index, GetActiveSnapshot(), 1, 0);
#endif
}

/*
 * The outbox rows visible in the active snapshot with an id of at least
 * from, in id order, at most limit of them: their ctids go to tids.
 * Returns -1 if the outbox's primary key is not what the extension made.
 *
 * This is an index scan in C rather than a statement, because a statement
 * would have to name the ulid >= operator, and a name can be made to
 * resolve elsewhere (see prepare_plans()).  The scan key compares with
 * uuid_ge, which the ulid operator class uses, found by its OID (see
 * open_outbox_key()).
 */
static int
fetch_from(const pg_ulid *from, int limit, ItemPointerData *tids)
{
	Relation	heap;
	Relation	index;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int			n = 0;

	if (!open_outbox_key(&heap, &index))
		return -1;

	ScanKeyInit(&key, 1, BTGreaterEqualStrategyNumber, F_UUID_GE,
				UlidPGetDatum(from));
	scan = begin_key_scan(heap, index);
	index_rescan(scan, &key, 1, NULL, 0);
	slot = table_slot_create(heap, NULL);
	while (n < limit && index_getnext_slot(scan, ForwardScanDirection, slot))
		tids[n++] = slot->tts_tid;
	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	index_close(index, NoLock);
	table_close(heap, NoLock);
	return n;
}

/*
 * Whether rows wait for a retry; *next_retry_ms is set to the wait until
 * the earliest is due, or -1.  Runs in the caller's transaction.
 */
static bool
any_failed_rows(int64 *next_retry_ms)
{
	bool		isnull;
	Datum		next;
	int			ret = execute_no_seqscan(store.failed_plan, NULL, true);

	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not look for failed outbox rows: %s",
			 SPI_result_code_string(ret));
	next = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	*next_retry_ms = isnull ? -1 : ms_until(DatumGetTimestampTz(next));
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Whether this database has prepared transactions, which may hold outbox
 * rows; run in the caller's transaction.
 */
bool
relay_store_prepared_exist(void)
{
	bool		isnull;
	int			ret;

	prepare_plans();
	ret = SPI_execute_plan(store.prepared_plan, NULL, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not look for prepared transactions: %s",
			 SPI_result_code_string(ret));
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Whether the extension is installed, read from pg_extension itself with a
 * new catalog snapshot rather than through a cache: a relay woken by the
 * commit of DROP EXTENSION is woken before that commit sends its
 * invalidations (transaction callbacks run first), and PostgreSQL 18's
 * get_extension_oid() answers from the system cache, which would still
 * hold the extension.  Run in the caller's transaction.
 */
bool
relay_store_extension_exists(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	bool		exists;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("inbox_outbox"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	exists = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return exists;
}

/*
 * The version of the outbox's floor trigger (see outbox_floor.c): the raw
 * xmin of its pg_trigger row, which every ENABLE or DISABLE TRIGGER, DROP
 * and CREATE TRIGGER changes (and freezing does not); or
 * InvalidTransactionId while the trigger is missing or does not fire
 * always, when rows may be written without a bound.  Run in the caller's
 * transaction.
 */
TransactionId
relay_store_floor_trigger_version(Oid outbox)
{
	Relation	rel;
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	TransactionId version = InvalidTransactionId;

	rel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&keys[0], Anum_pg_trigger_tgrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(outbox));
	ScanKeyInit(&keys[1], Anum_pg_trigger_tgname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(OUTBOX_FLOOR_TRIGGER));
	scan = systable_beginscan(rel, TriggerRelidNameIndexId, true, NULL, 2, keys);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple) &&
		((Form_pg_trigger) GETSTRUCT(tuple))->tgenabled == TRIGGER_FIRES_ALWAYS)
		version = HeapTupleHeaderGetRawXmin(tuple->t_data);
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/*
 * Read the next batch into cxt, in the caller's transaction (see
 * relay_begin_read()), leaving out the rows whose ids skip (if not NULL)
 * names: the relay's rows in flight, which the read may meet again and
 * which are neither copied nor sent twice.  Returns the number of rows; *next_retry_ms is set to
 * the wait until the earliest pending retry, or -1 if none; *read says how
 * the rows were read.
 *
 * With from set and no row waiting for a retry, the read starts at from
 * (see fetch_from() and outbox_floor.c); otherwise at the low end of the
 * outbox, skipping rows waiting for a retry and every later row of their
 * keys.
 *
 * The batch ends at inbox_outbox.batch_size rows or before the row that
 * would take it past RELAY_ROUND_BYTES (one row is always taken), counted
 * per row from the values' sizes before they are read.  A row above
 * inbox_outbox.max_message_bytes costs nothing: its values are not read, and
 * it goes to the dead-letter table.  The cursor hands over rows 256 at a
 * time, holding toasted values as pointers, so that is all the memory a
 * round takes besides its rows' values, each held once.
 */
int
relay_store_fetch(MemoryContext cxt, const pg_ulid *from, RelayIdFilter skip,
				  RelayRow **rows_out, int64 *next_retry_ms, RelayRead *read)
{
	int			batch = *relay_api->batch_size;
	Datum		args[2];
	int			n = 0;
	int			nread = 0;		/* n, and the rows skipped */
	pg_ulid		last_id = {0};
	int			capacity;
	int64		bytes = 0;
	bool		full = false;
	RelayRow   *rows;
	Portal		portal;
	MemoryContext old;

	if (store.batch_limit > 0 && batch > store.batch_limit)
		batch = store.batch_limit;
	prepare_plans();
	memset(read, 0, sizeof(*read));
	read->failed_rows = any_failed_rows(next_retry_ms);
	read->from_start = from == NULL || read->failed_rows;

	/* grown as rows come: a small round should not pay for a full batch */
	capacity = Min(batch, 64);
	rows = MemoryContextAllocZero(cxt, sizeof(RelayRow) * capacity);
	*rows_out = rows;

	args[1] = Int32GetDatum(*relay_api->max_message_bytes);
	if (!read->from_start)
	{
		ItemPointerData *tids = palloc(sizeof(ItemPointerData) * batch);
		Datum	   *tid_datums;
		int			ntids = fetch_from(from, batch, tids);

		if (ntids < 0)
			read->from_start = true;	/* the outbox was changed by hand */
		else if (ntids == 0)
			return 0;
		else
		{
			tid_datums = palloc(sizeof(Datum) * ntids);
			for (int i = 0; i < ntids; i++)
				tid_datums[i] = PointerGetDatum(&tids[i]);
			args[0] = PointerGetDatum(construct_array(tid_datums, ntids, TIDOID,
													  sizeof(ItemPointerData), false,
													  TYPALIGN_SHORT));
			portal = open_no_seqscan(store.fetch_tids_plan, args);
		}
	}
	if (read->from_start)
	{
		args[0] = Int32GetDatum(batch);
		portal = SPI_cursor_open(NULL, store.fetch_plan, args, NULL, true);
	}

	while (nread < batch && !full)
	{
		SPI_cursor_fetch(portal, true, Min(256, batch - nread));
		if (SPI_processed == 0)
			break;

		old = MemoryContextSwitchTo(cxt);
		for (uint64 i = 0; i < SPI_processed && !full; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			RelayRow   *row;
			int			key_size = size_of(tup, desc, 9);
			int			payload_size = size_of(tup, desc, 10);
			int			headers_size = size_of(tup, desc, 11);
			bool		withheld = key_size > *relay_api->max_message_bytes ||
				payload_size > *relay_api->max_message_bytes ||
				headers_size > *relay_api->max_message_bytes;
			int64		cost = withheld ? 0 :
				(int64) key_size + payload_size + headers_size;
			bool		isnull;
			Datum		d;
			pg_ulid		id;

			memcpy(&id, DatumGetPointer(SPI_getbinval(tup, desc, 2, &isnull)),
				   sizeof(pg_ulid));
			if (skip != NULL && skip(&id))
			{
				/* in flight already: neither copied nor sent */
				nread++;
				last_id = id;
				continue;
			}
			if (n > 0 && bytes + cost > RELAY_ROUND_BYTES)
			{
				full = true;	/* this row and the rest wait for a later round */
				break;
			}
			if (n == capacity)
			{
				int			more = Min(batch, capacity * 2);

				rows = repalloc(rows, sizeof(RelayRow) * more);
				memset(&rows[capacity], 0, sizeof(RelayRow) * (more - capacity));
				capacity = more;
				*rows_out = rows;
			}
			row = &rows[n];
			n++;
			nread++;
			last_id = id;
			bytes += cost;

			ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 1, &isnull)),
							&row->ctid);
			memcpy(&row->id, DatumGetPointer(SPI_getbinval(tup, desc, 2, &isnull)),
				   sizeof(pg_ulid));
			ulid_format(row->id.data, row->id_text);
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

	read->cut = full || nread == batch;
	if (nread > 0)
		read->last_id = last_id;
	if (read->cut)
		*next_retry_ms = -1;	/* rows are waiting: no rest before the next round */

	return n;
}

/*
 * Choose what the round sends from the fetched rows.  A row that failed
 * before is retried alone, so that its outcome is its own: a failure in a
 * shared produce request may have been another row's.  Retry rounds and
 * ordinary rounds alternate, so many failing rows cannot starve the rest.
 * Returns the number of rows; *rows is updated.
 */
int
relay_store_choose(RelayRow **rows, int n, bool *isolated)
{
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
		store.last_was_retry = false;
		return n;
	}

	/* after a retry round, the rows that never failed, if there are any */
	if (store.last_was_retry)
	{
		for (int i = 0; i < n; i++)
		{
			if (all[i].attempts == 0)
				all[kept++] = all[i];
		}
		if (kept > 0)
		{
			store.last_was_retry = false;
			return kept;
		}
	}

	/* none was kept, so all[retry] is still in place */
	store.last_was_retry = true;
	*isolated = true;
	*rows = &all[retry];
	return 1;
}

static int
backoff_ms(int attempts)
{
	int64		ms = *relay_api->retry_backoff;

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
			ret = execute_no_seqscan(store.dead_letter_plan, values, false);
			if (ret != SPI_OK_INSERT)
				elog(ERROR, "could not move outbox row to the dead-letter table: %s",
					 SPI_result_code_string(ret));
		}
		else
		{
			values[2] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																		backoff_ms(row->attempts + 1)));
			ret = execute_no_seqscan(store.fail_plan, values, false);
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

typedef struct TidAndId
{
	ItemPointerData tid;
	pg_ulid		id;
	bool		deleted;
} TidAndId;

static int
compare_tids(const void *a, const void *b)
{
	return ItemPointerCompare(&((TidAndId *) a)->tid, &((TidAndId *) b)->tid);
}

/*
 * Delete the rows at rows[i].tid, in the caller's transaction, and check
 * that each row deleted has the id read there (rows must be sorted by
 * tid); rows[i].deleted says which were found.  Returns the number deleted.
 *
 * A row can have left its place since it was read (deleted by hand and its
 * slot reused after a vacuum, or moved by VACUUM FULL); then another row
 * may stand there, and deleting it would lose an event.  So any row whose
 * id differs raises an error, which undoes the whole transaction; the relay
 * starts again and reads its rows afresh (in at-least-once mode their
 * events reach Kafka twice; in exactly-once mode its recovery deletes what
 * the last transaction committed).
 */
static int
delete_at_tids(TidAndId *rows, int n)
{
	Datum	   *ctids = palloc(sizeof(Datum) * n);
	Datum		arg;
	int			ret;

	for (int i = 0; i < n; i++)
	{
		ctids[i] = PointerGetDatum(&rows[i].tid);
		rows[i].deleted = false;
	}
	arg = PointerGetDatum(construct_array(ctids, n, TIDOID,
										  sizeof(ItemPointerData), false,
										  TYPALIGN_SHORT));
	ret = execute_no_seqscan(store.delete_plan, &arg, false);
	if (ret != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "could not delete outbox rows: %s",
			 SPI_result_code_string(ret));

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		TidAndId	key;
		TidAndId   *found;

		ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 1, &isnull)),
						&key.tid);
		found = bsearch(&key, rows, n, sizeof(TidAndId), compare_tids);
		if (found == NULL ||
			memcmp(&found->id, DatumGetPointer(SPI_getbinval(tup, desc, 2, &isnull)),
				   sizeof(pg_ulid)) != 0)
			ereport(ERROR,
					errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					errmsg("inbox_outbox relay found another row where an acknowledged one was read"),
					errdetail("The outbox changed under the relay (a row deleted by hand and its place reused, or VACUUM FULL); the round's deletes are undone and its rows are read again."));
		found->deleted = true;
	}
	ret = (int) SPI_processed;
	SPI_freetuptable(SPI_tuptable);
	pfree(ctids);
	return ret;
}

/*
 * Delete the outbox rows with these ids that the active snapshot sees, in
 * the caller's transaction; returns how many there were.  Each id is looked
 * up in the primary key with an index scan in C, as fetch_from() does, for
 * the same reason: no statement may name a ulid operator.
 */
static int
delete_by_ids(const pg_ulid *ids, int n)
{
	Relation	heap;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	TidAndId   *rows;
	int			m = 0;

	if (n == 0)
		return 0;
	if (!open_outbox_key(&heap, &index))
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("the primary key of inbox_outbox.outbox is not the one the extension made"),
				errhint("Recreate it as it was, a btree index on the column id."));

	rows = palloc(sizeof(TidAndId) * n);
	scan = begin_key_scan(heap, index);
	slot = table_slot_create(heap, NULL);
	for (int i = 0; i < n; i++)
	{
		ScanKeyData key;

		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ,
					UlidPGetDatum(&ids[i]));
		index_rescan(scan, &key, 1, NULL, 0);
		if (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			rows[m].tid = slot->tts_tid;
			rows[m].id = ids[i];
			m++;
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	index_close(index, NoLock);
	table_close(heap, NoLock);

	if (m > 0)
	{
		qsort(rows, m, sizeof(TidAndId), compare_tids);
		m = delete_at_tids(rows, m);
	}
	pfree(rows);
	return m;
}

static void
set_record_offset(int64 record_offset)
{
	Datum		arg = Int64GetDatum(record_offset);
	int			ret;

	ret = SPI_execute_plan(store.progress_offset_plan, &arg, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not update inbox_outbox.relay_progress: %s",
			 SPI_result_code_string(ret));
}

/*
 * Delete the acknowledged rows, in a transaction of their own (see
 * delete_at_tids()).  With record_offset >= 0 the rows were committed in a
 * Kafka transaction whose progress record is at that offset: a row no
 * longer where it was read is looked up by its id, and the record's offset
 * goes into inbox_outbox.relay_progress in the same transaction, so that
 * recovery never looks at that record again.
 */
static void
relay_delete_acknowledged(RelayRow **acked, int nacked, int64 record_offset)
{
	TidAndId   *rows = palloc(sizeof(TidAndId) * Max(nacked, 1));
	int			deleted = 0;

	for (int i = 0; i < nacked; i++)
	{
		rows[i].tid = acked[i]->ctid;
		rows[i].id = acked[i]->id;
	}
	qsort(rows, nacked, sizeof(TidAndId), compare_tids);

	relay_begin_work("inbox_outbox relay: deleting acknowledged rows");
	if (nacked > 0)
		deleted = delete_at_tids(rows, nacked);
	if (record_offset >= 0)
	{
		if (deleted < nacked)
		{
			pg_ulid    *moved = palloc(sizeof(pg_ulid) * (nacked - deleted));
			int			nmoved = 0;

			for (int i = 0; i < nacked; i++)
			{
				if (!rows[i].deleted)
					moved[nmoved++] = rows[i].id;
			}
			(void) delete_by_ids(moved, nmoved);
			pfree(moved);
		}
		set_record_offset(record_offset);
	}
	relay_end_work();
	pfree(rows);
}

/*
 * Recovery in exactly-once mode: delete the rows a committed progress
 * record names (those still in the outbox) and note the record's offset, in
 * the caller's transaction.  Returns how many rows were deleted.  The ids
 * are sorted first, so that the index is walked in order.
 */
int
relay_store_delete_recorded(const pg_ulid *ids, int n, int64 record_offset)
{
	int			deleted;

	prepare_plans();
	deleted = delete_by_ids(ids, n);
	set_record_offset(record_offset);
	return deleted;
}

/*
 * exactly-once mode's row in inbox_outbox.relay_progress, read in the
 * caller's transaction into cxt.
 */
void
relay_store_progress_get(MemoryContext cxt, RelayProgressRow *row)
{
	int			ret;

	prepare_plans();
	memset(row, 0, sizeof(*row));
	row->record_offset = -1;
	ret = SPI_execute_plan(store.progress_get_plan, NULL, NULL, true, 2);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read inbox_outbox.relay_progress: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed > 0)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		MemoryContext old = MemoryContextSwitchTo(cxt);

		row->exists = true;
		row->transactional_id = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
		row->topic = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		d = SPI_getbinval(tup, desc, 3, &isnull);
		if (!isnull)
			row->record_offset = DatumGetInt64(d);
		MemoryContextSwitchTo(old);
	}
}

/*
 * Make the row name this transactional id and topic, in the caller's
 * transaction; a row that named others loses its record offset.
 */
void
relay_store_progress_set(const char *transactional_id, const char *topic)
{
	Datum		args[2];
	int			ret;

	prepare_plans();
	args[0] = CStringGetTextDatum(transactional_id);
	args[1] = CStringGetTextDatum(topic);
	ret = SPI_execute_plan(store.progress_set_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not write inbox_outbox.relay_progress: %s",
			 SPI_result_code_string(ret));
}

void
relay_store_progress_delete(void)
{
	int			ret;

	prepare_plans();
	ret = SPI_execute_plan(store.progress_delete_plan, NULL, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not delete from inbox_outbox.relay_progress: %s",
			 SPI_result_code_string(ret));
}

/* At most limit rows a round from now on (0: inbox_outbox.batch_size). */
void
relay_store_set_batch_limit(int limit)
{
	store.batch_limit = limit;
}

/*
 * Delete what Kafka acknowledged, then record failures; tally what happened
 * for relay_status.  results[i] is the outcome of rows[i].  record_offset
 * is that of the round's progress record in exactly-once mode (its
 * transaction committed), -1 otherwise.
 *
 * The deletes commit on their own, before any failure is recorded, so
 * that nothing about a failed row can undo them (which would send the
 * acknowledged rows again, round after round).
 *
 * A broker refuses a whole produce request at once, so a row that failed
 * in a round with others may have failed for another row's sake.  Only a
 * failure in an isolated round (the row alone) moves a row to the
 * dead-letter table; see relay_store_choose().  A row that can never be
 * sent (unsendable headers, too large) moves there at once.  The moves are
 * logged once per round, with their count.
 */
void
relay_store_record(RelayRow *rows, const KafkaResult *results, int n,
				   bool isolated, int64 record_offset, MemoryContext cxt,
				   RelayTally *tally)
{
	RelayRow  **acked = MemoryContextAlloc(cxt, sizeof(RelayRow *) * Max(n, 1));
	int			nacked = 0;
	char		last_dead[RELAY_ERROR_LEN];
	bool		any_failure = false;

	memset(tally, 0, sizeof(*tally));
	tally->all_recorded = true;
	last_dead[0] = '\0';
	for (int i = 0; i < n; i++)
	{
		RelayRow   *row = &rows[i];

		if (row->unsendable != NULL || row->oversize ||
			results[i].outcome == KAFKA_REJECTED ||
			results[i].outcome == KAFKA_FAILED)
			any_failure = true;
		else if (results[i].outcome == KAFKA_DELIVERED)
			acked[nacked++] = row;
	}

	if (nacked > 0 || record_offset >= 0)
		relay_delete_acknowledged(acked, nacked, record_offset);
	tally->published = nacked;

	if (any_failure)
	{
		relay_begin_work("inbox_outbox relay: recording failures");
		for (int i = 0; i < n; i++)
		{
			RelayRow   *row = &rows[i];
			char	   *reason;
			bool		dead;

			if (row->unsendable != NULL)
				reason = row->unsendable;
			else if (row->oversize)
				reason = psprintf("message of %lld bytes is larger than inbox_outbox.max_message_bytes (%d)",
								  (long long) relay_row_size(row), *relay_api->max_message_bytes);
			else if (results[i].outcome == KAFKA_REJECTED)
				reason = psprintf("%s (above the producer's message.max.bytes)",
								  kafka_describe(&results[i]));
			else if (results[i].outcome == KAFKA_FAILED)
				reason = kafka_describe(&results[i]);
			else
				continue;		/* delivered, or not sent: sent again later */

			/* a row that can never be sent is final at once */
			dead = row->unsendable != NULL || row->oversize ||
				results[i].outcome == KAFKA_REJECTED ||
				(isolated && row->attempts + 1 >= *relay_api->max_attempts);

			tally->failed++;
			strlcpy(tally->last_failure, reason, sizeof(tally->last_failure));
			if (!record_failure(row, reason, dead))
				tally->all_recorded = false;
			else if (dead)
			{
				tally->dead_lettered++;
				snprintf(last_dead, sizeof(last_dead), "event %s: %s", row->id_text, reason);
				row->gone = true;
			}
		}
		relay_end_work();
	}

	/* what stays in the outbox keeps the relay's floor down */
	for (int i = 0; i < n; i++)
	{
		if (rows[i].gone || results[i].outcome == KAFKA_DELIVERED)
			continue;
		if (!tally->any_left || ulid_compare(&rows[i].id, &tally->lowest_left) < 0)
			tally->lowest_left = rows[i].id;
		tally->any_left = true;
	}

	if (tally->dead_lettered > 0)
		ereport(LOG,
				errmsg_plural("inbox_outbox relay moved %llu event to inbox_outbox.outbox_dead_letter",
							  "inbox_outbox relay moved %llu events to inbox_outbox.outbox_dead_letter",
							  tally->dead_lettered,
							  (unsigned long long) tally->dead_lettered),
				errdetail("The last was %s.", last_dead));
}
