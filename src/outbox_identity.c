/*-------------------------------------------------------------------------
 *
 * outbox_identity.c
 *	  The database an outbox publishes for, so that a copy of the database
 *	  does not publish its pending events again; and
 *	  inbox_outbox.adopt_outbox(), which makes a copy publish (or drop them).
 *
 * A copy of a database takes its pending events along: pg_dump dumps the
 * outbox (a configuration table), CREATE DATABASE ... TEMPLATE copies its
 * files, and a logical replica may subscribe to it.  Each copy's relay
 * would send the same events again, to the same Kafka.  So the outbox
 * records whom it publishes for, the server's system identifier and the
 * database's OID, in inbox_outbox.database_identity, and the relay
 * publishes only while every row there names this database and no
 * subscription replicates the outbox into it:
 *
 * - CREATE EXTENSION records the database it runs in.
 * - pg_dump dumps the table, so a restore appends the source's row to the
 *   one its own CREATE EXTENSION recorded (no unique key, so the restore
 *   never fails on it).  The relay reads the table in the snapshot in which
 *   it reads the rows it publishes, and a serial restore (psql, pg_restore
 *   without -j) commits the table's rows before the outbox's, because
 *   pg_dump loads a schema's tables in name order and "database_identity"
 *   sorts before "outbox": so no snapshot holds the restored events without
 *   the foreign row.  pg_restore -j loads tables side by side; there the
 *   events can be visible for the moment between the two loads.
 * - A template copy keeps the template's row, which names its OID.
 * - pg_upgrade carries the rows over (it moves the table's files), but the
 *   new cluster has a new system identifier: paused until adopted.
 * - A promoted standby keeps both numbers: it is the same database.  A copy
 *   of the data directory (a base backup started as a server of its own)
 *   keeps them too, and is not detected.
 * - A subscription that replicates the outbox is listed in
 *   pg_subscription_rel from CREATE SUBSCRIPTION (or REFRESH PUBLICATION)
 *   on, before any row is copied: the events are the publisher's to send.
 *
 * An empty table (rows deleted by hand) records this database again.
 *
 * Trust: the statements name only the tables' schema inbox_outbox and
 * pg_catalog, and qualify every operator (see docs/design.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_subscription.h"
#include "catalog/pg_subscription_rel.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "outbox_identity.h"
#include "pg_compat.h"
#include "spi_plan.h"

PG_FUNCTION_INFO_V1(adopt_outbox);

/* What inbox_outbox.database_identity and the subscriptions say. */
typedef struct IdentityCheck
{
	bool		exists;			/* the table is there (not dropped by hand) */
	Oid			relid;			/* its OID, if so */
	int64		rows;
	bool		foreign;		/* a row names another database */
	int64		foreign_system;
	Oid			foreign_database;
	char		subscription[NAMEDATALEN];	/* one that replicates the outbox */
	char		broken[160];	/* the table was altered so: checks nothing */
} IdentityCheck;

static SPIPlanPtr record_plan = NULL;

/* Short enough for relay_status.last_error (RELAY_ERROR_LEN). */
static char reason_text[256];
static char hint_text[256];

static void
identity_prepare(void)
{
	Oid			argtypes[2] = {INT8OID, OIDOID};

	if (record_plan != NULL)
		return;

	record_plan = spi_prepare_kept(
		"INSERT INTO inbox_outbox.database_identity (system_identifier, database_oid)"
		" VALUES ($1, $2)",
		2, argtypes);
}

/* This server's system identifier, as pg_control_system() shows it. */
static Datum
this_system(void)
{
	return Int64GetDatum((int64) GetSystemIdentifier());
}

/*
 * The attribute number of column name of rel, which must be NOT NULL and
 * of type typid; or 0, with the problem in c->broken (the table is the
 * extension's, but its owner may alter it).
 */
static AttrNumber
identity_column(Relation rel, const char *name, Oid typid, IdentityCheck *c)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), name);
	Form_pg_attribute att;

	if (attnum > 0)
	{
		att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
		if (att->atttypid == typid && att->attnotnull)
			return attnum;
	}
	snprintf(c->broken, sizeof(c->broken),
			 "column \"%s\" of table inbox_outbox.database_identity is missing, nullable or not of type %s",
			 name, format_type_be(typid));
	return 0;
}

/*
 * The first subscription, by name, that replicates relation relid into this
 * database, into name; or an empty string.
 */
