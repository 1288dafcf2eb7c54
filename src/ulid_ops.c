/*-------------------------------------------------------------------------
 *
 * ulid_ops.c
 *	  Comparisons of a ulid with the text form of one, and the support
 *	  functions of min(ulid) and max(ulid).
 *
 * Drivers bind an id as varchar (PgJDBC's setString, SQLAlchemy's String)
 * or as uuid.  The uuid operators need no code: the bytes are the same, and
 * the install script binds them to PostgreSQL's uuid functions.  The text
 * operators parse the text side as ulid_in does, and compare bytes, so
 * '01gv…' and '01GV…' both equal the same ulid; a text that is no ULID fails
 * as ulid_in does.  All of them sit in the ulid btree and hash operator
 * families, so that an index on a ulid column serves "id = $1" whatever the
 * driver bound.  The hash of a text in the hash family is the hash of the
 * ulid it spells, so that a hash join or hash partition pruning agrees with
 * equality.  See docs/design.md, "Parameters as drivers send them".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "pg_compat.h"
#include "ulid.h"

PG_FUNCTION_INFO_V1(ulid_text_cmp);
PG_FUNCTION_INFO_V1(text_ulid_cmp);
PG_FUNCTION_INFO_V1(ulid_text_text_cmp);
PG_FUNCTION_INFO_V1(ulid_text_eq);
PG_FUNCTION_INFO_V1(ulid_text_ne);
PG_FUNCTION_INFO_V1(ulid_text_lt);
PG_FUNCTION_INFO_V1(ulid_text_le);
PG_FUNCTION_INFO_V1(ulid_text_gt);
PG_FUNCTION_INFO_V1(ulid_text_ge);
PG_FUNCTION_INFO_V1(text_ulid_eq);
PG_FUNCTION_INFO_V1(text_ulid_ne);
PG_FUNCTION_INFO_V1(text_ulid_lt);
PG_FUNCTION_INFO_V1(text_ulid_le);
PG_FUNCTION_INFO_V1(text_ulid_gt);
PG_FUNCTION_INFO_V1(text_ulid_ge);
PG_FUNCTION_INFO_V1(ulid_text_hash);
PG_FUNCTION_INFO_V1(ulid_text_hash_extended);
PG_FUNCTION_INFO_V1(ulid_smaller);
PG_FUNCTION_INFO_V1(ulid_larger);

static void
text_to_ulid(text *txt, pg_ulid *result)
{
	ulid_from_cstring(text_to_cstring(txt), result);
}

/* ulid compared with the ULID that a text spells, as memcmp's sign */
static int
compare_ulid_text(const pg_ulid *a, text *b)
{
	pg_ulid		parsed;

	text_to_ulid(b, &parsed);
	return ulid_compare(a, &parsed);
}

Datum
ulid_text_cmp(PG_FUNCTION_ARGS)
{
	int			c = compare_ulid_text(PG_GETARG_ULID_P(0), PG_GETARG_TEXT_PP(1));

	PG_RETURN_INT32(c < 0 ? -1 : (c > 0 ? 1 : 0));
}

Datum
text_ulid_cmp(PG_FUNCTION_ARGS)
{
	int			c = compare_ulid_text(PG_GETARG_ULID_P(1), PG_GETARG_TEXT_PP(0));

	PG_RETURN_INT32(c < 0 ? 1 : (c > 0 ? -1 : 0));
}

/*
 * Two texts compared as the ULIDs they spell.  There is no operator for it:
 * a btree index scan for "id = ANY ($1)" with a text[] parameter sorts the
 * array's elements with it.
 */
Datum
ulid_text_text_cmp(PG_FUNCTION_ARGS)
{
	pg_ulid		a;
	int			c;

	text_to_ulid(PG_GETARG_TEXT_PP(0), &a);
	c = compare_ulid_text(&a, PG_GETARG_TEXT_PP(1));
	PG_RETURN_INT32(c < 0 ? -1 : (c > 0 ? 1 : 0));
}

/* ulid OP text, and text OP ulid as the commuted comparison */
#define ULID_TEXT_OPERATOR(name, test) \
Datum \
ulid_text_##name(PG_FUNCTION_ARGS) \
{ \
	int			c = compare_ulid_text(PG_GETARG_ULID_P(0), PG_GETARG_TEXT_PP(1)); \
\
	PG_RETURN_BOOL(c test 0); \
} \
\
Datum \
text_ulid_##name(PG_FUNCTION_ARGS) \
{ \
	int			c = -compare_ulid_text(PG_GETARG_ULID_P(1), PG_GETARG_TEXT_PP(0)); \
\
	PG_RETURN_BOOL(c test 0); \
}

ULID_TEXT_OPERATOR(eq, ==)
ULID_TEXT_OPERATOR(ne, !=)
ULID_TEXT_OPERATOR(lt, <)
ULID_TEXT_OPERATOR(le, <=)
ULID_TEXT_OPERATOR(gt, >)
ULID_TEXT_OPERATOR(ge, >=)

/* the same hashes as uuid_hash and uuid_hash_extended of the parsed id */
Datum
ulid_text_hash(PG_FUNCTION_ARGS)
{
	pg_ulid		parsed;

	text_to_ulid(PG_GETARG_TEXT_PP(0), &parsed);
	return hash_any(parsed.data, ULID_LEN);
}

Datum
ulid_text_hash_extended(PG_FUNCTION_ARGS)
{
	pg_ulid		parsed;

	text_to_ulid(PG_GETARG_TEXT_PP(0), &parsed);
	return hash_any_extended(parsed.data, ULID_LEN, PG_GETARG_INT64(1));
}

/* transition functions of min(ulid) and max(ulid), as uuid has none */
Datum
ulid_smaller(PG_FUNCTION_ARGS)
{
	pg_ulid    *a = PG_GETARG_ULID_P(0);
	pg_ulid    *b = PG_GETARG_ULID_P(1);

	PG_RETURN_ULID_P(ulid_compare(a, b) <= 0 ? a : b);
}

Datum
ulid_larger(PG_FUNCTION_ARGS)
{
	pg_ulid    *a = PG_GETARG_ULID_P(0);
	pg_ulid    *b = PG_GETARG_ULID_P(1);

	PG_RETURN_ULID_P(ulid_compare(a, b) >= 0 ? a : b);
}
