/*-------------------------------------------------------------------------
 *
 * fuzz_ulid.c
 *	  libFuzzer harness for the ULID text parser (src/ulid_text.c).
 *
 * Each input is checked three ways:
 *  - ulid_parse() must agree, verdict and value, with the reference decoder
 *    below, which is written differently on purpose: it looks each byte up
 *    in the alphabet string and accumulates the value in a 16-byte
 *    big-endian number, multiplying by 32 byte by byte, instead of shifting
 *    two 64-bit halves;
 *  - an accepted input must format back to itself in upper case;
 *  - the first 16 bytes, taken as a ULID, must format to 26 digits that
 *    parse back to the same bytes (every 128-bit value is a ULID).
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ulid_text.h"

static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_ulid: %s\n", what);
	abort();
}

/* Digit value of c, either case, or -1. */
static int
reference_digit(unsigned char c)
{
	const char *hit;

	if (c >= 'a' && c <= 'z')
		c = (unsigned char) (c - 'a' + 'A');
	if (c == '\0')
		return -1;
	hit = strchr(alphabet, c);
	return hit == NULL ? -1 : (int) (hit - alphabet);
}

static UlidParseResult
reference_parse(const uint8_t *data, size_t size, unsigned char out[16])
{
	unsigned char acc[16] = {0};

	if (size != 26)
		return ULID_PARSE_BAD_LENGTH;
	for (size_t i = 0; i < size; i++)
	{
		int			digit = reference_digit(data[i]);
		unsigned int carry;

		if (digit < 0)
			return ULID_PARSE_BAD_DIGIT;
		if (i == 0 && digit > 7)
			return ULID_PARSE_TOO_LARGE;

		/* acc = acc * 32 + digit, least significant byte last */
		carry = (unsigned int) digit;
		for (int b = 15; b >= 0; b--)
		{
			unsigned int v = acc[b] * 32u + carry;

			acc[b] = (unsigned char) (v & 0xFF);
			carry = v >> 8;
		}
		if (carry != 0)
			fail("reference decoder overflowed past 128 bits");
	}
	memcpy(out, acc, 16);
	return ULID_PARSE_OK;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char got[16];
	unsigned char want[16];
	UlidParseResult got_result;
	UlidParseResult want_result;
	char		text[ULID_TEXT_DIGITS + 1];

	memset(got, 0xA5, sizeof(got));
	got_result = ulid_parse((const char *) data, size, got);
	want_result = reference_parse(data, size, want);
	if (got_result != want_result)
		fail("verdict differs from the reference decoder");

	if (got_result == ULID_PARSE_OK)
	{
		if (memcmp(got, want, 16) != 0)
			fail("value differs from the reference decoder");
		ulid_format(got, text);
		for (size_t i = 0; i < size; i++)
		{
			unsigned char c = data[i];

			if (c >= 'a' && c <= 'z')
				c = (unsigned char) (c - 'a' + 'A');
			if (text[i] != (char) c)
				fail("accepted text does not format back to itself");
		}
		if (text[ULID_TEXT_DIGITS] != '\0')
			fail("formatted text is not terminated");
	}

	if (size >= 16)
	{
		unsigned char back[16];

		ulid_format(data, text);
		if (strlen(text) != ULID_TEXT_DIGITS || text[0] > '7')
			fail("formatted value has the wrong shape");
		for (int i = 0; i < ULID_TEXT_DIGITS; i++)
		{
			if (strchr(alphabet, text[i]) == NULL)
				fail("formatted value has a byte outside the alphabet");
		}
		if (ulid_parse(text, ULID_TEXT_DIGITS, back) != ULID_PARSE_OK ||
			memcmp(back, data, 16) != 0)
			fail("formatted value does not parse back to itself");
	}
	return 0;
}
