/*-------------------------------------------------------------------------
 *
 * publish_hint.c
 *	  Say how to publish bytes when a driver's untyped byte parameter
 *	  reached outbox_publish() as text.
 *
 * node-postgres sends a Buffer, and pgx a []byte, without a type.  Among
 * the overloads of outbox_publish(), an untyped payload resolves to text
 * (the preferred type of the string category), so the server reads the
 * bytes as text: valid UTF-8 is published as the same bytes, anything else
 * fails while the parameters are bound, in PostgreSQL's text input,
 * before any code of the extension runs.  The message, 'invalid byte
 * sequence for encoding "UTF8": 0x00', names neither the function nor the
 * remedy.  An emit_log_hook adds a hint to that message when the statement
 * being run mentions outbox_publish: it is recognised by its untranslated
 * format (edata->message_id), so it works whatever lc_messages is.  The
 * hint is allocated in ErrorContext, which owns the error data, as
 * log_redact.c explains for its own changes.  Only backends that load the
 * library before binding get the hint: with shared_preload_libraries, which
 * the relay needs anyway, every backend does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "tcop/tcopprot.h"
#include "utils/elog.h"
#include "utils/memutils.h"

#include "inbox_outbox.h"

static emit_log_hook_type prev_emit_log_hook = NULL;

static bool
statement_calls_publish(void)
{
	if (debug_query_string == NULL)
		return false;
	for (const char *p = debug_query_string; *p != '\0'; p++)
	{
		if (pg_strncasecmp(p, "outbox_publish", strlen("outbox_publish")) == 0)
			return true;
	}
	return false;
}

static void
add_bytes_hint(ErrorData *edata)
{
	if (edata->elevel == ERROR &&
		edata->sqlerrcode == ERRCODE_CHARACTER_NOT_IN_REPERTOIRE &&
		edata->hint == NULL &&
		edata->message_id != NULL &&
		strcmp(edata->message_id, "invalid byte sequence for encoding \"%s\": %s") == 0 &&
		statement_calls_publish())
	{
		MemoryContext oldcontext = MemoryContextSwitchTo(ErrorContext);

		edata->hint = pstrdup(_("An untyped parameter of outbox_publish() is read as text. "
								"To publish bytes, bind the payload as bytea or cast its parameter, "
								"as in outbox_publish($1, $2, $3::bytea)."));
		MemoryContextSwitchTo(oldcontext);
	}

	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
publish_hint_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = add_bytes_hint;
}
