/*-------------------------------------------------------------------------
 *
 * guc_check.c
 *	  Check hooks of inbox_outbox's configuration parameters.
 *
 * A bad broker list, producer property or database list used to be
 * accepted by a reload and found out only by the relays, which then
 * restarted every few seconds, or by the launcher, which treated an
 * unreadable database list as "every database".  These hooks refuse such a
 * value where PostgreSQL asks for it (ALTER SYSTEM, a reload, server
 * start), so that the processes keep the value they had.
 *
 * Check hooks run in the postmaster, which has no catalog access and must
 * not fail, and in every backend at every reload.  So they look only at the
 * text (and, for the file form of kafka_config, the file it names), report
 * through GUC_check_errmsg() and friends instead of ereport(), and free
 * what they allocate.  librdkafka is not linked into this library: a
 * known property with a value librdkafka would refuse is caught only by
 * the relay when it creates its producer.
 *
 * No message here ever quotes a kafka_config value, which may be a
 * password; property names and entry numbers are enough to find a mistake.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <sys/stat.h>

#include "miscadmin.h"
#include "parser/scansup.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "inbox_outbox.h"
#include "kafka_config.h"
#include "standby_wait.h"

/*
 * A configuration file larger than this is surely a mistake (the file of a
 * real producer is a few hundred bytes), and every process reads it at
 * every reload.
 */
#define KAFKA_CONFIG_FILE_MAX	(1024 * 1024)

#define BROKER_BLANKS	" \t\r\n"

/* The scheme prefixes librdkafka accepts in bootstrap.servers. */
static const char *const broker_protocols[] = {
	"PLAINTEXT://", "SSL://", "SASL_PLAINTEXT://", "SASL_SSL://"
};

/*
 * Whether host is a DNS name or a dotted IPv4 address.  Underscores are
 * allowed because resolvers accept them and internal host names use them.
 */
static bool
valid_host_name(const char *host)
{
	size_t		len = strlen(host);
	const char *label = host;

	if (len == 0 || len > 253)
		return false;
	if (strspn(host, "0123456789.") == len)
	{
		struct in_addr addr;

		return inet_pton(AF_INET, host, &addr) == 1;
	}
	for (;;)
	{
		size_t		n = strspn(label,
								"abcdefghijklmnopqrstuvwxyz"
								"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
								"0123456789-_");

		if (n == 0 || n > 63 || label[0] == '-' || label[n - 1] == '-')
			return false;
		if (label[n] == '\0')
			return true;
		if (label[n] != '.')
			return false;
		label += n + 1;
	}
}

/*
 * Check one entry of the broker list, blanks already trimmed.  Returns NULL
 * if it is good, or the detail message saying what is wrong.
 */
static const char *
broker_problem(char *entry)
{
	char	   *hostport = entry;
	char	   *port;
	char	   *scheme_end = strstr(entry, "://");
	long		portnum;

	if (scheme_end != NULL)
	{
		bool		known = false;

		for (size_t i = 0; i < lengthof(broker_protocols); i++)
		{
			size_t		n = strlen(broker_protocols[i]);

			if ((size_t) (scheme_end + 3 - entry) == n &&
				pg_strncasecmp(entry, broker_protocols[i], n) == 0)
				known = true;
		}
		if (!known)
			return "The security protocol prefix must be PLAINTEXT://, SSL://, SASL_PLAINTEXT:// or SASL_SSL://.";
		hostport = scheme_end + 3;
	}

	if (hostport[0] == '[')
	{
		char	   *close = strchr(hostport, ']');
		struct in6_addr addr;

		if (close == NULL || close[1] != ':')
			return "A bracketed IPv6 address must be followed by a colon and a port, as in [::1]:9092.";
		*close = '\0';
		if (inet_pton(AF_INET6, hostport + 1, &addr) != 1)
			return "The text in brackets is not an IPv6 address.";
		port = close + 2;
	}
	else
	{
		char	   *colon = strrchr(hostport, ':');
		char	   *host;

		if (colon == NULL)
			return "A broker is written as host:port.";
		*colon = '\0';
		host = hostport;
		port = colon + 1;
		if (strchr(host, ':') != NULL)
			return "Write an IPv6 address in brackets, as in [::1]:9092.";
		if (!valid_host_name(host))
			return "The host must be a DNS name, an IPv4 address or a bracketed IPv6 address.";
	}

	if (port[0] == '\0' || strlen(port) > 5 ||
		strspn(port, "0123456789") != strlen(port))
		return "The port must be a number between 1 and 65535.";
	portnum = strtol(port, NULL, 10);
	if (portnum < 1 || portnum > 65535)
		return "The port must be a number between 1 and 65535.";
	return NULL;
}

