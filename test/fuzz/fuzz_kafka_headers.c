/*-------------------------------------------------------------------------
 *
 * fuzz_kafka_headers.c
 *	  libFuzzer harness for kafka_headers_from_json (src/kafka_headers.c),
 *	  built as frontend code against libpgcommon and libpgport.
 *
 * The first byte of an input picks the encoding (odd: UTF8, even:
 * SQL_ASCII, which changes how \u escapes above 0x7F are treated); the rest
 * is the JSON text.  The run fails if:
 *  - the verdict differs from this rule, evaluated with pg_parse_json (the
 *    recursive parser kafka_headers.c does not use): accepted exactly when
 *    the text is valid JSON, its top level is an object, every member's
 *    value is a string, no name is "event_id" and no name occurs twice;
 *  - an accepted input gives other names or values, in another order, than
 *    pg_parse_json reports, or *bytes is not the sum of the names' lengths
 *    and value_len, or a value is not NUL-terminated, or the array has no
 *    room for event_id (the harness writes that entry);
 *  - a refused input leaves outputs set or errbuf empty or unterminated;
 *  - anything leaks (LeakSanitizer) or touches memory it should not.
 *
 * pg_parse_json leaks its copies on a syntax error in frontend code, so the
 * reference first checks validity with no semantic actions, which copy
 * nothing, and runs its callbacks only on valid text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <stdint.h>

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "kafka_headers.h"

#define MAX_INPUT	65536

typedef struct Reference
{
	int			depth;
	bool		flat;			/* an object of strings so far */
	bool		top_is_object;
	int			n;
	int			max;
	char	  **names;
	char	  **values;
	char	   *pending;		/* name whose value comes next */
} Reference;

/* 16 made the callbacks return an error code */
#if PG_VERSION_NUM >= 160000
typedef JsonParseErrorType RefResult;
#define REF_DONE return JSON_SUCCESS
#else
typedef void RefResult;
#define REF_DONE return
#endif

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_kafka_headers: %s\n", what);
	abort();
}

static RefResult
ref_object_start(void *state)
{
	Reference  *ref = (Reference *) state;

	if (ref->depth == 0)
		ref->top_is_object = true;
	else
		ref->flat = false;
	ref->depth++;
	REF_DONE;
}

static RefResult
ref_object_end(void *state)
{
	((Reference *) state)->depth--;
	REF_DONE;
}

static RefResult
ref_array_start(void *state)
{
	Reference  *ref = (Reference *) state;

	ref->flat = false;
	ref->depth++;
	REF_DONE;
}

static RefResult
ref_array_end(void *state)
{
	((Reference *) state)->depth--;
	REF_DONE;
}

/* pg_parse_json hands over fname; it is ours to keep or free. */
static RefResult
ref_field_start(void *state, char *fname, bool isnull)
{
	Reference  *ref = (Reference *) state;

	if (ref->depth != 1)
	{
		pfree(fname);
		REF_DONE;
	}
	/* the previous member's value was an object or an array */
	if (ref->pending != NULL)
	{
		if (ref->flat)
			fail("reference: a name without a value");
		pfree(ref->pending);
	}
	ref->pending = fname;
	REF_DONE;
}

/* Likewise token. */
static RefResult
ref_scalar(void *state, char *token, JsonTokenType type)
{
	Reference  *ref = (Reference *) state;

	if (ref->depth != 1 || type != JSON_TOKEN_STRING)
	{
		ref->flat = false;
		pfree(token);
		if (ref->pending != NULL)
		{
			pfree(ref->pending);
			ref->pending = NULL;
		}
		REF_DONE;
	}
	if (ref->n == ref->max)
	{
		ref->max = ref->max == 0 ? 8 : ref->max * 2;
		ref->names = ref->names == NULL ? palloc(sizeof(char *) * ref->max) :
			repalloc(ref->names, sizeof(char *) * ref->max);
		ref->values = ref->values == NULL ? palloc(sizeof(char *) * ref->max) :
			repalloc(ref->values, sizeof(char *) * ref->max);
	}
	ref->names[ref->n] = ref->pending;
	ref->values[ref->n] = token;
	ref->pending = NULL;
	ref->n++;
	REF_DONE;
}

/* 17 takes the context to fill, or NULL, and frees it itself */
static JsonLexContext *
make_lex(char *json, int len, int encoding)
{
#if PG_VERSION_NUM >= 170000
	return makeJsonLexContextCstringLen(NULL, json, len, encoding, true);
#else
	return makeJsonLexContextCstringLen(json, len, encoding, true);
#endif
}

