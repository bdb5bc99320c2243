/* Shared harness of the node unit tests: a loop run with a deadline and closed with a check that
 * nothing is left on it, HTTP servers on 127.0.0.1 (here a "leader" that records what reached
 * it; peer.h adds one whose answers the test chooses) and client calls. */
#ifndef TANDEM_TESTS_UNIT_NODE_HARNESS_H
#define TANDEM_TESTS_UNIT_NODE_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "node/http/client.h"
#include "node/http/server.h"

#define HARNESS_RUN_TIMEOUT_MS 10000 /* every wait ends by then */
#define HARNESS_TEXT_MAX       512

struct harness {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps UV_RUN_ONCE from blocking while waiting on a condition */
};

static inline void harness_tick_cb(uv_timer_t *t)
{
    (void)t;
}

static inline void harness_init(struct harness *h)
{
    assert_int_equal(uv_loop_init(&h->loop), 0);
    assert_int_equal(uv_timer_init(&h->loop, &h->tick), 0);
}

/* Runs the loop until done(arg) holds (true) or the deadline passes (false). */
static inline int harness_run_until(struct harness *h, int (*done)(void *), void *arg)
{
    assert_int_equal(uv_timer_start(&h->tick, harness_tick_cb, 5, 5), 0);
    uv_update_time(&h->loop);
    uint64_t deadline = uv_now(&h->loop) + HARNESS_RUN_TIMEOUT_MS;
    int ok = done(arg);
    while (!ok && uv_now(&h->loop) < deadline) {
        uv_run(&h->loop, UV_RUN_ONCE);
        ok = done(arg);
    }
    assert_int_equal(uv_timer_stop(&h->tick), 0);
    return ok;
}

static inline void harness_run_for(struct harness *h, unsigned ms)
{
    assert_int_equal(uv_timer_start(&h->tick, harness_tick_cb, 5, 5), 0);
    uv_update_time(&h->loop);
    uint64_t deadline = uv_now(&h->loop) + ms;
    while (uv_now(&h->loop) < deadline) {
        uv_run(&h->loop, UV_RUN_ONCE);
    }
    assert_int_equal(uv_timer_stop(&h->tick), 0);
}

static inline void harness_count_handle(uv_handle_t *handle, void *arg)
{
    (void)handle;
    (*(unsigned *)arg)++;
}

/* The handles on the loop, closing ones included. */
static inline unsigned harness_handles(struct harness *h)
{
    unsigned n = 0;
    uv_walk(&h->loop, harness_count_handle, &n);
    return n;
}

static inline int harness_only_tick_left(void *arg)
{
    return harness_handles(arg) <= 1;
}

/* The test closed what it started: waits until only the tick is left, closes it, then checks
 * that the loop ends empty and closes. */
