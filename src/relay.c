/*-------------------------------------------------------------------------
 *
 * relay.c
 *	  The relay worker: publishes committed outbox rows of one database to
 *	  Kafka and deletes each row only once Kafka has acknowledged it.
 *
 * The launcher starts one relay per database in which the extension exists.
 * A relay works in rounds:
 *
 *	1. In a short transaction, read the oldest rows still in the table
 *	   (relay_store.c, like everything else the relay does in the database)
 *	   ORDER BY id, at most inbox_outbox.batch_size.  Only committed rows
 *	   are visible.  The relay never keeps a high-water mark: an id is
 *	   assigned before commit, so a transaction that commits late would hide
 *	   behind it.  Rows waiting for a retry are skipped, and so is every
 *	   later row with the same topic and key, which the query excludes with
 *	   an anti-join on a partial index of failed rows.
 *	2. With no transaction open and no lock held, produce the rows.  The
 *	   relay does not wait for their delivery reports before it reads and
 *	   produces the next round: rounds overlap, so that reading and deleting
 *	   overlap producing, and a slow partition holds back only its own
 *	   events.  Rows in flight are left out of later reads by their ids (see
 *	   relay_round() for what keeps each key's order, and when a round is
 *	   waited for after all).  At most RELAY_PIPELINE_BATCHES rounds, twice
 *	   inbox_outbox.batch_size messages and RELAY_PIPELINE_BYTES of rows
 *	   are in flight.  Messages never time out (see kafka.c), so during a
 *	   broker outage the rounds simply wait, in state "broker unreachable".
 *	   The relay sleeps on the latch and on librdkafka's event pipe.
 *	3. Once every message of a round has its delivery report, in a short
 *	   transaction, delete the acknowledged rows and record failures: a row
 *	   that failed gets attempts + 1, its error, and a retry time with
 *	   exponential backoff; after inbox_outbox.max_attempts, or at once for a
 *	   message librdkafka refuses to queue (too large, say), it moves to
 *	   inbox_outbox.outbox_dead_letter and the rows of its key flow on.
 *
 * The outbox is read again when a commit wakes the relay (its rows are
 * visible by then), when a read stopped short of the rows waiting, at every
 * poll_interval, and after a round that left rows or failures behind; not
 * merely because a round ended, which at low rates would double the reads.
 * Exactly-once mode's rounds do not overlap: each is a Kafka transaction
 * (see relay_produce_txn()).
 *
 * A message that fails for good makes the producer fail fatally (gapless
 * delivery), which also fails every other message of the round with purge
 * errors; those count as no attempt and are simply sent again.  The relay
 * then recreates the producer.  A broker refuses a whole produce request at
 * once, so messages batched with a bad one get its error too: every row
 * that failed is therefore retried alone, in a round of its own (retry
 * rounds alternate with ordinary ones), and only a failure of its own can
 * send it to the dead-letter table.  A crash between acknowledgement and
 * delete sends the acknowledged rows again; consumers deduplicate by the
 * event_id header.
 *
 * States shown in inbox_outbox.relay_status: idle (nothing to send),
 * publishing (a round is under way), backing off (only rows waiting for a
 * retry are left), broker unreachable (a round is waiting and librdkafka
 * reports all brokers down), waiting for standby (the round waits until the
 * standbys named in inbox_outbox.standby_slots have flushed its commits;
 * see standby_wait.c).
 *
 * Only one relay may run per database, so two relays can never reorder a
 * key: a relay claims its database's slot in shared memory by writing its
 * pid there under the extension's lock, and leaves if another pid is there.
 * No SQL can take or hold the slot.
 *
 * Trust: the relay's statements resolve no name through a schema that a
 * database role can write.  Its search_path is "pg_catalog, pg_temp",
 * every operator is qualified, and every constant and parameter has the
 * exact type its operator takes, so that no implicit cast can make an
 * operator planted elsewhere a better match (see relay_store.c).  With
 * inbox_outbox.relay_role set, every statement runs with that role's
 * privileges (see relay_become_role()).
 *
 * This file (the process: its loop, producing and waiting), relay_store.c
 * (the database side of a round) and kafka.c (librdkafka) form
 * inbox_outbox_relay.so, the only library linked with librdkafka;
 * application backends never load it.  It reaches inbox_outbox.so only
 * through relay_api (relay_api.h), which it takes when it starts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "inbox_outbox.h"
#include "kafka.h"
#include "pg_compat.h"
#include "progress_record.h"
#include "relay_api.h"
#include "relay_faults.h"
#include "relay_progress.h"
#include "relay_store.h"
#include "shared_state.h"

PG_MODULE_MAGIC;

PGDLLEXPORT void inbox_outbox_relay_main(Datum main_arg);

static bool producer_settings_changed(void);
static bool producer_settings_accepted(void);
static bool relay_mode_changed(void);
static bool relay_producer_failed(void);
static void relay_note_kafka(void);
pg_noreturn static void relay_wait_until_resolved(RelayState state,
												  const char *reason,
												  const char *hint,
												  bool (*resolved) (void));
pg_noreturn static void relay_wait_for_change(RelayState state,
											  const char *reason,
											  bool (*resolved) (void));

/*
 * The rows of one round and the outcomes of their messages.  In
 * at-least-once mode a round whose rows were all queued stays in flight
 * while the next rounds are read and produced, and is recorded once each of
 * its messages has a delivery report (see relay_round()).
 */
typedef struct RelayBatch
{
	struct RelayBatch *next;	/* in relay.batches, oldest first */
	MemoryContext cxt;			/* holds the batch; deleted with it */
	RelayRow   *rows;
	int			n;
	bool		isolated;		/* a failed row, retried alone */
	RelayRead	read;			/* how the rows were read */
	KafkaRound	round;			/* their messages' outcomes */
	bool	   *queued;			/* which rows librdkafka took */
	int64		bytes;			/* their key, value and header bytes */
	bool		in_flight;		/* its queued ids are in relay.in_flight */
} RelayBatch;

/*
 * The relay process's state.  The relay's side of the database keeps its
 * own (relay_store.c).
 */
typedef struct Relay
{
	RelaySlot  *slot;			/* our database's slot in shared memory */
	char	   *database_name;
	char	   *client_id;		/* inbox_outbox-<database>, for every handle */
	char	   *role_name;		/* inbox_outbox.relay_role taken; NULL: none */
	char	   *wanted_role;	/* a relay_role that did not exist */

	KafkaProducer *producer;	/* NULL until made, and after a failure */
	WaitEventSet *gather_set;	/* postmaster alone (relay_wait()) */
	WaitEventSet *wait_set;		/* latch, postmaster, producer's pipe; NULL
								 * until the first wait of each producer */
	bool		producer_failed;	/* its fatal error was reported */

	/*
	 * Whether the outbox is to be read: rows may be waiting that no read
	 * has seen.  Set by a read that stopped short, by a poll, and whenever
	 * a round left rows or failures behind; a wake-up (a commit sets the
	 * latch once its rows are visible) sets woken instead, see
	 * relay_read_now().  Cleared as a read begins.
	 */
	bool		read_due;
	bool		woken;			/* a wake-up came since the last read */
	bool		recorded;		/* a round was recorded since the last read */
	uint64		failures_recorded;	/* rounds recorded with failures */
	int64		next_retry_ms;	/* as the last read found it */
	TimestampTz last_read;		/* when the last read began */
	bool		read_blocked;	/* it stopped short on rows in flight */
	bool		held_back;		/* a round held rows back behind the first
								 * message of their partition... */
	uint64		held_answers;	/* ...when this many had their answer */
	char	   *producer_brokers;	/* the settings it was made with */
	char	   *producer_config;
	struct stat refused_file_stamp; /* kafka_config's file when refused */

	MemoryContext round_context;	/* a round's scratch; reset every round */

	/* rounds in flight (at-least-once mode; see relay_round()) */
	RelayBatch *batches;		/* oldest first */
	int			nbatches;
	int64		batch_bytes;	/* their rows' bytes */
	HTAB	   *in_flight;		/* the ids of their rows */
	uint32		generation;		/* the extension's, at the last read */

	InboxPrunePass prune;		/* the retention pass under way */

	/* where the next read starts (see outbox_floor.c) */
	bool		from_start;		/* at the low end of the outbox */
	pg_ulid		floor;			/* otherwise at this id */
	TimestampTz last_full_read; /* when a read last started at the low end */

	Oid			outbox_relid;	/* for relay_outbox_changed() */
	bool		outbox_changed; /* its definition changed: look at the trigger */
	TransactionId floor_trigger;	/* its version, when last looked at */

	/* DROP EXTENSION during a round (see relay_extension_dropped()) */
	TimestampTz last_extension_check;
	bool		extension_check_pending;
	bool		extension_dropped;

	/* exactly-once mode (relay_txn.c's part of the story is below) */
	bool		exactly_once;	/* the producer is transactional */
	bool		wants_exactly_once; /* the mode the producer was made for */
	char	   *transactional_id;	/* inbox_outbox-<system id>-<database> */
	char	   *progress_topic; /* where that producer's records go */
	char	   *ensured_topic;	/* the topic relay_progress_topic_ensure() saw */
	int			record_max_ids; /* the most rows a transaction holds */
	bool		progress_settled;	/* no transaction of ours can be open */
	uint64		writer;			/* drawn at start, in every record */
	uint64		txn_round;		/* transactions begun by this process */
	TimestampTz txn_began;		/* when the open transaction began */
	TimestampTz last_commit;	/* when the last commit returned */
	int64		last_record;	/* offset of our last committed record, or -1 */
	bool		check_takeover; /* see relay_taken_over() */
	MemoryContext work_context; /* recovery's memory; reset each time */
} Relay;

static Relay relay;

/* What inbox_outbox.so lends the relay (relay_api.h). */
const InboxOutboxRelayApi *relay_api = NULL;

/* inbox_outbox.so's shared memory, from relay_api */
static InboxOutboxShared *shared = NULL;

/*
 * A read starts at the low end of the outbox whatever the bounds after every
 * change to the floor trigger (ALTER TABLE ... DISABLE TRIGGER among them: a
 * row written meanwhile has no bound), at every read while it does not
 * fire, and every this many poll intervals.
 */
#define RELAY_FULL_READ_POLLS	120

/*
 * The shortest wait for a retry that is due: a due row held back behind an
 * earlier failed row of its key still counts as due, and reading for it
 * without pause would spin until that row's retry.
 */
#define RELAY_RETRY_MIN_WAIT_MS	10

/*
 * At-least-once mode: the most batches, and bytes of rows' values, in
 * flight at once (see relay_pipeline_full()); a round reads no more than
 * the bytes left, nor, in exactly-once mode, more than all of them.  A
 * batch costs its memory context and its rows; at low rates a batch often
 * holds one row, and one slow partition keeps every batch with a row for
 * it in flight, so the count allows thousands.  librdkafka sends the
 * rows' values from the batches, without a copy of its own, so the bytes
 * bound the relay's memory for rows.
 */
#define RELAY_PIPELINE_BATCHES	4096
#define RELAY_PIPELINE_BYTES	(24 * 1024 * 1024)

