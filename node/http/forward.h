/* Forwarding from a follower to the leader: writes and linearizable reads travel over kept-alive
 * HTTP connections and the leader's answer is relayed unchanged. */
#ifndef TANDEM_NODE_HTTP_FORWARD_H
#define TANDEM_NODE_HTTP_FORWARD_H

#include <stdbool.h>
#include <uv.h>

#include "consensus/member.h"
#include "node/http/server.h"
#include "node/http/client.h"

/* Marks a forwarded request so that a node that is not the leader either never forwards it
 * again (no loops during elections). */
#define TANDEM_FORWARDED_HEADER "X-Tandem-Forwarded-By"
/* Who acts (the per-person user id), recorded as the actor of domain writes. */
#define TANDEM_USER_HEADER "X-Tandem-User"
/* On a 503 from a node that is not the leader: the request was not acted on. */
#define TANDEM_RETRY_SAFE_HEADER "X-Tandem-Retry-Safe"

struct tandem_node;
struct tandem_forward_client;

struct tandem_forwarder {
    uv_loop_t *loop;                        /* borrowed */
    struct tandem_node *node;               /* borrowed */
    struct tandem_forward_client *client;   /* owned: to the current leader, NULL when none */
    struct tandem_forward_client *retiring; /* owned: former leaders' clients still answering */
    char target[TANDEM_URL_LEN_MAX + 1];    /* the leader's API URL the client talks to */
    unsigned connections, timeout_ms;
    unsigned retired; /* clients closing */
    bool closing;
    void (*close_cb)(struct tandem_forwarder *f);
    uint64_t forwarded, failed;
};

void tandem_forwarder_init(struct tandem_forwarder *f, uv_loop_t *loop, struct tandem_node *node,
                           unsigned connections, unsigned timeout_ms);
/* Sends r to the leader and relays the answer; on failure answers 503 itself. */
void tandem_forwarder_send(struct tandem_forwarder *f, struct tandem_http_request *r,
                           const struct tandem_member *leader);
void tandem_forwarder_close(struct tandem_forwarder *f, void (*cb)(struct tandem_forwarder *f));

#endif
