/*-------------------------------------------------------------------------
 *
 * ulid_text.h
 *	  The text form of a ULID: 26 Crockford base32 digits.
 *
 * Only the C library is needed, so that the parser can be fuzzed outside
 * the server (test/fuzz).  The caller turns a failure into an error
 * message of its own; the reasons are an enum so that the messages can be
 * translated where they are reported.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_ULID_TEXT_H
#define INBOX_OUTBOX_ULID_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#define ULID_TEXT_BYTES		16	/* size of the binary value */
#define ULID_TEXT_DIGITS	26	/* digits of the text form */

typedef enum UlidParseResult
{
	ULID_PARSE_OK = 0,
	ULID_PARSE_BAD_LENGTH,		/* not exactly 26 bytes */
	ULID_PARSE_BAD_DIGIT,		/* a byte that is not a Crockford digit */
	ULID_PARSE_TOO_LARGE		/* first digit above 7: more than 128 bits */
} UlidParseResult;

/*
 * Decode len bytes of str (no terminator needed) into out, big-endian.
 * Both cases are accepted; I, L, O and U are not.  out is written only on
 * success.
 */
extern UlidParseResult ulid_parse(const char *str, size_t len,
								  unsigned char out[ULID_TEXT_BYTES]);

/* Encode 16 bytes as 26 upper-case digits plus a terminating NUL. */
extern void ulid_format(const unsigned char in[ULID_TEXT_BYTES],
						char out[ULID_TEXT_DIGITS + 1]);

#endif							/* INBOX_OUTBOX_ULID_TEXT_H */