/*
 * Exactly-once mode: a transaction begins no sooner than this after the
 * previous commit returned, since the coordinator is still completing that
 * one for a few milliseconds and would answer the next AddPartitionsToTxn
 * with CONCURRENT_TRANSACTIONS, which librdkafka retries only after 20 ms
 * (docs/exactly_once.md, section 12).
 */
#ifndef RELAY_TXN_PAUSE_MS
#define RELAY_TXN_PAUSE_MS		3
#endif

/* How long one attempt at the progress topic may take. */
#define RELAY_PROGRESS_TIMEOUT_MS	10000

/* How a round's sending ended. */
typedef enum RoundEnd
{
	ROUND_SENT,					/* delivered (committed): delete what was */
	ROUND_NOT_SENT,				/* aborted: nothing of it is visible */
	ROUND_LOST					/* the producer failed, or the outcome of
								 * the transaction is unknown: new producer
								 * (and recovery) */
} RoundEnd;

static void
relay_set_state(RelayState state)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	relay.slot->state = state;
	LWLockRelease(shared->lock);
}

static void
relay_record_error(const char *error)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	strlcpy(relay.slot->last_error, error, RELAY_ERROR_LEN);
	relay.slot->last_error_at = GetCurrentTimestamp();
	LWLockRelease(shared->lock);
}

/* A round went through: the last error no longer holds (its time stays). */
static void
relay_clear_error(void)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	relay.slot->last_error[0] = '\0';
	LWLockRelease(shared->lock);
}

static void
relay_count(uint64 published, uint64 failed, uint64 dead_lettered)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	relay.slot->published += published;
	relay.slot->failed += failed;
	relay.slot->dead_lettered += dead_lettered;
	LWLockRelease(shared->lock);
}

