/*-------------------------------------------------------------------------
 *
 * relay_progress.c
 *	  The Kafka side of exactly-once mode's progress topic: making sure it
 *	  exists, and finding a relay's last committed progress record when it
 *	  recovers (docs/exactly_once.md, sections 4 and 6).
 *
 * Each call makes a librdkafka consumer handle of its own and destroys it
 * before returning, also when an ERROR leaves the call.  The handle takes
 * the brokers and the user's properties as the producer does
 * (kafka_client.c), so it reaches the cluster with the same security
 * settings; the producer-only properties among them draw CONFWARN lines,
 * which are reported at DEBUG1.  It joins no consumer group: the Admin API
 * creates and describes the topic, and the group-less consumer API reads
 * partition 0, so the relay's principal needs no group ACL.
 *
 * Nothing here blocks in librdkafka.  Admin results and fetched messages
 * arrive on a queue of the handle that writes to a pipe when it stops
 * being empty (rd_kafka_queue_io_event_enable), and every wait is on the
 * relay's latch and that pipe, in steps of at most 100 ms, with
 * CHECK_FOR_INTERRUPTS() between them; a shutdown request or the call's
 * deadline ends the wait with PROGRESS_UNREACHABLE.  That is also why the
 * log end is found by consuming, not with rd_kafka_query_watermark_offsets(),
 * whose ListOffsets request is bounded only by socket.timeout.ms.
 *
 * Finding the last record (section 6, step 4).  After the relay's own
 * init_transactions() each of its transactions is committed or aborted, so
 * its records all lie before the log end as a read_uncommitted consumer
 * sees it; a read_committed consumer reads backwards from there in windows
 * of 8, 32, 128, ... offsets, each until its position passes the window's
 * end.  The position comes from the messages and from the end-of-partition
 * event, which passes commit markers and aborted records that are never
 * handed out; it stops at the last stable offset while another producer's
 * transaction is open there, and the read waits for that transaction to end
 * (reading only up to the last stable offset would miss a later record).
 * The last record with the relay's key in the latest window that has one
 * is the answer; the search stops at the log start, or just after the
 * record the caller knows to be dealt with.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "kafka_client.h"
#include "relay_progress.h"

/* The longest a wait goes without looking at interrupts. */
#define PROGRESS_STEP_MS		100

/* The only partition the relay writes to and reads. */
#define PROGRESS_PARTITION		0

/* The first window of the backward search, and how much each one grows. */
#define PROGRESS_FIRST_WINDOW	8
#define PROGRESS_WINDOW_GROWTH	4

/* The active segment is never compacted: an hour keeps its tail short. */
#define PROGRESS_SEGMENT_MS		"3600000"

#define PROGRESS_ERROR_LEN		256

/* One librdkafka handle and what its callbacks recorded. */
typedef struct ProgressClient
{
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue;	/* admin results, or fetched messages */
	rd_kafka_topic_t *topic;	/* while reading */
	bool		consuming;		/* partition 0 of topic started */
	int			pipefd[2];
	TimestampTz deadline;
	const char *what;			/* what it is waiting for, for errbuf */

	/* written by callbacks */
	KafkaLog	log;
	char		error[PROGRESS_ERROR_LEN];	/* the latest error */
} ProgressClient;

/* The topic last warned about, so that the warning comes once. */
static char warned_uncompacted[250];
static char logged_undescribed[250];

static void
client_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	ProgressClient *client = (ProgressClient *) rd_kafka_opaque(rk);

	kafka_log_add(&client->log, level, fac, buf);
}

static void
client_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	ProgressClient *client = (ProgressClient *) opaque;

	snprintf(client->error, sizeof(client->error), "%s: %s",
			 rd_kafka_err2name(err), reason);
}

/*
 * The user's kafka_config is written for the producer: librdkafka's
 * warnings that a consumer ignores some of it say nothing new.
 */
static bool
expected_warning(const char *line)
{
	return strncmp(line, "CONFWARN:", 9) == 0;
}

