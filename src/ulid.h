/*-------------------------------------------------------------------------
 *
 * ulid.h
 *	  The ulid type: 16 bytes with the layout of uuid, text in Crockford
 *	  base32, generated in strictly increasing order.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_ULID_H
#define INBOX_OUTBOX_ULID_H

#include "fmgr.h"
#include "storage/spin.h"

#define ULID_LEN			16	/* bytes */
#define ULID_TIME_LEN		6	/* big-endian milliseconds since 1970 */
#define ULID_RANDOM_LEN		10
#define ULID_TEXT_LEN		26

/* Same size and alignment as pg_uuid_t, so the two cast without a function. */
typedef struct pg_ulid
{
	unsigned char data[ULID_LEN];
} pg_ulid;

#define DatumGetUlidP(X)	((pg_ulid *) DatumGetPointer(X))
#define UlidPGetDatum(X)	PointerGetDatum(X)
#define PG_GETARG_ULID_P(n) DatumGetUlidP(PG_GETARG_DATUM(n))
#define PG_RETURN_ULID_P(x) return UlidPGetDatum(x)

/*
 * Shared generator state, kept in the extension's shared memory when the
 * library is preloaded (see shared_state.c).
 */
typedef struct UlidGeneratorState
{
	slock_t		mutex;
	pg_ulid		last;			/* last value issued by any backend */
} UlidGeneratorState;

/*
 * Hooks that only the test module test/ulid_clock sets, through the
 * rendezvous variable named below, to pin the clock and the random source.
 * Nothing in a production installation can reach them.
 */
#define ULID_TEST_HOOKS_RENDEZVOUS "inbox_outbox_ulid_test_hooks"

typedef struct UlidTestHooks
{
	uint64		(*now_ms) (void);
	void		(*fill_random) (unsigned char *buf, size_t len);
} UlidTestHooks;

/* ulids compare as their bytes do, as uuids do */
static inline int
ulid_compare(const pg_ulid *a, const pg_ulid *b)
{
	return memcmp(a->data, b->data, ULID_LEN);
}

extern void ulid_init(void);
extern void ulid_generator_shmem_init(UlidGeneratorState *state, bool found);
extern void ulid_generate(pg_ulid *result);
extern void ulid_to_text(const pg_ulid *ulid, char *buf);
extern void ulid_from_cstring(const char *str, pg_ulid *result);

#endif							/* INBOX_OUTBOX_ULID_H */