static void
relay_shmem_exit(int code, Datum arg)
{
	if (relay.slot == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	/* the launcher may have given the slot to another database meanwhile */
	if (relay.slot->pid == MyProcPid && relay.slot->dbid == MyDatabaseId)
	{
		relay.slot->pid = 0;
		relay.slot->latch = NULL;
		relay.slot->state = RELAY_STOPPED;
	}
	LWLockRelease(shared->lock);
}

/*
 * Is the extension (still) installed in this database, at a version with
 * an outbox?  If not, record why the relay stops and exit; the launcher
 * starts a relay again after the next CREATE or ALTER EXTENSION.  Runs
 * inside a transaction.
 */
static void
exit_unless_extension(uint32 generation)
{
	Oid			schema = get_namespace_oid("inbox_outbox", true);
	Oid			outbox = OidIsValid(schema) ?
		get_relname_relid("outbox", schema) : InvalidOid;

	/*
	 * A DROP EXTENSION that commits while the relay reads holds the outbox
	 * until then: wait for it here, where the catalog is looked at once it
	 * is over, rather than in the read, which would fail on a table that is
	 * gone.  Taking the lock accepts the invalidations of a drop that has
	 * committed, so the caches are current; without an outbox there is no
	 * extension (or it is being dropped) and nothing to read.  Every round
	 * comes here: no catalog scan of its own.
	 */
	if (OidIsValid(outbox))
	{
		LockRelationOid(outbox, AccessShareLock);
		if (OidIsValid(get_extension_oid("inbox_outbox", true)))
			return;
	}

	relay_end_work();

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	relay.slot->no_extension = true;
	relay.slot->seen_generation = generation;
	LWLockRelease(shared->lock);

	ereport(DEBUG1,
			errmsg("inbox_outbox relay for database %u stops: the extension is not installed",
				   MyDatabaseId));
	proc_exit(0);
}

static void
relay_process_reload(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

static bool
producer_config_changed(void)
{
	return relay.producer != NULL && producer_settings_changed();
}

/*
 * Whether the extension was dropped.  DROP EXTENSION wakes the relay (an
 * event trigger sets its latch), and a round waiting on brokers that do not
 * answer would otherwise go on for good with its rows gone, keeping the
 * database busy.  Every wake-up (woken) asks for a look, and a look is
 * taken at most once a second: a wake-up within the second after a look is
 * looked into when the second is over.  Called outside any transaction.
 */
static bool
relay_extension_dropped(bool woken)
{
	TimestampTz now = GetCurrentTimestamp();

	if (woken)
		relay.extension_check_pending = true;
	if (relay.extension_dropped || !relay.extension_check_pending ||
		!TimestampDifferenceExceeds(relay.last_extension_check, now, 1000))
		return relay.extension_dropped;
	relay.extension_check_pending = false;
	relay.last_extension_check = now;
	StartTransactionCommand();
	relay.extension_dropped = !relay_store_extension_exists();
	CommitTransactionCommand();
	return relay.extension_dropped;
}

/*
 * Wait up to timeout ms for the latch, the postmaster's death (which ends
 * the process) or an event of the producer, whose pipe is in a wait set
 * kept from one wait to the next: made anew for each wait, as
 * WaitLatchOrSocket() does, it cost an epoll instance per wait, several per
 * event at low rates.  Returns the WL_* flags of what happened.
 *
 * Without latch, the wait is on a second set that holds the postmaster's
 * death alone: a commit that sets the latch meanwhile then costs neither a
 * signal nor a wake-up (SetLatch() signals only a process that sleeps on
 * the latch), nor does a delivery report, and the wait lasts the whole
 * timeout.  For the relay's short gathering waits only (relay_read_now()):
 * a shutdown or reload request, a commit and the producer's news are all
 * seen when it ends.
 */
static WaitEventSet *
relay_wait_set_new(int nevents)
{
#if PG_VERSION_NUM >= 170000
	return CreateWaitEventSet(NULL, nevents);
#else
	return CreateWaitEventSet(TopMemoryContext, nevents);
#endif
}

static int
relay_wait(long timeout, bool latch)
{
	WaitEvent	events[3];
	int			n;
	int			rc = 0;

	if (!latch)
	{
		if (relay.gather_set == NULL)
		{
			relay.gather_set = relay_wait_set_new(1);
			AddWaitEventToSet(relay.gather_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET,
							  NULL, NULL);
		}
		n = WaitEventSetWait(relay.gather_set, timeout, events, lengthof(events),
							 PG_WAIT_EXTENSION);
		return n == 0 ? WL_TIMEOUT : 0;
	}

	if (relay.wait_set == NULL)
	{
		relay.wait_set = relay_wait_set_new(3);
		AddWaitEventToSet(relay.wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(relay.wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		AddWaitEventToSet(relay.wait_set, WL_SOCKET_READABLE,
						  kafka_wait_fd(relay.producer), NULL, NULL);
	}
	n = WaitEventSetWait(relay.wait_set, timeout, events, lengthof(events),
						 PG_WAIT_EXTENSION);
	for (int i = 0; i < n; i++)
		rc |= events[i].events;
	if (n == 0)
		rc |= WL_TIMEOUT;
	if (rc & WL_LATCH_SET)
	{
		ResetLatch(MyLatch);
		relay.woken = true;
	}
	return rc;
}

/*
 * One step of a round's wait: sleep until the latch, librdkafka's event
 * pipe or 100 ms, then serve delivery reports and look at what happened.
 * Returns false when the round must end now: the producer failed fatally
 * (*fatal is set), the Kafka settings changed while no broker answers (the
 * round cannot end otherwise; its rows stay and the next round uses the new
 * settings), the extension was dropped, or a shutdown was asked for and
 * *shutdown_deadline, set at the first step that sees the request, has
 * passed.
 */
static bool
relay_wait_step(TimestampTz *shutdown_deadline, bool *fatal)
{
	int			rc;

	rc = relay_wait(100, true);
	CHECK_FOR_INTERRUPTS();
	kafka_serve(relay.producer);

	/* the round's rows went with the extension: nothing to wait for */
	if (relay_extension_dropped((rc & WL_LATCH_SET) != 0))
		return false;

	if (relay_producer_failed())
	{
		*fatal = true;
		return false;
	}

	relay_process_reload();
	if (producer_config_changed() && kafka_brokers_down(relay.producer))
	{
		ereport(LOG,
				errmsg("inbox_outbox relay: Kafka configuration changed while no broker answers, abandoning the round"));
		return false;
	}

	if (ShutdownRequestPending)
	{
		/* a DROP, RENAME, ... of the database waits: no grace period */
		if (relay_api->relay_must_leave_now())
			return false;
		if (*shutdown_deadline == 0)
			*shutdown_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															 *relay_api->shutdown_timeout);
		else if (GetCurrentTimestamp() >= *shutdown_deadline)
			return false;
	}

	relay_note_kafka();
	return true;
}

/*
 * While rounds are in flight: keep librdkafka's latest error in
 * relay_status, and show whether a broker answers.
 */
static void
relay_note_kafka(void)
{
	char		errbuf[RELAY_ERROR_LEN];

	if (kafka_take_error(relay.producer, errbuf, sizeof(errbuf)))
		relay_record_error(errbuf);
	relay_set_state(kafka_brokers_down(relay.producer) ?
					RELAY_BROKER_UNREACHABLE : RELAY_PUBLISHING);
}

/*
 * Whether the producer failed fatally; if so, say so in the log and in
 * relay_status.
 */
static bool
relay_producer_failed(void)
{
	char		errbuf[RELAY_ERROR_LEN];

	if (!kafka_fatal_error(relay.producer, errbuf, sizeof(errbuf)))
		return false;
	if (relay.producer_failed)
		return true;			/* said already */
	relay.producer_failed = true;
	ereport(LOG,
			errmsg("inbox_outbox relay: Kafka producer failed: %s", errbuf),
			errdetail("The producer is recreated; unacknowledged rows are sent again."));
	relay_record_error(errbuf);
	return true;
}

/*
 * A batch to read a round into, with a memory context of its own: a
 * generation context, which holds each value in the bytes it takes (an
 * allocation set would round a 4 kB payload up to 8 kB) and is freed whole.
 */
static RelayBatch *
relay_batch_new(void)
{
	MemoryContext cxt = GenerationContextCreate(TopMemoryContext, "inbox_outbox relay batch",
												ALLOCSET_START_SMALL_SIZES);
	RelayBatch *batch = MemoryContextAllocZero(cxt, sizeof(RelayBatch));

	batch->cxt = cxt;
	return batch;
}

/*
 * Free a batch, and forget its ids.  Its messages must all have their
 * delivery reports, or the producer must be gone: a report writes into the
 * batch.
 */
static void
relay_batch_free(RelayBatch *batch)
{
	Assert(batch->round.outstanding == 0 || relay.producer == NULL);
	if (batch->in_flight)
	{
		for (int i = 0; i < batch->n; i++)
		{
			if (batch->queued[i])
				(void) hash_search(relay.in_flight, &batch->rows[i].id, HASH_REMOVE, NULL);
		}
		relay.batch_bytes -= batch->bytes;
		relay.nbatches--;
	}
	MemoryContextDelete(batch->cxt);
}

/*
 * Put a produced batch at the end of the list of batches in flight, the
 * ids of its queued rows into relay.in_flight: a row held back is read
 * again, and may be in flight in a later batch before this one is freed.
 */
static void
relay_batch_enqueue(RelayBatch *batch)
{
	RelayBatch **link = &relay.batches;

	if (relay.in_flight == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(pg_ulid);
		ctl.entrysize = sizeof(pg_ulid);
		ctl.hcxt = TopMemoryContext;
		relay.in_flight = hash_create("inbox_outbox relay ids in flight", 1024, &ctl,
									  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	for (int i = 0; i < batch->n; i++)
	{
		if (!batch->queued[i])
			continue;
		(void) hash_search(relay.in_flight, &batch->rows[i].id, HASH_ENTER, NULL);
		batch->bytes += relay_row_size(&batch->rows[i]);
	}
	batch->in_flight = true;
	relay.batch_bytes += batch->bytes;
	relay.nbatches++;
	while (*link != NULL)
		link = &(*link)->next;
	*link = batch;
}

/*
 * Whether the row with this id is in flight already: a read can meet such
 * rows again (it starts at the lowest id an open transaction may still
 * commit, or at the low end of the outbox), and they must not be sent a
 * second time, nor overtaken by themselves.  relay_store_fetch() leaves
 * them out, by id, never by a range.
 */
static bool
relay_in_flight(const pg_ulid *id)
{
	return relay.nbatches > 0 &&
		hash_search(relay.in_flight, id, HASH_FIND, NULL) != NULL;
}

/*
 * Whether another round may go out before those in flight are recorded:
 * at most RELAY_PIPELINE_BATCHES batches, twice inbox_outbox.batch_size
 * messages without a report, and RELAY_PIPELINE_BYTES of rows.
 */
static bool
relay_pipeline_full(void)
{
	return relay.nbatches >= RELAY_PIPELINE_BATCHES ||
		relay.batch_bytes >= RELAY_PIPELINE_BYTES ||
		(relay.producer != NULL &&
		 kafka_outstanding(relay.producer) >= 2 * *relay_api->batch_size);
}

/* Start producing a batch: its results, the state, the activity. */
static void
relay_begin_produce(RelayBatch *batch)
{
	kafka_round_init(&batch->round,
					 MemoryContextAlloc(batch->cxt, sizeof(KafkaResult) * Max(batch->n, 1)),
					 batch->n);
	kafka_tick(relay.producer);
	relay_set_state(RELAY_PUBLISHING);
	pgstat_report_activity(STATE_RUNNING, "inbox_outbox relay: producing to Kafka");
}

/* A key a round holds back, and why (relay_produce_rows()). */
typedef struct RelayHeldKey
{
	uint64		hash;			/* relay_key_hash() */
	bool		failed;			/* behind a row that failed at once, rather
								 * than behind its partition's first message */
} RelayHeldKey;

/*
 * A row's topic and key as a 64-bit hash, for the keys a round holds back
 * (relay_produce_rows()).  Two keys of one hash are both held back, which
 * costs the second a round and breaks no order: every later row of either
 * is held as well.
 */
static uint64
relay_key_hash(const RelayRow *row)
{
	uint64		h = hash_bytes_extended((const unsigned char *) row->topic,
										strlen(row->topic), 0);

	if (row->key == NULL)
		return hash_combine64(h, 1);
	return hash_combine64(h, hash_bytes_extended((const unsigned char *) row->key,
												 row->key_len, 2));
}

/* Hold back the later rows of row's key in this call of relay_produce_rows(). */
static void
relay_hold_key(HTAB **held, const RelayRow *row, bool failed)
{
	uint64		key = relay_key_hash(row);
	RelayHeldKey *entry;

	if (*held == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(RelayHeldKey);
		ctl.hcxt = relay.round_context;
		*held = hash_create("inbox_outbox relay keys held back", 256, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(*held, &key, HASH_ENTER, NULL);
	entry->failed = failed;
}

/*
 * Produce the batch's rows in order, in either mode.  When librdkafka's
 * queue is full, the relay waits for room the same way it waits for
 * acknowledgements, so that a stop, a reload or the death of the postmaster
 * is seen at once; once a stop is asked for, no further row is produced.
 * A row that producev() refuses at once for a reason that is not final, or
 * that kafka_produce() holds back while the first message of its partition
 * is in flight (KAFKA_HELD; kafka_topic.c), holds back the later rows of
 * its key for this round, so that none overtakes it: the rows behind a
 * KAFKA_HELD row are KAFKA_HELD too.  A row too large for the producer
 * goes to the dead-letter table and its key goes on (the documented gap).
 * A transaction that failed meanwhile ends the producing.  Rows not produced have no delivery
 * report and stay in the outbox for a later round.  queued[i] says which
 * rows librdkafka took.  With held_only, only the rows that an earlier call
 * held back (KAFKA_HELD) are tried again, in the same order, and each waits
 * behind any earlier row of its key that is not delivered yet (in flight,
 * failed, or left behind one that failed).  Returns false when the round must end now (see
 * relay_wait_step()).
 */
static bool
relay_produce_rows(RelayBatch *batch, bool *queued, bool held_only,
				   TimestampTz *shutdown_deadline, bool *fatal)
{
	RelayRow   *rows = batch->rows;
	KafkaResult *results = batch->round.results;
	int			n = batch->n;
	HTAB	   *held = NULL;	/* RelayHeldKey by relay_key_hash() */
	bool		going_on = true;

	for (int i = 0; i < n && going_on && !kafka_txn_failed(relay.producer); i++)
	{
		RelayRow   *row = &rows[i];

		if (held_only && results[i].outcome != KAFKA_HELD)
		{
			/* an earlier row of its key that is not delivered holds it back */
			if (row->unsendable == NULL && !row->oversize &&
				results[i].outcome != KAFKA_DELIVERED &&
				results[i].outcome != KAFKA_REJECTED)
				relay_hold_key(&held, row, !queued[i] || results[i].outcome != KAFKA_PENDING);
			continue;
		}
		if (held_only)
			results[i].outcome = KAFKA_PENDING;
		if (row->unsendable != NULL || row->oversize)
			continue;
		if (relay_row_size(row) > *relay_api->max_message_bytes)
		{
			row->oversize = true;
			continue;
		}
		if (held != NULL)
		{
			uint64		key = relay_key_hash(row);
			RelayHeldKey *entry = hash_search(held, &key, HASH_FIND, NULL);

			if (entry != NULL)
			{
				if (!entry->failed)
					results[i].outcome = KAFKA_HELD;
				continue;
			}
		}
		if (!kafka_produce(relay.producer, &batch->round, i, row->topic,
						   row->key, row->key_len,
						   row->payload, row->payload_len,
						   row->headers, row->nheaders,
						   row->created_ms))
		{
			/* librdkafka's queue is full */
			if (held_only)
				results[i].outcome = KAFKA_HELD;	/* still to be tried */
			if (ShutdownRequestPending)
				break;
			going_on = relay_wait_step(shutdown_deadline, fatal);
			i--;				/* the same row again */
			continue;
		}
		if (results[i].outcome == KAFKA_FAILED || results[i].outcome == KAFKA_HELD)
			relay_hold_key(&held, row, results[i].outcome == KAFKA_FAILED);
		else if (results[i].outcome != KAFKA_REJECTED &&
				 results[i].outcome != KAFKA_NOT_SENT)
			queued[i] = true;
	}
	return going_on;
}

/* Whether a row of the batch is held back behind its partition's first message. */
static bool
relay_batch_held(const RelayBatch *batch)
{
	for (int i = 0; i < batch->n; i++)
	{
		if (batch->round.results[i].outcome == KAFKA_HELD)
			return true;
	}
	return false;
}

/*
 * A round that is settled in full before the next read (see relay_round())
 * sends the rows it held back as soon as the first messages of their
 * partitions have their answers, rather than leaving them to the next
 * round, which would wait for the slowest message of this one (a message
 * to a topic that does not exist takes seconds to fail).  Returns false
 * when the round must end now, as relay_produce_rows().
 */
static bool
relay_produce_held(RelayBatch *batch, bool *queued,
				   TimestampTz *shutdown_deadline, bool *fatal)
{
	bool		going_on = true;

	while (going_on && !ShutdownRequestPending && relay_batch_held(batch))
	{
		uint64		answers = kafka_probes_answered(relay.producer);

		/* no first message in flight: nothing is held back any more */
		if (kafka_outstanding(relay.producer) == 0)
			return relay_produce_rows(batch, queued, true, shutdown_deadline, fatal);
		while (going_on && kafka_outstanding(relay.producer) > 0 &&
			   kafka_probes_answered(relay.producer) == answers)
			going_on = relay_wait_step(shutdown_deadline, fatal);
		if (going_on && !*fatal)
			going_on = relay_produce_rows(batch, queued, true, shutdown_deadline, fatal);
	}
	return going_on;
}

/*
 * Where the next read starts, once a round is read: where it stopped
 * short, if it did, or past every row (only the bound of open
 * transactions, taken at the read, then lowers it); at the low end while
 * rows wait for a retry.  Rows that a round leaves in the outbox lower it
 * when the round is recorded (relay_floor_after_record()); rows others
 * write meanwhile lower it at the next read (outbox_floor.c).
 */
static void
relay_floor_after_read(const RelayRead *read)
{
	if (read->failed_rows)
	{
		relay.from_start = true;
		return;
	}
	memset(&relay.floor, 0xff, sizeof(relay.floor));
	if (read->cut)
		relay.floor = read->last_id;
	relay.from_start = false;
}

/* A recorded round left rows in the outbox: read again from the lowest. */
static void
relay_floor_after_record(const RelayTally *tally)
{
	if (tally->any_left && ulid_compare(&tally->lowest_left, &relay.floor) < 0)
		relay.floor = tally->lowest_left;
}

/* Whether the database has prepared transactions, in a transaction of its own. */
static bool
relay_prepared_exist(void)
{
	bool		prepared;

	relay_begin_work("inbox_outbox relay: looking for prepared transactions");
	prepared = relay_store_prepared_exist();
	relay_end_work();
	return prepared;
}

/*
 * A relcache invalidation: the outbox's definition may have changed, its
 * floor trigger among it.  VACUUM and ANALYZE of the outbox send one too,
 * so the next read looks at the trigger before it reads from the low end
 * (relay_floor_check()).
 */
static void
relay_outbox_changed(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == relay.outbox_relid)
		relay.outbox_changed = true;
}

/*
 * Start taking bounds for the read.  The first read starts at the low end;
 * prepared transactions that were there before the relay hold the bound
 * there until they are gone.
 */
static void
relay_floor_start(void)
{
	relay_api->outbox_floor_attach();
	relay_begin_work("inbox_outbox relay: starting");
	relay.outbox_relid = get_relname_relid("outbox",
										   get_namespace_oid("inbox_outbox", false));
	relay_end_work();
	CacheRegisterRelcacheCallback(relay_outbox_changed, (Datum) 0);
	if (relay_prepared_exist())
		relay_api->outbox_floor_hold_for_prepared();
	relay.from_start = true;
	relay.outbox_changed = true;
	relay.floor_trigger = InvalidTransactionId;
}

/*
 * After a change to the outbox's definition, in the read's transaction:
 * read from the low end if the floor trigger changed since it was last
 * looked at, or does not fire; look again at the next read while it does
 * not.
 */
static void
relay_floor_check(void)
{
	TransactionId version;

	if (!relay.outbox_changed)
		return;
	version = relay_store_floor_trigger_version(relay.outbox_relid);
	if (!TransactionIdIsValid(version) ||
		!TransactionIdEquals(version, relay.floor_trigger))
	{
		relay.from_start = true;
		relay.last_full_read = GetCurrentTimestamp();
	}
	relay.floor_trigger = version;
	relay.outbox_changed = !TransactionIdIsValid(version);
}

/* Release the prepared bound once no prepared transaction is left. */
static void
relay_floor_settle(void)
{
	uint64		prepares;

	if (relay_api->outbox_floor_prepared_held(&prepares) && !relay_prepared_exist())
		relay_api->outbox_floor_prepared_settled(prepares);
}

/*
 * The extension was dropped during a round: its rows went with it.  Stop as
 * the next read would, recording nothing.
 */
pg_noreturn static void
relay_leave_extension_dropped(void)
{
	relay_begin_work("inbox_outbox relay: stopping");
	exit_unless_extension(relay.generation);
	relay_end_work();
	proc_exit(0);
}

/*
 * Step 3: delete what Kafka acknowledged and record failures (see
 * relay_store_record()), and show the outcome in relay_status.  Returns
 * false if a failure could not be recorded.
 */
static bool
relay_record(RelayBatch *batch, int64 record_offset)
{
	RelayTally	tally;

	relay_store_record(batch->rows, batch->round.results, batch->n, batch->isolated,
					   record_offset, batch->cxt, &tally);
	relay_floor_after_record(&tally);
	if (tally.any_left || tally.failed > 0)
		relay.read_due = true;
	if (tally.failed > 0)
		relay.failures_recorded++;
	relay_count(tally.published, tally.failed, tally.dead_lettered);
	if (tally.last_failure[0] != '\0')
		relay_record_error(tally.last_failure);
	else if (tally.published > 0)
		relay_clear_error();
	return tally.all_recorded;
}

/* Whether a message of a batch in flight has failed. */
static bool
relay_batches_failed(void)
{
	for (RelayBatch *batch = relay.batches; batch != NULL; batch = batch->next)
	{
		for (int i = 0; i < batch->n; i++)
		{
			KafkaOutcome outcome = batch->round.results[i].outcome;

			if (outcome == KAFKA_FAILED || outcome == KAFKA_REJECTED)
				return true;
		}
	}
	return false;
}

/*
 * Record the batches in flight whose messages all have their delivery
 * reports, oldest first.  With all, first wait until every message has
 * one, or the wait must end (see relay_wait_step()), and purge the rest.
 * A producer that failed fatally has failed every message in flight: it
 * is destroyed, so that the next is made afresh, and then every batch is
 * recorded, what had no delivery report staying in the outbox.  Returns
 * false if a failure could not be recorded.
 */
static bool
relay_settle(bool all)
{
	bool		fatal = false;
	bool		going_on = true;
	bool		recorded = true;
	TimestampTz shutdown_deadline = 0;
	RelayBatch **link;
	RelayBatch *done = NULL;
	int			ndone = 0;
	int			nrows = 0;
	bool		any_isolated = false;

	if (relay.batches == NULL)
		return true;
	if (relay.producer != NULL)
	{
		kafka_serve(relay.producer);
		fatal = relay_producer_failed();
		while (all && going_on && !fatal && kafka_outstanding(relay.producer) > 0)
			going_on = relay_wait_step(&shutdown_deadline, &fatal);
		if ((all || fatal) && kafka_outstanding(relay.producer) > 0)
			kafka_purge(relay.producer, 1000);
		if (fatal)
		{
			kafka_producer_destroy(relay.producer, 1000);
			relay.producer = NULL;
			relay.progress_settled = false;
		}
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	if (relay.extension_dropped)
		relay_leave_extension_dropped();

	/* the finished batches, out of the list */
	link = &relay.batches;
	while (*link != NULL)
	{
		RelayBatch *batch = *link;

		if (relay.producer != NULL && batch->round.outstanding > 0)
		{
			link = &batch->next;
			continue;
		}
		*link = batch->next;
		batch->next = done;
		done = batch;
		ndone++;
		nrows += batch->n;
		any_isolated |= batch->isolated;
	}
	if (done == NULL)
		return true;

	/*
	 * Several finished batches are recorded as one, in one transaction; an
	 * isolated retry, whose failure is its own, always alone.
	 */
	if (ndone == 1 || any_isolated)
	{
		for (RelayBatch *batch = done; batch != NULL; batch = batch->next)
			recorded &= relay_record(batch, -1);
	}
	else
	{
		RelayBatch	all = {0};
		int			i = 0;

		all.cxt = relay.round_context;
		all.rows = MemoryContextAlloc(all.cxt, sizeof(RelayRow) * nrows);
		all.round.results = MemoryContextAlloc(all.cxt, sizeof(KafkaResult) * Max(nrows, 1));
		for (RelayBatch *batch = done; batch != NULL; batch = batch->next)
		{
			memcpy(&all.rows[i], batch->rows, sizeof(RelayRow) * batch->n);
			memcpy(&all.round.results[i], batch->round.results, sizeof(KafkaResult) * batch->n);
			i += batch->n;
		}
		all.n = nrows;
		recorded = relay_record(&all, -1);
	}
	while (done != NULL)
	{
		RelayBatch *next = done->next;

		relay_batch_free(done);
		done = next;
	}
	relay.recorded = true;
	if (relay.read_blocked)
	{
		relay.read_due = true;
		relay.read_blocked = false;
	}
	return recorded;
}

/* Destroy the producer, then record every batch that was in flight. */
static void
relay_drop_producer(int timeout_ms)
{
	kafka_producer_destroy(relay.producer, timeout_ms);
	relay.producer = NULL;
	(void) relay_settle(false);
}

/*
 * Rest for ms milliseconds, seeing a stop, a reload and the postmaster's
 * death at once.  A commit that sets the latch meanwhile is kept for the
 * next round rather than ending the rest.
 */
static void
relay_rest(long ms)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	bool		woken = false;

	while (!ShutdownRequestPending)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), end);

		if (left <= 0)
			break;
		if (WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					  left, PG_WAIT_EXTENSION) & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			woken = true;
		}
		CHECK_FOR_INTERRUPTS();
		relay_process_reload();
	}
	if (woken)
		SetLatch(MyLatch);
}

/*
 * Wait, doing nothing, until resolved() (asked after every reload and every
 * poll_interval) says the problem is gone, or the relay is asked to stop;
 * then exit, so that the launcher starts a relay afresh.  The reason is in
 * relay_status.last_error meanwhile, and in the log once.  Called outside
 * any transaction.
 */
static void
relay_wait_until_resolved(RelayState state, const char *reason,
						  const char *hint, bool (*resolved) (void))
{
	ereport(LOG,
			errmsg("inbox_outbox relay for database \"%s\" cannot work: %s",
				   relay.database_name, reason),
			errhint("%s", hint));
	relay_wait_for_change(state, reason, resolved);
}

/* relay_wait_until_resolved() without the LOG line. */
static void
relay_wait_for_change(RelayState state, const char *reason,
					  bool (*resolved) (void))
{
	relay_record_error(reason);
	relay_set_state(state);

	while (!ShutdownRequestPending)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 *relay_api->poll_interval, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		relay_process_reload();
		if (resolved())
			break;
	}
	proc_exit(0);
}

/*
 * Whether a paused copy may publish now, or paused for another reason than
 * the one it logged (a subscription dropped, the identity still another
 * database's): either way the relay starts afresh.
 */
static bool
relay_copy_resolved(void)
{
	const char *reason;
	bool		resolved;

	relay_begin_work("inbox_outbox relay: checking whose outbox this is");
	resolved = relay_api->outbox_identity_verify(&reason, NULL) ||
		strcmp(reason, relay.slot->last_error) != 0;
	relay_end_work();
	return resolved;
}

/*
 * Called in the transaction that reads the outbox, before it does: a copy
 * of another database (a restore, a template copy, pg_upgrade) or a
 * logical replica of its outbox publishes nothing until an administrator
 * adopts it (see outbox_identity.c).
 */
static void
relay_pause_if_copy(void)
{
	const char *reason;
	const char *hint;

	if (relay_api->outbox_identity_verify(&reason, &hint))
		return;
	relay_end_work();
	relay_wait_until_resolved(RELAY_PAUSED_COPY, reason, hint, relay_copy_resolved);
}

/* Whether brokers and kafka_config hold values their check hooks passed. */
static bool
producer_settings_accepted(void)
{
	return (*relay_api->refused_at_start &
			(REFUSED_BROKERS | REFUSED_KAFKA_CONFIG)) == 0;
}

/* Whether brokers or kafka_config changed since producer_brokers/_config. */
static bool
producer_settings_changed(void)
{
	return strcmp(relay.producer_brokers, *relay_api->brokers) != 0 ||
		strcmp(relay.producer_config, *relay_api->kafka_config) != 0;
}

/*
 * The modification time and size of the file kafka_config names, if it
 * names one, so that an edit of the file counts as a change of the setting.
 */
static void
kafka_config_file_stamp(struct stat *st)
{
	memset(st, 0, sizeof(*st));
	if ((*relay_api->kafka_config)[0] == '/')
		(void) stat(*relay_api->kafka_config, st);
}

/* Whether the settings or the file changed since the producer was refused. */
static bool
producer_settings_or_file_changed(void)
{
	struct stat st;

	if (producer_settings_changed())
		return true;
	kafka_config_file_stamp(&st);
	return st.st_mtime != relay.refused_file_stamp.st_mtime ||
		st.st_size != relay.refused_file_stamp.st_size;
}

/*
 * Make the producer from the current settings.  A setting librdkafka
 * refuses (a bad value of a valid property, which the check hooks cannot
 * see, a file changed since it was checked, or a TLS file that is missing)
 * stops the relay with the reason in relay_status until brokers,
 * kafka_config or the file it names change, instead of failing and
 * restarting over and over.  Other errors are raised as usual.
 */
static void
relay_create_producer(const char *transactional_id)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ErrorData  *volatile edata = NULL;

	if (relay.producer_brokers)
		pfree(relay.producer_brokers);
	if (relay.producer_config)
		pfree(relay.producer_config);
	relay.producer_brokers = MemoryContextStrdup(TopMemoryContext, *relay_api->brokers);
	relay.producer_config = MemoryContextStrdup(TopMemoryContext, *relay_api->kafka_config);

	PG_TRY();
	{
		relay.producer = kafka_producer_create(relay.producer_brokers, relay.producer_config,
											   relay.client_id, transactional_id);
		/* a new pipe: the next wait makes a wait set for it */
		if (relay.wait_set != NULL)
			FreeWaitEventSet(relay.wait_set);
		relay.wait_set = NULL;
		relay.producer_failed = false;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_INVALID_PARAMETER_VALUE &&
			edata->sqlerrcode != ERRCODE_INSUFFICIENT_PRIVILEGE &&
			edata->sqlerrcode != ERRCODE_CONNECTION_FAILURE &&
			edata->sqlerrcode != ERRCODE_UNDEFINED_FILE)
			PG_RE_THROW();
		FlushErrorState();
	}
	PG_END_TRY();

	if (edata != NULL)
	{
		kafka_config_file_stamp(&relay.refused_file_stamp);
		relay_wait_until_resolved(RELAY_STOPPED, edata->detail ?
								  psprintf("%s: %s", edata->message, edata->detail) :
								  edata->message,
								  "Correct inbox_outbox.kafka_config, inbox_outbox.brokers or the file it names; the relay tries again when one of them changes.",
								  producer_settings_or_file_changed);
	}
	relay.exactly_once = transactional_id != NULL;
}

