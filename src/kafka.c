/*-------------------------------------------------------------------------
 *
 * kafka.c
 *	  The relay's Kafka producer: a thin wrapper around librdkafka.
 *
 * librdkafka runs threads of its own.  None of them may call into
 * PostgreSQL, so every callback here only records into plain C memory owned
 * by the KafkaProducer: the delivery callback stores each message's outcome
 * in a results array indexed by the message's position in the relay's
 * round, the error callback keeps the latest error, and the log callback
 * queues lines.  All callbacks run inside rd_kafka_poll() on the relay's
 * own thread (logs are routed to the main queue with log.queue), and the
 * queued log lines are reported with ereport() only after rd_kafka_poll()
 * has returned.
 *
 * The relay sleeps in WaitLatchOrSocket() on a pipe that librdkafka writes
 * to when an event arrives on the main queue (rd_kafka_queue_io_event_enable),
 * so delivery reports wake it as promptly as its latch does.
 *
 * Producer settings that the relay's promises rest on are applied after the
 * user's inbox_outbox.kafka_config and cannot be overridden:
 *  - enable.idempotence=true (acks=all, ordered retries without duplicates
 *    inside the broker);
 *  - enable.gapless.guarantee=true: a message that fails for good makes the
 *    producer fail fatally instead of letting later messages of the same
 *    partition through, so a key's later event can never overtake an
 *    earlier failed one; the relay then recreates the producer;
 *  - message.timeout.ms=0: messages never time out, since a timeout is the
 *    one failure gapless delivery does not cover.  A broker outage leaves
 *    messages queued (bounded by the relay's batch) until it ends;
 *  - partitioner=murmur2_random: keyed messages land on the partition the
 *    Java client would choose;
 *  - delivery.report.only.error=false: a row leaves the outbox only on a
 *    successful delivery report;
 *  - internal.termination.signal=0: librdkafka would otherwise install its
 *    own handler for that signal, over PostgreSQL's;
 *  - test.mock.num.brokers=0: a mock cluster inside the process would
 *    acknowledge every event and deliver none.
 *
 * The user's properties are parsed by kafka_config.c, which also says which
 * ones are refused: those the relay sets (above), and, unless
 * inbox_outbox.allow_unsafe_kafka_properties is on, those that make
 * librdkafka run a program or load code.  No message here quotes the value
 * of a property kafka_config.c calls secret.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "kafka.h"
#include "kafka_config.h"
#include "relay_api.h"

#define KAFKA_LOG_LINES		32
#define KAFKA_LOG_LEN		512
#define KAFKA_ERROR_LEN		256

struct KafkaProducer
{
	rd_kafka_t *rk;
	int			pipefd[2];

	/* written by callbacks */
	KafkaResult *results;
	int			nresults;
	int			outstanding;

	int			nlog;
	int			log_level[KAFKA_LOG_LINES];
	char		log_line[KAFKA_LOG_LINES][KAFKA_LOG_LEN];
	int			log_dropped;

	bool		brokers_down;
	bool		error_new;
	char		error[KAFKA_ERROR_LEN];
};

/*
 * The class of a delivery error.  A purge, a fatal error of the producer
 * (which fails every message in flight) and the producer's destruction say
 * nothing about the message itself: it was not sent, and that costs it no
 * attempt.
 */
static KafkaOutcome
classify(rd_kafka_resp_err_t err)
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
		default:
			return KAFKA_FAILED;
	}
}

static void
set_result(KafkaProducer *producer, intptr_t index, KafkaOutcome outcome,
		   rd_kafka_resp_err_t err)
{
	if (index >= 0 && index < producer->nresults)
	{
		producer->results[index].outcome = outcome;
		producer->results[index].err = (int) err;
	}
}

static void
delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	KafkaProducer *producer = (KafkaProducer *) opaque;

	set_result(producer, (intptr_t) msg->_private, classify(msg->err), msg->err);
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

	if (producer->nlog >= KAFKA_LOG_LINES)
	{
		producer->log_dropped++;
		return;
	}
	producer->log_level[producer->nlog] = level;
	snprintf(producer->log_line[producer->nlog], KAFKA_LOG_LEN, "%s: %s", fac, buf);
	producer->nlog++;
}

static void
set_property(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK)
		return;

	rd_kafka_conf_destroy(conf);
	/* librdkafka's message may quote the value */
	if (kafka_property_is_secret(name))
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("invalid Kafka producer property \"%s\"", name),
				errdetail("librdkafka refused its value, which is not shown because it is secret."));
	ereport(ERROR,
			errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			errmsg("invalid Kafka producer property \"%s\"", name),
			errdetail("%s", errstr));
}

