/* Whether a node is ready to serve: the one rule behind GET /readyz and systemd's READY=1. */
#include "node/readiness.h"

#include "node/node.h"

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

void tandem_readiness_facts_read(struct tandem_node *node, struct tandem_readiness_facts *out)
{
    struct tandem_member leader;
    out->fenced = node->bcp.fenced;
    out->quarantined = node->bcp.quarantined;
    out->leader_known = tandem_raft_leader(&node->raft, &leader) == 0;
    out->applied = raft_last_applied(&node->raft.raft);
    out->commit = raft_commit_index(&node->raft.raft);
}
