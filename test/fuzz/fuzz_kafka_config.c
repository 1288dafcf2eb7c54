/*-------------------------------------------------------------------------
 *
 * fuzz_kafka_config.c
 *	  libFuzzer harness for the inbox_outbox.kafka_config parser and the
 *	  property classification (src/kafka_config.c).
 *
 * The input, up to its first zero byte, is parsed with a callback that
 * refuses unsafe and reserved properties, as the relay does by default.
 * A small reference parser below, written from the documented rules
 * (kafka_config.h), predicts the entries the callback must see and the
 * error, and the run fails if:
 *  - the callback gets an empty or untrimmed name, a name with '=', a
 *    blank, a control or non-ASCII byte, a value with a separator or
 *    untrimmed, or pointers outside the text;
 *  - the entries or the verdict differ from the reference;
 *  - errbuf differs from the one message the reference expects, or holds
 *    any entry's text (so never a value), or is not terminated, also when
 *    it is too small for the message;
 *  - classification breaks its rules: a name and "topic." plus the name
 *    get the same verdict, and names outside librdkafka's character set
 *    are ordinary.
 * LLVMFuzzerInitialize checks the classification of the listed names once.
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kafka_config.h"

#define MAX_ENTRIES		4096
#define REFUSAL			"Refused by the harness."

typedef struct Entry
{
	const char *name;
	const char *value;
} Entry;

typedef struct Seen
{
	const char *text;			/* the parsed buffer */
	size_t		len;
	int			n;
	Entry		entries[MAX_ENTRIES];
} Seen;

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_kafka_config: %s\n", what);
	abort();
}

static bool
blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static bool
librdkafka_charset(const char *name)
{
	for (const char *p = name; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '.' || *p == '_'))
			return false;
	}
	return true;
}

static void
check_classification(const char *name)
{
	KafkaPropertyClass class = kafka_property_class(name);
	bool		secret = kafka_property_is_secret(name);
	char		prefixed[300];

	if (!librdkafka_charset(name) &&
		(class != KAFKA_PROPERTY_ORDINARY || secret))
		fail("a name outside librdkafka's character set is not ordinary");
	if (strncmp(name, "topic.", 6) != 0 && strlen(name) < 200)
	{
		snprintf(prefixed, sizeof(prefixed), "topic.%s", name);
		if (kafka_property_class(prefixed) != class)
			fail("\"topic.\" changed the class of a name");
		if (kafka_property_is_secret(prefixed) != secret)
			fail("\"topic.\" changed whether a name is secret");
	}
}

/*
 * A debug value is refused exactly when one of its contexts, in any case
 * and with an optional "+" or "-", is "all" or "conf": stated here with
 * strtok_r, independently of the parser's own scan.
 */
static void
check_value(const char *name, const char *value)
{
	bool		expected = false;

	if (strcmp(name, "debug") == 0 || strcmp(name, "topic.debug") == 0)
	{
		char		copy[1024];
		char	   *save = NULL;

		if (strlen(value) >= sizeof(copy))
			return;
		snprintf(copy, sizeof(copy), "%s", value);
		for (char *tok = strtok_r(copy, ", \t\r\n", &save); tok != NULL;
			 tok = strtok_r(NULL, ", \t\r\n", &save))
		{
			if (*tok == '+' || *tok == '-')
				tok++;
			if (strcasecmp(tok, "all") == 0 || strcasecmp(tok, "conf") == 0)
				expected = true;
		}
	}
	if (kafka_property_value_exposes_secrets(name, value) != expected)
		fail("a debug value was judged wrongly");
}

static bool
callback(void *arg, const char *name, const char *value,
		 char *errbuf, size_t errlen)
{
	Seen	   *seen = (Seen *) arg;

	check_value(name, value);
	size_t		nlen = strlen(name);
	size_t		vlen = strlen(value);

	if (name < seen->text || name + nlen > seen->text + seen->len ||
		value < seen->text || value + vlen > seen->text + seen->len)
		fail("callback got a pointer outside the text");
	if (nlen == 0)
		fail("callback got an empty name");
	for (size_t i = 0; i < nlen; i++)
	{
		unsigned char c = (unsigned char) name[i];

		if (c <= ' ' || c >= 0x7F || c == '=')
			fail("callback got a name with a blank, '=' or a non-printable byte");
	}
	if (strpbrk(value, ";\n") != NULL)
		fail("callback got a value with a separator");
	if (vlen > 0 && (blank(value[0]) || blank(value[vlen - 1])))
		fail("callback got an untrimmed value");
	if (seen->n >= MAX_ENTRIES)
		fail("too many entries");
	seen->entries[seen->n].name = name;
	seen->entries[seen->n].value = value;
	seen->n++;

	check_classification(name);
	check_classification(value);

	if (kafka_property_class(name) != KAFKA_PROPERTY_ORDINARY)
	{
		snprintf(errbuf, errlen, "%s", REFUSAL);
		return false;
	}
	return true;
}