/*
 * A new broker list or producer configuration means a new producer, and so
 * does a new delivery mode or progress topic.  It is made between rounds,
 * when nothing is in flight and no Kafka transaction is open, so no row is
 * lost or sent twice; only a round stuck on unreachable brokers is
 * abandoned for it (see relay_produce).
 */
static void
relay_reconnect_if_changed(void)
{
	if (producer_config_changed())
	{
		ereport(LOG,
				errmsg("inbox_outbox relay: Kafka configuration changed, reconnecting"));
		(void) relay_settle(true);
		relay_drop_producer(1000);
	}
	else if (relay.producer != NULL && relay_mode_changed())
	{
		ereport(LOG,
				errmsg("inbox_outbox relay for database \"%s\" switches to %s delivery",
					   relay.database_name,
					   *relay_api->delivery == DELIVERY_EXACTLY_ONCE ?
					   "exactly-once" : "at-least-once"));
		(void) relay_settle(true);
		relay_drop_producer(1000);
	}
}

/*
 * Whether inbox_outbox.delivery or, in exactly-once mode,
 * inbox_outbox.progress_topic differ from what the producer was made for.
 */
static bool
relay_mode_changed(void)
{
	bool		want = *relay_api->delivery == DELIVERY_EXACTLY_ONCE;

	return want != relay.wants_exactly_once ||
		(want && strcmp(relay.progress_topic, *relay_api->progress_topic) != 0);
}

