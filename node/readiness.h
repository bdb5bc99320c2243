/* Whether a node is ready to serve: the one rule behind GET /readyz and systemd's READY=1. */
#ifndef TANDEM_NODE_READINESS_H
#define TANDEM_NODE_READINESS_H

#include <stdbool.h>
#include <stdint.h>

struct tandem_raft;
struct tandem_bcp;

/* What readiness is decided from, read from the node at one moment. */
struct tandem_readiness_facts {
    bool fenced;       /* the BCP runtime fenced this node */
    bool quarantined;  /* it refuses to serve after a divergence (node/bcp) */
    bool leader_known; /* the node knows a leader (itself included) */
    uint64_t applied;  /* raft's last applied index */
    uint64_t commit;   /* raft's commit index as this node knows it */
};

/* NULL when ready (no fence, no quarantine, a leader, everything committed applied), else the
 * reason, a constant string: "fenced", "quarantined", "no leader", "applying committed entries". */
const char *tandem_readiness_reason(const struct tandem_readiness_facts *f);

/* Reads the facts from a node's raft and BCP runtime. */
void tandem_readiness_facts_read(struct tandem_raft *raft, const struct tandem_bcp *bcp,
                                 struct tandem_readiness_facts *out);

#endif
