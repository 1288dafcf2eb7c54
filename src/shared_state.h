/*-------------------------------------------------------------------------
 *
 * shared_state.h
 *	  The extension's shared memory segment.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_SHARED_STATE_H
#define INBOX_OUTBOX_SHARED_STATE_H

#include "ulid.h"

typedef struct InboxOutboxShared
{
	UlidGeneratorState ulid;
} InboxOutboxShared;

/* NULL unless the library was loaded through shared_preload_libraries. */
extern InboxOutboxShared *inbox_outbox_shared;

extern void shared_state_request(void);

#endif							/* INBOX_OUTBOX_SHARED_STATE_H */
