/* The node's side of the audit trail: requests and events become audit records, queued in
 * memory and proposed as one AuditAppend per loop turn (a read never costs its own raft round);
 * the chain itself is computed at apply (replication/domain/audit.h). */
#ifndef TANDEM_NODE_AUDIT_H
#define TANDEM_NODE_AUDIT_H

#include <stdbool.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

struct tandem_node;
struct tandem_http_request;

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

/* An anonymous refusal (401): recorded once a minute per source, with the number of refusals
 * from it since the previous record in detail, so a flood cannot fill the trail. */
void tandem_audit_anonymous(struct tandem_node *node, const struct tandem_http_request *r,
                            const char *action, const char *object, int status);
/* The leader's side of a follower's forwarded records: queues n records given as JSON objects
 * {actor, actor_kind, via, source, node, action, object, status, detail} (checked first: returns
 * -1 with why and queues nothing when one is malformed, or when they do not fit the queue);
 * committed(arg, status) runs once when all of them are applied or one could not be. */
int tandem_audit_forwarded(struct tandem_node *node, json_t *records,
                           void (*committed)(void *arg, int status), void *arg, char *why);
/* {"seq","hash"} of the chain head as of the applied state (NULL on a store error). */
json_t *tandem_audit_head_json(struct tandem_node *node);

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
