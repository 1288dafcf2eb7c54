/*-------------------------------------------------------------------------
 *
 * ingest.c
 *	  The ingestion worker: consumes the Kafka topics of one subscription
 *	  into its database, exactly once, through the subscription's handler.
 *
 * The launcher starts one worker per slot that a subscription's commit (or
 * the relay, after a server restart) asked for (see ingest_admin.c).  The
 * worker:
 *
 *	1. reads its subscription and checks that the database is the one the
 *	   outbox belongs to (a restored copy or a template copy would consume
 *	   the same topics a second time into the copy: it waits, as the relay
 *	   does, until adopt_outbox()) and that the handler can run;
 *	2. makes a consumer (kafka_consumer.c), finds the topics' partitions,
 *	   takes its share (partition % workers = its number), and reads their
 *	   stored offsets.  A partition without an offset row gets one first,
 *	   committed before anything is read: start_from's end of the log for a
 *	   topic the subscription never read, the earliest offset for a
 *	   partition added later (its first messages may already be there);
 *	3. assigns exactly those partitions at exactly those offsets;
 *	4. takes what librdkafka has fetched, up to batch_size messages, and
 *	   commits them in one transaction (ingest_store.c); sleeps on its latch
 *	   and the consumer's event pipe when nothing is ready.
 *
 * Failures (see ingest_store.c for how errors are classified):
 *	- transient: the same batch again after inbox_outbox.retry_backoff,
 *	  doubling, not counted against any message;
 *	- a message's fault: the batch is replayed one message per transaction.
 *	  A message that fails is held with the rest of its partition (which
 *	  librdkafka stops fetching) and tried again after a backoff; the other
 *	  partitions go on.  After max_attempts failures it goes to
 *	  ingest_dead_letter in the transaction that moves its partition's
 *	  offset past it.  A message without an event id is dead-lettered at
 *	  once: no retry can give it one;
 *	- an unusable handler: the worker stops with the error in
 *	  ingest_status, and is not started again until the subscription
 *	  changes (subscribe() again, pause and resume);
 *	- fenced (an offset row is not where the worker is: a seek, an
 *	  unsubscribe): the worker starts over from step 1;
 *	- an offset Kafka no longer has (retention): an ingest_gap row, then
 *	  on_gap: 'stop' stops that partition until subscription_seek() moves
 *	  it, 'earliest' and 'latest' move it there and go on.
 *
 * A change of the subscription (subscribe(), subscription_seek(), resume)
 * bumps the slot's generation and sets the worker's latch: the worker starts
 * over.  pause and unsubscribe make the slot unwanted: the worker leaves.
 * SIGTERM ends the worker at once (die()): nothing is in flight that is
 * not in PostgreSQL, so there is nothing to wait for.  Partitions added to
 * a topic are found within INGEST_METADATA_MS.
 *
 * librdkafka runs only here and in the relay (this is the relay library);
 * its callbacks only record (kafka_client.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ingest_store.h"
#include "kafka_consumer.h"
#include "pg_compat.h"
#include "relay_api.h"
#include "shared_state.h"

PGDLLEXPORT void inbox_outbox_ingest_main(Datum main_arg);

#define INGEST_IDLE_WAIT_MS		1000
#define INGEST_METADATA_MS		10000	/* how often partitions are counted */
#define INGEST_KAFKA_TIMEOUT_MS	5000
#define INGEST_RECHECK_MS		5000	/* a copy, an unreachable broker */
#define INGEST_MAX_BACKOFF_MS	60000
#define INGEST_BATCH_MAX_BYTES	(16 * 1024 * 1024)	/* keys and values of a batch */

typedef struct IngestWorker
{
	IngestSlot *slot;
	uint32		generation;		/* of the subscription as loaded */
	IngestSubscription *sub;
	KafkaConsumer *consumer;
	IngestPartition *parts;
	int			nparts;
	List	   *topic_counts;	/* partitions per topic when assigned */
	TimestampTz last_metadata;
	bool		restart;		/* set on a fence, a gap that moves on */
	char	   *brokers;		/* the Kafka settings of the consumer */
	char	   *kafka_config;
	MemoryContext run_cxt;		/* reset at every start */
	MemoryContext batch_cxt;	/* reset after every batch */
} IngestWorker;

static IngestWorker w;
static InboxOutboxShared *shared;

static void worker_reload(void);

/*
 * Shared memory
 */
static void
set_state(IngestState state)
{
	if (w.slot->state != state)
	{
		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		w.slot->state = state;
		LWLockRelease(shared->lock);
	}
}

static void
record_error(const char *message)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	strlcpy(w.slot->last_error, message, sizeof(w.slot->last_error));
	w.slot->last_error_at = GetCurrentTimestamp();
	LWLockRelease(shared->lock);
}

