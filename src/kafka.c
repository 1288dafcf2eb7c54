/*-------------------------------------------------------------------------
 *
 * kafka.c
 *	  The relay's Kafka producer: a thin wrapper around librdkafka.
 *
 * librdkafka runs threads of its own.  None of them may call into
 * PostgreSQL, so every callback here only records into plain C memory owned
 * by the KafkaProducer or lent to it: the delivery callback stores each
 * message's outcome in the result its opaque points to, in the memory of
 * the relay's round (the progress record of exactly-once mode has a slot
 * of its own),
 * the error callback keeps the latest error, and the log callback queues
 * lines.  All callbacks run inside rd_kafka_poll() on the relay's own
 * thread (logs are routed to the main queue with log.queue), or inside the
 * transactional calls, which serve the main queue the same way; the queued
 * log lines are reported with ereport() only after those have returned.
 *
 * The relay sleeps in WaitLatchOrSocket() on a pipe that librdkafka writes
 * to when an event arrives on the main queue (rd_kafka_queue_io_event_enable),
 * so delivery reports wake it as promptly as its latch does.
 *
 * The producer's configuration is built by kafka_client.c: a few defaults,
 * then the user's inbox_outbox.kafka_config, then the settings the relay's
 * promises rest on, which cannot be overridden.  Both modes get:
 *  - enable.idempotence=true (acks=all, ordered retries without duplicates
 *    inside the broker);
 *  - partitioner=murmur2_random: keyed messages land on the partition the
 *    Java client would choose (in at-least-once mode kafka_topic.c picks
 *    the same partition itself, to send the first message of each alone);
 *  - delivery.report.only.error=false: a row leaves the outbox only on a
 *    successful delivery report.
 *
 * The idempotent producer of at-least-once mode also gets:
 *  - enable.gapless.guarantee=true: a message that fails for good makes the
 *    producer fail fatally instead of letting later messages of the same
 *    partition through, so a key's later event can never overtake an
 *    earlier failed one; the relay then recreates the producer;
 *  - message.timeout.ms=0: messages never time out, since a timeout is the
 *    one failure gapless delivery does not cover.  A broker outage leaves
 *    messages queued (bounded by the relay's batch) until it ends.
 *
 * The transactional producer of exactly-once mode (docs/exactly_once.md,
 * section 11) instead gets its transactional.id, no gapless guarantee (a
 * permanent error inside a transaction makes the transaction abortable,
 * and an abort leaves no gap), and message.timeout.ms equal to
 * transaction.timeout.ms, which is 60000 unless kafka_config sets it:
 * librdkafka refuses a larger message timeout, and 0 would leave a round
 * stuck in an outage to the coordinator's timeout, which fences the relay.
 * A message that times out there was not sent: the transaction aborts and
 * its rows are read again.
 *
 * Each transactional call is one step of at most 100 ms (the relay calls
 * again after a retriable timeout, which librdkafka documents as resuming
 * the call), and its answer is sorted into the few classes of
 * KafkaTxnAnswer that decide what the relay does next (section 7).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "kafka.h"
#include "kafka_client.h"
#include "kafka_topic.h"

#define KAFKA_ERROR_LEN		256

/* The step of a blocking transactional call. */
#define KAFKA_TXN_STEP_MS	100

/* What the user's kafka_config does not change, transaction.timeout.ms */
#define KAFKA_TXN_TIMEOUT_DEFAULT	"60000"

/*
 * The opaque of the progress record's message; a row's message has its
 * KafkaResult's address.
 */
#define KAFKA_RECORD_OPAQUE	((void *) (intptr_t) -1)

struct KafkaProducer
{
	rd_kafka_t *rk;
	int			pipefd[2];
	bool		transactional;
	int			transaction_timeout_ms; /* 0 unless transactional */

	/* written by callbacks */
	int			outstanding;	/* of every round */
	KafkaResult record_result;	/* the round's progress record */
	int64		record_offset;

	KafkaLog	log;

	HTAB	   *topics;			/* KafkaTopic by name (kafka_topic.c) */
	int64		now_ms;			/* as of the last kafka_serve() or kafka_tick() */
	int64		ask_after_ms;	/* no metadata request before then */
	uint64		probes_answered;	/* first messages of partitions answered */

	bool		brokers_down;
	bool		error_new;
	char		error[KAFKA_ERROR_LEN];

	/* producev() answered _STATE in this round */
	bool		txn_failed;
};