/* Apply one entry of the user's configuration; conf is destroyed on error. */
static bool
apply_property(void *arg, const char *name, const char *value,
			   char *errbuf, size_t errlen)
{
	rd_kafka_conf_t *conf = (rd_kafka_conf_t *) arg;

	if (kafka_property_value_exposes_secrets(name, value))
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("Kafka property \"%s\" has a value that is not allowed", name),
				errdetail("It asks librdkafka to log its configuration, secrets included."),
				errhint("Name the debug contexts you need other than \"all\" and \"conf\"."));
	}

	switch (kafka_property_class(name))
	{
		case KAFKA_PROPERTY_ORDINARY:
			break;
		case KAFKA_PROPERTY_UNSAFE:
			if (*relay_api->allow_unsafe_kafka_properties)
				break;
			rd_kafka_conf_destroy(conf);
			ereport(ERROR,
					errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					errmsg("Kafka property \"%s\" is not allowed", name),
					errdetail("It runs a program or loads code into the server."),
					errhint("Set inbox_outbox.allow_unsafe_kafka_properties = on in postgresql.conf and restart the server to allow it."));
			break;
		case KAFKA_PROPERTY_RESERVED:
			rd_kafka_conf_destroy(conf);
			ereport(ERROR,
					errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					errmsg("Kafka property \"%s\" cannot be set", name),
					errdetail("The relay sets this property itself, because its delivery guarantees or its process depend on it."),
					(strcmp(name, "bootstrap.servers") == 0 ||
					 strcmp(name, "metadata.broker.list") == 0) ?
					errhint("Set inbox_outbox.brokers instead.") : 0);
			break;
	}
	set_property(conf, name, value);
	return true;
}

/*
 * Apply the user's "name=value" entries; origin names where they come from
 * in a syntax error.  list is scribbled on.
 */
static void
apply_properties(rd_kafka_conf_t *conf, char *list, const char *origin)
{
	char		errbuf[256];

	if (!kafka_config_parse(list, apply_property, conf, errbuf, sizeof(errbuf)))
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("invalid entry in %s", origin),
				errdetail("%s", errbuf),
				errhint("Write librdkafka properties as name=value, separated by semicolons or newlines."));
	}
}

static void
apply_extra_config(rd_kafka_conf_t *conf, const char *extra)
{
	if (extra == NULL || extra[0] == '\0')
		return;

	if (extra[0] == '/')
	{
		FILE	   *file = AllocateFile(extra, "r");
		StringInfoData buf;
		char		chunk[1024];
		size_t		n;

		if (file == NULL)
		{
			rd_kafka_conf_destroy(conf);
			ereport(ERROR,
					errcode_for_file_access(),
					errmsg("could not open file \"%s\" named by inbox_outbox.kafka_config: %m",
						   extra));
		}
		initStringInfo(&buf);
		while ((n = fread(chunk, 1, sizeof(chunk), file)) > 0)
			appendBinaryStringInfo(&buf, chunk, n);
		FreeFile(file);

		/* the parser would stop at a zero byte and drop what follows it */
		if (strlen(buf.data) != (size_t) buf.len)
		{
			rd_kafka_conf_destroy(conf);
			ereport(ERROR,
					errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					errmsg("file \"%s\" named by inbox_outbox.kafka_config contains a zero byte",
						   extra));
		}
		apply_properties(conf, buf.data, "the file named by inbox_outbox.kafka_config");
		pfree(buf.data);
	}
	else
	{
		char	   *copy = pstrdup(extra);

		apply_properties(conf, copy, "inbox_outbox.kafka_config");
		pfree(copy);
	}
}

