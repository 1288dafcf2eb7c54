/*-------------------------------------------------------------------------
 *
 * spike_eos.c
 *	  A spike for exactly-once delivery (issue 9): checks and measures,
 *	  against a real broker and the librdkafka the relay links with, what
 *	  docs/exactly_once.md relies on.  Not part of the extension's build or
 *	  of CI (see README.md beside it).
 *
 * Each command runs one experiment on topics named after the run, prints
 * what it saw ("saw"), what it checks ("CHECK ok" or "CHECK FAILED") and
 * its figures ("RESULT"), and exits 1 if a check failed:
 *
 *	 record   the progress record's encoding: sizes, round trip, bound
 *	 fence    init_transactions() of a second producer with the same
 *			  transactional.id fences the first (a zombie relay)
 *	 abort    a message the broker refuses makes the commit require an
 *			  abort; one that librdkafka refuses before queueing does not
 *	 destroy  a producer destroyed mid-transaction: what read_committed
 *			  consumers see until a successor's init_transactions()
 *	 recover  finding one relay's last committed progress record in a
 *			  compacted topic that other relays write too
 *	 latency  cost of a transaction at batch sizes 1, 100 and 5000, side by
 *			  side with the idempotent producer the relay uses today; then
 *			  transactions back to back, and with a pause after each commit
 *	 outage   the broker stopped and started inside a transaction
 *	 stall    the producer stopped longer than transaction.timeout.ms
 *
 * The program is deliberately plain: one thread (two for "latency"),
 * librdkafka's blocking calls where the relay would wait in short steps,
 * and no cleanup of the topics it makes.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

static const char *bootstrap;
static char run_tag[64];		/* makes this run's topic and id names unique */
static int	failures;