/*
 * Make the handle: a consumer reading with the given isolation level (NULL
 * for one that only administers), whose log and errors are served on this
 * thread.  An invalid setting raises an ERROR, as for the producer; a
 * handle librdkafka refuses to make is PROGRESS_REFUSED.
 */
static ProgressAnswer
client_open(ProgressClient *client, const char *brokers, const char *config,
			const char *client_id, const char *isolation,
			char *errbuf, size_t errlen)
{
	const KafkaClientKind kind = KAFKA_CLIENT_CONSUMER;
	rd_kafka_conf_t *conf;
	char		errstr[512];

	conf = rd_kafka_conf_new();

	/* small buffers: one record of at most 1 MB is wanted */
	kafka_conf_set(conf, kind, "client.id", client_id);
	kafka_conf_set(conf, kind, "queued.max.messages.kbytes", "1024");
	kafka_conf_set(conf, kind, "fetch.wait.max.ms", "50");
	kafka_conf_set(conf, kind, "fetch.error.backoff.ms", "50");

	kafka_conf_apply(conf, kind, brokers, config);

	/* what the search relies on */
	kafka_conf_set(conf, kind, "isolation.level",
				   isolation ? isolation : "read_committed");
	kafka_conf_set(conf, kind, "enable.partition.eof", "true");
	kafka_conf_set(conf, kind, "enable.auto.commit", "false");
	kafka_conf_set(conf, kind, "enable.auto.offset.store", "false");
	kafka_conf_set(conf, kind, "auto.offset.reset", "earliest");

	kafka_event_pipe_open(client->pipefd, conf, "consumer");

	rd_kafka_conf_set_opaque(conf, client);
	rd_kafka_conf_set_error_cb(conf, client_error_cb);
	rd_kafka_conf_set_log_cb(conf, client_log_cb);

	client->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (client->rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		snprintf(errbuf, errlen, "could not create Kafka consumer: %s", errstr);
		return PROGRESS_REFUSED;
	}

	kafka_main_queue_to_pipe(client->rk, client->pipefd[1]);

	client->queue = rd_kafka_queue_new(client->rk);
	rd_kafka_queue_io_event_enable(client->queue, client->pipefd[1], "1", 1);
	return PROGRESS_FOUND;
}

/* Stop reading, if it reads. */
static void
client_stop_reading(ProgressClient *client)
{
	if (client->consuming)
	{
		rd_kafka_consume_stop(client->topic, PROGRESS_PARTITION);
		client->consuming = false;
	}
}

/* Release everything client_open() made; safe on a half-made client. */
static void
client_close(ProgressClient *client)
{
	client_stop_reading(client);
	if (client->topic != NULL)
		rd_kafka_topic_destroy(client->topic);
	if (client->queue != NULL)
		rd_kafka_queue_destroy(client->queue);
	if (client->rk != NULL)
		rd_kafka_destroy(client->rk);
	if (client->pipefd[0] >= 0)
		close(client->pipefd[0]);
	if (client->pipefd[1] >= 0)
		close(client->pipefd[1]);
	client->topic = NULL;
	client->queue = NULL;
	client->rk = NULL;
	client->pipefd[0] = client->pipefd[1] = -1;
}

static ProgressClient *
client_new(TimestampTz deadline)
{
	ProgressClient *client = palloc0(sizeof(ProgressClient));

	client->pipefd[0] = client->pipefd[1] = -1;
	client->deadline = deadline;
	return client;
}

/* Serve the handle's callbacks and report its log lines. */
static void
client_serve(ProgressClient *client)
{
	kafka_event_pipe_drain(client->pipefd[0]);
	rd_kafka_poll(client->rk, 0);
	kafka_log_report(&client->log, expected_warning);
}

/*
 * Wait one step for the handle's queues, the latch or 100 ms.  Returns
 * false, with the reason in errbuf, when the wait must end: a shutdown was
 * asked for, or the deadline passed.
 */
