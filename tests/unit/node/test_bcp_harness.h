/* Shared by the node/bcp and leader-watch unit tests: a real libuv loop driven until a condition
 * holds, and a tiny HTTP peer on 127.0.0.1 whose answers the test chooses. */
#ifndef TANDEM_TESTS_UNIT_NODE_TEST_BCP_HARNESS_H
#define TANDEM_TESTS_UNIT_NODE_TEST_BCP_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "node/http/server.h"

#define HARNESS_TIMEOUT_MS 10000 /* every wait in these tests ends by then */

/* The peer answers every request with status and body (a JSON text); status 0: it holds no
 * request (answers 503 at once), so a probe of it fails. */
struct harness {
    uv_loop_t loop;
    uv_timer_t tick; /* wakes the loop while the tests wait */
    struct tandem_http_server peer;
    int port;
    char url[64]; /* "http://127.0.0.1:<port>" */
    int status;
    char body[512];
    unsigned requests;
    char last_path[128];
    int peer_closed;
};

static inline void harness_tick_cb(uv_timer_t *t)
{
    (void)t;
}

static inline void harness_peer_cb(struct tandem_http_server *s, struct tandem_http_request *r)
{
    struct harness *h = s->data;
    h->requests++;
    snprintf(h->last_path, sizeof h->last_path, "%s", r->path);
    if (h->status == 0) {
        tandem_http_respond_json(r, 503, NULL, "{\"error\":\"down\"}");
    } else {
        tandem_http_respond_json(r, h->status, NULL, h->body);
    }
}

static inline void harness_start(struct harness *h)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    memset(h, 0, sizeof *h);
    assert_int_equal(uv_loop_init(&h->loop), 0);
    assert_int_equal(uv_timer_init(&h->loop, &h->tick), 0);
    assert_int_equal(tandem_http_server_init(&h->peer, &h->loop, NULL, harness_peer_cb, h), 0);
    assert_int_equal(tandem_http_server_listen(&h->peer, "127.0.0.1", 0, errmsg), 0);
    h->port = tandem_http_server_port(&h->peer);
    assert_true(h->port > 0);
    snprintf(h->url, sizeof h->url, "http://127.0.0.1:%d", h->port);
}

/* Runs the loop until done(arg) or HARNESS_TIMEOUT_MS; returns whether done. */
static inline int harness_run_until(struct harness *h, int (*done)(void *), void *arg)
{
    assert_int_equal(uv_timer_start(&h->tick, harness_tick_cb, 5, 5), 0);
    uv_update_time(&h->loop);
    uint64_t deadline = uv_now(&h->loop) + HARNESS_TIMEOUT_MS;
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

static inline unsigned harness_handles(struct harness *h)
{
    unsigned n = 0;
    uv_walk(&h->loop, harness_count_handle, &n);
    return n;
}

static inline void harness_peer_closed_cb(struct tandem_http_server *s)
{
    struct harness *h = s->data;
    h->peer_closed = 1;
}

static inline int harness_only_tick_left(void *arg)
{
    struct harness *h = arg;
    return h->peer_closed && harness_handles(h) <= 1;
}

/* Closes the peer (the test closed what it started first), then checks that the loop ends
 * empty and closes. */
static inline void harness_stop(struct harness *h)
{
    tandem_http_server_close(&h->peer, harness_peer_closed_cb);
    assert_true(harness_run_until(h, harness_only_tick_left, h));
    uv_close((uv_handle_t *)&h->tick, NULL);
    assert_int_equal(uv_run(&h->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(harness_handles(h), 0);
    assert_int_equal(uv_loop_close(&h->loop), 0);
}

#endif
