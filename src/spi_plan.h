/*-------------------------------------------------------------------------
 *
 * spi_plan.h
 *	  How the extension runs its own SQL: saved plans, and INSERTs made in
 *	  the calling statement's snapshot.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SPI_PLAN_H
#define SPI_PLAN_H

#include "executor/spi.h"

extern SPIPlanPtr spi_prepare_kept(const char *sql, int nargs, Oid *argtypes);
extern int	spi_insert_in_caller_snapshot(SPIPlanPtr plan, Datum *values,
										  const char *nulls);

#endif							/* SPI_PLAN_H */