/* What the reference parser expects. */
typedef struct Expected
{
	int			n;				/* names and values allocated */
	int			ncallback;		/* entries the callback must see */
	char	   *names[MAX_ENTRIES];
	char	   *values[MAX_ENTRIES];
	bool		ok;
	char		message[256];
	/* the trimmed text of every entry, to look for in errbuf */
	int			npieces;
	char	   *pieces[MAX_ENTRIES];
} Expected;

static char *
trimmed_copy(const char *start, const char *end)
{
	char	   *copy;

	while (start < end && blank(*start))
		start++;
	while (end > start && blank(end[-1]))
		end--;
	copy = malloc(end - start + 1);
	memcpy(copy, start, end - start);
	copy[end - start] = '\0';
	return copy;
}

static void
reference_parse(const char *text, Expected *exp)
{
	bool		multiline = strchr(text, '\n') != NULL;
	int			entry = 0;
	int			line = 1;
	const char *p = text;

	exp->n = 0;
	exp->ncallback = 0;
	exp->npieces = 0;
	exp->ok = true;
	exp->message[0] = '\0';

	for (;;)
	{
		const char *end = p + strcspn(p, ";\n");
		char	   *piece = trimmed_copy(p, end);
		int			piece_line = line;
		char		where[64];
		char	   *eq;
		bool		bad_name = false;

		if (exp->npieces < MAX_ENTRIES)
			exp->pieces[exp->npieces++] = piece;
		else
			fail("too many pieces");

		if (piece[0] != '\0' && piece[0] != '#')
		{
			entry++;
			if (multiline)
				snprintf(where, sizeof(where), "Entry %d (line %d)", entry, piece_line);
			else
				snprintf(where, sizeof(where), "Entry %d", entry);

			eq = strchr(piece, '=');
			if (eq == NULL)
			{
				snprintf(exp->message, sizeof(exp->message),
						 "%s is not written as name=value.", where);
				exp->ok = false;
				return;
			}

			exp->names[exp->n] = trimmed_copy(piece, eq);
			exp->values[exp->n] = trimmed_copy(eq + 1, piece + strlen(piece));
			if (exp->names[exp->n][0] == '\0')
			{
				snprintf(exp->message, sizeof(exp->message),
						 "%s has no name before \"=\".", where);
				exp->ok = false;
				exp->n++;
				return;
			}
			for (const char *c = exp->names[exp->n]; *c; c++)
			{
				if ((unsigned char) *c <= ' ' || (unsigned char) *c >= 0x7F)
					bad_name = true;
			}
			if (bad_name)
			{
				snprintf(exp->message, sizeof(exp->message),
						 "%s has a name with a blank, a control character or a non-ASCII byte in it.",
						 where);
				exp->ok = false;
				exp->n++;
				return;
			}
			exp->n++;
			exp->ncallback++;
			if (kafka_property_class(exp->names[exp->n - 1]) != KAFKA_PROPERTY_ORDINARY)
			{
				snprintf(exp->message, sizeof(exp->message), "%s", REFUSAL);
				exp->ok = false;
				return;
			}
		}
		if (*end == '\0')
			return;
		if (*end == '\n')
			line++;
		p = end + 1;
	}
}

static void
free_expected(Expected *exp, int named)
{
	for (int i = 0; i < named; i++)
	{
		free(exp->names[i]);
		free(exp->values[i]);
	}
	for (int i = 0; i < exp->npieces; i++)
		free(exp->pieces[i]);
}

/* Whether errbuf holds the text of an entry that the message does not. */
static void
check_no_value(const Expected *exp, const char *errbuf)
{
	for (int i = 0; i < exp->npieces; i++)
	{
		const char *eq = strchr(exp->pieces[i], '=');
		const char *value = eq != NULL ? eq + 1 : exp->pieces[i];

		while (blank(*value))
			value++;
		if (strlen(value) >= 4 && strstr(exp->message, value) == NULL &&
			strstr(errbuf, value) != NULL)
			fail("errbuf holds the text of an entry");
	}
}