static bool
client_wait(ProgressClient *client, char *errbuf, size_t errlen)
{
	long		remaining;
	int			rc;

	client_serve(client);
	if (ShutdownRequestPending)
	{
		snprintf(errbuf, errlen, "the relay was asked to stop while %s",
				 client->what);
		return false;
	}
	remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
												client->deadline);
	if (remaining <= 0)
	{
		if (client->error[0] != '\0')
			snprintf(errbuf, errlen, "no answer in time while %s; last error: %s",
					 client->what, client->error);
		else
			snprintf(errbuf, errlen, "no answer in time while %s",
					 client->what);
		return false;
	}

	rc = WaitLatchOrSocket(MyLatch,
						   WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT |
						   WL_EXIT_ON_PM_DEATH,
						   client->pipefd[0], Min(remaining, PROGRESS_STEP_MS),
						   PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	client_serve(client);
	return true;
}

/* The next admin result on the client's queue, or NULL (errbuf says why). */
static rd_kafka_event_t *
client_wait_event(ProgressClient *client, char *errbuf, size_t errlen)
{
	for (;;)
	{
		rd_kafka_event_t *event = rd_kafka_queue_poll(client->queue, 0);

		if (event != NULL)
			return event;
		if (!client_wait(client, errbuf, errlen))
			return NULL;
	}
}

/* Admin options whose request ends by the client's deadline. */
static rd_kafka_AdminOptions_t *
client_admin_options(ProgressClient *client, rd_kafka_admin_op_t op)
{
	rd_kafka_AdminOptions_t *options = rd_kafka_AdminOptions_new(client->rk, op);
	long		remaining;
	char		errstr[256];

	remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
												client->deadline);
	remaining = Max(remaining, PROGRESS_STEP_MS);
	(void) rd_kafka_AdminOptions_set_request_timeout(options, (int) remaining,
													 errstr, sizeof(errstr));
	if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS)
		(void) rd_kafka_AdminOptions_set_operation_timeout(options, (int) remaining / 2,
														   errstr, sizeof(errstr));
	return options;
}

static bool
is_authorization_error(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
		err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED;
}

/*
 * Whether an admin request's error may go away by itself: the cluster did
 * not answer, or not yet.
 */
static bool
is_transient_error(rd_kafka_resp_err_t err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR__TIMED_OUT:
		case RD_KAFKA_RESP_ERR__TRANSPORT:
		case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
		case RD_KAFKA_RESP_ERR__WAIT_COORD:
		case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
		case RD_KAFKA_RESP_ERR_NOT_CONTROLLER:
		case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
		case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
		case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
		case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
			return true;
		default:
			return false;
	}
}

/*
 * Ask the cluster to create the topic.  PROGRESS_FOUND: it is there now;
 * *not_permitted: the relay may not create it (PROGRESS_REFUSED then, and
 * the description may still say that it exists).
 */
