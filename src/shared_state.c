/*-------------------------------------------------------------------------
 *
 * shared_state.c
 *	  Allocation of the extension's shared memory, and the small operations
 *	  other processes perform on it.
 *
 * The segment exists only when the library is in shared_preload_libraries:
 * PostgreSQL sizes shared memory once, at postmaster start.  Loaded any
 * other way, inbox_outbox_shared stays NULL; gen_ulid() is then monotonic
 * per backend only and no relay runs.
 *
 * Locking: the ulid generator has its own spinlock (held for a few
 * instructions per call).  The launcher and relay fields are protected by
 * one LWLock; application backends take it in shared mode at commit to find
 * the latch to set, the launcher and the relays take it exclusively when
 * they change a slot.  Setting a latch of a process that has exited is
 * harmless: latches live in PGPROC, which is never freed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "shared_state.h"

InboxOutboxShared *inbox_outbox_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
shared_state_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(MAXALIGN(sizeof(InboxOutboxShared)));
	RequestNamedLWLockTranche("inbox_outbox", 1);
}

static void
shared_state_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	inbox_outbox_shared = ShmemInitStruct("inbox_outbox",
										  sizeof(InboxOutboxShared),
										  &found);
	if (!found)
	{
		memset(inbox_outbox_shared, 0, sizeof(InboxOutboxShared));
		inbox_outbox_shared->lock =
			&(GetNamedLWLockTranche("inbox_outbox"))->lock;
	}
	ulid_generator_shmem_init(&inbox_outbox_shared->ulid, found);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Install the hooks that create the segment.  Called from _PG_init while
 * shared_preload_libraries is being processed.
 */
void
shared_state_request(void)
{
	Assert(process_shared_preload_libraries_in_progress);

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shared_state_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shared_state_shmem_startup;
}

/* The slot assigned to a database, or NULL.  Caller holds the lock. */
RelaySlot *
relay_slot_find(Oid dbid)
{
	for (int i = 0; i < RELAY_MAX_DATABASES; i++)
	{
		if (inbox_outbox_shared->relays[i].dbid == dbid)
			return &inbox_outbox_shared->relays[i];
	}
	return NULL;
}

/* Wake the relay of a database, if one runs. */
void
relay_wake(Oid dbid)
{
	RelaySlot  *slot;
	Latch	   *latch = NULL;

	if (inbox_outbox_shared == NULL)
		return;

	LWLockAcquire(inbox_outbox_shared->lock, LW_SHARED);
	slot = relay_slot_find(dbid);
	if (slot != NULL && slot->pid != 0)
		latch = slot->latch;
	LWLockRelease(inbox_outbox_shared->lock);

	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Wake the launcher; with extension_changed, tell it that the extension was
 * created or updated somewhere, so that databases whose relay found no
 * extension are tried again.
 */
void
launcher_wake(bool extension_changed)
{
	Latch	   *latch;

	if (inbox_outbox_shared == NULL)
		return;

	LWLockAcquire(inbox_outbox_shared->lock, LW_EXCLUSIVE);
	if (extension_changed)
		inbox_outbox_shared->extension_generation++;
	latch = inbox_outbox_shared->launcher_latch;
	LWLockRelease(inbox_outbox_shared->lock);

	if (latch != NULL)
		SetLatch(latch);
}
