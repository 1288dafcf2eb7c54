/*-------------------------------------------------------------------------
 *
 * ingest_status.c
 *	  inbox_outbox.ingest_workers(): what the ingestion workers of the
 *	  current database report in shared memory, for the view
 *	  inbox_outbox.ingest_status.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "pg_compat.h"
#include "shared_state.h"

PG_FUNCTION_INFO_V1(ingest_workers);

static const char *const state_names[] = {
	[INGEST_STARTING] = "starting",
	[INGEST_IDLE] = "idle",
	[INGEST_CONSUMING] = "consuming",
	[INGEST_RETRYING] = "retrying",
	[INGEST_BROKER_UNREACHABLE] = "broker unreachable",
	[INGEST_PAUSED_COPY] = "paused: copy of another database",
	[INGEST_STOPPED_ERROR] = "stopped: error",
	[INGEST_STOPPED_GAP] = "stopped: gap",
	[INGEST_NO_WORKER] = "no free worker",
};

Datum
ingest_workers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	IngestSlot *copies;
	int			n = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (inbox_outbox_shared == NULL)
		PG_RETURN_VOID();

	copies = palloc(sizeof(IngestSlot) * INGEST_MAX_WORKERS);
	LWLockAcquire(inbox_outbox_shared->lock, LW_SHARED);
	for (int i = 0; i < INGEST_MAX_WORKERS; i++)
	{
		IngestSlot *slot = &inbox_outbox_shared->ingest[i];

		if (slot->dbid == MyDatabaseId && slot->wanted)
			copies[n++] = *slot;
	}
	LWLockRelease(inbox_outbox_shared->lock);

	for (int i = 0; i < n; i++)
	{
		IngestSlot *slot = &copies[i];
		Datum		values[10];
		bool		nulls[10];
		const char *state;

		memset(nulls, 0, sizeof(nulls));
		if (slot->pid != 0 || slot->state == INGEST_NO_WORKER ||
			(slot->stopped && slot->stopped_generation == slot->generation))
			state = state_names[slot->state];
		else
			state = "stopped";
		values[0] = CStringGetTextDatum(slot->subscription);
		values[1] = Int32GetDatum(slot->worker);
		values[2] = Int32GetDatum(slot->pid);
		nulls[2] = (slot->pid == 0);
		values[3] = CStringGetTextDatum(state);
		values[4] = Int64GetDatum((int64) slot->consumed);
		values[5] = Int64GetDatum((int64) slot->duplicates);
		values[6] = Int64GetDatum((int64) slot->dead_lettered);
		values[7] = TimestampTzGetDatum(slot->last_commit_at);
		nulls[7] = (slot->last_commit_at == 0);
		if (slot->last_error[0] != '\0')
			values[8] = CStringGetTextDatum(slot->last_error);
		else
			nulls[8] = true;
		values[9] = TimestampTzGetDatum(slot->last_error_at);
		nulls[9] = (slot->last_error_at == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
