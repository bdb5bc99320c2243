/* Tests of the keep-alive HTTP client against our own server on 127.0.0.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "node/http/server.h"
#include "node/http/client.h"

#define HELD_MAX       2048 /* requests the test server keeps unanswered */
#define CALLS_MAX      2048 /* client requests one test sends */
#define BIG_BODY_BYTES (300u * 1024u)
#define RUN_TIMEOUT_MS 15000 /* every wait in these tests ends by then */

enum server_mode {
    MODE_ECHO,    /* answer at once */
    MODE_DEFER,   /* answer from a timer, newest first */
    MODE_HOLD,    /* keep everything */
    MODE_CLOSE_AT /* answer close_at requests, then close the server from the handler */
};

struct call {
    struct tandem_httpc_request req;
    struct fixture *f;
    unsigned index;
    int calls, status, http_status, body_ok, sent;
    uint64_t done_ms;
};

struct fixture {
    uv_loop_t loop;
    uv_timer_t tick;
    uv_timer_t defer;
    struct tandem_http_server server;
    struct tandem_httpc client;
    int port, server_closed, client_closed, mode;
    unsigned handled, close_at;
    struct tandem_http_request *held[HELD_MAX];
    unsigned held_count;
    struct call *calls; /* CALLS_MAX */
    unsigned callbacks;
};

/* ---- loop helpers ---- */

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

static int run_until(struct fixture *f, int (*done)(void *), void *arg)
{
    uv_timer_start(&f->tick, tick_cb, 5, 5);
    uv_update_time(&f->loop);
    uint64_t deadline = uv_now(&f->loop) + RUN_TIMEOUT_MS;
    int ok = done(arg);
    while (!ok && uv_now(&f->loop) < deadline) {
        uv_run(&f->loop, UV_RUN_ONCE);
        ok = done(arg);
    }
    uv_timer_stop(&f->tick);
    return ok;
}

static void run_for(struct fixture *f, unsigned ms)
{
    uv_timer_start(&f->tick, tick_cb, 5, 5);
    uv_update_time(&f->loop);
    uint64_t deadline = uv_now(&f->loop) + ms;
    while (uv_now(&f->loop) < deadline) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&f->tick);
}

static void count_handle(uv_handle_t *h, void *arg)
{
    (void)h;
    (*(unsigned *)arg)++;
}

static unsigned handles_alive(uv_loop_t *loop)
{
    unsigned n = 0;
    uv_walk(loop, count_handle, &n);
    return n;
}

/* ---- the server side ---- */

static void respond_echo(struct tandem_http_request *r)
{
    if (strcmp(r->path, "/big") == 0) {
        static char big[BIG_BODY_BYTES];
        for (size_t i = 0; i < sizeof big; i++) {
            big[i] = (char)('a' + i % 26);
        }
        tandem_http_respond(r, 200, "application/octet-stream", NULL, big, sizeof big);
        return;
    }
    char body[256];
    int n = snprintf(body, sizeof body, "%s %s len=%zu body=%.64s",
                     http_method_str((enum http_method)r->method), r->url, r->body_len, r->body);
    tandem_http_respond(r, 201, "text/plain", "X-Echo: yes\r\n", body, (size_t)n);
}

static void respond_held(struct fixture *f)
{
    while (f->held_count > 0) {
        respond_echo(f->held[--f->held_count]);
    }
}

static void server_close_cb(struct tandem_http_server *s)
{
    struct fixture *f = s->data;
    f->server_closed = 1;
}

static void handler(struct tandem_http_server *s, struct tandem_http_request *r)
{
    struct fixture *f = s->data;
    f->handled++;
    int hold = f->mode == MODE_HOLD || f->mode == MODE_DEFER || strncmp(r->path, "/slow", 5) == 0;
    if (f->mode == MODE_CLOSE_AT && f->handled > f->close_at) {
        hold = 1;
        if (!s->closing) {
            tandem_http_server_close(s, server_close_cb);
        }
    }
    if (!hold) {
        respond_echo(r);
        return;
    }
    assert_true(f->held_count < HELD_MAX);
    f->held[f->held_count++] = r;
}

