/*-------------------------------------------------------------------------
 *
 * log_redact.c
 *	  Keep the value of inbox_outbox.kafka_config out of the server log.
 *
 * inbox_outbox.kafka_config may hold a SASL password.  The parameter is
 * superuser-only, so no other role can read it with SHOW, but PostgreSQL
 * itself writes the values of parameters into the server log, which is
 * often shipped off the host:
 *
 *	- on reload, the postmaster logs 'parameter "%s" changed to "%s"';
 *	- a value that fails a check hook without a message of its own is
 *	  logged as 'invalid value for parameter "%s": "%s"';
 *	- with log_statement or log_min_duration_statement, the text of
 *	  ALTER SYSTEM SET inbox_outbox.kafka_config = '...' is logged as
 *	  "statement: %s" (and its extended-protocol and duration variants),
 *	  and any error raised while that statement runs is followed by
 *	  STATEMENT: and the same text.
 *
 * An emit_log_hook rewrites those messages before they are written.  It
 * recognises them by edata->message_id, the untranslated format, so that
 * it works whatever lc_messages is; only then does it look for the
 * parameter's name in the text, so every other message costs a few
 * failed string comparisons.  The value is dropped, the rest kept: the
 * log still says that the parameter changed, and which statement ran with
 * how long it took, with its text replaced by a placeholder.  The check
 * hooks (guc_check.c) never put a value into their own messages.
 *
 * elog.c calls any change to edata other than turning off
 * output_to_server unsupported, meaning that PostgreSQL does not promise
 * to keep honouring it; but there is no other way to keep the value out
 * short of dropping the message.  In PostgreSQL 15 both the server log and
 * the client are written from edata after the hook returns, and the TAP
 * test 041_config_hygiene checks the result.  The replaced fields are
 * strings that the error data owns in ErrorContext, and the new ones are
 * allocated there too, so FreeErrorData() and the reset of ErrorContext
 * free them as before.  The client sees the same rewritten message, which
 * costs it nothing: it sent the value itself.
 *
 * A hook installed by a library loaded after this one runs before this
 * one; a library that ships log messages through emit_log_hook must
 * therefore come before inbox_outbox in shared_preload_libraries.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "inbox_outbox.h"

/* What messages and statements are searched for, lower case. */
#define SECRET_PARAMETER	"inbox_outbox.kafka_config"
#define SECRET_WORD			"kafka_config"

#define HIDDEN_STATEMENT	"<text hidden because it mentions " SECRET_PARAMETER ">"

/* Core messages that quote the value of the parameter they name. */
static const char *const value_formats[] = {
	"parameter \"%s\" changed to \"%s\"",
	"invalid value for parameter \"%s\": \"%s\"",
};

/*
 * Core messages that quote a statement's text (postgres.c, as of
 * PostgreSQL 15): log_statement, log_min_duration_statement, simple and
 * extended protocol.
 */
static const char *const statement_formats[] = {
	"statement: %s",
	"duration: %s ms  statement: %s",
	"%s %s%s%s: %s",
	"duration: %s ms  %s %s%s%s: %s",
	"duration: %s ms  parse %s: %s",
	"duration: %s ms  bind %s%s%s: %s",
};

static emit_log_hook_type prev_emit_log_hook = NULL;

/* Whether text contains word (which is in lower case), ignoring case. */
static bool
mentions(const char *text, const char *word)
{
	size_t		len = strlen(word);

	for (const char *p = text; *p != '\0'; p++)
	{
		if (pg_tolower((unsigned char) *p) == word[0] &&
			pg_strncasecmp(p, word, len) == 0)
			return true;
	}
	return false;
}

static bool
format_is_one_of(const char *format, const char *const *formats, int n)
{
	for (int i = 0; i < n; i++)
	{
		if (strcmp(format, formats[i]) == 0)
			return true;
	}
	return false;
}

/*
 * Whether elog.c might append STATEMENT: to this message.  A superset of
 * its rule, which ranks LOG above ERROR for the server log.
 */
static bool
statement_may_be_logged(const ErrorData *edata)
{
	return edata->elevel >= ERROR ||
		edata->elevel == LOG ||
		edata->elevel == LOG_SERVER_ONLY ||
		edata->elevel >= log_min_error_statement;
}

/* Replace a string owned by edata, in the context that owns it. */
static void
replace_field(char **field, char *replacement)
{
	if (*field != NULL)
		pfree(*field);
	*field = replacement;
}

static void
redact_value_message(ErrorData *edata)
{
	const char *format = edata->message_id;

	if (strcmp(format, value_formats[0]) == 0)
	{
		replace_field(&edata->message,
					  pstrdup("parameter \"" SECRET_PARAMETER "\" changed"));
		if (edata->detail == NULL)
			edata->detail = pstrdup("The new value is not logged because it may hold secrets.");
	}
	else
		replace_field(&edata->message,
					  pstrdup("invalid value for parameter \"" SECRET_PARAMETER "\""));
}

/*
 * The statement's text is the last argument of every statement format, and
 * it is debug_query_string; keep what comes before it (the duration, the
 * prepared statement's name) when it can be found.
 */
static void
redact_statement_message(ErrorData *edata)
{
	size_t		msglen = strlen(edata->message);
	size_t		stmtlen = debug_query_string ? strlen(debug_query_string) : 0;

	if (stmtlen > 0 && stmtlen <= msglen &&
		strcmp(edata->message + msglen - stmtlen, debug_query_string) == 0)
		replace_field(&edata->message,
					  psprintf("%.*s%s", (int) (msglen - stmtlen),
							   edata->message, HIDDEN_STATEMENT));
	else
		replace_field(&edata->message,
					  pstrdup("statement: " HIDDEN_STATEMENT));

	/* "prepare: %s" and bind parameters; either may carry the value */
	if (edata->detail != NULL)
		replace_field(&edata->detail, NULL);
}

static void
redact_secrets(ErrorData *edata)
{
	MemoryContext oldcontext = MemoryContextSwitchTo(ErrorContext);

	if (edata->message_id != NULL && edata->message != NULL)
	{
		if (format_is_one_of(edata->message_id, value_formats,
							 lengthof(value_formats)))
		{
			if (mentions(edata->message, SECRET_PARAMETER))
				redact_value_message(edata);
		}
		else if (format_is_one_of(edata->message_id, statement_formats,
								  lengthof(statement_formats)))
		{
			if (mentions(edata->message, SECRET_WORD) ||
				(edata->detail != NULL && mentions(edata->detail, SECRET_WORD)))
				redact_statement_message(edata);
		}
	}

	/* "while setting parameter "%s" to "%s"", or an SQL statement */
	if (edata->context != NULL && !edata->hide_ctx &&
		mentions(edata->context, SECRET_WORD))
		edata->hide_ctx = true;
	if (edata->internalquery != NULL && mentions(edata->internalquery, SECRET_WORD))
		replace_field(&edata->internalquery, NULL);

	if (debug_query_string != NULL && !edata->hide_stmt &&
		statement_may_be_logged(edata) &&
		mentions(debug_query_string, SECRET_WORD))
		edata->hide_stmt = true;

	MemoryContextSwitchTo(oldcontext);

	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
log_redact_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = redact_secrets;
}
