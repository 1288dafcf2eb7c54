/*-------------------------------------------------------------------------
 *
 * kafka_topic.c
 *	  The topics a producer sends to: their handles, their partition
 *	  counts, and the first message of each partition.
 *
 * A topic's handle is made at its first message and kept for the life of
 * the producer, which spares librdkafka a lookup by name per message.
 *
 * The first message of a partition.  Key order rests on gapless delivery
 * (kafka.c): once a message fails for good, the broker refuses the later
 * requests of its partition, whose sequence numbers leave a gap, and the
 * producer fails before any of them is written.  A broker checks sequence
 * numbers only for a producer id it holds state for on the partition,
 * though, and it holds none for a new producer id whose first request
 * there it refused (a message too large for the topic, say): it then takes
 * the next requests, already in flight, whatever their numbers, and a
 * key's later events overtake the refused one (026_relay_first_request.pl).
 * So on a partition where this producer has had no message acknowledged,
 * or none for KAFKA_PARTITION_TRUST_MS (a broker forgets a producer id
 * that stays idle long enough, or whose last batch retention removed),
 * only one keyed message is let into flight; the partition's other keyed
 * messages are held back, and the relay leaves them in the outbox for a
 * later round, until Kafka has answered for that one.  One answered
 * message per partition and producer is the whole cost.
 *
 * To know a keyed message's partition before producing it, this file
 * chooses it: murmur2 of the key modulo the topic's partition count, which
 * is what the producer's murmur2_random partitioner does (the Java
 * client's placement).  The count comes from a metadata request at the
 * topic's first keyed message, which also spares that message librdkafka's
 * once-a-second scan for new topics, and again every KAFKA_TOPIC_RECOUNT_MS
 * (partitions added; librdkafka's own refresh interval).  While the count
 * is not known (the request timed out, or the topic does not exist yet),
 * keyed messages go to librdkafka's partitioner and only one of the
 * topic's is in flight at a time; the count is asked for again each second,
 * and once it is known that message holds back only its own partition (a
 * topic's first message must not hold the whole topic while its leader is
 * down).  Messages without a key promise no order and are never held.
 *
 * Everything here runs on the relay's thread: kafka_topic_answered() is
 * called from the delivery callback, inside rd_kafka_poll(), and touches
 * only this file's plain C memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "kafka_topic.h"

/* How long one metadata request may take, and how often one is made. */
#define KAFKA_TOPIC_ASK_MS		250
#define KAFKA_TOPIC_REASK_MS	1000
#define KAFKA_TOPIC_RECOUNT_MS	300000

/*
 * How long an acknowledgement vouches for the broker's state of this
 * producer id on a partition.  Kafka keeps it for a day of silence
 * (producer.id.expiration.ms), or until retention removes the producer's
 * last batch.
 */
#define KAFKA_PARTITION_TRUST_MS	(10 * 60 * 1000)

typedef struct KafkaPartition
{
	int64		trusted_until_ms;	/* 0: nothing acknowledged yet */
	bool		probing;		/* its first message is in flight */
} KafkaPartition;

struct KafkaTopic
{
	char		name[KAFKA_TOPIC_NAME_MAX + 1]; /* the hash key */
	rd_kafka_topic_t *rkt;
	int32		npartitions;	/* 0 while not known */
	int64		asked_ms;		/* when the count was last asked for; 0:
								 * never */
	bool		probing;		/* a keyed message is in flight while the
								 * count is not known... */
	char	   *probe_key;		/* ...its key, to place it once the count is
								 * known... */
	size_t		probe_key_len;
	int32		probe_partition;	/* ...where it was placed then, or -1 */
	KafkaPartition *partitions; /* npartitions of them */
};

/*
 * The topic of this name, its handle made at the first call.  Returns NULL
 * if librdkafka refuses the name (rd_kafka_last_error() says why).  The
 * caller keeps names longer than Kafka allows away.
 */
