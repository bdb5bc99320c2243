/* Forced failover, run at a surviving node when quorum is lost (node/bcp/force.c). */
#ifndef TANDEM_NODE_BCP_FORCE_H
#define TANDEM_NODE_BCP_FORCE_H

#include "node/bcp/reply.h"
#include "node/bcp/runtime.h"

/* Refuses while a leader exists or a node of `site` answers; otherwise raft_recovers the
 * survivor with the longest log into a configuration of the survivors at a new fencing epoch,
 * re-seeds the other survivors, answers reply with the report and restarts this node if it is
 * a survivor. */
void tandem_bcp_force_invoke(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                             const char *site, const char *reason);

#define TANDEM_BCP_CONFIRM_LOST_MAX 16 /* members named in one --confirm-lost */

/* The same with the members the operator guarantees are lost (powered off or isolated for
 * good). n_confirmed 0 is tandem_bcp_force_invoke. Otherwise the site's answering members no
 * longer refuse the force: every member that does not answer must be named, and a named one
 * that answers (or is no member) refuses it; the survivors are then every answering member,
 * the seed the one with the longest log wherever it is. */
void tandem_bcp_force_invoke_confirmed(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                                       const char *site, const char *reason,
                                       const char *const *confirmed_lost, unsigned n_confirmed);

#endif