static bool
check_brokers(char **newval, void **extra, GucSource source)
{
	char	   *list = pstrdup(*newval);
	char	   *next = list;
	int			entry = 0;
	bool		ok = true;

	if (list[strspn(list, BROKER_BLANKS)] == '\0')
	{
		GUC_check_errmsg("inbox_outbox.brokers must name at least one broker");
		GUC_check_errdetail("The relay needs the host:port of at least one Kafka broker.");
		pfree(list);
		return false;
	}

	while (next != NULL)
	{
		char	   *item = next;
		char	   *comma = strchr(item, ',');
		char	   *end;
		char	   *copy;
		const char *problem;

		next = NULL;
		if (comma != NULL)
		{
			*comma = '\0';
			next = comma + 1;
		}
		entry++;

		item += strspn(item, BROKER_BLANKS);
		end = item + strlen(item);
		while (end > item && strchr(BROKER_BLANKS, end[-1]) != NULL)
			*--end = '\0';
		if (*item == '\0')
		{
			GUC_check_errmsg("entry %d of inbox_outbox.brokers is empty", entry);
			GUC_check_errdetail("Separate brokers with single commas.");
			ok = false;
			break;
		}

		/* broker_problem() cuts the entry apart; keep it whole for the message */
		copy = pstrdup(item);
		problem = broker_problem(copy);
		pfree(copy);
		if (problem != NULL)
		{
			GUC_check_errmsg("invalid broker \"%s\" in inbox_outbox.brokers", item);
			GUC_check_errdetail("%s", problem);
			ok = false;
			break;
		}
	}

	pfree(list);
	return ok;
}

/* State of one check of a kafka_config property list. */
typedef struct KafkaConfigCheck
{
	int			entry;			/* number of the entry being checked */
	KafkaPropertyClass refused; /* why the list was refused, if it was */
	bool		exposes_secrets;	/* or because of a debug value */
	char		name[128];		/* the refused property */
} KafkaConfigCheck;

static bool
check_kafka_property(void *arg, const char *name, const char *value,
					 char *errbuf, size_t errlen)
{
	KafkaConfigCheck *check = (KafkaConfigCheck *) arg;
	KafkaPropertyClass class = kafka_property_class(name);

	check->entry++;
	if (kafka_property_value_exposes_secrets(name, value))
	{
		check->exposes_secrets = true;
		strlcpy(check->name, name, sizeof(check->name));
		snprintf(errbuf, errlen,
				 "Entry %d asks librdkafka to log its configuration, secrets included.",
				 check->entry);
		return false;
	}
	if (class == KAFKA_PROPERTY_ORDINARY ||
		(class == KAFKA_PROPERTY_UNSAFE &&
		 inbox_outbox_allow_unsafe_kafka_properties))
		return true;

	check->refused = class;
	strlcpy(check->name, name, sizeof(check->name));
	if (class == KAFKA_PROPERTY_RESERVED)
		snprintf(errbuf, errlen,
				 "Entry %d sets a property that the relay sets itself, because its delivery guarantees rest on it.",
				 check->entry);
	else
		snprintf(errbuf, errlen,
				 "Entry %d sets a property that makes librdkafka run a program or load code.",
				 check->entry);
	return false;
}

