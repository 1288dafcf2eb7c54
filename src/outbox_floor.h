/*-------------------------------------------------------------------------
 *
 * outbox_floor.h
 *	  The lowest id the relay's next read must start from (outbox_floor.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_OUTBOX_FLOOR_H
#define INBOX_OUTBOX_OUTBOX_FLOOR_H

#include "ulid.h"

/* the row trigger on inbox_outbox.outbox that records the bounds */
#define OUTBOX_FLOOR_TRIGGER	"zz_outbox_floor"

extern void outbox_floor_request(void);

/* the relay's side */
extern void outbox_floor_attach(void);
extern void outbox_floor_hold_for_prepared(void);
extern bool outbox_floor_prepared_held(uint64 *prepares);
extern void outbox_floor_prepared_settled(uint64 prepares);
extern void outbox_floor_snapshot(pg_ulid *floor);

#endif							/* INBOX_OUTBOX_OUTBOX_FLOOR_H */
