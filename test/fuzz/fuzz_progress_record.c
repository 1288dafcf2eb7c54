/*-------------------------------------------------------------------------
 *
 * fuzz_progress_record.c
 *	  libFuzzer harness for the progress record codec
 *	  (src/progress_record.c), built against the server's headers.
 *
 * Each input is used three ways:
 *  - it is decoded as a record.  A refusal must give a message and leave
 *    the record empty.  An accepted record must encode back to exactly the
 *    input, byte for byte: the encoding is canonical, so the decoder may
 *    accept nothing the encoder would not have written;
 *  - it is read as a recipe for an ascending set of ids (below), which is
 *    encoded: the result must stay within the documented bound, decode to
 *    the same header and ids, and stop decoding once a byte is cut off or
 *    added at the end;
 *  - its first 8 bytes, taken as a byte limit, must give a count of ids
 *    from progress_record_max_ids() that fits the limit while one more id
 *    would not (or 1, when not even one fits).
 *
 * The recipe draws ids the way gen_ulid() makes them share prefixes: each
 * step takes one byte c, keeps the first c % 16 bytes of the last id and
 * fills the rest from the following input bytes.  The ids are then sorted
 * and duplicates dropped.
 *
 * progress_record.c is backend code; the few backend functions it calls
 * are provided here: palloc and pfree on malloc, and an error reporter that
 * aborts, since the encoder raises an error only for ids out of order,
 * which this harness never gives it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "progress_record.h"

/* port.h sends these to libpgport, which is not linked in */
#undef fprintf
#undef qsort

#define MAX_RECIPE_IDS	1024

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_progress_record: %s\n", what);
	abort();
}

void *
palloc(Size size)
{
	void	   *p = malloc(size > 0 ? size : 1);

	if (p == NULL)
		fail("out of memory");
	return p;
}

void
pfree(void *pointer)
{
	free(pointer);
}

bool
errstart_cold(int elevel, const char *domain)
{
	fail("the codec raised an error");
	return false;
}

bool
errstart(int elevel, const char *domain)
{
	fail("the codec raised an error");
	return false;
}

int
errmsg_internal(const char *fmt,...)
{
	return 0;
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	abort();
}

static int
compare_ids(const void *a, const void *b)
{
	return ulid_compare((const pg_ulid *) a, (const pg_ulid *) b);
}

static uint64
take_uint64(const uint8_t *data, size_t size, size_t *pos)
{
	uint64		v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | (*pos < size ? data[(*pos)++] : 0);
	return v;
}

/* Decode the input itself; an accepted record must be its own encoding. */
static void
check_decode(const uint8_t *data, size_t size)
{
	ProgressRecord rec;
	const char *error = NULL;
	char	   *again;
	size_t		again_len;

	memset(&rec, 0xA5, sizeof(rec));
	if (!progress_record_decode((const char *) data, size, &rec, &error))
	{
		if (error == NULL || error[0] == '\0')
			fail("a refusal without a message");
		if (rec.ids != NULL || rec.nids != 0)
			fail("a refusal left ids in the record");
		return;
	}
	if (rec.nids < 0 || rec.ids == NULL)
		fail("an accepted record has no id array");

	again = progress_record_encode(&rec, &again_len);
	if (again_len != size || memcmp(again, data, size) != 0)
		fail("an accepted record does not encode back to the same bytes");
	pfree(again);
	pfree(rec.ids);
}

/* Encode the ids the recipe gives, decode them, compare. */
static void
check_round_trip(const uint8_t *data, size_t size)
{
	pg_ulid    *ids = palloc(MAX_RECIPE_IDS * sizeof(pg_ulid));
	pg_ulid		last;
	int			n = 0;
	int			kept = 0;
	size_t		pos = 0;
	ProgressRecord rec;
	ProgressRecord back;
	const char *error;
	char	   *buf;
	size_t		len;
	char	   *edited;

	rec.system_identifier = take_uint64(data, size, &pos);
	rec.database = (Oid) take_uint64(data, size, &pos);
	rec.writer = take_uint64(data, size, &pos);
	rec.round = take_uint64(data, size, &pos);

	memset(&last, 0, sizeof(last));
	while (pos < size && n < MAX_RECIPE_IDS)
	{
		int			keep = data[pos++] % ULID_LEN;

		for (int b = keep; b < ULID_LEN; b++)
			last.data[b] = pos < size ? data[pos++] : 0;
		ids[n++] = last;
	}
	qsort(ids, n, sizeof(pg_ulid), compare_ids);
	for (int i = 0; i < n; i++)
	{
		if (kept == 0 || ulid_compare(&ids[kept - 1], &ids[i]) != 0)
			ids[kept++] = ids[i];
	}
	rec.nids = kept;
	rec.ids = ids;

	buf = progress_record_encode(&rec, &len);
	if (len < PROGRESS_RECORD_HEADER_LEN ||
		len > PROGRESS_RECORD_HEADER_LEN + (size_t) kept * PROGRESS_RECORD_MAX_ID_LEN)
		fail("an encoded record is outside its documented size");

	if (!progress_record_decode(buf, len, &back, &error))
	{
		fprintf(stderr, "fuzz_progress_record: refused: %s\n", error);
		fail("an encoded record does not decode");
	}
	if (back.system_identifier != rec.system_identifier ||
		back.database != rec.database ||
		back.writer != rec.writer ||
		back.round != rec.round ||
		back.nids != rec.nids ||
		memcmp(back.ids, rec.ids, kept * sizeof(pg_ulid)) != 0)
		fail("an encoded record decodes to something else");
	pfree(back.ids);

	/* One byte less, or one more, is no longer a record. */
	if (progress_record_decode(buf, len - 1, &back, &error))
		fail("a record cut short by one byte decodes");
	edited = palloc(len + 1);
	memcpy(edited, buf, len);
	edited[len] = (char) (size > 0 ? data[0] : 0);
	if (progress_record_decode(edited, len + 1, &back, &error))
		fail("a record with a byte added at its end decodes");
	pfree(edited);

	pfree(buf);
	pfree(ids);
}

static void
check_max_ids(const uint8_t *data, size_t size)
{
	size_t		pos = 0;
	int64		max_bytes = (int64) take_uint64(data, size, &pos);
	int64		room = Min(max_bytes, (int64) PROGRESS_RECORD_MAX_BYTES);
	int			n = progress_record_max_ids(max_bytes);

	if (n < 1)
		fail("progress_record_max_ids() gave less than 1");
	if (n > 1 &&
		PROGRESS_RECORD_HEADER_LEN + (int64) n * PROGRESS_RECORD_MAX_ID_LEN > room)
		fail("progress_record_max_ids() allows a record above the limit");
	if (PROGRESS_RECORD_HEADER_LEN + (int64) (n + 1) * PROGRESS_RECORD_MAX_ID_LEN <= room)
		fail("progress_record_max_ids() leaves room for one more id");
}

/* The bound of docs/exactly_once.md, section 3, for any producer limit. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (progress_record_max_ids(PG_INT64_MAX) != 58761)
		fail("progress_record_max_ids() does not give the documented 58,761");
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_decode(data, size);
	check_round_trip(data, size);
	check_max_ids(data, size);
	return 0;
}
