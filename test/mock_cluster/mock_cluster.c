/*-------------------------------------------------------------------------
 *
 * mock_cluster.c
 *		A librdkafka mock Kafka cluster steered by commands on stdin.
 *
 * The relay's fault-injection tests need a Kafka cluster that misbehaves on
 * demand: request errors, a broker that goes away, slow responses, a
 * partition leader that moves.  librdkafka ships such a cluster
 * (rdkafka_mock.h).  This program wraps it so that a TAP test can start it,
 * point the extension at the bootstrap list printed on the first line, and
 * then steer it one command per line, each answered by "ok" or
 * "error: <reason>".  The command set is documented in usage().
 *
 * The cluster is created with rd_kafka_mock_cluster_new() on a producer
 * handle that has no bootstrap.servers, so that handle never talks to the
 * brokers and cannot consume an error injected for the client under test.
 * (With test.mock.num.brokers the handle would connect to its own cluster
 * and its metadata requests would eat injected Metadata errors.)  The
 * cluster serves from its own thread, so it keeps running while the main
 * thread blocks on stdin.
 *
 * The mock is not Kafka.  In librdkafka 2.0.2 EndTxn writes no transaction
 * markers and Fetch reports no aborted transactions, so read_committed
 * visibility cannot be shown here; producer sequence numbers are checked
 * only for transactional producers, so a retry by a merely idempotent
 * producer is appended again rather than deduplicated, and a request
 * appended after an earlier one of the same partition was refused leads
 * librdkafka to take the refused messages as persisted (run the client with
 * one request in flight to avoid that); the replication
 * factor given for a topic is ignored and each partition's leader is chosen
 * at random (use "leader" to pin it).  Tests of those behaviours need the
 * real broker.
 *
 * Error stacks: a broker's own stack (broker_error) takes precedence over
 * the cluster's (error), and once a broker has a stack for an API key, even
 * an empty one, the cluster's errors for that key no longer reach that
 * broker.  Broker stacks cannot be cleared, so "clear" reports an error
 * while any of them still holds errors.
 *
 * Signals: SIGINT and SIGTERM are blocked before any thread is started, so
 * every librdkafka thread inherits the blocked mask; the main thread
 * unblocks them only while it waits in ppoll(), so a signal always ends the
 * wait and the cluster is destroyed in an orderly way.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE				/* ppoll */

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_LINE		4096
#define MAX_ARGS		8
#define MAX_BROKERS		64
#define MAX_ERROR_COUNT	100000

/* Kafka protocol API keys by name; any other key may be given as a number. */
typedef struct ApiKeyName
{
	const char *name;
	int16_t		key;
} ApiKeyName;

static const ApiKeyName api_keys[] = {
	{"Produce", 0},
	{"Fetch", 1},
	{"ListOffsets", 2},
	{"Metadata", 3},
	{"OffsetCommit", 8},
	{"OffsetFetch", 9},
	{"FindCoordinator", 10},
	{"JoinGroup", 11},
	{"Heartbeat", 12},
	{"LeaveGroup", 13},
	{"SyncGroup", 14},
	{"ApiVersions", 18},
	{"InitProducerId", 22},
	{"AddPartitionsToTxn", 24},
	{"AddOffsetsToTxn", 25},
	{"EndTxn", 26},
	{"TxnOffsetCommit", 28},
};

typedef bool (*CommandFunc) (char **argv, int argc);

typedef struct Command
{
	const char *name;
	int			min_args;
	int			max_args;
	const char *usage;
	CommandFunc func;
} Command;

static rd_kafka_mock_cluster_t *mcluster;
static int	broker_count = 3;

/* API keys that have a broker error stack (see the header comment). */
static bool broker_stack_used[INT16_MAX + 1];

static volatile sig_atomic_t shutdown_requested = 0;

/* Input not yet consumed by read_line(). */
static char inbuf[MAX_LINE];
static size_t inbuf_len = 0;