static Seen seen;
static Expected expected;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const struct
	{
		const char *name;
		KafkaPropertyClass class;
		bool		secret;
	}			known[] = {
		{"sasl.kerberos.kinit.cmd", KAFKA_PROPERTY_UNSAFE, false},
		{"sasl.kerberos.principal", KAFKA_PROPERTY_UNSAFE, false},
		{"sasl.kerberos.keytab", KAFKA_PROPERTY_UNSAFE, false},
		{"plugin.library.paths", KAFKA_PROPERTY_UNSAFE, false},
		{"ssl.engine.location", KAFKA_PROPERTY_UNSAFE, false},
		{"ssl.engine.id", KAFKA_PROPERTY_UNSAFE, false},
		{"ssl.providers", KAFKA_PROPERTY_UNSAFE, false},
		{"ut_handle_ProduceResponse", KAFKA_PROPERTY_UNSAFE, false},
		{"bootstrap.servers", KAFKA_PROPERTY_RESERVED, false},
		{"metadata.broker.list", KAFKA_PROPERTY_RESERVED, false},
		{"enable.idempotence", KAFKA_PROPERTY_RESERVED, false},
		{"acks", KAFKA_PROPERTY_RESERVED, false},
		{"topic.acks", KAFKA_PROPERTY_RESERVED, false},
		{"request.required.acks", KAFKA_PROPERTY_RESERVED, false},
		{"topic.request.required.acks", KAFKA_PROPERTY_RESERVED, false},
		{"enable.gapless.guarantee", KAFKA_PROPERTY_RESERVED, false},
		{"message.timeout.ms", KAFKA_PROPERTY_RESERVED, false},
		{"delivery.timeout.ms", KAFKA_PROPERTY_RESERVED, false},
		{"topic.message.timeout.ms", KAFKA_PROPERTY_RESERVED, false},
		{"partitioner", KAFKA_PROPERTY_RESERVED, false},
		{"topic.partitioner", KAFKA_PROPERTY_RESERVED, false},
		{"log.queue", KAFKA_PROPERTY_RESERVED, false},
		{"transactional.id", KAFKA_PROPERTY_RESERVED, false},
		{"delivery.report.only.error", KAFKA_PROPERTY_RESERVED, false},
		{"internal.termination.signal", KAFKA_PROPERTY_RESERVED, false},
		{"test.mock.num.brokers", KAFKA_PROPERTY_RESERVED, false},
		{"sasl.password", KAFKA_PROPERTY_ORDINARY, true},
		{"sasl.username", KAFKA_PROPERTY_ORDINARY, true},
		{"ssl.key.password", KAFKA_PROPERTY_ORDINARY, true},
		{"ssl.keystore.password", KAFKA_PROPERTY_ORDINARY, true},
		{"ssl.key.pem", KAFKA_PROPERTY_ORDINARY, true},
		{"ssl_key", KAFKA_PROPERTY_ORDINARY, true},
		{"sasl.oauthbearer.client.secret", KAFKA_PROPERTY_ORDINARY, true},
		{"sasl.oauthbearer.config", KAFKA_PROPERTY_ORDINARY, true},
		{"linger.ms", KAFKA_PROPERTY_ORDINARY, false},
		{"queue.buffering.max.ms", KAFKA_PROPERTY_ORDINARY, false},
		{"topic.metadata.propagation.max.ms", KAFKA_PROPERTY_ORDINARY, false},
		{"ssl.ca.location", KAFKA_PROPERTY_ORDINARY, false},
		{"sasl.oauthbearer.method", KAFKA_PROPERTY_ORDINARY, false},
		{"ACKS", KAFKA_PROPERTY_ORDINARY, false},
		{"topic.topic.acks", KAFKA_PROPERTY_ORDINARY, false},
	};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
	{
		if (kafka_property_class(known[i].name) != known[i].class)
		{
			fprintf(stderr, "class of %s\n", known[i].name);
			fail("a listed property has the wrong class");
		}
		if (kafka_property_is_secret(known[i].name) != known[i].secret)
		{
			fprintf(stderr, "secrecy of %s\n", known[i].name);
			fail("a listed property has the wrong secrecy");
		}
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		len = strnlen((const char *) data, size);
	char	   *text = malloc(len + 1);
	char	   *original = malloc(len + 1);
	const size_t errlens[] = {256, 9};

	memcpy(original, data, len);
	original[len] = '\0';
	reference_parse(original, &expected);

	for (size_t k = 0; k < sizeof(errlens) / sizeof(errlens[0]); k++)
	{
		size_t		errlen = errlens[k];
		char	   *errbuf = malloc(errlen);
		bool		ok;

		memcpy(text, original, len + 1);
		memset(errbuf, 'X', errlen);
		seen.text = text;
		seen.len = len;
		seen.n = 0;
		ok = kafka_config_parse(text, callback, &seen, errbuf, errlen);

		if (ok != expected.ok)
			fail("verdict differs from the reference parser");
		if (memchr(errbuf, '\0', errlen) == NULL)
			fail("errbuf is not terminated");
		if (ok && errbuf[0] != '\0')
			fail("errbuf is not empty after success");
		if (!ok)
		{
			if (strncmp(errbuf, expected.message, errlen - 1) != 0 ||
				strlen(errbuf) != (strlen(expected.message) < errlen - 1 ?
								   strlen(expected.message) : errlen - 1))
				fail("errbuf differs from the expected message");
			check_no_value(&expected, errbuf);
		}

		if (seen.n != expected.ncallback)
			fail("the callback saw a different number of entries");
		for (int i = 0; i < seen.n; i++)
		{
			if (strcmp(seen.entries[i].name, expected.names[i]) != 0 ||
				strcmp(seen.entries[i].value, expected.values[i]) != 0)
				fail("an entry differs from the reference parser");
		}
		free(errbuf);
	}

	free_expected(&expected, expected.n);
	free(text);
	free(original);
	return 0;
}
