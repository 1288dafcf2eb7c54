/*-------------------------------------------------------------------------
 *
 * kafka.h
 *	  The relay's Kafka producer: a thin wrapper around librdkafka.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_KAFKA_H
#define INBOX_OUTBOX_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "kafka_headers.h"

typedef struct KafkaProducer KafkaProducer;

/* Outcome of one message of a round, filled in by the delivery callback. */
typedef struct KafkaResult
{
	bool		done;
	rd_kafka_resp_err_t err;
} KafkaResult;

extern KafkaProducer *kafka_producer_create(const char *brokers,
											const char *extra_config,
											const char *client_id);
extern void kafka_producer_destroy(KafkaProducer *producer, int timeout_ms);

extern void kafka_begin_round(KafkaProducer *producer, KafkaResult *results,
							  int nmessages);
extern void kafka_purge(KafkaProducer *producer, int timeout_ms);
extern int	kafka_outstanding(KafkaProducer *producer);

extern rd_kafka_resp_err_t kafka_produce(KafkaProducer *producer, int index,
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

#endif							/* INBOX_OUTBOX_KAFKA_H */
