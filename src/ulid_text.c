/*-------------------------------------------------------------------------
 *
 * ulid_text.c
 *	  Parse and format the Crockford base32 text form of a ULID.
 *
 * 26 digits of five bits carry 130 bits, two more than a ULID has, so the
 * first digit may only be 0-7.  The value is built in two 64-bit halves
 * and written out big-endian byte by byte, which needs no byte-order
 * helpers from PostgreSQL: this file depends on the C library alone, so
 * that test/fuzz can check it in isolation.  The checks run in the order
 * ulid_in has always reported them: length, then each digit from the
 * left, with the range of the first digit checked right after it is read.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>

#include "ulid_text.h"

static const char crockford_digits[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/*
 * Digit value plus one, zero for bytes that are not Crockford base32
 * digits.  Both cases decode; I, L, O and U do not, so that every value
 * has one upper-case spelling.
 */
static const unsigned char crockford_values[256] = {
	['0'] = 1,['1'] = 2,['2'] = 3,['3'] = 4,['4'] = 5,
	['5'] = 6,['6'] = 7,['7'] = 8,['8'] = 9,['9'] = 10,
	['A'] = 11,['B'] = 12,['C'] = 13,['D'] = 14,['E'] = 15,
	['F'] = 16,['G'] = 17,['H'] = 18,['J'] = 19,['K'] = 20,
	['M'] = 21,['N'] = 22,['P'] = 23,['Q'] = 24,['R'] = 25,
	['S'] = 26,['T'] = 27,['V'] = 28,['W'] = 29,['X'] = 30,
	['Y'] = 31,['Z'] = 32,
	['a'] = 11,['b'] = 12,['c'] = 13,['d'] = 14,['e'] = 15,
	['f'] = 16,['g'] = 17,['h'] = 18,['j'] = 19,['k'] = 20,
	['m'] = 21,['n'] = 22,['p'] = 23,['q'] = 24,['r'] = 25,
	['s'] = 26,['t'] = 27,['v'] = 28,['w'] = 29,['x'] = 30,
	['y'] = 31,['z'] = 32,
};

UlidParseResult
ulid_parse(const char *str, size_t len, unsigned char out[ULID_TEXT_BYTES])
{
	uint64_t	hi = 0;
	uint64_t	lo = 0;

	if (len != ULID_TEXT_DIGITS)
		return ULID_PARSE_BAD_LENGTH;

	for (int i = 0; i < ULID_TEXT_DIGITS; i++)
	{
		unsigned int value = crockford_values[(unsigned char) str[i]];

		if (value == 0)
			return ULID_PARSE_BAD_DIGIT;
		value--;
		if (i == 0 && value > 7)
			return ULID_PARSE_TOO_LARGE;

		hi = (hi << 5) | (lo >> 59);
		lo = (lo << 5) | value;
	}

	for (int i = 7; i >= 0; i--)
	{
		out[i] = (unsigned char) (hi & 0xFF);
		out[i + 8] = (unsigned char) (lo & 0xFF);
		hi >>= 8;
		lo >>= 8;
	}
	return ULID_PARSE_OK;
}

/*
 * The 128 bits are shifted out five at a time from the low end; the first
 * digit gets the top three bits.
 */
void
ulid_format(const unsigned char in[ULID_TEXT_BYTES],
			char out[ULID_TEXT_DIGITS + 1])
{
	uint64_t	hi = 0;
	uint64_t	lo = 0;

	for (int i = 0; i < 8; i++)
	{
		hi = (hi << 8) | in[i];
		lo = (lo << 8) | in[i + 8];
	}

	for (int i = ULID_TEXT_DIGITS - 1; i >= 0; i--)
	{
		out[i] = crockford_digits[lo & 0x1F];
		lo = (lo >> 5) | (hi << 59);
		hi >>= 5;
	}
	out[ULID_TEXT_DIGITS] = '\0';
}