KafkaProducer *
kafka_producer_create(const char *brokers, const char *extra_config,
					  const char *client_id)
{
	KafkaProducer *producer;
	rd_kafka_conf_t *conf;
	char		errstr[512];
	rd_kafka_queue_t *mainq;

	/*
	 * The configuration comes first: it is what usually fails, and nothing
	 * else is held yet when it does.
	 */
	conf = rd_kafka_conf_new();

	/* tunable defaults, which inbox_outbox.kafka_config may change */
	set_property(conf, "client.id", client_id);
	set_property(conf, "linger.ms", "0");
	set_property(conf, "queue.buffering.max.kbytes", "131072");
	set_property(conf, "topic.metadata.propagation.max.ms", "2000");
	set_property(conf, "socket.keepalive.enable", "true");

	apply_extra_config(conf, extra_config);

	/* what the relay's guarantees rest on */
	set_property(conf, "bootstrap.servers", brokers);
	set_property(conf, "enable.idempotence", "true");
	set_property(conf, "acks", "all");
	set_property(conf, "enable.gapless.guarantee", "true");
	set_property(conf, "message.timeout.ms", "0");
	set_property(conf, "partitioner", "murmur2_random");
	set_property(conf, "log.queue", "true");
	set_property(conf, "delivery.report.only.error", "false");
	set_property(conf, "internal.termination.signal", "0");
	set_property(conf, "test.mock.num.brokers", "0");

	producer = MemoryContextAllocZero(TopMemoryContext, sizeof(KafkaProducer));
	if (pipe(producer->pipefd) != 0)
	{
		rd_kafka_conf_destroy(conf);
		pfree(producer);
		ereport(ERROR,
				errcode_for_socket_access(),
				errmsg("could not create pipe for the Kafka producer: %m"));
	}
	fcntl(producer->pipefd[0], F_SETFL, O_NONBLOCK);
	fcntl(producer->pipefd[1], F_SETFL, O_NONBLOCK);

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

	rd_kafka_set_log_queue(producer->rk, NULL);
	mainq = rd_kafka_queue_get_main(producer->rk);
	rd_kafka_queue_io_event_enable(mainq, producer->pipefd[1], "1", 1);
	rd_kafka_queue_destroy(mainq);

	return producer;
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

/* Purge, then destroy the producer. */
void
kafka_producer_destroy(KafkaProducer *producer, int timeout_ms)
{
	if (producer == NULL)
		return;

	kafka_purge(producer, timeout_ms);
	producer->results = NULL;
	producer->nresults = 0;
	rd_kafka_destroy(producer->rk);

	close(producer->pipefd[0]);
	close(producer->pipefd[1]);
	pfree(producer);
}

/*
 * Start a round of up to nmessages messages whose outcomes go to results,
 * an array the caller owns and keeps until the round is over.
 */
void
kafka_begin_round(KafkaProducer *producer, KafkaResult *results, int nmessages)
{
	Assert(producer->outstanding == 0);
	memset(results, 0, sizeof(KafkaResult) * nmessages);
	producer->results = results;
	producer->nresults = nmessages;
}

int
kafka_outstanding(KafkaProducer *producer)
{
	return producer->outstanding;
}

/*
 * Produce one message; its outcome arrives in results[index], at once if
 * librdkafka refuses it outright: KAFKA_REJECTED for a message above the
 * producer's message.max.bytes, KAFKA_FAILED otherwise (a topic it has
 * learnt does not exist, say, which may yet be created).  Returns false
 * only if librdkafka's queue is full: then the caller waits, serving
 * delivery reports, and tries again.
 */
bool
kafka_produce(KafkaProducer *producer, int index, const char *topic,
			  const char *key, size_t key_len,
			  const char *value, size_t value_len,
			  const KafkaHeader *headers, int nheaders, int64 timestamp_ms)
{
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(nheaders);
	rd_kafka_resp_err_t err;

	for (int i = 0; i < nheaders; i++)
		rd_kafka_header_add(hdrs, headers[i].name, -1,
							headers[i].value, headers[i].value_len);

	err = rd_kafka_producev(producer->rk,
							RD_KAFKA_V_TOPIC(topic),
							RD_KAFKA_V_KEY(key, key_len),
							RD_KAFKA_V_VALUE((void *) value, value_len),
							RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
							RD_KAFKA_V_HEADERS(hdrs),
							RD_KAFKA_V_TIMESTAMP(timestamp_ms),
							RD_KAFKA_V_OPAQUE((void *) (intptr_t) index),
							RD_KAFKA_V_END);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		producer->outstanding++;
		return true;
	}

	rd_kafka_headers_destroy(hdrs); /* on failure they are still ours */
	if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		return false;
	set_result(producer, index,
			   err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? KAFKA_REJECTED : KAFKA_FAILED,
			   err);
	return true;
}

/*
 * librdkafka warns at every producer's start that enable.gapless.guarantee
 * is experimental.  The relay sets it on purpose (see the top of this
 * file), so the warning says nothing to whoever reads the log.
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
	char		drain[64];

	while (read(producer->pipefd[0], drain, sizeof(drain)) > 0)
		;
	rd_kafka_poll(producer->rk, 0);

	for (int i = 0; i < producer->nlog; i++)
		ereport(producer->log_level[i] <= 4 && !expected_warning(producer->log_line[i]) ?
				LOG : DEBUG1,
				errmsg_internal("librdkafka: %s", producer->log_line[i]));
	if (producer->log_dropped > 0)
		ereport(LOG,
				errmsg_internal("librdkafka: %d log lines dropped", producer->log_dropped));
	producer->nlog = 0;
	producer->log_dropped = 0;
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
