/*-------------------------------------------------------------------------
 *
 * kafka_headers.c
 *	  Kafka message headers from the text of an outbox row's headers.
 *
 * The relay reads headers::text and turns it into headers here, with
 * PostgreSQL's own JSON lexer from src/common, so that the same code runs
 * in the relay and, outside the server, under a fuzzer (test/fuzz).
 *
 * It drives the lexer (json_lex) with a loop of its own instead of handing
 * a JsonSemAction to pg_parse_json: the only document accepted is a flat
 * object of strings, which a loop states exactly, and in PostgreSQL 15
 * pg_parse_json recurses without a stack check outside the backend and
 * leaks the names and scalars it copies for the callbacks when it meets a
 * syntax error, which outside a memory context is a real leak.  Copying
 * from the lexer's de-escaped buffer also keeps each string's exact length.
 *
 * outbox_publish and the table's CHECK constraint already refuse what is
 * refused here, so a refusal means a row written around them, or text that
 * did not come from jsonb; the relay treats it as a poison row.  Duplicate
 * names are refused because jsonb would have kept only the last one, and
 * a name with a zero byte because librdkafka takes names as C strings.
 * jsonb's text form never has either.
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include <limits.h>

#include "common/jsonapi.h"
#include "lib/stringinfo.h"

#include "kafka_headers.h"

typedef struct HeaderList
{
	KafkaHeader *items;
	int			n;
	int			max;
} HeaderList;

/* What a lexer error means, in words. */
static const char *
lexer_problem(JsonParseErrorType err)
{
	switch (err)
	{
		case JSON_ESCAPING_INVALID:
			return "an invalid escape sequence";
		case JSON_ESCAPING_REQUIRED:
			return "an unescaped control character in a string";
		case JSON_UNICODE_CODE_POINT_ZERO:
			return "\\u0000 in a string";
		case JSON_UNICODE_ESCAPE_FORMAT:
			return "a malformed \\u escape";
		case JSON_UNICODE_HIGH_ESCAPE:
			return "a \\u escape for a character the encoding lacks";
		case JSON_UNICODE_HIGH_SURROGATE:
		case JSON_UNICODE_LOW_SURROGATE:
			return "an unpaired surrogate in a \\u escape";
		default:
			return "an invalid token";
	}
}

/* A copy of the string token the lexer has just read. */
static char *
copy_string(JsonLexContext *lex, size_t *len)
{
	char	   *copy = palloc(lex->strval->len + 1);

	memcpy(copy, lex->strval->data, lex->strval->len);
	copy[lex->strval->len] = '\0';
	*len = lex->strval->len;
	return copy;
}

/* Append an entry with the name just read, keeping room for one more. */
static KafkaHeader *
add_header(HeaderList *list, JsonLexContext *lex, size_t *name_len)
{
	KafkaHeader *header;

	if (list->n + 2 > list->max)
	{
		list->max = list->max == 0 ? 8 : list->max * 2;
		if (list->items == NULL)
			list->items = palloc(sizeof(KafkaHeader) * list->max);
		else
			list->items = repalloc(list->items, sizeof(KafkaHeader) * list->max);
	}
	header = &list->items[list->n++];
	header->name = copy_string(lex, name_len);
	header->value = NULL;
	header->value_len = 0;
	return header;
}

/* Compare names; they hold no zero byte, so strcmp sees all of each. */
static int
compare_names(const void *a, const void *b)
{
	return strcmp((*(KafkaHeader *const *) a)->name,
				  (*(KafkaHeader *const *) b)->name);
}

/* A name that occurs twice, or NULL. */
static const char *
duplicate_name(HeaderList *list)
{
	KafkaHeader **sorted;
	const char *result = NULL;

	if (list->n < 2)
		return NULL;
	sorted = palloc(sizeof(KafkaHeader *) * list->n);
	for (int i = 0; i < list->n; i++)
		sorted[i] = &list->items[i];
	qsort(sorted, list->n, sizeof(KafkaHeader *), compare_names);
	for (int i = 1; i < list->n && result == NULL; i++)
	{
		if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
			result = sorted[i]->name;
	}
	pfree(sorted);
	return result;
}

/* Where the current token starts, counting from 1; the end if none. */
static int
token_position(JsonLexContext *lex)
{
	if (lex->token_start == NULL)
		return lex->input_length + 1;
	return (int) (lex->token_start - lex->input) + 1;
}

/* Read the next token; false after writing the lexer's reason. */
static bool
next_token(JsonLexContext *lex, char *errbuf, size_t errlen)
{
	JsonParseErrorType err = json_lex(lex);

	if (err == JSON_SUCCESS)
		return true;
	snprintf(errbuf, errlen, "The headers are not valid JSON: %s at byte %d.",
			 lexer_problem(err), token_position(lex));
	return false;
}

/* The current token is not what the grammar allows here. */
static bool
unexpected_token(JsonLexContext *lex, char *errbuf, size_t errlen)
{
	if (lex->token_type == JSON_TOKEN_END)
		snprintf(errbuf, errlen, "The headers are not valid JSON: the text ends too early.");
	else
		snprintf(errbuf, errlen,
				 "The headers are not valid JSON: unexpected token at byte %d.",
				 token_position(lex));
	return false;
}