static void
usage(FILE *out)
{
	fprintf(out,
			"usage: mock_cluster [--brokers N] [--topic NAME:PARTITIONS ...] [--debug CONTEXTS]\n"
			"\n"
			"Prints \"bootstrap=HOST:PORT,...\", then answers each command on stdin\n"
			"with \"ok\" or \"error: REASON\":\n"
			"  topic NAME PARTITIONS REPLICATION\n"
			"  error APIKEY ERRCODE [COUNT]\n"
			"  broker_error BROKER_ID APIKEY ERRCODE RTT_MS [COUNT]\n"
			"  down BROKER_ID | up BROKER_ID       (-1: all brokers)\n"
			"  rtt BROKER_ID MS                    (-1: all brokers)\n"
			"  leader TOPIC PARTITION BROKER_ID    (-1: no leader)\n"
			"  clear\n"
			"  quit                                (also end of input)\n"
			"APIKEY is a protocol request name (Produce, Metadata, InitProducerId,\n"
			"...) or number; ERRCODE a librdkafka error name (NOT_LEADER_FOR_PARTITION,\n"
			"_TRANSPORT to drop the connection, ...) or number.\n");
}

/*
 * Write one reply line.  The test reads replies synchronously, so flush.
 */
static void
reply(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

static bool
reply_kafka_error(rd_kafka_resp_err_t err)
{
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return true;
	reply("error: %s (%s)", rd_kafka_err2name(err), rd_kafka_err2str(err));
	return false;
}

/*
 * Parse a whole decimal integer in [min, max].
 */
static bool
parse_long(const char *s, long min, long max, long *result)
{
	char	   *end;
	long		val;

	errno = 0;
	val = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || val < min || val > max)
		return false;
	*result = val;
	return true;
}

static bool
parse_arg(const char *what, const char *s, long min, long max, long *result)
{
	if (parse_long(s, min, max, result))
		return true;
	reply("error: invalid %s \"%s\": expected an integer from %ld to %ld",
		  what, s, min, max);
	return false;
}

static bool
parse_broker_id(const char *s, bool allow_all, int32_t *broker_id)
{
	long		val;

	if (!parse_arg("broker id", s, allow_all ? -1 : 1, broker_count, &val))
		return false;
	if (val == 0)
	{
		reply("error: invalid broker id \"%s\": brokers are numbered from 1", s);
		return false;
	}
	*broker_id = (int32_t) val;
	return true;
}

static bool
parse_api_key(const char *s, int16_t *key)
{
	long		val;
	size_t		i;

	for (i = 0; i < sizeof(api_keys) / sizeof(api_keys[0]); i++)
	{
		if (strcasecmp(s, api_keys[i].name) == 0)
		{
			*key = api_keys[i].key;
			return true;
		}
	}
	if (parse_long(s, 0, INT16_MAX, &val))
	{
		*key = (int16_t) val;
		return true;
	}
	reply("error: unknown API key \"%s\"", s);
	return false;
}

/*
 * Accept an error name as rd_kafka_err2name() spells it (librdkafka's own
 * errors keep their leading underscore, e.g. _TRANSPORT), in any case, with
 * or without the RD_KAFKA_RESP_ERR_ prefix; or a number.
 */
static bool
parse_error_code(const char *s, rd_kafka_resp_err_t *err)
{
	static const char prefix[] = "RD_KAFKA_RESP_ERR_";
	const struct rd_kafka_err_desc *descs;
	size_t		ndescs;
	size_t		i;
	const char *name = s;
	long		val;

	if (strncasecmp(name, prefix, sizeof(prefix) - 1) == 0)
		name += sizeof(prefix) - 1;

	rd_kafka_get_err_descs(&descs, &ndescs);
	for (i = 0; i < ndescs; i++)
	{
		if (descs[i].name != NULL && strcasecmp(name, descs[i].name) == 0)
		{
			*err = descs[i].code;
			return true;
		}
	}

	/* Errors travel as int16 on the wire; librdkafka's own are negative. */
	if (parse_long(s, INT16_MIN, INT16_MAX, &val))
	{
		*err = (rd_kafka_resp_err_t) val;
		return true;
	}
	reply("error: unknown error code \"%s\"", s);
	return false;
}

static bool
cmd_topic(char **argv, int argc)
{
	long		partitions;
	long		replication;

	(void) argc;
	if (!parse_arg("partition count", argv[2], 1, 100000, &partitions) ||
		!parse_arg("replication factor", argv[3], 1, broker_count, &replication))
		return false;
	return reply_kafka_error(rd_kafka_mock_topic_create(mcluster, argv[1],
														(int) partitions,
														(int) replication));
}

