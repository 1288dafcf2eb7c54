/*-------------------------------------------------------------------------
 *
 * ingest_admin.h
 *	  Subscriptions' functions and their workers' slots (ingest_admin.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_INGEST_ADMIN_H
#define INBOX_OUTBOX_INGEST_ADMIN_H

/* Ask for the slots of this database's enabled subscriptions. */
extern void ingest_slots_sync(void);

/* DROP EXTENSION: stop this database's ingestion workers at commit. */
extern void ingest_drop_all_at_commit(void);

#endif							/* INBOX_OUTBOX_INGEST_ADMIN_H */
