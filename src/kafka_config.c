/*-------------------------------------------------------------------------
 *
 * kafka_config.c
 *	  The syntax of inbox_outbox.kafka_config, and what the extension
 *	  thinks of each librdkafka property.
 *
 * Values may be passwords, so nothing here ever copies a value, or text
 * that may be one, into a message: a syntax error is reported by the
 * entry's number (and line, when the text has several), never by its text.
 * A name with a blank or a non-printable byte is refused the same way,
 * because "sasl.password hunter2=x" would otherwise reach librdkafka as a
 * name, and librdkafka quotes unknown names in its errors.
 *
 * The lists of property names below were made by reading librdkafka
 * 2.0.2's property table (src/rdkafka_conf.c, CONFIGURATION.md).  Three
 * things about how librdkafka looks a name up matter here:
 *  - names are compared exactly (strcmp), so no case folding is needed;
 *  - some properties have aliases (acks for request.required.acks,
 *    delivery.timeout.ms for message.timeout.ms, bootstrap.servers for
 *    metadata.broker.list), and both spellings are listed;
 *  - a name that is not a global property is tried as a topic property of
 *    the default topic configuration, after one leading "topic." is
 *    stripped, so "topic.acks" sets acks.  Classification therefore also
 *    looks at the name with one "topic." removed, and keeps the stricter
 *    verdict.
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "kafka_config.h"

#define TOPIC_PREFIX	"topic."

/*
 * Properties that make librdkafka run a program or load code into the
 * relay process.
 */
static const char *const unsafe_properties[] = {
	/* a shell command, run at start and at every Kerberos relogin */
	"sasl.kerberos.kinit.cmd",

	/*
	 * Substituted unquoted (the principal) or inside double quotes (the
	 * keytab) into that command's default, so "$(...)" in either runs a
	 * program.
	 */
	"sasl.kerberos.principal",
	"sasl.kerberos.keytab",

	/* shared libraries dlopen()ed while the property is being set */
	"plugin.library.paths",

	/* an OpenSSL engine: a shared library, and the id it is loaded by */
	"ssl.engine.location",
	"ssl.engine.id",

	/* OpenSSL 3 providers are shared libraries; a name may be a path */
	"ssl.providers",

	/*
	 * A hidden unit-test hook that librdkafka accepts as a string and then
	 * calls as a function on every produce response.
	 */
	"ut_handle_ProduceResponse",
};

/*
 * Properties the relay sets itself after the user's configuration, because
 * its delivery guarantees or the process it runs in depend on them (see
 * kafka.c).
 */
static const char *const reserved_properties[] = {
	/* the brokers come from inbox_outbox.brokers */
	"bootstrap.servers",
	"metadata.broker.list",
	/* an in-process mock cluster would swallow every event */
	"test.mock.num.brokers",
	/*
	 * idempotent, gapless, never timed out (at least once), or timed out
	 * with the transaction (exactly once): see kafka.c
	 */
	"enable.idempotence",
	"enable.gapless.guarantee",
	"acks",
	"request.required.acks",
	"message.timeout.ms",
	"delivery.timeout.ms",
	/* keyed events land where the Java client would put them */
	"partitioner",
	/* log callbacks must run on the relay's own thread */
	"log.queue",
	/* the relay acknowledges rows by successful delivery reports */
	"delivery.report.only.error",
	/* librdkafka would install a handler over PostgreSQL's for the signal */
	"internal.termination.signal",
	/*
	 * The relay's identity in exactly-once mode, derived from the server and
	 * the database; an idempotent producer must not have one
	 */
	"transactional.id",
};

/*
 * Properties whose value is a secret.  librdkafka 2.0.2 redacts only some
 * of them in its own debug output (its _RK_SENSITIVE flag: ssl.key.*,
 * ssl.ca.pem, ssl.keystore.password, sasl.username, sasl.password,
 * sasl.oauthbearer.config); this list has those and the OIDC ones it
 * forgets.
 */
static const char *const secret_properties[] = {
	"sasl.username",
	"sasl.password",
	"sasl.oauthbearer.config",
	"sasl.oauthbearer.client.secret",
	/* may carry a token or key */
	"sasl.oauthbearer.extensions",
	/* may carry credentials as user:password@ or in its query */
	"sasl.oauthbearer.token.endpoint.url",
	"ssl.key.location",
	"ssl.key.password",
	"ssl.key.pem",
	"ssl_key",
	"ssl.keystore.password",
	"ssl.ca.pem",
};

#define lengthof(array) (sizeof(array) / sizeof((array)[0]))

static bool
in_list(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		if (strcmp(name, list[i]) == 0)
			return true;
	}
	return false;
}

static KafkaPropertyClass
class_of(const char *name)
{
	if (in_list(name, unsafe_properties, lengthof(unsafe_properties)))
		return KAFKA_PROPERTY_UNSAFE;
	if (in_list(name, reserved_properties, lengthof(reserved_properties)))
		return KAFKA_PROPERTY_RESERVED;
	return KAFKA_PROPERTY_ORDINARY;
}

