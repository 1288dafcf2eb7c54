/*-------------------------------------------------------------------------
 *
 * relay_faults.h
 *	  Named fault points in the relay, reachable only by the test-only
 *	  module test/relay_faults (see relay_faults.c and
 *	  docs/exactly_once.md, section 14).
 *
 * When the relay starts it looks up the rendezvous variable
 * "inbox_outbox_relay_fault_hooks".  Outside the tests nothing ever sets
 * it, so RELAY_FAULT_POINT() costs one predictable branch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INBOX_OUTBOX_RELAY_FAULTS_H
#define INBOX_OUTBOX_RELAY_FAULTS_H

#define RELAY_FAULT_HOOKS_RENDEZVOUS	"inbox_outbox_relay_fault_hooks"
#define RELAY_FAULT_HOOKS_VERSION		1

typedef struct RelayFaultHooks
{
	int			version;		/* RELAY_FAULT_HOOKS_VERSION */
	void		(*hit) (const char *point);
} RelayFaultHooks;

extern const RelayFaultHooks *relay_fault_hooks;

/* Look the hooks up; called once, when the relay starts. */
extern void relay_faults_attach(void);

#define RELAY_FAULT_POINT(point) \
	do { \
		if (unlikely(relay_fault_hooks != NULL)) \
			relay_fault_hooks->hit(point); \
	} while (0)

#endif							/* INBOX_OUTBOX_RELAY_FAULTS_H */
