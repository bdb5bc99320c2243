/* The audit chain's latest verdict on this node and its /metrics series; the periodic walk that
 * reaches it is node/audit_walk.c. */
#ifndef TANDEM_NODE_AUDIT_CHECK_H
#define TANDEM_NODE_AUDIT_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* How often each node walks its whole audit chain (the first walk runs at start). The walk reads
 * a snapshot of the store on the thread pool: the loop is never held, whatever the chain's size. */
#define TANDEM_AUDIT_CHECK_INTERVAL_MS (5u * 60u * 1000u)

struct tandem_node;
struct tandem_audit_verdict;

/* The last verdict: by the periodic walk or by GET /v1/audit/verify, whichever came last. */
struct tandem_audit_check {
    bool running;             /* a walk is on the thread pool (tandem_node_stop waits for it) */
    bool known;               /* a walk has finished since start */
    bool ok;                  /* the chain was intact at that walk */
    int error;                /* the walk could not read the store: 0, or an LMDB code */
    uint64_t records;         /* records the walk checked */
    uint64_t broken_at;       /* first broken link when !ok */
    int64_t verified_at_ms;   /* wall clock when the verdict was reached (0: never) */
    uint64_t duration_ns;     /* how long the walk took */
    uint64_t started_ms;      /* uv_now at the start of the last periodic walk (0: none yet) */
    uint64_t walks, failures; /* walks finished; walks that could not read the store */
};

/* Once per loop turn (node.c): starts a walk when TANDEM_AUDIT_CHECK_INTERVAL_MS have passed
 * since the last one started (at once after start) and none is running (node/audit_walk.c). */
void tandem_audit_check_tick(struct tandem_node *node);
/* A verdict reached elsewhere (GET /v1/audit/verify) becomes the latest one. */
void tandem_audit_check_record(struct tandem_audit_check *check,
                               const struct tandem_audit_verdict *verdict, int64_t now_ms,
                               uint64_t duration_ns);
/* The tandem_audit_chain_* series of check (borrowed) as of now_ms. */
void tandem_audit_check_metrics_write(const struct tandem_audit_check *check, int64_t now_ms,
                                      FILE *out);

#endif
