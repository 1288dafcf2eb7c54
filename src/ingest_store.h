/*-------------------------------------------------------------------------
 *
 * ingest_store.h
 *	  The database side of an ingestion worker (ingest_store.c): its
 *	  subscription, its offsets, and the transaction of each batch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_INGEST_STORE_H
#define INBOX_OUTBOX_INGEST_STORE_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

typedef struct IngestSubscription
{
	char	   *name;
	Oid			owner;
	Oid			handler;
	List	   *topics;			/* of char * */
	char	   *start_from;
	char	   *event_id;		/* 'header:<name>', 'key' or 'offset' */
	int			batch_size;
	int			max_attempts;
	char	   *on_gap;
	int			workers;
	bool		enabled;
} IngestSubscription;

/* A partition the worker reads. */
typedef struct IngestPartition
{
	char	   *topic;
	int32		partition;
	int64		next_offset;	/* stored: the first offset not yet done */
	int64		high;			/* Kafka's high watermark as last seen, or -1 */
	List	   *held;			/* IngestMessage *, waiting for retry_at */
	TimestampTz retry_at;
	int			transient;		/* transient failures in a row */
	bool		paused;			/* in librdkafka */
	bool		stopped;		/* at a retention gap (on_gap = 'stop') */
} IngestPartition;

/* One Kafka message, as the handler gets it. */
typedef struct IngestMessage
{
	IngestPartition *part;
	int64		offset;
	bytea	   *key;			/* NULL: no key */
	bytea	   *payload;		/* NULL: a tombstone */
	Datum		headers;		/* jsonb, or 0 for none */
	TimestampTz ts;
	bool		has_ts;
	char	   *event_id;		/* NULL: see event_id_error */
	char	   *event_id_error;
	int			attempts;		/* failed transactions of its own */
	void	   *source;			/* the rd_kafka_message_t */
} IngestMessage;

typedef enum IngestOutcome
{
	INGEST_DONE,				/* committed */
	INGEST_TRANSIENT,			/* rolled back; the same again may work */
	INGEST_PERMANENT,			/* rolled back; a message is at fault */
	INGEST_FENCED,				/* an offset is not where the worker is */
	INGEST_UNUSABLE				/* the handler or its owner cannot run */
} IngestOutcome;

typedef struct IngestFailure
{
	int			sqlstate;
	char	   *message;
} IngestFailure;

typedef struct IngestTally
{
	int64		consumed;
	int64		duplicates;
} IngestTally;

/* In a transaction of the caller's: NULL if there is no such subscription. */
extern IngestSubscription *ingest_store_subscription(const char *name);

/* In a transaction of the caller's: the stored next offset, or -1. */
extern int64 ingest_store_offset(const char *subscription, const char *topic,
								 int32 partition);

/*
 * In a transaction of the caller's: a partition's first offset row, unless
 * there is one; returns the row's offset.
 */
extern int64 ingest_store_start_offset(const char *subscription, const char *topic,
									  int32 partition, int64 next_offset);

/*
 * One transaction: check that the offset row of every partition of the
 * messages is where the worker is, claim each message's event id in the
 * inbox, run the handler for first claims, move the offsets past the
 * messages.  Messages are in offset order within each partition.
 */
extern IngestOutcome ingest_store_batch(IngestSubscription *sub,
										IngestMessage **messages, int n,
										IngestFailure *failure,
										IngestTally *tally);

/* One transaction: the message to the dead letters, its offset past it. */
extern IngestOutcome ingest_store_dead_letter(IngestSubscription *sub,
											  IngestMessage *message,
											  const IngestFailure *why,
											  IngestFailure *failure);

/*
 * One transaction: record a retention gap and, if new_offset >= 0, move the
 * partition's offset there.
 */
extern void ingest_store_gap(IngestSubscription *sub, IngestPartition *part,
							 int64 to_offset, const char *action,
							 int64 new_offset);

#endif							/* INBOX_OUTBOX_INGEST_STORE_H */
