/*-------------------------------------------------------------------------
 *
 * ingest_handler.h
 *	  A subscription's handler (ingest_handler.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_INGEST_HANDLER_H
#define INBOX_OUTBOX_INGEST_HANDLER_H

#include "fmgr.h"

/* topic, partition, offset, key, payload, headers, ts */
#define INGEST_HANDLER_NARGS	7

typedef struct IngestHandlerProblem
{
	int			sqlstate;		/* an ERRCODE_* */
	char	   *message;
	const char *hint;
} IngestHandlerProblem;

/*
 * Whether the owner may have the handler run: false with the problem
 * (missing function or role, wrong signature, no EXECUTE, a superuser
 * owner) described.  Needs a transaction.
 */
extern bool ingest_handler_usable(Oid handler, Oid owner,
								   IngestHandlerProblem *problem);

/* Call the handler once as the owner (see ingest_handler.c). */
extern void ingest_handler_call(FmgrInfo *flinfo, Oid owner,
								const Datum *args, const bool *nulls);

#endif							/* INBOX_OUTBOX_INGEST_HANDLER_H */
