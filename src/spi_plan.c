/*-------------------------------------------------------------------------
 *
 * spi_plan.c
 *	  How the extension runs its own SQL: saved plans, and INSERTs made in
 *	  the calling statement's snapshot.
 *
 * Each statement the extension runs through SPI is prepared once per
 * backend and kept for the backend's life (SPI_keepplan), so a call costs
 * an execution, not a parse and plan.  The plan cache replans when the
 * tables change.  Must be called between SPI_connect() and SPI_finish().
 *
 * The INSERTs that SQL functions make on their caller's behalf (a claim, a
 * published event) run under the calling statement's snapshot instead of a
 * new one: they read nothing a snapshot decides (ON CONFLICT goes by the
 * unique index, not by a snapshot), and under REPEATABLE READ or
 * SERIALIZABLE the statement's snapshot is the transaction's anyway.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/snapmgr.h"

#include "spi_plan.h"

SPIPlanPtr
spi_prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed for \"%s\"", sql);
	return plan;
}

/* Run an INSERT plan under the calling statement's snapshot. */
int
spi_insert_in_caller_snapshot(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	return SPI_execute_snapshot(plan, values, nulls,
								ActiveSnapshotSet() ? GetActiveSnapshot() : InvalidSnapshot,
								InvalidSnapshot, false, true, 0);
}