static inline void harness_close(struct harness *h)
{
    assert_true(harness_run_until(h, harness_only_tick_left, h));
    uv_close((uv_handle_t *)&h->tick, NULL);
    assert_int_equal(uv_run(&h->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(harness_handles(h), 0);
    assert_int_equal(uv_loop_close(&h->loop), 0);
}

/* ---- servers and clients: started, and closed with a wait until they are ---- */

struct closed_flag {
    int closed;
};

static inline void httpc_closed_cb(struct tandem_httpc *c)
{
    ((struct closed_flag *)c->data)->closed = 1;
}

static inline void server_closed_cb(struct tandem_http_server *s)
{
    ((struct closed_flag *)s->data)->closed = 1;
}

static inline int flag_set(void *arg)
{
    return ((struct closed_flag *)arg)->closed;
}

/* Closes the client c, or else the server s (its data then points at the flag: its owner is not
 * read after), and runs the loop until it is closed. */
static inline void harness_stop_one(struct harness *h, struct tandem_httpc *c,
                                    struct tandem_http_server *s)
{
    struct closed_flag flag = {0};
    if (c != NULL) {
        c->data = &flag;
        tandem_httpc_close(c, httpc_closed_cb);
    } else {
        s->data = &flag;
        tandem_http_server_close(s, server_closed_cb);
    }
    assert_true(harness_run_until(h, flag_set, &flag));
}

static inline void client_stop(struct harness *h, struct tandem_httpc *c)
{
    harness_stop_one(h, c, NULL);
}

/* Starts s on 127.0.0.1:port (0: any), handle answering with s->data = data; returns the port. */
static inline int harness_listen(struct harness *h, struct tandem_http_server *s,
                                 tandem_http_handler_fn handle, void *data, int port)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    assert_int_equal(tandem_http_server_init(s, &h->loop, NULL, handle, data), 0);
    assert_int_equal(tandem_http_server_listen(s, "127.0.0.1", port, errmsg), 0);
    int bound = tandem_http_server_port(s);
    assert_true(bound > 0);
    return bound;
}

/* ---- the leader: answers 200 with a header and the request echoed, recording what came ---- */

struct leader {
    struct tandem_http_server server;
    int port, handled;
    char forwarded_by[HARNESS_TEXT_MAX], user[HARNESS_TEXT_MAX], content_type[HARNESS_TEXT_MAX];
    char method_url[HARNESS_TEXT_MAX], body[HARNESS_TEXT_MAX];
    char forwarded_user[HARNESS_TEXT_MAX], forwarded_kind[HARNESS_TEXT_MAX];
    struct tandem_tls_peer peer; /* the last request's */
    int answer_status; /* 0: 200 with the echo; else this status (503 adds the retry-safe header) */
    unsigned long long applied_index; /* sent as X-Tandem-Applied-Index when not 0 */
};

static inline void leader_copy(char *out, const char *value)
{
    snprintf(out, HARNESS_TEXT_MAX, "%s", value == NULL ? "" : value);
}

static inline void leader_handle(struct tandem_http_server *s, struct tandem_http_request *r)
{
    struct leader *l = s->data;
    l->handled++;
    leader_copy(l->forwarded_by, tandem_http_request_header(r, "X-Tandem-Forwarded-By"));
    leader_copy(l->user, tandem_http_request_header(r, "X-Tandem-User"));
    leader_copy(l->content_type, tandem_http_request_header(r, "Content-Type"));
    leader_copy(l->forwarded_user, tandem_http_request_header(r, "X-Tandem-Forwarded-User"));
    leader_copy(l->forwarded_kind, tandem_http_request_header(r, "X-Tandem-Forwarded-Kind"));
    l->peer = r->peer;
    snprintf(l->method_url, sizeof l->method_url, "%s %s",
             http_method_str((enum http_method)r->method), r->url);
    leader_copy(l->body, r->body);
    if (l->answer_status == 503) {
        tandem_http_respond_json(r, 503, "X-Tandem-Retry-Safe: 1\r\n", "{\"error\":\"not me\"}");
        return;
    }
    char headers[256];
    int n = snprintf(headers, sizeof headers, "%s",
                     "X-Tandem-Mod-Index: 7\r\nX-Tandem-Node: leader-1\r\nX-Private: no\r\n");
    if (l->applied_index != 0) {
        snprintf(headers + n, sizeof headers - (size_t)n, "X-Tandem-Applied-Index: %llu\r\n",
                 l->applied_index);
    }
    tandem_http_respond(r, 200, "application/json", headers, "{\"ok\":true}", 11);
}

/* Listens on 127.0.0.1:port (0: any). */
static inline void leader_start(struct harness *h, struct leader *l, int port)
{
    memset(l, 0, sizeof *l);
    l->port = harness_listen(h, &l->server, leader_handle, l, port);
}

static inline void leader_stop(struct harness *h, struct leader *l)
{
    harness_stop_one(h, NULL, &l->server);
}

/* A port nothing listens on (bound, then released). */
static inline int harness_dead_port(struct harness *h)
{
    struct leader l;
    leader_start(h, &l, 0);
    int port = l.port;
    leader_stop(h, &l);
    return port;
}

/* ---- client calls ---- */

struct call {
    struct tandem_httpc_request req;
    int done, status, http_status;
    char body[HARNESS_TEXT_MAX];
    char mod_index[HARNESS_TEXT_MAX], node[HARNESS_TEXT_MAX], retry_after[HARNESS_TEXT_MAX];
    char private_header[HARNESS_TEXT_MAX];
    char www_authenticate[HARNESS_TEXT_MAX], applied_index[HARNESS_TEXT_MAX];
};

static inline void call_cb(struct tandem_httpc_request *req, int status,
                           const struct tandem_httpc_response *resp)
{
    struct call *c = req->data;
    c->done = 1;
    c->status = status;
    if (resp != NULL) {
        c->http_status = resp->status;
        leader_copy(c->body, resp->body);
        leader_copy(c->mod_index, tandem_httpc_response_header(resp, "X-Tandem-Mod-Index"));
        leader_copy(c->node, tandem_httpc_response_header(resp, "X-Tandem-Node"));
        leader_copy(c->retry_after, tandem_httpc_response_header(resp, "Retry-After"));
        leader_copy(c->private_header, tandem_httpc_response_header(resp, "X-Private"));
        leader_copy(c->www_authenticate, tandem_httpc_response_header(resp, "WWW-Authenticate"));
        leader_copy(c->applied_index, tandem_httpc_response_header(resp, "X-Tandem-Applied-Index"));
    }
}

static inline int call_done(void *arg)
{
    return ((struct call *)arg)->done;
}

static inline void call_send(struct tandem_httpc *client, struct call *c, const char *method,
                             const char *target, const char *headers, const char *body)
{
    memset(c, 0, sizeof *c);
    c->req.data = c;
    assert_int_equal(tandem_httpc_send(client, &c->req, method, target, headers, body,
                                       body == NULL ? 0 : strlen(body), call_cb),
                     0);
}

#endif