static void defer_cb(uv_timer_t *t)
{
    struct fixture *f = t->data;
    if (f->mode == MODE_DEFER) {
        respond_held(f);
    }
}

/* ---- the client side ---- */

static void call_cb(struct tandem_httpc_request *req, int status,
                    const struct tandem_httpc_response *resp)
{
    struct call *c = req->data;
    struct fixture *f = c->f;
    c->calls++;
    c->status = status;
    c->sent = tandem_httpc_request_sent(req);
    c->done_ms = uv_now(&f->loop);
    f->callbacks++;
    if (status != 0) {
        assert_null(resp);
        assert_true(status < 0);
        return;
    }
    assert_non_null(resp);
    c->http_status = resp->status;
    char want[256];
    snprintf(want, sizeof want, "POST /item/%u?q=%u len=%zu body=payload-%u", c->index, c->index,
             strlen("payload-") + (size_t)snprintf(NULL, 0, "%u", c->index), c->index);
    const char *echo = tandem_httpc_response_header(resp, "x-echo");
    c->body_ok = resp->body_len == strlen(want) && strcmp(resp->body, want) == 0 && echo != NULL &&
                 strcmp(echo, "yes") == 0;
}

static int send_call(struct fixture *f, unsigned i)
{
    struct call *c = &f->calls[i];
    char target[64], body[64];
    memset(c, 0, sizeof *c);
    c->f = f;
    c->index = i;
    c->req.data = c;
    snprintf(target, sizeof target, "/item/%u?q=%u", i, i);
    int n = snprintf(body, sizeof body, "payload-%u", i);
    return tandem_httpc_send(&f->client, &c->req, "POST", target, "X-Test: 1\r\n", body, (size_t)n,
                             call_cb);
}

struct wait_calls {
    struct fixture *f;
    unsigned count;
};

static int calls_done(void *arg)
{
    struct wait_calls *w = arg;
    return w->f->callbacks >= w->count;
}

static void wait_callbacks(struct fixture *f, unsigned count)
{
    struct wait_calls w = {f, count};
    assert_true(run_until(f, calls_done, &w));
    assert_int_equal(f->callbacks, count);
}

/* ---- setup / teardown ---- */

static int fixture_start(void **state, unsigned connections, unsigned timeout_ms)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->calls = calloc(CALLS_MAX, sizeof *f->calls);
    assert_non_null(f->calls);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_init(&f->loop, &f->defer);
    f->defer.data = f;
    uv_timer_start(&f->defer, defer_cb, 1, 1);
    assert_int_equal(tandem_http_server_init(&f->server, &f->loop, NULL, handler, f), 0);
    char errmsg[256];
    assert_int_equal(tandem_http_server_listen(&f->server, "127.0.0.1", 0, errmsg), 0);
    f->port = tandem_http_server_port(&f->server);
    assert_int_equal(
        tandem_httpc_init(&f->client, &f->loop, "127.0.0.1", f->port, connections, timeout_ms), 0);
    f->client.data = f;
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return fixture_start(state, 4, 0);
}

static void client_close_cb(struct tandem_httpc *c)
{
    struct fixture *f = c->data;
    f->client_closed = 1;
}

static int all_closed(void *arg)
{
    struct fixture *f = arg;
    return f->server_closed && f->client_closed;
}

static int only_tick_left(void *arg)
{
    struct fixture *f = arg;
    return handles_alive(&f->loop) <= 1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tandem_httpc_close(&f->client, client_close_cb);
    respond_held(f);
    if (!f->server.closing) {
        tandem_http_server_close(&f->server, server_close_cb);
    }
    uv_close((uv_handle_t *)&f->defer, NULL);
    assert_true(run_until(f, all_closed, f));
    assert_true(run_until(f, only_tick_left, f));
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(handles_alive(&f->loop), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    /* no callback ran twice, whatever the test did */
    for (unsigned i = 0; i < CALLS_MAX; i++) {
        assert_true(f->calls[i].calls <= 1);
    }
    free(f->calls);
    free(f);
    return 0;
}

/* ---- tests ---- */

static void assert_all_answered(struct fixture *f, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        assert_int_equal(f->calls[i].calls, 1);
        assert_int_equal(f->calls[i].status, 0);
        assert_int_equal(f->calls[i].http_status, 201);
        assert_true(f->calls[i].body_ok);
    }
}

