/*-------------------------------------------------------------------------
 *
 * standby_wait.c
 *	  Failover-safe mode: with inbox_outbox.standby_slots set, the relay
 *	  sends a round's rows only once every standby named there has flushed
 *	  their commits.
 *
 * With asynchronous replication a commit reaches the standbys a little
 * after the primary has made it visible, and the relay reads it at once.
 * Should the primary fail and a standby be promoted in between, Kafka holds
 * events of transactions that the new primary never had.  In this mode the
 * relay waits, before it produces a round, until the named physical
 * replication slots say that their standbys have flushed the WAL of every
 * commit the round read.
 *
 * Which WAL position.  The relay takes the WAL insert position right after
 * the round's snapshot (standby_mark_round()).  A transaction inserts its
 * commit record before it leaves the proc array (ProcArrayEndTransaction),
 * and a snapshot sees it as committed only once it has left; so every
 * commit the round's snapshot sees ends before that position.  The
 * position is later than needed by whatever else was written meanwhile,
 * which costs a little latency and nothing else.  GetXLogInsertRecPtr()
 * reports a position on a page boundary as just past the page header,
 * where no standby can have flushed before more WAL is written; as no
 * record ends inside a page header, the boundary itself is used.
 *
 * What a slot says.  For a physical slot, the walsender sets restart_lsn
 * to the flush position of each reply its standby sends
 * (ProcessStandbyReplyMessage() calls PhysicalConfirmReceivedLocation()):
 * the end of the WAL the standby has written and fsynced to its own
 * pg_wal.  That WAL survives a crash of the standby, and a promotion
 * replays all of it before the standby accepts writes.  Hot standby
 * feedback (PhysicalReplicationSlotNewXmin()) moves only the slot's xmin.
 * A walsender sends only WAL the primary has flushed, so a standby's flush
 * position is flushed on the primary too: a publisher's commit needs
 * nothing more, even with synchronous_commit off.  Two things set
 * restart_lsn otherwise: creating the slot with immediately_reserve gives
 * the redo pointer, which is older than any commit that follows, and
 * pg_replication_slot_advance() moves it wherever it is told, which
 * defeats this mode.  Slots are read as pg_get_replication_slots() reads
 * them: under ReplicationSlotControlLock, each slot's fields under its
 * spinlock.
 *
 * How the relay waits.  No process tells the relay when a standby
 * reports, so it looks again after 1 ms, then twice as long each time up
 * to 100 ms, on its latch, seeing a stop, a reload and the postmaster's
 * death at once.  A slot that cannot catch up by itself (it does not exist,
 * it is logical or invalidated, or no standby streams from it) blocks the
 * round; the relay says why in relay_status.last_error and the log, and
 * gives the round up after poll_interval, or a second after a wake-up, so
 * that its main loop reads the outbox afresh (which also notices DROP
 * EXTENSION).  A standby that streams is waited for without giving up: a
 * new round would wait for a later position still.  On shutdown the rows
 * simply stay in the outbox.
 *
 * With the parameter empty, the default, the relay reads no slot and no
 * WAL position: standby_slots_enabled() looks at one integer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "replication/slot.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "inbox_outbox.h"
#include "standby_wait.h"

/* The first and the longest sleep between two looks at the slots. */
#define STANDBY_FIRST_STEP_MS	1
#define STANDBY_MAX_STEP_MS		100

/* How long a blocked round waits after a wake-up before it is read again. */
#define STANDBY_WOKEN_WAIT_MS	1000

/* The value of inbox_outbox.standby_slots, parsed by its check hook. */
static StandbySlotList *standby_slots = NULL;

/* What standby_mark_round() found for the round being read. */
static XLogRecPtr round_lsn = InvalidXLogRecPtr;

void
inbox_outbox_assign_standby_slots(const char *newval, void *extra)
{
	standby_slots = (StandbySlotList *) extra;
}

/*
 * Whether the relay must wait for standbys: slots are named, or a value in
 * postgresql.conf was refused at server start, which must not fall back to
 * the default (sending without waiting).
 */
