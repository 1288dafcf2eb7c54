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
 * A round's rows live in its batch's memory context, which the relay frees
 * once the batch is recorded.  A value above inbox_outbox.max_message_bytes
 * is never read: its row can only go to the dead-letter table.
 *
 * Most rounds are small, and a statement's executor start-up cost more
 * than the rest of their work: a read from the read bound, the look for
 * failed rows and the delete of acknowledged rows are done in C, each
 * only where it does what its statement would (outbox_plain_access()); the
 * statements remain for the rest.  Deletes of acknowledged rows commit in
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

#include "access/detoast.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/relation.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/itemptr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/relcache.h"
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

/* Longest wait between retries of a failed row. */
#define RELAY_MAX_BACKOFF_MS	60000

/*
 * What the statement that reads a round returns, columns 1 to 11 as
 * relay_store_fetch() takes them: a value larger than $2
 * (inbox_outbox.max_message_bytes) is not read, only its size, which
 * octet_length() and pg_column_size() take from the value's header.
 */
#define FETCH_COLUMNS \
	"SELECT o.ctid, o.id, o.topic," \
	"       CASE WHEN pg_catalog.octet_length(o.key) OPERATOR(pg_catalog.<=) $2 THEN o.key END," \
	"       CASE WHEN pg_catalog.octet_length(o.payload) OPERATOR(pg_catalog.<=) $2 THEN o.payload END," \
	"       CASE WHEN pg_catalog.pg_column_size(o.headers) OPERATOR(pg_catalog.<=) $2" \
	"            THEN o.headers END," \
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
	Oid			checked_retry_index;	/* outbox_retry, as open_retry_index() did */
	MemoryContext scratch;		/* a fetched row's passing allocations */
	SPIPlanPtr	fetch_plan;
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

	/* the partial index outbox_retry answers this (see any_failed_rows()) */
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
 * The row's headers, from the text of its jsonb (len bytes; NULL for a
 * null), plus event_id, in cxt; the parse's own allocations go to scratch,
 * which is reset.  A row whose headers cannot be sent (the CHECK constraint
 * on the outbox keeps them out, but a row restored from elsewhere may lack
 * it) gets the reason in row->unsendable and goes to the dead-letter table.
 */