/*
 * Read the object into list: '{' [string ':' string {',' string ':'
 * string}] '}', then the end of the text.  Returns false after writing the
 * reason into errbuf.
 */
static bool
parse_headers(JsonLexContext *lex, HeaderList *list,
			  char *errbuf, size_t errlen)
{
	if (!next_token(lex, errbuf, errlen))
		return false;
	if (lex->token_type != JSON_TOKEN_OBJECT_START)
	{
		snprintf(errbuf, errlen, "The headers are not a JSON object.");
		return false;
	}

	if (!next_token(lex, errbuf, errlen))
		return false;
	if (lex->token_type != JSON_TOKEN_OBJECT_END)
	{
		for (;;)
		{
			KafkaHeader *header;
			size_t		name_len;

			if (lex->token_type != JSON_TOKEN_STRING)
				return unexpected_token(lex, errbuf, errlen);
			header = add_header(list, lex, &name_len);
			if (memchr(header->name, '\0', name_len) != NULL)
			{
				snprintf(errbuf, errlen, "A header name contains a zero byte.");
				return false;
			}
			if (strcmp(header->name, KAFKA_EVENT_ID_HEADER) == 0)
			{
				snprintf(errbuf, errlen,
						 "The header name \"%s\" is reserved for the relay.",
						 KAFKA_EVENT_ID_HEADER);
				return false;
			}

			if (!next_token(lex, errbuf, errlen))
				return false;
			if (lex->token_type != JSON_TOKEN_COLON)
				return unexpected_token(lex, errbuf, errlen);

			if (!next_token(lex, errbuf, errlen))
				return false;
			switch (lex->token_type)
			{
				case JSON_TOKEN_STRING:
					header->value = copy_string(lex, &header->value_len);
					break;
				case JSON_TOKEN_OBJECT_START:
				case JSON_TOKEN_ARRAY_START:
				case JSON_TOKEN_NUMBER:
				case JSON_TOKEN_TRUE:
				case JSON_TOKEN_FALSE:
				case JSON_TOKEN_NULL:
					snprintf(errbuf, errlen,
							 "The value of header \"%s\" is not a JSON string.",
							 header->name);
					return false;
				default:
					return unexpected_token(lex, errbuf, errlen);
			}

			if (!next_token(lex, errbuf, errlen))
				return false;
			if (lex->token_type == JSON_TOKEN_OBJECT_END)
				break;
			if (lex->token_type != JSON_TOKEN_COMMA)
				return unexpected_token(lex, errbuf, errlen);
			if (!next_token(lex, errbuf, errlen))
				return false;
		}
	}

	if (!next_token(lex, errbuf, errlen))
		return false;
	if (lex->token_type != JSON_TOKEN_END)
		return unexpected_token(lex, errbuf, errlen);
	return true;
}

bool
kafka_headers_from_json(const char *json, size_t len, int encoding,
						KafkaHeader **headers, int *nheaders, size_t *bytes,
						char *errbuf, size_t errlen)
{
	JsonLexContext *lex;
	HeaderList	list = {NULL, 0, 0};
	const char *duplicate;
	bool		ok;

	*headers = NULL;
	*nheaders = 0;
	*bytes = 0;
	if (errlen > 0)
		errbuf[0] = '\0';

	/* the lexer counts in int */
	if (len > INT_MAX)
	{
		snprintf(errbuf, errlen, "The headers are too large.");
		return false;
	}

#if PG_VERSION_NUM >= 170000
	lex = makeJsonLexContextCstringLen(NULL, json, len, encoding, true);
	ok = parse_headers(lex, &list, errbuf, errlen);
	freeJsonLexContext(lex);
#else
	/* the lexer only reads the input, despite the pointer's type */
	lex = makeJsonLexContextCstringLen(unconstify(char *, json), (int) len,
									   encoding, true);
	ok = parse_headers(lex, &list, errbuf, errlen);
	pfree(lex->strval->data);
	pfree(lex->strval);
	pfree(lex);
#endif

	if (ok && (duplicate = duplicate_name(&list)) != NULL)
	{
		snprintf(errbuf, errlen, "The header name \"%s\" occurs twice.",
				 duplicate);
		ok = false;
	}
	if (!ok)
	{
		kafka_headers_free(list.items, list.n);
		return false;
	}

	for (int i = 0; i < list.n; i++)
		*bytes += strlen(list.items[i].name) + list.items[i].value_len;
	if (list.items == NULL)
		list.items = palloc(sizeof(KafkaHeader));
	*headers = list.items;
	*nheaders = list.n;
	return true;
}

void
kafka_headers_free(KafkaHeader *headers, int nheaders)
{
	if (headers == NULL)
		return;
	for (int i = 0; i < nheaders; i++)
	{
		pfree(unconstify(char *, headers[i].name));
		if (headers[i].value != NULL)
			pfree(unconstify(char *, headers[i].value));
	}
	pfree(headers);
}