static void
identity_subscription(Oid relid, char *name)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	name[0] = '\0';
	rel = table_open(SubscriptionRelRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_subscription_rel_srrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, SubscriptionRelSrrelidSrsubidIndexId, true,
							  NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Oid			subid = ((Form_pg_subscription_rel) GETSTRUCT(tup))->srsubid;
		HeapTuple	sub = SearchSysCache1(SUBSCRIPTIONOID, ObjectIdGetDatum(subid));

		if (!HeapTupleIsValid(sub))
			continue;			/* dropped meanwhile */
		if (name[0] == '\0' ||
			strcmp(NameStr(((Form_pg_subscription) GETSTRUCT(sub))->subname), name) < 0)
			strlcpy(name, NameStr(((Form_pg_subscription) GETSTRUCT(sub))->subname),
					NAMEDATALEN);
		ReleaseSysCache(sub);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * Read the identity table in the active snapshot (the relay's, in which it
 * then reads the outbox) and the subscriptions in the catalog's.  Runs
 * inside a transaction.
 *
 * The relay does this before every read, so it is a scan in C rather than a
 * statement: the table holds a row or two, and a statement's planning and
 * executor start cost the relay a tenth of its time at low rates.  Of the
 * rows that name another database, the first recorded is reported.
 */
static void
identity_check(IdentityCheck *c)
{
	Oid			schema = get_namespace_oid("inbox_outbox", true);
	Oid			outbox = get_relname_relid("outbox", schema);
	Oid			relid;
	int64		system = DatumGetInt64(this_system());
	Relation	rel;
	AttrNumber	system_col;
	AttrNumber	database_col;
	AttrNumber	recorded_col;
	TableScanDesc scan;
	TupleTableSlot *slot;
	TimestampTz first_foreign = 0;

	memset(c, 0, sizeof(*c));
	relid = RangeVarGetRelidExtended(makeRangeVar("inbox_outbox", "database_identity", -1),
									 AccessShareLock, RVR_MISSING_OK, NULL, NULL);
	c->exists = OidIsValid(relid);
	c->relid = relid;
	if (!c->exists)
		return;

	rel = table_open(relid, NoLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION)
	{
		strlcpy(c->broken, "inbox_outbox.database_identity is not a table",
				sizeof(c->broken));
		table_close(rel, NoLock);
		return;
	}
	system_col = identity_column(rel, "system_identifier", INT8OID, c);
	database_col = identity_column(rel, "database_oid", OIDOID, c);
	recorded_col = identity_column(rel, "recorded_at", TIMESTAMPTZOID, c);
	if (c->broken[0] != '\0')
	{
		table_close(rel, NoLock);
		return;
	}
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		int64		row_system;
		Oid			row_database;
		TimestampTz recorded;

		/* the columns are NOT NULL (identity_column()) */
		c->rows++;
		row_system = DatumGetInt64(slot_getattr(slot, system_col, &isnull));
		row_database = DatumGetObjectId(slot_getattr(slot, database_col, &isnull));
		recorded = DatumGetTimestampTz(slot_getattr(slot, recorded_col, &isnull));
		if (row_system == system && row_database == MyDatabaseId)
			continue;
		if (!c->foreign || recorded < first_foreign)
		{
			c->foreign = true;
			c->foreign_system = row_system;
			c->foreign_database = row_database;
			first_foreign = recorded;
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	table_close(rel, NoLock);

	if (OidIsValid(outbox))
		identity_subscription(outbox, c->subscription);
}

/* Record this database as the one the outbox publishes for. */
static void
identity_record(void)
{
	Datum		args[2];

	SPI_connect();
	identity_prepare();
	args[0] = this_system();
	args[1] = ObjectIdGetDatum(MyDatabaseId);
	if (SPI_execute_plan(record_plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the identity of the database");
	SPI_finish();
}

/* Why a copy's relay does not publish, into reason_text. */
static void
describe_copy(const IdentityCheck *c)
{
	if (c->foreign_system != DatumGetInt64(this_system()))
		snprintf(reason_text, sizeof(reason_text),
				 "its outbox was recorded by another server (system identifier %lld, database OID %u): a restore from elsewhere, or pg_upgrade",
				 (long long) c->foreign_system, c->foreign_database);
	else
	{
		char	   *name = get_database_name(c->foreign_database);

		if (name != NULL)
			snprintf(reason_text, sizeof(reason_text),
					 "its outbox was copied from database \"%s\" (OID %u)",
					 name, c->foreign_database);
		else
			snprintf(reason_text, sizeof(reason_text),
					 "its outbox was copied from a database that no longer exists (OID %u)",
					 c->foreign_database);
	}
}

/*
 * Whether this database's relay may publish its outbox.  If not, *reason
 * and *hint (either may be NULL) point to sentences that say why and what
 * to do; they stay valid until the next call.  A table without rows gets
 * this database's identity; a table dropped by hand checks nothing.  Runs
 * inside a transaction, in the snapshot in which the caller reads the
 * outbox.
 */
bool
outbox_identity_verify(const char **reason, const char **hint)
{
	IdentityCheck c;

	identity_check(&c);
	if (!c.exists)
		return true;

	if (c.broken[0] != '\0')
	{
		strlcpy(reason_text, c.broken, sizeof(reason_text));
		strlcpy(hint_text,
				"Restore it as CREATE EXTENSION made it: system_identifier bigint, database_oid oid and recorded_at timestamptz, all NOT NULL.",
				sizeof(hint_text));
	}
	else if (c.subscription[0] != '\0')
	{
		snprintf(reason_text, sizeof(reason_text),
				 "subscription \"%s\" replicates inbox_outbox.outbox into this database",
				 c.subscription);
		strlcpy(hint_text,
				"Its events are the publisher's to send. Leave the extension's tables out of the publication and refresh the subscription, or drop the subscription.",
				sizeof(hint_text));
	}
	else if (c.foreign)
	{
		describe_copy(&c);
		strlcpy(hint_text,
				"To publish the copied events from this database, call SELECT inbox_outbox.adopt_outbox(); to delete them unsent, call SELECT inbox_outbox.adopt_outbox(discard_pending => true).",
				sizeof(hint_text));
	}
	else
	{
		if (c.rows == 0)
			identity_record();
		return true;
	}

	if (reason)
		*reason = reason_text;
	if (hint)
		*hint = hint_text;
	return false;
}

/*
 * inbox_outbox.adopt_outbox(discard_pending boolean)
 *		RETURNS (pending bigint, discarded bigint)
 *
 * Make this database the one its outbox publishes for: its relay then
 * sends the pending events (pending), or, with discard_pending, first
 * deletes them unsent (discarded).  The relay is woken at commit by the
 * statement trigger on inbox_outbox.database_identity.
 *
 * Refused while a subscription replicates the outbox, since the publisher
 * sends those events; and discard_pending is refused for an outbox that is
 * not a copy, whose pending events are its own.  EXECUTE is revoked from
 * PUBLIC, and the statements run with the caller's privileges.
 */
Datum
adopt_outbox(PG_FUNCTION_ARGS)
{
	bool		discard = PG_GETARG_BOOL(0);
	IdentityCheck c;
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	Datum		args[2];
	int64		pending;
	uint64		discarded = 0;
	AclResult	aclresult;
	bool		isnull;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	identity_check(&c);
	if (!c.exists)
		ereport(ERROR,
				errcode(ERRCODE_UNDEFINED_TABLE),
				errmsg("table inbox_outbox.database_identity does not exist"));
	/* the check reads the table in C: the caller must be allowed to */
	aclresult = pg_class_aclcheck(c.relid, GetUserId(), ACL_SELECT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, "database_identity");
	if (c.broken[0] != '\0')
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("%s", c.broken),
				errdetail("The relay and inbox_outbox.adopt_outbox() read the table as CREATE EXTENSION made it."));

	if (c.subscription[0] != '\0')
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("cannot adopt the outbox while subscription \"%s\" replicates it",
					   c.subscription),
				errdetail("Its events are the publisher's to send; this database's relay would send them again."),
				errhint("Leave the extension's tables out of the publication and refresh the subscription, or drop the subscription."));
	if (discard && !c.foreign)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("the outbox of database \"%s\" is not a copy",
					   get_database_name(MyDatabaseId)),
				errdetail("It was recorded in this database, so its pending events are this database's to publish."),
				errhint("To drop pending events anyway, delete them from inbox_outbox.outbox."));

	SPI_connect();
	identity_prepare();
	if (discard)
	{
		if (SPI_execute("DELETE FROM inbox_outbox.outbox", false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not delete the pending events");
		discarded = SPI_processed;
	}
	if (SPI_execute("DELETE FROM inbox_outbox.database_identity", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete the recorded identities");
	args[0] = this_system();
	args[1] = ObjectIdGetDatum(MyDatabaseId);
	if (SPI_execute_plan(record_plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the identity of the database");
	if (SPI_execute("SELECT pg_catalog.count(*) FROM inbox_outbox.outbox", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count the pending events");
	pending = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	ereport(LOG,
			errmsg("inbox_outbox: database \"%s\" adopted its outbox: %lld pending events to publish, %llu discarded",
				   get_database_name(MyDatabaseId), (long long) pending,
				   (unsigned long long) discarded));

	values[0] = Int64GetDatum(pending);
	values[1] = Int64GetDatum((int64) discarded);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
