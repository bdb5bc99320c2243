/* Forwarding from a follower to the leader: writes and linearizable reads travel over kept-alive
 * HTTP connections and the leader's answer is relayed unchanged. */
#ifndef TANDEM_NODE_HTTP_FORWARD_H
#define TANDEM_NODE_HTTP_FORWARD_H

#include <stdbool.h>
#include <uv.h>

#include "consensus/member.h"
#include "node/http/server.h"
#include "node/http/client.h"
#include "storage/list.h"

/* Marks a forwarded request so that a node that is not the leader either never forwards it
 * again (no loops during elections). */
#define TANDEM_FORWARDED_HEADER "X-Tandem-Forwarded-By"
/* Who called the forwarding node (its TLS client certificate's name) and what kind of
 * certificate that was ("user" or "node"); trusted only from a peer with a NODE certificate. */
#define TANDEM_FORWARDED_USER_HEADER "X-Tandem-Forwarded-User"
#define TANDEM_FORWARDED_KIND_HEADER "X-Tandem-Forwarded-Kind"
/* Who acts (the per-person user id), recorded as the actor of domain writes. */
#define TANDEM_USER_HEADER "X-Tandem-User"
/* On a 503 from a node that is not the leader: the request was not acted on. */
#define TANDEM_RETRY_SAFE_HEADER "X-Tandem-Retry-Safe"
/* The body of a 503 (with Retry-After) to a request no leader took: none known, or none
 * answered before the request's wait ran out. */
#define TANDEM_NO_LEADER_JSON "{\"error\":\"no leader\",\"leader\":null}"

struct tandem_park;

/* How the forwarder answers a request it could not relay: through its owner, who adds its own
 * headers and counts the answer. json is a complete JSON text. */
typedef void (*tandem_forward_answer_fn)(void *data, struct tandem_http_request *r, int status,
                                         const char *extra_headers, const char *json);

struct tandem_forwarder {
    struct tandem_http_pool pool;        /* owned: one client, to the current leader */
    const char *self_name;               /* borrowed: sent in TANDEM_FORWARDED_HEADER */
    struct tandem_park *park;            /* borrowed: where retry-safe failures wait */
    tandem_forward_answer_fn answer;     /* errors go back through the owner */
    void *answer_data;                   /* borrowed */
    char target[TANDEM_URL_LEN_MAX + 1]; /* the leader's API URL the client talks to */
    bool closing;
    void (*close_cb)(struct tandem_forwarder *f);
    uint64_t forwarded, failed;
    /* The leader's name, which its TLS certificate must carry. */
    char target_node[TANDEM_NAME_LEN_MAX + 1];
    /* Answers of tandem_forwarder_send_held waiting for this node to apply what the leader had
     * applied when it answered (its X-Tandem-Applied-Index), at most hold_ns. */
    uint64_t (*applied)(void *data); /* NULL: nothing is held */
    void *applied_data;
    uint64_t hold_ns;
    struct tandem_list held; /* owned struct forward_held, oldest first */
    uv_timer_t hold_timer;   /* polls while held is not empty */
    uint64_t held_total, hold_expired;
};

/* connections and timeout_ms per client as in tandem_httpc_init. Returns 0 or UV_EINVAL. */
int tandem_forwarder_init(struct tandem_forwarder *f, uv_loop_t *loop, const char *self_name,
                          struct tandem_park *park, unsigned connections, unsigned timeout_ms,
                          tandem_forward_answer_fn answer, void *answer_data);
/* The pool's TLS identity (NULL = plaintext): see tandem_http_pool_set_tls. */
void tandem_forwarder_set_tls(struct tandem_forwarder *f, struct tandem_tls_ctx *tls);
/* Sends r to the leader and relays the answer, with r's caller (r->peer, when it has one) in
 * TANDEM_FORWARDED_USER_HEADER and TANDEM_FORWARDED_KIND_HEADER; on failure parks r (when nothing
 * reached a leader, or a former leader handed it back) or answers 503 through answer (also a
 * hand-back once the park no longer takes it). */
void tandem_forwarder_send(struct tandem_forwarder *f, struct tandem_http_request *r,
                           const struct tandem_member *leader);
/* As tandem_forwarder_send, but the leader's answer reaches the client only once this node
 * has applied the leader's applied index of that answer (the hold timer polls it), or after
 * hold_ms: the caller's next request to this node then sees what it changed. Without
 * tandem_forwarder_set_hold it is tandem_forwarder_send. */
void tandem_forwarder_send_held(struct tandem_forwarder *f, struct tandem_http_request *r,
                                const struct tandem_member *leader);
/* How tandem_forwarder_send_held learns this node's applied index, and its bound in ms. */
void tandem_forwarder_set_hold(struct tandem_forwarder *f, uint64_t (*applied)(void *data),
                               void *data, unsigned hold_ms);
/* Cancels what is in flight (answered 503) and relays what is held; cb runs once every client
 * and the hold timer closed. */
void tandem_forwarder_close(struct tandem_forwarder *f, void (*cb)(struct tandem_forwarder *f));

#endif