/* ---------------------------------------------------------------- output */

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void
saw(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	fputs("  saw: ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	va_end(ap);
	fflush(stdout);
}

static void
check(bool ok, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	fputs(ok ? "  CHECK ok: " : "  CHECK FAILED: ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	va_end(ap);
	fflush(stdout);
	if (!ok)
		failures++;
}

static void
result(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	fputs("  RESULT: ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	va_end(ap);
	fflush(stdout);
}

static void
die(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	fputs("spike_eos: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static char *
name(const char *what)
{
	char	   *s = malloc(strlen(what) + strlen(run_tag) + 2);

	sprintf(s, "%s-%s", run_tag, what);
	return s;
}

/* ------------------------------------------------------------- producers */

#define MAX_TRACKED 20000

/* A producer and what its callbacks recorded. */
typedef struct Producer
{
	const char *who;
	rd_kafka_t *rk;
	int			outstanding;
	int			delivered;
	int			failed;
	rd_kafka_resp_err_t err[MAX_TRACKED];	/* per message index */
	rd_kafka_resp_err_t first_failure;
	bool		fatal_seen;
} Producer;

static void
delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	Producer   *p = opaque;
	intptr_t	idx = (intptr_t) msg->_private;

	p->outstanding--;
	if (idx >= 0 && idx < MAX_TRACKED)
		p->err[idx] = msg->err;
	if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		p->delivered++;
	else
	{
		if (p->failed++ == 0)
			p->first_failure = msg->err;
	}
}

static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	Producer   *p = opaque;

	if (err == RD_KAFKA_RESP_ERR__FATAL)
		p->fatal_seen = true;
	printf("  [%s] error_cb: %s: %s\n", p->who, rd_kafka_err2name(err), reason);
}

/*
 * With SPIKE_DEBUG set, librdkafka's debug lines go to stderr, and the
 * coordinator's CONCURRENT_TRANSACTIONS answers to AddPartitionsToTxn are
 * counted, so that "latency" can say how many slow rounds they explain.
 */
static volatile int concurrent_answers;

static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	if (strstr(buf, "AddPartitionsToTxn response") &&
		strstr(buf, "another concurrent operation"))
		__sync_fetch_and_add(&concurrent_answers, 1);
	fprintf(stderr, "%%%d|%s|%s| %s\n", level, rd_kafka_name(rk), fac, buf);
}

static void
set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, k, v, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		die("%s=%s: %s", k, v, errstr);
}

/*
 * A producer set up as the relay's is (idempotent, acks=all, murmur2,
 * linger.ms=0), transactional if txid is given; extra holds name/value
 * pairs and ends with NULL.
 */
static Producer *
producer_new(const char *who, const char *txid, const char **extra)
{
	Producer   *p = calloc(1, sizeof(Producer));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];

	p->who = who;
	set(conf, "bootstrap.servers", bootstrap);
	set(conf, "client.id", who);
	set(conf, "linger.ms", "0");
	set(conf, "enable.idempotence", "true");
	set(conf, "acks", "all");
	set(conf, "partitioner", "murmur2_random");
	if (txid)
		set(conf, "transactional.id", txid);
	for (; extra && extra[0]; extra += 2)
		set(conf, extra[0], extra[1]);
	if (getenv("SPIKE_DEBUG"))
	{
		set(conf, "debug", getenv("SPIKE_DEBUG"));	/* e.g. eos,protocol */
		rd_kafka_conf_set_log_cb(conf, log_cb);
	}
	rd_kafka_conf_set_opaque(conf, p);
	rd_kafka_conf_set_dr_msg_cb(conf, delivery_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (p->rk == NULL)
		die("producer %s: %s", who, errstr);
	return p;
}

static void
producer_reset_counts(Producer *p)
{
	p->delivered = 0;
	p->failed = 0;
	p->first_failure = RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Describe an error object of the transactional API, or "ok". */
static const char *
describe(rd_kafka_error_t *error)
{
	static char buf[600];

	if (error == NULL)
		return "ok";
	snprintf(buf, sizeof(buf), "%s (retriable=%d abortable=%d fatal=%d): %s",
			 rd_kafka_error_name(error),
			 rd_kafka_error_is_retriable(error),
			 rd_kafka_error_txn_requires_abort(error),
			 rd_kafka_error_is_fatal(error),
			 rd_kafka_error_string(error));
	return buf;
}

/* Run a transactional call, print its outcome and time; the error is the caller's. */
#define TXN(p, call, ms_out) \
	({ double t0_ = now_ms(); rd_kafka_error_t *e_ = (call); \
	   double d_ = now_ms() - t0_; double *m_ = (ms_out); if (m_) *m_ = d_; \
	   saw("[%s] %s: %s (%.1f ms)", (p)->who, #call, describe(e_), d_); e_; })

static void
must(Producer *p, rd_kafka_error_t *error, const char *what)
{
	if (error)
		die("[%s] %s failed: %s", p->who, what, describe(error));
}

static rd_kafka_resp_err_t
produce(Producer *p, const char *topic, int32_t partition, const char *key,
		const void *value, size_t len, intptr_t idx)
{
	rd_kafka_resp_err_t err;

	err = rd_kafka_producev(p->rk,
							RD_KAFKA_V_TOPIC(topic),
							RD_KAFKA_V_PARTITION(partition),
							RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
							RD_KAFKA_V_VALUE((void *) value, len),
							RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
							RD_KAFKA_V_OPAQUE((void *) idx),
							RD_KAFKA_V_END);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		p->outstanding++;
	return err;
}

static void
produce_ok(Producer *p, const char *topic, const char *key, const char *value)
{
	rd_kafka_resp_err_t err = produce(p, topic, RD_KAFKA_PARTITION_UA, key,
									  value, strlen(value), -1);

	if (err)
		die("[%s] produce to %s: %s", p->who, topic, rd_kafka_err2name(err));
}

/* Serve delivery reports until none is outstanding; false on timeout. */
static bool
wait_reports(Producer *p, int timeout_ms)
{
	double		end = now_ms() + timeout_ms;

	while (p->outstanding > 0 && now_ms() < end)
		rd_kafka_poll(p->rk, 5);
	return p->outstanding == 0;
}

/* ------------------------------------------------------------ the broker */

/* Create a topic with the Admin API, as the relay would its progress topic. */
static void
create_topic(const char *topic, int partitions, const char **configs)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_NewTopic_t *nt;
	rd_kafka_queue_t *q;
	rd_kafka_event_t *ev;
	const rd_kafka_topic_result_t **res;
	size_t		nres;
	char		errstr[512];

	set(conf, "bootstrap.servers", bootstrap);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
		die("admin client: %s", errstr);
	nt = rd_kafka_NewTopic_new(topic, partitions, -1, errstr, sizeof(errstr));
	if (nt == NULL)
		die("NewTopic %s: %s", topic, errstr);
	for (; configs && configs[0]; configs += 2)
		if (rd_kafka_NewTopic_set_config(nt, configs[0], configs[1]))
			die("NewTopic %s: config %s", topic, configs[0]);
	q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	ev = rd_kafka_queue_poll(q, 30000);
	if (ev == NULL)
		die("CreateTopics %s: no answer in 30 s", topic);
	if (rd_kafka_event_error(ev))
		die("CreateTopics %s: %s", topic, rd_kafka_event_error_string(ev));
	res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nres);
	if (nres != 1 || rd_kafka_topic_result_error(res[0]))
		die("CreateTopics %s: %s", topic,
			nres ? rd_kafka_topic_result_error_string(res[0]) : "no result");
	rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy(nt);
	rd_kafka_destroy(rk);
}

/* A consumer handle for the legacy (group-less) consumer API. */
static rd_kafka_t *
consumer_new(const char *isolation)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	char		errstr[512];

	set(conf, "bootstrap.servers", bootstrap);
	set(conf, "isolation.level", isolation);
	set(conf, "enable.partition.eof", "true");
	set(conf, "fetch.wait.max.ms", "50");
	set(conf, "fetch.error.backoff.ms", "50");
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
		die("consumer: %s", errstr);
	return rk;
}

/* Low and high watermark of a partition as a client of that isolation level sees them. */
static void
watermarks(const char *isolation, const char *topic, int32_t part,
		   int64_t *lo, int64_t *hi)
{
	rd_kafka_t *rk = consumer_new(isolation);
	rd_kafka_resp_err_t err;

	err = rd_kafka_query_watermark_offsets(rk, topic, part, lo, hi, 10000);
	if (err)
		die("watermarks of %s [%d]: %s", topic, part, rd_kafka_err2name(err));
	rd_kafka_destroy(rk);
}

typedef struct Record
{
	int64_t		offset;
	char		key[128];
	char	   *value;
	size_t		len;
} Record;

typedef struct Records
{
	Record	   *r;
	int			n;
	int			cap;
	int64_t		end;			/* the position after the last read, or -1 */
	bool		reached;		/* the position reached the stop offset */
} Records;

/*
 * Read partition part of topic from offset start with the given isolation
 * level until the position reaches stop (or, with stop -1, until the
 * first end of partition), for at most timeout_ms.  The position is what
 * the end-of-partition event reports, so it passes control records and
 * aborted records, which are never handed out.
 */
static Records
read_partition(const char *isolation, const char *topic, int32_t part,
			   int64_t start, int64_t stop, int timeout_ms)
{
	rd_kafka_t *rk = consumer_new(isolation);
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	Records		out = {0};
	double		end = now_ms() + timeout_ms;

	out.end = -1;
	if (rd_kafka_consume_start(rkt, part, start) == -1)
		die("consume_start %s: %s", topic, rd_kafka_err2name(rd_kafka_last_error()));
	while (now_ms() < end)
	{
		rd_kafka_message_t *m = rd_kafka_consume(rkt, part, 100);

		if (m == NULL)
			continue;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		{
			out.end = m->offset;
			rd_kafka_message_destroy(m);
			if (stop < 0 || out.end >= stop)
			{
				out.reached = true;
				break;
			}
			continue;
		}
		if (m->err)
			die("consume %s: %s", topic, rd_kafka_message_errstr(m));
		if (out.n == out.cap)
		{
			out.cap = out.cap ? out.cap * 2 : 64;
			out.r = realloc(out.r, sizeof(Record) * out.cap);
		}
		out.r[out.n].offset = m->offset;
		snprintf(out.r[out.n].key, sizeof(out.r[out.n].key), "%.*s",
				 (int) m->key_len, m->key ? (char *) m->key : "");
		out.r[out.n].value = malloc(m->len + 1);
		memcpy(out.r[out.n].value, m->payload, m->len);
		out.r[out.n].value[m->len] = '\0';
		out.r[out.n].len = m->len;
		out.n++;
		out.end = m->offset + 1;
		rd_kafka_message_destroy(m);
		if (stop >= 0 && out.end >= stop)
		{
			out.reached = true;
			break;
		}
	}
	rd_kafka_consume_stop(rkt, part);
	rd_kafka_topic_destroy(rkt);
	rd_kafka_destroy(rk);
	return out;
}

/* The values of a partition, from the start to the end, joined by commas. */
static char *
values(const char *isolation, const char *topic, int32_t part)
{
	Records		rs = read_partition(isolation, topic, part, RD_KAFKA_OFFSET_BEGINNING, -1, 15000);
	size_t		len = 1;
	char	   *s;

	for (int i = 0; i < rs.n; i++)
		len += rs.r[i].len + 1;
	s = calloc(1, len);
	for (int i = 0; i < rs.n; i++)
	{
		if (i > 0)
			strcat(s, ",");
		strcat(s, rs.r[i].value);
	}
	return s;
}

/* ------------------------------------------------- the progress record */

/*
 * The progress record as docs/exactly_once.md proposes it: a header, then
 * the batch's ids in ascending order, each as one byte saying how many
 * leading bytes it shares with the one before, then its other bytes.
 */
#define PROGRESS_MAGIC		"IOXP"
#define PROGRESS_HEADER		(4 + 1 + 1 + 8 + 4 + 8 + 8 + 4)
#define PROGRESS_MAX_PER_ID 17

static void
put_be(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--, v >>= 8)
		p[i] = v & 0xff;
}

static uint64_t
get_be(const unsigned char *p, int bytes)
{
	uint64_t	v = 0;

	for (int i = 0; i < bytes; i++)
		v = (v << 8) | p[i];
	return v;
}

static int
compare_ids(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

static size_t
progress_encode(unsigned char *out, uint64_t sysid, uint32_t dboid, uint64_t writer,
				uint64_t round, unsigned char (*ids)[16], uint32_t n)
{
	unsigned char *p = out;

	qsort(ids, n, 16, compare_ids);
	memcpy(p, PROGRESS_MAGIC, 4);
	p[4] = 1;					/* format version */
	p[5] = 0;					/* flags */
	put_be(p + 6, sysid, 8);
	put_be(p + 14, dboid, 4);
	put_be(p + 18, writer, 8);
	put_be(p + 26, round, 8);
	put_be(p + 34, n, 4);
	p += PROGRESS_HEADER;
	for (uint32_t i = 0; i < n; i++)
	{
		int			shared = 0;

		if (i > 0)
			while (shared < 15 && ids[i][shared] == ids[i - 1][shared])
				shared++;
		*p++ = shared;
		memcpy(p, ids[i] + shared, 16 - shared);
		p += 16 - shared;
	}
	return p - out;
}

/* Decode into ids (room for n); returns the count, or -1 if malformed. */
static int
progress_decode(const unsigned char *in, size_t len, unsigned char (*ids)[16], uint32_t room)
{
	const unsigned char *p = in + PROGRESS_HEADER;
	uint32_t	n;

	if (len < PROGRESS_HEADER || memcmp(in, PROGRESS_MAGIC, 4) != 0 || in[4] != 1)
		return -1;
	n = get_be(in + 34, 4);
	if (n > room)
		return -1;
	for (uint32_t i = 0; i < n; i++)
	{
		int			shared;

		if (p >= in + len || (shared = *p++) > 15 || (i == 0 && shared != 0) ||
			p + (16 - shared) > in + len)
			return -1;
		if (shared)
			memcpy(ids[i], ids[i - 1], shared);
		memcpy(ids[i] + shared, p, 16 - shared);
		p += 16 - shared;
	}
	return p == in + len ? (int) n : -1;
}

/*
 * Ids as gen_ulid() makes them: 48 bits of milliseconds, 80 random bits
 * drawn at each new millisecond and incremented within it.  per_ms ids
 * share each millisecond.
 */
static void
make_ids(unsigned char (*ids)[16], int n, int per_ms)
{
	uint64_t	ms = 1767225600000ULL;	/* 2026-01-01 */

	for (int i = 0; i < n; i++)
	{
		if (i % per_ms == 0)
		{
			ms++;
			put_be(ids[i], ms, 6);
			for (int j = 6; j < 16; j++)
				ids[i][j] = random() & 0xff;
		}
		else
		{
			memcpy(ids[i], ids[i - 1], 16);
			for (int j = 15; j >= 6 && ++ids[i][j] == 0; j--)
				;
		}
	}
}

static void
cmd_record(void)
{
	static unsigned char ids[60000][16];
	static unsigned char back[60000][16];
	static unsigned char buf[60000 * PROGRESS_MAX_PER_ID + PROGRESS_HEADER];
	const int	patterns[] = {5000, 1};
	int			bound;

	printf("record: encoding of the progress record\n");
	for (int k = 0; k < 2; k++)
	{
		int			sizes[] = {1, 100, 5000};

		for (int s = 0; s < 3; s++)
		{
			int			n = sizes[s];
			size_t		len;
			unsigned char copy[5000][16];

			make_ids(ids, n, patterns[k]);
			memcpy(copy, ids, 16 * n);
			len = progress_encode(buf, 7400000000000000001ULL, 16384, 0x1234, 42, ids, n);
			check(progress_decode(buf, len, back, 60000) == n &&
				  memcmp(back, copy, 16 * n) == 0,
				  "%d ids (%s) decode to what was encoded", n,
				  patterns[k] > 1 ? "one millisecond" : "one per millisecond");
			result("progress record of %5d ids, %s: %zu bytes (%.2f per id)", n,
				   patterns[k] > 1 ? "all in one millisecond (a backlog)"
				   : "one per millisecond (steady traffic)",
				   len, (double) (len - PROGRESS_HEADER) / n);
		}
	}
	/* ids of no pattern at all (at most 17 bytes each; sorting shares some) */
	for (int i = 0; i < 5000; i++)
		for (int j = 0; j < 16; j++)
			ids[i][j] = random() & 0xff;
	result("5000 random ids: %zu bytes",
		   progress_encode(buf, 1, 1, 1, 1, ids, 5000));
	bound = (1000000 - 1024 - PROGRESS_HEADER) / PROGRESS_MAX_PER_ID;
	result("ids per record in the worst case within message.max.bytes 1000000 less 1 kB: %d", bound);
	make_ids(ids, bound, 1);
	for (int i = 0; i < bound; i++)
		memset(ids[i] + 6, i & 1 ? 0x00 : 0xff, 10);	/* shares only the time */
	check(progress_encode(buf, 1, 1, 1, 1, ids, bound) <= 1000000 - 1024,
		  "%d ids fit in the bound", bound);
}

/* ------------------------------------------------------------- fencing */

static void
cmd_fence(void)
{
	char	   *topic = name("fence");
	char	   *txid = name("relay-a");
	char	   *txid2 = name("relay-b");
	Producer   *zombie,
			   *successor;
	rd_kafka_error_t *e;
	rd_kafka_resp_err_t err;
	char		errstr[512];
	double		ms;
	char	   *committed,
			   *all;

	printf("fence: a second producer with the same transactional.id\n");
	create_topic(topic, 1, NULL);

	zombie = producer_new("zombie", txid, NULL);
	e = TXN(zombie, rd_kafka_init_transactions(zombie->rk, 30000), &ms);
	must(zombie, e, "init");
	result("init_transactions, first producer of an id: %.1f ms", ms);
	must(zombie, TXN(zombie, rd_kafka_begin_transaction(zombie->rk), NULL), "begin");
	produce_ok(zombie, topic, "k", "z1");
	wait_reports(zombie, 10000);
	saw("[zombie] z1 delivered=%d failed=%d (acknowledged, not committed)",
		zombie->delivered, zombie->failed);

	/* the successor: same id, while the zombie's transaction is open */
	successor = producer_new("successor", txid, NULL);
	e = TXN(successor, rd_kafka_init_transactions(successor->rk, 30000), &ms);
	check(e == NULL, "the successor's init_transactions succeeds while the zombie's transaction is open");
	result("init_transactions that fences a zombie with an open transaction: %.1f ms", ms);

	/* the zombie carries on */
	producer_reset_counts(zombie);
	err = produce(zombie, topic, RD_KAFKA_PARTITION_UA, "k", "z2", 2, 1);
	saw("[zombie] produce z2 after being fenced: %s", rd_kafka_err2name(err));
	wait_reports(zombie, 10000);
	saw("[zombie] z2 delivery report: %s",
		zombie->failed ? rd_kafka_err2name(zombie->first_failure) : "NO_ERROR");
	e = TXN(zombie, rd_kafka_commit_transaction(zombie->rk, 10000), NULL);
	check(e != NULL && rd_kafka_error_is_fatal(e),
		  "the zombie's commit fails with a fatal error");
	err = rd_kafka_fatal_error(zombie->rk, errstr, sizeof(errstr));
	saw("[zombie] rd_kafka_fatal_error: %s: %s", rd_kafka_err2name(err), errstr);
	check(err == RD_KAFKA_RESP_ERR__FENCED, "the zombie's fatal error is _FENCED");
	if (e)
		rd_kafka_error_destroy(e);
	e = TXN(zombie, rd_kafka_abort_transaction(zombie->rk, 5000), NULL);
	check(e != NULL && rd_kafka_error_is_fatal(e), "nor can the zombie abort: the producer is done");
	if (e)
		rd_kafka_error_destroy(e);
	err = produce(zombie, topic, RD_KAFKA_PARTITION_UA, "k", "z3", 2, 2);
	saw("[zombie] produce after the fatal error: %s", rd_kafka_err2name(err));
	check(err != RD_KAFKA_RESP_ERR_NO_ERROR, "the zombie cannot even queue a message");
	ms = now_ms();
	rd_kafka_destroy(zombie->rk);
	result("rd_kafka_destroy of the fenced producer: %.1f ms", now_ms() - ms);

	must(successor, TXN(successor, rd_kafka_begin_transaction(successor->rk), NULL), "begin");
	produce_ok(successor, topic, "k", "s1");
	e = TXN(successor, rd_kafka_commit_transaction(successor->rk, 30000), NULL);
	check(e == NULL, "the successor commits");

	committed = values("read_committed", topic, 0);
	all = values("read_uncommitted", topic, 0);
	saw("read_committed: [%s]; read_uncommitted: [%s]", committed, all);
	check(strcmp(committed, "s1") == 0, "a read_committed consumer sees only the successor's message");
	check(strstr(all, "z1") != NULL, "z1 was written to the log (and aborted by the fencing)");

	/*
	 * An idle zombie: its last transaction committed, then a successor
	 * started.  Its next transaction must fail at the first request.
	 */
	zombie = producer_new("idle-zombie", txid2, NULL);
	must(zombie, TXN(zombie, rd_kafka_init_transactions(zombie->rk, 30000), NULL), "init");
	must(zombie, TXN(zombie, rd_kafka_begin_transaction(zombie->rk), NULL), "begin");
	produce_ok(zombie, topic, "k", "i1");
	must(zombie, TXN(zombie, rd_kafka_commit_transaction(zombie->rk, 30000), NULL), "commit");
	successor = producer_new("idle-successor", txid2, NULL);
	must(successor, TXN(successor, rd_kafka_init_transactions(successor->rk, 30000), NULL), "init");
	e = TXN(zombie, rd_kafka_begin_transaction(zombie->rk), NULL);
	saw("[idle-zombie] begin_transaction is local: %s", describe(e));
	producer_reset_counts(zombie);
	err = produce(zombie, topic, RD_KAFKA_PARTITION_UA, "k", "i2", 2, 1);
	saw("[idle-zombie] produce: %s", rd_kafka_err2name(err));
	wait_reports(zombie, 10000);
	saw("[idle-zombie] i2 delivery report: %s",
		zombie->failed ? rd_kafka_err2name(zombie->first_failure) : "NO_ERROR");
	e = TXN(zombie, rd_kafka_commit_transaction(zombie->rk, 10000), NULL);
	err = rd_kafka_fatal_error(zombie->rk, errstr, sizeof(errstr));
	check(e != NULL && rd_kafka_error_is_fatal(e) && err == RD_KAFKA_RESP_ERR__FENCED,
		  "an idle zombie's next transaction fails with the fatal _FENCED");
	committed = values("read_committed", topic, 0);
	check(strstr(committed, "i2") == NULL, "i2 is not visible to read_committed: [%s]", committed);
	rd_kafka_destroy(zombie->rk);
	rd_kafka_destroy(successor->rk);
}

/* ------------------------------------------------------------ aborting */

static void
cmd_abort(void)
{
	char	   *good = name("abort-good");
	char	   *small = name("abort-small");
	char	   *txid = name("relay-abort");
	const char *small_cfg[] = {"max.message.bytes", "2000", NULL};
	Producer   *p;
	rd_kafka_error_t *e;
	rd_kafka_resp_err_t err;
	static char big[5000];
	static char huge[1500000];
	char	   *committed,
			   *all;
	double		ms;

	printf("abort: a message refused inside a transaction\n");
	create_topic(good, 1, NULL);
	create_topic(small, 1, small_cfg);
	memset(big, 'b', sizeof(big));
	memset(huge, 'h', sizeof(huge));

	p = producer_new("relay", txid, NULL);
	must(p, TXN(p, rd_kafka_init_transactions(p->rk, 30000), NULL), "init");

	/* the broker refuses one message: the commit must turn into an abort */
	must(p, TXN(p, rd_kafka_begin_transaction(p->rk), NULL), "begin");
	if (produce(p, good, RD_KAFKA_PARTITION_UA, "k1", "g1", 2, 0) ||
		produce(p, good, RD_KAFKA_PARTITION_UA, "k2", "g2", 2, 1))
		die("produce g1, g2");
	err = produce(p, small, RD_KAFKA_PARTITION_UA, "k3", big, sizeof(big), 2);
	saw("produce of 5000 bytes to a topic with max.message.bytes=2000: %s (queued)",
		rd_kafka_err2name(err));
	wait_reports(p, 10000);
	saw("delivery reports: %d delivered, %d failed, first failure %s; per message: g1 %s, g2 %s, big %s",
		p->delivered, p->failed, rd_kafka_err2name(p->first_failure),
		rd_kafka_err2name(p->err[0]), rd_kafka_err2name(p->err[1]),
		rd_kafka_err2name(p->err[2]));
	check(p->err[0] == RD_KAFKA_RESP_ERR_NO_ERROR && p->err[2] != RD_KAFKA_RESP_ERR_NO_ERROR,
		  "the good messages are acknowledged, the refused one fails on its own");
	err = produce(p, good, RD_KAFKA_PARTITION_UA, "k4", "g4", 2, 4);
	saw("produce after the failure, same transaction: %s", rd_kafka_err2name(err));
	check(err == RD_KAFKA_RESP_ERR__STATE,
		  "once a message failed, the transaction takes no more messages (_STATE)");
	e = TXN(p, rd_kafka_commit_transaction(p->rk, 30000), NULL);
	check(e != NULL && rd_kafka_error_txn_requires_abort(e) && !rd_kafka_error_is_fatal(e),
		  "the commit fails with an abortable error");
	if (e)
		rd_kafka_error_destroy(e);
	e = TXN(p, rd_kafka_abort_transaction(p->rk, 30000), &ms);
	check(e == NULL, "the abort succeeds");
	result("abort_transaction after a refused message: %.1f ms", ms);
	committed = values("read_committed", good, 0);
	all = values("read_uncommitted", good, 0);
	saw("read_committed: [%s]; read_uncommitted: [%s]", committed, all);
	check(committed[0] == '\0', "none of the aborted transaction is visible to read_committed");
	check(strstr(all, "g1") && strstr(all, "g2"),
		  "its acknowledged messages were written and then aborted: an acknowledgement is no commit");

	/* librdkafka refuses one message before queueing it: the rest commits */
	producer_reset_counts(p);
	must(p, TXN(p, rd_kafka_begin_transaction(p->rk), NULL), "begin");
	produce_ok(p, good, "k5", "g5");
	err = produce(p, good, RD_KAFKA_PARTITION_UA, "k6", huge, sizeof(huge), 6);
	saw("produce of 1.5 MB (above the producer's message.max.bytes): %s", rd_kafka_err2name(err));
	check(err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, "refused at once, not queued");
	produce_ok(p, good, "k7", "g7");
	e = TXN(p, rd_kafka_commit_transaction(p->rk, 30000), NULL);
	check(e == NULL, "the transaction commits without the refused message");
	committed = values("read_committed", good, 0);
	check(strcmp(committed, "g5,g7") == 0, "read_committed sees g5,g7: [%s]", committed);

	rd_kafka_destroy(p->rk);
}

/* ----------------------------------------------- a producer destroyed */

static void
cmd_destroy(void)
{
	char	   *topic = name("destroy");
	char	   *txid = name("relay-destroy");
	char	   *txid_other = name("other-producer");
	char	   *txid_t = name("relay-timeout");
	const char *short_timeout[] = {"transaction.timeout.ms", "10000", NULL};
	Producer   *a,
			   *other;
	Records		rs;
	double		t0,
				ms;
	char	   *committed;

	printf("destroy: a producer destroyed in the middle of a transaction\n");
	create_topic(topic, 1, NULL);
	other = producer_new("other", txid_other, NULL);
	must(other, TXN(other, rd_kafka_init_transactions(other->rk, 30000), NULL), "init");

	/* destroyed, then a successor */
	a = producer_new("relay", txid, NULL);
	must(a, TXN(a, rd_kafka_init_transactions(a->rk, 30000), NULL), "init");
	must(a, TXN(a, rd_kafka_begin_transaction(a->rk), NULL), "begin");
	produce_ok(a, topic, "k", "a1");
	wait_reports(a, 10000);
	t0 = now_ms();
	rd_kafka_destroy(a->rk);
	result("rd_kafka_destroy with a transaction open (acknowledged, not committed): %.1f ms",
		   now_ms() - t0);

	must(other, TXN(other, rd_kafka_begin_transaction(other->rk), NULL), "begin");
	produce_ok(other, topic, "k", "c1");
	must(other, TXN(other, rd_kafka_commit_transaction(other->rk, 30000), NULL), "commit");
	rs = read_partition("read_committed", topic, 0, RD_KAFKA_OFFSET_BEGINNING, 3, 3000);
	saw("read_committed for 3 s after another producer committed c1 behind the open transaction: %d messages, position %" PRId64,
		rs.n, rs.end);
	check(rs.n == 0, "the destroyed producer's open transaction holds back read_committed consumers of its partition, other producers' messages too");

	a = producer_new("relay-again", txid, NULL);
	must(a, TXN(a, rd_kafka_init_transactions(a->rk, 30000), &ms), "init");
	result("init_transactions that aborts a destroyed producer's transaction: %.1f ms", ms);
	t0 = now_ms();
	rs = read_partition("read_committed", topic, 0, RD_KAFKA_OFFSET_BEGINNING, 3, 20000);
	result("after it, c1 visible to a new read_committed consumer in %.1f ms (consumer start included)",
		   now_ms() - t0);
	committed = values("read_committed", topic, 0);
	check(strcmp(committed, "c1") == 0, "read_committed sees c1 and never a1: [%s]", committed);
	rd_kafka_destroy(a->rk);

	/* destroyed, and no successor: only transaction.timeout.ms ends it */
	a = producer_new("relay-t", txid_t, short_timeout);
	must(a, TXN(a, rd_kafka_init_transactions(a->rk, 30000), NULL), "init");
	must(a, TXN(a, rd_kafka_begin_transaction(a->rk), NULL), "begin");
	produce_ok(a, topic, "k", "t1");
	wait_reports(a, 10000);
	rd_kafka_destroy(a->rk);
	t0 = now_ms();
	must(other, TXN(other, rd_kafka_begin_transaction(other->rk), NULL), "begin");
	produce_ok(other, topic, "k", "c2");
	must(other, TXN(other, rd_kafka_commit_transaction(other->rk, 30000), NULL), "commit");
	for (;;)
	{
		bool		seen = false;

		rs = read_partition("read_committed", topic, 0, RD_KAFKA_OFFSET_BEGINNING, -1, 5000);
		for (int i = 0; i < rs.n; i++)
			seen |= strcmp(rs.r[i].value, "c2") == 0;
		if (seen || now_ms() - t0 > 90000)
		{
			check(seen, "c2 becomes visible without a successor");
			break;
		}
		usleep(500000);
	}
	result("with transaction.timeout.ms=10000 and no successor, c2 visible to read_committed after %.1f s",
		   (now_ms() - t0) / 1000);
	committed = values("read_committed", topic, 0);
	check(strstr(committed, "t1") == NULL, "the timed-out transaction was aborted: [%s]", committed);
	rd_kafka_destroy(other->rk);
}

/* ------------------------------------------------------------ recovery */

/*
 * One relay's last committed progress record, as a starting relay would
 * look for it after its init_transactions(): the log end as a
 * read_uncommitted client sees it is where every record of this relay's
 * lies before (its own transactions are all finished); read backwards from
 * there in growing windows with read_committed, each window until the
 * position reaches its end, and keep the last record with the relay's
 * key.  The position passes aborted records and commit markers, and waits
 * at the last stable offset while another producer's transaction is open.
 */
static bool
find_last(const char *topic, int32_t part, const char *key, int wait_ms,
		  char *found, size_t foundlen, int64_t *found_offset, int *reads)
{
	int64_t		lo,
				hi,
				start,
				stop;
	int64_t		window = 8;

	watermarks("read_uncommitted", topic, part, &lo, &hi);
	stop = hi;
	*reads = 0;
	for (;;)
	{
		Records		rs;
		bool		got = false;

		start = stop - window < lo ? lo : stop - window;
		rs = read_partition("read_committed", topic, part, start, stop, wait_ms);
		(*reads)++;
		if (!rs.reached)
			return false;		/* another producer's transaction held it */
		for (int i = rs.n - 1; i >= 0 && !got; i--)
			if (strcmp(rs.r[i].key, key) == 0)
			{
				snprintf(found, foundlen, "%s", rs.r[i].value);
				*found_offset = rs.r[i].offset;
				got = true;
			}
		if (got)
			return true;
		if (start == lo)
		{
			snprintf(found, foundlen, "(none)");
			*found_offset = -1;
			return true;
		}
		stop = start;
		window *= 4;
	}
}

/* One transaction with one record, quietly. */
static void
commit_record(Producer *p, const char *topic, const char *key, const char *value)
{
	must(p, rd_kafka_begin_transaction(p->rk), "begin");
	produce_ok(p, topic, key, value);
	must(p, rd_kafka_commit_transaction(p->rk, 30000), "commit");
}

static void
cmd_recover(void)
{
	char	   *topic = name("progress");
	char	   *txid = name("relay-1");
	char	   *txid2 = name("relay-2");
	const char *compact[] = {"cleanup.policy", "compact",
		"min.compaction.lag.ms", "0",
	"segment.ms", "3600000", NULL};
	Producer   *me,
			   *other;
	int64_t		lo,
				hi,
				lso,
				off;
	Records		rs;
	char		found[64];
	int			reads;
	bool		ok;
	double		t0;

	printf("recover: the last committed progress record of one relay\n");
	create_topic(topic, 1, compact);
	me = producer_new("relay-1", txid, NULL);
	other = producer_new("relay-2", txid2, NULL);
	must(me, TXN(me, rd_kafka_init_transactions(me->rk, 30000), NULL), "init");
	must(other, TXN(other, rd_kafka_init_transactions(other->rk, 30000), NULL), "init");

	commit_record(me, topic, txid, "v1");
	commit_record(other, topic, txid2, "o1");
	commit_record(me, topic, txid, "v2");
	commit_record(other, topic, txid2, "o2");
	commit_record(me, topic, txid, "v3");
	/* v4 aborted */
	must(me, TXN(me, rd_kafka_begin_transaction(me->rk), NULL), "begin");
	produce_ok(me, topic, txid, "v4");
	wait_reports(me, 10000);
	must(me, TXN(me, rd_kafka_abort_transaction(me->rk, 30000), NULL), "abort");

	watermarks("read_uncommitted", topic, 0, &lo, &hi);
	watermarks("read_committed", topic, 0, &lo, &lso);
	saw("after v1 o1 v2 o2 v3 (committed) and v4 (aborted): low %" PRId64 ", high %" PRId64 " (read_uncommitted), %" PRId64 " (read_committed)",
		lo, hi, lso);
	check(hi == 12, "each transaction took two offsets, its record and its commit or abort marker");
	rs = read_partition("read_committed", topic, 0, hi - 1, hi, 3000);
	saw("reading from end-1 (%" PRId64 "): %d records, position %" PRId64, hi - 1, rs.n, rs.end);
	check(rs.n == 0, "offset end-1 holds a control record: no record to read there");
	rs = read_partition("read_committed", topic, 0, hi - 2, hi, 3000);
	saw("reading from end-2: %d records%s%s", rs.n, rs.n ? ", value " : "", rs.n ? rs.r[0].value : "");
	check(rs.n == 0, "offset end-2 holds the aborted v4, which read_committed skips");

	t0 = now_ms();
	ok = find_last(topic, 0, txid, 5000, found, sizeof(found), &off, &reads);
	check(ok && strcmp(found, "v3") == 0,
		  "the backward search finds v3 (offset %" PRId64 ")", off);
	result("finding the last committed record, aborted and foreign records after it: %.1f ms, %d reads",
		   now_ms() - t0, reads);

	/* a zombie of mine with an open transaction, then my successor */
	must(me, TXN(me, rd_kafka_begin_transaction(me->rk), NULL), "begin");
	produce_ok(me, topic, txid, "v5");
	wait_reports(me, 10000);
	rd_kafka_destroy(me->rk);
	me = producer_new("relay-1-successor", txid, NULL);
	must(me, TXN(me, rd_kafka_init_transactions(me->rk, 30000), NULL), "init");
	check(find_last(topic, 0, txid, 5000, found, sizeof(found), &off, &reads) &&
		  strcmp(found, "v3") == 0,
		  "after the successor's init_transactions the zombie's v5 is aborted: the last is still v3");

	/*
	 * Another relay opens a transaction on the partition, then mine
	 * commits v6 behind it: v6 lies beyond the last stable offset until the
	 * other transaction ends.
	 */
	must(other, TXN(other, rd_kafka_begin_transaction(other->rk), NULL), "begin");
	produce_ok(other, topic, txid2, "o3");
	wait_reports(other, 10000);
	commit_record(me, topic, txid, "v6");
	watermarks("read_uncommitted", topic, 0, &lo, &hi);
	watermarks("read_committed", topic, 0, &lo, &lso);
	saw("another relay's transaction open below my v6: high %" PRId64 ", last stable %" PRId64, hi, lso);
	rs = read_partition("read_committed", topic, 0, RD_KAFKA_OFFSET_BEGINNING, lso, 3000);
	found[0] = '\0';
	for (int i = 0; i < rs.n; i++)
		if (strcmp(rs.r[i].key, txid) == 0)
			snprintf(found, sizeof(found), "%s", rs.r[i].value);
	check(strcmp(found, "v3") == 0,
		  "reading up to the last stable offset gives a stale record (%s): the search must wait for the log end", found);
	check(!find_last(topic, 0, txid, 2000, found, sizeof(found), &off, &reads),
		  "the search to the log end waits while the other transaction is open");
	must(other, TXN(other, rd_kafka_commit_transaction(other->rk, 30000), NULL), "commit");
	t0 = now_ms();
	check(find_last(topic, 0, txid, 5000, found, sizeof(found), &off, &reads) &&
		  strcmp(found, "v6") == 0,
		  "once it ends, the search finds v6 (%s)", found);
	result("finding v6 once the other transaction ended: %.1f ms, %d reads", now_ms() - t0, reads);

	/* many foreign records after mine: the windows grow */
	for (int i = 0; i < 300; i++)
	{
		char		v[16];

		snprintf(v, sizeof(v), "x%d", i);
		commit_record(other, topic, txid2, v);
	}
	t0 = now_ms();
	check(find_last(topic, 0, txid, 5000, found, sizeof(found), &off, &reads) &&
		  strcmp(found, "v6") == 0,
		  "with 300 foreign transactions after it, v6 is still found");
	result("finding the last record behind 300 foreign transactions (600 offsets): %.1f ms, %d reads",
		   now_ms() - t0, reads);
	rd_kafka_destroy(me->rk);
	rd_kafka_destroy(other->rk);
}

/* ------------------------------------------------------------- latency */

/* What the consumer thread saw: when the last message of each round arrived. */
#define MAX_ROUNDS 4000

typedef struct Seen
{
	pthread_mutex_t lock;
	pthread_cond_t cond;
	double		at[2][MAX_ROUNDS];	/* [eos?][round] */
	volatile bool stop;
	char	   *topics[2];
	int			partitions;
} Seen;

static Seen seen;

static void *
consumer_thread(void *arg)
{
	rd_kafka_t *rk = consumer_new("read_committed");
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_topic_t *rkt[2];

	for (int t = 0; t < 2; t++)
	{
		rkt[t] = rd_kafka_topic_new(rk, seen.topics[t], NULL);
		for (int p = 0; p < seen.partitions; p++)
			if (rd_kafka_consume_start_queue(rkt[t], p, RD_KAFKA_OFFSET_BEGINNING, q) == -1)
				die("consume_start_queue: %s", rd_kafka_err2name(rd_kafka_last_error()));
	}
	while (!seen.stop)
	{
		rd_kafka_message_t *m = rd_kafka_consume_queue(q, 50);
		int			eos,
					round,
					last;

		if (m == NULL)
			continue;
		if (m->err == 0 && m->len >= 3 &&
			sscanf((const char *) m->payload, "%d %d %d", &eos, &round, &last) == 3 &&
			last && round < MAX_ROUNDS)
		{
			pthread_mutex_lock(&seen.lock);
			seen.at[eos][round] = now_ms();
			pthread_cond_broadcast(&seen.cond);
			pthread_mutex_unlock(&seen.lock);
		}
		rd_kafka_message_destroy(m);
	}
	for (int t = 0; t < 2; t++)
	{
		for (int p = 0; p < seen.partitions; p++)
			rd_kafka_consume_stop(rkt[t], p);
		rd_kafka_topic_destroy(rkt[t]);
	}
	rd_kafka_queue_destroy(q);
	rd_kafka_destroy(rk);
	return NULL;
}

static double
wait_seen(int eos, int round, int timeout_ms)
{
	struct timespec ts;
	double		at;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	pthread_mutex_lock(&seen.lock);
	while (seen.at[eos][round] == 0)
		if (pthread_cond_timedwait(&seen.cond, &seen.lock, &ts) == ETIMEDOUT)
			break;
	at = seen.at[eos][round];
	pthread_mutex_unlock(&seen.lock);
	return at;
}

static int
compare_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

static double
pct(double *v, int n, double p)
{
	int			i = (int) (p * n + 0.999999) - 1;

	qsort(v, n, sizeof(double), compare_double);
	return v[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

static void
summary(const char *what, double *v, int n)
{
	result("%-44s p50 %8.2f  p90 %8.2f  p99 %8.2f  max %8.2f ms", what,
		   pct(v, n, 0.50), pct(v, n, 0.90), pct(v, n, 0.99), pct(v, n, 1.0));
}

static void
cmd_latency(void)
{
	char	   *alo_topic = name("lat-alo");
	char	   *eos_topic = name("lat-eos");
	char	   *progress = name("lat-progress");
	char	   *txid = name("relay-lat");
	const char *compact[] = {"cleanup.policy", "compact", NULL};
	const int	sizes[] = {1, 100, 5000};
	const int	rounds_of[] = {200, 100, 20};
	Producer   *alo,
			   *eos;
	pthread_t	thread;
	static char payload[256];
	static unsigned char ids[5000][16];
	static unsigned char record[5000 * PROGRESS_MAX_PER_ID + PROGRESS_HEADER];
	int			round_no = 0;

	printf("latency: a transaction per round against the idempotent producer, side by side\n");
	create_topic(alo_topic, 3, NULL);
	create_topic(eos_topic, 3, NULL);
	create_topic(progress, 1, compact);
	memset(payload, 'p', sizeof(payload));

	alo = producer_new("alo", NULL, NULL);
	eos = producer_new("eos", txid, NULL);
	must(eos, TXN(eos, rd_kafka_init_transactions(eos->rk, 30000), NULL), "init");

	pthread_mutex_init(&seen.lock, NULL);
	pthread_cond_init(&seen.cond, NULL);
	seen.topics[0] = alo_topic;
	seen.topics[1] = eos_topic;
	seen.partitions = 3;
	pthread_create(&thread, NULL, consumer_thread, NULL);
	usleep(2000000);			/* let the consumer reach the end of the empty partitions */

	/* warm up: the first round of each producer fetches metadata (about 1 s) */
	for (int mode = 0; mode < 2; mode++)
	{
		Producer   *p = mode ? eos : alo;

		if (mode)
			must(p, rd_kafka_begin_transaction(p->rk), "begin");
		for (int part = 0; part < 3; part++)
			if (produce(p, mode ? eos_topic : alo_topic, part, "warm", "warm-up", 7, -1))
				die("warm-up");
		if (mode && produce(p, progress, 0, txid, "warm-up", 7, -1))
			die("warm-up");
		wait_reports(p, 30000);
		if (mode)
			must(p, rd_kafka_commit_transaction(p->rk, 30000), "commit");
	}

	for (int s = 0; s < 3; s++)
	{
		int			n = sizes[s];
		int			rounds = rounds_of[s];
		double	   *alo_total = calloc(rounds, sizeof(double));
		double	   *alo_seen = calloc(rounds, sizeof(double));
		double	   *eos_acked = calloc(rounds, sizeof(double));
		double	   *eos_commit = calloc(rounds, sizeof(double));
		double	   *eos_total = calloc(rounds, sizeof(double));
		double	   *eos_seen = calloc(rounds, sizeof(double));
		double	   *eos_after = calloc(rounds, sizeof(double));
		double		alo_sum = 0,
					eos_sum = 0;
		size_t		record_len = 0;

		for (int r = 0; r < rounds; r++, round_no++)
		{
			/* alternate which goes first, so neither always gets a warm broker */
			for (int k = 0; k < 2; k++)
			{
				int			mode = (k + r) % 2;	/* 0 at-least-once, 1 exactly-once */
				Producer   *p = mode ? eos : alo;
				const char *topic = mode ? eos_topic : alo_topic;
				double		t0,
							t1,
							t2,
							at;

				if (round_no >= MAX_ROUNDS)
					die("too many rounds");
				producer_reset_counts(p);
				t0 = now_ms();
				if (mode)
					must(p, rd_kafka_begin_transaction(p->rk), "begin");
				for (int i = 0; i < n; i++)
				{
					char		key[16];
					int			len = snprintf(payload, sizeof(payload), "%d %d %d ",
											   mode, round_no, i == n - 1);
					rd_kafka_resp_err_t err;

					payload[len] = 'p';
					snprintf(key, sizeof(key), "key-%d", (r * n + i) % 10000);
					while ((err = produce(p, topic, RD_KAFKA_PARTITION_UA, key,
										  payload, 200, i)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
						rd_kafka_poll(p->rk, 1);
					if (err)
						die("produce: %s", rd_kafka_err2name(err));
				}
				if (mode)
				{
					make_ids(ids, n, n);
					record_len = progress_encode(record, 1, 1, 1, round_no, ids, n);
					if (produce(p, progress, 0, txid, record, record_len, -1))
						die("produce progress record");
				}
				if (!wait_reports(p, 60000) || p->failed)
					die("[%s] round %d: %d failed", p->who, round_no, p->failed);
				t1 = now_ms();
				if (mode)
					must(p, rd_kafka_commit_transaction(p->rk, 60000), "commit");
				t2 = now_ms();
				at = wait_seen(mode, round_no, 30000);
				if (at == 0)
					die("round %d (%s) never seen by the consumer", round_no, p->who);
				if (mode)
				{
					eos_acked[r] = t1 - t0;
					eos_commit[r] = t2 - t1;
					eos_total[r] = t2 - t0;
					eos_seen[r] = at - t0;
					eos_after[r] = at - t2;
					eos_sum += t2 - t0;
				}
				else
				{
					alo_total[r] = t1 - t0;
					alo_seen[r] = at - t0;
					alo_sum += t1 - t0;
				}
			}
		}
		printf("  batch of %d (%d rounds each; progress record %zu bytes):\n", n, rounds, record_len);
		summary("at-least-once: produce to last report", alo_total, rounds);
		summary("exactly-once: produce to last report", eos_acked, rounds);
		summary("exactly-once: commit_transaction()", eos_commit, rounds);
		summary("exactly-once: begin to commit returned", eos_total, rounds);
		summary("at-least-once: start to read_committed receipt", alo_seen, rounds);
		summary("exactly-once: start to read_committed receipt", eos_seen, rounds);
		summary("exactly-once: commit returned to receipt", eos_after, rounds);
		result("batch %d: events/s while producing, at-least-once %.0f, exactly-once %.0f, ratio %.2f",
			   n, n * rounds / (alo_sum / 1000), n * rounds / (eos_sum / 1000),
			   alo_sum / eos_sum);
	}

	/*
	 * Back to back, as the relay runs under load: each round starts as soon
	 * as the last ended, without waiting for the consumer.
	 */
	for (int c = 0; c < 4; c++)
	{
		/* then with a pause after each commit, exactly-once only */
		const int	case_n[] = {1, 100, 1, 1};
		const int	case_pause[] = {0, 0, 2, 5};
		int			n = case_n[c];
		int			pause_ms = case_pause[c];
		int			rounds = 500;

		if (pause_ms)
			printf("  exactly-once, batch of %d, %d ms pause after each commit (%d rounds):\n",
				   n, pause_ms, rounds);
		else
			printf("  back to back, batch of %d (%d rounds each):\n", n, rounds);
		for (int mode = pause_ms ? 1 : 0; mode < 2; mode++)
		{
			Producer   *p = mode ? eos : alo;
			const char *topic = mode ? eos_topic : alo_topic;
			double	   *start = calloc(rounds, sizeof(double));
			double	   *took = calloc(rounds, sizeof(double));
			double	   *receipt = calloc(rounds, sizeof(double));
			int			first = round_no;
			int			answers_before = concurrent_answers;
			double		t_begin = now_ms(),
						elapsed;

			for (int r = 0; r < rounds; r++, round_no++)
			{
				if (round_no >= MAX_ROUNDS)
					die("too many rounds");
				producer_reset_counts(p);
				start[r] = now_ms();
				if (mode)
					must(p, rd_kafka_begin_transaction(p->rk), "begin");
				for (int i = 0; i < n; i++)
				{
					char		key[16];
					int			len = snprintf(payload, sizeof(payload), "%d %d %d ",
											   mode, round_no, i == n - 1);

					payload[len] = 'p';
					snprintf(key, sizeof(key), "key-%d", (r * n + i) % 10000);
					if (produce(p, topic, RD_KAFKA_PARTITION_UA, key, payload, 200, i))
						die("produce");
				}
				if (mode)
				{
					make_ids(ids, n, n);
					if (produce(p, progress, 0, txid, record,
								progress_encode(record, 1, 1, 1, round_no, ids, n), -1))
						die("produce progress record");
				}
				if (!wait_reports(p, 60000) || p->failed)
					die("[%s] round %d failed", p->who, round_no);
				if (mode)
					must(p, rd_kafka_commit_transaction(p->rk, 60000), "commit");
				took[r] = now_ms() - start[r];
				if (pause_ms)
					usleep(pause_ms * 1000);
			}
			elapsed = now_ms() - t_begin;
			for (int r = 0; r < rounds; r++)
			{
				double		at = wait_seen(mode, first + r, 30000);

				if (at == 0)
					die("round %d never seen", first + r);
				receipt[r] = at - start[r];
			}
			{
				int			slow = 0;

				for (int r = 0; r < rounds; r++)
					slow += took[r] >= 20;
				result("%s: %d of %d rounds took 20 ms or more",
					   mode ? "exactly-once" : "at-least-once", slow, rounds);
				if (getenv("SPIKE_DEBUG") && mode)
					result("exactly-once: %d CONCURRENT_TRANSACTIONS answers to AddPartitionsToTxn",
						   concurrent_answers - answers_before);
			}
			summary(mode ? "exactly-once: round, begin to commit returned"
					: "at-least-once: round, produce to last report", took, rounds);
			summary(mode ? "exactly-once: round start to receipt"
					: "at-least-once: round start to receipt", receipt, rounds);
			result("%s, batch %d, %d ms pause: %.0f rounds/s, %.0f events/s",
				   mode ? "exactly-once" : "at-least-once", n, pause_ms,
				   rounds / (elapsed / 1000), n * rounds / (elapsed / 1000));
		}
	}

	seen.stop = true;
	pthread_join(thread, NULL);
	rd_kafka_destroy(alo->rk);
	rd_kafka_destroy(eos->rk);
}

/* -------------------------------------------------------------- outage */

static void
broker(const char *action)
{
	const char *sh = getenv("SPIKE_KAFKA_SH");
	const char *dir = getenv("SPIKE_KAFKA_DIR");
	char		cmd[1024];
	double		t0 = now_ms();

	if (sh == NULL || dir == NULL)
		die("outage needs SPIKE_KAFKA_SH (test/kafka/kafka.sh) and SPIKE_KAFKA_DIR (the broker's directory)");
	snprintf(cmd, sizeof(cmd), "'%s' %s '%s' >/dev/null 2>&1", sh, action, dir);
	if (system(cmd) != 0)
		die("%s failed", cmd);
	saw("broker %s took %.1f s", action, (now_ms() - t0) / 1000);
}

/*
 * Commit in steps of step_ms, serving delivery reports between them, as the
 * relay would (it cannot block for long); report every distinct outcome.
 */
static rd_kafka_error_t *
commit_in_steps(Producer *p, int step_ms, int limit_ms)
{
	double		end = now_ms() + limit_ms;
	char		last[600] = "";
	int			calls = 0;

	for (;;)
	{
		rd_kafka_error_t *e = rd_kafka_commit_transaction(p->rk, step_ms);

		calls++;
		if (strcmp(describe(e), last) != 0)
		{
			snprintf(last, sizeof(last), "%s", describe(e));
			saw("[%s] commit_transaction(%d) call %d: %s", p->who, step_ms, calls, last);
		}
		if (e == NULL || !rd_kafka_error_is_retriable(e) || now_ms() > end)
			return e;
		rd_kafka_error_destroy(e);
		rd_kafka_poll(p->rk, 10);
	}
}

static void
cmd_outage(void)
{
	char	   *topic = name("outage");
	char	   *txid = name("relay-outage");
	char	   *txid2 = name("relay-outage-long");
	const char *long_outage[] = {"transaction.timeout.ms", "10000", NULL};
	const char *never[] = {"message.timeout.ms", "0", NULL};
	Producer   *p;
	rd_kafka_error_t *e;
	char		errstr[512];
	rd_kafka_resp_err_t err;
	char	   *committed;
	double		t0;

	printf("outage: the broker stopped and started inside a transaction\n");
	create_topic(topic, 1, NULL);

	p = producer_new("message-timeout-0", name("conf-check"), never);
	saw("a transactional producer with message.timeout.ms=0 (never) is accepted by rd_kafka_new");
	rd_kafka_destroy(p->rk);

	/* short: 3 s, well within transaction.timeout.ms */
	p = producer_new("relay", txid, NULL);
	must(p, TXN(p, rd_kafka_init_transactions(p->rk, 30000), NULL), "init");
	must(p, TXN(p, rd_kafka_begin_transaction(p->rk), NULL), "begin");
	for (int i = 0; i < 100; i++)
		produce_ok(p, topic, "k", "s");
	wait_reports(p, 10000);
	saw("100 messages acknowledged; stopping the broker");
	broker("stop");
	sleep(3);
	broker("start");
	t0 = now_ms();
	e = commit_in_steps(p, 100, 120000);
	check(e == NULL, "after a short outage the commit succeeds (%.1f s after the broker was back)",
		  (now_ms() - t0) / 1000);
	committed = values("read_committed", topic, 0);
	check(strlen(committed) == 199, "the 100 messages are visible once");
	rd_kafka_destroy(p->rk);

	/* long: past transaction.timeout.ms, messages not yet delivered */
	p = producer_new("relay-long", txid2, long_outage);
	must(p, TXN(p, rd_kafka_init_transactions(p->rk, 30000), NULL), "init");
	must(p, TXN(p, rd_kafka_begin_transaction(p->rk), NULL), "begin");
	produce_ok(p, topic, "k", "before");
	wait_reports(p, 10000);
	broker("stop");
	producer_reset_counts(p);
	for (int i = 0; i < 10; i++)
		produce_ok(p, topic, "k", "during");
	sleep(15);
	broker("start");
	t0 = now_ms();
	wait_reports(p, 60000);
	saw("[relay-long] after the outage: %d delivered, %d failed (first %s), %d outstanding, after %.1f s",
		p->delivered, p->failed, rd_kafka_err2name(p->first_failure), p->outstanding,
		(now_ms() - t0) / 1000);
	e = commit_in_steps(p, 1000, 120000);
	err = rd_kafka_fatal_error(p->rk, errstr, sizeof(errstr));
	saw("[relay-long] outcome: %s; fatal error %s %s", describe(e), rd_kafka_err2name(err), errstr);
	check(e != NULL, "a transaction open longer than transaction.timeout.ms cannot commit");
	if (e && rd_kafka_error_txn_requires_abort(e))
	{
		rd_kafka_error_destroy(e);
		e = TXN(p, rd_kafka_abort_transaction(p->rk, 30000), NULL);
	}
	if (e)
		rd_kafka_error_destroy(e);
	rd_kafka_destroy(p->rk);
	p = producer_new("relay-long-again", txid2, long_outage);
	e = TXN(p, rd_kafka_init_transactions(p->rk, 30000), NULL);
	check(e == NULL, "a new producer with the same id starts");
	committed = values("read_committed", topic, 0);
	check(strstr(committed, "before") == NULL && strstr(committed, "during") == NULL,
		  "nothing of the timed-out transaction is visible");
	rd_kafka_destroy(p->rk);
}

/* ---------------------------------------------------------------- stall */

/*
 * The producer itself stalls (a stopped process, a long pause) with a
 * transaction open, the broker running: the coordinator aborts the
 * transaction after transaction.timeout.ms.  What does the producer see?
 */
static void
cmd_stall(void)
{
	char	   *topic = name("stall");
	char	   *txid = name("relay-stall");
	const char *short_timeout[] = {"transaction.timeout.ms", "5000", NULL};
	Producer   *p;
	rd_kafka_error_t *e;
	rd_kafka_resp_err_t err;
	char		errstr[512];
	char	   *committed;

	printf("stall: a producer that stops longer than transaction.timeout.ms\n");
	create_topic(topic, 1, NULL);
	p = producer_new("relay", txid, short_timeout);
	must(p, TXN(p, rd_kafka_init_transactions(p->rk, 30000), NULL), "init");
	must(p, TXN(p, rd_kafka_begin_transaction(p->rk), NULL), "begin");
	produce_ok(p, topic, "k", "before");
	wait_reports(p, 10000);
	saw("acknowledged; stalling 20 s without serving the producer (transaction.timeout.ms=5000)");
	sleep(20);
	producer_reset_counts(p);
	err = produce(p, topic, RD_KAFKA_PARTITION_UA, "k", "after", 5, 1);
	saw("produce after the stall: %s", rd_kafka_err2name(err));
	wait_reports(p, 10000);
	saw("its delivery report: %s", p->failed ? rd_kafka_err2name(p->first_failure) : "NO_ERROR");
	e = TXN(p, rd_kafka_commit_transaction(p->rk, 10000), NULL);
	err = rd_kafka_fatal_error(p->rk, errstr, sizeof(errstr));
	saw("fatal error: %s %s", rd_kafka_err2name(err), errstr);
	check(e != NULL, "a transaction the coordinator timed out cannot commit");
	check(err == RD_KAFKA_RESP_ERR__FENCED,
		  "the stalled producer gets the very error a fenced zombie gets (_FENCED)");
	if (e && rd_kafka_error_txn_requires_abort(e))
	{
		rd_kafka_error_destroy(e);
		e = TXN(p, rd_kafka_abort_transaction(p->rk, 10000), NULL);
		if (e == NULL)
		{
			must(p, TXN(p, rd_kafka_begin_transaction(p->rk), NULL), "begin");
			produce_ok(p, topic, "k", "next");
			e = TXN(p, rd_kafka_commit_transaction(p->rk, 10000), NULL);
			saw("the same producer, next transaction: %s", describe(e));
		}
	}
	if (e)
		rd_kafka_error_destroy(e);
	rd_kafka_destroy(p->rk);
	committed = values("read_committed", topic, 0);
	saw("read_committed: [%s]", committed);
	check(strstr(committed, "before") == NULL && strstr(committed, "after") == NULL,
		  "nothing of the timed-out transaction is visible");
}

int
main(int argc, char **argv)
{
	const char *cmd;

	if (argc != 3)
	{
		fprintf(stderr, "usage: spike_eos BOOTSTRAP record|fence|abort|destroy|recover|latency|outage|stall\n");
		return 2;
	}
	bootstrap = argv[1];
	cmd = argv[2];
	snprintf(run_tag, sizeof(run_tag), "spike-%ld-%d", (long) time(NULL), (int) getpid());
	srandom(getpid());
	printf("librdkafka %s, broker %s, run %s\n", rd_kafka_version_str(), bootstrap, run_tag);

	if (strcmp(cmd, "record") == 0)
		cmd_record();
	else if (strcmp(cmd, "fence") == 0)
		cmd_fence();
	else if (strcmp(cmd, "abort") == 0)
		cmd_abort();
	else if (strcmp(cmd, "destroy") == 0)
		cmd_destroy();
	else if (strcmp(cmd, "recover") == 0)
		cmd_recover();
	else if (strcmp(cmd, "latency") == 0)
		cmd_latency();
	else if (strcmp(cmd, "outage") == 0)
		cmd_outage();
	else if (strcmp(cmd, "stall") == 0)
		cmd_stall();
	else
		die("unknown command %s", cmd);

	printf("%s: %s\n", cmd, failures ? "FAILED" : "all checks passed");
	return failures ? 1 : 0;
}
