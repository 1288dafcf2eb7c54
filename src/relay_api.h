/*-------------------------------------------------------------------------
 *
 * relay_api.h
 *	  The boundary between the two libraries: everything the relay library
 *	  (inbox_outbox_relay.so) takes from the main library (inbox_outbox.so).
 *
 * Both libraries are built with -fvisibility=hidden (PostgreSQL 16 and later
 * build every module so, and pgxs_compat.mk does the same on 15): neither
 * sees a symbol of the other.  The main library lists what the relay may use
 * in one table, InboxOutboxRelayApi (relay_api.c), and publishes its address
 * in a rendezvous variable from _PG_init.  The relay, which exists only when
 * the main library is preloaded, takes the address when it starts and reads
 * the parameters and calls the functions of the main library through it
 * (relay_api->...), the way PostgreSQL's walreceiver calls libpqwalreceiver.
 * Code without state that both need (kafka_config.c, spi_plan.c,
 * ulid_text.c) is linked into each library instead.
 *
 * A relay library installed while the server runs is loaded by the next
 * relay next to the main library the postmaster loaded at start, which may
 * be older.  The table carries a version, its size and that of the shared
 * state, and the relay refuses a table other than the one it was built for
 * instead of calling through it.  Change INBOX_OUTBOX_RELAY_API_VERSION
 * with the table or with a type it hands over.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_RELAY_API_H
#define INBOX_OUTBOX_RELAY_API_H

#include "inbox_outbox.h"
#include "ingest_handler.h"
#include "shared_state.h"
#include "ulid.h"

#define INBOX_OUTBOX_RELAY_API_RENDEZVOUS	"inbox_outbox_relay_api"
#define INBOX_OUTBOX_RELAY_API_VERSION		4

typedef struct InboxOutboxRelayApi
{
	uint32		version;		/* INBOX_OUTBOX_RELAY_API_VERSION */
	uint32		size;			/* sizeof(InboxOutboxRelayApi) */
	uint32		shared_size;	/* sizeof(InboxOutboxShared) */

	/* parameters (inbox_outbox.c); a reload changes the values */
	char	  **brokers;
	char	  **kafka_config;
	char	  **relay_role;
	bool	   *allow_unsafe_kafka_properties;
	int		   *batch_size;
	int		   *poll_interval;
	double	   *gather_window;	/* milliseconds */
	int		   *max_attempts;
	int		   *retry_backoff;
	int		   *max_message_bytes;
	int		   *shutdown_timeout;
	int		   *refused_at_start;	/* REFUSED_* bits */
	int		   *delivery;		/* InboxOutboxDelivery */
	char	  **progress_topic;

	/* shared memory (shared_state.c); NULL unless preloaded */
	InboxOutboxShared **shared;
	RelaySlot  *(*relay_slot_find) (Oid dbid);

	/* DROP DATABASE and the like (database_ops.c) */
	bool		(*database_op_holds) (Oid dbid);
	bool		(*relay_must_leave_now) (void);

	/* the lower bound of a round's read (outbox_floor.c) */
	void		(*outbox_floor_attach) (void);
	void		(*outbox_floor_hold_for_prepared) (void);
	bool		(*outbox_floor_prepared_held) (uint64 *prepares);
	void		(*outbox_floor_prepared_settled) (uint64 prepares);
	void		(*outbox_floor_snapshot) (pg_ulid *floor);

	/* a copy of another database pauses (outbox_identity.c) */
	bool		(*outbox_identity_verify) (const char **reason,
										   const char **hint);

	/* failover-safe mode (standby_wait.c) */
	void		(*standby_mark_round) (void);
	bool		(*standby_wait_round) (RelaySlot *slot,
									   const char *database_name);

	/* the retention of inbox claims (inbox.c) */
	void		(*inbox_prune_paced) (InboxPrunePass *pass,
									  void (*begin) (const char *activity),
									  void (*end) (void));

	/* ingestion (ingest_admin.c, ingest_handler.c) */
	void		(*ingest_slots_sync) (void);
	bool		(*ingest_handler_usable) (Oid handler, Oid owner,
										  IngestHandlerProblem *problem);
	void		(*ingest_handler_call) (FmgrInfo *flinfo, Oid owner,
										const Datum *args, const bool *nulls);
	void		(*launcher_wake) (bool extension_changed);
} InboxOutboxRelayApi;

/* main library: publish the table (from _PG_init) */
extern void relay_api_publish(void);

/*
 * relay library: the table, taken when the relay or an ingestion worker
 * starts (relay_api_take(), relay.c)
 */
extern const InboxOutboxRelayApi *relay_api;
extern void relay_api_take(void);

#endif							/* INBOX_OUTBOX_RELAY_API_H */
