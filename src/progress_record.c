/*-------------------------------------------------------------------------
 *
 * progress_record.c
 *	  Encode and decode the progress record of exactly-once mode: the exact
 *	  outbox ids of one Kafka transaction (docs/exactly_once.md, section 3).
 *
 * After a header of fixed size, each id is written as one byte s, the
 * number of leading bytes it shares with the id before it (0 for the
 * first), followed by its 16 - s remaining bytes.  The ids of a backlog
 * drawn within one millisecond then cost two bytes each, and no id costs
 * more than 17, which is what progress_record_max_ids() counts on.
 *
 * The encoding is canonical: s is always the full length of the shared
 * prefix, so a set of ids has exactly one record.  Since the ids ascend
 * strictly, two neighbours never share all 16 bytes and the byte right
 * after the shared prefix is larger in the later id; the decoder checks
 * that one byte, which proves both that s is exact and that the ids
 * ascend.  It refuses everything else it was not written by the encoder to
 * read, and checks every length before it reads, because a record comes
 * from a Kafka topic that anyone allowed to produce to it can write.
 *
 * Nothing here touches librdkafka or SPI, and the only backend functions
 * called are palloc, pfree and elog, so that test/fuzz can compile this
 * file into a harness of its own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "progress_record.h"

#define PROGRESS_RECORD_MAGIC	"IOXP"
#define PROGRESS_RECORD_VERSION	1

/* A record's cursor: reads never pass end. */
typedef struct RecordReader
{
	const unsigned char *pos;
	const unsigned char *end;
} RecordReader;

static unsigned char *
put_uint32(unsigned char *p, uint32 v)
{
	for (int i = 3; i >= 0; i--)
	{
		p[i] = (unsigned char) (v & 0xFF);
		v >>= 8;
	}
	return p + 4;
}

static unsigned char *
put_uint64(unsigned char *p, uint64 v)
{
	for (int i = 7; i >= 0; i--)
	{
		p[i] = (unsigned char) (v & 0xFF);
		v >>= 8;
	}
	return p + 8;
}

static bool
get_bytes(RecordReader *r, void *out, size_t n)
{
	if ((size_t) (r->end - r->pos) < n)
		return false;
	memcpy(out, r->pos, n);
	r->pos += n;
	return true;
}

/* The header's fields are read only after its length was checked. */
static uint64
header_uint64(RecordReader *r)
{
	uint64		v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | *r->pos++;
	return v;
}

static uint32
header_uint32(RecordReader *r)
{
	uint32		v = 0;

	for (int i = 0; i < 4; i++)
		v = (v << 8) | *r->pos++;
	return v;
}

/* Leading bytes that a and b have in common, 0 to ULID_LEN. */
static int
shared_prefix(const pg_ulid *a, const pg_ulid *b)
{
	int			s = 0;

	while (s < ULID_LEN && a->data[s] == b->data[s])
		s++;
	return s;
}

int
progress_record_max_ids(int64 max_bytes)
{
	int64		room = Min(max_bytes, (int64) PROGRESS_RECORD_MAX_BYTES);

	/* compared before subtracting, which could overflow */
	if (room < PROGRESS_RECORD_HEADER_LEN + PROGRESS_RECORD_MAX_ID_LEN)
		return 1;
	return (int) ((room - PROGRESS_RECORD_HEADER_LEN) / PROGRESS_RECORD_MAX_ID_LEN);
}

