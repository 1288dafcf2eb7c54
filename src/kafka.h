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
	KAFKA_NOT_SENT				/* purged, or failed because the producer or
								 * another message failed: no attempt */
} KafkaOutcome;

/* Outcome of one message of a round and its error, for kafka_describe(). */
typedef struct KafkaResult
{
	KafkaOutcome outcome;
	int			err;
} KafkaResult;

extern KafkaProducer *kafka_producer_create(const char *brokers,
											const char *extra_config,
											const char *client_id);
extern void kafka_producer_destroy(KafkaProducer *producer, int timeout_ms);

extern void kafka_begin_round(KafkaProducer *producer, KafkaResult *results,
							  int nmessages);
extern void kafka_purge(KafkaProducer *producer, int timeout_ms);
extern int	kafka_outstanding(KafkaProducer *producer);

extern bool kafka_produce(KafkaProducer *producer, int index,
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