/* For relay_wait_for_change(): any setting the producer depends on. */
static bool
relay_kafka_settings_changed(void)
{
	return producer_settings_or_file_changed() || relay_mode_changed();
}

/*
 * Between two steps of a transactional call: see a stop, a reload and the
 * death of the postmaster.
 */
static void
relay_txn_step_checks(void)
{
	CHECK_FOR_INTERRUPTS();
	if (!PostmasterIsAlive())
		proc_exit(1);
	relay_process_reload();
}

/* Make the WAL of the relay's own commits durable (see relay_produce_txn()). */
static void
relay_flush_own_commits(void)
{
	if (!XLogRecPtrIsInvalid(XactLastCommitEnd))
		XLogFlush(XactLastCommitEnd);
}

/*
 * Another producer took the relay's transactional id: a promoted standby,
 * a second primary, a copy of the data directory.  Stop publishing, and do
 * not take the id back (init_transactions() would fence the other relay in
 * turn), until the relay is restarted or a Kafka setting changes.
 */
pg_noreturn static void
relay_fenced(const char *error)
{
	kafka_producer_destroy(relay.producer, 0);
	relay.producer = NULL;
	ereport(WARNING,
			errmsg("inbox_outbox relay for database \"%s\" stops: another relay publishes for this database with transactional id \"%s\"",
				   relay.database_name, relay.transactional_id),
			errdetail("Kafka fenced this relay: %s", error),
			errhint("After a failover, stop the old primary; with a copy of the data directory, leave the copy's database out of inbox_outbox.databases.  The relay resumes when it is restarted or when inbox_outbox.brokers, kafka_config, delivery or progress_topic changes."));
	relay_wait_for_change(RELAY_FENCED, error, relay_kafka_settings_changed);
}

/*
 * _FENCED: another relay took the id, unless our transaction was open for
 * longer than transaction.timeout.ms, when the coordinator aborted it and
 * bumped the epoch itself.  Only the latter comes back, as a lost
 * transaction.
 */
static RoundEnd
relay_txn_fenced(const char *error)
{
	if (relay.txn_began == 0 ||
		!TimestampDifferenceExceeds(relay.txn_began, GetCurrentTimestamp(),
									kafka_transaction_timeout_ms(relay.producer)))
		relay_fenced(error);
	ereport(LOG,
			errmsg("inbox_outbox relay: Kafka aborted a transaction that stayed open longer than transaction.timeout.ms: %s",
				   error),
			errdetail("The producer is recreated and its last transaction recovered."));
	relay_record_error(error);
	relay.check_takeover = true;
	return ROUND_LOST;
}

/*
 * After the coordinator aborted a transaction of ours for its age, another
 * relay may have taken the id meanwhile (and been fenced in turn by the
 * abort's epoch bump, which librdkafka reports as the same error).  Its
 * records then follow our last one: stop as fenced rather than take the id
 * back.  Read before our own init_transactions(), which would fence it.
 */
static void
relay_check_takeover(void)
{
	char		errbuf[RELAY_ERROR_LEN];
	char	   *value;
	size_t		len;
	int64		offset;
	ProgressRecord rec;
	const char *problem;

	if (!relay.check_takeover)
		return;
	relay.check_takeover = false;
	/* a record of our own to compare with: an earlier relay's may follow none */
	if (relay.last_record < 0)
		return;
	if (relay_progress_find_last(*relay_api->brokers, *relay_api->kafka_config,
								 relay.client_id, relay.progress_topic,
								 relay.transactional_id, relay.last_record,
								 RELAY_PROGRESS_TIMEOUT_MS, &value, &len,
								 &offset, errbuf, sizeof(errbuf)) == PROGRESS_FOUND &&
		progress_record_decode(value, len, &rec, &problem) &&
		rec.writer != relay.writer)
		relay_fenced("another relay wrote progress records after this relay's transaction was aborted for its age");
}

/*
 * init_transactions() in steps until it succeeds: it fences every older
 * producer of the id and settles its transaction.  Returns false if the
 * producer must be made anew (it is destroyed then).  A refusal for good
 * (authorization, a timeout the brokers refuse) stops the relay until a
 * Kafka setting changes.
 */
static bool
relay_txn_init(void)
{
	char		errbuf[RELAY_ERROR_LEN];

	for (;;)
	{
		KafkaTxnAnswer answer;

		relay_txn_step_checks();
		if (ShutdownRequestPending || relay_kafka_settings_changed())
			break;
		answer = kafka_txn_init(relay.producer, errbuf, sizeof(errbuf));
		kafka_serve(relay.producer);
		switch (answer)
		{
			case KAFKA_TXN_DONE:
				return true;
			case KAFKA_TXN_RETRY:
				relay_set_state(kafka_brokers_down(relay.producer) ?
								RELAY_BROKER_UNREACHABLE : RELAY_STARTING);
				relay_record_error(errbuf);
				continue;
			case KAFKA_TXN_REFUSED:
				kafka_producer_destroy(relay.producer, 0);
				relay.producer = NULL;
				kafka_config_file_stamp(&relay.refused_file_stamp);
				relay_wait_until_resolved(RELAY_STOPPED,
										  psprintf("Kafka refuses the relay's transactions: %s", errbuf),
										  "Grant the relay's Kafka principal Write and Describe on the transactional id, or correct transaction.timeout.ms; the relay tries again when inbox_outbox.brokers, kafka_config, delivery or progress_topic changes.",
										  relay_kafka_settings_changed);
				break;
			case KAFKA_TXN_ABORT:
			case KAFKA_TXN_FATAL:
			case KAFKA_TXN_FENCED:
				ereport(LOG,
						errmsg("inbox_outbox relay: could not initialize Kafka transactions: %s",
							   errbuf));
				relay_record_error(errbuf);
				break;
		}
		break;
	}
	kafka_producer_destroy(relay.producer, 0);
	relay.producer = NULL;
	return false;
}

/*
 * Recovery (docs/exactly_once.md, section 6): delete the outbox rows that
 * the last committed progress record of this database names, which Kafka
 * has and the outbox may still hold.  Needs a transactional producer whose
 * init_transactions() succeeded, which settled every transaction of the id
 * before the record is read.  Returns false if it could not finish (no
 * answer from the cluster in time, a stop): the caller tries again.
 */
static bool
relay_recover(const RelayProgressRow *row)
{
	char		errbuf[RELAY_ERROR_LEN];
	char	   *value;
	size_t		len;
	int64		offset;
	ProgressRecord rec;
	const char *problem;
	ProgressAnswer answer;
	int			deleted;

	relay_set_state(RELAY_RECOVERING);
	answer = relay_progress_find_last(*relay_api->brokers, *relay_api->kafka_config,
									  relay.client_id, row->topic, relay.transactional_id,
									  row->record_offset, RELAY_PROGRESS_TIMEOUT_MS,
									  &value, &len, &offset, errbuf, sizeof(errbuf));
	if (answer == PROGRESS_NONE)
		return true;
	if (answer != PROGRESS_FOUND)
	{
		ereport(LOG,
				errmsg("inbox_outbox relay could not read its last progress record from topic \"%s\": %s",
					   row->topic, errbuf),
				errdetail("The relay publishes nothing until it has; it tries again."));
		relay_record_error(errbuf);
		return false;
	}

	if (!progress_record_decode(value, len, &rec, &problem) ||
		rec.system_identifier != GetSystemIdentifier() ||
		rec.database != MyDatabaseId)
	{
		/* not ours to act on; note its offset so as not to read it again */
		ereport(LOG,
				errmsg("inbox_outbox relay skips the progress record at offset %lld of topic \"%s\": %s",
					   (long long) offset, row->topic,
					   problem != NULL ? problem : "it was written for another database"));
		relay_begin_work("inbox_outbox relay: recovering");
		(void) relay_store_delete_recorded(NULL, 0, offset);
		relay_end_work();
		return true;
	}

	RELAY_FAULT_POINT("eos_recovery_read");
	relay_begin_work("inbox_outbox relay: recovering");
	deleted = relay_store_delete_recorded(rec.ids, rec.nids, offset);
	relay_end_work();
	relay_flush_own_commits();
	relay_count(deleted, 0, 0);
	if (deleted > 0)
		ereport(LOG,
				errmsg("inbox_outbox relay: recovered %d events from the progress record (offset %lld)",
					   deleted, (long long) offset));
	return true;
}

/*
 * The most rows one transaction may hold: as many ids as its progress
 * record can carry within the topic's max.message.bytes (less Kafka's
 * framing) and PROGRESS_RECORD_MAX_BYTES.
 */
static void
relay_set_record_bound(int topic_max_bytes)
{
	int64		bytes = PROGRESS_RECORD_MAX_BYTES;

	if (topic_max_bytes > 0 && topic_max_bytes - 1024 < bytes)
	{
		bytes = Max(topic_max_bytes - 1024, PROGRESS_RECORD_HEADER_LEN + PROGRESS_RECORD_MAX_ID_LEN);
		ereport(LOG,
				errmsg("inbox_outbox relay puts at most %d events in a Kafka transaction: the max.message.bytes of topic \"%s\" is %d",
					   progress_record_max_ids(bytes), relay.progress_topic, topic_max_bytes));
	}
	relay.record_max_ids = progress_record_max_ids(bytes);
}

/*
 * Make the producer for the mode inbox_outbox.delivery asks for, after
 * settling what exactly-once mode may have left: while the row of
 * inbox_outbox.relay_progress exists, a transaction of this database may
 * hold rows still in the outbox, whatever the mode is now.  Returns false
 * if it must be tried again later.
 */
