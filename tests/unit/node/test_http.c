/* Tests of the HTTP/1.1 server: pipelining order, limits, lifetimes, query helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "node/http/server.h"

#define HELD_MAX       256        /* requests a test handler keeps unanswered */
#define RAW_RECV_MAX   (4u << 20) /* bytes a raw test client keeps */
#define RAW_RESP_MAX   256        /* responses a raw test client records */
#define RAW_BODY_MAX   512        /* body bytes recorded per response */
#define RUN_TIMEOUT_MS 10000      /* every wait in these tests ends by then */

enum handler_mode { MODE_ECHO, MODE_HOLD, MODE_ERROR };

struct fixture {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps uv_run(ONCE) returning while a test waits */
    uv_timer_t defer;
    struct tandem_http_server server;
    int port, server_closed, mode;
    unsigned handled;
    struct tandem_http_request *held[HELD_MAX];
    unsigned held_count, held_max;
    unsigned reverse_when; /* MODE_HOLD: answer all held in reverse once this many are held */
    char last_path[256], last_query[256], last_header[256], last_body[256];
};

struct raw_response {
    int status, close;
    char body[RAW_BODY_MAX];
    size_t body_len;
};

struct raw_client {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    struct fixture *f;
    http_parser parser;
    char *recv;
    size_t recv_len;
    int connected, connect_status, eof, read_error, closed, parse_error;
    int no_parse; /* only collect bytes (responses to HEAD confuse a plain parser) */
    char field[64];
    int in_connection;
    struct raw_response resp[RAW_RESP_MAX];
    unsigned resp_count;
    const char *split; /* sent a few bytes per tick when set */
    size_t split_len, split_off;
    uv_timer_t split_timer;
    int split_timer_open;
};

struct raw_write {
    uv_write_t req;
    char data[];
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

/* ---- the test handler ---- */

static void copy_text(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "(null)");
}

static void respond_echo(struct tandem_http_request *r)
{
    char body[512];
    int n = snprintf(body, sizeof body, "%s %s body=%s",
                     http_method_str((enum http_method)r->method), r->url, r->body);
    tandem_http_respond(r, 200, "text/plain", "X-Echo: 1\r\n", body, (size_t)n);
}

static void handler(struct tandem_http_server *s, struct tandem_http_request *r)
{
    struct fixture *f = s->data;
    f->handled++;
    copy_text(f->last_path, sizeof f->last_path, r->path);
    copy_text(f->last_query, sizeof f->last_query, r->query);
    copy_text(f->last_header, sizeof f->last_header, tandem_http_request_header(r, "x-test"));
    copy_text(f->last_body, sizeof f->last_body, r->body);
    assert_true(r->start_ns > 0);
    assert_null(r->data);
    if (f->mode == MODE_ECHO) {
        respond_echo(r);
        return;
    }
    if (f->mode == MODE_ERROR) {
        tandem_http_respond_error(r, 404, "no route for %s", r->path);
        return;
    }
    assert_true(f->held_count < HELD_MAX);
    f->held[f->held_count++] = r;
    if (f->held_count > f->held_max) {
        f->held_max = f->held_count;
    }
}

static void respond_held_reverse(struct fixture *f)
{
    while (f->held_count > 0) {
        respond_echo(f->held[--f->held_count]);
    }
}

static void defer_cb(uv_timer_t *t)
{
    struct fixture *f = t->data;
    if (f->reverse_when == 0 || f->held_count >= f->reverse_when) {
        respond_held_reverse(f);
    }
}

/* ---- raw TCP client, parsing responses with http-parser ---- */

static int raw_on_message_begin(http_parser *p)
{
    struct raw_client *rc = p->data;
    if (rc->resp_count == RAW_RESP_MAX) {
        return -1;
    }
    memset(&rc->resp[rc->resp_count], 0, sizeof rc->resp[0]);
    return 0;
}

static int raw_on_header_field(http_parser *p, const char *at, size_t len)
{
    struct raw_client *rc = p->data;
    snprintf(rc->field, sizeof rc->field, "%.*s", (int)len, at);
    rc->in_connection = strcasecmp(rc->field, "Connection") == 0;
    return 0;
}

static int raw_on_header_value(http_parser *p, const char *at, size_t len)
{
    struct raw_client *rc = p->data;
    if (rc->in_connection && len == 5 && strncasecmp(at, "close", 5) == 0) {
        rc->resp[rc->resp_count].close = 1;
    }
    return 0;
}

static int raw_on_body(http_parser *p, const char *at, size_t len)
{
    struct raw_client *rc = p->data;
    struct raw_response *r = &rc->resp[rc->resp_count];
    size_t room = RAW_BODY_MAX - 1 - r->body_len;
    size_t n = len < room ? len : room;
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    return 0;
}

static int raw_on_message_complete(http_parser *p)
{
    struct raw_client *rc = p->data;
    rc->resp[rc->resp_count].status = (int)p->status_code;
    rc->resp_count++;
    return 0;
}

static const http_parser_settings raw_settings = {
    .on_message_begin = raw_on_message_begin,
    .on_header_field = raw_on_header_field,
    .on_header_value = raw_on_header_value,
    .on_body = raw_on_body,
    .on_message_complete = raw_on_message_complete,
};

static void raw_alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(size);
    buf->len = buf->base != NULL ? size : 0;
}