/*
 * The class of a delivery error.  A purge, a fatal error of the producer
 * (which fails every message in flight) and the producer's destruction say
 * nothing about the message itself: it was not sent, and that costs it no
 * attempt.  Inside a transaction neither does a timeout, which an outage
 * causes and which aborts the transaction anyway.
 */
static KafkaOutcome
classify(KafkaProducer *producer, rd_kafka_resp_err_t err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR_NO_ERROR:
			return KAFKA_DELIVERED;
		case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
		case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
		case RD_KAFKA_RESP_ERR__FATAL:
		case RD_KAFKA_RESP_ERR__DESTROY:
			return KAFKA_NOT_SENT;
		case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
			return producer->transactional ? KAFKA_NOT_SENT : KAFKA_FAILED;
		default:
			return KAFKA_FAILED;
	}
}

/*
 * The class of an error with which producev() refuses a message before
 * queueing it.  In a transaction, _STATE means that the transaction failed
 * already (an earlier message's error, or a fatal error), and _FATAL, in
 * either mode, that the producer did: either says nothing about this
 * message, costs it no attempt, and ends the producing of the round (see
 * kafka_txn_failed()).
 */
static KafkaOutcome
classify_refusal(KafkaProducer *producer, rd_kafka_resp_err_t err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
			return KAFKA_REJECTED;
		case RD_KAFKA_RESP_ERR__STATE:
			if (!producer->transactional)
				return KAFKA_FAILED;
			producer->txn_failed = true;
			return KAFKA_NOT_SENT;
		case RD_KAFKA_RESP_ERR__FATAL:
			/* the producer failed: no message of it is sent any more */
			producer->txn_failed = true;
			return KAFKA_NOT_SENT;
		default:
			return KAFKA_FAILED;
	}
}

static void
set_result(KafkaProducer *producer, void *opaque, KafkaOutcome outcome,
		   rd_kafka_resp_err_t err)
{
	KafkaResult *result = (KafkaResult *) opaque;

	if (opaque == KAFKA_RECORD_OPAQUE)
		result = &producer->record_result;
	result->outcome = outcome;
	result->err = (int) err;
}

/* Whether err says that the message's partition or topic does not exist. */
static bool
partition_unknown(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
		err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
		err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
}

static void
delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	KafkaProducer *producer = (KafkaProducer *) opaque;

	set_result(producer, msg->_private, classify(producer, msg->err), msg->err);
	if (msg->_private == KAFKA_RECORD_OPAQUE)
	{
		if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
			producer->record_offset = msg->offset;
	}
	else
	{
		KafkaResult *result = (KafkaResult *) msg->_private;

		if (result->topic != NULL)
		{
			kafka_topic_answered(result->topic, msg->partition, result->probe,
								 msg->err == RD_KAFKA_RESP_ERR_NO_ERROR,
								 producer->now_ms);
			if (result->probe != KAFKA_PROBE_NONE)
				producer->probes_answered++;
			if (partition_unknown(msg->err))
				kafka_topic_recount(result->topic);
		}
		result->round->outstanding--;
	}
	producer->outstanding--;
	if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		producer->brokers_down = false;
}

static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	KafkaProducer *producer = (KafkaProducer *) opaque;

	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		producer->brokers_down = true;
	snprintf(producer->error, sizeof(producer->error), "%s: %s",
			 rd_kafka_err2name(err), reason);
	producer->error_new = true;
}

static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	KafkaProducer *producer = (KafkaProducer *) rd_kafka_opaque(rk);

	kafka_log_add(&producer->log, level, fac, buf);
}

/*
 * transactional.id given: a transactional producer; otherwise the
 * idempotent producer of at-least-once mode.
 */
