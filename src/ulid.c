/*-------------------------------------------------------------------------
 *
 * ulid.c
 *	  Text I/O, time functions and generation for the ulid type.
 *
 * A ULID is 128 bits: 48 bits of milliseconds since 1970-01-01 UTC, then 80
 * random bits, stored big-endian in the 16 bytes of a uuid.  Because the
 * bytes compare as unsigned integers in that order, and the Crockford base32
 * alphabet is in ASCII order, byte order, text order and time order agree.
 * Comparison, hashing, sort support and binary I/O are therefore those of
 * uuid, and the install script binds them to PostgreSQL's own functions.
 *
 * gen_ulid() must be strictly increasing across every backend of the server:
 * two transactions that write the same key one after the other can draw
 * their ids in the same millisecond from different backends, and the relay
 * publishes in id order.  When the library is preloaded, the last value
 * issued lives in shared memory under a spinlock.  A call in a new
 * millisecond takes fresh random bits; a call in the same millisecond, or
 * after the clock stepped back, adds one to the last value's random part.
 * Random bytes are drawn before the spinlock is taken, since
 * pg_strong_random() may make a system call.  Without preloading, the same
 * rule applies to a backend-local last value.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "pg_compat.h"
#include "shared_state.h"
#include "ulid.h"
#include "ulid_text.h"

StaticAssertDecl(ULID_LEN == ULID_TEXT_BYTES && ULID_TEXT_LEN == ULID_TEXT_DIGITS,
				 "ulid.h and ulid_text.h disagree on the size of a ULID");

PG_FUNCTION_INFO_V1(ulid_in);
PG_FUNCTION_INFO_V1(ulid_out);
PG_FUNCTION_INFO_V1(gen_ulid);
PG_FUNCTION_INFO_V1(gen_ulid_at);
PG_FUNCTION_INFO_V1(ulid_timestamp);
PG_FUNCTION_INFO_V1(ulid_min);
PG_FUNCTION_INFO_V1(ulid_max);

/* Largest millisecond a ULID can hold: 10889-08-02 05:31:50.655 UTC. */
#define ULID_MAX_MS			((UINT64CONST(1) << 48) - 1)

/* Milliseconds between the Unix epoch and the PostgreSQL epoch. */
#define UNIX_TO_PG_EPOCH_MS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000)

/* Set by the test module only; see ulid.h. */
static UlidTestHooks **test_hooks = NULL;

/* The generator's state when the library is not preloaded. */
static pg_ulid backend_last;

void
ulid_init(void)
{
	test_hooks = (UlidTestHooks **)
		find_rendezvous_variable(ULID_TEST_HOOKS_RENDEZVOUS);
}

void
ulid_generator_shmem_init(UlidGeneratorState *state, bool found)
{
	if (!found)
	{
		SpinLockInit(&state->mutex);
		memset(&state->last, 0, sizeof(state->last));
	}
}

/* 26 upper-case Crockford base32 digits plus a terminating NUL. */
void
ulid_to_text(const pg_ulid *ulid, char *buf)
{
	ulid_format(ulid->data, buf);
}

static void
report_invalid_ulid(const char *str, const char *detail)
{
	ereport(ERROR,
			errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			errmsg("invalid input syntax for type %s: \"%s\"", "ulid", str),
			errdetail_internal("%s", detail));
}

/*
 * Parse the text form of a ULID into result, or fail with the error that
 * ulid_in reports.  The comparisons with text parameters (ulid_ops.c) share
 * it, so that a bad id reads the same wherever it is written.
 */