static void test_thousand_requests_four_connections(void **state)
{
    struct fixture *f = *state;
    f->mode = MODE_DEFER; /* answers come late and newest first: the client must still match */
    for (unsigned i = 0; i < 1000; i++) {
        assert_int_equal(send_call(f, i), 0);
    }
    wait_callbacks(f, 1000);
    assert_all_answered(f, 1000);
    struct tandem_http_server_stats st;
    tandem_http_server_stats(&f->server, &st);
    assert_int_equal(st.connections_total, 4);
    assert_int_equal(st.requests_total, 1000);
    assert_int_equal(f->client.stats.connects, 4);

    /* kept alive: a second round uses the same connections */
    f->mode = MODE_ECHO;
    f->callbacks = 0;
    for (unsigned i = 0; i < 1000; i++) {
        assert_int_equal(send_call(f, i), 0);
    }
    wait_callbacks(f, 1000);
    assert_all_answered(f, 1000);
    tandem_http_server_stats(&f->server, &st);
    assert_int_equal(st.connections_total, 4);
}

static void test_server_closes_midway(void **state)
{
    struct fixture *f = *state;
    f->mode = MODE_CLOSE_AT;
    f->close_at = 50;
    for (unsigned i = 0; i < 300; i++) {
        assert_int_equal(send_call(f, i), 0);
    }
    wait_callbacks(f, 300);
    unsigned ok = 0, failed = 0;
    for (unsigned i = 0; i < 300; i++) {
        struct call *c = &f->calls[i];
        assert_int_equal(c->calls, 1);
        if (c->status == 0) {
            assert_true(c->body_ok);
            ok++;
        } else {
            assert_true(c->status < 0);
            failed++;
        }
    }
    /* answers not yet written when the server closed are dropped with their connections */
    assert_true(ok <= 50);
    assert_int_equal(ok + failed, 300);
    assert_true(failed >= 250);
    /* nothing more arrives later */
    run_for(f, 50);
    assert_int_equal(f->callbacks, 300);
    assert_int_equal(f->server_closed, 0); /* the held request is still owed an answer */
    respond_held(f);
    assert_int_equal(f->server_closed, 1);
}

static int setup_short_timeout(void **state)
{
    return fixture_start(state, 2, 150);
}

static void test_timeout(void **state)
{
    struct fixture *f = *state;
    struct call slow, quick_timeout;
    memset(&slow, 0, sizeof slow);
    slow.f = f;
    slow.req.data = &slow;
    uint64_t start = uv_now(&f->loop);
    assert_int_equal(
        tandem_httpc_send(&f->client, &slow.req, "GET", "/slow", NULL, NULL, 0, call_cb), 0);
    wait_callbacks(f, 1);
    assert_int_equal(slow.calls, 1);
    assert_int_equal(slow.status, UV_ETIMEDOUT);
    assert_int_equal(slow.sent, 1);
    assert_true(slow.done_ms - start >= 140);
    assert_true(slow.done_ms - start < 2000);

    /* a per-request timeout overrides the client's */
    memset(&quick_timeout, 0, sizeof quick_timeout);
    quick_timeout.f = f;
    quick_timeout.req.data = &quick_timeout;
    quick_timeout.req.timeout_ms = 30;
    start = uv_now(&f->loop);
    assert_int_equal(
        tandem_httpc_send(&f->client, &quick_timeout.req, "GET", "/slow2", NULL, NULL, 0, call_cb),
        0);
    wait_callbacks(f, 2);
    assert_int_equal(quick_timeout.status, UV_ETIMEDOUT);
    assert_true(quick_timeout.done_ms - start < 140);

    /* the client still works */
    f->calls[0].f = f;
    assert_int_equal(send_call(f, 0), 0);
    wait_callbacks(f, 3);
    assert_all_answered(f, 1);
}

static int setup_one_connection(void **state)
{
    return fixture_start(state, 1, 0);
}

