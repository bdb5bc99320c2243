/* Whether a node is ready to serve: the one rule behind GET /readyz and systemd's READY=1. */
#include "node/readiness.h"

#include "consensus/raft_node.h"
#include "node/bcp/runtime.h"

const char *tandem_readiness_reason(const struct tandem_readiness_facts *f)
{
    if (f->fenced) {
        return "fenced";
    }
    if (f->quarantined) {
        return "quarantined";
    }
    if (!f->leader_known) {
        return "no leader";
    }
    if (f->applied < f->commit) {
        return "applying committed entries";
    }
    return NULL;
}

void tandem_readiness_facts_read(struct tandem_raft *raft, const struct tandem_bcp *bcp,
                                 struct tandem_readiness_facts *out)
{
    struct tandem_member leader;
    out->fenced = bcp->fenced;
    out->quarantined = bcp->quarantined;
    out->leader_known = tandem_raft_leader(raft, &leader) == 0;
    out->applied = raft_last_applied(&raft->raft);
    out->commit = raft_commit_index(&raft->raft);
}
