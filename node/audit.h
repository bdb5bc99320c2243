/* The node's side of the audit trail: requests and events become audit records, queued in
 * memory and proposed as one AuditAppend per loop turn (a read never costs its own raft round);
 * the chain itself is computed at apply (replication/domain/audit.h). */
#ifndef TANDEM_NODE_AUDIT_H
#define TANDEM_NODE_AUDIT_H

#include <jansson.h>

#include "node/audit_queue.h"

struct tandem_node;
struct tandem_http_request;

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

#endif