/*
 * Check a property list, reporting a problem as coming from origin (the
 * parameter itself or the file it names).  text is scribbled on.
 */
static bool
check_property_list(char *text, const char *origin)
{
	KafkaConfigCheck check;
	char		errbuf[256];

	check.entry = 0;
	check.refused = KAFKA_PROPERTY_ORDINARY;
	check.exposes_secrets = false;
	check.name[0] = '\0';

	if (kafka_config_parse(text, check_kafka_property, &check,
						   errbuf, sizeof(errbuf)))
		return true;

	if (check.exposes_secrets)
	{
		GUC_check_errmsg("librdkafka property \"%s\" has a value that is not allowed in %s",
						 check.name, origin);
		GUC_check_errdetail("%s", errbuf);
		GUC_check_errhint("Name the debug contexts you need other than \"all\" and \"conf\".");
		return false;
	}

	switch (check.refused)
	{
		case KAFKA_PROPERTY_RESERVED:
			GUC_check_errmsg("librdkafka property \"%s\" cannot be set in %s",
							 check.name, origin);
			GUC_check_errdetail("%s", errbuf);
			break;
		case KAFKA_PROPERTY_UNSAFE:
			GUC_check_errmsg("librdkafka property \"%s\" is not allowed in %s",
							 check.name, origin);
			GUC_check_errdetail("%s", errbuf);
			GUC_check_errhint("To allow it, set inbox_outbox.allow_unsafe_kafka_properties to on in postgresql.conf and restart the server.");
			break;
		case KAFKA_PROPERTY_ORDINARY:
			GUC_check_errmsg("invalid syntax in %s", origin);
			GUC_check_errdetail("%s", errbuf);
			GUC_check_errhint("Write librdkafka properties as name=value, separated by semicolons or newlines.");
			break;
	}
	return false;
}

/*
 * Read the file the parameter names into a palloc'd, NUL-terminated
 * buffer.  Plain stdio: the postmaster has no resource owner to give a
 * file to, and the file is closed on every path before returning.
 */
static char *
read_kafka_config_file(const char *path)
{
	FILE	   *file;
	struct stat st;
	char	   *buf;
	size_t		n;

	file = fopen(path, "r");
	if (file == NULL)
	{
		GUC_check_errmsg("could not open file \"%s\" named by inbox_outbox.kafka_config: %m",
						 path);
		return NULL;
	}
	if (fstat(fileno(file), &st) != 0)
	{
		GUC_check_errmsg("could not stat file \"%s\" named by inbox_outbox.kafka_config: %m",
						 path);
		fclose(file);
		return NULL;
	}
	if (!S_ISREG(st.st_mode))
	{
		GUC_check_errmsg("\"%s\" named by inbox_outbox.kafka_config is not a regular file",
						 path);
		fclose(file);
		return NULL;
	}
	if (st.st_size > KAFKA_CONFIG_FILE_MAX)
	{
		GUC_check_errmsg("file \"%s\" named by inbox_outbox.kafka_config is too large",
						 path);
		GUC_check_errdetail("The file may hold at most %d bytes.", KAFKA_CONFIG_FILE_MAX);
		fclose(file);
		return NULL;
	}

	/* one byte more than the size, to notice a file that grew meanwhile */
	buf = palloc(st.st_size + 2);
	n = fread(buf, 1, st.st_size + 1, file);
	if (ferror(file))
	{
		GUC_check_errmsg("could not read file \"%s\" named by inbox_outbox.kafka_config: %m",
						 path);
		fclose(file);
		pfree(buf);
		return NULL;
	}
	fclose(file);
	if (n > (size_t) st.st_size)
	{
		GUC_check_errmsg("file \"%s\" named by inbox_outbox.kafka_config changed while it was read",
						 path);
		pfree(buf);
		return NULL;
	}
	buf[n] = '\0';
	if (strlen(buf) != n)
	{
		GUC_check_errmsg("file \"%s\" named by inbox_outbox.kafka_config contains a zero byte",
						 path);
		pfree(buf);
		return NULL;
	}
	return buf;
}

