/*-------------------------------------------------------------------------
 *
 * shared_state.c
 *	  Allocation of the extension's shared memory.
 *
 * The segment exists only when the library is in shared_preload_libraries:
 * PostgreSQL sizes shared memory once, at postmaster start.  Loaded any
 * other way, inbox_outbox_shared stays NULL and each subsystem falls back to
 * what it can promise within one backend (gen_ulid() is then monotonic per
 * backend only).
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