static ProgressAnswer
create_topic(ProgressClient *client, const char *topic, bool *not_permitted,
			 char *errbuf, size_t errlen)
{
	rd_kafka_NewTopic_t *newtopic;
	rd_kafka_AdminOptions_t *options;
	rd_kafka_event_t *event;
	const rd_kafka_topic_result_t **results;
	size_t		nresults;
	rd_kafka_resp_err_t err;
	const char *reason;
	char		errstr[256];
	ProgressAnswer answer;

	*not_permitted = false;
	newtopic = rd_kafka_NewTopic_new(topic, 1, -1, errstr, sizeof(errstr));
	if (newtopic == NULL)
	{
		snprintf(errbuf, errlen, "could not create progress topic \"%s\": %s",
				 topic, errstr);
		return PROGRESS_REFUSED;
	}
	if (rd_kafka_NewTopic_set_config(newtopic, "cleanup.policy", "compact") != RD_KAFKA_RESP_ERR_NO_ERROR ||
		rd_kafka_NewTopic_set_config(newtopic, "segment.ms", PROGRESS_SEGMENT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
		elog(ERROR, "could not set the configuration of a new Kafka topic");

	options = client_admin_options(client, RD_KAFKA_ADMIN_OP_CREATETOPICS);
	rd_kafka_CreateTopics(client->rk, &newtopic, 1, options, client->queue);
	rd_kafka_AdminOptions_destroy(options);
	rd_kafka_NewTopic_destroy(newtopic);

	client->what = "creating the progress topic";
	event = client_wait_event(client, errbuf, errlen);
	if (event == NULL)
		return PROGRESS_UNREACHABLE;

	err = rd_kafka_event_error(event);
	reason = rd_kafka_event_error_string(event);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event),
													  &nresults);
		if (nresults != 1)
			elog(ERROR, "CreateTopics returned %zu results for one topic", nresults);
		err = rd_kafka_topic_result_error(results[0]);
		reason = rd_kafka_topic_result_error_string(results[0]);
	}

	if (err == RD_KAFKA_RESP_ERR_NO_ERROR ||
		err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
		answer = PROGRESS_FOUND;
	else
	{
		snprintf(errbuf, errlen, "could not create progress topic \"%s\": %s: %s",
				 topic, rd_kafka_err2name(err),
				 reason ? reason : rd_kafka_err2str(err));
		if (is_authorization_error(err))
		{
			*not_permitted = true;
			answer = PROGRESS_REFUSED;
		}
		else if (is_transient_error(err))
			answer = PROGRESS_UNREACHABLE;
		else
			answer = PROGRESS_REFUSED;
	}
	rd_kafka_event_destroy(event);
	return answer;
}

/* Whether a cleanup.policy value names compact among its policies. */
static bool
policy_compacts(const char *value)
{
	const char *p = value;

	while (p != NULL && *p != '\0')
	{
		size_t		len;

		p += strspn(p, ", ");
		len = strcspn(p, ", ");
		if (len == strlen("compact") && strncmp(p, "compact", len) == 0)
			return true;
		p += len;
	}
	return false;
}

/* Look at a description: cleanup.policy, max.message.bytes. */
static void
check_description(const rd_kafka_ConfigResource_t *resource, const char *topic,
				  int *max_message_bytes)
{
	const rd_kafka_ConfigEntry_t **entries;
	size_t		nentries;

	entries = rd_kafka_ConfigResource_configs(resource, &nentries);
	for (size_t i = 0; i < nentries; i++)
	{
		const char *name = rd_kafka_ConfigEntry_name(entries[i]);
		const char *value = rd_kafka_ConfigEntry_value(entries[i]);

		if (name == NULL || value == NULL)
			continue;
		if (strcmp(name, "max.message.bytes") == 0)
		{
			char	   *end;
			long		bytes = strtol(value, &end, 10);

			if (*end == '\0' && bytes > 0 && bytes <= PG_INT32_MAX)
				*max_message_bytes = (int) bytes;
		}
		else if (strcmp(name, "cleanup.policy") == 0 && !policy_compacts(value))
		{
			if (strcmp(warned_uncompacted, topic) != 0)
				ereport(WARNING,
						errmsg("inbox_outbox relay: progress topic \"%s\" is not compacted",
							   topic),
						errdetail("Its cleanup.policy is \"%s\", so it keeps every progress record until its retention deletes it.",
								  value),
						errhint("Set cleanup.policy=compact on the topic."));
			strlcpy(warned_uncompacted, topic, sizeof(warned_uncompacted));
		}
	}
}

/*
 * Describe the topic.  A topic just created may not be known yet to the
 * broker that answers, so "unknown topic" is asked again until the deadline,
 * unless the relay could not create it (it is missing then).  A principal
 * that may not describe configs is logged once and is no failure.
 */