static bool
check_kafka_config(char **newval, void **extra, GucSource source)
{
	char	   *text;
	char	   *origin;
	bool		ok;

	if ((*newval)[0] == '/')
	{
		text = read_kafka_config_file(*newval);
		if (text == NULL)
			return false;
		origin = psprintf("file \"%s\" named by inbox_outbox.kafka_config",
						  *newval);
	}
	else
	{
		text = pstrdup(*newval);
		origin = pstrdup("inbox_outbox.kafka_config");
	}

	ok = check_property_list(text, origin);
	pfree(origin);
	pfree(text);
	return ok;
}

/*
 * The length in bytes of each name in a list that SplitIdentifierString()
 * accepted, before it truncated any: quotes removed, doubled quotes
 * counted once.  Returns the number of the first name longer than a
 * database or replication slot name may be, or 0.
 */
static int
first_overlong_name(const char *list)
{
	const char *p = list;
	int			entry = 0;

	while (scanner_isspace(*p))
		p++;
	while (*p != '\0')
	{
		int			len = 0;

		entry++;
		if (*p == '"')
		{
			for (p++; *p != '\0'; p++)
			{
				if (*p == '"')
				{
					if (p[1] != '"')
						break;
					p++;
				}
				len++;
			}
			p++;
		}
		else
		{
			for (; *p != '\0' && *p != ',' && !scanner_isspace(*p); p++)
				len++;
		}
		if (len > NAMEDATALEN - 1)
			return entry;
		while (scanner_isspace(*p) || *p == ',')
			p++;
	}
	return 0;
}

static bool
check_databases(char **newval, void **extra, GucSource source)
{
	char	   *rawlist = pstrdup(*newval);
	List	   *names = NIL;
	bool		ok = SplitIdentifierString(rawlist, ',', &names);
	int			overlong;

	list_free(names);
	pfree(rawlist);
	if (!ok)
	{
		GUC_check_errmsg("invalid list syntax in parameter \"%s\"",
						 "inbox_outbox.databases");
		GUC_check_errdetail("The list must be database names separated by single commas; a name with a quote must be double-quoted and its quotes doubled.");
		return false;
	}

	overlong = first_overlong_name(*newval);
	if (overlong != 0)
	{
		GUC_check_errmsg("name %d in inbox_outbox.databases is too long", overlong);
		GUC_check_errdetail("A database name has at most %d bytes.", NAMEDATALEN - 1);
		return false;
	}
	return true;
}

/*
 * inbox_outbox.standby_slots: a list of replication slot names, parsed
 * here into the StandbySlotList the relay reads (standby_wait.c).  The
 * postmaster cannot see whether a slot exists, and a slot may be created
 * after the parameter is set, so only what cannot be a slot's name is
 * refused; the relay reports a slot that is missing or not a standby's.
 */
