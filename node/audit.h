/* The node's side of the audit trail: requests and events become audit records, queued in
 * memory and proposed as one AuditAppend per loop turn (a read never costs its own raft round);
 * the chain itself is computed at apply (replication/domain/audit.h). */
#ifndef TANDEM_NODE_AUDIT_H
#define TANDEM_NODE_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

struct tandem_node;
struct tandem_http_request;

#define TANDEM_AUDIT_QUEUE_MAX 8192 /* records waiting for their AuditAppend on one node */

struct tandem_audit_item; /* internal */

struct tandem_audit {
    struct tandem_audit_item *head, *tail;  /* owned: queued, oldest first */
    struct tandem_audit_item *refused_head; /* owned: tandem_audit_then calls refused (full) */
    unsigned queued;
    uint64_t recorded;  /* records whose AuditAppend was applied */
    uint64_t failed;    /* records that could not be recorded (logged at error) */
    uint64_t refused;   /* records refused because the queue was full (logged at error) */
    uint64_t proposals; /* AuditAppend commands proposed */
};

/* Batched into replicated audit records; never blocks; detail may be NULL; never put a
 * personal-data value or a password in any field. r may be NULL for an event no request caused
 * (policy); the actor, its kind, how it authenticated and the source come from r. */
void tandem_audit(struct tandem_node *node, const struct tandem_http_request *r, const char *action,
                  const char *object, int status, const char *detail);
/* For reads of personal data: committed runs once the record is committed (status 0) or could
 * not be (then the read must be refused, 503). committed always runs, never inside this call. */
void tandem_audit_then(struct tandem_node *node, const struct tandem_http_request *r,
                       const char *action, const char *object,
                       void (*committed)(void *arg, int status), void *arg);

/* Whether the queue is full: the router refuses requests (503) rather than leave them
 * unrecorded. */
bool tandem_audit_full(const struct tandem_node *node);
/* Proposes what is queued as one AuditAppend (the node's flush check, before the proposer's
 * flush, every loop turn). */
void tandem_audit_flush(struct tandem_node *node);
/* Fails everything queued with status (stopping). */
void tandem_audit_fail_queued(struct tandem_node *node, int status);

#endif