static ProgressAnswer
describe_topic(ProgressClient *client, const char *topic, bool not_permitted,
			   int *max_message_bytes, char *errbuf, size_t errlen)
{
	client->what = "describing the progress topic";

	for (;;)
	{
		rd_kafka_ConfigResource_t *resource;
		rd_kafka_AdminOptions_t *options;
		rd_kafka_event_t *event;
		const rd_kafka_ConfigResource_t **resources;
		size_t		nresources;
		rd_kafka_resp_err_t err;
		const char *reason;

		resource = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
		options = client_admin_options(client, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
		rd_kafka_DescribeConfigs(client->rk, &resource, 1, options, client->queue);
		rd_kafka_AdminOptions_destroy(options);
		rd_kafka_ConfigResource_destroy(resource);

		event = client_wait_event(client, errbuf, errlen);
		if (event == NULL)
			return PROGRESS_UNREACHABLE;

		err = rd_kafka_event_error(event);
		reason = rd_kafka_event_error_string(event);
		resources = NULL;
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			resources = rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(event),
																  &nresources);
			if (nresources != 1)
				elog(ERROR, "DescribeConfigs returned %zu results for one topic", nresources);
			err = rd_kafka_ConfigResource_error(resources[0]);
			reason = rd_kafka_ConfigResource_error_string(resources[0]);
		}
		if (reason == NULL)
			reason = rd_kafka_err2str(err);

		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			check_description(resources[0], topic, max_message_bytes);
			rd_kafka_event_destroy(event);
			return PROGRESS_FOUND;
		}

		snprintf(errbuf, errlen, "could not describe progress topic \"%s\": %s: %s",
				 topic, rd_kafka_err2name(err), reason);
		if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART && not_permitted)
		{
			rd_kafka_event_destroy(event);
			snprintf(errbuf, errlen,
					 "progress topic \"%s\" does not exist, and the relay may not create it",
					 topic);
			return PROGRESS_REFUSED;
		}
		if (err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
			!is_transient_error(err))
		{
			/* optional: say so once, and go on as if it were fine */
			if (strcmp(logged_undescribed, topic) != 0)
				ereport(LOG,
						errmsg("inbox_outbox relay: could not describe progress topic \"%s\"",
							   topic),
						errdetail("%s: %s", rd_kafka_err2name(err), reason));
			strlcpy(logged_undescribed, topic, sizeof(logged_undescribed));
			rd_kafka_event_destroy(event);
			return PROGRESS_FOUND;
		}
		rd_kafka_event_destroy(event);

		/* ask again after a step */
		if (!client_wait(client, errbuf, errlen))
			return PROGRESS_UNREACHABLE;
	}
}

ProgressAnswer
relay_progress_topic_ensure(const char *brokers, const char *config,
							const char *client_id, const char *topic,
							int timeout_ms, int *max_message_bytes,
							char *errbuf, size_t errlen)
{
	ProgressClient *client;
	volatile ProgressAnswer answer;

	*max_message_bytes = -1;
	client = client_new(TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms));
	PG_TRY();
	{
		answer = client_open(client, brokers, config, client_id, NULL,
							 errbuf, errlen);
		if (answer == PROGRESS_FOUND)
		{
			bool		not_permitted;

			answer = create_topic(client, topic, &not_permitted, errbuf, errlen);
			if (answer == PROGRESS_FOUND || not_permitted)
				answer = describe_topic(client, topic, not_permitted,
										max_message_bytes, errbuf, errlen);
		}
	}
	PG_FINALLY();
	{
		client_close(client);
	}
	PG_END_TRY();
	pfree(client);
	return answer;
}

/*
 * Start reading partition 0 of the client's topic at offset (an offset or
 * RD_KAFKA_OFFSET_BEGINNING/END), on a queue of its own.
 */
static ProgressAnswer
start_reading(ProgressClient *client, int64 offset, char *errbuf, size_t errlen)
{
	client_stop_reading(client);
	if (client->queue != NULL)
		rd_kafka_queue_destroy(client->queue);
	client->queue = rd_kafka_queue_new(client->rk);
	rd_kafka_queue_io_event_enable(client->queue, client->pipefd[1], "1", 1);

	if (rd_kafka_consume_start_queue(client->topic, PROGRESS_PARTITION, offset,
									 client->queue) == -1)
	{
		rd_kafka_resp_err_t err = rd_kafka_last_error();

		snprintf(errbuf, errlen, "could not read progress topic \"%s\": %s",
				 rd_kafka_topic_name(client->topic), rd_kafka_err2str(err));
		return PROGRESS_REFUSED;
	}
	client->consuming = true;
	return PROGRESS_FOUND;
}