static bool
check_standby_slots(char **newval, void **extra, GucSource source)
{
	char	   *rawlist = pstrdup(*newval);
	List	   *names = NIL;
	StandbySlotList *list = NULL;
	ListCell   *lc;
	int			overlong;
	bool		ok;

	if (!SplitIdentifierString(rawlist, ',', &names))
	{
		GUC_check_errmsg("invalid list syntax in parameter \"%s\"",
						 "inbox_outbox.standby_slots");
		GUC_check_errdetail("The list must be replication slot names separated by single commas.");
		ok = false;
	}
	else if ((overlong = first_overlong_name(*newval)) != 0)
	{
		GUC_check_errmsg("name %d in inbox_outbox.standby_slots is too long",
						 overlong);
		GUC_check_errdetail("A replication slot name has at most %d bytes.", NAMEDATALEN - 1);
		ok = false;
	}
	else
	{
		ok = true;
		foreach(lc, names)
		{
			const char *name = lfirst(lc);

			if (strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(name))
			{
				GUC_check_errmsg("\"%s\" in inbox_outbox.standby_slots is not a valid replication slot name",
								 name);
				GUC_check_errdetail("Replication slot names may contain only lower case letters, numbers, and the underscore character.");
				ok = false;
				break;
			}
		}
	}

	if (ok)
	{
		Size		size = offsetof(StandbySlotList, names) +
			sizeof(NameData) * list_length(names);

		/* PostgreSQL frees extra: from 16 in a memory context of its own */
#if PG_VERSION_NUM >= 160000
		list = guc_malloc(LOG, size);
#else
		list = malloc(size);
#endif
		if (list == NULL)
		{
			GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
			GUC_check_errmsg("out of memory");
			ok = false;
		}
		else
		{
			list->nslots = 0;
			foreach(lc, names)
				namestrcpy(&list->names[list->nslots++], lfirst(lc));
			*extra = list;
		}
	}

	list_free(names);
	pfree(rawlist);
	return ok;
}

/*
 * The postmaster cannot look a role up, so this only refuses what cannot
 * be a role name; the relay reports a role that does not exist.
 */
bool
inbox_outbox_check_relay_role(char **newval, void **extra, GucSource source)
{
	if (strlen(*newval) > NAMEDATALEN - 1)
	{
		GUC_check_errmsg("inbox_outbox.relay_role is too long");
		GUC_check_errdetail("A role name has at most %d bytes.", NAMEDATALEN - 1);
		return false;
	}
	return true;
}

/*
 * A value that postgresql.conf gives when the server starts, and that a
 * check hook refuses, does not stop the server: PostgreSQL warns and keeps
 * the parameter's default.  For these parameters the default is no safe
 * stand-in (brokers would point at 127.0.0.1:9092, kafka_config would drop
 * the TLS and SASL settings, databases would mean every database,
 * standby_slots would send events no standby has flushed), so the
 * refusal is remembered, and the relays and the launcher stay idle, saying
 * why, until a reload brings a value that passes.  The postmaster's flags
 * are inherited by the processes it starts; each process clears its own at
 * the reload that fixes the value.
 */
int			inbox_outbox_refused_at_start = 0;

static bool
note_refusal(int parameter, bool ok)
{
	if (ok)
		inbox_outbox_refused_at_start &= ~parameter;
	else if (process_shared_preload_libraries_in_progress)
		inbox_outbox_refused_at_start |= parameter;
	return ok;
}

bool
inbox_outbox_check_brokers(char **newval, void **extra, GucSource source)
{
	return note_refusal(REFUSED_BROKERS, check_brokers(newval, extra, source));
}

bool
inbox_outbox_check_kafka_config(char **newval, void **extra, GucSource source)
{
	return note_refusal(REFUSED_KAFKA_CONFIG, check_kafka_config(newval, extra, source));
}

bool
inbox_outbox_check_databases(char **newval, void **extra, GucSource source)
{
	return note_refusal(REFUSED_DATABASES, check_databases(newval, extra, source));
}

/* The default, no slot, would send events without waiting for any standby. */
bool
inbox_outbox_check_standby_slots(char **newval, void **extra, GucSource source)
{
	return note_refusal(REFUSED_STANDBY_SLOTS, check_standby_slots(newval, extra, source));
}

/*
 * inbox_outbox.progress_topic: a Kafka topic name, checked as the outbox
 * checks the topics of events.
 */
bool
inbox_outbox_check_progress_topic(char **newval, void **extra, GucSource source)
{
	const char *detail;
	const char *problem;

	problem = outbox_topic_problem(*newval, (int) strlen(*newval), &detail);
	if (problem == NULL)
		return true;
	GUC_check_errmsg("invalid value for inbox_outbox.progress_topic: %s", problem);
	if (detail != NULL)
		GUC_check_errdetail("%s", detail);
	return false;
}