static bool
relay_make_producer(void)
{
	bool		want = *relay_api->delivery == DELIVERY_EXACTLY_ONCE;
	RelayProgressRow row;

	relay.wants_exactly_once = want;
	if (relay.progress_topic)
		pfree(relay.progress_topic);
	relay.progress_topic = MemoryContextStrdup(TopMemoryContext, *relay_api->progress_topic);

	MemoryContextReset(relay.work_context);
	relay_begin_work("inbox_outbox relay: reading its progress");
	/* a paused copy makes no producer: it would take a transactional id */
	relay_pause_if_copy();
	relay_store_progress_get(relay.work_context, &row);
	if (row.exists && strcmp(row.transactional_id, relay.transactional_id) != 0)
	{
		/* copied from another database (CREATE DATABASE ... TEMPLATE) */
		relay_store_progress_delete();
		ereport(LOG,
				errmsg("inbox_outbox relay discards the progress of transactional id \"%s\", which belongs to another database",
					   row.transactional_id));
		row.exists = false;
	}
	relay_end_work();

	/* leaving exactly-once mode cleanly: nothing of ours is open */
	if (!want && row.exists && relay.progress_settled)
	{
		relay_begin_work("inbox_outbox relay: recording its progress");
		relay_store_progress_delete();
		relay_end_work();
		row.exists = false;
	}
	if (!want && !row.exists)
	{
		relay_create_producer(NULL);
		goto made;
	}

	relay_check_takeover();
	relay_create_producer(relay.transactional_id);
	if (!relay_txn_init())
		return false;
	if (row.exists && !relay.progress_settled && !relay_recover(&row))
	{
		kafka_producer_destroy(relay.producer, 0);
		relay.producer = NULL;
		return false;
	}

	/*
	 * The topic, once per topic and process, after init_transactions() has
	 * shown that the cluster answers: a cluster that does not answer the
	 * Admin API (a proxy, a mock) only costs the wait, once, and a topic
	 * made by hand works whatever the answer was.
	 */
	if (want && (relay.ensured_topic == NULL ||
				 strcmp(relay.ensured_topic, relay.progress_topic) != 0))
	{
		char		errbuf[RELAY_ERROR_LEN];
		int			topic_max_bytes = -1;
		ProgressAnswer answer;

		answer = relay_progress_topic_ensure(*relay_api->brokers, *relay_api->kafka_config,
											 relay.client_id, relay.progress_topic,
											 RELAY_PROGRESS_TIMEOUT_MS,
											 &topic_max_bytes, errbuf, sizeof(errbuf));
		if (ShutdownRequestPending)
			return false;
		if (answer != PROGRESS_FOUND)
		{
			/* a failing record will say what is wrong, if anything is */
			ereport(LOG,
					errmsg("inbox_outbox relay could not make sure its progress topic \"%s\" exists: %s",
						   relay.progress_topic, errbuf),
					errdetail("The relay goes on; its progress records fail if the topic is missing."));
			relay_record_error(errbuf);
		}
		relay_set_record_bound(topic_max_bytes);
		if (relay.ensured_topic)
			pfree(relay.ensured_topic);
		relay.ensured_topic = MemoryContextStrdup(TopMemoryContext, relay.progress_topic);
	}

	relay_begin_work("inbox_outbox relay: recording its progress");
	if (!want)
		relay_store_progress_delete();
	else if (!row.exists || strcmp(row.topic, relay.progress_topic) != 0)
		relay_store_progress_set(relay.transactional_id, relay.progress_topic);
	relay_end_work();

	if (!want)
	{
		/* settled: the idempotent producer takes over */
		kafka_producer_destroy(relay.producer, 0);
		relay.producer = NULL;
		relay_create_producer(NULL);
	}

made:
	relay.progress_settled = relay.exactly_once;
	relay_store_set_batch_limit(relay.exactly_once ? relay.record_max_ids : 0);
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	relay.slot->exactly_once = relay.exactly_once;
	LWLockRelease(shared->lock);
	return true;
}

/*
 * Abort the open transaction, calling again while librdkafka says to, for at
 * most a second when stopping.
 */
static RoundEnd
relay_txn_abort(void)
{
	char		errbuf[RELAY_ERROR_LEN];
	TimestampTz deadline;

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   ShutdownRequestPending ? 1000 :
										   kafka_transaction_timeout_ms(relay.producer));
	while (GetCurrentTimestamp() < deadline)
	{
		KafkaTxnAnswer answer = kafka_txn_abort(relay.producer, errbuf, sizeof(errbuf));

		kafka_serve(relay.producer);
		switch (answer)
		{
			case KAFKA_TXN_DONE:
				relay.txn_began = 0;
				return ROUND_NOT_SENT;
			case KAFKA_TXN_RETRY:
				relay_txn_step_checks();
				continue;
			case KAFKA_TXN_FENCED:
				return relay_txn_fenced(errbuf);
			default:
				relay_record_error(errbuf);
				return ROUND_LOST;
		}
	}
	return ROUND_LOST;
}

/* The ids of a round's queued rows, in ascending order. */
static int
compare_ulids(const void *a, const void *b)
{
	return ulid_compare((const pg_ulid *) a, (const pg_ulid *) b);
}

/*
 * Exactly-once mode's steps 4 to 7 (docs/exactly_once.md, section 2):
 * begin a Kafka transaction, produce the rows and the progress record that
 * names exactly the ids of the rows produced, wait for every delivery
 * report, and commit if every one succeeded; otherwise abort.  On
 * ROUND_SENT, *record_offset is the record's offset.
 *
 * A row that producev() refuses at once is not in the transaction: a
 * final refusal (too large) sends it to the dead-letter table as in
 * at-least-once mode, any other holds back the later rows of its key for
 * this round.  A message that fails after it was queued fails the whole
 * transaction (librdkafka refuses the commit), so the round aborts; its
 * own failure is recorded, and every other row is read again.
 *
 * Before the commit, the WAL of the relay's own last commit (the previous
 * round's DELETE) is flushed: so only the last committed record can name
 * rows still in the outbox, whatever crashes when.
 */
static RoundEnd
relay_produce_txn(RelayBatch *batch, int64 *record_offset)
{
	RelayRow   *rows = batch->rows;
	int			n = batch->n;
	char		errbuf[RELAY_ERROR_LEN];
	bool		fatal = false;
	bool		going_on;
	TimestampTz shutdown_deadline = 0;
	bool	   *queued;
	int			nqueued = 0;
	bool		all_delivered;
	KafkaResult record;
	KafkaTxnAnswer answer;
	MemoryContext old;

	queued = MemoryContextAllocZero(relay.round_context, sizeof(bool) * n);

	if (relay.last_commit != 0)
	{
		long		since = TimestampDifferenceMilliseconds(relay.last_commit,
															GetCurrentTimestamp());

		if (since < RELAY_TXN_PAUSE_MS)
			relay_rest(RELAY_TXN_PAUSE_MS - since);
	}

	relay_begin_produce(batch);
	kafka_begin_transaction_round(relay.producer);
	answer = kafka_txn_begin(relay.producer, errbuf, sizeof(errbuf));
	if (answer == KAFKA_TXN_FENCED)
		return relay_txn_fenced(errbuf);
	if (answer != KAFKA_TXN_DONE)
	{
		relay_record_error(errbuf);
		return ROUND_LOST;
	}
	relay.txn_began = GetCurrentTimestamp();
	relay.txn_round++;

	going_on = relay_produce_rows(batch, queued, false, &shutdown_deadline, &fatal);
	for (int i = 0; i < n; i++)
		nqueued += queued[i] ? 1 : 0;

	/* the progress record: exactly the rows in the transaction */
	if (going_on && nqueued > 0 && !kafka_txn_failed(relay.producer))
	{
		ProgressRecord rec;
		char	   *value;
		size_t		len;
		int			m = 0;

		old = MemoryContextSwitchTo(relay.round_context);
		rec.system_identifier = GetSystemIdentifier();
		rec.database = MyDatabaseId;
		rec.writer = relay.writer;
		rec.round = relay.txn_round;
		rec.ids = palloc(sizeof(pg_ulid) * nqueued);
		for (int i = 0; i < n; i++)
		{
			if (queued[i])
				rec.ids[m++] = rows[i].id;
		}
		rec.nids = m;
		qsort(rec.ids, m, sizeof(pg_ulid), compare_ulids);
		value = progress_record_encode(&rec, &len);
		MemoryContextSwitchTo(old);

		while (going_on &&
			   !kafka_produce_record(relay.producer, relay.progress_topic,
									 relay.transactional_id,
									 strlen(relay.transactional_id),
									 value, len))
			going_on = relay_wait_step(&shutdown_deadline, &fatal);
	}

	while (going_on && kafka_outstanding(relay.producer) > 0)
		going_on = relay_wait_step(&shutdown_deadline, &fatal);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (fatal)
	{
		if (kafka_fenced(relay.producer))
			return relay_txn_fenced("the producer was fenced");
		return ROUND_LOST;
	}
	if (!going_on)
	{
		/*
		 * Stopping: abort, so that read_committed consumers are not held
		 * back until the next start.  Leaving at once (the extension or the
		 * database is going), or the settings changed while no broker
		 * answers: the next producer's init_transactions() aborts it.
		 */
		if (!ShutdownRequestPending || relay.extension_dropped ||
			relay_api->relay_must_leave_now())
			return ROUND_LOST;
		kafka_purge(relay.producer, 1000);
		return relay_txn_abort();
	}

	record = kafka_record_result(relay.producer, record_offset);
	all_delivered = nqueued > 0 && !kafka_txn_failed(relay.producer) &&
		record.outcome == KAFKA_DELIVERED;
	for (int i = 0; i < n && all_delivered; i++)
	{
		if (queued[i] && batch->round.results[i].outcome != KAFKA_DELIVERED)
			all_delivered = false;
	}
	if (!all_delivered)
	{
		if (nqueued > 0 && record.outcome != KAFKA_DELIVERED &&
			record.outcome != KAFKA_NOT_SENT && record.outcome != KAFKA_PENDING)
		{
			char	   *why = kafka_describe(&record);

			ereport(LOG,
					errmsg("inbox_outbox relay could not write its progress record to topic \"%s\": %s",
						   relay.progress_topic, why));
			relay_record_error(psprintf("progress record: %s", why));
			if (kafka_result_too_large(&record) && relay.record_max_ids > 1)
			{
				relay.record_max_ids = Max(relay.record_max_ids / 2, 1);
				relay_store_set_batch_limit(relay.record_max_ids);
				ereport(LOG,
						errmsg("inbox_outbox relay now puts at most %d events in a Kafka transaction",
							   relay.record_max_ids),
						errhint("Raise max.message.bytes of topic \"%s\".", relay.progress_topic));
			}
		}
		return relay_txn_abort();
	}

	relay_flush_own_commits();
	RELAY_FAULT_POINT("eos_before_commit");
	for (;;)
	{
		answer = kafka_txn_commit(relay.producer, errbuf, sizeof(errbuf));
		kafka_serve(relay.producer);
		if (answer == KAFKA_TXN_DONE)
			break;
		if (answer == KAFKA_TXN_RETRY)
		{
			/* the same call again, and nothing else meanwhile */
			relay_txn_step_checks();
			relay_set_state(kafka_brokers_down(relay.producer) ?
							RELAY_BROKER_UNREACHABLE : RELAY_PUBLISHING);
			if (ShutdownRequestPending)
			{
				if (relay_api->relay_must_leave_now())
					return ROUND_LOST;
				if (shutdown_deadline == 0)
					shutdown_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																	*relay_api->shutdown_timeout);
				else if (GetCurrentTimestamp() >= shutdown_deadline)
					return ROUND_LOST;
			}
			continue;
		}
		if (answer == KAFKA_TXN_ABORT)
		{
			relay_record_error(errbuf);
			return relay_txn_abort();
		}
		if (answer == KAFKA_TXN_FENCED)
			return relay_txn_fenced(errbuf);
		ereport(LOG,
				errmsg("inbox_outbox relay: Kafka transaction failed: %s", errbuf),
				errdetail("The producer is recreated and the transaction's outcome recovered."));
		relay_record_error(errbuf);
		return ROUND_LOST;
	}
	relay.txn_began = 0;
	relay.last_commit = GetCurrentTimestamp();
	relay.last_record = *record_offset;
	RELAY_FAULT_POINT("eos_after_commit");
	return ROUND_SENT;
}