static void
free_lex(JsonLexContext *lex)
{
#if PG_VERSION_NUM >= 170000
	freeJsonLexContext(lex);
#else
	pfree(lex->strval->data);
	pfree(lex->strval);
	pfree(lex);
#endif
}

/* Whether the rule accepts json; fills ref with the members if valid. */
static bool
reference_accepts(char *json, int len, int encoding, Reference *ref)
{
	JsonLexContext *lex;
	JsonSemAction sem = {0};
	JsonParseErrorType err;

	memset(ref, 0, sizeof(*ref));
	ref->flat = true;

	lex = make_lex(json, len, encoding);
	err = pg_parse_json(lex, &nullSemAction);
	free_lex(lex);
	if (err != JSON_SUCCESS)
		return false;

	sem.semstate = ref;
	sem.object_start = ref_object_start;
	sem.object_end = ref_object_end;
	sem.array_start = ref_array_start;
	sem.array_end = ref_array_end;
	sem.object_field_start = ref_field_start;
	sem.scalar = ref_scalar;
	lex = make_lex(json, len, encoding);
	err = pg_parse_json(lex, &sem);
	free_lex(lex);
	if (err != JSON_SUCCESS)
		fail("reference: valid text failed the second time");

	if (!ref->top_is_object || !ref->flat)
		return false;
	for (int i = 0; i < ref->n; i++)
	{
		if (strcmp(ref->names[i], "event_id") == 0)
			return false;
		for (int j = 0; j < i; j++)
		{
			if (strcmp(ref->names[i], ref->names[j]) == 0)
				return false;
		}
	}
	return true;
}

static void
free_reference(Reference *ref)
{
	for (int i = 0; i < ref->n; i++)
	{
		pfree(ref->names[i]);
		pfree(ref->values[i]);
	}
	if (ref->names != NULL)
	{
		pfree(ref->names);
		pfree(ref->values);
	}
	if (ref->pending != NULL)
		pfree(ref->pending);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int			encoding;
	char	   *json;
	int			len;
	KafkaHeader *headers = (KafkaHeader *) 1;
	int			nheaders = -1;
	size_t		bytes = 1;
	char		errbuf[200];
	bool		ok;
	bool		want;
	Reference	ref;

	if (size < 1 || size > MAX_INPUT)
		return 0;
	encoding = (data[0] & 1) ? PG_UTF8 : PG_SQL_ASCII;
	len = (int) size - 1;

	/* an exact-size copy, so that reading past the end is caught */
	json = malloc(len > 0 ? len : 1);
	memcpy(json, data + 1, len);

	memset(errbuf, 'X', sizeof(errbuf));
	ok = kafka_headers_from_json(json, len, encoding, &headers, &nheaders,
								 &bytes, errbuf, sizeof(errbuf));
	want = reference_accepts(json, len, encoding, &ref);

	if (ok != want)
	{
		fprintf(stderr, "accepted: %d, rule: %d, errbuf: %.*s\n", ok, want,
				(int) sizeof(errbuf), errbuf);
		fail("verdict differs from the rule");
	}

	if (ok)
	{
		size_t		sum = 0;

		if (nheaders != ref.n)
			fail("number of headers differs from the rule");
		for (int i = 0; i < nheaders; i++)
		{
			if (strcmp(headers[i].name, ref.names[i]) != 0)
				fail("a name differs");
			if (headers[i].value_len != strlen(ref.values[i]) ||
				memcmp(headers[i].value, ref.values[i], headers[i].value_len) != 0)
				fail("a value differs");
			if (headers[i].value[headers[i].value_len] != '\0')
				fail("a value is not terminated");
			sum += strlen(headers[i].name) + headers[i].value_len;
		}
		if (sum != bytes)
			fail("bytes is not the sum of the lengths");

		/* the relay's event_id entry */
		headers[nheaders].name = "event_id";
		headers[nheaders].value = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
		headers[nheaders].value_len = 26;
		kafka_headers_free(headers, nheaders);
	}
	else
	{
		if (headers != NULL || nheaders != 0 || bytes != 0)
			fail("a refusal left outputs set");
		if (memchr(errbuf, '\0', sizeof(errbuf)) == NULL || errbuf[0] == '\0')
			fail("a refusal left errbuf empty or unterminated");
	}

	free_reference(&ref);
	free(json);
	return 0;
}
