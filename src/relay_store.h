/*-------------------------------------------------------------------------
 *
 * relay_store.h
 *	  The relay's side of the database (relay_store.c): the rows of a round,
 *	  how they are read, chosen, deleted and recorded.
 *
 * Only the relay library (inbox_outbox_relay.so) includes this header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_RELAY_STORE_H
#define INBOX_OUTBOX_RELAY_STORE_H

#include "storage/itemptr.h"
#include "utils/palloc.h"

#include "kafka.h"
#include "shared_state.h"
#include "ulid.h"
#include "ulid_text.h"

/* One outbox row of a round, in the round's memory context. */
typedef struct RelayRow
{
	ItemPointerData ctid;		/* where the row was read */
	pg_ulid		id;
	char		id_text[ULID_TEXT_LEN + 1];
	char	   *topic;
	char	   *key;			/* NULL for a null key */
	int			key_len;
	char	   *payload;		/* NULL for a null value (tombstone) */
	int			payload_len;
	KafkaHeader *headers;		/* user headers, then event_id */
	int			nheaders;
	int			headers_len;
	int64		created_ms;		/* Kafka timestamp; 0 lets the producer choose */
	int			attempts;
	bool		oversize;		/* above inbox_outbox.max_message_bytes */
	char	   *unsendable;		/* why the row cannot become a message */
	bool		gone;			/* moved to the dead-letter table */
} RelayRow;

/* How a round's rows were read. */
typedef struct RelayRead
{
	bool		from_start;		/* from the low end of the outbox */
	bool		failed_rows;	/* rows wait for a retry (read from the start) */
	bool		cut;			/* more rows may follow the last one read */
	pg_ulid		last_id;		/* the last row read, if any */
} RelayRead;

/* What recording a round came to, for relay_status. */
typedef struct RelayTally
{
	uint64		published;		/* acknowledged and deleted */
	uint64		failed;			/* failures, recorded or not */
	uint64		dead_lettered;	/* moved to the dead-letter table */
	bool		all_recorded;	/* every failure could be recorded */
	char		last_failure[RELAY_ERROR_LEN];	/* empty if none */
	bool		any_left;		/* rows of the round are still in the outbox */
	pg_ulid		lowest_left;	/* the lowest of their ids */
} RelayTally;

/* exactly-once mode's row in inbox_outbox.relay_progress */
typedef struct RelayProgressRow
{
	bool		exists;
	char	   *transactional_id;
	char	   *topic;
	int64		record_offset;	/* -1: none yet */
} RelayProgressRow;

extern void relay_store_set_role(Oid role);
extern void relay_begin_work(const char *activity);
extern void relay_begin_read(const char *activity, pg_ulid *floor);
extern void relay_end_work(void);

/* Whether a row read is to be left out (see relay_store_fetch()). */
typedef bool (*RelayIdFilter) (const pg_ulid *id);

extern int	relay_store_fetch(MemoryContext cxt, const pg_ulid *from,
							  RelayIdFilter skip, int64 max_bytes,
							  RelayRow **rows_out, int64 *next_retry_ms,
							  RelayRead *read);
extern bool relay_store_prepared_exist(void);
extern bool relay_store_extension_exists(void);
extern TransactionId relay_store_floor_trigger_version(Oid outbox);
extern int	relay_store_choose(RelayRow **rows, int n, bool *isolated);
extern void relay_store_record(RelayRow *rows, const KafkaResult *results,
							   int n, bool isolated, int64 record_offset,
							   MemoryContext cxt, RelayTally *tally);
extern void relay_store_set_batch_limit(int limit);
extern void relay_store_progress_get(MemoryContext cxt, RelayProgressRow *row);
extern void relay_store_progress_set(const char *transactional_id,
									 const char *topic);
extern void relay_store_progress_delete(void);
extern int	relay_store_delete_recorded(const pg_ulid *ids, int n,
										int64 record_offset);
extern int64 relay_row_size(const RelayRow *row);

#endif							/* INBOX_OUTBOX_RELAY_STORE_H */