/*
 * After a round whose transaction did not commit, no message of it counts
 * as delivered: its rows stay and are read again.  Failures of their own
 * stay, to be recorded.
 */
static void
relay_results_not_committed(RelayBatch *batch)
{
	for (int i = 0; i < batch->n; i++)
	{
		KafkaResult *result = &batch->round.results[i];

		if (result->outcome == KAFKA_DELIVERED || result->outcome == KAFKA_PENDING)
			result->outcome = KAFKA_NOT_SENT;
	}
}

/*
 * Exactly-once mode's round, from the produce on: the Kafka transaction,
 * then the delete of what it committed (with the progress record's offset,
 * in one transaction) and the record of failures.  A round whose outcome
 * is unknown ends with the producer destroyed, so that the next one is made
 * afresh, after recovery.  Returns false if a failure could not be
 * recorded.
 */
static bool
relay_round_txn(RelayBatch *batch)
{
	int64		record_offset = -1;
	RoundEnd	end;
	bool		recorded;

	end = relay_produce_txn(batch, &record_offset);
	relay.read_due = true;		/* recovery's waits do not keep wake-ups */
	if (relay.extension_dropped)
		relay_leave_extension_dropped();
	if (end != ROUND_SENT)
		relay_results_not_committed(batch);
	recorded = relay_record(batch, end == ROUND_SENT ? record_offset : -1);
	if (end == ROUND_LOST)
	{
		/* before the batch goes: messages may still be outstanding */
		kafka_producer_destroy(relay.producer, 1000);
		relay.producer = NULL;
		relay.progress_settled = false;
	}
	relay_batch_free(batch);
	return recorded;
}

/*
 * At-least-once mode's round, from the produce on.  The rounds overlap:
 * once a batch's rows are all queued, the relay goes on to read and produce
 * the next while Kafka acknowledges this one, and records each batch when
 * every message of it has its delivery report (relay_settle()).  Rows in
 * flight are left out of the later reads by their ids
 * (relay_in_flight()), never by a range: ids do not commit in order.
 *
 * A key's order across the overlapping batches is the producer's: the
 * batches of one key go to one partition in id order, and the idempotent
 * producer with gapless delivery never lets a message through after an
 * earlier one of its partition failed (it fails fatally, which fails
 * every message in flight, none costing an attempt).  What a producer
 * refuses at once is the relay's to hold back: a batch with a row not
 * queued (refused, too large, held back behind its key, unsendable) is
 * settled before anything else is read, and so is an isolated retry, and
 * any batch while a failure in flight is not yet recorded or rows wait for
 * a retry, so that the failures are in the table, and the read's anti-join
 * holds back their keys, before the next read; a batch read before
 * failures were recorded is not produced but read again.
 *
 * Rows held back while the first message of their partition is in flight
 * (KAFKA_HELD; kafka_topic.c) are the exception: nothing failed, so their
 * batch stays in flight, the floor goes back to the lowest of them, and
 * the next read, once such a first message has its answer, finds them
 * again ahead of the later rows of their keys.  Waiting for every batch
 * instead would hold every partition for the answer of the slowest.
 */
static bool
relay_round(RelayBatch *batch)
{
	bool	   *queued;
	bool		overlap;
	bool		going_on;
	bool		fatal = false;
	bool		clean = true;
	bool		any_queued = false;
	bool		any_held = false;
	bool		settle_all;
	uint64		answers;
	RelayTally	held = {0};
	bool		recorded = true;
	TimestampTz shutdown_deadline = 0;
	uint64		failures;

	if (relay.exactly_once)
		return relay_round_txn(batch);

	overlap = !batch->isolated && !batch->read.failed_rows;
	failures = relay.failures_recorded;
	if (!overlap || relay_batches_failed())
		recorded = relay_settle(true);
	if (relay.producer == NULL || relay.failures_recorded != failures)
	{
		/*
		 * The producer failed meanwhile, or failures were recorded that the
		 * read did not see (its anti-join would have held back their keys):
		 * the rows stay, and are read again.
		 */
		RelayTally	left = {.any_left = true, .lowest_left = batch->rows[0].id};

		relay_floor_after_record(&left);
		relay.read_due = true;
		relay_batch_free(batch);
		return recorded;
	}

	queued = MemoryContextAllocZero(batch->cxt, sizeof(bool) * batch->n);
	batch->queued = queued;
	relay_begin_produce(batch);
	answers = kafka_probes_answered(relay.producer);
	going_on = relay_produce_rows(batch, queued, false, &shutdown_deadline, &fatal);
	settle_all = !going_on || fatal || !overlap || ShutdownRequestPending;
	if (settle_all && going_on && !fatal)
		going_on = relay_produce_held(batch, queued, &shutdown_deadline, &fatal);
	for (int i = 0; i < batch->n; i++)
	{
		if (queued[i])
			any_queued = true;
		else if (batch->round.results[i].outcome == KAFKA_HELD)
		{
			if (!any_held || ulid_compare(&batch->rows[i].id, &held.lowest_left) < 0)
				held.lowest_left = batch->rows[i].id;
			any_held = held.any_left = true;
		}
		else
			clean = false;
	}

	if (settle_all || !going_on || fatal || !clean || ShutdownRequestPending)
	{
		relay_batch_enqueue(batch);
		return relay_settle(true) && recorded;
	}
	if (any_held)
	{
		/*
		 * Read them again once a first message has its answer; a round that
		 * found nothing else to send does not read again before that (or
		 * the next wake-up or poll), lest it find the same rows.
		 */
		relay_floor_after_record(&held);
		relay.held_back = true;
		relay.held_answers = answers;	/* as before producing: none is missed */
		if (!any_queued)
			relay.read_due = false;
	}
	if (any_queued)
		relay_batch_enqueue(batch);
	else
	{
		relay_batch_free(batch);
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	if (relay.batches == NULL)
		relay.read_due = true;	/* no answer to wait for */
	return relay_settle(false) && recorded;
}

/* The OID of the role inbox_outbox.relay_role names, or InvalidOid. */
static Oid
lookup_relay_role(void)
{
	Oid			role;

	relay_begin_work("inbox_outbox relay: looking up its role");
	role = get_role_oid(*relay_api->relay_role, true);
	relay_end_work();
	return role;
}

/* Whether inbox_outbox.relay_role changed, or names a role now. */
static bool
relay_role_resolved(void)
{
	return strcmp(*relay_api->relay_role, relay.wanted_role) != 0 ||
		OidIsValid(lookup_relay_role());
}

/*
 * Look up inbox_outbox.relay_role, if it names a role, so that every later
 * transaction runs as that role (see relay_store.c).
 */
static void
relay_become_role(void)
{
	Oid			role;

	if (*relay_api->relay_role == NULL || (*relay_api->relay_role)[0] == '\0')
		return;

	role = lookup_relay_role();
	if (!OidIsValid(role))
	{
		relay.wanted_role = pstrdup(*relay_api->relay_role);
		relay_wait_until_resolved(RELAY_STOPPED,
								  psprintf("role \"%s\" named by inbox_outbox.relay_role does not exist",
										   *relay_api->relay_role),
								  "Create the role, or change inbox_outbox.relay_role and reload the configuration.",
								  relay_role_resolved);
	}

	relay.role_name = MemoryContextStrdup(TopMemoryContext, *relay_api->relay_role);
	relay_store_set_role(role);
}

/*
 * Claim the database's slot: write our pid into it, unless another relay's
 * pid is there.  A pid is removed by relay_shmem_exit() on every exit, and
 * shared memory is made anew after a crash, so a pid in the slot is that of
 * a live relay.
 */
static void
relay_claim(void)
{
	uint32		generation;
	pid_t		other = 0;
	Oid			extension;
	bool		held = false;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	relay.slot = relay_api->relay_slot_find(MyDatabaseId);
	generation = shared->extension_generation;
	if (relay.slot != NULL)
	{
		other = relay.slot->pid;
		held = (other == 0 && relay_api->database_op_holds(MyDatabaseId));
		if (other == 0 && !held)
		{
			relay.slot->pid = MyProcPid;
			relay.slot->latch = MyLatch;
			relay.slot->state = RELAY_STARTING;
			relay.slot->exactly_once = *relay_api->delivery == DELIVERY_EXACTLY_ONCE;
			relay.slot->no_extension = false;
		}
	}
	LWLockRelease(shared->lock);
	if (relay.slot == NULL)
		elog(ERROR, "no relay slot assigned to database %u", MyDatabaseId);
	if (other != 0)
	{
		relay.slot = NULL;			/* not ours: leave it alone on exit */
		ereport(LOG,
				errmsg("inbox_outbox relay for database %u is already running with PID %d",
					   MyDatabaseId, (int) other));
		proc_exit(0);
	}
	if (held)
	{
		/* started just before a DROP, RENAME, ... of the database held it */
		relay.slot = NULL;
		ereport(LOG,
				errmsg("inbox_outbox relay for database %u leaves: a database operation is under way",
					   MyDatabaseId));
		proc_exit(0);
	}
	before_shmem_exit(relay_shmem_exit, (Datum) 0);

	relay_begin_work("inbox_outbox relay: starting");
	exit_unless_extension(generation);
	relay.database_name = MemoryContextStrdup(TopMemoryContext,
											  get_database_name(MyDatabaseId));
	relay.client_id = MemoryContextStrdup(TopMemoryContext,
										  psprintf("inbox_outbox-%s", relay.database_name));
	extension = get_extension_oid("inbox_outbox", false);
	relay_end_work();

	/* DROP and CREATE EXTENSION start the counters over */
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (relay.slot->extension_oid != extension)
	{
		relay.slot->extension_oid = extension;
		relay.slot->published = 0;
		relay.slot->failed = 0;
		relay.slot->dead_lettered = 0;
		relay.slot->last_error[0] = '\0';
		relay.slot->last_error_at = 0;
	}
	LWLockRelease(shared->lock);
}

/*
 * Take the table that inbox_outbox.so published when it was loaded
 * (relay_api.h), if it is the one this library was built with: a new
 * version installed over a running server comes here with the main library
 * of the old one still loaded.
 */
void
relay_api_take(void)
{
	const InboxOutboxRelayApi *api;

	api = *(const InboxOutboxRelayApi **)
		find_rendezvous_variable(INBOX_OUTBOX_RELAY_API_RENDEZVOUS);
	if (api == NULL)
		elog(ERROR, "inbox_outbox relay requires shared_preload_libraries");
	if (api->version != INBOX_OUTBOX_RELAY_API_VERSION ||
		api->size != sizeof(InboxOutboxRelayApi) ||
		api->shared_size != sizeof(InboxOutboxShared))
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("library \"%s\" does not match the library \"%s\" the server loaded when it started",
					   "inbox_outbox_relay", "inbox_outbox"),
				errhint("Restart the server after installing another version of inbox_outbox."));
	relay_api = api;
}

