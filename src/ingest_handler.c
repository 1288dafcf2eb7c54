/*-------------------------------------------------------------------------
 *
 * ingest_handler.c
 *	  A subscription's handler: whether it may run, and running it as the
 *	  subscription's owner.
 *
 * A handler is any function
 *
 *	f(topic text, partition integer, "offset" bigint, key bytea,
 *	  payload bytea, headers jsonb, ts timestamptz) RETURNS void
 *
 * that the subscription's owner may execute.  The ingestion worker (and
 * ingest_redrive()) call it through fmgr with the owner as the current user
 * and SECURITY_RESTRICTED_OPERATION, as PostgreSQL runs a table owner's
 * index expressions during maintenance: the handler cannot SET ROLE, make
 * temporary tables or otherwise outlive its call.  Its parameter settings
 * are undone when it returns (a GUC nest level, which also gives it the
 * default search_path instead of the worker's "pg_catalog, pg_temp").
 *
 * The worker's own statements run as the bootstrap superuser in the same
 * transaction, after the handler.  Nothing the handler leaves behind may run
 * then: deferred constraint triggers would fire at commit as the superuser,
 * so after every call the handler's deferred triggers are fired at once,
 * still as the owner (SET CONSTRAINTS ALL IMMEDIATE).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "ingest_handler.h"
#include "pg_compat.h"

static const Oid handler_argtypes[INGEST_HANDLER_NARGS] = {
	TEXTOID, INT4OID, INT8OID, BYTEAOID, BYTEAOID, JSONBOID, TIMESTAMPTZOID
};

bool
ingest_handler_usable(Oid handler, Oid owner, IngestHandlerProblem *problem)
{
	HeapTuple	tuple;
	Form_pg_proc proc;
	bool		ok = true;

	problem->sqlstate = 0;
	problem->message = NULL;
	problem->hint = NULL;

	if (!OidIsValid(owner) || !SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
	{
		problem->sqlstate = ERRCODE_UNDEFINED_OBJECT;
		problem->message = psprintf("the owner (role %u) of the subscription no longer exists", owner);
		return false;
	}
	if (superuser_arg(owner))
	{
		problem->sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
		problem->message = psprintf("the owner \"%s\" of the subscription is a superuser",
									GetUserNameFromId(owner, false));
		problem->hint = "A handler never runs as a superuser: subscribe as the role it should run as.";
		return false;
	}

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(handler));
	if (!HeapTupleIsValid(tuple))
	{
		problem->sqlstate = ERRCODE_UNDEFINED_FUNCTION;
		problem->message = psprintf("handler function %u does not exist", handler);
		return false;
	}
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	if (proc->prokind != PROKIND_FUNCTION || proc->proretset ||
		proc->prorettype != VOIDOID || proc->pronargs != INGEST_HANDLER_NARGS)
		ok = false;
	for (int i = 0; ok && i < INGEST_HANDLER_NARGS; i++)
	{
		if (proc->proargtypes.values[i] != handler_argtypes[i])
			ok = false;
	}
	ReleaseSysCache(tuple);
	if (!ok)
	{
		problem->sqlstate = ERRCODE_UNDEFINED_FUNCTION;
		problem->message = psprintf("function %s is not a handler",
									format_procedure(handler));
		problem->hint = "A handler takes (topic text, partition integer, \"offset\" bigint, key bytea, payload bytea, headers jsonb, ts timestamptz) and returns void.";
		return false;
	}
#if PG_VERSION_NUM >= 160000
	if (object_aclcheck(ProcedureRelationId, handler, owner, ACL_EXECUTE) != ACLCHECK_OK)
#else
	if (pg_proc_aclcheck(handler, owner, ACL_EXECUTE) != ACLCHECK_OK)
#endif
	{
		problem->sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
		problem->message = psprintf("role \"%s\" may not execute the handler %s",
									GetUserNameFromId(owner, false),
									format_procedure(handler));
		return false;
	}
	return true;
}

void
ingest_handler_call(FmgrInfo *flinfo, Oid owner,
					const Datum *args, const bool *nulls)
{
	LOCAL_FCINFO(fcinfo, INGEST_HANDLER_NARGS);
	Oid			save_userid;
	int			save_context;
	int			nest;
	ConstraintsSetStmt immediate;

	GetUserIdAndSecContext(&save_userid, &save_context);
	SetUserIdAndSecContext(owner, save_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "\"$user\", public",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	InitFunctionCallInfoData(*fcinfo, flinfo, INGEST_HANDLER_NARGS,
							 InvalidOid, NULL, NULL);
	for (int i = 0; i < INGEST_HANDLER_NARGS; i++)
	{
		fcinfo->args[i].value = args[i];
		fcinfo->args[i].isnull = nulls[i];
	}
	(void) FunctionCallInvoke(fcinfo);

	/* fire what the handler deferred while it is still the current user */
	memset(&immediate, 0, sizeof(immediate));
	immediate.type = T_ConstraintsSetStmt;
	immediate.constraints = NIL;
	immediate.deferred = false;
	AfterTriggerSetState(&immediate);

	AtEOXact_GUC(false, nest);
	SetUserIdAndSecContext(save_userid, save_context);
}