KafkaProducer *
kafka_producer_create(const char *brokers, const char *extra_config,
					  const char *client_id, const char *transactional_id)
{
	const KafkaClientKind kind = KAFKA_CLIENT_PRODUCER;
	KafkaProducer *producer;
	rd_kafka_conf_t *conf;
	char		errstr[512];
	char		value[32];
	size_t		value_len = sizeof(value);
	int			transaction_timeout_ms = 0;

	/*
	 * The configuration comes first: it is what usually fails, and nothing
	 * else is held yet when it does.
	 */
	conf = rd_kafka_conf_new();

	/* tunable defaults, which inbox_outbox.kafka_config may change */
	kafka_conf_set(conf, kind, "client.id", client_id);
	kafka_conf_set(conf, kind, "linger.ms", "0");
	kafka_conf_set(conf, kind, "queue.buffering.max.kbytes", "131072");
	kafka_conf_set(conf, kind, "topic.metadata.propagation.max.ms", "2000");
	kafka_conf_set(conf, kind, "socket.keepalive.enable", "true");
	if (transactional_id != NULL)
		kafka_conf_set(conf, kind, "transaction.timeout.ms", KAFKA_TXN_TIMEOUT_DEFAULT);

	kafka_conf_apply(conf, kind, brokers, extra_config);

	/* what the relay's guarantees rest on */
	kafka_conf_set(conf, kind, "enable.idempotence", "true");
	kafka_conf_set(conf, kind, "acks", "all");
	kafka_conf_set(conf, kind, "partitioner", "murmur2_random");
	kafka_conf_set(conf, kind, "delivery.report.only.error", "false");
	if (transactional_id == NULL)
	{
		kafka_conf_set(conf, kind, "enable.gapless.guarantee", "true");
		kafka_conf_set(conf, kind, "message.timeout.ms", "0");
	}
	else
	{
		if (rd_kafka_conf_get(conf, "transaction.timeout.ms", value, &value_len) != RD_KAFKA_CONF_OK)
		{
			rd_kafka_conf_destroy(conf);
			elog(ERROR, "could not read back librdkafka's transaction.timeout.ms");
		}
		transaction_timeout_ms = atoi(value);
		kafka_conf_set(conf, kind, "transactional.id", transactional_id);
		kafka_conf_set(conf, kind, "message.timeout.ms", value);
	}

	producer = MemoryContextAllocZero(TopMemoryContext, sizeof(KafkaProducer));
	producer->transactional = (transactional_id != NULL);
	producer->transaction_timeout_ms = transaction_timeout_ms;
	producer->record_offset = -1;
	kafka_event_pipe_open(producer->pipefd, conf, "producer");

	rd_kafka_conf_set_opaque(conf, producer);
	rd_kafka_conf_set_dr_msg_cb(conf, delivery_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_log_cb(conf, log_cb);

	producer->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (producer->rk == NULL)
	{
		/* rd_kafka_new() freed conf only on success */
		rd_kafka_conf_destroy(conf);
		close(producer->pipefd[0]);
		close(producer->pipefd[1]);
		pfree(producer);
		ereport(ERROR,
				errcode(ERRCODE_CONNECTION_FAILURE),
				errmsg("could not create Kafka producer: %s", errstr));
	}

	kafka_main_queue_to_pipe(producer->rk, producer->pipefd[1]);
	producer->now_ms = GetCurrentTimestamp() / 1000;
	return producer;
}

/* transaction.timeout.ms of a transactional producer; 0 otherwise */
int
kafka_transaction_timeout_ms(KafkaProducer *producer)
{
	return producer->transaction_timeout_ms;
}

/*
 * Purge what is still queued or in flight and serve the resulting delivery
 * reports for up to timeout_ms.  Purged messages report an error, so their
 * rows stay in the outbox and are sent again later.
 */
void
kafka_purge(KafkaProducer *producer, int timeout_ms)
{
	TimestampTz deadline;

	rd_kafka_purge(producer->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	while (producer->outstanding > 0 && GetCurrentTimestamp() < deadline)
	{
		/* not on the latch: a set latch stays set for the relay's loop */
		(void) WaitLatchOrSocket(NULL,
								 WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 producer->pipefd[0], 10, PG_WAIT_EXTENSION);
		kafka_serve(producer);
	}
}

/*
 * Destroy the producer.  The idempotent producer purges first, waiting up
 * to timeout_ms for the purged messages' reports.  A transactional one is
 * destroyed at once, whatever is in flight: the rows of an open transaction
 * stay in the outbox whether it is aborted or not, and the next
 * init_transactions() of its transactional id settles it (an abort, when
 * the relay has time for one, is the caller's, with kafka_txn_abort()).
 * librdkafka's own destruction sends nothing and waits for no broker.
 */
void
kafka_producer_destroy(KafkaProducer *producer, int timeout_ms)
{
	if (producer == NULL)
		return;

	if (!producer->transactional)
		kafka_purge(producer, timeout_ms);
	kafka_topics_release(producer->topics);
	rd_kafka_destroy(producer->rk);
	if (producer->topics != NULL)
		hash_destroy(producer->topics);

	close(producer->pipefd[0]);
	close(producer->pipefd[1]);
	pfree(producer);
}

/*
 * Make round the round of nmessages messages whose outcomes go to results,
 * arrays the caller owns (see KafkaRound).
 */
void
kafka_round_init(KafkaRound *round, KafkaResult *results, int nmessages)
{
	memset(results, 0, sizeof(KafkaResult) * nmessages);
	for (int i = 0; i < nmessages; i++)
		results[i].round = round;
	round->results = results;
	round->nmessages = nmessages;
	round->outstanding = 0;
}

/*
 * Exactly-once mode: a transaction's round begins, with nothing in flight;
 * its progress record and the failure of the transaction start afresh.
 */
void
kafka_begin_transaction_round(KafkaProducer *producer)
{
	Assert(producer->outstanding == 0);
	producer->record_result.outcome = KAFKA_PENDING;
	producer->record_result.err = 0;
	producer->record_offset = -1;
	producer->txn_failed = false;
}

/*
 * Read the clock for kafka_topic.c's decisions, once a round rather than
 * once a message.
 */
void
kafka_tick(KafkaProducer *producer)
{
	producer->now_ms = GetCurrentTimestamp() / 1000;
}

/*
 * How many first messages of partitions (kafka_topic.c) have had their
 * answer: messages held back behind one may go once this changes.
 */
uint64
kafka_probes_answered(KafkaProducer *producer)
{
	return producer->probes_answered;
}

/* Messages of every round, the progress record included, without a report. */
int
kafka_outstanding(KafkaProducer *producer)
{
	return producer->outstanding;
}

/*
 * Produce message index of round; its outcome arrives in its result, at once if
 * librdkafka refuses it outright: KAFKA_REJECTED for a message above the
 * producer's message.max.bytes, KAFKA_NOT_SENT when the producer or the
 * transaction has failed already (see kafka_txn_failed()), KAFKA_FAILED
 * otherwise (a topic it has learnt does
 * not exist, say, which may yet be created).  The idempotent producer of
 * at-least-once mode chooses a keyed message's partition itself and may
 * hold the message back, KAFKA_HELD, while the first message of its
 * partition is in flight (kafka_topic.c).  Returns false only if
 * librdkafka's queue is full: then the caller waits, serving delivery
 * reports, and tries again.
 *
 * A name longer than Kafka allows is produced by name, which librdkafka
 * accepts and the broker refuses, so that the row fails like any other.
 *
 * librdkafka copies the key and the headers but not the value: value must
 * stay where it is until the message's delivery report is served, or the
 * producer is destroyed, which the caller's round (its results are written
 * by that report) needs anyway.  Copying every value doubled the relay's
 * memory for rows in flight.
 */
bool
kafka_produce(KafkaProducer *producer, KafkaRound *round, int index,
			  const char *topic,
			  const char *key, size_t key_len,
			  const char *value, size_t value_len,
			  const KafkaHeader *headers, int nheaders, int64 timestamp_ms)
{
	KafkaResult *result = &round->results[index];
	bool		temporary = strlen(topic) > KAFKA_TOPIC_NAME_MAX;
	KafkaTopic *entry = NULL;
	rd_kafka_topic_t *rkt;
	int32		partition = RD_KAFKA_PARTITION_UA;
	KafkaProbe	probe = KAFKA_PROBE_NONE;
	rd_kafka_headers_t *hdrs;
	rd_kafka_resp_err_t err;

	if (temporary)
		rkt = rd_kafka_topic_new(producer->rk, topic, NULL);
	else
	{
		entry = kafka_topic_get(&producer->topics, producer->rk, topic);
		rkt = entry != NULL ? kafka_topic_handle(entry) : NULL;
	}
	if (rkt == NULL)
	{
		set_result(producer, result, classify_refusal(producer, rd_kafka_last_error()),
				   rd_kafka_last_error());
		return true;
	}

	if (entry != NULL && !producer->transactional)
	{
		/* no metadata request while no broker answers */
		partition = kafka_topic_route(entry, producer->rk, key, key_len, producer->now_ms,
									  producer->brokers_down ? NULL : &producer->ask_after_ms,
									  &probe);
		if (partition == KAFKA_ROUTE_HOLD)
		{
			set_result(producer, result, KAFKA_HELD, RD_KAFKA_RESP_ERR_NO_ERROR);
			return true;
		}
	}

	hdrs = rd_kafka_headers_new(nheaders);
	for (int i = 0; i < nheaders; i++)
		rd_kafka_header_add(hdrs, headers[i].name, -1,
							headers[i].value, headers[i].value_len);

	err = rd_kafka_producev(producer->rk,
							RD_KAFKA_V_RKT(rkt),
							RD_KAFKA_V_PARTITION(partition),
							RD_KAFKA_V_KEY(key, key_len),
							RD_KAFKA_V_VALUE((void *) value, value_len),
							RD_KAFKA_V_MSGFLAGS(0),	/* value: see above */
							RD_KAFKA_V_HEADERS(hdrs),
							RD_KAFKA_V_TIMESTAMP(timestamp_ms),
							RD_KAFKA_V_OPAQUE(result),
							RD_KAFKA_V_END);
	if (temporary)
		rd_kafka_topic_destroy(rkt);	/* a queued message holds its own */
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		result->topic = entry;
		result->probe = probe;
		producer->outstanding++;
		round->outstanding++;
		return true;
	}

	rd_kafka_headers_destroy(hdrs); /* on failure they are still ours */
	if (entry != NULL && probe != KAFKA_PROBE_NONE)
		kafka_topic_answered(entry, partition, probe, false, producer->now_ms);
	if (entry != NULL && partition_unknown(err))
		kafka_topic_recount(entry);
	if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		return false;
	set_result(producer, result, classify_refusal(producer, err), err);
	return true;
}

/*
 * Produce the round's progress record to partition 0 of topic (the relay's
 * own partition of the progress topic, whatever the topic's partitioner
 * would choose).  Its outcome goes to the record's slot, read with
 * kafka_record_result(), by the same rules as a row's.
 */
bool
kafka_produce_record(KafkaProducer *producer, const char *topic,
					 const char *key, size_t key_len,
					 const char *value, size_t value_len)
{
	rd_kafka_resp_err_t err;

	err = rd_kafka_producev(producer->rk,
							RD_KAFKA_V_TOPIC(topic),
							RD_KAFKA_V_PARTITION(0),
							RD_KAFKA_V_KEY(key, key_len),
							RD_KAFKA_V_VALUE((void *) value, value_len),
							RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
							RD_KAFKA_V_OPAQUE(KAFKA_RECORD_OPAQUE),
							RD_KAFKA_V_END);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		producer->outstanding++;
		return true;
	}
	if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		return false;
	set_result(producer, KAFKA_RECORD_OPAQUE, classify_refusal(producer, err), err);
	return true;
}