static void
copy_headers(RelayRow *row, const char *json, size_t len,
			 MemoryContext cxt, MemoryContext scratch)
{
	KafkaHeader *parsed = NULL;
	size_t		bytes = 0;
	int			n = 0;
	char		errbuf[256];
	MemoryContext old = MemoryContextSwitchTo(scratch);
	bool		ok = json == NULL ||
		kafka_headers_from_json(json, len, GetDatabaseEncoding(),
								&parsed, &n, &bytes, errbuf, sizeof(errbuf));

	MemoryContextSwitchTo(cxt);
	if (!ok)
	{
		row->unsendable = psprintf("headers cannot be sent (%s)", errbuf);
		n = 0;
		bytes = 0;
	}
	row->headers = palloc(sizeof(KafkaHeader) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		row->headers[i].name = pstrdup(parsed[i].name);
		row->headers[i].value = pnstrdup(parsed[i].value, parsed[i].value_len);
		row->headers[i].value_len = parsed[i].value_len;
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
	MemoryContextSwitchTo(old);
	MemoryContextReset(scratch);
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

/*
 * Whether the relay may touch the outbox in C, without a statement, for
 * mode (ACL_SELECT, or ACL_DELETE, which the statement's RETURNING makes a
 * SELECT too): a plain table without row security or inheritance children,
 * to which the relay's role has those rights, with no executor hook that
 * checks permissions (sepgsql, pgaudit); for a delete, also in a
 * read-write transaction that sees the latest row versions (the relay's
 * READ COMMITTED: at a higher isolation level, set as the database's
 * default, the statement raises a serialization failure where this would
 * skip the row), with no rule and no trigger that a DELETE would fire (a
 * foreign key to the outbox is such a trigger).  Otherwise the statement
 * runs, which does all of that.
 */
static bool
outbox_plain_access(Relation heap, AclMode mode)
{
	TriggerDesc *trig = heap->trigdesc;
	Oid			relid = RelationGetRelid(heap);

	if (heap->rd_rel->relkind != RELKIND_RELATION || heap->rd_rel->relrowsecurity ||
		heap->rd_rel->relhassubclass || ExecutorCheckPerms_hook != NULL)
		return false;
	if (mode == ACL_DELETE &&
		(XactReadOnly || IsolationUsesXactSnapshot() ||
		 heap->rd_rules != NULL ||
		 (trig != NULL &&
		  (trig->trig_delete_before_row || trig->trig_delete_after_row ||
		   trig->trig_delete_instead_row || trig->trig_delete_before_statement ||
		   trig->trig_delete_after_statement || trig->trig_delete_old_table)) ||
		 pg_class_aclcheck(relid, GetUserId(), ACL_DELETE) != ACLCHECK_OK))
		return false;
	return pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK;
}

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
begin_key_scan(Relation heap, Relation index, int nkeys)
{
#if PG_VERSION_NUM >= 180000
	return index_beginscan(heap, index, GetActiveSnapshot(), NULL, nkeys, 0);
#else
	return index_beginscan(heap, index, GetActiveSnapshot(), nkeys, 0);
#endif
}

/* A row as a read hands it over, before relay_store_fetch() takes it. */
typedef struct FetchedRow
{
	ItemPointerData ctid;
	pg_ulid		id;
	Datum		topic;			/* text */
	bool		topic_null;		/* (NOT NULL may be NOT VALID) */
	TimestampTz created_at;
	int32		attempts;
	int			key_size;		/* bytes of each value, 0 for a null */
	int			payload_size;
	int			headers_size;	/* as stored, as pg_column_size() gives it */
	Datum		key;			/* text, unless null or too large */
	bool		key_null;
	Datum		payload;		/* bytea, likewise */
	bool		payload_null;
	Datum		headers;		/* jsonb, likewise */
	bool		headers_null;
} FetchedRow;

/* The batch relay_store_fetch() is taking. */
typedef struct FetchState
{
	MemoryContext cxt;			/* the batch's */
	MemoryContext scratch;		/* a row's passing allocations */
	RelayIdFilter skip;
	int			limit;			/* rows to read at most, skipped ones too */
	int64		max_bytes;		/* bytes of values to take at most */
	RelayRow   *rows;
	int			n;
	int			capacity;
	int			nread;			/* n, and the rows skipped */
	int64		bytes;
	bool		full;			/* a row was left for a later round */
	pg_ulid		last_id;
} FetchState;

/*
 * Take a row into the batch, or leave it out if skip names it: the relay's
 * rows in flight, which the read may meet again and which are neither
 * copied nor sent twice.  Returns false, taking nothing, if the row would
 * take the batch past st->max_bytes (one row is always taken), counted
 * from the values' sizes before they are read; a value above
 * inbox_outbox.max_message_bytes is not read at all, and costs nothing.
 */
static bool
take_row(FetchState *st, const FetchedRow *f)
{
	int			max = *relay_api->max_message_bytes;
	bool		withheld = f->key_size > max || f->payload_size > max ||
		f->headers_size > max;
	int64		cost = withheld ? 0 :
		(int64) f->key_size + f->payload_size + f->headers_size;
	RelayRow   *row;
	MemoryContext old;

	if (st->skip != NULL && st->skip(&f->id))
	{
		st->nread++;
		st->last_id = f->id;
		return true;
	}
	if (st->n > 0 && st->bytes + cost > st->max_bytes)
	{
		st->full = true;
		return false;
	}
	if (st->n == st->capacity)
	{
		int			more = Min(st->limit, st->capacity * 2);

		st->rows = repalloc(st->rows, sizeof(RelayRow) * more);
		memset(&st->rows[st->capacity], 0, sizeof(RelayRow) * (more - st->capacity));
		st->capacity = more;
	}
	row = &st->rows[st->n++];
	st->nread++;
	st->last_id = f->id;
	st->bytes += cost;

	old = MemoryContextSwitchTo(st->cxt);
	row->ctid = f->ctid;
	row->id = f->id;
	ulid_format(row->id.data, row->id_text);
	if (f->topic_null)
	{
		row->topic = pstrdup("");
		row->unsendable = pstrdup("its topic is null");
	}
	else
		row->topic = TextDatumGetCString(f->topic);
	row->created_ms = kafka_timestamp(f->created_at);
	row->attempts = f->attempts;
	if (withheld)
	{
		/* sizes only, for the dead-letter reason */
		row->oversize = true;
		row->key_len = f->key_size;
		row->payload_len = f->payload_size;
		row->headers_len = f->headers_size;
	}
	else
	{
		if (!f->key_null)
			row->key = copy_bytes(f->key, &row->key_len);
		if (!f->payload_null)
			row->payload = copy_bytes(f->payload, &row->payload_len);
		if (f->headers_null)
			copy_headers(row, NULL, 0, st->cxt, st->scratch);
		else
		{
			/* the text and the detoasted value are the scratch's */
			char	   *json;

			MemoryContextSwitchTo(st->scratch);
			json = DatumGetCString(DirectFunctionCall1(jsonb_out, f->headers));
			copy_headers(row, json, strlen(json), st->cxt, st->scratch);
		}
	}
	MemoryContextSwitchTo(old);
	return true;
}

/* Where the outbox's columns are, for fetch_from(). */
typedef struct OutboxColumns
{
	AttrNumber	id;
	AttrNumber	topic;
	AttrNumber	key;
	AttrNumber	payload;
	AttrNumber	headers;
	AttrNumber	created_at;
	AttrNumber	attempts;
	AttrNumber	next_attempt_at;
} OutboxColumns;

/*
 * Find the outbox's columns in its descriptor, each of the type, and as
 * NOT NULL, as the extension made it (id is the primary key's column, a
 * ulid).  Returns false if one is not.  Cheap enough for every read: the
 * descriptor is the relcache's.
 */
static bool
outbox_columns(Relation heap, AttrNumber id, OutboxColumns *cols)
{
	static const struct
	{
		const char *name;
		Oid			type;
		bool		not_null;
		size_t		offset;
	}			want[] = {
		{"topic", TEXTOID, true, offsetof(OutboxColumns, topic)},
		{"key", TEXTOID, false, offsetof(OutboxColumns, key)},
		{"payload", BYTEAOID, false, offsetof(OutboxColumns, payload)},
		{"headers", JSONBOID, false, offsetof(OutboxColumns, headers)},
		{"created_at", TIMESTAMPTZOID, true, offsetof(OutboxColumns, created_at)},
		{"attempts", INT4OID, true, offsetof(OutboxColumns, attempts)},
		{"next_attempt_at", TIMESTAMPTZOID, false, offsetof(OutboxColumns, next_attempt_at)},
	};
	TupleDesc	desc = RelationGetDescr(heap);
	Form_pg_attribute att;

	if (id < 1 || id > desc->natts)
		return false;
	att = TupleDescAttr(desc, id - 1);
	if (att->attisdropped || att->attlen != sizeof(pg_ulid) || !att->attnotnull)
		return false;
	cols->id = id;
	for (size_t i = 0; i < lengthof(want); i++)
	{
		AttrNumber	found = InvalidAttrNumber;

		for (int a = 0; a < desc->natts && found == InvalidAttrNumber; a++)
		{
			att = TupleDescAttr(desc, a);
			if (!att->attisdropped && strcmp(NameStr(att->attname), want[i].name) == 0)
				found = a + 1;
		}
		if (found == InvalidAttrNumber)
			return false;
		att = TupleDescAttr(desc, found - 1);
		if (att->atttypid != want[i].type || (want[i].not_null && !att->attnotnull))
			return false;
		*(AttrNumber *) ((char *) cols + want[i].offset) = found;
	}
	return true;
}

/*
 * Take the outbox rows visible in the active snapshot with an id of at
 * least from, in id order, until st's limits, straight from the primary
 * key's index scan (heap, index and cols as relay_store_fetch() opened and
 * checked them).
 *
 * This is an index scan in C rather than a statement, because a statement
 * would have to name the ulid >= operator, and a name can be made to
 * resolve elsewhere (see prepare_plans()); and because it is the cheapest
 * read a small round can make.  The scan key compares with uuid_ge, which
 * the ulid operator class uses, found by its OID (see open_outbox_key()).
 * A value's size comes from its header, toasted or not, as octet_length()
 * and pg_column_size() take it; a value too large is never detoasted.
 */
static void
fetch_from(Relation heap, Relation index, const OutboxColumns *cols,
		   const pg_ulid *from, FetchState *st)
{
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;

	ScanKeyInit(&key, 1, BTGreaterEqualStrategyNumber, F_UUID_GE,
				UlidPGetDatum(from));
	scan = begin_key_scan(heap, index, 1);
	index_rescan(scan, &key, 1, NULL, 0);
	slot = table_slot_create(heap, NULL);
	while (st->nread < st->limit && !st->full &&
		   index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		FetchedRow	f;
		bool		isnull;

		f.ctid = slot->tts_tid;
		memcpy(&f.id, DatumGetPointer(slot_getattr(slot, cols->id, &isnull)),
			   sizeof(pg_ulid));
		f.topic = slot_getattr(slot, cols->topic, &f.topic_null);
		f.created_at = DatumGetTimestampTz(slot_getattr(slot, cols->created_at, &isnull));
		f.attempts = DatumGetInt32(slot_getattr(slot, cols->attempts, &isnull));
		f.key = slot_getattr(slot, cols->key, &f.key_null);
		f.key_size = f.key_null ? 0 : toast_raw_datum_size(f.key) - VARHDRSZ;
		f.payload = slot_getattr(slot, cols->payload, &f.payload_null);
		f.payload_size = f.payload_null ? 0 : toast_raw_datum_size(f.payload) - VARHDRSZ;
		f.headers = slot_getattr(slot, cols->headers, &f.headers_null);
		f.headers_size = f.headers_null ? 0 : toast_datum_size(f.headers);
		(void) take_row(st, &f);
	}
	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
}

/*
 * The partial index of failed rows, outbox_retry, if it is what the
 * extension made: a btree on the outbox whose predicate is exactly
 * attempts > 0 (int4 > int4, found by OID), so that it holds every row that
 * waits for a retry.  Returns NULL (and opens nothing) otherwise.
 */
static Relation
open_retry_index(Relation heap, AttrNumber attempts)
{
	Oid			indexid = get_relname_relid("outbox_retry", RelationGetNamespace(heap));
	Relation	index;
	List	   *pred;
	OpExpr	   *op;
	Var		   *var;
	Const	   *cst;

	if (!OidIsValid(indexid))
		return NULL;
	index = try_relation_open(indexid, AccessShareLock);
	if (index == NULL)
		return NULL;

	/* every round: DROP INDEX CONCURRENTLY makes it stop taking new rows */
	if (index->rd_rel->relkind != RELKIND_INDEX ||
		index->rd_index->indrelid != RelationGetRelid(heap) ||
		!index->rd_index->indisvalid || !index->rd_index->indisready ||
		!index->rd_index->indislive)
		goto not_ours;
	if (indexid == store.checked_retry_index)
		return index;

	/* once per index, not every round: an index made anew has a new OID */
	if (index->rd_rel->relam != BTREE_AM_OID)
		goto not_ours;
	pred = RelationGetIndexPredicate(index);
	if (list_length(pred) != 1 || !IsA(linitial(pred), OpExpr))
		goto not_ours;
	op = linitial_node(OpExpr, pred);
	if (op->opfuncid != F_INT4GT || list_length(op->args) != 2 ||
		!IsA(linitial(op->args), Var) || !IsA(lsecond(op->args), Const))
		goto not_ours;
	var = linitial_node(Var, op->args);
	cst = lsecond_node(Const, op->args);
	if (var->varattno != attempts ||
		var->vartype != INT4OID ||
		cst->consttype != INT4OID || cst->constisnull ||
		DatumGetInt32(cst->constvalue) != 0)
		goto not_ours;
	store.checked_retry_index = indexid;
	return index;

not_ours:
	index_close(index, AccessShareLock);
	return NULL;
}

/*
 * Whether rows wait for a retry; *next_retry_ms is set to the wait until
 * the earliest is due, or -1.  Runs in the caller's transaction.
 *
 * Most rounds find none, so this is an index scan in C of outbox_retry,
 * which is empty then, rather than a statement: the statement's executor
 * start alone cost as much as the rest of a small round's read.  Should
 * the index not be what the extension made, or heap be NULL (the outbox is
 * not; see relay_store_fetch()), the statement answers.
 */
static bool
any_failed_rows(Relation heap, const OutboxColumns *cols, int64 *next_retry_ms)
{
	Relation	retry = heap != NULL ? open_retry_index(heap, cols->attempts) : NULL;
	bool		isnull;
	Datum		next;
	int			ret;

	if (retry != NULL)
	{
		IndexScanDesc scan = begin_key_scan(heap, retry, 0);
		TupleTableSlot *slot = table_slot_create(heap, NULL);
		bool		any = false;
		bool		any_due_at = false;
		TimestampTz due_at = 0;

		index_rescan(scan, NULL, 0, NULL, 0);
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			Datum		v = slot_getattr(slot, cols->next_attempt_at, &isnull);

			any = true;
			if (!isnull && (!any_due_at || DatumGetTimestampTz(v) < due_at))
			{
				due_at = DatumGetTimestampTz(v);
				any_due_at = true;
			}
		}
		ExecDropSingleTupleTableSlot(slot);
		index_endscan(scan);
		index_close(retry, NoLock);
		*next_retry_ms = any_due_at ? ms_until(due_at) : -1;
		return any;
	}

	ret = execute_no_seqscan(store.failed_plan, NULL, true);
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
 * which are neither copied nor sent twice.  Returns the number of rows;
 * *next_retry_ms is set to the wait until the earliest pending retry, or -1
 * if none; *read says how the rows were read.
 *
 * With from set and no row waiting for a retry, the read starts at from,
 * an index scan in C (see fetch_from() and outbox_floor.c); otherwise it is
 * a statement from the low end of the outbox, skipping rows waiting for a
 * retry and every later row of their keys.
 *
 * The batch ends at inbox_outbox.batch_size rows or before the row that
 * would take it past max_bytes of values (see take_row()).  Either read holds
 * toasted values as pointers until a row is taken (the statement's cursor
 * hands over 256 rows at a time), so that is all the memory a round takes
 * besides its rows' values, each held once.
 */
int
relay_store_fetch(MemoryContext cxt, const pg_ulid *from, RelayIdFilter skip,
				  int64 max_bytes, RelayRow **rows_out, int64 *next_retry_ms,
				  RelayRead *read)
{
	int			batch = *relay_api->batch_size;
	FetchState	st = {0};

	Relation	heap = NULL;
	Relation	index = NULL;
	OutboxColumns cols;

	if (store.batch_limit > 0 && batch > store.batch_limit)
		batch = store.batch_limit;
	prepare_plans();

	/* in C only what is as the extension made it (see fetch_from()) */
	if (open_outbox_key(&heap, &index) &&
		!(outbox_plain_access(heap, ACL_SELECT) &&
		  outbox_columns(heap, index->rd_index->indkey.values[0], &cols)))
	{
		index_close(index, NoLock);
		table_close(heap, NoLock);
		heap = index = NULL;
	}

	memset(read, 0, sizeof(*read));
	read->failed_rows = any_failed_rows(heap, &cols, next_retry_ms);
	read->from_start = from == NULL || read->failed_rows || heap == NULL;

	st.cxt = cxt;
	if (store.scratch == NULL)
		store.scratch = AllocSetContextCreate(TopMemoryContext, "inbox_outbox relay row",
											  ALLOCSET_SMALL_SIZES);
	st.scratch = store.scratch;
	st.skip = skip;
	st.limit = batch;
	st.max_bytes = max_bytes;
	/* grown as rows come: a small round should not pay for a full batch */
	st.capacity = Min(batch, 64);
	st.rows = MemoryContextAllocZero(cxt, sizeof(RelayRow) * st.capacity);

	if (!read->from_start)
		fetch_from(heap, index, &cols, from, &st);
	if (heap != NULL)
	{
		index_close(index, NoLock);
		table_close(heap, NoLock);
	}
	if (read->from_start)
	{
		Datum		args[2];
		Portal		portal;

		args[0] = Int32GetDatum(batch);
		args[1] = Int32GetDatum(*relay_api->max_message_bytes);
		portal = SPI_cursor_open(NULL, store.fetch_plan, args, NULL, true);
		while (st.nread < batch && !st.full)
		{
			SPI_cursor_fetch(portal, true, Min(256, batch - st.nread));
			if (SPI_processed == 0)
				break;
			for (uint64 i = 0; i < SPI_processed && !st.full; i++)
			{
				HeapTuple	tup = SPI_tuptable->vals[i];
				TupleDesc	desc = SPI_tuptable->tupdesc;
				FetchedRow	f;
				bool		isnull;

				ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 1, &isnull)),
								&f.ctid);
				memcpy(&f.id, DatumGetPointer(SPI_getbinval(tup, desc, 2, &isnull)),
					   sizeof(pg_ulid));
				f.topic = SPI_getbinval(tup, desc, 3, &f.topic_null);
				f.key = SPI_getbinval(tup, desc, 4, &f.key_null);
				f.payload = SPI_getbinval(tup, desc, 5, &f.payload_null);
				f.headers = SPI_getbinval(tup, desc, 6, &f.headers_null);
				f.created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 7, &isnull));
				f.attempts = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
				f.key_size = size_of(tup, desc, 9);
				f.payload_size = size_of(tup, desc, 10);
				f.headers_size = size_of(tup, desc, 11);
				(void) take_row(&st, &f);
			}
			SPI_freetuptable(SPI_tuptable);
		}
		SPI_cursor_close(portal);
	}

	*rows_out = st.rows;
	read->cut = st.full || st.nread == batch;
	if (st.nread > 0)
		read->last_id = st.last_id;
	if (read->cut)
		*next_retry_ms = -1;	/* rows are waiting: no rest before the next round */

	return st.n;
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

