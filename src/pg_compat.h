/*-------------------------------------------------------------------------
 *
 * pg_compat.h
 *	  Names that differ between the PostgreSQL versions the extension
 *	  builds against (15 to 18), under the name of the newest.
 *
 * Only renames and declarations live here.  Where a call changed its
 * arguments, the call site has its own PG_VERSION_NUM test, so that the
 * difference is read where it matters.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_PG_COMPAT_H
#define INBOX_OUTBOX_PG_COMPAT_H

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"

/* 16 moved the macros of variable-length values out of postgres.h */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

/*
 * Functions called from SQL must be visible outside the library, which is
 * built with -fvisibility=hidden on every version.  15 exports only their
 * info function; declare the function itself PGDLLEXPORT too, as 16 does.
 * Every file with PG_FUNCTION_INFO_V1 includes this header (CREATE EXTENSION
 * fails on 15 if one does not).
 */
#if PG_VERSION_NUM < 160000
#undef PG_FUNCTION_INFO_V1
#define PG_FUNCTION_INFO_V1(funcname) \
extern PGDLLEXPORT Datum funcname(PG_FUNCTION_ARGS); \
extern PGDLLEXPORT const Pg_finfo_record * CppConcat(pg_finfo_,funcname)(void); \
const Pg_finfo_record * \
CppConcat(pg_finfo_,funcname) (void) \
{ \
	static const Pg_finfo_record my_finfo = { 1 }; \
	return &my_finfo; \
} \
extern int no_such_variable
#endif

/* 18 replaced the trailing pg_attribute_noreturn() with a leading specifier */
#ifndef pg_noreturn
#define pg_noreturn pg_attribute_noreturn()
#endif

/* 17 numbers processes by ProcNumber; before, MyProc carried the number */
#if PG_VERSION_NUM < 170000
#define MyProcNumber (MyProc->pgprocno)
#endif

#endif							/* INBOX_OUTBOX_PG_COMPAT_H */