static void
clear_error(void)
{
	if (w.slot->last_error[0] == '\0')
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	w.slot->last_error[0] = '\0';
	LWLockRelease(shared->lock);
}

static void
count(const IngestTally *tally, int64 dead_lettered)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	w.slot->consumed += tally->consumed;
	w.slot->duplicates += tally->duplicates;
	w.slot->dead_lettered += dead_lettered;
	w.slot->last_commit_at = GetCurrentTimestamp();
	LWLockRelease(shared->lock);
}

static void
ingest_shmem_exit(int code, Datum arg)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (w.slot->pid == MyProcPid)
	{
		w.slot->pid = 0;
		w.slot->latch = NULL;
	}
	LWLockRelease(shared->lock);
	relay_api->launcher_wake(false);
}

/* Whether the subscription changed or no longer wants this worker. */
static bool
must_restart(void)
{
	bool		changed;

	LWLockAcquire(shared->lock, LW_SHARED);
	changed = !w.slot->wanted || w.slot->generation != w.generation;
	LWLockRelease(shared->lock);
	return changed;
}

/* Leave for good: the subscription is gone, paused, or has fewer workers. */
pg_noreturn static void
leave(const char *why)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (w.slot->generation == w.generation)
		w.slot->wanted = false;
	LWLockRelease(shared->lock);
	ereport(LOG,
			errmsg("inbox_outbox ingestion worker %d of subscription \"%s\" stops: %s",
				   w.slot->worker, w.slot->subscription, why));
	proc_exit(0);
}

/* Stop until the subscription changes (see launcher.c). */
pg_noreturn static void
stop_for_good(IngestState state, const char *message)
{
	record_error(message);
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	w.slot->state = state;
	w.slot->stopped = true;
	w.slot->stopped_generation = w.generation;
	LWLockRelease(shared->lock);
	ereport(LOG,
			errmsg("inbox_outbox ingestion worker %d of subscription \"%s\" stopped: %s",
				   w.slot->worker, w.slot->subscription, message),
			errhint("Correct the cause, then call inbox_outbox.subscribe() again, or subscription_pause() and subscription_resume()."));
	proc_exit(0);
}

/*
 * Sleep for a backoff: only a change of the subscription, a signal or the
 * postmaster's death cut it short, not the consumer's pipe, which stays
 * readable while fetched messages wait to be taken.  Returns false if the
 * worker must start over.
 */
static bool
worker_backoff(long ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	for (;;)
	{
		long		left = (long) ((until - GetCurrentTimestamp()) / 1000);

		if (left <= 0)
			return true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
			worker_reload();
		if (must_restart() || w.restart)
			return false;
	}
}

/*
 * After a reload: start over (a new consumer) if the brokers or the Kafka
 * properties changed, as rotated credentials must reach the consumer.
 */
static void
worker_reload(void)
{
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	if (w.brokers != NULL &&
		(strcmp(w.brokers, *relay_api->brokers ? *relay_api->brokers : "") != 0 ||
		 strcmp(w.kafka_config, *relay_api->kafka_config ? *relay_api->kafka_config : "") != 0))
	{
		ereport(LOG,
				errmsg("inbox_outbox ingestion worker %d of subscription \"%s\" reconnects: the Kafka settings changed",
					   w.slot->worker, w.slot->subscription));
		w.restart = true;
	}
}

