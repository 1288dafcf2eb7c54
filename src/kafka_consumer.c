/*-------------------------------------------------------------------------
 *
 * kafka_consumer.c
 *	  The ingestion worker's Kafka consumer: librdkafka with manual
 *	  assignment, offsets kept in PostgreSQL.
 *
 * The worker tells librdkafka exactly which partitions to read and from
 * which offsets (rd_kafka_assign() with the offsets in the list; never a
 * seek after assign, never subscribe(), so no group rebalance and no
 * max.poll.interval.ms can take a partition away during a slow handler).
 * librdkafka needs a group.id for assign(), but nothing is committed to
 * the group: enable.auto.commit and enable.auto.offset.store are off.
 *
 * Settings the worker's guarantees rest on, applied after the user's:
 *  - isolation.level=read_committed: records of aborted Kafka transactions
 *    never reach the handler;
 *  - auto.offset.reset=error: an offset Kafka no longer has is reported to
 *    the worker (a retention gap, see ingest.c) instead of being skipped;
 *  - queued.max.messages.kbytes and fetch.max.bytes: what is fetched ahead
 *    stays bounded, with 1 MB messages too.
 *
 * Like the producer, the handle's log lines and errors go to its main queue
 * and are served on the worker's thread; its callbacks only record (see
 * kafka_client.h).  Both queues write to one pipe, on which the worker
 * sleeps beside its latch.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "kafka_consumer.h"

static void
consumer_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	KafkaConsumer *consumer = (KafkaConsumer *) opaque;

	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		consumer->brokers_down = true;
	snprintf(consumer->error, sizeof(consumer->error), "%s", reason);
}

static void
consumer_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	KafkaConsumer *consumer = (KafkaConsumer *) rd_kafka_opaque(rk);

	kafka_log_add(&consumer->log, level, fac, buf);
}

KafkaConsumer *
kafka_consumer_new(const char *brokers, const char *config,
				   const char *group_id, const char *client_id)
{
	const KafkaClientKind kind = KAFKA_CLIENT_CONSUMER;
	KafkaConsumer *consumer = palloc0(sizeof(KafkaConsumer));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];

	consumer->pipefd[0] = consumer->pipefd[1] = -1;

	/* defaults the user may change */
	kafka_conf_set(conf, kind, "client.id", client_id);
	kafka_conf_set(conf, kind, "fetch.wait.max.ms", "100");
	/*
	 * librdkafka 2.0.2 stops fetching once this many messages wait, and looks
	 * again only when its broker thread wakes, up to a second later: with
	 * small messages a fast handler starved (16,000 messages/s instead of
	 * 78,000).  The byte cap below bounds the queue instead.
	 */
	kafka_conf_set(conf, kind, "queued.min.messages", "1000000");

	kafka_conf_apply(conf, kind, brokers, config);

	/* what the worker's guarantees and its memory rest on */
	kafka_conf_set(conf, kind, "group.id", group_id);
	kafka_conf_set(conf, kind, "isolation.level", "read_committed");
	kafka_conf_set(conf, kind, "auto.offset.reset", "error");
	kafka_conf_set(conf, kind, "enable.auto.commit", "false");
	kafka_conf_set(conf, kind, "enable.auto.offset.store", "false");
	kafka_conf_set(conf, kind, "enable.partition.eof", "false");
	kafka_conf_set(conf, kind, "queued.max.messages.kbytes", "16384");
	kafka_conf_set(conf, kind, "fetch.max.bytes", "8388608");

	kafka_event_pipe_open(consumer->pipefd, conf, "consumer");
	rd_kafka_conf_set_opaque(conf, consumer);
	rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
	rd_kafka_conf_set_log_cb(conf, consumer_log_cb);

	consumer->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (consumer->rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		close(consumer->pipefd[0]);
		close(consumer->pipefd[1]);
		ereport(ERROR,
				errcode(ERRCODE_CONNECTION_FAILURE),
				errmsg("could not create Kafka consumer: %s", errstr));
	}
	kafka_main_queue_to_pipe(consumer->rk, consumer->pipefd[1]);
	consumer->queue = rd_kafka_queue_get_consumer(consumer->rk);
	rd_kafka_queue_io_event_enable(consumer->queue, consumer->pipefd[1], "1", 1);
	return consumer;
}

