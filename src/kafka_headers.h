/*-------------------------------------------------------------------------
 *
 * kafka_headers.h
 *	  Kafka message headers from the text of an outbox row's headers.
 *
 * Without librdkafka, and usable in frontend code (test/fuzz): kafka.h
 * includes this for the relay.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_KAFKA_HEADERS_H
#define INBOX_OUTBOX_KAFKA_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

/* The header the relay adds to every message; no row may set it. */
#define KAFKA_EVENT_ID_HEADER	"event_id"

typedef struct KafkaHeader
{
	const char *name;			/* NUL-terminated, as librdkafka takes it */
	const char *value;			/* value_len bytes, then a NUL */
	size_t		value_len;
} KafkaHeader;

/*
 * Turn json, len bytes in the given PostgreSQL encoding (no terminator
 * needed), into headers.  It must be a JSON object whose values are all
 * strings, without the name "event_id", without a name twice and without a
 * zero byte in a name.
 *
 * On success *headers is a palloc'd array of *nheaders entries, each name
 * and value palloc'd on its own, with room for one more entry, which the
 * relay fills with event_id; *bytes is the sum of the names' and values'
 * lengths, what librdkafka sends for them.  On failure the result is
 * false, the outputs are NULL and zero, nothing stays allocated, and errbuf
 * holds a full sentence saying why.  In the backend, as in jsonb's input, a
 * \u escape of a character the server encoding lacks raises an error
 * instead (headers::text has \u escapes only for ASCII control characters).
 */
extern bool kafka_headers_from_json(const char *json, size_t len, int encoding,
									KafkaHeader **headers, int *nheaders,
									size_t *bytes,
									char *errbuf, size_t errlen);

/* Free what kafka_headers_from_json returned (the first nheaders entries). */
extern void kafka_headers_free(KafkaHeader *headers, int nheaders);

#endif							/* INBOX_OUTBOX_KAFKA_HEADERS_H */