static void raw_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct raw_client *rc = s->data;
    if (nread > 0) {
        size_t n = (size_t)nread;
        if (rc->recv_len + n <= RAW_RECV_MAX) {
            memcpy(rc->recv + rc->recv_len, buf->base, n);
            rc->recv_len += n;
            rc->recv[rc->recv_len] = '\0';
        }
        size_t parsed =
            rc->no_parse ? n : http_parser_execute(&rc->parser, &raw_settings, buf->base, n);
        if (parsed != n) {
            rc->parse_error = 1;
        }
    } else if (nread == UV_EOF) {
        rc->eof = 1;
    } else if (nread < 0) {
        rc->read_error = (int)nread;
    }
    free(buf->base);
}

static void raw_connect_cb(uv_connect_t *req, int status)
{
    struct raw_client *rc = req->data;
    rc->connect_status = status;
    rc->connected = 1;
    if (status == 0) {
        uv_read_start((uv_stream_t *)&rc->tcp, raw_alloc_cb, raw_read_cb);
    }
}

static void raw_write_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void raw_send(struct raw_client *rc, const char *data, size_t len)
{
    struct raw_write *w = malloc(sizeof *w + len);
    assert_non_null(w);
    memcpy(w->data, data, len);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
    assert_int_equal(uv_write(&w->req, (uv_stream_t *)&rc->tcp, &buf, 1, raw_write_cb), 0);
}

static void raw_send_text(struct raw_client *rc, const char *text)
{
    raw_send(rc, text, strlen(text));
}

static int raw_connected(void *arg)
{
    return ((struct raw_client *)arg)->connected;
}

/* Connects rc to the server from source (a loopback address) and waits for the connection. */
static void raw_open_from(struct fixture *f, struct raw_client *rc, const char *source)
{
    memset(rc, 0, sizeof *rc);
    rc->f = f;
    rc->recv = calloc(1, RAW_RECV_MAX + 1);
    assert_non_null(rc->recv);
    http_parser_init(&rc->parser, HTTP_RESPONSE);
    rc->parser.data = rc;
    assert_int_equal(uv_tcp_init(&f->loop, &rc->tcp), 0);
    rc->tcp.data = rc;
    rc->connect_req.data = rc;
    struct sockaddr_in from;
    assert_int_equal(uv_ip4_addr(source, 0, &from), 0);
    assert_int_equal(uv_tcp_bind(&rc->tcp, (const struct sockaddr *)&from, 0), 0);
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", f->port, &addr), 0);
    assert_int_equal(
        uv_tcp_connect(&rc->connect_req, &rc->tcp, (const struct sockaddr *)&addr, raw_connect_cb),
        0);
    assert_true(run_until(f, raw_connected, rc));
    assert_int_equal(rc->connect_status, 0);
}

static void raw_open(struct fixture *f, struct raw_client *rc)
{
    raw_open_from(f, rc, "127.0.0.1");
}

static void raw_close_cb(uv_handle_t *h)
{
    struct raw_client *rc = h->data;
    rc->closed = 1;
}

static void raw_close(struct raw_client *rc)
{
    if (rc->split_timer_open) {
        uv_close((uv_handle_t *)&rc->split_timer, NULL);
        rc->split_timer_open = 0;
    }
    if (!uv_is_closing((uv_handle_t *)&rc->tcp)) {
        uv_close((uv_handle_t *)&rc->tcp, raw_close_cb);
    }
}

static int raw_closed(void *arg)
{
    return ((struct raw_client *)arg)->closed;
}

static void raw_free(struct fixture *f, struct raw_client *rc)
{
    raw_close(rc);
    assert_true(run_until(f, raw_closed, rc));
    free(rc->recv);
    rc->recv = NULL;
}

struct wait_responses {
    struct raw_client *rc;
    unsigned count;
};

static int got_responses(void *arg)
{
    struct wait_responses *w = arg;
    return w->rc->resp_count >= w->count || w->rc->eof || w->rc->read_error != 0;
}

static void raw_wait(struct raw_client *rc, unsigned count)
{
    struct wait_responses w = {rc, count};
    assert_true(run_until(rc->f, got_responses, &w));
    assert_int_equal(rc->resp_count, count);
    assert_int_equal(rc->parse_error, 0);
}

static int raw_gone(void *arg)
{
    struct raw_client *rc = arg;
    return rc->eof || rc->read_error != 0;
}

static void raw_wait_eof(struct raw_client *rc)
{
    assert_true(run_until(rc->f, raw_gone, rc));
}

/* ---- setup / teardown ---- */

/* The admission settings the next fixture_start gives the server (reset by it). */
static struct tandem_allow fixture_allow;
static const char *fixture_allow_text;
static unsigned fixture_per_source_max;

static int fixture_start(void **state, const struct tandem_http_limits *limits)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_init(&f->loop, &f->defer);
    f->defer.data = f;
    assert_int_equal(tandem_http_server_init(&f->server, &f->loop, limits, handler, f), 0);
    char errmsg[256];
    if (fixture_allow_text != NULL || fixture_per_source_max > 0) {
        assert_int_equal(tandem_allow_parse(&fixture_allow,
                                            fixture_allow_text ? fixture_allow_text : "", errmsg),
                         0);
        assert_int_equal(
            tandem_http_server_set_sources(&f->server, &fixture_allow, fixture_per_source_max), 0);
    }
    fixture_allow_text = NULL;
    fixture_per_source_max = 0;
    assert_int_equal(tandem_http_server_listen(&f->server, "127.0.0.1", 0, errmsg), 0);
    f->port = tandem_http_server_port(&f->server);
    assert_true(f->port > 0);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return fixture_start(state, NULL);
}

static void server_close_cb(struct tandem_http_server *s)
{
    struct fixture *f = s->data;
    f->server_closed = 1;
}

static int server_closed(void *arg)
{
    return ((struct fixture *)arg)->server_closed;
}

