/*-------------------------------------------------------------------------
 *
 * relay_faults.c
 *	  The relay's side of its named fault points (relay_faults.h).
 *
 * A production server never has the hook table: only the test-only module
 * test/relay_faults, loaded through shared_preload_libraries from the
 * build tree, fills the rendezvous variable, in the postmaster, from which
 * every relay inherits it.  The relay looks it up once when it starts, so
 * a fault point outside the tests is one untaken branch.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "relay_faults.h"

const RelayFaultHooks *relay_fault_hooks = NULL;

void
relay_faults_attach(void)
{
	const RelayFaultHooks *hooks;

	hooks = *(const RelayFaultHooks **)
		find_rendezvous_variable(RELAY_FAULT_HOOKS_RENDEZVOUS);

	/* a module of another build is no test of this one: refuse it loudly */
	if (hooks != NULL && hooks->version != RELAY_FAULT_HOOKS_VERSION)
		elog(ERROR, "relay fault hooks of version %d found, this relay expects version %d",
			 hooks->version, RELAY_FAULT_HOOKS_VERSION);
	relay_fault_hooks = hooks;
}