/*
 * The stricter of the verdicts on the name and on the name without one
 * "topic." prefix.  A reserved name cannot be made merely unsafe by the
 * prefix: reserved wins over unsafe, since allow_unsafe_kafka_properties
 * must not open a way around it.
 */
KafkaPropertyClass
kafka_property_class(const char *name)
{
	KafkaPropertyClass class = class_of(name);

	if (strncmp(name, TOPIC_PREFIX, strlen(TOPIC_PREFIX)) == 0)
	{
		KafkaPropertyClass stripped = class_of(name + strlen(TOPIC_PREFIX));

		if (stripped == KAFKA_PROPERTY_RESERVED ||
			(stripped == KAFKA_PROPERTY_UNSAFE &&
			 class == KAFKA_PROPERTY_ORDINARY))
			class = stripped;
	}
	return class;
}

bool
kafka_property_is_secret(const char *name)
{
	if (in_list(name, secret_properties, lengthof(secret_properties)))
		return true;
	if (strncmp(name, TOPIC_PREFIX, strlen(TOPIC_PREFIX)) == 0)
		return in_list(name + strlen(TOPIC_PREFIX), secret_properties,
					   lengthof(secret_properties));
	return false;
}

/*
 * librdkafka's debug contexts "conf" and "all" log every property when the
 * producer is made, hiding only what librdkafka itself deems sensitive,
 * which misses some secrets (sasl.oauthbearer.client.secret in 2.0.2).
 * Other contexts log no configuration values.  librdkafka reads the list
 * case-insensitively, separated by commas and blanks, and allows a "+" or
 * "-" before a name; so does this.
 */
bool
kafka_property_value_exposes_secrets(const char *name, const char *value)
{
	const char *separators = ", \t\r\n";
	const char *p = value;

	if (strcmp(name, "debug") != 0 &&
		strcmp(name, TOPIC_PREFIX "debug") != 0)
		return false;
	while (*p != '\0')
	{
		size_t		len;

		p += strspn(p, separators);
		if (*p == '+' || *p == '-')
			p++;
		len = strcspn(p, separators);
		if ((len == 3 && strncasecmp(p, "all", 3) == 0) ||
			(len == 4 && strncasecmp(p, "conf", 4) == 0))
			return true;
		p += len;
	}
	return false;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static bool
is_separator(char c)
{
	return c == ';' || c == '\n';
}

/* Trim blanks from both ends of the NUL-terminated string at s. */
static char *
trim(char *s)
{
	size_t		len;

	while (is_blank(*s))
		s++;
	len = strlen(s);
	while (len > 0 && is_blank(s[len - 1]))
		s[--len] = '\0';
	return s;
}

/* Printable ASCII other than blanks; '=' cannot occur, it ends the name. */
static bool
valid_name(const char *name)
{
	for (const char *p = name; *p != '\0'; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c <= ' ' || c >= 0x7F)
			return false;
	}
	return true;
}

/*
 * Where the entry is, for a message: its number among the entries that are
 * neither blank nor comments (the count a check hook sees through its
 * callback), and its line when the text has more than one.
 */
static void
describe_entry(char *buf, size_t len, int entry, int line, bool multiline)
{
	if (multiline)
		snprintf(buf, len, "Entry %d (line %d)", entry, line);
	else
		snprintf(buf, len, "Entry %d", entry);
}

bool
kafka_config_parse(char *text, KafkaConfigEntryFn fn, void *arg,
				   char *errbuf, size_t errlen)
{
	bool		multiline = strchr(text, '\n') != NULL;
	int			entry = 0;
	int			line = 1;
	char	   *p = text;

	if (errlen > 0)
		errbuf[0] = '\0';

	while (*p != '\0')
	{
		char	   *item = p;
		char	   *end = p;
		int			item_line = line;
		char		where[64];
		char	   *eq;
		char	   *name;
		char	   *value;

		/* cut the entry off at its separator, and step past that */
		while (*end != '\0' && !is_separator(*end))
			end++;
		if (*end == '\n')
			line++;
		p = (*end == '\0') ? end : end + 1;
		*end = '\0';

		item = trim(item);
		if (*item == '\0' || *item == '#')
			continue;

		entry++;
		describe_entry(where, sizeof(where), entry, item_line, multiline);

		eq = strchr(item, '=');
		if (eq == NULL)
		{
			snprintf(errbuf, errlen, "%s is not written as name=value.", where);
			return false;
		}
		*eq = '\0';
		name = trim(item);
		value = trim(eq + 1);

		if (*name == '\0')
		{
			snprintf(errbuf, errlen, "%s has no name before \"=\".", where);
			return false;
		}
		if (!valid_name(name))
		{
			snprintf(errbuf, errlen,
					 "%s has a name with a blank, a control character or a non-ASCII byte in it.",
					 where);
			return false;
		}

		if (!fn(arg, name, value, errbuf, errlen))
			return false;
	}
	return true;
}
