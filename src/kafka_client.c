/*-------------------------------------------------------------------------
 *
 * kafka_client.c
 *	  What every librdkafka handle of the relay shares: its configuration,
 *	  made from inbox_outbox.brokers and inbox_outbox.kafka_config, and the
 *	  reporting of its log lines.
 *
 * A handle's configuration is built in three layers: defaults the user may
 * change (set by the caller), the user's properties, then what the relay's
 * promises and its process depend on (the brokers and the settings below,
 * then the caller's own).  The user's properties are parsed by
 * kafka_config.c, which also says which ones are refused: those the relay
 * sets, and, unless inbox_outbox.allow_unsafe_kafka_properties is on, those
 * that make librdkafka run a program or load code.  No message here quotes
 * the value of a property kafka_config.c calls secret.
 *
 * Settings every handle gets:
 *  - log.queue=true: librdkafka queues its log lines instead of calling the
 *    log callback from its own threads, so the callback runs inside
 *    rd_kafka_poll() on the relay's thread (see kafka_client.h);
 *  - internal.termination.signal=0: librdkafka would otherwise install its
 *    own handler for that signal, over PostgreSQL's;
 *  - test.mock.num.brokers=0: a mock cluster inside the process would
 *    acknowledge every event and deliver none.
 *
 * The same properties go to the producer and to the consumer that reads
 * the progress topic, so that both reach the brokers with the same
 * security settings; librdkafka ignores, with a CONFWARN log line, a
 * property that is for the other kind of client.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "lib/stringinfo.h"
#include "storage/fd.h"

#include "kafka_client.h"
#include "kafka_config.h"
#include "relay_api.h"

typedef struct ApplyState
{
	rd_kafka_conf_t *conf;
	KafkaClientKind kind;
} ApplyState;

void
kafka_conf_set(rd_kafka_conf_t *conf, KafkaClientKind kind,
			   const char *name, const char *value)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK)
		return;

	rd_kafka_conf_destroy(conf);
	/* librdkafka's message may quote the value */
	if (kafka_property_is_secret(name))
		errstr[0] = '\0';
	if (kind == KAFKA_CLIENT_PRODUCER)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("invalid Kafka producer property \"%s\"", name),
				errstr[0] ? errdetail("%s", errstr) :
				errdetail("librdkafka refused its value, which is not shown because it is secret."));
	ereport(ERROR,
			errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			errmsg("invalid Kafka consumer property \"%s\"", name),
			errstr[0] ? errdetail("%s", errstr) :
			errdetail("librdkafka refused its value, which is not shown because it is secret."));
}

/* Apply one entry of the user's configuration; conf is destroyed on error. */
static bool
apply_property(void *arg, const char *name, const char *value,
			   char *errbuf, size_t errlen)
{
	ApplyState *state = (ApplyState *) arg;

	if (kafka_property_value_exposes_secrets(name, value))
	{
		rd_kafka_conf_destroy(state->conf);
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
			rd_kafka_conf_destroy(state->conf);
			ereport(ERROR,
					errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					errmsg("Kafka property \"%s\" is not allowed", name),
					errdetail("It runs a program or loads code into the server."),
					errhint("Set inbox_outbox.allow_unsafe_kafka_properties = on in postgresql.conf and restart the server to allow it."));
			break;
		case KAFKA_PROPERTY_RESERVED:
			rd_kafka_conf_destroy(state->conf);
			ereport(ERROR,
					errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					errmsg("Kafka property \"%s\" cannot be set", name),
					errdetail("The relay sets this property itself, because its delivery guarantees or its process depend on it."),
					(strcmp(name, "bootstrap.servers") == 0 ||
					 strcmp(name, "metadata.broker.list") == 0) ?
					errhint("Set inbox_outbox.brokers instead.") : 0);
			break;
	}
	kafka_conf_set(state->conf, state->kind, name, value);
	return true;
}

/*
 * Apply the user's "name=value" entries; origin names where they come from
 * in a syntax error.  list is scribbled on.
 */
static void
apply_properties(ApplyState *state, char *list, const char *origin)
{
	char		errbuf[256];

	if (!kafka_config_parse(list, apply_property, state, errbuf, sizeof(errbuf)))
	{
		rd_kafka_conf_destroy(state->conf);
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("invalid entry in %s", origin),
				errdetail("%s", errbuf),
				errhint("Write librdkafka properties as name=value, separated by semicolons or newlines."));
	}
}

static void
apply_extra_config(ApplyState *state, const char *extra)
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
			rd_kafka_conf_destroy(state->conf);
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
			rd_kafka_conf_destroy(state->conf);
			ereport(ERROR,
					errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					errmsg("file \"%s\" named by inbox_outbox.kafka_config contains a zero byte",
						   extra));
		}
		apply_properties(state, buf.data, "the file named by inbox_outbox.kafka_config");
		pfree(buf.data);
	}
	else
	{
		char	   *copy = pstrdup(extra);

		apply_properties(state, copy, "inbox_outbox.kafka_config");
		pfree(copy);
	}
}

void
kafka_conf_apply(rd_kafka_conf_t *conf, KafkaClientKind kind,
				 const char *brokers, const char *extra_config)
{
	ApplyState	state;

	state.conf = conf;
	state.kind = kind;
	apply_extra_config(&state, extra_config);

	kafka_conf_set(conf, kind, "bootstrap.servers", brokers);
	kafka_conf_set(conf, kind, "log.queue", "true");
	kafka_conf_set(conf, kind, "internal.termination.signal", "0");
	kafka_conf_set(conf, kind, "test.mock.num.brokers", "0");
}

void
kafka_log_add(KafkaLog *log, int level, const char *fac, const char *buf)
{
	if (log->nlines >= KAFKA_LOG_LINES)
	{
		log->dropped++;
		return;
	}
	log->level[log->nlines] = level;
	snprintf(log->line[log->nlines], KAFKA_LOG_LEN, "%s: %s", fac, buf);
	log->nlines++;
}

void
kafka_log_report(KafkaLog *log, bool (*quiet) (const char *line))
{
	/* librdkafka's levels are syslog's: 4 is a warning */
	for (int i = 0; i < log->nlines; i++)
		ereport(log->level[i] <= 4 && (quiet == NULL || !quiet(log->line[i])) ?
				LOG : DEBUG1,
				errmsg_internal("librdkafka: %s", log->line[i]));
	if (log->dropped > 0)
		ereport(LOG,
				errmsg_internal("librdkafka: %d log lines dropped", log->dropped));
	log->nlines = 0;
	log->dropped = 0;
}

void
kafka_event_pipe_open(int pipefd[2], rd_kafka_conf_t *conf, const char *what)
{
	if (pipe(pipefd) != 0)
	{
		pipefd[0] = pipefd[1] = -1;
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				errcode_for_socket_access(),
				errmsg("could not create pipe for the Kafka %s: %m", what));
	}
	fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
	fcntl(pipefd[1], F_SETFL, O_NONBLOCK);
}

/* Log lines go to the main queue (log.queue), and its events to the pipe. */
void
kafka_main_queue_to_pipe(rd_kafka_t *rk, int write_fd)
{
	rd_kafka_queue_t *mainq;

	rd_kafka_set_log_queue(rk, NULL);
	mainq = rd_kafka_queue_get_main(rk);
	rd_kafka_queue_io_event_enable(mainq, write_fd, "1", 1);
	rd_kafka_queue_destroy(mainq);
}

void
kafka_event_pipe_drain(int read_fd)
{
	char		drain[64];

	while (read(read_fd, drain, sizeof(drain)) > 0)
		;
}
