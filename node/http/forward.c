/* Follower-to-leader forwarding over a pool of kept-alive connections, relaying the answer. */
#include "node/http/forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/log.h"
#include "node/node.h"
#include "node/api/api.h"

/* Headers of the leader's answer that travel back to the client. */
static const char *const relayed_headers[] = {
    "X-Tandem-Mod-Index", "X-Tandem-Create-Index", "X-Tandem-Applied-Index",
    "X-Tandem-Node",      "Retry-After",
};

/* Headers of the client's request that the leader needs (who acts, what the body is). */
static const char *const forwarded_headers[] = {"Content-Type", TANDEM_USER_HEADER};

#define FORWARD_ATTEMPTS_MAX 3 /* sends of one request whose earlier tries wrote no byte */

/* A client to one leader. When leadership moves, its requests already sent are let finish
 * (cancelling them would turn writes the old leader may still apply into errors); it closes
 * once the last answer is in, or at shutdown. */
struct tandem_forward_client {
    struct tandem_httpc http;
    struct tandem_forwarder *f;
    unsigned outstanding;
    bool retiring, closing;
    struct tandem_forward_client *next; /* in f->retiring */
};

struct forward {
    struct tandem_httpc_request req;
    struct tandem_forwarder *f;
    struct tandem_forward_client *via; /* the client this attempt went through */
    struct tandem_http_request *r;
    unsigned attempts;
};

static int forward_start(struct forward *fw);

void tandem_forwarder_init(struct tandem_forwarder *f, uv_loop_t *loop, struct tandem_node *node,
                           unsigned connections, unsigned timeout_ms)
{
    memset(f, 0, sizeof *f);
    f->loop = loop;
    f->node = node;
    f->connections = connections;
    f->timeout_ms = timeout_ms;
}

static void maybe_closed(struct tandem_forwarder *f)
{
    if (f->closing && f->retired == 0 && f->client == NULL && f->close_cb != NULL) {
        void (*cb)(struct tandem_forwarder *) = f->close_cb;
        f->close_cb = NULL;
        cb(f);
    }
}

static void client_closed_cb(struct tandem_httpc *c)
{
    struct tandem_forward_client *fc = (struct tandem_forward_client *)c;
    struct tandem_forwarder *f = fc->f;
    free(fc);
    f->retired--;
    maybe_closed(f);
}

/* Closes a retiring client (cancelling what it still holds); unlinks it first. */
static void client_close(struct tandem_forward_client *fc)
{
    struct tandem_forwarder *f = fc->f;
    for (struct tandem_forward_client **p = &f->retiring; *p != NULL; p = &(*p)->next) {
        if (*p == fc) {
            *p = fc->next;
            break;
        }
    }
    fc->closing = true;
    tandem_httpc_close(&fc->http, client_closed_cb);
}

static void retire_client(struct tandem_forwarder *f)
{
    struct tandem_forward_client *fc = f->client;
    if (fc == NULL) {
        return;
    }
    f->client = NULL;
    f->target[0] = '\0';
    f->retired++;
    fc->retiring = true;
    fc->next = f->retiring;
    f->retiring = fc;
    if (fc->outstanding == 0) {
        client_close(fc);
    }
}

/* The client for the leader's API URL, created or replaced when the leader changed. */
static struct tandem_httpc *client_for(struct tandem_forwarder *f, const struct tandem_member *m)
{
    char host[TANDEM_HOSTPORT_LEN_MAX + 1];
    int port;
    if (f->client != NULL && strcmp(f->target, m->api) == 0) {
        return &f->client->http;
    }
    retire_client(f);
    const char *hostport = strstr(m->api, "://");
    hostport = hostport == NULL ? m->api : hostport + 3;
    if (strncmp(m->api, "http://", 7) != 0 ||
        tandem_hostport_split(hostport, host, sizeof host, &port) != 0) {
        return NULL;
    }
    struct tandem_forward_client *fc = calloc(1, sizeof *fc);
    if (fc == NULL) {
        return NULL;
    }
    if (tandem_httpc_init(&fc->http, f->loop, host, port, f->connections, f->timeout_ms) != 0) {
        free(fc);
        return NULL;
    }
    fc->f = f;
    f->client = fc;
    snprintf(f->target, sizeof f->target, "%s", m->api);
    return &fc->http;
}