static bool
cmd_error(char **argv, int argc)
{
	int16_t		key;
	rd_kafka_resp_err_t err;
	long		count = 1;
	rd_kafka_resp_err_t *errors;
	long		i;

	if (!parse_api_key(argv[1], &key) ||
		!parse_error_code(argv[2], &err) ||
		(argc > 3 && !parse_arg("count", argv[3], 1, MAX_ERROR_COUNT, &count)))
		return false;

	errors = malloc(sizeof(*errors) * count);
	if (errors == NULL)
	{
		reply("error: out of memory");
		return false;
	}
	for (i = 0; i < count; i++)
		errors[i] = err;
	rd_kafka_mock_push_request_errors_array(mcluster, key, (size_t) count, errors);
	free(errors);
	return true;
}

static bool
cmd_broker_error(char **argv, int argc)
{
	int32_t		broker_id;
	int16_t		key;
	rd_kafka_resp_err_t err;
	long		rtt_ms;
	long		count = 1;
	long		i;

	if (!parse_broker_id(argv[1], false, &broker_id) ||
		!parse_api_key(argv[2], &key) ||
		!parse_error_code(argv[3], &err) ||
		!parse_arg("RTT", argv[4], 0, INT_MAX / 1000, &rtt_ms) ||
		(argc > 5 && !parse_arg("count", argv[5], 1, MAX_ERROR_COUNT, &count)))
		return false;

	broker_stack_used[key] = true;

	/* The call is variadic in (error, rtt) pairs; push them one at a time. */
	for (i = 0; i < count; i++)
	{
		rd_kafka_resp_err_t res;

		res = rd_kafka_mock_broker_push_request_error_rtts(mcluster, broker_id,
														   key, 1,
														   err, (int) rtt_ms);
		if (!reply_kafka_error(res))
			return false;
	}
	return true;
}

static bool
cmd_down(char **argv, int argc)
{
	int32_t		broker_id;

	(void) argc;
	if (!parse_broker_id(argv[1], true, &broker_id))
		return false;
	return reply_kafka_error(rd_kafka_mock_broker_set_down(mcluster, broker_id));
}

static bool
cmd_up(char **argv, int argc)
{
	int32_t		broker_id;

	(void) argc;
	if (!parse_broker_id(argv[1], true, &broker_id))
		return false;
	return reply_kafka_error(rd_kafka_mock_broker_set_up(mcluster, broker_id));
}

static bool
cmd_rtt(char **argv, int argc)
{
	int32_t		broker_id;
	long		ms;

	(void) argc;
	if (!parse_broker_id(argv[1], true, &broker_id) ||
		!parse_arg("RTT", argv[2], 0, INT_MAX / 1000, &ms))
		return false;
	return reply_kafka_error(rd_kafka_mock_broker_set_rtt(mcluster, broker_id,
														  (int) ms));
}

static bool
cmd_leader(char **argv, int argc)
{
	long		partition;
	int32_t		broker_id;

	(void) argc;
	if (!parse_arg("partition", argv[2], 0, INT32_MAX, &partition) ||
		!parse_broker_id(argv[3], true, &broker_id))
		return false;
	return reply_kafka_error(rd_kafka_mock_partition_set_leader(mcluster,
																argv[1],
																(int32_t) partition,
																broker_id));
}

static bool
cmd_clear(char **argv, int argc)
{
	long		key;
	size_t		pending = 0;

	(void) argv;
	(void) argc;

	/* Clearing a key that has no stack is a cheap no-op. */
	for (key = 0; key <= INT16_MAX; key++)
		rd_kafka_mock_clear_request_errors(mcluster, (int16_t) key);

	for (key = 0; key <= INT16_MAX; key++)
	{
		int32_t		broker_id;

		if (!broker_stack_used[key])
			continue;
		for (broker_id = 1; broker_id <= broker_count; broker_id++)
		{
			size_t		cnt = 0;

			if (rd_kafka_mock_broker_error_stack_cnt(mcluster, broker_id,
													 (int16_t) key, &cnt) ==
				RD_KAFKA_RESP_ERR_NO_ERROR)
				pending += cnt;
		}
	}
	if (pending > 0)
	{
		reply("error: unsupported: cluster errors cleared, but %zu broker error(s) remain and librdkafka cannot clear them",
			  pending);
		return false;
	}
	return true;
}