bool
standby_slots_enabled(void)
{
	return (standby_slots != NULL && standby_slots->nslots > 0) ||
		(inbox_outbox_refused_at_start & REFUSED_STANDBY_SLOTS) != 0;
}

/* The WAL insert position, moved back from past a page header. */
static XLogRecPtr
insert_position(void)
{
	XLogRecPtr	lsn = GetXLogInsertRecPtr();

	if (XLogSegmentOffset(lsn, wal_segment_size) == SizeOfXLogLongPHD)
		lsn -= SizeOfXLogLongPHD;
	else if (lsn % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		lsn -= SizeOfXLogShortPHD;
	return lsn;
}

/*
 * How far one named slot is from lsn, and why, if it is not there.  The
 * reasons of a blocked slot do not mention lsn, so that they stay the same
 * from round to round while the problem lasts.  Called with
 * ReplicationSlotControlLock held.
 */
static StandbyVerdict
slot_verdict(const char *name, XLogRecPtr lsn, char *why, size_t whylen)
{
	for (int i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];
		Oid			database;
		XLogRecPtr	flushed;
		bool		invalidated;
		pid_t		active_pid;

		/* in_use and the name change only under the lock we hold */
		if (!s->in_use || strcmp(NameStr(s->data.name), name) != 0)
			continue;

		SpinLockAcquire(&s->mutex);
		database = s->data.database;
		flushed = s->data.restart_lsn;
		/* 16 records why a slot was invalidated instead of where */
#if PG_VERSION_NUM >= 160000
		invalidated = s->data.invalidated != RS_INVAL_NONE;
#else
		invalidated = !XLogRecPtrIsInvalid(s->data.invalidated_at);
#endif
		active_pid = s->active_pid;
		SpinLockRelease(&s->mutex);

		if (OidIsValid(database))
		{
			snprintf(why, whylen,
					 "replication slot \"%s\" named by inbox_outbox.standby_slots is a logical slot, not a standby's",
					 name);
			return STANDBY_BLOCKED;
		}
		if (XLogRecPtrIsInvalid(flushed) && invalidated)
		{
			snprintf(why, whylen,
					 "replication slot \"%s\" named by inbox_outbox.standby_slots was invalidated: its standby needs WAL that was removed",
					 name);
			return STANDBY_BLOCKED;
		}
		if (!XLogRecPtrIsInvalid(flushed) && flushed >= lsn)
			return STANDBY_FLUSHED;
		if (active_pid == 0)
		{
			if (XLogRecPtrIsInvalid(flushed))
				snprintf(why, whylen,
						 "no standby streams from replication slot \"%s\", and none has yet",
						 name);
			else
				snprintf(why, whylen,
						 "no standby streams from replication slot \"%s\", which has flushed up to %X/%X",
						 name, LSN_FORMAT_ARGS(flushed));
			return STANDBY_BLOCKED;
		}
		snprintf(why, whylen,
				 "the standby on replication slot \"%s\" has flushed up to %X/%X; the round needs %X/%X",
				 name, LSN_FORMAT_ARGS(flushed), LSN_FORMAT_ARGS(lsn));
		return STANDBY_LAGGING;
	}

	snprintf(why, whylen,
			 "replication slot \"%s\" named by inbox_outbox.standby_slots does not exist",
			 name);
	return STANDBY_BLOCKED;
}

/*
 * Whether every slot named in inbox_outbox.standby_slots has flushed lsn.
 * If not, why holds the reason of the first slot that is furthest from
 * it: blocked before lagging.
 */
StandbyVerdict
standby_slots_check(XLogRecPtr lsn, char *why, size_t whylen)
{
	StandbyVerdict verdict = STANDBY_FLUSHED;

	why[0] = '\0';
	if (inbox_outbox_refused_at_start & REFUSED_STANDBY_SLOTS)
	{
		snprintf(why, whylen,
				 "the value of inbox_outbox.standby_slots in the configuration file was refused when the server started");
		return STANDBY_BLOCKED;
	}

	if (standby_slots == NULL)
		return STANDBY_FLUSHED;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < standby_slots->nslots && verdict != STANDBY_BLOCKED; i++)
	{
		char		reason[RELAY_ERROR_LEN];
		StandbyVerdict v;

		v = slot_verdict(NameStr(standby_slots->names[i]), lsn,
						 reason, sizeof(reason));
		if (v > verdict)
		{
			verdict = v;
			strlcpy(why, reason, whylen);
		}
	}
	LWLockRelease(ReplicationSlotControlLock);
	return verdict;
}