KafkaResult
kafka_record_result(KafkaProducer *producer, int64 *offset)
{
	if (offset != NULL)
		*offset = producer->record_offset;
	return producer->record_result;
}

bool
kafka_txn_failed(KafkaProducer *producer)
{
	return producer->txn_failed;
}

/* Whether err says that another producer took our transactional id. */
static bool
is_fencing(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR__FENCED ||
		err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
		err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

/*
 * Whether err, from init_transactions(), is a refusal that only a change
 * of the settings or of the cluster can lift.
 */
static bool
is_refusal(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED ||
		err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
		err == RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT ||
		err == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE;
}

/*
 * Sort the answer of a transactional call (docs/exactly_once.md, section
 * 7), write "NAME: reason" into errbuf unless it is DONE, and free it.
 *
 * Fatal comes first: a fatal error is neither retriable nor abortable, and
 * a call made after the producer failed fatally may answer _STATE without
 * a flag, so the producer's own fatal error is looked at too.  At
 * init_transactions(), an error that is neither retriable nor fatal would
 * come back at every attempt: it is a refusal as well.
 */
static KafkaTxnAnswer
txn_answer(KafkaProducer *producer, rd_kafka_error_t *error, bool init,
		   char *errbuf, size_t len)
{
	rd_kafka_resp_err_t code;
	char		fatal[KAFKA_ERROR_LEN];
	rd_kafka_resp_err_t fatal_code;
	KafkaTxnAnswer answer;

	/* log lines and delivery reports served by the call */
	kafka_serve(producer);

	if (error == NULL)
	{
		producer->brokers_down = false;
		return KAFKA_TXN_DONE;
	}

	code = rd_kafka_error_code(error);
	snprintf(errbuf, len, "%s: %s",
			 rd_kafka_error_name(error), rd_kafka_error_string(error));
	fatal_code = rd_kafka_fatal_error(producer->rk, fatal, sizeof(fatal));

	if (rd_kafka_error_is_fatal(error) || fatal_code != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		if (!rd_kafka_error_is_fatal(error))
		{
			/* the producer's fatal error says more than _STATE */
			code = fatal_code;
			snprintf(errbuf, len, "%s: %s", rd_kafka_err2name(fatal_code), fatal);
		}
		if (is_fencing(code))
			answer = KAFKA_TXN_FENCED;
		else if (init && is_refusal(code))
			answer = KAFKA_TXN_REFUSED;
		else
			answer = KAFKA_TXN_FATAL;
	}
	else if (rd_kafka_error_is_retriable(error))
		answer = KAFKA_TXN_RETRY;
	else if (rd_kafka_error_txn_requires_abort(error))
		answer = KAFKA_TXN_ABORT;
	else if (init)
		answer = KAFKA_TXN_REFUSED;
	else
		answer = KAFKA_TXN_FATAL;

	rd_kafka_error_destroy(error);
	return answer;
}

KafkaTxnAnswer
kafka_txn_init(KafkaProducer *producer, char *errbuf, size_t len)
{
	Assert(producer->transactional);
	return txn_answer(producer,
					  rd_kafka_init_transactions(producer->rk, KAFKA_TXN_STEP_MS),
					  true, errbuf, len);
}

KafkaTxnAnswer
kafka_txn_begin(KafkaProducer *producer, char *errbuf, size_t len)
{
	Assert(producer->transactional);
	return txn_answer(producer, rd_kafka_begin_transaction(producer->rk),
					  false, errbuf, len);
}

/*
 * The commit first flushes what is still in flight; the relay has waited
 * for every delivery report before it commits, so that returns at once.
 */
KafkaTxnAnswer
kafka_txn_commit(KafkaProducer *producer, char *errbuf, size_t len)
{
	Assert(producer->transactional);
	return txn_answer(producer,
					  rd_kafka_commit_transaction(producer->rk, KAFKA_TXN_STEP_MS),
					  false, errbuf, len);
}

/*
 * The abort purges what is still in flight; the purged messages' reports
 * (KAFKA_NOT_SENT) are served here, in txn_answer().
 */
KafkaTxnAnswer
kafka_txn_abort(KafkaProducer *producer, char *errbuf, size_t len)
{
	Assert(producer->transactional);
	return txn_answer(producer,
					  rd_kafka_abort_transaction(producer->rk, KAFKA_TXN_STEP_MS),
					  false, errbuf, len);
}

/*
 * librdkafka warns at every idempotent producer's start that
 * enable.gapless.guarantee is experimental.  The relay sets it on purpose
 * (see the top of this file), so the warning says nothing to whoever reads
 * the log.
 */
static bool
expected_warning(const char *line)
{
	return strncmp(line, "CONFWARN:", 9) == 0 &&
		strstr(line, "enable.gapless.guarantee is experimental") != NULL;
}

/*
 * Serve queued events (delivery reports, errors, logs) and report the log
 * lines the callbacks recorded.
 */
void
kafka_serve(KafkaProducer *producer)
{
	kafka_event_pipe_drain(producer->pipefd[0]);
	producer->now_ms = GetCurrentTimestamp() / 1000;
	rd_kafka_poll(producer->rk, 0);
	kafka_log_report(&producer->log, expected_warning);
}

/* The descriptor to wait on for librdkafka events. */
int
kafka_wait_fd(KafkaProducer *producer)
{
	return producer->pipefd[0];
}

bool
kafka_fatal_error(KafkaProducer *producer, char *buf, size_t len)
{
	return rd_kafka_fatal_error(producer->rk, buf, len) != RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Whether the producer failed fatally because it was fenced. */
bool
kafka_fenced(KafkaProducer *producer)
{
	char		buf[KAFKA_ERROR_LEN];

	return is_fencing(rd_kafka_fatal_error(producer->rk, buf, sizeof(buf)));
}

/* Whether a message failed for its size, in the producer or the broker. */
bool
kafka_result_too_large(const KafkaResult *result)
{
	rd_kafka_resp_err_t err = (rd_kafka_resp_err_t) result->err;

	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
		err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

bool
kafka_brokers_down(KafkaProducer *producer)
{
	return producer->brokers_down;
}

/* The latest error from librdkafka, once. */
bool
kafka_take_error(KafkaProducer *producer, char *buf, size_t len)
{
	if (!producer->error_new)
		return false;
	strlcpy(buf, producer->error, len);
	producer->error_new = false;
	return true;
}

/* A message's error as "NAME: description", in the current memory context. */
char *
kafka_describe(const KafkaResult *result)
{
	rd_kafka_resp_err_t err = (rd_kafka_resp_err_t) result->err;

	return psprintf("%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
}
