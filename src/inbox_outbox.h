/*-------------------------------------------------------------------------
 *
 * inbox_outbox.h
 *	  Configuration parameters of inbox_outbox.
 *
 * The variables are defined in inbox_outbox.c, and are global for the
 * files of this library only (symbols are hidden).  The relay, which lives
 * in inbox_outbox_relay.so, reads them through relay_api.h.  Their check
 * hooks are in guc_check.c, the redaction of kafka_config in the log in
 * log_redact.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_H
#define INBOX_OUTBOX_H

#include "datatype/timestamp.h"
#include "utils/guc.h"

extern char *inbox_outbox_brokers;
extern char *inbox_outbox_kafka_config;
extern char *inbox_outbox_databases;
extern char *inbox_outbox_relay_role;
extern char *inbox_outbox_standby_slots;
extern bool inbox_outbox_allow_unsafe_kafka_properties;
extern int	inbox_outbox_batch_size;
extern int	inbox_outbox_poll_interval;
extern double inbox_outbox_gather_window;
extern int	inbox_outbox_max_attempts;
extern int	inbox_outbox_retry_backoff;
extern int	inbox_outbox_max_message_bytes;
extern int	inbox_outbox_shutdown_timeout;
extern int	inbox_outbox_inbox_retention;
extern int	inbox_outbox_delivery;
extern char *inbox_outbox_progress_topic;

/* inbox_outbox.delivery */
typedef enum InboxOutboxDelivery
{
	DELIVERY_AT_LEAST_ONCE,
	DELIVERY_EXACTLY_ONCE
} InboxOutboxDelivery;

/* Why a Kafka topic name is invalid, or NULL (outbox.c). */
extern const char *outbox_topic_problem(const char *topic, int len,
										const char **detail);

extern bool inbox_outbox_check_brokers(char **newval, void **extra,
									   GucSource source);
extern bool inbox_outbox_check_kafka_config(char **newval, void **extra,
											GucSource source);
extern bool inbox_outbox_check_databases(char **newval, void **extra,
										 GucSource source);
extern bool inbox_outbox_check_relay_role(char **newval, void **extra,
										  GucSource source);
extern bool inbox_outbox_check_standby_slots(char **newval, void **extra,
											 GucSource source);
extern bool inbox_outbox_check_progress_topic(char **newval, void **extra,
											  GucSource source);

/* Parameters whose postgresql.conf value was refused at server start. */
#define REFUSED_BROKERS			0x01
#define REFUSED_KAFKA_CONFIG	0x02
#define REFUSED_DATABASES		0x04
#define REFUSED_STANDBY_SLOTS	0x08
extern int	inbox_outbox_refused_at_start;

extern void log_redact_init(void);
extern void publish_hint_init(void);
extern void outbox_wake_init(void);

/*
 * Longest event id the inbox accepts, from inbox_try_claim() and from the
 * ingestion worker: far below the btree entry limit.
 */
#define INBOX_EVENT_ID_MAXLEN	512

/* The relay's retention of inbox claims (inbox.c). */
#define INBOX_PRUNE_BATCH			10000	/* claims per transaction */
#define INBOX_PRUNE_INTERVAL_MS		10000	/* how often a pass starts */

typedef struct InboxPrunePass
{
	TimestampTz last_pass;		/* when the last pass started */
	bool		open;			/* a pass is under way */
	TimestampTz from;			/* where its next batch starts */
} InboxPrunePass;

extern int64 inbox_prune_batch(int64 retention_ms, int batch_size,
							   TimestampTz *from);
extern void inbox_prune_paced(InboxPrunePass *pass,
							  void (*begin) (const char *activity),
							  void (*end) (void));

extern void launcher_register(void);

#endif							/* INBOX_OUTBOX_H */