/*
 * Note the WAL position every commit of the round precedes.  Called in the
 * transaction that reads the round, after its snapshot is taken.
 */
void
standby_mark_round(void)
{
	round_lsn = standby_slots_enabled() ? insert_position() : InvalidXLogRecPtr;
}

static void
set_waiting(RelaySlot *slot)
{
	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	slot->state = RELAY_WAITING_FOR_STANDBY;
	LWLockRelease(inbox_outbox_shared->lock);
}

/* Put why in relay_status.last_error, unless it is there already. */
static void
record_blocked(RelaySlot *slot, const char *why)
{
	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	if (strcmp(slot->last_error, why) != 0)
	{
		strlcpy(slot->last_error, why, RELAY_ERROR_LEN);
		slot->last_error_at = GetCurrentTimestamp();
	}
	LWLockRelease(inbox_outbox_shared->lock);
}

/*
 * Wait until the standbys named in inbox_outbox.standby_slots have flushed
 * the round marked by standby_mark_round().  Returns true when the round
 * may be sent (at once when no slot is named), false when it must not be
 * sent now: the relay is stopping, or a blocked slot made the wait give up
 * so that the outbox is read again.  Either way the rows stay in the
 * outbox.  The relay's state is "waiting for standby" meanwhile.  Called
 * outside any transaction.
 */
bool
standby_wait_round(RelaySlot *slot, const char *database_name)
{
	static char logged[RELAY_ERROR_LEN];	/* the blocker last logged */
	XLogRecPtr	lsn = round_lsn;
	TimestampTz started = 0;
	long		step = STANDBY_FIRST_STEP_MS;
	bool		woken = false;

	round_lsn = InvalidXLogRecPtr;
	if (!standby_slots_enabled())
		return true;
	/* turned on by a reload after the round was read: later is safe */
	if (XLogRecPtrIsInvalid(lsn))
		lsn = insert_position();

	for (;;)
	{
		char		why[RELAY_ERROR_LEN];
		StandbyVerdict verdict = standby_slots_check(lsn, why, sizeof(why));
		long		elapsed;

		if (verdict == STANDBY_FLUSHED)
		{
			if (logged[0] != '\0')
			{
				ereport(LOG,
						errmsg("inbox_outbox relay for database \"%s\" resumes: the standbys named in inbox_outbox.standby_slots have caught up",
							   database_name));
				logged[0] = '\0';
			}
			if (woken)
				SetLatch(MyLatch);	/* a commit's wake-up, for the relay */
			return true;
		}

		if (started == 0)
		{
			started = GetCurrentTimestamp();
			set_waiting(slot);
		}
		if (verdict == STANDBY_BLOCKED)
		{
			record_blocked(slot, why);
			if (strcmp(logged, why) != 0)
			{
				ereport(LOG,
						errmsg("inbox_outbox relay for database \"%s\" waits for a standby: %s",
							   database_name, why),
						errdetail("Events are sent only once every standby named in inbox_outbox.standby_slots has flushed their commits."),
						errhint("Start the standby, or remove its slot from inbox_outbox.standby_slots and reload the configuration."));
				strlcpy(logged, why, sizeof(logged));
			}
		}

		if (WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					  step, PG_WAIT_EXTENSION) & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			woken = true;
		}
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			return false;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (!standby_slots_enabled())
			{
				logged[0] = '\0';
				if (woken)
					SetLatch(MyLatch);
				return true;
			}
		}

		elapsed = TimestampDifferenceMilliseconds(started, GetCurrentTimestamp());
		if (verdict == STANDBY_BLOCKED &&
			(elapsed >= inbox_outbox_poll_interval ||
			 (woken && elapsed >= STANDBY_WOKEN_WAIT_MS)))
			return false;
		step = Min(step * 2, STANDBY_MAX_STEP_MS);
	}
}
