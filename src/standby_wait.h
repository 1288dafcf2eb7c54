/*-------------------------------------------------------------------------
 *
 * standby_wait.h
 *	  Failover-safe mode: the relay sends a round only once the physical
 *	  standbys named in inbox_outbox.standby_slots have flushed its commits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_STANDBY_WAIT_H
#define INBOX_OUTBOX_STANDBY_WAIT_H

#include "access/xlogdefs.h"

#include "shared_state.h"

/*
 * The parsed value of inbox_outbox.standby_slots, made by its check hook
 * (guc_check.c) with malloc (guc_malloc from 16), as PostgreSQL frees it,
 * and installed by its assign hook.
 */
typedef struct StandbySlotList
{
	int			nslots;
	NameData	names[FLEXIBLE_ARRAY_MEMBER];
} StandbySlotList;

/* How far the named slots are from one WAL position; worst last. */
typedef enum StandbyVerdict
{
	STANDBY_FLUSHED,			/* every slot has flushed the position */
	STANDBY_LAGGING,			/* a standby streams but is not there yet */
	STANDBY_BLOCKED				/* a slot cannot get there by itself */
} StandbyVerdict;

extern void inbox_outbox_assign_standby_slots(const char *newval, void *extra);
extern bool standby_slots_enabled(void);
extern StandbyVerdict standby_slots_check(XLogRecPtr lsn, char *why, size_t whylen);
extern void standby_mark_round(void);
extern bool standby_wait_round(RelaySlot *slot, const char *database_name);

#endif							/* INBOX_OUTBOX_STANDBY_WAIT_H */
