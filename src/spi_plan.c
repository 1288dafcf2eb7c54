/*-------------------------------------------------------------------------
 *
 * spi_plan.c
 *	  Saved SPI plans of the extension's own statements.
 *
 * Each statement the extension runs through SPI is prepared once per
 * backend and kept for the backend's life (SPI_keepplan), so a call costs
 * an execution, not a parse and plan.  The plan cache replans when the
 * tables change.  Must be called between SPI_connect() and SPI_finish().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

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
