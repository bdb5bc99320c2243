/* The audit queue a node owns (struct tandem_node embeds it) and what the node's lifecycle and
 * main call on it; the calls that make records are node/audit.h, both implemented in
 * node/audit.c. */
#ifndef TANDEM_NODE_AUDIT_QUEUE_H
#define TANDEM_NODE_AUDIT_QUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct tandem_node;

#define TANDEM_AUDIT_QUEUE_MAX           8192 /* records waiting for their AuditAppend on one node */
#define TANDEM_AUDIT_RETRY_MS            200 /* a follower's wait after the leader did not take records */
#define TANDEM_AUDIT_ANONYMOUS_SOURCES   64    /* sources whose anonymous refusals are counted */
#define TANDEM_AUDIT_ANONYMOUS_WINDOW_MS 60000 /* one record per source per this long */
#define TANDEM_AUDIT_SOURCE_BYTES        64    /* an IPv6 address */

struct tandem_audit_item; /* internal */

/* Anonymous refusals (401) from one source: one record a minute, the rest counted into it. */
struct tandem_audit_source {
    char source[TANDEM_AUDIT_SOURCE_BYTES]; /* "" = a free slot */
    uint64_t window_ms;                     /* uv_now of its last record */
    uint64_t suppressed;                    /* refusals since, not recorded one by one */
};

struct tandem_audit {
    struct tandem_audit_item *head, *tail;  /* owned: queued, oldest first */
    struct tandem_audit_item *refused_head; /* owned: tandem_audit_then calls refused (full) */
    unsigned queued;
    uint64_t recorded;       /* records whose AuditAppend was applied */
    uint64_t failed;         /* records that could not be recorded (logged at error) */
    uint64_t refused;        /* records refused because the queue was full (logged at error) */
    uint64_t proposals;      /* AuditAppend commands proposed */
    bool forwarding;         /* a follower's POST /v1/node/audit is in flight */
    uint64_t retry_after_ms; /* uv_now before which a follower does not send again */
    struct tandem_audit_source anonymous[TANDEM_AUDIT_ANONYMOUS_SOURCES];
};

/* tandemd --audit-verify DATA_DIR: walks the chain in a stopped node's (or a copy's) state store
 * and prints the verdict as one JSON line on out. Returns 0 intact, 1 broken, 2 no store or an
 * error (one line on err). */
int tandem_audit_verify_dir(const char *data_dir, FILE *out, FILE *err);

/* Whether the queue is full: the router refuses requests (503) rather than leave them
 * unrecorded. */
bool tandem_audit_full(const struct tandem_node *node);
/* Proposes what is queued as one AuditAppend (the node's flush check, before the proposer's
 * flush, every loop turn). */
void tandem_audit_flush(struct tandem_node *node);
/* Fails everything queued with status (stopping). */
void tandem_audit_fail_queued(struct tandem_node *node, int status);

#endif