static void forward_cb(struct tandem_httpc_request *req, int status,
                       const struct tandem_httpc_response *resp)
{
    struct forward *fw = req->data;
    struct tandem_forwarder *f = fw->f;
    struct tandem_forward_client *via = fw->via;
    via->outstanding--;
    if (via->retiring && !via->closing && via->outstanding == 0) {
        client_close(via); /* the last answer from a former leader is in */
    }
    char headers[1024];
    size_t used = 0;
    /* A kept-alive connection the leader closed as idle fails before any byte is written: a
     * retry is then safe even for a write. */
    if (status != 0 && !tandem_httpc_request_sent(req) && fw->attempts < FORWARD_ATTEMPTS_MAX &&
        !f->closing && forward_start(fw) == 0) {
        return;
    }
    /* Nothing reached a leader, or a former leader said it did nothing: wait for the
     * current leader and send it there (node/http/park.h bounds the wait). */
    bool retry_safe = (status != 0 && !tandem_httpc_request_sent(req)) ||
                      (status == 0 && resp != NULL && resp->status == 503 &&
                       tandem_httpc_response_header(resp, TANDEM_RETRY_SAFE_HEADER) != NULL);
    if (retry_safe && !f->closing && tandem_park(&f->node->park, fw->r)) {
        free(fw);
        return;
    }
    if (status != 0 || resp == NULL) {
        f->failed++;
        tandem_route_error(f->node, fw->r, 503, "forwarding to the leader failed: %s",
                           uv_strerror(status));
        free(fw);
        return;
    }
    headers[0] = '\0';
    for (size_t i = 0; i < sizeof relayed_headers / sizeof relayed_headers[0]; i++) {
        const char *value = tandem_httpc_response_header(resp, relayed_headers[i]);
        if (value != NULL && used < sizeof headers) {
            int n = snprintf(headers + used, sizeof headers - used, "%s: %s\r\n",
                             relayed_headers[i], value);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    if (used >= sizeof headers) {
        headers[0] = '\0';
    }
    const char *content_type = tandem_httpc_response_header(resp, "Content-Type");
    tandem_http_respond(fw->r, resp->status, content_type, headers, resp->body, resp->body_len);
    free(fw);
}

static int forward_start(struct forward *fw)
{
    struct tandem_http_request *r = fw->r;
    char headers[512];
    size_t used = (size_t)snprintf(headers, sizeof headers, "%s: %s\r\n", TANDEM_FORWARDED_HEADER,
                                   fw->f->node->self.name);
    for (size_t i = 0; i < sizeof forwarded_headers / sizeof forwarded_headers[0]; i++) {
        const char *value = tandem_http_request_header(r, forwarded_headers[i]);
        if (value != NULL && used < sizeof headers) {
            int n = snprintf(headers + used, sizeof headers - used, "%s: %s\r\n",
                             forwarded_headers[i], value);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    if (used >= sizeof headers) {
        return UV_E2BIG; /* never send a request whose headers were cut */
    }
    if (fw->f->client == NULL) {
        return UV_ENOTCONN; /* the leader changed meanwhile and its client is gone */
    }
    fw->via = fw->f->client;
    fw->attempts++;
    fw->req.data = fw;
    int rv =
        tandem_httpc_send(&fw->via->http, &fw->req, http_method_str((enum http_method)r->method),
                          r->url, headers, r->body, r->body_len, forward_cb);
    fw->via->outstanding += rv == 0 ? 1 : 0;
    return rv;
}

void tandem_forwarder_send(struct tandem_forwarder *f, struct tandem_http_request *r,
                           const struct tandem_member *leader)
{
    struct tandem_httpc *c = f->closing ? NULL : client_for(f, leader);
    struct forward *fw = c == NULL ? NULL : calloc(1, sizeof *fw);
    if (fw == NULL) {
        tandem_route_error(f->node, r, 503, "cannot reach the leader %s at %s", leader->name,
                           leader->api);
        return;
    }
    fw->f = f;
    fw->r = r;
    int rv = forward_start(fw);
    if (rv != 0) {
        free(fw);
        tandem_route_error(f->node, r, rv == UV_ENOBUFS ? 429 : 503,
                           "forwarding to the leader failed: %s", uv_strerror(rv));
        return;
    }
    f->forwarded++;
}

void tandem_forwarder_close(struct tandem_forwarder *f, void (*cb)(struct tandem_forwarder *f))
{
    f->closing = true;
    f->close_cb = cb;
    retire_client(f);
    while (f->retiring != NULL) {
        client_close(f->retiring); /* shutting down: pending answers are cancelled */
    }
    maybe_closed(f);
}
