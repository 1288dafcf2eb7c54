/*-------------------------------------------------------------------------
 *
 * relay_progress.h
 *	  The Kafka side of exactly-once mode's progress topic
 *	  (relay_progress.c): making sure it exists, and finding the last
 *	  committed progress record of a relay at recovery.  See
 *	  docs/exactly_once.md, sections 4 and 6.
 *
 * Only the relay library includes this header.  Every wait here is on the
 * relay's latch and librdkafka's event pipe, in steps of at most 100 ms,
 * with CHECK_FOR_INTERRUPTS() between them; a shutdown request or the
 * timeout ends it with PROGRESS_UNREACHABLE.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_RELAY_PROGRESS_H
#define INBOX_OUTBOX_RELAY_PROGRESS_H

typedef enum ProgressAnswer
{
	PROGRESS_FOUND,				/* topic ready / record found */
	PROGRESS_NONE,				/* no record of this key to recover */
	PROGRESS_UNREACHABLE,		/* no answer in time, or asked to stop: try
								 * again later; errbuf says why */
	PROGRESS_REFUSED			/* the cluster refused (authorization, an
								 * invalid topic): errbuf says why */
} ProgressAnswer;

/*
 * Make sure topic exists: ask the cluster to create it (one partition,
 * replication factor -1, cleanup.policy=compact, segment.ms=3600000);
 * TOPIC_ALREADY_EXISTS counts as ready.  Then describe it: a topic without
 * "compact" in cleanup.policy draws one WARNING; *max_message_bytes is its
 * max.message.bytes, or -1 if it could not be described (which is logged
 * and is no failure).  Returns PROGRESS_FOUND when the topic is there.
 * brokers and config are inbox_outbox.brokers and inbox_outbox.kafka_config,
 * applied as for the producer (producer-only properties draw no LOG line).
 */
extern ProgressAnswer relay_progress_topic_ensure(const char *brokers,
												  const char *config,
												  const char *client_id,
												  const char *topic,
												  int timeout_ms,
												  int *max_message_bytes,
												  char *errbuf, size_t errlen);

/*
 * Find the last committed record with this key in partition 0 of topic,
 * reading backwards from the log end in growing windows with
 * isolation.level=read_committed, and stopping at after_offset (that
 * record's rows are known to be deleted; -1: search to the log start; an
 * after_offset at or past the log end is stale and counts as -1).  Must be
 * called after init_transactions() of the same transactional id succeeded.
 * On PROGRESS_FOUND, *value (palloc'd in the current memory context),
 * *value_len and *offset describe the record; PROGRESS_NONE: no record of
 * the key after after_offset.
 */
extern ProgressAnswer relay_progress_find_last(const char *brokers,
											   const char *config,
											   const char *client_id,
											   const char *topic,
											   const char *key,
											   int64 after_offset,
											   int timeout_ms,
											   char **value, size_t *value_len,
											   int64 *offset,
											   char *errbuf, size_t errlen);

#endif							/* INBOX_OUTBOX_RELAY_PROGRESS_H */
