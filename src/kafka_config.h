/*-------------------------------------------------------------------------
 *
 * kafka_config.h
 *	  The syntax of inbox_outbox.kafka_config, and what the extension
 *	  thinks of each librdkafka property, without librdkafka.
 *
 * Both libraries use this: inbox_outbox.so checks a new value in the GUC
 * check hook (application backends never load librdkafka), the relay
 * applies the same entries to its producer.  The code depends on nothing
 * but the C library, so that it can be fuzzed outside the server.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_KAFKA_CONFIG_H
#define INBOX_OUTBOX_KAFKA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* What the extension thinks of a property name. */
typedef enum KafkaPropertyClass
{
	KAFKA_PROPERTY_ORDINARY = 0,	/* passed to librdkafka as given */
	KAFKA_PROPERTY_UNSAFE,		/* runs a program or loads code */
	KAFKA_PROPERTY_RESERVED		/* set by the relay; may not be given */
} KafkaPropertyClass;

/*
 * Called for each entry; returns false to stop parsing, after writing the
 * reason into errbuf.
 */
typedef bool (*KafkaConfigEntryFn) (void *arg, const char *name,
									const char *value,
									char *errbuf, size_t errlen);

/*
 * Parse "name=value" entries separated by semicolons or newlines, in place
 * (text is modified; it must be NUL-terminated).  Blank entries and entries
 * whose first non-blank character is '#' are skipped; blanks (space, tab,
 * carriage return) around names and values are trimmed.  A value runs to
 * the next separator and may contain '=' and '#'.  A name must be printable
 * ASCII without blanks.  fn gets each entry in order, with a non-empty
 * name; it may throw an error.
 *
 * Returns false with a message in errbuf on a syntax error or when fn
 * returns false.  A syntax error is a full sentence naming the entry by its
 * number among the entries that are neither blank nor comments (so it
 * matches a count kept by fn) and, if the text has several lines, by its
 * line; it never contains a name or a value.
 */
extern bool kafka_config_parse(char *text, KafkaConfigEntryFn fn, void *arg,
							   char *errbuf, size_t errlen);

/*
 * Names are matched as librdkafka 2.0.2 looks them up: exactly, under every
 * alias, and with or without the "topic." prefix it accepts for topic
 * properties.
 */
extern KafkaPropertyClass kafka_property_class(const char *name);

/* Whether a property's value is a secret that must never be shown. */
extern bool kafka_property_is_secret(const char *name);

/*
 * Whether a property with this value would make librdkafka write secrets
 * into its log, which the relay copies into the server log.
 */
extern bool kafka_property_value_exposes_secrets(const char *name,
												 const char *value);

#endif							/* INBOX_OUTBOX_KAFKA_CONFIG_H */
