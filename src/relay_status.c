/*-------------------------------------------------------------------------
 *
 * relay_status.c
 *	  inbox_outbox.relay_worker(): what the current database's relay
 *	  reports in shared memory.  The view inbox_outbox.relay_status adds
 *	  what only the database knows (pending rows, dead letters).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "pg_compat.h"
#include "shared_state.h"

PG_FUNCTION_INFO_V1(relay_worker);

static const char *const state_names[] = {
	[RELAY_STARTING] = "starting",
	[RELAY_IDLE] = "idle",
	[RELAY_PUBLISHING] = "publishing",
	[RELAY_BACKING_OFF] = "backing off",
	[RELAY_BROKER_UNREACHABLE] = "broker unreachable",
	[RELAY_WAITING_FOR_STANDBY] = "waiting for standby",
	[RELAY_STOPPED] = "stopped",
	[RELAY_NO_WORKER] = "no free worker",
	[RELAY_PAUSED_COPY] = "paused: copy of another database",
	[RELAY_RECOVERING] = "recovering",
	[RELAY_FENCED] = "fenced",
};

Datum
relay_worker(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8];
	RelaySlot	copy;
	RelaySlot  *slot = NULL;
	int			starved = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	memset(nulls, 0, sizeof(nulls));
	memset(&copy, 0, sizeof(copy));
	copy.state = RELAY_STOPPED;

	if (inbox_outbox_shared != NULL)
	{
		LWLockAcquire(inbox_outbox_shared->lock, LW_SHARED);
		slot = relay_slot_find(MyDatabaseId);
		if (slot != NULL)
			copy = *slot;
		for (int i = 0; i < inbox_outbox_shared->nstarved; i++)
		{
			if (inbox_outbox_shared->starved[i].dbid == MyDatabaseId)
				starved = inbox_outbox_shared->starved[i].why;
		}
		LWLockRelease(inbox_outbox_shared->lock);
	}

	if (copy.pid != 0)
		values[0] = Int32GetDatum(copy.pid);
	else
		nulls[0] = true;
	if (inbox_outbox_shared == NULL)
		values[1] = CStringGetTextDatum("not preloaded");
	else if (copy.pid != 0)
		values[1] = CStringGetTextDatum(state_names[copy.state]);
	else if (RecoveryInProgress())
		values[1] = CStringGetTextDatum("in recovery");
	else if (starved == RELAY_STARVED_NO_SLOT)
		values[1] = CStringGetTextDatum("no relay slot");
	else if (starved == RELAY_STARVED_NO_WORKER || copy.state == RELAY_NO_WORKER)
		values[1] = CStringGetTextDatum("no free worker");
	else
		values[1] = CStringGetTextDatum("stopped");
	/* the mode in effect: a running relay's */
	if (copy.pid != 0)
		values[2] = CStringGetTextDatum(copy.exactly_once ?
										"exactly_once" : "at_least_once");
	else
		nulls[2] = true;
	values[3] = Int64GetDatum((int64) copy.published);
	values[4] = Int64GetDatum((int64) copy.failed);
	values[5] = Int64GetDatum((int64) copy.dead_lettered);
	/* the error clears once a round goes through; its time stays */
	if (copy.last_error[0] != '\0')
		values[6] = CStringGetTextDatum(copy.last_error);
	else
		nulls[6] = true;
	if (copy.last_error_at != 0)
		values[7] = TimestampTzGetDatum(copy.last_error_at);
	else
		nulls[7] = true;

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
