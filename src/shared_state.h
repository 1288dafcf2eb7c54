/*-------------------------------------------------------------------------
 *
 * shared_state.h
 *	  The extension's shared memory: the ulid generator's last value, one
 *	  slot per database whose relay is running or was started, and one per
 *	  ingestion worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_SHARED_STATE_H
#define INBOX_OUTBOX_SHARED_STATE_H

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#include "ulid.h"

/* Databases with the extension that can have a relay at the same time. */
#define RELAY_MAX_DATABASES		64
#define RELAY_ERROR_LEN			256

typedef enum RelayState
{
	RELAY_STARTING = 0,
	RELAY_IDLE,
	RELAY_PUBLISHING,
	RELAY_BACKING_OFF,
	RELAY_BROKER_UNREACHABLE,
	RELAY_WAITING_FOR_STANDBY,	/* see standby_wait.c */
	RELAY_STOPPED,
	RELAY_NO_WORKER,			/* the launcher found no free worker */
	RELAY_PAUSED_COPY,			/* a copy of another database's outbox */
	RELAY_RECOVERING,			/* exactly-once: settling the last transaction */
	RELAY_FENCED				/* exactly-once: another relay took its id */
} RelayState;

/* Why a database with the extension has no relay. */
typedef enum RelayStarvation
{
	RELAY_STARVED_NO_SLOT = 1,
	RELAY_STARVED_NO_WORKER
} RelayStarvation;

typedef struct StarvedDatabase
{
	Oid			dbid;
	RelayStarvation why;
} StarvedDatabase;

/*
 * A relay's slot.  The launcher assigns it (dbid), the relay fills in the
 * rest.  Counters are since the slot was assigned (server start) or since
 * the extension was created, whichever is later: a relay that finds
 * another extension_oid than the slot's starts them over.
 */
typedef struct RelaySlot
{
	Oid			dbid;			/* InvalidOid: free */
	pid_t		pid;			/* 0 when no relay runs */
	Latch	   *latch;			/* the relay's latch, set at commit */
	RelayState	state;
	bool		exactly_once;	/* the delivery mode in effect */
	bool		no_extension;	/* relay found no extension and stopped */
	uint32		seen_generation;	/* extension generation when it stopped */
	Oid			extension_oid;	/* the extension the counters belong to */
	uint64		published;
	uint64		failed;
	uint64		dead_lettered;
	TimestampTz last_error_at;
	char		last_error[RELAY_ERROR_LEN];
} RelaySlot;

/*
 * A database that DROP DATABASE, ALTER DATABASE ... RENAME TO or SET
 * TABLESPACE, or CREATE DATABASE ... TEMPLATE is about to work on
 * (database_ops.c): while the hold lasts no relay starts there, and a relay
 * told to stop there leaves without waiting for acknowledgements.
 */
#define DATABASE_MAX_HOLDS		64

typedef struct DatabaseHold
{
	Oid			dbid;			/* InvalidOid: free */
	pid_t		holder;			/* the backend running the command */
} DatabaseHold;

/* Inbox consumers whose absorbed duplicates are counted. */
#define INBOX_MAX_CONSUMERS		256
#define INBOX_CONSUMERS_PER_DB	32	/* named; the rest share one entry */
#define INBOX_CONSUMER_MAXLEN	63

typedef struct InboxConsumerStats
{
	Oid			dbid;
	bool		others;			/* counts the consumers past the named ones */
	char		consumer[INBOX_CONSUMER_MAXLEN + 1];
	pg_atomic_uint64 duplicates;
} InboxConsumerStats;

/*
 * Ingestion workers (ingest_admin.c starts and stops them at commit, the
 * launcher runs them, ingest.c is the worker).  A slot is one worker of one
 * subscription: a subscription with workers => n has n slots, numbered
 * 0 .. n - 1, and worker w consumes the partitions p with p % n = w.
 */
#define INGEST_MAX_WORKERS		32
#define INGEST_NAME_MAXLEN		56
/* a subscription claims in the inbox as "ingest:<name>" (63 bytes at most) */
#define INGEST_CONSUMER_PREFIX	"ingest:"

typedef enum IngestState
{
	INGEST_STARTING = 0,
	INGEST_IDLE,
	INGEST_CONSUMING,
	INGEST_RETRYING,			/* a batch or a message waits for a retry */
	INGEST_BROKER_UNREACHABLE,
	INGEST_PAUSED_COPY,			/* a copy of another database */
	INGEST_STOPPED_ERROR,		/* the handler is missing or not permitted */
	INGEST_STOPPED_GAP,			/* a retention gap, on_gap = 'stop' */
	INGEST_NO_WORKER			/* the launcher found no free worker */
} IngestState;

typedef struct IngestSlot
{
	Oid			dbid;			/* InvalidOid: free */
	char		subscription[INGEST_NAME_MAXLEN + 1];
	int			worker;
	bool		wanted;			/* false: the worker leaves, the slot is freed */
	uint32		generation;		/* bumped by every change of the subscription */
	bool		stopped;		/* stopped for good at stopped_generation */
	uint32		stopped_generation;
	pid_t		pid;			/* 0 when no worker runs */
	Latch	   *latch;
	IngestState state;
	uint64		consumed;
	uint64		duplicates;
	uint64		dead_lettered;
	TimestampTz last_commit_at;
	TimestampTz last_error_at;
	char		last_error[RELAY_ERROR_LEN];
} IngestSlot;

typedef struct InboxOutboxShared
{
	UlidGeneratorState ulid;

	LWLock	   *lock;			/* protects everything below */
	Latch	   *launcher_latch;
	pid_t		launcher_pid;
	uint32		extension_generation;	/* bumped at CREATE/ALTER EXTENSION */
	RelaySlot	relays[RELAY_MAX_DATABASES];
	int			nstarved;		/* databases the last launcher pass left out */
	StarvedDatabase starved[RELAY_MAX_DATABASES];
	DatabaseHold holds[DATABASE_MAX_HOLDS];

	IngestSlot	ingest[INGEST_MAX_WORKERS];

	int			nconsumers;		/* used entries of consumers[] */
	InboxConsumerStats consumers[INBOX_MAX_CONSUMERS];
} InboxOutboxShared;

/* NULL unless the library was loaded through shared_preload_libraries. */
extern InboxOutboxShared *inbox_outbox_shared;

extern void shared_state_request(void);
extern RelaySlot *relay_slot_find(Oid dbid);
extern void relay_wake(Oid dbid);
extern void launcher_wake(bool extension_changed);

#endif							/* INBOX_OUTBOX_SHARED_STATE_H */