void
ulid_from_cstring(const char *str, pg_ulid *result)
{
	switch (ulid_parse(str, strlen(str), result->data))
	{
		case ULID_PARSE_OK:
			break;
		case ULID_PARSE_BAD_LENGTH:
			report_invalid_ulid(str, _("A ULID is written as 26 Crockford base32 digits."));
			break;
		case ULID_PARSE_BAD_DIGIT:
			report_invalid_ulid(str, _("A ULID consists of the digits 0-9 and the letters A-Z except I, L, O and U."));
			break;
		case ULID_PARSE_TOO_LARGE:
			report_invalid_ulid(str, _("The largest ULID is 7ZZZZZZZZZZZZZZZZZZZZZZZZZ."));
			break;
	}
}

Datum
ulid_in(PG_FUNCTION_ARGS)
{
	pg_ulid    *result = palloc(sizeof(pg_ulid));

	ulid_from_cstring(PG_GETARG_CSTRING(0), result);
	PG_RETURN_ULID_P(result);
}

Datum
ulid_out(PG_FUNCTION_ARGS)
{
	pg_ulid    *ulid = PG_GETARG_ULID_P(0);
	char	   *buf = palloc(ULID_TEXT_LEN + 1);

	ulid_to_text(ulid, buf);
	PG_RETURN_CSTRING(buf);
}

static uint64
ulid_get_ms(const pg_ulid *ulid)
{
	uint64		ms = 0;

	for (int i = 0; i < ULID_TIME_LEN; i++)
		ms = (ms << 8) | ulid->data[i];
	return ms;
}

static void
ulid_set_ms(pg_ulid *ulid, uint64 ms)
{
	for (int i = ULID_TIME_LEN - 1; i >= 0; i--)
	{
		ulid->data[i] = (unsigned char) (ms & 0xFF);
		ms >>= 8;
	}
}

/*
 * Add one to the random part.  Returns false, leaving the value unchanged in
 * effect (all random bytes wrapped to zero), when it was already all ones.
 */
static bool
ulid_increment(pg_ulid *ulid)
{
	for (int i = ULID_LEN - 1; i >= ULID_TIME_LEN; i--)
	{
		if (++ulid->data[i] != 0)
			return true;
	}
	return false;
}

static uint64
timestamptz_to_ulid_ms(TimestampTz ts)
{
	int64		ms;

	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				errmsg("timestamp out of range for type ulid"),
				errdetail("A ULID holds times from 1970-01-01 00:00:00 UTC to 10889-08-02 05:31:50.655 UTC."));

	/* floor division: a ULID holds the millisecond that contains ts */
	ms = ts / 1000;
	if (ts % 1000 < 0)
		ms--;
	ms += UNIX_TO_PG_EPOCH_MS;

	if (ms < 0 || (uint64) ms > ULID_MAX_MS)
		ereport(ERROR,
				errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				errmsg("timestamp out of range for type ulid"),
				errdetail("A ULID holds times from 1970-01-01 00:00:00 UTC to 10889-08-02 05:31:50.655 UTC."));
	return (uint64) ms;
}

static uint64
current_ms(void)
{
	if (unlikely(*test_hooks != NULL && (*test_hooks)->now_ms != NULL))
		return (*test_hooks)->now_ms();
	return timestamptz_to_ulid_ms(GetCurrentTimestamp());
}

static void
fill_random(unsigned char *buf, size_t len)
{
	if (unlikely(*test_hooks != NULL && (*test_hooks)->fill_random != NULL))
	{
		(*test_hooks)->fill_random(buf, len);
		return;
	}
	if (!pg_strong_random(buf, len))
		ereport(ERROR,
				errcode(ERRCODE_INTERNAL_ERROR),
				errmsg("could not generate random values"));
}

/*
 * Compute the successor of *last for the millisecond now_ms into *next.
 * 'random' holds fresh random bytes, or is NULL if none were drawn; returns
 * false if they are needed but missing.  Sets *overflow when the random part
 * of the last value cannot be incremented any further.
 */
