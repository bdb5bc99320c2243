/* A tiny HTTP peer on 127.0.0.1 whose answers the test chooses, for the node/bcp and leader-watch
 * unit tests; the loop it runs on is the shared harness's. */
#ifndef TANDEM_TESTS_UNIT_NODE_PEER_H
#define TANDEM_TESTS_UNIT_NODE_PEER_H

#include "harness.h"

/* The peer answers every request with status and body (a JSON text); status 0: it holds no
 * request (answers 503 at once), so a probe of it fails. */
struct peer {
    struct tandem_http_server server;
    int port;
    char url[64]; /* "http://127.0.0.1:<port>" */
    int status;
    char body[512];
    unsigned requests;
    char last_path[128];
    char last_action[128]; /* the last path that was not the runtime's epoch probe: "" none */
    unsigned posts;        /* POST requests, and the last one's path and body */
    char last_post_path[128];
    char last_post_body[256];
};

static inline void peer_answer(struct tandem_http_server *s, struct tandem_http_request *r)
{
    struct peer *p = s->data;
    p->requests++;
    snprintf(p->last_path, sizeof p->last_path, "%s", r->path);
    if (strcmp(r->path, "/v1/node/epoch") != 0) { /* probes come on their own timer */
        snprintf(p->last_action, sizeof p->last_action, "%s", r->path);
    }
    if (r->method == HTTP_POST) {
        p->posts++;
        snprintf(p->last_post_path, sizeof p->last_post_path, "%s", r->path);
        snprintf(p->last_post_body, sizeof p->last_post_body, "%s", r->body);
    }
    if (p->status == 0) {
        tandem_http_respond_json(r, 503, NULL, "{\"error\":\"down\"}");
    } else {
        tandem_http_respond_json(r, p->status, NULL, p->body);
    }
}

static inline void peer_start(struct harness *h, struct peer *p)
{
    memset(p, 0, sizeof *p);
    p->port = harness_listen(h, &p->server, peer_answer, p, 0);
    snprintf(p->url, sizeof p->url, "http://127.0.0.1:%d", p->port);
}

static inline void peer_stop(struct harness *h, struct peer *p)
{
    harness_stop_one(h, NULL, &p->server);
}

#endif
