/*-------------------------------------------------------------------------
 *
 * relay_api.c
 *	  The main library's side of the boundary with the relay library: the
 *	  table of what the relay may use, and its publication.
 *
 * See relay_api.h for why the libraries meet through a table.  The table is
 * constant and holds the addresses of the parameters rather than their
 * values, so the relay sees every reload; it is published from _PG_init, in
 * the postmaster when preloaded, and every relay inherits it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "database_ops.h"
#include "inbox_outbox.h"
#include "ingest_admin.h"
#include "ingest_handler.h"
#include "outbox_floor.h"
#include "outbox_identity.h"
#include "relay_api.h"
#include "shared_state.h"
#include "standby_wait.h"

static const InboxOutboxRelayApi api = {
	.version = INBOX_OUTBOX_RELAY_API_VERSION,
	.size = sizeof(InboxOutboxRelayApi),
	.shared_size = sizeof(InboxOutboxShared),

	.brokers = &inbox_outbox_brokers,
	.kafka_config = &inbox_outbox_kafka_config,
	.relay_role = &inbox_outbox_relay_role,
	.allow_unsafe_kafka_properties = &inbox_outbox_allow_unsafe_kafka_properties,
	.batch_size = &inbox_outbox_batch_size,
	.poll_interval = &inbox_outbox_poll_interval,
	.gather_window = &inbox_outbox_gather_window,
	.max_attempts = &inbox_outbox_max_attempts,
	.retry_backoff = &inbox_outbox_retry_backoff,
	.max_message_bytes = &inbox_outbox_max_message_bytes,
	.shutdown_timeout = &inbox_outbox_shutdown_timeout,
	.refused_at_start = &inbox_outbox_refused_at_start,
	.delivery = &inbox_outbox_delivery,
	.progress_topic = &inbox_outbox_progress_topic,

	.shared = &inbox_outbox_shared,
	.relay_slot_find = relay_slot_find,

	.database_op_holds = database_op_holds,
	.relay_must_leave_now = relay_must_leave_now,

	.outbox_floor_attach = outbox_floor_attach,
	.outbox_floor_hold_for_prepared = outbox_floor_hold_for_prepared,
	.outbox_floor_prepared_held = outbox_floor_prepared_held,
	.outbox_floor_prepared_settled = outbox_floor_prepared_settled,
	.outbox_floor_snapshot = outbox_floor_snapshot,

	.outbox_identity_verify = outbox_identity_verify,

	.standby_mark_round = standby_mark_round,
	.standby_wait_round = standby_wait_round,

	.inbox_prune_paced = inbox_prune_paced,
	.ingest_slots_sync = ingest_slots_sync,
	.ingest_handler_usable = ingest_handler_usable,
	.ingest_handler_call = ingest_handler_call,
	.launcher_wake = launcher_wake,
};

/*
 * Publish the table for the relay library.  Any library of the process can
 * read a rendezvous variable, but only code already running in the server
 * can, and such code could call these functions anyway.
 */
void
relay_api_publish(void)
{
	const InboxOutboxRelayApi **slot;

	slot = (const InboxOutboxRelayApi **)
		find_rendezvous_variable(INBOX_OUTBOX_RELAY_API_RENDEZVOUS);
	*slot = &api;
}