static bool
ulid_successor(const pg_ulid *last, uint64 now_ms,
			   const unsigned char *random, pg_ulid *next, bool *overflow)
{
	*overflow = false;
	if (now_ms > ulid_get_ms(last))
	{
		if (random == NULL)
			return false;
		ulid_set_ms(next, now_ms);
		memcpy(next->data + ULID_TIME_LEN, random, ULID_RANDOM_LEN);
		return true;
	}

	*next = *last;
	*overflow = !ulid_increment(next);
	return true;
}

static void
report_ulid_overflow(void)
{
	ereport(ERROR,
			errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			errmsg("ulid random part overflowed within one millisecond"),
			errdetail("More ULIDs were requested in one millisecond than its 80 random bits can order."),
			errhint("Retry; the next millisecond starts a fresh sequence."));
}

/*
 * Produce the next ULID, strictly greater than every one issued before by
 * this server (when preloaded) or by this backend (otherwise).
 */
void
ulid_generate(pg_ulid *result)
{
	uint64		now_ms = current_ms();
	unsigned char random[ULID_RANDOM_LEN];
	bool		have_random = false;
	bool		overflow;

	if (inbox_outbox_shared == NULL)
	{
		if (!ulid_successor(&backend_last, now_ms, NULL, result, &overflow))
		{
			fill_random(random, sizeof(random));
			(void) ulid_successor(&backend_last, now_ms, random, result, &overflow);
		}
		if (overflow)
			report_ulid_overflow();
		backend_last = *result;
		return;
	}

	for (;;)
	{
		UlidGeneratorState *state = &inbox_outbox_shared->ulid;
		bool		done;

		SpinLockAcquire(&state->mutex);
		done = ulid_successor(&state->last, now_ms,
							  have_random ? random : NULL, result, &overflow);
		if (done && !overflow)
			state->last = *result;
		SpinLockRelease(&state->mutex);

		if (done)
			break;

		/* A new millisecond: draw its random bits outside the lock. */
		fill_random(random, sizeof(random));
		have_random = true;
	}

	if (overflow)
		report_ulid_overflow();
}

Datum
gen_ulid(PG_FUNCTION_ARGS)
{
	pg_ulid    *result = palloc(sizeof(pg_ulid));

	ulid_generate(result);
	PG_RETURN_ULID_P(result);
}

/*
 * gen_ulid(timestamptz): a ULID for the given time with fresh random bits.
 * It does not take part in the server-wide order.
 */
Datum
gen_ulid_at(PG_FUNCTION_ARGS)
{
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(0);
	pg_ulid    *result = palloc(sizeof(pg_ulid));

	ulid_set_ms(result, timestamptz_to_ulid_ms(ts));
	fill_random(result->data + ULID_TIME_LEN, ULID_RANDOM_LEN);
	PG_RETURN_ULID_P(result);
}

Datum
ulid_timestamp(PG_FUNCTION_ARGS)
{
	pg_ulid    *ulid = PG_GETARG_ULID_P(0);
	int64		ms = (int64) ulid_get_ms(ulid);

	PG_RETURN_TIMESTAMPTZ((ms - UNIX_TO_PG_EPOCH_MS) * 1000);
}

static pg_ulid *
ulid_bound(TimestampTz ts, unsigned char fill)
{
	pg_ulid    *result = palloc(sizeof(pg_ulid));

	ulid_set_ms(result, timestamptz_to_ulid_ms(ts));
	memset(result->data + ULID_TIME_LEN, fill, ULID_RANDOM_LEN);
	return result;
}

/* The smallest ULID of the millisecond that contains the given time. */
Datum
ulid_min(PG_FUNCTION_ARGS)
{
	PG_RETURN_ULID_P(ulid_bound(PG_GETARG_TIMESTAMPTZ(0), 0x00));
}

/* The largest ULID of the millisecond that contains the given time. */
Datum
ulid_max(PG_FUNCTION_ARGS)
{
	PG_RETURN_ULID_P(ulid_bound(PG_GETARG_TIMESTAMPTZ(0), 0xFF));
}
