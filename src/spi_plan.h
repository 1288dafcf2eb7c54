/*-------------------------------------------------------------------------
 *
 * spi_plan.h
 *	  Saved SPI plans of the extension's own statements.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SPI_PLAN_H
#define SPI_PLAN_H

#include "executor/spi.h"

extern SPIPlanPtr spi_prepare_kept(const char *sql, int nargs, Oid *argtypes);

#endif							/* SPI_PLAN_H */