/* delete_at_tids() as a statement, which runs what a DELETE runs */
static int
delete_at_tids_statement(TidAndId *rows, int n)
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
 *
 * The rows are deleted in C, as a DELETE by ctid would delete them (a row
 * the snapshot does not see, or that a concurrent transaction deleted or
 * updated, is not found), unless a DELETE would do more than that: then
 * the statement deletes them (see outbox_plain_access()).  A small round's
 * statement cost more than the rest of its recording.
 */
static int
delete_at_tids(TidAndId *rows, int n)
{
	Oid			relid = get_relname_relid("outbox", get_namespace_oid("inbox_outbox", false));
	Relation	heap;
	AttrNumber	idatt;
	TupleTableSlot *slot;
	Snapshot	snapshot = GetActiveSnapshot();
	CommandId	cid;
	BlockNumber nblocks;
	int			deleted = 0;

	if (!OidIsValid(relid))
		return delete_at_tids_statement(rows, n);
	heap = table_open(relid, RowExclusiveLock);
	idatt = get_attnum(relid, "id");
	if (!outbox_plain_access(heap, ACL_DELETE) || idatt == InvalidAttrNumber ||
		TupleDescAttr(RelationGetDescr(heap), idatt - 1)->attlen != sizeof(pg_ulid))
	{
		table_close(heap, NoLock);
		return delete_at_tids_statement(rows, n);
	}
	CheckCmdReplicaIdentity(heap, CMD_DELETE);

	cid = GetCurrentCommandId(true);
	nblocks = RelationGetNumberOfBlocks(heap);
	slot = table_slot_create(heap, NULL);
	for (int i = 0; i < n; i++)
	{
		TM_FailureData tmfd;
		TM_Result	result;
		bool		isnull;
		Datum		id;

		rows[i].deleted = false;

		/* a place past the table's end (vacuum truncated it) holds no row */
		if (ItemPointerGetBlockNumber(&rows[i].tid) >= nblocks ||
			!table_tuple_fetch_row_version(heap, &rows[i].tid, snapshot, slot))
			continue;
		id = slot_getattr(slot, idatt, &isnull);
		if (isnull || memcmp(&rows[i].id, DatumGetPointer(id), sizeof(pg_ulid)) != 0)
			ereport(ERROR,
					errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					errmsg("inbox_outbox relay found another row where an acknowledged one was read"),
					errdetail("The outbox changed under the relay (a row deleted by hand and its place reused, or VACUUM FULL); the round's deletes are undone and its rows are read again."));
		ExecClearTuple(slot);

		result = table_tuple_delete(heap, &rows[i].tid, cid, snapshot,
									InvalidSnapshot, true, &tmfd, false);
		switch (result)
		{
			case TM_Ok:
				rows[i].deleted = true;
				deleted++;
				break;
			case TM_SelfModified:
			case TM_Updated:
			case TM_Deleted:
				/* changed since the snapshot: not at its place any more */
				break;
			default:
				elog(ERROR, "unexpected result %d deleting an outbox row", (int) result);
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(heap, NoLock);

	/* what follows in the transaction sees the deletes, as after a statement */
	CommandCounterIncrement();
	return deleted;
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
	scan = begin_key_scan(heap, index, 1);
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
