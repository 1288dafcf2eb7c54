/*-------------------------------------------------------------------------
 *
 * kafka.h
 *	  The relay's Kafka producer: a thin wrapper around librdkafka.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_KAFKA_H
#define INBOX_OUTBOX_KAFKA_H

#include "kafka_headers.h"

typedef struct KafkaProducer KafkaProducer;

/*
 * What became of one message of a round.  librdkafka's error codes are
 * sorted into these classes here, so that the relay needs none of them.
 */
typedef enum KafkaOutcome
{
	KAFKA_PENDING = 0,			/* no delivery report yet */
	KAFKA_DELIVERED,			/* acknowledged by the broker */
	KAFKA_FAILED,				/* failed on its own account: an attempt */
	KAFKA_REJECTED,				/* this producer can never send it (too large) */
	KAFKA_NOT_SENT,				/* purged, or failed because the producer or
								 * another message failed: no attempt */
	KAFKA_HELD					/* not produced: the first message of its
								 * partition is in flight (kafka_topic.c) */
} KafkaOutcome;

typedef struct KafkaRound KafkaRound;
struct KafkaTopic;

/* Outcome of one message of a round and its error, for kafka_describe(). */
typedef struct KafkaResult
{
	KafkaOutcome outcome;
	int			err;
	KafkaRound *round;			/* the round the message is part of */
	struct KafkaTopic *topic;	/* where it went, for kafka_topic.c; or NULL */
	int			probe;			/* a KafkaProbe */
} KafkaResult;

/*
 * The messages of one round of the relay, each with its result.  Several
 * rounds may be in flight on one producer at once (at-least-once mode);
 * the caller keeps a round's memory until its outstanding count is zero,
 * or the producer is destroyed.
 */
struct KafkaRound
{
	KafkaResult *results;		/* by the message's index in the round */
	int			nmessages;
	int			outstanding;	/* queued, and no delivery report yet */
};

/*
 * What one step of a transactional call came to (exactly-once mode; see
 * docs/exactly_once.md, section 7).  Each step blocks at most 100 ms.
 */
typedef enum KafkaTxnAnswer
{
	KAFKA_TXN_DONE,				/* the call succeeded */
	KAFKA_TXN_RETRY,			/* retriable (a timeout among them): make the
								 * same call again, and no other meanwhile */
	KAFKA_TXN_ABORT,			/* abortable: abort the transaction */
	KAFKA_TXN_FATAL,			/* fatal, or not classified by librdkafka: the
								 * outcome is unknown; destroy the producer
								 * and recover */
	KAFKA_TXN_FENCED,			/* fatal because another producer took the
								 * transactional id, or the coordinator
								 * aborted our transaction for its age */
	KAFKA_TXN_REFUSED			/* init_transactions refused for good
								 * (authorization, a transaction timeout the
								 * brokers refuse, an unsupported broker):
								 * wait until the settings change */
} KafkaTxnAnswer;

/*
 * transactional_id NULL makes the idempotent producer of at-least-once
 * mode; otherwise a transactional producer with that id (section 11 of
 * docs/exactly_once.md: no gapless guarantee, message.timeout.ms equal to
 * transaction.timeout.ms, 60000 unless kafka_config sets it).
 */
extern KafkaProducer *kafka_producer_create(const char *brokers,
											const char *extra_config,
											const char *client_id,
											const char *transactional_id);
extern int	kafka_transaction_timeout_ms(KafkaProducer *producer);

/* one step each; errbuf gets "NAME: reason" of anything but DONE */
extern KafkaTxnAnswer kafka_txn_init(KafkaProducer *producer, char *errbuf, size_t len);
extern KafkaTxnAnswer kafka_txn_begin(KafkaProducer *producer, char *errbuf, size_t len);
extern KafkaTxnAnswer kafka_txn_commit(KafkaProducer *producer, char *errbuf, size_t len);
extern KafkaTxnAnswer kafka_txn_abort(KafkaProducer *producer, char *errbuf, size_t len);

/*
 * Whether producev() answered _STATE in this round (the open transaction
 * has failed already, and the round must abort) or _FATAL (the producer
 * failed): either way the round must stop producing.
 */
extern bool kafka_txn_failed(KafkaProducer *producer);

/*
 * The progress record of a round: one message to partition 0 of topic.
 * Its delivery report goes to a slot of its own (kafka_record_result()),
 * never into the round's results.  Returns false only if librdkafka's
 * queue is full, like kafka_produce().
 */
extern bool kafka_produce_record(KafkaProducer *producer, const char *topic,
								 const char *key, size_t key_len,
								 const char *value, size_t value_len);
/* KAFKA_PENDING until its report; *offset is its offset once delivered */
extern KafkaResult kafka_record_result(KafkaProducer *producer, int64 *offset);

/* Whether the producer's fatal error is that it was fenced. */
extern bool kafka_fenced(KafkaProducer *producer);

/* Whether a message failed for being too large (producer or broker). */
extern bool kafka_result_too_large(const KafkaResult *result);
extern void kafka_producer_destroy(KafkaProducer *producer, int timeout_ms);

extern void kafka_round_init(KafkaRound *round, KafkaResult *results,
							 int nmessages);
extern void kafka_begin_transaction_round(KafkaProducer *producer);
extern void kafka_purge(KafkaProducer *producer, int timeout_ms);
extern int	kafka_outstanding(KafkaProducer *producer);
extern uint64 kafka_probes_answered(KafkaProducer *producer);
extern void kafka_tick(KafkaProducer *producer);

extern bool kafka_produce(KafkaProducer *producer, KafkaRound *round, int index,
						  const char *topic,
						  const char *key, size_t key_len,
						  const char *value, size_t value_len,
						  const KafkaHeader *headers, int nheaders,
						  int64 timestamp_ms);
extern void kafka_serve(KafkaProducer *producer);
extern int	kafka_wait_fd(KafkaProducer *producer);
extern bool kafka_fatal_error(KafkaProducer *producer, char *buf, size_t len);
extern bool kafka_brokers_down(KafkaProducer *producer);
extern bool kafka_take_error(KafkaProducer *producer, char *buf, size_t len);
extern char *kafka_describe(const KafkaResult *result);

#endif							/* INBOX_OUTBOX_KAFKA_H */