static void test_close_cancels_pending_and_queue_bound(void **state)
{
    struct fixture *f = *state;
    f->mode = MODE_HOLD;
    unsigned n = TANDEM_HTTPC_PIPELINE_DEPTH_MAX + TANDEM_HTTPC_QUEUE_MAX;
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(send_call(f, i), 0);
    }
    struct call extra;
    memset(&extra, 0, sizeof extra);
    assert_int_equal(tandem_httpc_send(&f->client, &extra.req, "GET", "/x", NULL, NULL, 0, call_cb),
                     UV_ENOBUFS);
    run_for(f, 50);
    assert_int_equal(f->handled, TANDEM_HTTPC_PIPELINE_DEPTH_MAX);
    assert_int_equal(f->callbacks, 0);
    tandem_httpc_close(&f->client, client_close_cb);
    assert_int_equal(f->callbacks, n); /* all before close returned */
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(f->calls[i].calls, 1);
        assert_int_equal(f->calls[i].status, UV_ECANCELED);
        assert_int_equal(f->calls[i].sent, i < TANDEM_HTTPC_PIPELINE_DEPTH_MAX);
    }
    assert_int_equal(extra.calls, 0);
    assert_int_equal(send_call(f, 0), UV_ECANCELED);
    assert_int_equal(f->client_closed, 0);
    run_for(f, 20);
    assert_int_equal(f->client_closed, 1);
}

static void test_connect_refused(void **state)
{
    struct fixture *f = *state;
    /* a port bound but never listened on refuses connections */
    uv_tcp_t probe;
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int len = (int)sizeof bound;
    uv_tcp_init(&f->loop, &probe);
    uv_ip4_addr("127.0.0.1", 0, &addr);
    assert_int_equal(uv_tcp_bind(&probe, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_tcp_getsockname(&probe, (struct sockaddr *)&bound, &len), 0);
    int port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    struct tandem_httpc refused;
    assert_int_equal(tandem_httpc_init(&refused, &f->loop, "127.0.0.1", port, 2, 0), 0);
    refused.data = f;
    for (unsigned i = 0; i < 5; i++) {
        struct call *c = &f->calls[i];
        c->f = f;
        c->req.data = c;
        assert_int_equal(
            tandem_httpc_send(&refused, &c->req, "DELETE", "/k", NULL, NULL, 0, call_cb), 0);
    }
    wait_callbacks(f, 5);
    for (unsigned i = 0; i < 5; i++) {
        assert_int_equal(f->calls[i].calls, 1);
        assert_int_equal(f->calls[i].status, UV_ECONNREFUSED);
        assert_int_equal(f->calls[i].sent, 0);
    }
    f->client_closed = 0;
    tandem_httpc_close(&refused, client_close_cb);
    uv_close((uv_handle_t *)&probe, NULL);
    run_for(f, 20);
    assert_int_equal(f->client_closed, 1);
    f->client_closed = 0;
}

static void test_connection_close_and_reconnect(void **state)
{
    struct fixture *f = *state;
    struct call c[3];
    for (unsigned i = 0; i < 3; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].f = f;
        c[i].req.data = &c[i];
        assert_int_equal(tandem_httpc_send(&f->client, &c[i].req, "GET", "/bye",
                                           "Connection: close\r\n", NULL, 0, call_cb),
                         0);
        wait_callbacks(f, i + 1);
        assert_int_equal(c[i].status, 0);
        assert_int_equal(c[i].http_status, 201);
    }
    struct tandem_http_server_stats st;
    tandem_http_server_stats(&f->server, &st);
    assert_int_equal(st.connections_total, 3);

    /* pipelined behind a "Connection: close" request: refused, and the client says it was sent */
    struct tandem_httpc one;
    assert_int_equal(tandem_httpc_init(&one, &f->loop, "127.0.0.1", f->port, 1, 0), 0);
    one.data = f;
    f->callbacks = 0;
    assert_int_equal(tandem_httpc_send(&one, &c[0].req, "GET", "/bye", "Connection: close\r\n",
                                       NULL, 0, call_cb),
                     0);
    assert_int_equal(tandem_httpc_send(&one, &c[1].req, "GET", "/after", NULL, NULL, 0, call_cb),
                     0);
    wait_callbacks(f, 2);
    assert_int_equal(c[0].status, 0);
    assert_int_equal(c[1].status, UV_ECONNRESET);
    assert_int_equal(c[1].sent, 1);
    f->client_closed = 0;
    tandem_httpc_close(&one, client_close_cb);
    run_for(f, 20);
    assert_int_equal(f->client_closed, 1);
    f->client_closed = 0;
}

