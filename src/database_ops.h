/*-------------------------------------------------------------------------
 *
 * database_ops.h
 *	  Keeping the relay out of the way of DROP DATABASE, ALTER DATABASE ...
 *	  RENAME TO and SET TABLESPACE, and CREATE DATABASE ... TEMPLATE.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_DATABASE_OPS_H
#define INBOX_OUTBOX_DATABASE_OPS_H

extern void database_ops_init(void);
extern bool database_op_holds(Oid dbid);
extern bool relay_must_leave_now(void);

#endif							/* INBOX_OUTBOX_DATABASE_OPS_H */