static const Command commands[] = {
	{"topic", 3, 3, "topic NAME PARTITIONS REPLICATION", cmd_topic},
	{"error", 2, 3, "error APIKEY ERRCODE [COUNT]", cmd_error},
	{"broker_error", 4, 5, "broker_error BROKER_ID APIKEY ERRCODE RTT_MS [COUNT]",
	cmd_broker_error},
	{"down", 1, 1, "down BROKER_ID", cmd_down},
	{"up", 1, 1, "up BROKER_ID", cmd_up},
	{"rtt", 2, 2, "rtt BROKER_ID MS", cmd_rtt},
	{"leader", 3, 3, "leader TOPIC PARTITION BROKER_ID", cmd_leader},
	{"clear", 0, 0, "clear", cmd_clear},
};

/*
 * Run one command line.  Returns false when the program should exit.
 */
static bool
run_command(char *line)
{
	char	   *argv[MAX_ARGS + 1];
	int			argc = 0;
	char	   *save;
	char	   *tok;
	size_t		i;

	for (tok = strtok_r(line, " \t\r", &save); tok != NULL;
		 tok = strtok_r(NULL, " \t\r", &save))
	{
		if (argc == MAX_ARGS)
		{
			reply("error: too many arguments");
			return true;
		}
		argv[argc++] = tok;
	}
	argv[argc] = NULL;

	if (argc == 0)
	{
		reply("error: empty command");
		return true;
	}
	if (strcmp(argv[0], "quit") == 0 && argc == 1)
	{
		reply("ok");
		return false;
	}

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
	{
		const Command *cmd = &commands[i];

		if (strcmp(argv[0], cmd->name) != 0)
			continue;
		if (argc - 1 < cmd->min_args || argc - 1 > cmd->max_args)
			reply("error: usage: %s", cmd->usage);
		else if (cmd->func(argv, argc))
			reply("ok");
		return true;
	}
	reply("error: unknown command \"%s\"", argv[0]);
	return true;
}

typedef enum ReadResult
{
	READ_LINE,
	READ_EOF,
	READ_SIGNAL,
	READ_TOO_LONG,
} ReadResult;

/*
 * Read the next line from stdin into line (without its newline), waiting in
 * ppoll() with waitmask so that SIGINT and SIGTERM interrupt the wait.
 */