KafkaTopic *
kafka_topic_get(HTAB **topics, rd_kafka_t *rk, const char *name)
{
	KafkaTopic *topic;
	rd_kafka_topic_t *rkt;
	bool		found;

	Assert(strlen(name) <= KAFKA_TOPIC_NAME_MAX);
	if (*topics == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = KAFKA_TOPIC_NAME_MAX + 1;
		ctl.entrysize = sizeof(KafkaTopic);
		ctl.hcxt = TopMemoryContext;
		*topics = hash_create("inbox_outbox producer topics", 64, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	topic = hash_search(*topics, name, HASH_FIND, NULL);
	if (topic != NULL)
		return topic;

	rkt = rd_kafka_topic_new(rk, name, NULL);
	if (rkt == NULL)
		return NULL;
	/* dynahash never moves an entry: results may point at it */
	topic = hash_search(*topics, name, HASH_ENTER, &found);
	topic->rkt = rkt;
	topic->npartitions = 0;
	topic->asked_ms = 0;
	topic->probing = false;
	topic->probe_partition = -1;
	topic->probe_key = NULL;
	topic->partitions = NULL;
	return topic;
}

rd_kafka_topic_t *
kafka_topic_handle(KafkaTopic *topic)
{
	return topic->rkt;
}

/*
 * Ask the brokers how many partitions the topic has, waiting at most
 * KAFKA_TOPIC_ASK_MS.  Partitions are added to a topic, never taken away,
 * but a topic can be deleted and made again with fewer: a new count is
 * taken as it is, the partitions both counts have keep their state (a
 * first message in flight is still in flight), and the others start
 * afresh.  Returns false if the request timed out.
 */
static bool
kafka_topic_count(KafkaTopic *topic, rd_kafka_t *rk, int64 now_ms)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err;
	int32		count = 0;

	topic->asked_ms = now_ms;
	err = rd_kafka_metadata(rk, 0, topic->rkt, &md, KAFKA_TOPIC_ASK_MS);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return err != RD_KAFKA_RESP_ERR__TIMED_OUT;
	for (int i = 0; i < md->topic_cnt; i++)
	{
		if (md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
			strcmp(md->topics[i].topic, topic->name) == 0)
			count = md->topics[i].partition_cnt;
	}
	rd_kafka_metadata_destroy(md);

	if (count == topic->npartitions)
		return true;
	if (count > 0)
	{
		KafkaPartition *partitions = MemoryContextAllocZero(TopMemoryContext,
															sizeof(KafkaPartition) * count);

		if (topic->partitions != NULL)
			memcpy(partitions, topic->partitions,
				   sizeof(KafkaPartition) * Min(count, topic->npartitions));
		if (count < topic->npartitions)
		{
			/* a topic made again: nothing vouches for its partitions */
			for (int32 p = 0; p < count; p++)
				partitions[p].trusted_until_ms = 0;
		}
		if (topic->partitions != NULL)
			pfree(topic->partitions);
		topic->partitions = partitions;
		topic->npartitions = count;
	}
	return true;
}

/*
 * Where a message goes: a partition, RD_KAFKA_PARTITION_UA (librdkafka's
 * partitioner chooses), or KAFKA_ROUTE_HOLD (not now; see the comment at
 * the top).  *probe says what the message is to its partition's gate; a
 * caller that does not get the message queued after all passes it to
 * kafka_topic_answered() at once, as a failure.  The partition count is
 * asked for only if ask_after_ms is given and has passed; a request that
 * timed out moves it KAFKA_TOPIC_REASK_MS on, so that no other topic of
 * the producer is asked for meanwhile.
 */
int32
kafka_topic_route(KafkaTopic *topic, rd_kafka_t *rk, const char *key, size_t key_len,
				  int64 now_ms, int64 *ask_after_ms, KafkaProbe *probe)
{
	KafkaPartition *partition;
	int32		p;

	*probe = KAFKA_PROBE_NONE;
	if (key == NULL)
		return RD_KAFKA_PARTITION_UA;

	if (ask_after_ms != NULL && now_ms >= *ask_after_ms &&
		(topic->asked_ms == 0 ||
		 now_ms - topic->asked_ms >= (topic->npartitions > 0 ?
									  KAFKA_TOPIC_RECOUNT_MS : KAFKA_TOPIC_REASK_MS)) &&
		!kafka_topic_count(topic, rk, now_ms))
		*ask_after_ms = now_ms + KAFKA_TOPIC_REASK_MS;

	/*
	 * A keyed message of unknown partition is in flight: it holds the topic
	 * until the count is known, and then its own partition only (the
	 * producer's partitioner placed it by the same murmur2).
	 */
	if (topic->probing && topic->npartitions > 0)
	{
		topic->probe_partition =
			rd_kafka_msg_partitioner_murmur2(topic->rkt, topic->probe_key, topic->probe_key_len,
											 topic->npartitions, NULL, NULL);
		topic->partitions[topic->probe_partition].probing = true;
		topic->probing = false;
	}
	if (topic->probing)
		return KAFKA_ROUTE_HOLD;
	if (topic->npartitions == 0)
	{
		topic->probing = true;
		topic->probe_key = MemoryContextAlloc(TopMemoryContext, Max(key_len, 1));
		memcpy(topic->probe_key, key, key_len);
		topic->probe_key_len = key_len;
		*probe = KAFKA_PROBE_TOPIC;
		return RD_KAFKA_PARTITION_UA;
	}

	p = rd_kafka_msg_partitioner_murmur2(topic->rkt, key, key_len,
										 topic->npartitions, NULL, NULL);
	partition = &topic->partitions[p];
	if (partition->trusted_until_ms > now_ms)
		return p;
	if (partition->probing)
		return KAFKA_ROUTE_HOLD;
	partition->probing = true;
	*probe = KAFKA_PROBE_PARTITION;
	return p;
}

/*
 * Ask for the topic's partition count at its next keyed message: a message
 * went to a partition or a topic that librdkafka says does not exist.
 */
void
kafka_topic_recount(KafkaTopic *topic)
{
	topic->asked_ms = 0;
}

/*
 * Kafka answered for a message of the topic (or the caller could not queue
 * it): partition is where it went (-1 if nowhere), probe what it was to the
 * gate.  A delivered message vouches for its partition.
 */
void
kafka_topic_answered(KafkaTopic *topic, int32 partition, KafkaProbe probe,
					 bool delivered, int64 now_ms)
{
	if (probe == KAFKA_PROBE_TOPIC)
	{
		if (topic->probe_partition >= 0 && topic->probe_partition < topic->npartitions)
			topic->partitions[topic->probe_partition].probing = false;
		topic->probing = false;
		topic->probe_partition = -1;
		if (topic->probe_key != NULL)
			pfree(topic->probe_key);
		topic->probe_key = NULL;
	}
	if (partition < 0 || partition >= topic->npartitions)
		return;
	if (probe == KAFKA_PROBE_PARTITION)
		topic->partitions[partition].probing = false;
	if (delivered)
		topic->partitions[partition].trusted_until_ms = now_ms + KAFKA_PARTITION_TRUST_MS;
}

/*
 * Destroy every topic handle and partition array, before the producer
 * itself.  The entries stay, with no partitions (kafka_topic_answered()
 * then ignores a report), until the caller destroys the table after the
 * producer, since results may still point at them.
 */
void
kafka_topics_release(HTAB *topics)
{
	HASH_SEQ_STATUS seq;
	KafkaTopic *topic;

	if (topics == NULL)
		return;
	hash_seq_init(&seq, topics);
	while ((topic = hash_seq_search(&seq)) != NULL)
	{
		rd_kafka_topic_destroy(topic->rkt);
		topic->rkt = NULL;
		if (topic->partitions != NULL)
			pfree(topic->partitions);
		if (topic->probe_key != NULL)
			pfree(topic->probe_key);
		topic->partitions = NULL;
		topic->probe_key = NULL;
		topic->npartitions = 0;
	}
}
