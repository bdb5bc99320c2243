/* Member rejoin, run at the leader: take a fenced or diverged member out of the configuration,
 * have it re-seed (its old data moved aside with a divergence report, then join at our epoch),
 * wait until it answers again with an empty log, add it back as a standby, and record the
 * decision (who, which node, where its old data went, entries after the fork). */
#ifndef TANDEM_NODE_BCP_REJOIN_H
#define TANDEM_NODE_BCP_REJOIN_H

#include "node/bcp/reply.h"
#include "node/bcp/runtime.h"
#include "storage/sm.h"

#define TANDEM_REJOIN_POLL_MS           200
#define TANDEM_REJOIN_BACK_TIMEOUT_MS   20000 /* a re-seeded node restarts within this */
#define TANDEM_REJOIN_RESEED_TIMEOUT_MS 5000
#define TANDEM_REJOIN_BOOT_ID_MAX       64 /* a node's boot id, as its re-seed answer says it */

enum tandem_rejoin_step {
    TANDEM_REJOIN_REMOVE, /* raft_remove in flight (skipped when it is not in the configuration) */
    TANDEM_REJOIN_RESEED, /* POST /v1/node/reseed to it in flight */
    TANDEM_REJOIN_BACK,   /* polling its status until it is back, empty, at our epoch */
    TANDEM_REJOIN_ADD,    /* raft_add in flight */
    TANDEM_REJOIN_ASSIGN, /* raft_assign to standby in flight */
    TANDEM_REJOIN_RECORD, /* the rejoin decision being written to the replicated history */
    TANDEM_REJOIN_DONE,   /* answered 200 */
    TANDEM_REJOIN_FAILED, /* answered with the error */
    TANDEM_REJOIN_STEPS,
};

/* The rejoin's step machine (storage/sm.h): names, allowed moves, where a rejoin may end. */
extern const struct tandem_sm_conf tandem_rejoin_sm_conf[TANDEM_REJOIN_STEPS];

/* Rejoins the member called name on behalf of by (recorded; NULL: "operator") and answers
 * reply with it (as a standby), our epoch, where its old data is kept and its divergence
 * summary, or with what failed: 404 unknown, 409 it is this node (the leader), 502/503/504 a
 * step failed. */
void tandem_bcp_rejoin_start(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                             const char *name, const char *by);

#endif
