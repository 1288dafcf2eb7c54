/*-------------------------------------------------------------------------
 *
 * kafka_client.h
 *	  What every librdkafka handle of the relay shares (kafka_client.c):
 *	  its configuration, made from inbox_outbox.brokers and
 *	  inbox_outbox.kafka_config, and its log lines.
 *
 * The relay makes a producer (kafka.c) and, in exactly-once mode, a
 * short-lived consumer for the progress topic (relay_progress.c).  Both
 * reach the same brokers with the same security settings, so both take
 * the user's properties through here, and both report librdkafka's log
 * the same way.  Unlike kafka.h this header shows librdkafka's types: only
 * the files that call librdkafka include it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_KAFKA_CLIENT_H
#define INBOX_OUTBOX_KAFKA_CLIENT_H

#include <librdkafka/rdkafka.h>

/* What a handle is for; it only changes the wording of errors. */
typedef enum KafkaClientKind
{
	KAFKA_CLIENT_PRODUCER,
	KAFKA_CLIENT_CONSUMER
} KafkaClientKind;

#define KAFKA_LOG_LINES		32
#define KAFKA_LOG_LEN		512

/*
 * Log lines a handle's log callback recorded, until they are reported.
 * librdkafka queues its log (log.queue=true), so the callback runs inside
 * rd_kafka_poll() on the relay's thread; it still may not call PostgreSQL,
 * which is why lines wait here until the poll has returned.
 */
typedef struct KafkaLog
{
	int			nlines;
	int			level[KAFKA_LOG_LINES];
	char		line[KAFKA_LOG_LINES][KAFKA_LOG_LEN];
	int			dropped;
} KafkaLog;

/*
 * Set one property; on error conf is destroyed and an ERROR is raised that
 * quotes no secret.
 */
extern void kafka_conf_set(rd_kafka_conf_t *conf, KafkaClientKind kind,
						   const char *name, const char *value);

/*
 * Apply the user's properties (inbox_outbox.kafka_config, or the file it
 * names), refusing reserved and unsafe ones, then the brokers and what
 * every handle in a PostgreSQL process needs: log.queue, no termination
 * signal, no mock cluster.  Call it after the defaults the user may
 * override and before the settings the user may not.  On error conf is
 * destroyed and an ERROR is raised.
 */
extern void kafka_conf_apply(rd_kafka_conf_t *conf, KafkaClientKind kind,
							 const char *brokers, const char *extra_config);

/* For a log callback: record one line. */
extern void kafka_log_add(KafkaLog *log, int level, const char *fac,
						  const char *buf);

/*
 * Report the recorded lines: warnings and worse at LOG, except those quiet
 * (if given) says are expected, which go to DEBUG1 with the rest.
 */
extern void kafka_log_report(KafkaLog *log, bool (*quiet) (const char *line));

/*
 * The pipe a handle's events wake the relay through: made non-blocking
 * before the handle (if it cannot be made, conf is destroyed and an ERROR
 * names the handle, what), written to when the main queue stops being
 * empty, and drained before the handle is polled.
 */
extern void kafka_event_pipe_open(int pipefd[2], rd_kafka_conf_t *conf,
								  const char *what);
extern void kafka_main_queue_to_pipe(rd_kafka_t *rk, int write_fd);
extern void kafka_event_pipe_drain(int read_fd);

#endif							/* INBOX_OUTBOX_KAFKA_CLIENT_H */