static ReadResult
read_line(char *line, const sigset_t *waitmask)
{
	bool		too_long = false;

	for (;;)
	{
		char	   *nl = memchr(inbuf, '\n', inbuf_len);
		struct pollfd pfd = {.fd = STDIN_FILENO,.events = POLLIN};
		ssize_t		n;

		if (nl != NULL)
		{
			size_t		len = nl - inbuf;

			if (!too_long)
			{
				memcpy(line, inbuf, len);
				line[len] = '\0';
			}
			inbuf_len -= len + 1;
			memmove(inbuf, nl + 1, inbuf_len);
			return too_long ? READ_TOO_LONG : READ_LINE;
		}
		if (inbuf_len == sizeof(inbuf))
		{
			/* Drop what we have and skip to the end of the line. */
			too_long = true;
			inbuf_len = 0;
		}

		if (shutdown_requested)
			return READ_SIGNAL;
		if (ppoll(&pfd, 1, NULL, waitmask) < 0)
		{
			if (errno == EINTR)
				continue;
			perror("mock_cluster: ppoll");
			return READ_EOF;
		}

		n = read(STDIN_FILENO, inbuf + inbuf_len, sizeof(inbuf) - inbuf_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			perror("mock_cluster: read");
		if (n <= 0)
		{
			/* A last line without a newline still counts. */
			if (inbuf_len > 0 && !too_long)
			{
				memcpy(line, inbuf, inbuf_len);
				line[inbuf_len] = '\0';
				inbuf_len = 0;
				return READ_LINE;
			}
			return READ_EOF;
		}
		inbuf_len += n;
	}
}

static void
handle_signal(int signo)
{
	(void) signo;
	shutdown_requested = 1;
}

/*
 * Split a --topic argument, NAME:PARTITIONS, into its parts.
 */
static bool
parse_topic_spec(const char *spec, char *name, size_t namesize, long *partitions)
{
	const char *colon = strrchr(spec, ':');

	if (colon == NULL || colon == spec || (size_t) (colon - spec) >= namesize ||
		!parse_long(colon + 1, 1, 100000, partitions))
	{
		fprintf(stderr, "mock_cluster: invalid --topic \"%s\": expected NAME:PARTITIONS\n",
				spec);
		return false;
	}
	memcpy(name, spec, colon - spec);
	name[colon - spec] = '\0';
	return true;
}

int
main(int argc, char **argv)
{
	const char *debug = NULL;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	char		errstr[512];
	sigset_t	blocked;
	sigset_t	waitmask;
	struct sigaction sa;
	char		line[MAX_LINE + 1];
	char		topic[256];
	int			i;
	bool		running = true;

	for (i = 1; i < argc; i++)
	{
		long		val;

		if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc)
		{
			if (!parse_long(argv[++i], 1, MAX_BROKERS, &val))
			{
				fprintf(stderr, "mock_cluster: --brokers must be from 1 to %d\n",
						MAX_BROKERS);
				return 1;
			}
			broker_count = (int) val;
		}
		else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc)
		{
			/* Only checked here; created once the cluster exists. */
			if (!parse_topic_spec(argv[++i], topic, sizeof(topic), &val))
				return 1;
		}
		else if (strcmp(argv[i], "--debug") == 0 && i + 1 < argc)
			debug = argv[++i];
		else if (strcmp(argv[i], "--help") == 0)
		{
			usage(stdout);
			return 0;
		}
		else
		{
			usage(stderr);
			return 1;
		}
	}

	/* Block before librdkafka starts threads, so they all inherit it. */
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &blocked, &waitmask);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGTERM);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A reader that went away shows up as a write error, not a kill. */
	signal(SIGPIPE, SIG_IGN);

	/*
	 * The handle only hosts the cluster.  Log warnings and worse, but not
	 * the notice that it has no bootstrap.servers; that is on purpose.
	 */
	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) !=
		RD_KAFKA_CONF_OK ||
		(debug != NULL &&
		 rd_kafka_conf_set(conf, "debug", debug, errstr, sizeof(errstr)) !=
		 RD_KAFKA_CONF_OK))
	{
		fprintf(stderr, "mock_cluster: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 1;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "mock_cluster: could not create handle: %s\n", errstr);
		return 1;
	}

	mcluster = rd_kafka_mock_cluster_new(rk, broker_count);
	if (mcluster == NULL)
	{
		fprintf(stderr, "mock_cluster: could not create mock cluster\n");
		rd_kafka_destroy(rk);
		return 1;
	}

	for (i = 1; i < argc; i++)
	{
		long		partitions;
		rd_kafka_resp_err_t err;

		if (strcmp(argv[i], "--topic") != 0)
			continue;
		parse_topic_spec(argv[++i], topic, sizeof(topic), &partitions);
		err = rd_kafka_mock_topic_create(mcluster, topic, (int) partitions,
										 broker_count < 3 ? broker_count : 3);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			fprintf(stderr, "mock_cluster: could not create topic \"%s\": %s\n",
					topic, rd_kafka_err2str(err));
			rd_kafka_mock_cluster_destroy(mcluster);
			rd_kafka_destroy(rk);
			return 1;
		}
	}

	printf("bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
	fflush(stdout);

	while (running && !ferror(stdout))
	{
		switch (read_line(line, &waitmask))
		{
			case READ_LINE:
				running = run_command(line);
				break;
			case READ_TOO_LONG:
				reply("error: line longer than %d bytes", MAX_LINE - 1);
				break;
			case READ_EOF:
			case READ_SIGNAL:
				running = false;
				break;
		}
	}

	rd_kafka_mock_cluster_destroy(mcluster);
	rd_kafka_destroy(rk);
	return 0;
}
