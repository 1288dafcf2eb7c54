/*-------------------------------------------------------------------------
 *
 * kafka_consumer.h
 *	  The ingestion worker's Kafka consumer (kafka_consumer.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_KAFKA_CONSUMER_H
#define INBOX_OUTBOX_KAFKA_CONSUMER_H

#include "kafka_client.h"

typedef struct KafkaConsumer
{
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue;	/* the assigned partitions' messages */
	int			pipefd[2];		/* written when either queue has something */
	KafkaLog	log;
	bool		brokers_down;	/* librdkafka said all brokers are down */
	char		error[256];		/* its last error, "" if none */
} KafkaConsumer;

/* One partition to read, and from where. */
typedef struct KafkaStart
{
	const char *topic;
	int32		partition;
	int64		offset;
} KafkaStart;

/*
 * Make a consumer that reads only committed records, never resets an offset
 * by itself and never commits to Kafka.  Raises an ERROR for a setting
 * librdkafka refuses.
 */
extern KafkaConsumer *kafka_consumer_new(const char *brokers, const char *config,
										 const char *group_id,
										 const char *client_id);
extern void kafka_consumer_destroy(KafkaConsumer *consumer);

/* The topic's number of partitions, or -1 with errbuf filled in. */
extern int	kafka_consumer_partitions(KafkaConsumer *consumer, const char *topic,
									  int timeout_ms, char *errbuf, size_t errlen);

/* The log start and end offsets of a partition (asks the leader). */
extern bool kafka_consumer_bounds(KafkaConsumer *consumer, const char *topic,
								  int32 partition, int timeout_ms,
								  int64 *low, int64 *high,
								  char *errbuf, size_t errlen);

/* The high watermark the last fetch saw, or -1. */
extern int64 kafka_consumer_high_seen(KafkaConsumer *consumer, const char *topic,
									  int32 partition);

/* Read exactly these partitions from these offsets. */
extern void kafka_consumer_assign(KafkaConsumer *consumer,
								  const KafkaStart *starts, int n);

extern void kafka_consumer_pause(KafkaConsumer *consumer, const char *topic,
								 int32 partition, bool pause);

/*
 * Take up to max messages (and error events) that are ready, without
 * waiting; serves the log and errors first.  The caller destroys them.
 */
extern int	kafka_consumer_take(KafkaConsumer *consumer,
								rd_kafka_message_t **messages, int max);

#endif							/* INBOX_OUTBOX_KAFKA_CONSUMER_H */
