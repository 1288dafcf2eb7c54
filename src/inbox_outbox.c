/*-------------------------------------------------------------------------
 *
 * inbox_outbox.c
 *	  Module initialization: configuration parameters, shared memory, the
 *	  launcher, and the hook that moves the relay out of the way of DROP,
 *	  RENAME and other operations on its database (database_ops.c).
 *
 * Nothing here talks to Kafka.  librdkafka is linked only into
 * inbox_outbox_relay.so, which only the relay worker loads, after it has
 * forked; application backends that load this library for gen_ulid() or
 * outbox_publish() never map librdkafka or start its threads.
 *
 * The parameters that reach Kafka (brokers, kafka_config), the list of
 * databases and the list of standby slots have check hooks (guc_check.c),
 * so that a bad value is refused by ALTER SYSTEM or the reload instead of
 * stopping the relays; the value of kafka_config, which may hold a
 * password, is kept out of the server log by an emit_log_hook
 * (log_redact.c).  Both work in the postmaster too, because the library is
 * preloaded there.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "database_ops.h"
#include "inbox_outbox.h"
#include "outbox_floor.h"
#include "relay_api.h"
#include "shared_state.h"
#include "standby_wait.h"
#include "ulid.h"

PG_MODULE_MAGIC;

PGDLLEXPORT void _PG_init(void);

char	   *inbox_outbox_brokers = NULL;
char	   *inbox_outbox_kafka_config = NULL;
char	   *inbox_outbox_databases = NULL;
char	   *inbox_outbox_relay_role = NULL;
char	   *inbox_outbox_standby_slots = NULL;
bool		inbox_outbox_allow_unsafe_kafka_properties = false;
int			inbox_outbox_batch_size = 5000;
int			inbox_outbox_poll_interval = 5000;
double		inbox_outbox_gather_window = 2.0;
int			inbox_outbox_max_attempts = 10;
int			inbox_outbox_retry_backoff = 1000;
int			inbox_outbox_max_message_bytes = 1000000;
int			inbox_outbox_shutdown_timeout = 5000;
int			inbox_outbox_inbox_retention = 7 * 24 * 3600;
int			inbox_outbox_delivery = DELIVERY_AT_LEAST_ONCE;
char	   *inbox_outbox_progress_topic = NULL;

static const struct config_enum_entry delivery_options[] = {
	{"at_least_once", DELIVERY_AT_LEAST_ONCE, false},
	{"exactly_once", DELIVERY_EXACTLY_ONCE, false},
	{NULL, 0, false}
};

static void
define_parameters(void)
{
	/*
	 * Before kafka_config, whose check hook reads it, so that a value of
	 * kafka_config found in postgresql.conf at server start is checked with
	 * this setting already applied.  PostgreSQL allows a PGC_POSTMASTER
	 * parameter only while preloading; a backend that loads the library
	 * later keeps the default, which refuses the unsafe properties.  Not
	 * settable by ALTER SYSTEM: whoever may run it, or was granted the
	 * right to set kafka_config, must not be able to turn on command
	 * execution without also being able to edit postgresql.conf.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomBoolVariable("inbox_outbox.allow_unsafe_kafka_properties",
								 "Allows librdkafka properties in inbox_outbox.kafka_config that run programs or load code.",
								 "Such properties, like sasl.kerberos.kinit.cmd or plugin.library.paths, "
								 "run commands or load libraries as the operating system user of the server.",
								 &inbox_outbox_allow_unsafe_kafka_properties,
								 false,
								 PGC_POSTMASTER,
								 GUC_SUPERUSER_ONLY | GUC_DISALLOW_IN_AUTO_FILE,
								 NULL, NULL, NULL);

	DefineCustomStringVariable("inbox_outbox.brokers",
							   "Kafka bootstrap servers the relay connects to.",
							   "A comma-separated list of host:port pairs, each optionally prefixed with "
							   "PLAINTEXT://, SSL://, SASL_PLAINTEXT:// or SASL_SSL://.",
							   &inbox_outbox_brokers,
							   "127.0.0.1:9092",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   inbox_outbox_check_brokers, NULL, NULL);

	DefineCustomStringVariable("inbox_outbox.kafka_config",
							   "Extra librdkafka producer properties for the relay.",
							   "Semicolon-separated key=value pairs, or the absolute path of a file "
							   "with one key=value pair per line. May hold secrets such as SASL passwords.",
							   &inbox_outbox_kafka_config,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   inbox_outbox_check_kafka_config, NULL, NULL);

	DefineCustomStringVariable("inbox_outbox.databases",
							   "Databases in which a relay may run.",
							   "A comma-separated list of database names; empty means every database "
							   "in which the extension is created.",
							   &inbox_outbox_databases,
							   "",
							   PGC_SIGHUP,
							   0,
							   inbox_outbox_check_databases, NULL, NULL);

	DefineCustomStringVariable("inbox_outbox.relay_role",
							   "Role whose privileges the relay uses.",
							   "Empty means the bootstrap superuser.",
							   &inbox_outbox_relay_role,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   inbox_outbox_check_relay_role, NULL, NULL);

	DefineCustomStringVariable("inbox_outbox.standby_slots",
							   "Physical replication slots whose standbys must have flushed an event's commit before the relay sends it.",
							   "A comma-separated list of slot names; empty sends events without waiting for any standby. "
							   "A standby that is down stops delivery until it catches up or its slot is removed from the list.",
							   &inbox_outbox_standby_slots,
							   "",
							   PGC_SIGHUP,
							   0,
							   inbox_outbox_check_standby_slots,
							   inbox_outbox_assign_standby_slots,
							   NULL);

	DefineCustomEnumVariable("inbox_outbox.delivery",
							 "How the relay delivers events to Kafka.",
							 "at_least_once: each event at least once; exactly_once: in Kafka "
							 "transactions, each event once for consumers that read committed "
							 "messages only (see docs/exactly_once.md).",
							 &inbox_outbox_delivery,
							 DELIVERY_AT_LEAST_ONCE,
							 delivery_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("inbox_outbox.progress_topic",
							   "Kafka topic of the relay's progress records in exactly-once mode.",
							   "A compacted topic with one partition, which the relay creates if it "
							   "is missing; every database may share it.",
							   &inbox_outbox_progress_topic,
							   "inbox_outbox_progress",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   inbox_outbox_check_progress_topic, NULL, NULL);

	DefineCustomIntVariable("inbox_outbox.batch_size",
							"Most outbox rows the relay reads and produces in one round.",
							"A round also stops at 24 MB of payload, key and headers.",
							&inbox_outbox_batch_size,
							5000, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("inbox_outbox.poll_interval",
							"Time after which an idle relay looks for rows that no commit announced.",
							"Commits through outbox_publish() or INSERT wake the relay at once; "
							"this fallback covers the rest, such as COMMIT PREPARED.",
							&inbox_outbox_poll_interval,
							5000, 10, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomRealVariable("inbox_outbox.gather_window",
							 "Time after a read of the outbox during which the relay gathers commits for the next.",
							 "Under a steady stream of commits the relay's reads are this far apart at least, "
							 "so that one round carries the events of many commits; a commit after a quiet "
							 "spell is read at once.  0 reads at every commit.",
							 &inbox_outbox_gather_window,
							 2.0, 0.0, 1000.0,
							 PGC_SIGHUP,
							 GUC_UNIT_MS,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("inbox_outbox.max_attempts",
							"Delivery attempts before an outbox row moves to the dead-letter table.",
							NULL,
							&inbox_outbox_max_attempts,
							10, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("inbox_outbox.retry_backoff",
							"Wait before the first retry of a failed outbox row; it doubles with each attempt up to one minute.",
							NULL,
							&inbox_outbox_retry_backoff,
							1000, 0, 60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("inbox_outbox.max_message_bytes",
							"Largest Kafka message (payload, key and headers) accepted for the outbox.",
							"Keep it at or below the brokers' message.max.bytes.",
							&inbox_outbox_max_message_bytes,
							1000000, 1000, 100000000,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("inbox_outbox.shutdown_timeout",
							"Time the relay waits for outstanding acknowledgements when asked to stop.",
							NULL,
							&inbox_outbox_shutdown_timeout,
							5000, 0, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("inbox_outbox.inbox_retention",
							"How long inbox claims are kept; the relay deletes older ones.",
							"A redelivery of an event whose claim was deleted is claimed again. "
							"-1 keeps claims forever.",
							&inbox_outbox_inbox_retention,
							7 * 24 * 3600, -1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("inbox_outbox");
}

void
_PG_init(void)
{
	define_parameters();

	/*
	 * Also when not preloaded: a backend that loads the library for
	 * gen_ulid() may still run ALTER SYSTEM SET inbox_outbox.kafka_config.
	 */
	log_redact_init();
	publish_hint_init();

	if (process_shared_preload_libraries_in_progress)
	{
		shared_state_request();
		outbox_floor_request();
		launcher_register();
		database_ops_init();
		outbox_wake_init();
		relay_api_publish();
	}

	ulid_init();
}