/*
 * The next message or event of the partition being read, or NULL when the
 * read must end, with the answer in *failure and the reason in errbuf:
 * PROGRESS_UNREACHABLE when the wait ends, PROGRESS_REFUSED when the
 * principal may not read the topic, PROGRESS_NONE when the topic does not
 * exist (deleted by hand: its records are gone).  Other errors that the
 * fetcher reports are remembered for errbuf and waited out.
 */
static rd_kafka_message_t *
next_message(ProgressClient *client, ProgressAnswer *failure,
			 char *errbuf, size_t errlen)
{
	for (;;)
	{
		rd_kafka_message_t *msg = rd_kafka_consume_queue(client->queue, 0);
		rd_kafka_resp_err_t err;

		if (msg == NULL)
		{
			if (!client_wait(client, errbuf, errlen))
			{
				*failure = PROGRESS_UNREACHABLE;
				return NULL;
			}
			continue;
		}
		err = msg->err;
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR ||
			err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			return msg;

		snprintf(client->error, sizeof(client->error), "%s: %s",
				 rd_kafka_err2name(err), rd_kafka_message_errstr(msg));
		rd_kafka_message_destroy(msg);
		if (is_authorization_error(err) ||
			err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
			err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
			err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
		{
			snprintf(errbuf, errlen, "could not read progress topic \"%s\": %s",
					 rd_kafka_topic_name(client->topic), client->error);
			*failure = is_authorization_error(err) ? PROGRESS_REFUSED : PROGRESS_NONE;
			return NULL;
		}
	}
}

/*
 * Where reading from offset begins: the offset of the first message, or of
 * the end of the partition if none comes first.  From RD_KAFKA_OFFSET_END
 * with read_uncommitted, that is the log end; from 0, the log start, since
 * an offset below it is reset to the earliest (auto.offset.reset).
 */
static ProgressAnswer
first_position(ProgressClient *client, int64 offset, int64 *position,
			   char *errbuf, size_t errlen)
{
	rd_kafka_message_t *msg;
	ProgressAnswer answer;

	answer = start_reading(client, offset, errbuf, errlen);
	if (answer != PROGRESS_FOUND)
		return answer;
	msg = next_message(client, &answer, errbuf, errlen);
	if (msg == NULL)
		return answer;
	*position = msg->offset;
	rd_kafka_message_destroy(msg);
	client_stop_reading(client);
	return PROGRESS_FOUND;
}

/* The last record with key in [start, stop), if any. */
typedef struct ProgressFound
{
	bool		found;
	int64		offset;
	char	   *value;
	size_t		value_len;
} ProgressFound;

/*
 * Read [start, stop) with the client's isolation level until the position
 * reaches stop, keeping the last record with key in *found.
 */
static ProgressAnswer
read_window(ProgressClient *client, int64 start, int64 stop, const char *key,
			ProgressFound *found, char *errbuf, size_t errlen)
{
	size_t		key_len = strlen(key);
	int64		position = start;
	ProgressAnswer answer;

	answer = start_reading(client, start, errbuf, errlen);
	if (answer != PROGRESS_FOUND)
		return answer;

	while (position < stop)
	{
		rd_kafka_message_t *msg = next_message(client, &answer, errbuf, errlen);

		if (msg == NULL)
			return answer;

		if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			position = Max(position, msg->offset);
		else
		{
			/* beyond stop lies what a later window read already */
			if (msg->offset >= start && msg->offset < stop &&
				msg->key_len == key_len &&
				(key_len == 0 || memcmp(msg->key, key, key_len) == 0))
			{
				if (found->value != NULL)
					pfree(found->value);
				found->found = true;
				found->offset = msg->offset;
				found->value_len = msg->len;
				found->value = palloc(Max(msg->len, 1));
				if (msg->len > 0)
					memcpy(found->value, msg->payload, msg->len);
			}
			position = Max(position, msg->offset + 1);
		}
		rd_kafka_message_destroy(msg);
	}
	client_stop_reading(client);
	return PROGRESS_FOUND;
}

/*
 * Step 1 of the search: the log start and the log end of partition 0 as a
 * read_uncommitted consumer sees them.
 */
static ProgressAnswer
find_log_bounds(ProgressClient *client, int64 *low, int64 *high,
				char *errbuf, size_t errlen)
{
	ProgressAnswer answer;

	client->what = "looking for the end of the progress topic";

	/*
	 * Offset 0 rather than RD_KAFKA_OFFSET_BEGINNING: a logical offset asked
	 * for before the handle knows the partition's leader is looked up again
	 * only half a second later (librdkafka 2.0.2).
	 */
	answer = first_position(client, 0, low, errbuf, errlen);
	if (answer == PROGRESS_FOUND)
		answer = first_position(client, RD_KAFKA_OFFSET_END, high, errbuf, errlen);
	return answer;
}

/* Step 2: backwards from high in growing windows, down to floor. */
static ProgressAnswer
search_backwards(ProgressClient *client, const char *key, int64 floor,
				 int64 high, ProgressFound *found, char *errbuf, size_t errlen)
{
	int64		stop = high;
	int64		window = PROGRESS_FIRST_WINDOW;

	client->what = "reading the progress topic";
	while (stop > floor)
	{
		int64		start = Max(floor, stop - window);
		ProgressAnswer answer;

		answer = read_window(client, start, stop, key, found, errbuf, errlen);
		if (answer != PROGRESS_FOUND)
			return answer;
		if (found->found)
			return PROGRESS_FOUND;
		stop = start;
		window *= PROGRESS_WINDOW_GROWTH;
	}
	return PROGRESS_NONE;
}

ProgressAnswer
relay_progress_find_last(const char *brokers, const char *config,
						 const char *client_id, const char *topic,
						 const char *key, int64 after_offset, int timeout_ms,
						 char **value, size_t *value_len, int64 *offset,
						 char *errbuf, size_t errlen)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   timeout_ms);
	ProgressClient *volatile client = NULL;
	volatile ProgressAnswer answer;
	int64		low = 0;
	int64		high = 0;
	ProgressFound found = {0};

	*value = NULL;
	*value_len = 0;
	*offset = -1;

	PG_TRY();
	{
		/* the log's bounds, as a read_uncommitted consumer sees them */
		client = client_new(deadline);
		answer = client_open(client, brokers, config, client_id,
							 "read_uncommitted", errbuf, errlen);
		if (answer == PROGRESS_FOUND)
		{
			client->topic = rd_kafka_topic_new(client->rk, topic, NULL);
			answer = find_log_bounds(client, &low, &high, errbuf, errlen);
		}
		client_close(client);
		pfree(client);
		client = NULL;

		if (answer == PROGRESS_FOUND)
		{
			int64		floor = low;

			/* a stale offset (the topic made anew) counts for nothing */
			if (after_offset >= 0 && after_offset < high)
				floor = Max(low, after_offset + 1);

			client = client_new(deadline);
			answer = client_open(client, brokers, config, client_id,
								 "read_committed", errbuf, errlen);
			if (answer == PROGRESS_FOUND)
			{
				client->topic = rd_kafka_topic_new(client->rk, topic, NULL);
				answer = search_backwards(client, key, floor, high, &found,
										  errbuf, errlen);
			}
			client_close(client);
			pfree(client);
			client = NULL;
		}
	}
	PG_FINALLY();
	{
		if (client != NULL)
			client_close(client);
	}
	PG_END_TRY();

	if (answer == PROGRESS_FOUND)
	{
		*value = found.value;
		*value_len = found.value_len;
		*offset = found.offset;
	}
	else if (found.value != NULL)
		pfree(found.value);
	return answer;
}