static void body_cb(struct tandem_httpc_request *req, int status,
                    const struct tandem_httpc_response *resp)
{
    struct call *c = req->data;
    c->calls++;
    c->status = status;
    c->f->callbacks++;
    if (status == 0) {
        c->http_status = resp->status;
        c->body_ok = resp->body_len == BIG_BODY_BYTES && resp->body[0] == 'a' &&
                     resp->body[BIG_BODY_BYTES - 1] == (char)('a' + (BIG_BODY_BYTES - 1) % 26) &&
                     resp->body[BIG_BODY_BYTES] == '\0';
        if (c->index == 1) { /* HEAD */
            c->body_ok = resp->body_len == 0 &&
                         strcmp(tandem_httpc_response_header(resp, "content-length"), "22") == 0;
        }
    }
}

static void test_hostname_head_and_big_bodies(void **state)
{
    struct fixture *f = *state;
    struct tandem_httpc named;
    assert_int_equal(tandem_httpc_init(&named, &f->loop, "localhost", f->port, 2, 0), 0);
    named.data = f;
    struct call c[3];
    memset(c, 0, sizeof c);
    for (unsigned i = 0; i < 3; i++) {
        c[i].f = f;
        c[i].index = i;
        c[i].req.data = &c[i];
    }
    static char upload[BIG_BODY_BYTES];
    memset(upload, 'u', sizeof upload);
    assert_int_equal(tandem_httpc_send(&named, &c[0].req, "GET", "/big", NULL, NULL, 0, body_cb),
                     0);
    assert_int_equal(tandem_httpc_send(&named, &c[1].req, "HEAD", "/head", NULL, NULL, 0, body_cb),
                     0);
    assert_int_equal(
        tandem_httpc_send(&named, &c[2].req, "PUT", "/up", NULL, upload, sizeof upload, body_cb),
        0);
    wait_callbacks(f, 3);
    assert_int_equal(c[0].status, 0);
    assert_true(c[0].body_ok);
    assert_int_equal(c[1].status, 0);
    assert_true(c[1].body_ok);
    assert_int_equal(c[2].status, 0);
    assert_int_equal(c[2].http_status, 201);
    assert_int_equal(f->server.stats.requests_total, 3);
    f->client_closed = 0;
    tandem_httpc_close(&named, client_close_cb);
    run_for(f, 20);
    assert_int_equal(f->client_closed, 1);
    f->client_closed = 0;
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    struct call c;
    memset(&c, 0, sizeof c);
    assert_int_equal(tandem_httpc_send(&f->client, &c.req, "GET", "/a b", NULL, NULL, 0, call_cb),
                     UV_EINVAL);
    assert_int_equal(tandem_httpc_send(&f->client, &c.req, "GE\r\nT", "/", NULL, NULL, 0, call_cb),
                     UV_EINVAL);
    assert_int_equal(tandem_httpc_send(&f->client, &c.req, "GET", "/", "X: 1", NULL, 0, call_cb),
                     UV_EINVAL);
    struct tandem_httpc bad;
    assert_int_equal(tandem_httpc_init(&bad, &f->loop, "127.0.0.1", 0, 1, 0), UV_EINVAL);
    assert_int_equal(tandem_httpc_init(&bad, &f->loop, "127.0.0.1", 80, 0, 0), UV_EINVAL);
    assert_int_equal(
        tandem_httpc_init(&bad, &f->loop, "127.0.0.1", 80, TANDEM_HTTPC_CONNECTIONS_MAX + 1, 0),
        UV_EINVAL);
    run_for(f, 10);
    assert_int_equal(f->callbacks, 0);
    assert_int_equal(f->handled, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_thousand_requests_four_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_closes_midway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup_short_timeout, teardown),
        cmocka_unit_test_setup_teardown(test_close_cancels_pending_and_queue_bound,
                                        setup_one_connection, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_close_and_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostname_head_and_big_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
