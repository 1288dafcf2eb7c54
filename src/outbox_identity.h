/*-------------------------------------------------------------------------
 *
 * outbox_identity.h
 *	  The database an outbox publishes for; a copy of it does not publish
 *	  until an administrator adopts it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_IDENTITY_H
#define OUTBOX_IDENTITY_H

extern bool outbox_identity_verify(const char **reason, const char **hint);

#endif							/* OUTBOX_IDENTITY_H */
