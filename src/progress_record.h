/*-------------------------------------------------------------------------
 *
 * progress_record.h
 *	  The progress record of exactly-once mode (progress_record.c): the
 *	  exact outbox ids of one Kafka transaction, encoded as described in
 *	  docs/exactly_once.md, section 3.  No librdkafka here, so that the
 *	  fuzzers can take the decoder.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_PROGRESS_RECORD_H
#define INBOX_OUTBOX_PROGRESS_RECORD_H

#include "ulid.h"

/* magic, version, flags, system identifier, database, writer, round, n */
#define PROGRESS_RECORD_HEADER_LEN	(4 + 1 + 1 + 8 + 4 + 8 + 8 + 4)
/* an id costs at most this much: its shared-prefix byte and 16 bytes */
#define PROGRESS_RECORD_MAX_ID_LEN	17
/* what the record is kept within, whatever the producer allows */
#define PROGRESS_RECORD_MAX_BYTES	(1000000 - 1024)

typedef struct ProgressRecord
{
	uint64		system_identifier;
	Oid			database;
	uint64		writer;			/* drawn by the relay process at its start */
	uint64		round;			/* transaction number within that process */
	int			nids;
	pg_ulid    *ids;			/* ascending, no duplicates */
} ProgressRecord;

/*
 * The most ids a record may hold when it must fit in max_bytes (at most
 * PROGRESS_RECORD_MAX_BYTES are used whatever max_bytes says); at least 1.
 */
extern int	progress_record_max_ids(int64 max_bytes);

/*
 * Encode rec (its ids must be ascending) into a palloc'd buffer; *len is
 * set.  The result is at most PROGRESS_RECORD_HEADER_LEN +
 * rec->nids * PROGRESS_RECORD_MAX_ID_LEN bytes.
 */
extern char *progress_record_encode(const ProgressRecord *rec, size_t *len);

/*
 * Decode buf into rec (ids palloc'd).  Returns false and sets *error to a
 * static message if buf is not a well-formed record: wrong magic, unknown
 * version or flag bits, a count that does not match the length, a prefix
 * byte above 15 (or not 0 for the first id), ids not strictly ascending,
 * trailing bytes.  Never reads outside buf.
 */
extern bool progress_record_decode(const char *buf, size_t len,
								   ProgressRecord *rec, const char **error);

#endif							/* INBOX_OUTBOX_PROGRESS_RECORD_H */
