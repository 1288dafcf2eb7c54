/*-------------------------------------------------------------------------
 *
 * kafka_topic.h
 *	  The topics a producer sends to: their handles, their partition
 *	  counts, and the first message of each partition (kafka_topic.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_KAFKA_TOPIC_H
#define INBOX_OUTBOX_KAFKA_TOPIC_H

#include <librdkafka/rdkafka.h>

#include "utils/hsearch.h"

/* The longest topic name Kafka accepts. */
#define KAFKA_TOPIC_NAME_MAX	249

typedef struct KafkaTopic KafkaTopic;

/*
 * kafka_topic_route()'s answer when the message must wait for a later
 * round; RD_KAFKA_PARTITION_UA (-1) leaves the choice to librdkafka.
 */
#define KAFKA_ROUTE_HOLD		(-2)

/* What a message was to its partition's gate, for kafka_topic_answered(). */
typedef enum KafkaProbe
{
	KAFKA_PROBE_NONE = 0,		/* an ordinary message */
	KAFKA_PROBE_PARTITION,		/* the first of its partition */
	KAFKA_PROBE_TOPIC			/* the one keyed message of a topic whose
								 * partitions are not known */
} KafkaProbe;

extern KafkaTopic *kafka_topic_get(HTAB **topics, rd_kafka_t *rk, const char *name);
extern rd_kafka_topic_t *kafka_topic_handle(KafkaTopic *topic);
extern int32 kafka_topic_route(KafkaTopic *topic, rd_kafka_t *rk,
							   const char *key, size_t key_len,
							   int64 now_ms, int64 *ask_after_ms, KafkaProbe *probe);
extern void kafka_topic_answered(KafkaTopic *topic, int32 partition,
								 KafkaProbe probe, bool delivered, int64 now_ms);
extern void kafka_topic_recount(KafkaTopic *topic);
extern void kafka_topics_release(HTAB *topics);

#endif							/* INBOX_OUTBOX_KAFKA_TOPIC_H */