static int only_tick_left(void *arg)
{
    struct fixture *f = arg;
    return handles_alive(&f->loop) <= 1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    respond_held_reverse(f);
    if (!f->server.closing) {
        tandem_http_server_close(&f->server, server_close_cb);
    }
    uv_close((uv_handle_t *)&f->defer, NULL);
    assert_true(run_until(f, server_closed, f));
    assert_true(run_until(f, only_tick_left, f));
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(handles_alive(&f->loop), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

/* ---- tests ---- */

static int got_after(void *arg)
{
    struct raw_client *rc = arg;
    return strstr(rc->recv, "GET /after body=") != NULL || rc->eof;
}

static void test_get_and_put(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    raw_open(f, &rc);
    raw_send_text(&rc, "GET /hello?x=1&y=a%20b HTTP/1.1\r\nHost: t\r\nX-TEST: yes\r\n\r\n");
    raw_wait(&rc, 1);
    assert_int_equal(rc.resp[0].status, 200);
    assert_string_equal(rc.resp[0].body, "GET /hello?x=1&y=a%20b body=");
    assert_string_equal(f->last_path, "/hello");
    assert_string_equal(f->last_query, "x=1&y=a%20b");
    assert_string_equal(f->last_header, "yes");
    assert_non_null(strstr(rc.recv, "Content-Length: 28\r\n"));
    assert_non_null(strstr(rc.recv, "Content-Type: text/plain\r\nContent-Length"));
    assert_non_null(strstr(rc.recv, "X-Echo: 1\r\n\r\n"));
    raw_send_text(&rc, "PUT /kv/a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nvalue");
    raw_wait(&rc, 2);
    assert_string_equal(rc.resp[1].body, "PUT /kv/a body=value");
    assert_string_equal(f->last_query, "");
    assert_string_equal(f->last_header, "(null)");
    /* chunked request body */
    raw_send_text(&rc, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    raw_wait(&rc, 3);
    assert_string_equal(rc.resp[2].body, "POST /c body=abcde");
    raw_free(f, &rc);
    /* HEAD: headers with the length, no body */
    raw_open(f, &rc);
    rc.no_parse = 1;
    raw_send_text(&rc, "HEAD /h HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
    assert_true(run_until(f, got_after, &rc));
    assert_string_equal(rc.recv, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                 "Content-Length: 13\r\nX-Echo: 1\r\n\r\n"
                                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                 "Content-Length: 16\r\nX-Echo: 1\r\n\r\nGET /after body=");
    assert_int_equal(f->handled, 5);
    struct tandem_http_server_stats st;
    tandem_http_server_stats(&f->server, &st);
    assert_int_equal(st.connections_total, 2);
    assert_int_equal(st.requests_total, 5);
    assert_int_equal(st.requests_outstanding, 0);
    raw_free(f, &rc);
}

static void build_pipeline(char *buf, size_t size, unsigned count)
{
    size_t len = 0;
    for (unsigned i = 0; i < count; i++) {
        int n = snprintf(buf + len, size - len, "GET /r%u HTTP/1.1\r\nHost: t\r\n\r\n", i);
        assert_true(n > 0 && (size_t)n < size - len);
        len += (size_t)n;
    }
}

static void assert_pipeline_answers(struct raw_client *rc, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        char want[64];
        snprintf(want, sizeof want, "GET /r%u body=", i);
        assert_int_equal(rc->resp[i].status, 200);
        assert_string_equal(rc->resp[i].body, want);
    }
}

static void test_pipeline_reverse_order(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    f->mode = MODE_HOLD;
    f->reverse_when = 100;
    uv_timer_start(&f->defer, defer_cb, 1, 1);
    raw_open(f, &rc);
    static char buf[100 * 64];
    build_pipeline(buf, sizeof buf, 100);
    raw_send_text(&rc, buf); /* one write */
    raw_wait(&rc, 100);
    assert_int_equal(f->held_max, 100);
    assert_pipeline_answers(&rc, 100);
    /* still kept alive */
    f->mode = MODE_ECHO;
    raw_send_text(&rc, "GET /again HTTP/1.1\r\n\r\n");
    raw_wait(&rc, 101);
    assert_string_equal(rc.resp[100].body, "GET /again body=");
    struct tandem_http_server_stats st;
    tandem_http_server_stats(&f->server, &st);
    assert_int_equal(st.connections_total, 1);
    raw_free(f, &rc);
}

static int setup_depth4(void **state)
{
    struct tandem_http_limits l;
    tandem_http_limits_default(&l);
    l.pipeline_depth_max = 4;
    return fixture_start(state, &l);
}

/* Depth 4: the server stops reading at 4 unanswered requests and resumes as they drain. */
static void test_pipeline_backpressure(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    f->mode = MODE_HOLD;
    f->reverse_when = 0;
    uv_timer_start(&f->defer, defer_cb, 2, 2);
    raw_open(f, &rc);
    static char buf[100 * 64];
    build_pipeline(buf, sizeof buf, 100);
    raw_send_text(&rc, buf);
    raw_wait(&rc, 100);
    assert_int_equal(f->handled, 100);
    assert_true(f->held_max <= 4);
    assert_true(f->held_max >= 2);
    assert_pipeline_answers(&rc, 100);
    raw_free(f, &rc);
}

static void test_keep_alive_sequential(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    raw_open(f, &rc);
    for (unsigned i = 0; i < 3; i++) {
        raw_send_text(&rc, "GET /k HTTP/1.1\r\n\r\n");
        raw_wait(&rc, i + 1);
        assert_int_equal(rc.resp[i].close, 0);
    }
    assert_int_equal(rc.eof, 0);
    struct tandem_http_server_stats st;
    tandem_http_server_stats(&f->server, &st);
    assert_int_equal(st.connections_total, 1);
    assert_int_equal(st.connections_open, 1);
    raw_free(f, &rc);
}

static void test_body_too_large(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    raw_open(f, &rc);
    size_t body_len = 2u << 20;
    char *req = malloc(body_len + 128);
    assert_non_null(req);
    int n = snprintf(req, 128, "PUT /big HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", body_len);
    memset(req + n, 'x', body_len);
    raw_send(&rc, req, (size_t)n + body_len);
    free(req);
    raw_wait(&rc, 1);
    assert_int_equal(rc.resp[0].status, 413);
    assert_string_equal(rc.resp[0].body, "{\"error\":\"request body exceeds 1048576 bytes\"}");
    assert_int_equal(rc.resp[0].close, 1);
    raw_wait_eof(&rc);
    assert_int_equal(f->handled, 0);
    struct tandem_http_server_stats st;
    tandem_http_server_stats(&f->server, &st);
    assert_int_equal(st.rejected_413, 1);
    raw_free(f, &rc);

    /* chunked: no length up front, refused once the body passes the limit */
    raw_open(f, &rc);
    static char chunked[(2u << 20) + 256];
    n = snprintf(chunked, 256, "POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n",
                 2u << 20);
    memset(chunked + n, 'y', 2u << 20);
    memcpy(chunked + n + (2u << 20), "\r\n0\r\n\r\n", 7);
    raw_send(&rc, chunked, (size_t)n + (2u << 20) + 7);
    raw_wait(&rc, 1);
    assert_int_equal(rc.resp[0].status, 413);
    raw_wait_eof(&rc);
    assert_int_equal(f->handled, 0);
    raw_free(f, &rc);
}

static void test_garbage_is_400(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    raw_open(f, &rc);
    /* a good request first: the 400 must come after its answer */
    raw_send_text(&rc, "GET /ok HTTP/1.1\r\n\r\nHELLO\x01 WORLD\r\n\r\n");
    raw_wait(&rc, 2);
    assert_int_equal(rc.resp[0].status, 200);
    assert_int_equal(rc.resp[1].status, 400);
    assert_int_equal(rc.resp[1].close, 1);
    assert_string_equal(rc.resp[1].body,
                        "{\"error\":\"malformed HTTP request: invalid HTTP method\"}");
    raw_wait_eof(&rc);
    assert_int_equal(f->handled, 1);
    struct tandem_http_server_stats st;
    tandem_http_server_stats(&f->server, &st);
    assert_int_equal(st.rejected_400, 1);
    raw_free(f, &rc);
}

static void test_connection_close_and_http10(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    raw_open(f, &rc);
    /* the request after "Connection: close" is never read */
    raw_send_text(&rc, "GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    raw_wait(&rc, 1);
    assert_int_equal(rc.resp[0].close, 1);
    raw_wait_eof(&rc);
    run_for(f, 20);
    assert_int_equal(rc.resp_count, 1);
    assert_int_equal(f->handled, 1);
    raw_free(f, &rc);

    raw_open(f, &rc);
    raw_send_text(&rc, "GET /old HTTP/1.0\r\n\r\n");
    raw_wait(&rc, 1);
    assert_int_equal(rc.resp[0].close, 1);
    raw_wait_eof(&rc);
    raw_free(f, &rc);

    raw_open(f, &rc);
    raw_send_text(&rc, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    raw_wait(&rc, 1);
    assert_non_null(strstr(rc.recv, "Connection: keep-alive\r\n"));
    raw_send_text(&rc, "GET /old2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    raw_wait(&rc, 2);
    assert_int_equal(rc.eof, 0);
    raw_free(f, &rc);
}

static int connections_zero(void *arg)
{
    struct fixture *f = arg;
    return f->server.stats.connections_open == 0;
}

static void test_disconnect_before_respond(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    f->mode = MODE_HOLD;
    /* reset: the server sees an error and closes at once while the handler holds requests */
    raw_open(f, &rc);
    raw_send_text(&rc, "GET /slow1 HTTP/1.1\r\n\r\nGET /slow2 HTTP/1.1\r\n\r\n");
    run_for(f, 50);
    assert_int_equal(f->held_count, 2);
    uv_tcp_close_reset(&rc.tcp, raw_close_cb);
    assert_true(run_until(f, raw_closed, &rc));
    assert_true(run_until(f, connections_zero, f));
    assert_null(f->held[0]->conn);
    assert_null(f->held[1]->conn);
    free(rc.recv);
    /* answering later only releases them */
    respond_held_reverse(f);
    assert_int_equal(f->server.stats.requests_outstanding, 0);

    /* orderly close (EOF): the server answers, then closes */
    raw_open(f, &rc);
    raw_send_text(&rc, "GET /slow3 HTTP/1.1\r\n\r\n");
    run_for(f, 50);
    assert_int_equal(f->held_count, 1);
    raw_free(f, &rc);
    run_for(f, 20);
    respond_held_reverse(f);
    assert_true(run_until(f, connections_zero, f));
}

static void test_close_waits_for_outstanding(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    f->mode = MODE_HOLD;
    raw_open(f, &rc);
    raw_send_text(&rc, "GET /held HTTP/1.1\r\n\r\n");
    run_for(f, 50);
    assert_int_equal(f->held_count, 1);
    tandem_http_server_close(&f->server, server_close_cb);
    raw_wait_eof(&rc);
    run_for(f, 50);
    assert_int_equal(f->server_closed, 0); /* the held request is still valid */
    assert_string_equal(f->held[0]->path, "/held");
    respond_held_reverse(f);
    assert_int_equal(f->server_closed, 1); /* the last respond finished the close */
    raw_free(f, &rc);
}

static int setup_two_connections(void **state)
{
    struct tandem_http_limits l;
    tandem_http_limits_default(&l);
    l.connections_max = 2;
    return fixture_start(state, &l);
}

static int one_connection(void *arg)
{
    struct fixture *f = arg;
    return f->server.stats.connections_open == 1;
}

static void test_connections_max(void **state)
{
    struct fixture *f = *state;
    struct raw_client a, b, c;
    raw_open(f, &a);
    raw_send_text(&a, "GET /a HTTP/1.1\r\n\r\n");
    raw_wait(&a, 1);
    raw_open(f, &b);
    raw_send_text(&b, "GET /b HTTP/1.1\r\n\r\n");
    raw_wait(&b, 1);
    raw_open(f, &c);
    raw_wait_eof(&c);
    assert_int_equal(c.recv_len, 0);
    struct tandem_http_server_stats st;
    tandem_http_server_stats(&f->server, &st);
    assert_int_equal(st.connections_rejected, 1);
    assert_int_equal(st.connections_open, 2);
    raw_free(f, &c);
    raw_free(f, &a);
    assert_true(run_until(f, one_connection, f));
    raw_open(f, &c); /* room again */
    raw_send_text(&c, "GET /c HTTP/1.1\r\n\r\n");
    raw_wait(&c, 1);
    assert_int_equal(c.resp[0].status, 200);
    raw_free(f, &c);
    raw_free(f, &b);
}

static int setup_allow(void **state)
{
    fixture_allow_text = "10.0.0.0/8, 127.0.0.2/32";
    return fixture_start(state, NULL);
}

/* Opens rc from source and GETs path on it: one answer. */
static void raw_get_from(struct fixture *f, struct raw_client *rc, const char *source,
                         const char *path)
{
    char request[128];
    raw_open_from(f, rc, source);
    snprintf(request, sizeof request, "GET %s HTTP/1.1\r\n\r\n", path);
    raw_send_text(rc, request);
    raw_wait(rc, 1);
}

/* A source outside the allow-list is closed before a byte is read: no answer, no handler. */
static void test_allow_list(void **state)
{
    struct fixture *f = *state;
    struct raw_client refused, allowed;
    raw_open(f, &refused); /* from 127.0.0.1 */
    raw_send_text(&refused, "GET /a HTTP/1.1\r\n\r\n");
    raw_wait_eof(&refused);
    assert_int_equal(refused.recv_len, 0);
    raw_get_from(f, &allowed, "127.0.0.2", "/b");
    assert_int_equal(allowed.resp[0].status, 200);
    struct tandem_http_server_stats st;
    tandem_http_server_stats(&f->server, &st);
    assert_int_equal(st.refused_allow, 1);
    assert_int_equal(st.refused_per_source, 0);
    assert_int_equal(f->handled, 1);
    assert_string_equal(f->last_path, "/b");
    raw_free(f, &refused);
    raw_free(f, &allowed);
}

static int setup_per_source(void **state)
{
    fixture_per_source_max = 2;
    return fixture_start(state, NULL);
}

static int two_connections_open(void *arg)
{
    struct fixture *f = arg;
    return f->server.stats.connections_open == 2;
}

/* The third connection from one address is closed at once; another address still gets in, and
 * the first gets its room back when one of its connections ends. */
static void test_per_source(void **state)
{
    struct fixture *f = *state;
    struct raw_client a, b, c, other;
    raw_get_from(f, &a, "127.0.0.1", "/a");
    raw_get_from(f, &b, "127.0.0.1", "/b");
    raw_open(f, &c);
    raw_send_text(&c, "GET /c HTTP/1.1\r\n\r\n");
    raw_wait_eof(&c);
    assert_int_equal(c.recv_len, 0);
    raw_get_from(f, &other, "127.0.0.2", "/other");
    struct tandem_http_server_stats st;
    tandem_http_server_stats(&f->server, &st);
    assert_int_equal(st.refused_per_source, 1);
    assert_int_equal(st.refused_allow, 0);
    assert_int_equal(f->handled, 3);
    raw_free(f, &c);
    raw_free(f, &a);
    assert_true(run_until(f, two_connections_open, f)); /* b and other */
    raw_get_from(f, &c, "127.0.0.1", "/again");
    assert_int_equal(c.resp[0].status, 200);
    raw_free(f, &c);
    raw_free(f, &b);
    raw_free(f, &other);
}

static int setup_small(void **state)
{
    struct tandem_http_limits l;
    tandem_http_limits_default(&l);
    l.header_bytes_max = 1024;
    l.body_bytes_max = 1024;
    l.idle_timeout_ms = 200;
    return fixture_start(state, &l);
}

static void test_small_limits(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    /* idle: nothing sent, closed after the timeout */
    raw_open(f, &rc);
    uint64_t start = uv_now(&f->loop);
    raw_wait_eof(&rc);
    assert_true(uv_now(&f->loop) - start >= 150);
    raw_free(f, &rc);

    /* headers over the limit */
    raw_open(f, &rc);
    char big[4096];
    memset(big, 'h', sizeof big);
    int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX-Big: ");
    memset(big + n, 'v', 2000);
    memcpy(big + n + 2000, "\r\n\r\n", 4);
    raw_send(&rc, big, (size_t)n + 2004);
    raw_wait(&rc, 1);
    assert_int_equal(rc.resp[0].status, 431);
    assert_string_equal(rc.resp[0].body, "{\"error\":\"request header fields exceed 1024 bytes\"}");
    raw_wait_eof(&rc);
    raw_free(f, &rc);

    /* body limit applies as configured, and a 100-continue is answered 413 before the body */
    raw_open(f, &rc);
    raw_send_text(&rc, "PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1025\r\n\r\n");
    raw_wait(&rc, 1);
    assert_int_equal(rc.resp[0].status, 413);
    assert_string_equal(rc.resp[0].body, "{\"error\":\"request body exceeds 1024 bytes\"}");
    raw_free(f, &rc);
    assert_int_equal(f->handled, 0);
}

static void test_expect_continue(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    raw_open(f, &rc);
    raw_send_text(&rc, "PUT /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    raw_wait(&rc, 1);
    assert_int_equal(rc.resp[0].status, 100);
    raw_send_text(&rc, "data");
    raw_wait(&rc, 2);
    assert_int_equal(rc.resp[1].status, 200);
    assert_string_equal(rc.resp[1].body, "PUT /e body=data");
    raw_free(f, &rc);
}

static void split_cb(uv_timer_t *t)
{
    struct raw_client *rc = t->data;
    size_t n = rc->split_len - rc->split_off < 3 ? rc->split_len - rc->split_off : 3;
    raw_send(rc, rc->split + rc->split_off, n);
    rc->split_off += n;
    if (rc->split_off == rc->split_len) {
        uv_timer_stop(t);
    }
}

/* A request trickling in 3 bytes at a time: url, names and values arrive in pieces. */
static void test_split_reads(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    raw_open(f, &rc);
    rc.split = "GET /split/path?q=1 HTTP/1.1\r\nX-Test: split value  \r\nX-Empty:\r\n"
               "Content-Length: 7\r\n\r\npayload";
    rc.split_len = strlen(rc.split);
    uv_timer_init(&f->loop, &rc.split_timer);
    rc.split_timer.data = &rc;
    rc.split_timer_open = 1;
    uv_timer_start(&rc.split_timer, split_cb, 1, 1);
    raw_wait(&rc, 1);
    assert_string_equal(f->last_path, "/split/path");
    assert_string_equal(f->last_query, "q=1");
    assert_string_equal(f->last_header, "split value");
    assert_string_equal(f->last_body, "payload");
    raw_free(f, &rc);
}

static void test_query_helpers(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(tandem_http_query_get("a=1&b=2", "b", out, sizeof out), 1);
    assert_string_equal(out, "2");
    assert_int_equal(tandem_http_query_get("a=1&b=2", "c", out, sizeof out), 0);
    assert_int_equal(tandem_http_query_get("", "a", out, sizeof out), 0);
    assert_int_equal(tandem_http_query_get(NULL, "a", out, sizeof out), 0);
    assert_int_equal(tandem_http_query_get("flag&x=1", "flag", out, sizeof out), 1);
    assert_string_equal(out, "");
    assert_int_equal(tandem_http_query_get("a=", "a", out, sizeof out), 1);
    assert_string_equal(out, "");
    assert_int_equal(tandem_http_query_get("&&=x&a=first&a=second", "a", out, sizeof out), 1);
    assert_string_equal(out, "first");
    assert_int_equal(tandem_http_query_get("k=%41%62+c%2B", "k", out, sizeof out), 1);
    assert_string_equal(out, "Ab c+");
    assert_int_equal(tandem_http_query_get("a%20b=v", "a b", out, sizeof out), 1);
    assert_string_equal(out, "v");
    assert_int_equal(tandem_http_query_get("k=%4", "k", out, sizeof out), -1);
    assert_int_equal(tandem_http_query_get("k=%zz", "k", out, sizeof out), -1);
    assert_int_equal(tandem_http_query_get("k=%00", "k", out, sizeof out), -1);
    assert_int_equal(tandem_http_query_get("k=0123456789abcdef", "k", out, sizeof out), -1);
    assert_int_equal(tandem_http_query_get("k=0123456789abcde", "k", out, sizeof out), 1);
    assert_int_equal(tandem_http_query_get("%zz=1&k=2", "k", out, sizeof out), 1);
    assert_string_equal(out, "2");
    char path[16];
    size_t len = 0;
    assert_int_equal(tandem_http_path_decode("a+b%2Fc", 7, path, sizeof path, &len), 0);
    assert_string_equal(path, "a+b/c");
    assert_int_equal(len, 5);
    assert_int_equal(tandem_http_url_decode("a+b", 3, path, sizeof path, NULL), 0);
    assert_string_equal(path, "a b");
    assert_int_equal(tandem_http_url_decode("%", 1, path, sizeof path, NULL), -1);
    assert_int_equal(tandem_http_url_decode("abc", 2, path, 3, &len), 0);
    assert_string_equal(path, "ab");
    assert_int_equal(tandem_http_url_decode("abc", 3, path, 3, &len), -1);
    assert_int_equal(tandem_http_url_decode("", 0, path, 0, &len), -1);
}

static void test_error_json(void **state)
{
    (void)state;
    char out[128];
    assert_int_equal(tandem_http_error_json(out, sizeof out, "a \"q\" \\ \n\x01"), 35);
    assert_string_equal(out, "{\"error\":\"a \\\"q\\\" \\\\ \\u000a\\u0001\"}");
    assert_int_equal(tandem_http_error_json(out, sizeof out, "caf\xc3\xa9 \xff\xc3"), 30);
    assert_string_equal(out, "{\"error\":\"caf\xc3\xa9 \\ufffd\\ufffd\"}");
    assert_int_equal(tandem_http_error_json(out, 4, "long text"), 21);
    assert_string_equal(out, "");
}

static void test_respond_error(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    f->mode = MODE_ERROR;
    raw_open(f, &rc);
    raw_send_text(&rc, "GET /na\"me HTTP/1.1\r\n\r\n");
    raw_wait(&rc, 1);
    assert_int_equal(rc.resp[0].status, 404);
    assert_string_equal(rc.resp[0].body, "{\"error\":\"no route for /na\\\"me\"}");
    assert_non_null(
        strstr(rc.recv, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"));
    raw_free(f, &rc);
}

static void test_limits_check(void **state)
{
    (void)state;
    struct tandem_http_limits l;
    char errmsg[256];
    tandem_http_limits_default(&l);
    assert_int_equal(l.body_bytes_max, 1048576);
    assert_int_equal(tandem_http_limits_check(&l, errmsg), 0);
    l.pipeline_depth_max = 0;
    assert_int_equal(tandem_http_limits_check(&l, errmsg), -1);
    assert_non_null(strstr(errmsg, "pipeline_depth_max"));
    uv_loop_t loop;
    struct tandem_http_server s;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(tandem_http_server_init(&s, &loop, &l, handler, NULL), UV_EINVAL);
    assert_non_null(strstr(s.errmsg, "pipeline_depth_max"));
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- streaming responses ---- */

static unsigned stream_closes;

static void stream_closed_cb(struct tandem_http_stream *stream, void *data)
{
    (void)stream;
    assert_ptr_equal(data, &stream_closes);
    stream_closes++;
}

static int stream_bytes_seen(void *arg)
{
    struct raw_client *rc = arg;
    return strstr(rc->recv, "data: two") != NULL || rc->eof;
}

static int streams_zero(void *arg)
{
    return ((struct fixture *)arg)->server.stats.streams_open == 0;
}

/* A stream behind a pipelined request waits for it and keeps order,
 * and refuses to open before a later request, and tells its owner when the client leaves. */
static void test_stream(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    struct tandem_http_stream *st = NULL;
    f->mode = MODE_HOLD;
    stream_closes = 0;
    raw_open(f, &rc);
    rc.no_parse = 1;
    raw_send_text(&rc, "GET /first HTTP/1.1\r\n\r\nGET /events HTTP/1.1\r\n\r\n");
    run_for(f, 50);
    assert_int_equal(f->held_count, 2);
    /* not the newest request on its connection: refused, still the handler's to answer */
    assert_int_equal(tandem_http_stream_open(f->held[0], 200, "text/event-stream", NULL,
                                             stream_closed_cb, &stream_closes, &st),
                     UV_EBUSY);
    assert_int_equal(tandem_http_stream_open(f->held[1], 200, "text/event-stream",
                                             "Cache-Control: no-cache\r\n", stream_closed_cb,
                                             &stream_closes, &st),
                     0);
    f->held_count = 1;
    assert_int_equal(tandem_http_stream_write(st, "data: one\n\n", 11), 0);
    run_for(f, 50);
    assert_null(strstr(rc.recv, "HTTP/1.1")); /* /first is not answered yet: nothing goes out */
    respond_held_reverse(f);
    assert_int_equal(tandem_http_stream_write(st, "data: two\n\n", 11), 0);
    assert_true(run_until(f, stream_bytes_seen, &rc));
    const char *first = strstr(rc.recv, "GET /first");
    const char *head = strstr(rc.recv, "Content-Type: text/event-stream");
    const char *one = strstr(rc.recv, "data: one"), *two = strstr(rc.recv, "data: two");
    assert_non_null(first);
    assert_non_null(head);
    assert_true(first < head && head < one && one < two);
    assert_null(strstr(head, "Content-Length"));
    assert_non_null(strstr(rc.recv, "Connection: close"));
    assert_int_equal(f->server.stats.streams_open, 1);
    assert_int_equal(f->server.stats.requests_outstanding, 0);
    assert_int_equal(stream_closes, 0);
    raw_free(f, &rc);
    assert_true(run_until(f, streams_zero, f));
    assert_int_equal(stream_closes, 1);

    /* the server closing ends an open stream too */
    raw_open(f, &rc);
    raw_send_text(&rc, "GET /events HTTP/1.1\r\n\r\n");
    run_for(f, 50);
    assert_int_equal(f->held_count, 1);
    assert_int_equal(tandem_http_stream_open(f->held[0], 200, "text/event-stream", NULL,
                                             stream_closed_cb, &stream_closes, &st),
                     0);
    f->held_count = 0;
    tandem_http_server_close(&f->server, server_close_cb);
    assert_true(run_until(f, server_closed, f));
    assert_int_equal(stream_closes, 2);
    raw_free(f, &rc);
}

/* Over the buffer bound the stream closes instead of growing. */
static void test_stream_bound(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    struct tandem_http_stream *st = NULL;
    static char big[64 * 1024];
    f->mode = MODE_HOLD;
    stream_closes = 0;
    raw_open(f, &rc);
    raw_send_text(&rc, "GET /first HTTP/1.1\r\n\r\nGET /events HTTP/1.1\r\n\r\n");
    run_for(f, 50);
    assert_int_equal(f->held_count, 2);
    assert_int_equal(tandem_http_stream_open(f->held[1], 200, "text/event-stream", NULL,
                                             stream_closed_cb, &stream_closes, &st),
                     0);
    f->held_count = 1;
    int rv = 0;
    /* the head waits for /first, so every byte stays buffered */
    for (unsigned i = 0; rv == 0 && i <= TANDEM_HTTP_STREAM_BUFFERED_BYTES_MAX / sizeof big; i++) {
        rv = tandem_http_stream_write(st, big, sizeof big);
    }
    assert_int_equal(rv, UV_ENOBUFS);
    assert_true(run_until(f, streams_zero, f));
    assert_int_equal(stream_closes, 1);
    respond_held_reverse(f); /* its connection is gone: answering only releases it */
    raw_free(f, &rc);
}

/* A fixed-length stream: Content-Length in the head, the writer asked for more (from the head
 * on, with no write to start it) whenever the socket took bytes, never more than the bound
 * queued; after the end every byte arrives, then the FIN, then the close callback. */
#define SIZED_TOTAL (3u << 20)
#define SIZED_PIECE (64u * 1024u)

struct sized_writer {
    struct tandem_http_stream *st;
    size_t total, written, buffered_max;
    unsigned drains;
    char piece[SIZED_PIECE];
};

static void sized_drain_cb(struct tandem_http_stream *st, void *data)
{
    struct sized_writer *w = data;
    w->drains++;
    while (w->written < w->total &&
           tandem_http_stream_buffered(st) + SIZED_PIECE <= TANDEM_HTTP_STREAM_BUFFERED_BYTES_MAX) {
        memset(w->piece, 'a' + (int)(w->written / SIZED_PIECE % 26), SIZED_PIECE);
        assert_int_equal(tandem_http_stream_write(st, w->piece, SIZED_PIECE), 0);
        w->written += SIZED_PIECE;
        size_t b = tandem_http_stream_buffered(st);
        w->buffered_max = b > w->buffered_max ? b : w->buffered_max;
    }
    if (w->written == w->total) {
        tandem_http_stream_end(st);
    }
}

static void sized_closed_cb(struct tandem_http_stream *stream, void *data)
{
    (void)stream;
    (void)data;
    stream_closes++;
}

static int raw_eof(void *arg)
{
    return ((struct raw_client *)arg)->eof;
}

/* A raw client asking GET /file, held by the handler; w reset to write total bytes. */
static void sized_request(struct fixture *f, struct raw_client *rc, struct sized_writer *w,
                          size_t total)
{
    memset(w, 0, sizeof *w);
    w->total = total;
    f->mode = MODE_HOLD;
    stream_closes = 0;
    raw_open(f, rc);
    rc->no_parse = 1;
    raw_send_text(rc, "GET /file HTTP/1.1\r\n\r\n");
    run_for(f, 50);
    assert_int_equal(f->held_count, 1);
}

static void test_stream_sized(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    static struct sized_writer w;
    sized_request(f, &rc, &w, SIZED_TOTAL);
    assert_int_equal(tandem_http_stream_open_sized(f->held[0], 200, "application/octet-stream",
                                                   "X-File: f\r\n", SIZED_TOTAL, sized_drain_cb,
                                                   sized_closed_cb, &w, &w.st),
                     0);
    f->held_count = 0;
    assert_true(run_until(f, raw_eof, &rc));
    assert_true(run_until(f, streams_zero, f));
    assert_int_equal(stream_closes, 1);
    assert_int_equal(w.written, SIZED_TOTAL);
    assert_true(w.drains > SIZED_TOTAL / TANDEM_HTTP_STREAM_BUFFERED_BYTES_MAX);
    assert_true(w.buffered_max <= TANDEM_HTTP_STREAM_BUFFERED_BYTES_MAX);
    char length[64];
    snprintf(length, sizeof length, "Content-Length: %u\r\n", SIZED_TOTAL);
    assert_non_null(strstr(rc.recv, length));
    assert_non_null(strstr(rc.recv, "X-File: f\r\n"));
    assert_non_null(strstr(rc.recv, "Connection: close\r\n"));
    const char *body = strstr(rc.recv, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    assert_int_equal(rc.recv_len - (size_t)(body - rc.recv), SIZED_TOTAL);
    for (size_t at = 0; at < SIZED_TOTAL; at += SIZED_PIECE) {
        assert_int_equal(body[at], 'a' + (int)(at / SIZED_PIECE % 26));
        assert_int_equal(body[at + SIZED_PIECE - 1], 'a' + (int)(at / SIZED_PIECE % 26));
    }
    raw_free(f, &rc);
}

/* A client that leaves mid-way: the close callback runs once, drains stop. */
static void test_stream_sized_left(void **state)
{
    struct fixture *f = *state;
    struct raw_client rc;
    static struct sized_writer w;
    sized_request(f, &rc, &w, (size_t)SIZED_TOTAL * 64); /* more than loopback's buffers hold */
    uv_read_stop((uv_stream_t *)&rc.tcp);                /* the reader stops: the socket fills up */
    assert_int_equal(tandem_http_stream_open_sized(f->held[0], 200, NULL, NULL, SIZED_TOTAL * 64,
                                                   sized_drain_cb, sized_closed_cb, &w, &w.st),
                     0);
    f->held_count = 0;
    run_for(f, 200);
    assert_true(w.written > 0 && w.written < w.total);
    assert_true(w.buffered_max <= TANDEM_HTTP_STREAM_BUFFERED_BYTES_MAX);
    assert_int_equal(stream_closes, 0); /* a paused reader is waited for, not dropped */
    unsigned drains = w.drains;
    raw_free(f, &rc);
    assert_true(run_until(f, streams_zero, f));
    assert_int_equal(stream_closes, 1);
    assert_true(w.drains >= drains);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_and_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allow_list, setup_allow, teardown),
        cmocka_unit_test_setup_teardown(test_per_source, setup_per_source, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_reverse_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_backpressure, setup_depth4, teardown),
        cmocka_unit_test_setup_teardown(test_keep_alive_sequential, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_is_400, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_close_and_http10, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_before_respond, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_waits_for_outstanding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connections_max, setup_two_connections, teardown),
        cmocka_unit_test_setup_teardown(test_small_limits, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_respond_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_sized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_sized_left, setup, teardown),
        cmocka_unit_test(test_query_helpers),
        cmocka_unit_test(test_error_json),
        cmocka_unit_test(test_limits_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
