/*-------------------------------------------------------------------------
 *
 * inbox_outbox.h
 *	  Configuration parameters of inbox_outbox.
 *
 * The variables are defined in inbox_outbox.c.  They are global rather
 * than static because the relay, which lives in a separate library
 * (inbox_outbox_relay.so, the only one linked with librdkafka), reads them
 * in the same process after a reload.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_H
#define INBOX_OUTBOX_H

#include "datatype/timestamp.h"

extern PGDLLIMPORT char *inbox_outbox_brokers;
extern PGDLLIMPORT char *inbox_outbox_kafka_config;
extern PGDLLIMPORT char *inbox_outbox_databases;
extern PGDLLIMPORT int inbox_outbox_batch_size;
extern PGDLLIMPORT int inbox_outbox_poll_interval;
extern PGDLLIMPORT int inbox_outbox_max_attempts;
extern PGDLLIMPORT int inbox_outbox_retry_backoff;
extern PGDLLIMPORT int inbox_outbox_max_message_bytes;
extern PGDLLIMPORT int inbox_outbox_shutdown_timeout;
extern PGDLLIMPORT int inbox_outbox_inbox_retention;

extern int64 inbox_prune_batch(int64 retention_ms, int batch_size,
								TimestampTz *from);

extern void launcher_register(void);

#endif							/* INBOX_OUTBOX_H */