/*
 * Leave if inbox_outbox.relay_role changed: the launcher starts a relay
 * again, which takes the new role.
 */
static void
relay_exit_if_role_changed(void)
{
	const char *now = *relay_api->relay_role ? *relay_api->relay_role : "";
	const char *was = relay.role_name ? relay.role_name : "";

	if (strcmp(now, was) == 0)
		return;
	ereport(LOG,
			errmsg("inbox_outbox relay for database \"%s\" restarts: inbox_outbox.relay_role changed",
				   relay.database_name));
	proc_exit(0);
}

/*
 * Whether to read the outbox now; otherwise *gather_ms is how long to
 * gather (see below), or -1 if the wait is for the latch and the producer.
 *
 * Reads that a wake-up starts (rather than a read that stopped short, a
 * poll, or a round that left rows behind, which read at once) are
 * inbox_outbox.gather_window apart at least: for that long after a read
 * begins, the relay gathers, sleeping without the latch and without the
 * producer's pipe (see relay_wait()).  Under a steady stream of commits
 * the rows of several then go in one round (one read,
 * one produce request per partition, one delete) instead of a round per
 * commit, whose cost is nearly all per round; and the round costs one
 * wake-up, not one per commit and per delivery report, whose reports are
 * served and recorded when the gathering ends.  After that a wake-up reads
 * at once, so an event committed after a pause is read at once.  After a
 * read that found only rows in flight, a wake-up reads once a round was
 * recorded.
 */
static bool
relay_read_now(long *gather_ms)
{
	int64		since;
	int64		window = (int64) (*relay_api->gather_window * 1000.0);	/* microseconds */

	*gather_ms = -1;
	if (relay.held_back && relay.producer != NULL &&
		kafka_probes_answered(relay.producer) != relay.held_answers)
	{
		relay.held_back = false;
		relay.read_due = true;
	}
	if (relay.read_due)
		return true;
	since = GetCurrentTimestamp() - relay.last_read;	/* microseconds */
	if (since >= 0 && since < window)
	{
		/* (a clock set back does not gather) */
		*gather_ms = (window - since + 999) / 1000;
		return false;
	}
	return relay.woken &&
		!(relay.read_blocked && relay.batches != NULL && !relay.recorded);
}

void
inbox_outbox_relay_main(Datum main_arg)
{
	Oid			dbid = DatumGetObjectId(main_arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);
	pgstat_report_appname("inbox_outbox relay");

	/* no name the relay uses may resolve through a writable schema */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);

	/*
	 * The relay's own commits need not wait for their WAL to reach disk: a
	 * crash can lose only the last few of them, and each is safe to lose.
	 * A lost DELETE of acknowledged rows sends them again (a duplicate, as a
	 * crash between acknowledgement and DELETE would anyway), a lost failure
	 * record retries the row once more, a lost inbox prune is pruned again.
	 * Rounds then end without waiting for a flush, which shortens the wait
	 * of the events committed meanwhile.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);

	relay_api_take();
	shared = *relay_api->shared;
	if (shared == NULL)
		elog(ERROR, "inbox_outbox relay requires shared_preload_libraries");
	relay_faults_attach();

	relay_claim();

	/* after a server restart, start this database's ingestion workers */
	relay_begin_work("inbox_outbox relay: starting the subscriptions");
	relay_api->ingest_slots_sync();
	relay_end_work();

	relay_become_role();
	relay_floor_start();
	ereport(LOG,
			errmsg("inbox_outbox relay started for database \"%s\"",
				   relay.database_name));

	relay.round_context = AllocSetContextCreate(TopMemoryContext, "inbox_outbox relay round",
										  ALLOCSET_DEFAULT_SIZES);
	relay.work_context = AllocSetContextCreate(TopMemoryContext, "inbox_outbox relay recovery",
											   ALLOCSET_DEFAULT_SIZES);
	relay.transactional_id = MemoryContextStrdup(TopMemoryContext,
												 psprintf("inbox_outbox-" UINT64_FORMAT "-%u",
														  GetSystemIdentifier(), MyDatabaseId));
	relay.writer = pg_prng_uint64(&pg_global_prng_state);
	relay.last_record = -1;
	relay.read_due = true;
	relay.next_retry_ms = -1;

	while (!ShutdownRequestPending)
	{
		RelayBatch *batch;
		RelayRead	read;
		pg_ulid		from;
		int			n;
		long		timeout;
		long		gather_ms;
		long		due_ms;		/* the next poll or retry, from the last read */

		CHECK_FOR_INTERRUPTS();
		relay_process_reload();
		relay_exit_if_role_changed();
		if (*relay_api->refused_at_start & (REFUSED_BROKERS | REFUSED_KAFKA_CONFIG))
			relay_wait_until_resolved(RELAY_STOPPED,
									  psprintf("the value of %s in the configuration file was refused when the server started",
											   (*relay_api->refused_at_start & REFUSED_BROKERS) ?
											   "inbox_outbox.brokers" : "inbox_outbox.kafka_config"),
									  "Correct it and reload the configuration; the relay does not fall back to the default.",
									  producer_settings_accepted);
		relay_reconnect_if_changed();
		if (relay.producer == NULL)
		{
			if (!relay_make_producer())
			{
				relay_rest(1000);
				continue;
			}
			relay.read_due = true;
		}

		LWLockAcquire(shared->lock, LW_SHARED);
		relay.generation = shared->extension_generation;
		LWLockRelease(shared->lock);

		MemoryContextReset(relay.round_context);

		/*
		 * Record what Kafka finished with meanwhile.  A failure that could
		 * not be recorded leaves its row as it was, due at once: rest
		 * before reading it again, so that the relay does not spin on it.
		 */
		if (!relay_settle(false))
			relay_rest(Max(*relay_api->retry_backoff, 1000));
		if (relay.producer == NULL)
			continue;
		if (relay_pipeline_full())
		{
			TimestampTz shutdown_deadline = 0;
			bool		fatal = false;

			/* room comes with acknowledgements (relay_settle() above) */
			(void) relay_wait_step(&shutdown_deadline, &fatal);
			continue;
		}
		if (!relay_read_now(&gather_ms))
		{
			/*
			 * Nothing is known to wait that no read has seen, or the read
			 * waits to gather more: sleep until a commit, a delivery report,
			 * the gathering's end or the next poll.
			 */
			if (relay.batches == NULL)
				relay_set_state(relay.next_retry_ms >= 0 ? RELAY_BACKING_OFF : RELAY_IDLE);
			if (gather_ms < 0)
				relay_api->inbox_prune_paced(&relay.prune, relay_begin_work, relay_end_work);
			due_ms = *relay_api->poll_interval;
			if (relay.next_retry_ms >= 0)
				due_ms = Min(due_ms, Max(relay.next_retry_ms, RELAY_RETRY_MIN_WAIT_MS));
			timeout = due_ms;
			if (relay.batches != NULL)
				timeout = Min(timeout, 100);	/* as relay_wait_step() */
			if (gather_ms >= 0)
				timeout = Min(timeout, gather_ms);
			(void) relay_wait(timeout, gather_ms < 0);
			if (TimestampDifferenceExceeds(relay.last_read, GetCurrentTimestamp(), (int) due_ms))
				relay.read_due = true;
			kafka_serve(relay.producer);
			if (relay.batches != NULL)
				relay_note_kafka();
			continue;
		}

		relay_floor_settle();
		from = relay.floor;
		if (TimestampDifferenceExceeds(relay.last_full_read, GetCurrentTimestamp(),
									   (int) Min((int64) RELAY_FULL_READ_POLLS * *relay_api->poll_interval,
												 PG_INT32_MAX)))
			relay.from_start = true;
		if (relay.from_start)
			relay.last_full_read = GetCurrentTimestamp();
		batch = relay_batch_new();
		relay.read_due = false;
		relay.woken = false;
		relay.recorded = false;
		relay.read_blocked = false;
		relay.held_back = false;
		relay.last_read = GetCurrentTimestamp();

		/*
		 * Every commit that set the latch until now is in the read's
		 * snapshot: a wake-up it left would only read again for nothing.
		 * A request that came since the loop looked keeps it set, for the
		 * round's waits.
		 */
		ResetLatch(MyLatch);
		if (ShutdownRequestPending || ConfigReloadPending || InterruptPending)
			SetLatch(MyLatch);
		relay_begin_read("inbox_outbox relay: reading outbox", &from);
		relay_api->standby_mark_round();
		exit_unless_extension(relay.generation);
		relay_floor_check();
		relay_pause_if_copy();
		n = relay_store_fetch(batch->cxt, relay.from_start ? NULL : &from,
							  relay_in_flight,
							  Max(RELAY_PIPELINE_BYTES - relay.batch_bytes, 1),
							  &batch->rows, &relay.next_retry_ms, &read);
		relay_end_work();
		relay_floor_after_read(&read);
		batch->read = read;

		/*
		 * More rows follow a read that stopped short; but if it found only
		 * rows in flight (it starts where an open transaction may still
		 * commit), reading again before some of them are recorded would
		 * find the same.
		 */
		if (read.cut && n > 0)
			relay.read_due = true;
		else if (read.cut)
			relay.read_blocked = true;
		if (n > 0)
		{
			batch->n = relay_store_choose(&batch->rows, n, &batch->isolated);
			if (!relay_api->standby_wait_round(relay.slot, relay.database_name))
			{
				/* stopping, or read again: the rows stay */
				relay.from_start = read.from_start;
				relay.floor = from;
				relay.read_due = true;
				relay_batch_free(batch);
				if (!ShutdownRequestPending)
					relay_api->inbox_prune_paced(&relay.prune, relay_begin_work, relay_end_work);
				continue;
			}
			if (!relay_round(batch))
				relay_rest(Max(*relay_api->retry_backoff, 1000));

			/* a busy outbox must not starve the inbox's retention */
			relay_api->inbox_prune_paced(&relay.prune, relay_begin_work, relay_end_work);
			continue;
		}
		relay_batch_free(batch);
	}

	/* stopping: what is in flight gets inbox_outbox.shutdown_timeout */
	(void) relay_settle(true);
	relay_drop_producer(1000);
	ereport(LOG,
			errmsg("inbox_outbox relay for database \"%s\" stopped",
				   relay.database_name));
	proc_exit(0);
}