static void
worker_wait(long timeout_ms)
{
	int			events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;

	if (w.consumer != NULL)
		events |= WL_SOCKET_READABLE;
	(void) WaitLatchOrSocket(MyLatch, events,
							 w.consumer ? w.consumer->pipefd[0] : PGINVALID_SOCKET,
							 Max(timeout_ms, 1), PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
		worker_reload();
}

static long
backoff_ms(int attempts)
{
	int64		ms = Max(*relay_api->retry_backoff, 10);

	for (int i = 1; i < attempts && ms < INGEST_MAX_BACKOFF_MS; i++)
		ms *= 2;
	return (long) Min(ms, INGEST_MAX_BACKOFF_MS);
}

/*
 * Messages
 */
static bool
is_text(const char *data, size_t len)
{
	return len < MaxAllocSize && pg_verifymbstr(data, (int) len, true);
}

static void
append_json_value(StringInfo buf, const char *data, size_t len)
{
	if (data == NULL)
		appendStringInfoString(buf, "null");
	else if (is_text(data, len))
		escape_json(buf, pnstrdup(data, len));
	else
	{
		StringInfoData hex;

		initStringInfo(&hex);
		appendStringInfoString(&hex, "\\x");
		for (size_t i = 0; i < len; i++)
			appendStringInfo(&hex, "%02x", (unsigned char) data[i]);
		escape_json(buf, hex.data);
	}
}

/* The headers as a jsonb object (the last of equal names wins), or 0. */
static Datum
headers_jsonb(rd_kafka_headers_t *headers)
{
	StringInfoData buf;
	const char *name;
	const void *value;
	size_t		size;
	size_t		n = rd_kafka_header_cnt(headers);

	if (n == 0)
		return (Datum) 0;
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (size_t i = 0; i < n; i++)
	{
		if (rd_kafka_header_get_all(headers, i, &name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
			break;
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		append_json_value(&buf, name, strlen(name));
		appendStringInfoChar(&buf, ':');
		append_json_value(&buf, value, size);
	}
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

static bytea *
to_bytea(const void *data, size_t len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	return b;
}

static void
set_event_id(IngestMessage *m, rd_kafka_message_t *msg, rd_kafka_headers_t *headers)
{
	const char *mode = w.sub->event_id;
	const void *value = NULL;
	size_t		size = 0;

	if (strcmp(mode, "offset") == 0)
	{
		m->event_id = psprintf("%s/%d/" INT64_FORMAT, m->part->topic,
							   m->part->partition, m->offset);
		return;
	}
	if (strcmp(mode, "key") == 0)
	{
		value = msg->key;
		size = msg->key_len;
		if (value == NULL)
		{
			m->event_id_error = pstrdup("It has no key, and the subscription takes the event id from the key.");
			return;
		}
	}
	else
	{
		const char *name = mode + strlen("header:");

		if (headers == NULL ||
			rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
			value == NULL)
		{
			m->event_id_error = psprintf("It has no header \"%s\", from which the subscription takes the event id.",
										 name);
			return;
		}
	}
	if (size == 0 || size > INBOX_EVENT_ID_MAXLEN || !is_text(value, size))
	{
		m->event_id_error = psprintf("Its event id is empty, longer than %d bytes, or not valid text.",
									 INBOX_EVENT_ID_MAXLEN);
		return;
	}
	m->event_id = pnstrdup(value, size);
}

static IngestMessage *
make_message(IngestPartition *part, rd_kafka_message_t *msg)
{
	IngestMessage *m = palloc0(sizeof(IngestMessage));
	rd_kafka_headers_t *headers = NULL;
	int64		ts;

	m->part = part;
	m->offset = msg->offset;
	if (msg->key != NULL)
		m->key = to_bytea(msg->key, msg->key_len);
	if (msg->payload != NULL)
		m->payload = to_bytea(msg->payload, msg->len);
	if (rd_kafka_message_headers(msg, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR)
		headers = NULL;
	if (headers != NULL)
		m->headers = headers_jsonb(headers);
	ts = rd_kafka_message_timestamp(msg, NULL);
	if (ts >= 0)
	{
		m->has_ts = true;
		m->ts = (TimestampTz) (ts - ((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) *
									 SECS_PER_DAY * 1000)) * 1000;
	}
	set_event_id(m, msg, headers);
	return m;
}

static IngestMessage *
copy_message(const IngestMessage *m)
{
	IngestMessage *c = palloc(sizeof(IngestMessage));

	*c = *m;
	if (m->key)
	{
		c->key = palloc(VARSIZE(m->key));
		memcpy(c->key, m->key, VARSIZE(m->key));
	}
	if (m->payload)
	{
		c->payload = palloc(VARSIZE(m->payload));
		memcpy(c->payload, m->payload, VARSIZE(m->payload));
	}
	if (m->headers)
		c->headers = datumCopy(m->headers, false, -1);
	if (m->event_id)
		c->event_id = pstrdup(m->event_id);
	if (m->event_id_error)
		c->event_id_error = pstrdup(m->event_id_error);
	c->source = NULL;
	return c;
}

static void
free_message(IngestMessage *m)
{
	if (m->key)
		pfree(m->key);
	if (m->payload)
		pfree(m->payload);
	if (m->headers)
		pfree(DatumGetPointer(m->headers));
	if (m->event_id)
		pfree(m->event_id);
	if (m->event_id_error)
		pfree(m->event_id_error);
	pfree(m);
}

/*
 * Partitions
 */
static IngestPartition *
find_part(const char *topic, int32 partition)
{
	for (int i = 0; i < w.nparts; i++)
	{
		if (w.parts[i].partition == partition && strcmp(w.parts[i].topic, topic) == 0)
			return &w.parts[i];
	}
	return NULL;
}

/* Hold a message (a copy) until its partition's retry. */
static void
hold(IngestMessage *m, long wait_ms)
{
	IngestPartition *part = m->part;
	MemoryContext old = MemoryContextSwitchTo(w.run_cxt);

	if (part->held == NIL)
	{
		part->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
		if (!part->paused)
		{
			kafka_consumer_pause(w.consumer, part->topic, part->partition, true);
			part->paused = true;
		}
	}
	part->held = lappend(part->held, copy_message(m));
	MemoryContextSwitchTo(old);
}

static void
advance(IngestMessage *m)
{
	m->part->next_offset = m->offset + 1;
}

/*
 * Try the message again after ms: hold it (with the rest of its partition)
 * if it is not held yet, or move the held partition's retry time.
 */
static void
retry_later(IngestMessage *m, bool held, long ms)
{
	if (held)
		m->part->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	else
		hold(m, ms);
}

/*
 * What to do with one message that failed on its own: hold it for a retry,
 * or dead-letter it.  Returns whether its partition moved past it.
 */
static bool
one_failed(IngestMessage *m, IngestOutcome outcome, IngestFailure *failure,
		   bool held)
{
	IngestFailure dl_failure;
	IngestOutcome dl;

	if (outcome == INGEST_TRANSIENT)
	{
		/* not the message's fault: try again later, uncounted */
		record_error(failure->message);
		m->part->transient++;
		retry_later(m, held, backoff_ms(m->part->transient));
		return false;
	}
	m->attempts++;
	if (m->event_id != NULL && m->attempts < w.sub->max_attempts)
	{
		record_error(failure->message);
		retry_later(m, held, backoff_ms(m->attempts));
		return false;
	}
	dl = ingest_store_dead_letter(w.sub, m, failure, &dl_failure);
	if (dl == INGEST_DONE)
	{
		IngestTally none = {0, 0};

		ereport(LOG,
				errmsg("inbox_outbox subscription \"%s\" moved the message at offset " INT64_FORMAT " of %s [%d] to ingest_dead_letter after %d attempts: %s",
					   w.sub->name, m->offset, m->part->topic, m->part->partition,
					   m->attempts, failure->message));
		advance(m);
		count(&none, 1);
		return true;
	}
	if (dl == INGEST_FENCED)
		w.restart = true;
	else
	{
		record_error(dl_failure.message ? dl_failure.message : "could not write a dead letter");
		retry_later(m, held, backoff_ms(m->attempts));
	}
	return false;
}

/* Deliver one message in a transaction of its own. */
static bool
deliver_one(IngestMessage *m, bool held)
{
	IngestFailure failure;
	IngestTally tally = {0, 0};
	IngestOutcome outcome;

	if (m->event_id == NULL)
	{
		/* no retry can give it an event id */
		m->attempts = Max(m->attempts, w.sub->max_attempts - 1);
		failure.sqlstate = ERRCODE_INVALID_PARAMETER_VALUE;
		failure.message = psprintf("message has no event id: %s", m->event_id_error);
		return one_failed(m, INGEST_PERMANENT, &failure, held);
	}
	outcome = ingest_store_batch(w.sub, &m, 1, &failure, &tally);
	switch (outcome)
	{
		case INGEST_DONE:
			advance(m);
			m->part->transient = 0;
			count(&tally, 0);
			return true;
		case INGEST_FENCED:
			w.restart = true;
			return false;
		case INGEST_UNUSABLE:
			stop_for_good(INGEST_STOPPED_ERROR, failure.message);
			break;
		default:
			break;
	}
	return one_failed(m, outcome, &failure, held);
}

/* Try again the held messages whose time has come. */
static void
serve_held(TimestampTz now)
{
	for (int i = 0; i < w.nparts && !w.restart; i++)
	{
		IngestPartition *part = &w.parts[i];

		if (part->held == NIL || part->retry_at > now)
			continue;
		while (part->held != NIL && !w.restart)
		{
			IngestMessage *m = linitial(part->held);

			set_state(INGEST_RETRYING);
			if (!deliver_one(m, true))
				break;
			part->held = list_delete_first(part->held);
			free_message(m);
		}
		if (part->held == NIL && part->paused && !w.restart)
		{
			kafka_consumer_pause(w.consumer, part->topic, part->partition, false);
			part->paused = false;
		}
	}
}

/* The earliest time a held partition is due, or -1. */
static long
held_wait_ms(TimestampTz now)
{
	long		wait = -1;

	for (int i = 0; i < w.nparts; i++)
	{
		long		ms;

		if (w.parts[i].held == NIL)
			continue;
		ms = (long) Max((w.parts[i].retry_at - now) / 1000, 0);
		if (wait < 0 || ms < wait)
			wait = ms;
	}
	return wait;
}

/* Commit a batch; on a message's error, replay it one by one. */
static void
process_batch(IngestMessage **batch, int n)
{
	IngestFailure failure;
	IngestTally tally = {0, 0};
	IngestOutcome outcome;
	int			transient = 0;

	for (;;)
	{
		/* the high watermarks the offset rows record, once per partition */
		for (int i = 0; i < w.nparts; i++)
		{
			int64		high = kafka_consumer_high_seen(w.consumer, w.parts[i].topic,
														w.parts[i].partition);

			if (high >= 0)
				w.parts[i].high = high;
		}
		outcome = ingest_store_batch(w.sub, batch, n, &failure, &tally);
		if (outcome != INGEST_TRANSIENT)
			break;
		/* the whole batch again, after a backoff */
		set_state(INGEST_RETRYING);
		record_error(failure.message);
		if (!worker_backoff(backoff_ms(++transient)))
		{
			w.restart = true;
			return;
		}
	}

	switch (outcome)
	{
		case INGEST_DONE:
			for (int i = 0; i < n; i++)
				advance(batch[i]);
			count(&tally, 0);
			clear_error();
			return;
		case INGEST_FENCED:
			ereport(LOG,
					errmsg("inbox_outbox subscription \"%s\": a stored offset moved, reading them again",
						   w.sub->name));
			w.restart = true;
			return;
		case INGEST_UNUSABLE:
			stop_for_good(INGEST_STOPPED_ERROR, failure.message);
			break;
		default:
			break;
	}

	/* a message is at fault: one transaction per message */
	for (int i = 0; i < n && !w.restart; i++)
	{
		IngestMessage *m = batch[i];

		if (m->part->held != NIL)
			hold(m, 0);
		else
			(void) deliver_one(m, false);
	}
}

/*
 * A consumer error: a retention gap, or something to show.
 */
static void
consumer_error(rd_kafka_message_t *msg)
{
	IngestPartition *part = NULL;
	int64		low,
				high,
				gap_end;
	char		errbuf[256];

	if (msg->rkt != NULL)
		part = find_part(rd_kafka_topic_name(msg->rkt), msg->partition);
	if (msg->err != RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || part == NULL)
	{
		if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			record_error(psprintf("Kafka: %s", rd_kafka_message_errstr(msg)));
		return;
	}
	if (!kafka_consumer_bounds(w.consumer, part->topic, part->partition,
							   INGEST_KAFKA_TIMEOUT_MS, &low, &high,
							   errbuf, sizeof(errbuf)))
	{
		record_error(errbuf);
		w.restart = true;
		return;
	}
	/* the messages never read: up to the log's start, or past its end */
	gap_end = part->next_offset < low ? low : high;
	if (strcmp(w.sub->on_gap, "stop") == 0)
	{
		ingest_store_gap(w.sub, part, gap_end, "stopped", -1);
		kafka_consumer_pause(w.consumer, part->topic, part->partition, true);
		part->paused = true;
		part->stopped = true;
		record_error(psprintf("offset " INT64_FORMAT " of %s [%d] is no longer in Kafka (it starts at " INT64_FORMAT "): partition stopped",
							  part->next_offset, part->topic, part->partition, low));
		ereport(WARNING,
				errmsg("inbox_outbox subscription \"%s\" stopped reading %s [%d]: offset " INT64_FORMAT " is no longer in Kafka",
					   w.sub->name, part->topic, part->partition, part->next_offset),
				errdetail("The partition starts at offset " INT64_FORMAT ".", low),
				errhint("Move it with inbox_outbox.subscription_seek(); the gap is in inbox_outbox.ingest_gap."));
		return;
	}
	if (strcmp(w.sub->on_gap, "earliest") == 0)
		ingest_store_gap(w.sub, part, gap_end, "skipped to earliest", low);
	else
		ingest_store_gap(w.sub, part, gap_end, "skipped to latest", high);
	ereport(WARNING,
			errmsg("inbox_outbox subscription \"%s\" skipped a gap in %s [%d] from offset " INT64_FORMAT,
				   w.sub->name, part->topic, part->partition, part->next_offset));
	w.restart = true;
}

/* Whether a topic's partition count changed since the assignment. */
static bool
partitions_changed(void)
{
	ListCell   *lt,
			   *lc;
	char		errbuf[256];

	forboth(lt, w.sub->topics, lc, w.topic_counts)
	{
		int			n;

		CHECK_FOR_INTERRUPTS();
		n = kafka_consumer_partitions(w.consumer, lfirst(lt),
												  w.consumer->brokers_down ? 500 : 2000,
												  errbuf, sizeof(errbuf));

		/* an answer from the brokers: they are back */
		if (n >= 0)
			w.consumer->brokers_down = false;
		if (n >= 0 && n != lfirst_int(lc))
		{
			ereport(LOG,
					errmsg("inbox_outbox subscription \"%s\": topic \"%s\" now has %d partitions",
						   w.sub->name, (char *) lfirst(lt), n));
			return true;
		}
	}
	return false;
}

/*
 * Starting
 */
static void
drop_consumer(void)
{
	for (int i = 0; i < w.nparts; i++)
		w.parts[i].held = NIL;	/* freed with run_cxt */
	if (w.consumer != NULL)
		kafka_consumer_destroy(w.consumer);
	w.consumer = NULL;
	w.parts = NULL;
	w.nparts = 0;
}

/*
 * Steps 1 to 3 (see the top of the file).  False if there is something to
 * wait out (a copy, an unreachable broker); leaves or stops for good
 * itself.
 */
static bool
start(void)
{
	IngestHandlerProblem problem;
	const char *reason;
	const char *hint;
	bool		copy;
	ListCell   *lc;
	char		errbuf[256];
	List	   *counts = NIL;
	int			max_parts = 0;
	char	   *dbname;
	bool		wanted;

	drop_consumer();
	MemoryContextReset(w.run_cxt);
	MemoryContextSwitchTo(w.run_cxt);
	w.restart = false;

	LWLockAcquire(shared->lock, LW_SHARED);
	w.generation = w.slot->generation;
	wanted = w.slot->wanted;
	LWLockRelease(shared->lock);
	if (!wanted)
	{
		ereport(LOG,
				errmsg("inbox_outbox ingestion worker %d of subscription \"%s\" stops: no longer wanted",
					   w.slot->worker, w.slot->subscription));
		proc_exit(0);
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "inbox_outbox ingest: reading its subscription");
	MemoryContextSwitchTo(w.run_cxt);
	dbname = pstrdup(get_database_name(MyDatabaseId));
	w.sub = ingest_store_subscription(w.slot->subscription);
	if (w.sub == NULL)
		leave("the subscription no longer exists");
	if (!w.sub->enabled)
		leave("the subscription is paused");
	if (w.slot->worker >= w.sub->workers)
		leave("the subscription has fewer workers");
	copy = !relay_api->outbox_identity_verify(&reason, &hint);
	if (!copy && !relay_api->ingest_handler_usable(w.sub->handler, w.sub->owner, &problem))
		stop_for_good(INGEST_STOPPED_ERROR, problem.message);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(w.run_cxt);
	pgstat_report_activity(STATE_IDLE, "");
	if (copy)
	{
		set_state(INGEST_PAUSED_COPY);
		record_error(reason);
		return false;
	}

	if (w.brokers)
		pfree(w.brokers);
	if (w.kafka_config)
		pfree(w.kafka_config);
	w.brokers = MemoryContextStrdup(TopMemoryContext,
									*relay_api->brokers ? *relay_api->brokers : "");
	w.kafka_config = MemoryContextStrdup(TopMemoryContext,
										 *relay_api->kafka_config ? *relay_api->kafka_config : "");
	w.consumer = kafka_consumer_new(*relay_api->brokers, *relay_api->kafka_config,
									psprintf("inbox_outbox-%s-%s",
											 dbname,
											 w.sub->name),
									psprintf("inbox_outbox-ingest-%s-%d",
											 w.sub->name, w.slot->worker));

	/* the topics' partitions, and this worker's share */
	foreach(lc, w.sub->topics)
	{
		int			n = kafka_consumer_partitions(w.consumer, lfirst(lc),
												  INGEST_KAFKA_TIMEOUT_MS,
												  errbuf, sizeof(errbuf));

		if (n < 0)
		{
			set_state(INGEST_BROKER_UNREACHABLE);
			record_error(errbuf);
			drop_consumer();
			return false;
		}
		counts = lappend_int(counts, n);
		max_parts += n;
	}
	w.topic_counts = counts;
	w.parts = palloc0(sizeof(IngestPartition) * Max(max_parts, 1));

	/*
	 * Their offsets.  A topic the subscription never read gets a first
	 * offset for every partition at once (start_from's end of the log), so
	 * that every worker of the subscription starts from the same point; a
	 * partition added later starts at its earliest offset.  Kafka is asked
	 * between two transactions, not inside one.
	 */
	{
		ListCell   *lt,
				   *ln;
		int			ntopic = 0;
		int64	  **stored = palloc0(sizeof(int64 *) * list_length(w.sub->topics));
		bool	  **asked = palloc0(sizeof(bool *) * list_length(w.sub->topics));
		bool	   *topic_read = palloc0(sizeof(bool) * list_length(w.sub->topics));
		bool		missing = false;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		MemoryContextSwitchTo(w.run_cxt);
		forboth(lt, w.sub->topics, ln, counts)
		{
			stored[ntopic] = palloc(sizeof(int64) * Max(lfirst_int(ln), 1));
			asked[ntopic] = palloc0(sizeof(bool) * Max(lfirst_int(ln), 1));
			for (int p = 0; p < lfirst_int(ln); p++)
			{
				stored[ntopic][p] = ingest_store_offset(w.sub->name, lfirst(lt), p);
				if (stored[ntopic][p] >= 0)
					topic_read[ntopic] = true;
				else
					missing = true;
			}
			ntopic++;
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(w.run_cxt);

		if (missing)
		{
			/* ask Kafka where each missing partition starts */
			ntopic = 0;
			forboth(lt, w.sub->topics, ln, counts)
			{
				bool		latest = !topic_read[ntopic] &&
					strcmp(w.sub->start_from, "latest") == 0;

				for (int p = 0; p < lfirst_int(ln); p++)
				{
					int64		low,
								high;

					if (stored[ntopic][p] >= 0)
						continue;
					/* another worker's partitions too, for a topic never read */
					if (topic_read[ntopic] && p % w.sub->workers != w.slot->worker)
						continue;
					CHECK_FOR_INTERRUPTS();
					if (!kafka_consumer_bounds(w.consumer, lfirst(lt), p,
											   INGEST_KAFKA_TIMEOUT_MS, &low, &high,
											   errbuf, sizeof(errbuf)))
					{
						set_state(INGEST_BROKER_UNREACHABLE);
						record_error(errbuf);
						drop_consumer();
						return false;
					}
					stored[ntopic][p] = latest ? high : low;
					asked[ntopic][p] = true;
				}
				ntopic++;
			}

			/* write them; a row another worker or a seek made first wins */
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			MemoryContextSwitchTo(w.run_cxt);
			ntopic = 0;
			forboth(lt, w.sub->topics, ln, counts)
			{
				for (int p = 0; p < lfirst_int(ln); p++)
				{
					if (!asked[ntopic][p])
						continue;
					stored[ntopic][p] = ingest_store_start_offset(w.sub->name, lfirst(lt), p,
																  stored[ntopic][p]);
				}
				ntopic++;
			}
			PopActiveSnapshot();
			CommitTransactionCommand();
			MemoryContextSwitchTo(w.run_cxt);
		}

		/* this worker's share */
		ntopic = 0;
		forboth(lt, w.sub->topics, ln, counts)
		{
			for (int p = 0; p < lfirst_int(ln); p++)
			{
				if (p % w.sub->workers != w.slot->worker)
					continue;
				if (stored[ntopic][p] < 0)
					elog(ERROR, "offset of %s [%d] missing after it was written",
						 (char *) lfirst(lt), p);
				w.parts[w.nparts].topic = MemoryContextStrdup(w.run_cxt, lfirst(lt));
				w.parts[w.nparts].partition = p;
				w.parts[w.nparts].next_offset = stored[ntopic][p];
				w.parts[w.nparts].high = -1;
				w.nparts++;
			}
			ntopic++;
		}
	}

	{
		KafkaStart *starts = palloc(sizeof(KafkaStart) * Max(w.nparts, 1));

		for (int i = 0; i < w.nparts; i++)
		{
			starts[i].topic = w.parts[i].topic;
			starts[i].partition = w.parts[i].partition;
			starts[i].offset = w.parts[i].next_offset;
		}
		kafka_consumer_assign(w.consumer, starts, w.nparts);
	}
	w.last_metadata = GetCurrentTimestamp();
	set_state(INGEST_IDLE);
	clear_error();
	ereport(DEBUG1,
			errmsg_internal("inbox_outbox ingestion worker %d of \"%s\" reads %d partitions",
							w.slot->worker, w.sub->name, w.nparts));
	return true;
}

/* Commit what the batch holds, then forget it. */
static void
flush_batch(IngestMessage **batch, int n)
{
	set_state(INGEST_CONSUMING);
	pgstat_report_activity(STATE_RUNNING, "inbox_outbox ingest: applying a batch");
	process_batch(batch, n);
	pgstat_report_activity(STATE_IDLE, "");
	MemoryContextSwitchTo(w.run_cxt);
	MemoryContextReset(w.batch_cxt);
	MemoryContextSwitchTo(w.batch_cxt);
}

/* Step 4, until the worker must start over. */
static void
run(void)
{
	int			max = w.sub->batch_size;
	rd_kafka_message_t **msgs = MemoryContextAlloc(w.run_cxt, sizeof(rd_kafka_message_t *) * max);
	IngestMessage **batch = MemoryContextAlloc(w.run_cxt, sizeof(IngestMessage *) * max);

	while (!w.restart)
	{
		TimestampTz now;
		int			n;
		int			nbatch = 0;
		size_t		bytes = 0;
		long		wait;

		CHECK_FOR_INTERRUPTS();
		if (must_restart())
			return;
		now = GetCurrentTimestamp();
		serve_held(now);
		if (w.restart)
			return;

		/*
		 * Partitions added to a topic, every INGEST_METADATA_MS, busy or
		 * not; while librdkafka says the brokers are down, a metadata
		 * answer every idle wait tells when they are back.
		 */
		if (TimestampDifferenceExceeds(w.last_metadata, now, INGEST_METADATA_MS) ||
			w.consumer->brokers_down)
		{
			w.last_metadata = now;
			if (partitions_changed())
				return;
		}

		n = kafka_consumer_take(w.consumer, msgs, max);
		if (n == 0)
		{
			bool		held = false;

			for (int i = 0; i < w.nparts; i++)
				held |= (w.parts[i].held != NIL);
			/* a stopped partition shows in ingest_status by its gap row */
			if (!held)
				set_state(w.consumer->brokers_down ? INGEST_BROKER_UNREACHABLE :
						  INGEST_IDLE);
			wait = held_wait_ms(now);
			worker_wait(wait >= 0 ? Min(wait, INGEST_IDLE_WAIT_MS) : INGEST_IDLE_WAIT_MS);
			continue;
		}

		MemoryContextSwitchTo(w.batch_cxt);
		for (int i = 0; i < n; i++)
		{
			rd_kafka_message_t *msg = msgs[i];
			IngestPartition *part;

			/* large messages: a batch holds at most INGEST_BATCH_MAX_BYTES */
			if (nbatch > 0 && bytes >= INGEST_BATCH_MAX_BYTES && !w.restart)
			{
				flush_batch(batch, nbatch);
				nbatch = 0;
				bytes = 0;
			}
			if (w.restart)
			{
				rd_kafka_message_destroy(msg);
				continue;
			}
			if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR)
			{
				/*
				 * What was fetched before the error comes first: commit it,
				 * so that a gap starts where the partition really stands.
				 */
				if (nbatch > 0)
				{
					flush_batch(batch, nbatch);
					nbatch = 0;
					bytes = 0;
				}
				if (!w.restart)
					consumer_error(msg);
				rd_kafka_message_destroy(msg);
				continue;
			}
			part = find_part(rd_kafka_topic_name(msg->rkt), msg->partition);
			if (part == NULL || part->stopped || msg->offset < part->next_offset ||
				(nbatch > 0 && batch[nbatch - 1]->part == part &&
				 msg->offset <= batch[nbatch - 1]->offset))
			{
				rd_kafka_message_destroy(msg);
				continue;
			}
			if (part->held != NIL)
			{
				IngestMessage *last = llast(part->held);

				if (msg->offset > last->offset)
					hold(make_message(part, msg), 0);
				rd_kafka_message_destroy(msg);
				continue;
			}
			batch[nbatch++] = make_message(part, msg);
			bytes += msg->len + msg->key_len;
			rd_kafka_message_destroy(msg);
		}
		if (nbatch > 0 && !w.restart)
			flush_batch(batch, nbatch);
		MemoryContextSwitchTo(w.run_cxt);
		MemoryContextReset(w.batch_cxt);
	}
}

/* Take the slot: write our pid into it, unless it is not ours to take. */
static void
claim_slot(int slotno)
{
	bool		ok;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	w.slot = &shared->ingest[slotno];
	ok = (w.slot->dbid == MyDatabaseId && w.slot->wanted && w.slot->pid == 0);
	if (ok)
	{
		w.slot->pid = MyProcPid;
		w.slot->latch = MyLatch;
		w.slot->state = INGEST_STARTING;
	}
	LWLockRelease(shared->lock);
	if (!ok)
		proc_exit(0);
	before_shmem_exit(ingest_shmem_exit, (Datum) 0);
}

void
inbox_outbox_ingest_main(Datum main_arg)
{
	int			slotno = DatumGetInt32(main_arg);
	Oid			dbid;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	relay_api_take();
	shared = *relay_api->shared;
	if (shared == NULL || slotno < 0 || slotno >= INGEST_MAX_WORKERS)
		elog(ERROR, "inbox_outbox ingestion worker requires shared_preload_libraries");
	LWLockAcquire(shared->lock, LW_SHARED);
	dbid = shared->ingest[slotno].dbid;
	LWLockRelease(shared->lock);
	if (!OidIsValid(dbid))
		proc_exit(0);

	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);
	claim_slot(slotno);
	pgstat_report_appname("inbox_outbox ingest");
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);

	w.run_cxt = AllocSetContextCreate(TopMemoryContext, "inbox_outbox ingest",
									  ALLOCSET_DEFAULT_SIZES);
	w.batch_cxt = AllocSetContextCreate(TopMemoryContext, "inbox_outbox ingest batch",
										ALLOCSET_DEFAULT_SIZES);
	ereport(LOG,
			errmsg("inbox_outbox ingestion worker %d of subscription \"%s\" started",
				   w.slot->worker, w.slot->subscription));

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (!start())
		{
			/* a copy, or no broker: look again later, or when told */
			worker_wait(INGEST_RECHECK_MS);
			continue;
		}
		run();
	}
}
