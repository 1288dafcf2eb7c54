/*-------------------------------------------------------------------------
 *
 * inbox_outbox.c
 *	  Module initialization: configuration parameters and shared memory.
 *
 * Nothing here talks to Kafka.  librdkafka is used only by the relay worker,
 * after it has forked, so application backends that load this library for
 * gen_ulid() or outbox_publish() never start its threads.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "shared_state.h"
#include "ulid.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	MarkGUCPrefixReserved("inbox_outbox");

	if (process_shared_preload_libraries_in_progress)
		shared_state_request();

	ulid_init();
}