void
kafka_consumer_destroy(KafkaConsumer *consumer)
{
	if (consumer == NULL)
		return;
	if (consumer->queue != NULL)
		rd_kafka_queue_destroy(consumer->queue);
	if (consumer->rk != NULL)
	{
		/* nothing to commit, and no group to leave: no close wait */
		rd_kafka_destroy_flags(consumer->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	}
	if (consumer->pipefd[0] >= 0)
		close(consumer->pipefd[0]);
	if (consumer->pipefd[1] >= 0)
		close(consumer->pipefd[1]);
	pfree(consumer);
}

int
kafka_consumer_partitions(KafkaConsumer *consumer, const char *topic,
						  int timeout_ms, char *errbuf, size_t errlen)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(consumer->rk, topic, NULL);
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err;
	int			n = -1;

	err = rd_kafka_metadata(consumer->rk, 0, rkt, &md, timeout_ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(errbuf, errlen, "could not read the metadata of topic \"%s\": %s",
				 topic, rd_kafka_err2str(err));
	else if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(errbuf, errlen, "topic \"%s\" is not available: %s", topic,
				 md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "no metadata");
	else
		n = md->topics[0].partition_cnt;
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	return n;
}

bool
kafka_consumer_bounds(KafkaConsumer *consumer, const char *topic,
					  int32 partition, int timeout_ms, int64 *low, int64 *high,
					  char *errbuf, size_t errlen)
{
	int64_t		lo,
				hi;
	rd_kafka_resp_err_t err;

	err = rd_kafka_query_watermark_offsets(consumer->rk, topic, partition,
										   &lo, &hi, timeout_ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		snprintf(errbuf, errlen, "could not read the offsets of %s [%d]: %s",
				 topic, partition, rd_kafka_err2str(err));
		return false;
	}
	*low = lo;
	*high = hi;
	return true;
}

int64
kafka_consumer_high_seen(KafkaConsumer *consumer, const char *topic, int32 partition)
{
	int64_t		lo,
				hi;

	if (rd_kafka_get_watermark_offsets(consumer->rk, topic, partition, &lo, &hi) !=
		RD_KAFKA_RESP_ERR_NO_ERROR || hi < 0)
		return -1;
	return hi;
}

void
kafka_consumer_assign(KafkaConsumer *consumer, const KafkaStart *starts, int n)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(Max(n, 1));
	rd_kafka_resp_err_t err;

	for (int i = 0; i < n; i++)
		rd_kafka_topic_partition_list_add(list, starts[i].topic,
										  starts[i].partition)->offset = starts[i].offset;
	err = rd_kafka_assign(consumer->rk, list);
	rd_kafka_topic_partition_list_destroy(list);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				errcode(ERRCODE_CONNECTION_FAILURE),
				errmsg("could not assign partitions to the Kafka consumer: %s",
					   rd_kafka_err2str(err)));
}

void
kafka_consumer_pause(KafkaConsumer *consumer, const char *topic, int32 partition,
					 bool pause)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);

	rd_kafka_topic_partition_list_add(list, topic, partition);
	if (pause)
		(void) rd_kafka_pause_partitions(consumer->rk, list);
	else
		(void) rd_kafka_resume_partitions(consumer->rk, list);
	rd_kafka_topic_partition_list_destroy(list);
}

int
kafka_consumer_take(KafkaConsumer *consumer, rd_kafka_message_t **messages, int max)
{
	ssize_t		n;

	kafka_event_pipe_drain(consumer->pipefd[0]);
	rd_kafka_poll(consumer->rk, 0);
	kafka_log_report(&consumer->log, NULL);
	n = rd_kafka_consume_batch_queue(consumer->queue, 0, messages, max);
	/*
	 * brokers_down is cleared by an answer to a request (ingest.c), not by
	 * a message, which may have been fetched before they went away.
	 */
	if (n < 0)
		return 0;
	return (int) n;
}