char *
progress_record_encode(const ProgressRecord *rec, size_t *len)
{
	size_t		size = PROGRESS_RECORD_HEADER_LEN;
	unsigned char *buf;
	unsigned char *p;

	if (rec->nids < 0)
		elog(ERROR, "progress record with %d ids", rec->nids);

	/* Size it exactly first; this is also where the order is checked. */
	for (int i = 0; i < rec->nids; i++)
	{
		int			s = 0;

		if (i > 0)
		{
			if (ulid_compare(&rec->ids[i - 1], &rec->ids[i]) >= 0)
				elog(ERROR, "progress record ids are not strictly ascending at index %d", i);
			s = shared_prefix(&rec->ids[i - 1], &rec->ids[i]);
		}
		size += 1 + ULID_LEN - s;
	}

	buf = palloc(size);
	memcpy(buf, PROGRESS_RECORD_MAGIC, 4);
	p = buf + 4;
	*p++ = PROGRESS_RECORD_VERSION;
	*p++ = 0;					/* flags */
	p = put_uint64(p, rec->system_identifier);
	p = put_uint32(p, (uint32) rec->database);
	p = put_uint64(p, rec->writer);
	p = put_uint64(p, rec->round);
	p = put_uint32(p, (uint32) rec->nids);

	for (int i = 0; i < rec->nids; i++)
	{
		int			s = i == 0 ? 0 : shared_prefix(&rec->ids[i - 1], &rec->ids[i]);

		*p++ = (unsigned char) s;
		memcpy(p, rec->ids[i].data + s, ULID_LEN - s);
		p += ULID_LEN - s;
	}
	Assert((size_t) (p - buf) == size);

	*len = size;
	return (char *) buf;
}

/* The checks of progress_record_decode(), which frees nothing itself. */
static const char *
decode_into(const char *buf, size_t len, ProgressRecord *rec)
{
	RecordReader r;
	uint32		n;
	size_t		left;

	if (len < PROGRESS_RECORD_HEADER_LEN)
		return "record is shorter than its header";
	r.pos = (const unsigned char *) buf;
	r.end = r.pos + len;

	if (memcmp(r.pos, PROGRESS_RECORD_MAGIC, 4) != 0)
		return "record does not start with \"" PROGRESS_RECORD_MAGIC "\"";
	r.pos += 4;
	if (*r.pos++ != PROGRESS_RECORD_VERSION)
		return "record has an unknown format version";
	if (*r.pos++ != 0)
		return "record has unknown flag bits";
	rec->system_identifier = header_uint64(&r);
	rec->database = (Oid) header_uint32(&r);
	rec->writer = header_uint64(&r);
	rec->round = header_uint64(&r);
	n = header_uint32(&r);

	/*
	 * The first id takes 17 bytes and every later one at least 2: refuse a
	 * count that the bytes left cannot hold before allocating for it.
	 */
	left = (size_t) (r.end - r.pos);
	if (n > 0 && (left < 1 + ULID_LEN || (left - 1 - ULID_LEN) / 2 < n - 1))
		return "record is too short for its number of ids";
	if (n > MaxAllocSize / sizeof(pg_ulid))
		return "record has too many ids";

	rec->ids = palloc(Max(n, 1) * sizeof(pg_ulid));
	rec->nids = (int) n;

	for (uint32 i = 0; i < n; i++)
	{
		unsigned char s;
		pg_ulid    *id = &rec->ids[i];

		if (!get_bytes(&r, &s, 1))
			return "record ends inside an id";
		if (s >= ULID_LEN)
			return "record has a shared-prefix length above 15";
		if (i == 0 && s != 0)
			return "record's first id has a nonzero shared-prefix length";
		if (s > 0)
			memcpy(id->data, rec->ids[i - 1].data, s);
		if (!get_bytes(&r, id->data + s, ULID_LEN - s))
			return "record ends inside an id";
		if (i > 0)
		{
			unsigned char before = rec->ids[i - 1].data[s];

			if (id->data[s] == before)
				return "record has a shared-prefix length below what the id shares with the one before it";
			if (id->data[s] < before)
				return "record's ids are not in ascending order";
		}
	}

	if (r.pos != r.end)
		return "record has bytes after its last id";
	return NULL;
}

bool
progress_record_decode(const char *buf, size_t len,
					   ProgressRecord *rec, const char **error)
{
	memset(rec, 0, sizeof(*rec));
	*error = decode_into(buf, len, rec);
	if (*error == NULL)
		return true;

	if (rec->ids != NULL)
		pfree(rec->ids);
	memset(rec, 0, sizeof(*rec));
	return false;
}
