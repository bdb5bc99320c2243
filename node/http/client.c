/* Keep-alive, pipelining HTTP/1.1 client for one host:port on libuv + http-parser. */
#include "node/http/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node/http/head.h"
#include "node/log.h"
#include "storage/assert.h"

#define TLS_FAILURE_LOG_MS 60000u /* a client logs a failed handshake at most this often */

enum conn_state { CONN_RESOLVING, CONN_CONNECTING, CONN_OPEN, CONN_CLOSING };

/* One connection. Requests sit in the FIFO from assignment until their response (or error);
 * their bytes are in `out` (not yet written), `inflight` (write_req) or already sent. */
struct tandem_httpc_conn {
    struct tandem_httpc *client; /* borrowed */
    struct tandem_list link;     /* in client->conns */
    struct tandem_list fifo;     /* borrowed tandem_httpc_request, oldest first */
    unsigned depth;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_getaddrinfo_t resolve_req;
    uv_write_t write_req;
    http_parser parser;
    int state;          /* enum conn_state */
    int deferred_error; /* failure found inside send, reported from the timer */
    int resolving, tcp_closed, writing, keep_alive, parse_error;
    char *out; /* owned: requests not yet written */
    size_t out_len, out_cap;
    char *inflight; /* owned: bytes in write_req */
    size_t inflight_len, inflight_cap;
    struct tandem_tls *tls; /* owned when the client speaks TLS; freed once tcp has closed */
    /* the response being parsed */
    struct tandem_http_head head; /* the response's header fields */
    char *body;                   /* owned */
    size_t body_len, body_cap;
};

static void client_pump(struct tandem_httpc *c);
static void client_arm_timer(struct tandem_httpc *c);
static void client_maybe_finish(struct tandem_httpc *c);
static void client_timer_cb(uv_timer_t *timer);

int tandem_httpc_request_sent(const struct tandem_httpc_request *req)
{
    return req->sent;
}

const char *tandem_httpc_response_header(const struct tandem_httpc_response *r, const char *name)
{
    return tandem_http_head_find(&r->conn->head, name);
}

/* ---- request lists ---- */

static struct tandem_httpc_request *request_of(struct tandem_list *link)
{
    return tandem_list_entry(link, struct tandem_httpc_request, link);
}

static struct tandem_httpc_request *by_deadline_of(struct tandem_list *link)
{
    return tandem_list_entry(link, struct tandem_httpc_request, by_deadline);
}

static struct tandem_httpc_conn *conn_of(struct tandem_list *link)
{
    return tandem_list_entry(link, struct tandem_httpc_conn, link);
}

static void deadline_insert(struct tandem_httpc *c, struct tandem_httpc_request *req)
{
    /* Most requests share one timeout, so the right place is almost always the tail. */
    struct tandem_list *after = c->deadlines.prev;
    while (after != &c->deadlines && by_deadline_of(after)->deadline_ms > req->deadline_ms) {
        after = after->prev;
    }
    tandem_list_insert(after, after->next, &req->by_deadline);
    if (after == &c->deadlines) {
        client_arm_timer(c); /* the earliest deadline changed */
    }
}

/* Runs the callback exactly once: the request leaves every list first. */
static void request_finish(struct tandem_httpc_request *req, int status,
                           const struct tandem_httpc_response *resp)
{
    struct tandem_httpc *c = req->client;
    tandem_httpc_cb cb = req->cb;
    tandem_assert(cb != NULL);     /* called back once: the callback is cleared below */
    tandem_assert(c->pending > 0); /* every pending request was counted by send */
    c->pending--;
    tandem_list_remove(&req->by_deadline);
    free(req->wire);
    req->wire = NULL;
    req->conn = NULL;
    req->cb = NULL;
    if (status < 0) {
        c->stats.errors++;
    } else {
        c->stats.responses++;
    }
    cb(req, status, resp);
    /* c stays valid: even a close from cb frees it only from the loop, later. */
    if (c->pending == 0 && !c->closing && c->idle_cb != NULL) {
        c->idle_cb(c);
    }
}

static struct tandem_httpc_request *fifo_pop(struct tandem_httpc_conn *conn)
{
    tandem_assert(conn->depth > 0);
    conn->depth--;
    return request_of(tandem_list_pop_front(&conn->fifo));
}

/* ---- wire format ---- */

static int token_ok(const char *s)
{
    if (*s == '\0') {
        return 0;
    }
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s <= ' ' || *s == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static const char *wire_fmt = "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n";

/* Serialises into *buf at *len, growing it. Returns 0 or UV_ENOMEM. */
static int wire_append(char **buf, size_t *len, size_t *cap, const char *method, const char *target,
                       const char *host, const char *length_line, const char *extra,
                       const void *body, size_t body_len)
{
    int head_len = snprintf(NULL, 0, wire_fmt, method, target, host, length_line, extra);
    if (head_len < 0 ||
        tandem_http_buf_reserve(buf, cap, *len + (size_t)head_len + body_len + 1) != 0) {
        return UV_ENOMEM;
    }
    snprintf(*buf + *len, (size_t)head_len + 1, wire_fmt, method, target, host, length_line, extra);
    if (body_len > 0) {
        memcpy(*buf + *len + head_len, body, body_len);
    }
    *len += (size_t)head_len + body_len;
    return 0;
}

/* ---- connections ---- */

static void conn_close_cb(uv_handle_t *handle);

static void conn_maybe_free(struct tandem_httpc_conn *conn)
{
    struct tandem_httpc *c = conn->client;
    if (!conn->tcp_closed || conn->resolving) {
        return;
    }
    tandem_list_remove(&conn->link); /* it stayed on its client's list until now */
    if (conn->tls != NULL) {
        tandem_tls_free(conn->tls);
    }
    free(conn->out);
    free(conn->inflight);
    tandem_http_head_free(&conn->head);
    free(conn->body);
    free(conn);
    client_maybe_finish(c);
}

static void conn_close_cb(uv_handle_t *handle)
{
    struct tandem_httpc_conn *conn = handle->data;
    conn->tcp_closed = 1;
    conn_maybe_free(conn);
}

/* Takes the connection out of use; its memory goes when the handle and any lookup are done. */
static void conn_begin_close(struct tandem_httpc_conn *conn)
{
    if (conn->state == CONN_CLOSING) {
        return;
    }
    if (conn->tls != NULL && conn->state == CONN_OPEN) {
        tandem_tls_close_notify(conn->tls); /* best effort: the server sees a clean end */
    }
    conn->state = CONN_CLOSING;
    conn->client->conns_active--;
    if (conn->resolving) {
        uv_cancel((uv_req_t *)&conn->resolve_req);
    }
    uv_close((uv_handle_t *)&conn->tcp, conn_close_cb);
}

/* Closes the connection and fails every request on it: `special` gets special_status, the others
 * status. Waiting requests then move to other connections. */
static void conn_fail(struct tandem_httpc_conn *conn, struct tandem_httpc_request *special,
                      int special_status, int status)
{
    struct tandem_httpc *c = conn->client;
    conn_begin_close(conn);
    /* One at a time: a callback may close the client, which drains the same FIFO. */
    while (!tandem_list_empty(&conn->fifo)) {
        struct tandem_httpc_request *req = fifo_pop(conn);
        request_finish(req, req == special ? special_status : status, NULL);
    }
    client_pump(c);
}

/* Errors found while the caller is inside send are reported from the loop, so send never runs a
 * callback. */
/* Arms the client's one timer (after close it is closing: nothing is left to time). */
static void client_timer_start(struct tandem_httpc *c, uint64_t timeout_ms)
{
    if (c->closing) {
        return;
    }
    int rv = uv_timer_start(&c->timer, client_timer_cb, timeout_ms, 0);
    tandem_assert(rv == 0); /* fails only without a callback or on a closing handle */
}

static void conn_defer_error(struct tandem_httpc_conn *conn, int error)
{
    if (conn->deferred_error == 0) {
        conn->deferred_error = error;
    }
    client_timer_start(conn->client, 0);
}

static void conn_flush(struct tandem_httpc_conn *conn);

static void conn_written(struct tandem_httpc_conn *conn, int status)
{
    conn->writing = 0;
    conn->inflight_len = 0;
    if (conn->state == CONN_CLOSING) {
        return;
    }
    if (status < 0) {
        conn_fail(conn, NULL, 0, status);
        return;
    }
    conn_flush(conn);
}

static void conn_write_cb(uv_write_t *req, int status)
{
    conn_written(req->data, status);
}

static void conn_tls_write_cb(void *data, void *write_data, int status)
{
    (void)write_data;
    conn_written(data, status == 0 ? 0 : UV_EPIPE);
}

/* Starts writing what is queued; one write in flight, the next batch follows its callback. */
static void conn_flush(struct tandem_httpc_conn *conn)
{
    if (conn->state != CONN_OPEN || conn->writing || conn->out_len == 0) {
        return;
    }
    char *buf = conn->out;
    size_t cap = conn->out_cap;
    conn->out = conn->inflight;
    conn->out_cap = conn->inflight_cap;
    conn->inflight = buf;
    conn->inflight_cap = cap;
    conn->inflight_len = conn->out_len;
    conn->out_len = 0;
    for (struct tandem_list *l = conn->fifo.prev; l != &conn->fifo && !request_of(l)->sent;
         l = l->prev) {
        request_of(l)->sent = 1;
    }
    uv_buf_t b = uv_buf_init(conn->inflight, (unsigned)conn->inflight_len);
    int rc = conn->tls != NULL
                 ? (tandem_tls_write(conn->tls, &b, 1, NULL, conn_tls_write_cb) == 0 ? 0 : UV_EPIPE)
                 : uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, &b, 1, conn_write_cb);
    if (rc != 0) {
        conn_defer_error(conn, rc);
        return;
    }
    conn->writing = 1;
}

/* ---- responses ---- */

/* A head collection error as the request's status. */
static int head_error(struct tandem_httpc_conn *conn, int rv)
{
    if (rv != 0) {
        conn->parse_error = rv == TANDEM_HTTP_HEAD_TOO_BIG ? UV_E2BIG : UV_ENOMEM;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct tandem_httpc_conn *conn = p->data;
    if (tandem_list_empty(&conn->fifo)) {
        conn->parse_error = UV_EPROTO; /* a response nobody asked for */
        return -1;
    }
    /* Fields past the maximum are dropped: a response is not refused for them. */
    tandem_http_head_start(&conn->head, TANDEM_HTTPC_RESPONSE_HEADER_BYTES_MAX, true);
    conn->body_len = 0;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct tandem_httpc_conn *conn = p->data;
    return head_error(conn, tandem_http_head_field(&conn->head, at, len));
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct tandem_httpc_conn *conn = p->data;
    return head_error(conn, tandem_http_head_value(&conn->head, at, len));
}

static int on_headers_complete(http_parser *p)
{
    struct tandem_httpc_conn *conn = p->data;
    if (head_error(conn, tandem_http_head_end(&conn->head)) != 0) {
        return -1;
    }
    return request_of(tandem_list_first(&conn->fifo))->is_head
               ? 1
               : 0; /* 1: a response to HEAD has no body */
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct tandem_httpc_conn *conn = p->data;
    if (conn->body_len + len > TANDEM_HTTPC_RESPONSE_BODY_BYTES_MAX) {
        conn->parse_error = UV_E2BIG;
        return -1;
    }
    if (tandem_http_buf_append(&conn->body, &conn->body_len, &conn->body_cap, at, len) != 0) {
        conn->parse_error = UV_ENOMEM;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct tandem_httpc_conn *conn = p->data;
    conn->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    http_parser_pause(p, 1); /* conn_deliver runs outside the parser */
    return 0;
}

static const http_parser_settings parser_settings = TANDEM_HTTP_PARSER_SETTINGS(NULL);

/* Hands the parsed response to the request at the FIFO head. Interim 1xx responses are skipped. */
static void conn_deliver(struct tandem_httpc_conn *conn)
{
    struct tandem_httpc *c = conn->client;
    int status = (int)conn->parser.status_code;
    if (status >= 100 && status < 200 && status != 101) {
        return;
    }
    struct tandem_httpc_request *req = fifo_pop(conn);
    if (conn->body_len > 0) {
        conn->body[conn->body_len] = '\0';
    }
    struct tandem_httpc_response resp = {
        .status = status,
        .body = conn->body_len > 0 ? conn->body : "",
        .body_len = conn->body_len,
        .conn = conn,
    };
    request_finish(req, 0, &resp);
    if (conn->state == CONN_CLOSING) {
        return;
    }
    if (!conn->keep_alive) {
        /* The server reads nothing after this response: requests pipelined behind it fail. */
        conn_fail(conn, NULL, 0, UV_ECONNRESET);
        return;
    }
    client_pump(c);
}

static void conn_feed(struct tandem_httpc_conn *conn, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len && conn->state != CONN_CLOSING) {
        size_t n;
        int rv = tandem_http_parse(&conn->parser, &parser_settings, data + off, len - off, &n);
        off += n;
        if (rv == TANDEM_HTTP_PARSE_MESSAGE) {
            conn_deliver(conn);
        } else if (rv == TANDEM_HTTP_PARSE_ERROR || n == 0) {
            conn_fail(conn, NULL, 0, conn->parse_error != 0 ? conn->parse_error : UV_EPROTO);
            return;
        }
    }
}

static void conn_alloc_cb(uv_handle_t *handle, size_t suggested_size, uv_buf_t *buf)
{
    struct tandem_httpc *c = ((struct tandem_httpc_conn *)handle->data)->client;
    (void)suggested_size;
    if (!c->read_buf_busy) {
        c->read_buf_busy = 1;
        *buf = uv_buf_init(c->read_buf, TANDEM_HTTPC_READ_BUFFER_BYTES);
        return;
    }
    char *p = malloc(TANDEM_HTTPC_READ_BUFFER_BYTES);
    *buf = uv_buf_init(p, p != NULL ? TANDEM_HTTPC_READ_BUFFER_BYTES : 0);
}

/* Bytes (decrypted when TLS) or the end of the connection (nread < 0). */
static void conn_on_read(struct tandem_httpc_conn *conn, ssize_t nread, const char *bytes)
{
    if (nread > 0 && conn->state != CONN_CLOSING) {
        conn_feed(conn, bytes, (size_t)nread);
    } else if (nread < 0 && conn->state != CONN_CLOSING) {
        if (nread == UV_EOF) {
            /* A response delimited by the end of the connection completes now. */
            size_t n;
            if (tandem_http_parse(&conn->parser, &parser_settings, NULL, 0, &n) ==
                TANDEM_HTTP_PARSE_MESSAGE) {
                conn_deliver(conn);
            }
        }
        if (conn->state != CONN_CLOSING) {
            conn_fail(conn, NULL, 0, (int)nread);
        }
    }
}

static void conn_tls_read_cb(void *data, ssize_t nread, const char *bytes)
{
    conn_on_read(data, nread, bytes);
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tandem_httpc_conn *conn = stream->data;
    struct tandem_httpc *c = conn->client;
    conn_on_read(conn, nread, buf->base);
    if (buf->base == c->read_buf) {
        c->read_buf_busy = 0;
    } else {
        free(buf->base);
    }
}

/* ---- TLS ---- */

static void conn_handshake_cb(void *data, int status)
{
    struct tandem_httpc_conn *conn = data;
    struct tandem_httpc *c = conn->client;
    if (conn->state == CONN_CLOSING) {
        return;
    }
    if (status != 0) {
        uint64_t now = uv_now(c->loop);
        c->stats.tls_refused++;
        if (now >= c->tls_quiet_until_ms) {
            c->tls_quiet_until_ms = now + TLS_FAILURE_LOG_MS;
            tandem_log(TANDEM_LOG_WARN, "TLS to %s (%s) failed: %s", c->host_header,
                       c->expect_node[0] != '\0' ? c->expect_node : "any node",
                       tandem_tls_error(conn->tls));
        }
        conn_fail(conn, NULL, 0, UV_EPROTO);
        return;
    }
    conn->state = CONN_OPEN;
    if (tandem_tls_read_start(conn->tls, conn_tls_read_cb) != 0) {
        conn_fail(conn, NULL, 0, UV_EPROTO);
        return;
    }
    conn_flush(conn);
}

/* Wraps the connected socket in a TLS client session and starts the handshake. Returns 0 or a
 * UV_* code. */
static int conn_tls_start(struct tandem_httpc_conn *conn)
{
    struct tandem_httpc *c = conn->client;
    char errmsg[TANDEM_ERRMSG_SIZE];
    const char *expect = c->expect_node[0] != '\0' ? c->expect_node : NULL;
    if (tandem_tls_new(c->tls, &conn->tcp, TANDEM_TLS_CLIENT, expect, conn, &conn->tls, errmsg) !=
        0) {
        conn->tls = NULL;
        tandem_log(TANDEM_LOG_ERROR, "TLS to %s: %s", c->host_header, errmsg);
        return UV_ENOMEM;
    }
    if (tandem_tls_handshake(conn->tls, conn_handshake_cb) != 0) {
        return UV_EPROTO;
    }
    return 0;
}

int tandem_httpc_set_tls(struct tandem_httpc *c, struct tandem_tls_ctx *tls,
                         const char *expect_node)
{
    if (expect_node != NULL && strlen(expect_node) >= sizeof c->expect_node) {
        return UV_EINVAL;
    }
    c->tls = tls;
    snprintf(c->expect_node, sizeof c->expect_node, "%s", expect_node != NULL ? expect_node : "");
    return 0;
}

static void conn_connect_cb(uv_connect_t *req, int status)
{
    struct tandem_httpc_conn *conn = req->data;
    if (conn->state == CONN_CLOSING) {
        return;
    }
    if (status < 0) {
        conn->client->stats.connect_errors++;
        conn_fail(conn, NULL, 0, status);
        return;
    }
    /* Requests are small writes that wait for their answer: Nagle would hold them back. */
    int rc = uv_tcp_nodelay(&conn->tcp, 1);
    if (rc == 0 && conn->client->tls != NULL) {
        rc = conn_tls_start(conn); /* the connection opens when the handshake succeeds */
        if (rc != 0) {
            conn_fail(conn, NULL, 0, rc);
        }
        return;
    }
    conn->state = CONN_OPEN;
    if (rc == 0) {
        rc = uv_read_start((uv_stream_t *)&conn->tcp, conn_alloc_cb, conn_read_cb);
    }
    if (rc != 0) {
        conn_fail(conn, NULL, 0, rc);
        return;
    }
    conn_flush(conn);
}

static int conn_connect(struct tandem_httpc_conn *conn, const struct sockaddr *addr)
{
    conn->state = CONN_CONNECTING;
    return uv_tcp_connect(&conn->connect_req, &conn->tcp, addr, conn_connect_cb);
}

static void conn_resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct tandem_httpc_conn *conn = req->data;
    conn->resolving = 0;
    if (conn->state == CONN_CLOSING) {
        uv_freeaddrinfo(res);
        conn_maybe_free(conn); /* last: it may free conn */
        return;
    }
    if (status < 0) {
        conn->client->stats.connect_errors++;
        conn_fail(conn, NULL, 0, status);
        return;
    }
    /* IPv4 first: "localhost" often resolves to ::1 first while services bind 127.0.0.1. */
    const struct addrinfo *pick = res;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    }
    int rc = conn_connect(conn, pick->ai_addr);
    uv_freeaddrinfo(res);
    if (rc != 0) {
        conn_fail(conn, NULL, 0, rc);
    }
}

/* Returns a new connection (connecting or resolving), or NULL when out of memory. A failure to
 * start connecting is reported later, from the timer, to the requests placed on it. */
static struct tandem_httpc_conn *conn_open(struct tandem_httpc *c)
{
    struct tandem_httpc_conn *conn = calloc(1, sizeof *conn);
    if (conn == NULL) {
        return NULL;
    }
    if (uv_tcp_init(c->loop, &conn->tcp) != 0) {
        free(conn);
        return NULL;
    }
    conn->client = c;
    conn->tcp.data = conn->connect_req.data = conn->resolve_req.data = conn->write_req.data = conn;
    http_parser_init(&conn->parser, HTTP_RESPONSE);
    conn->parser.data = conn;
    tandem_list_init(&conn->fifo);
    tandem_list_push_front(&c->conns, &conn->link);
    c->conns_active++;
    c->stats.connects++;
    int rc;
    if (c->host_numeric) {
        rc = conn_connect(conn, (const struct sockaddr *)&c->addr);
    } else {
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        conn->state = CONN_RESOLVING;
        rc = uv_getaddrinfo(c->loop, &conn->resolve_req, conn_resolve_cb, c->host, c->port_text,
                            &hints);
        conn->resolving = rc == 0;
    }
    if (rc != 0) {
        c->stats.connect_errors++;
        conn_defer_error(conn, rc);
    }
    return conn;
}

/* ---- client ---- */

/* The least loaded usable connection; a new one when every connection is busy and the limit
 * allows, so load spreads over connections before it pipelines. */
static struct tandem_httpc_conn *client_pick_conn(struct tandem_httpc *c)
{
    struct tandem_httpc_conn *best = NULL;
    struct tandem_list *link;
    tandem_list_foreach(link, &c->conns)
    {
        struct tandem_httpc_conn *conn = conn_of(link);
        if (conn->state != CONN_CLOSING && conn->deferred_error == 0 &&
            conn->depth < TANDEM_HTTPC_PIPELINE_DEPTH_MAX &&
            (best == NULL || conn->depth < best->depth)) {
            best = conn;
        }
    }
    if ((best == NULL || best->depth > 0) && c->conns_active < c->connections_max) {
        struct tandem_httpc_conn *fresh = conn_open(c);
        if (fresh != NULL) {
            return fresh;
        }
    }
    return best;
}

static void conn_assign(struct tandem_httpc_conn *conn, struct tandem_httpc_request *req)
{
    req->conn = conn;
    tandem_list_push_back(&conn->fifo, &req->link);
    conn->depth++;
}

/* Moves waiting requests onto connections with room, in order. */
static void client_pump(struct tandem_httpc *c)
{
    while (!tandem_list_empty(&c->waiting) && !c->closing) {
        struct tandem_httpc_request *req = request_of(tandem_list_first(&c->waiting));
        struct tandem_httpc_conn *conn = client_pick_conn(c);
        if (conn == NULL || tandem_http_buf_reserve(&conn->out, &conn->out_cap,
                                                    conn->out_len + req->wire_len) != 0) {
            return; /* retried when a response frees room; the timeout bounds the wait */
        }
        tandem_list_remove(&req->link);
        c->waiting_count--;
        memcpy(conn->out + conn->out_len, req->wire, req->wire_len);
        conn->out_len += req->wire_len;
        free(req->wire);
        req->wire = NULL;
        conn_assign(conn, req);
        conn_flush(conn);
    }
}

/* The first open connection with an error waiting to be reported, or NULL. */
static struct tandem_httpc_conn *conn_deferred(struct tandem_httpc *c)
{
    struct tandem_list *link;
    tandem_list_foreach(link, &c->conns)
    {
        struct tandem_httpc_conn *conn = conn_of(link);
        if (conn->deferred_error != 0 && conn->state != CONN_CLOSING) {
            return conn;
        }
    }
    return NULL;
}

static void client_arm_timer(struct tandem_httpc *c)
{
    if (c->closing) {
        return;
    }
    if (conn_deferred(c) != NULL) {
        client_timer_start(c, 0);
        return;
    }
    if (tandem_list_empty(&c->deadlines)) {
        uv_timer_stop(&c->timer); /* cannot fail */
        return;
    }
    uint64_t now = uv_now(c->loop);
    uint64_t deadline = by_deadline_of(tandem_list_first(&c->deadlines))->deadline_ms;
    client_timer_start(c, deadline > now ? deadline - now : 0);
}

static void client_fail_deferred(struct tandem_httpc *c)
{
    /* Restart after each failure: callbacks may open connections. Each pass clears one error,
     * and at most connections_max connections carry one. */
    for (unsigned pass = 0; pass <= TANDEM_HTTPC_CONNECTIONS_MAX && !c->closing; pass++) {
        struct tandem_httpc_conn *conn = conn_deferred(c);
        if (conn == NULL) {
            return;
        }
        int error = conn->deferred_error;
        conn->deferred_error = 0;
        conn_fail(conn, NULL, 0, error);
    }
}

static void client_timer_cb(uv_timer_t *timer)
{
    struct tandem_httpc *c = timer->data;
    client_fail_deferred(c);
    uint64_t now = uv_now(c->loop);
    /* Bounded: each pass finishes at least the head request. */
    while (!c->closing && !tandem_list_empty(&c->deadlines)) {
        struct tandem_httpc_request *req = by_deadline_of(tandem_list_first(&c->deadlines));
        if (req->deadline_ms > now) {
            break;
        }
        if (req->conn == NULL) {
            tandem_list_remove(&req->link);
            c->waiting_count--;
            request_finish(req, UV_ETIMEDOUT, NULL);
        } else {
            /* Responses come in order: later requests on this connection are stuck behind it. */
            conn_fail(req->conn, req, UV_ETIMEDOUT, UV_ECONNABORTED);
        }
    }
    client_arm_timer(c);
}

int tandem_httpc_init(struct tandem_httpc *c, uv_loop_t *loop, const char *host, int port,
                      unsigned connections_max, unsigned timeout_ms)
{
    memset(c, 0, sizeof *c);
    tandem_list_init(&c->conns);
    tandem_list_init(&c->waiting);
    tandem_list_init(&c->deadlines);
    size_t host_len = strlen(host);
    if (host_len == 0 || host_len >= sizeof c->host || port < 1 || port > 65535) {
        snprintf(c->errmsg, sizeof c->errmsg, "http client: bad target '%.64s':%d", host, port);
        return UV_EINVAL;
    }
    if (connections_max < 1 || connections_max > TANDEM_HTTPC_CONNECTIONS_MAX ||
        timeout_ms > TANDEM_HTTPC_TIMEOUT_MS_MAX) {
        snprintf(c->errmsg, sizeof c->errmsg,
                 "http client: connections_max %u not in [1, %d] or timeout_ms %u over %u",
                 connections_max, TANDEM_HTTPC_CONNECTIONS_MAX, timeout_ms,
                 TANDEM_HTTPC_TIMEOUT_MS_MAX);
        return UV_EINVAL;
    }
    c->loop = loop;
    memcpy(c->host, host, host_len + 1);
    c->port = port;
    c->connections_max = connections_max;
    c->timeout_ms = timeout_ms != 0 ? timeout_ms : TANDEM_HTTPC_TIMEOUT_MS_DEFAULT;
    snprintf(c->port_text, sizeof c->port_text, "%d", port);
    int ipv6 = strchr(host, ':') != NULL;
    snprintf(c->host_header, sizeof c->host_header, ipv6 ? "[%s]:%d" : "%s:%d", host, port);
    if (ipv6) {
        c->host_numeric = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&c->addr) == 0;
    } else {
        c->host_numeric = uv_ip4_addr(host, port, (struct sockaddr_in *)&c->addr) == 0 &&
                          strspn(host, "0123456789.") == host_len;
    }
    c->read_buf = malloc(TANDEM_HTTPC_READ_BUFFER_BYTES);
    if (c->read_buf == NULL) {
        snprintf(c->errmsg, sizeof c->errmsg, "http client: out of memory");
        return UV_ENOMEM;
    }
    int rv = uv_timer_init(loop, &c->timer);
    if (rv != 0) {
        free(c->read_buf);
        c->read_buf = NULL;
        (void)tandem_error_from_uv(rv, c->errmsg, "http client: timer");
        return rv; /* this client's contract returns the UV_* code */
    }
    c->timer.data = c;
    c->timer_open = 1;
    return 0;
}

int tandem_httpc_send(struct tandem_httpc *c, struct tandem_httpc_request *req, const char *method,
                      const char *target, const char *extra_headers, const void *body,
                      size_t body_len, tandem_httpc_cb cb)
{
    const char *extra = extra_headers != NULL ? extra_headers : "";
    size_t extra_len = strlen(extra);
    if (c->closing) {
        return UV_ECANCELED;
    }
    if (!token_ok(method) || !token_ok(target) ||
        (extra_len > 0 && (extra_len < 2 || strcmp(extra + extra_len - 2, "\r\n") != 0))) {
        return UV_EINVAL;
    }
    if (body_len > TANDEM_HTTPC_REQUEST_BYTES_MAX ||
        strlen(method) + strlen(target) + extra_len + body_len > TANDEM_HTTPC_REQUEST_BYTES_MAX) {
        return UV_E2BIG;
    }
    char length_line[48] = "";
    if (body_len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
        strcmp(method, "PATCH") == 0) {
        snprintf(length_line, sizeof length_line, "Content-Length: %zu\r\n", body_len);
    }
    void *data = req->data;
    unsigned timeout_ms = req->timeout_ms;
    memset(req, 0, sizeof *req);
    req->data = data;
    req->timeout_ms = timeout_ms;
    req->client = c;
    req->cb = cb;
    req->is_head = strcmp(method, "HEAD") == 0;
    req->deadline_ms = uv_now(c->loop) + (timeout_ms != 0 ? timeout_ms : c->timeout_ms);
    struct tandem_httpc_conn *conn = tandem_list_empty(&c->waiting) ? client_pick_conn(c) : NULL;
    int rc;
    if (conn != NULL) {
        rc = wire_append(&conn->out, &conn->out_len, &conn->out_cap, method, target, c->host_header,
                         length_line, extra, body, body_len);
    } else if (c->waiting_count < TANDEM_HTTPC_QUEUE_MAX) {
        size_t cap = 0;
        rc = wire_append(&req->wire, &req->wire_len, &cap, method, target, c->host_header,
                         length_line, extra, body, body_len);
    } else {
        return UV_ENOBUFS;
    }
    if (rc != 0) {
        free(req->wire);
        req->wire = NULL;
        return rc;
    }
    c->stats.requests++;
    c->pending++;
    if (conn != NULL) {
        conn_assign(conn, req);
    } else {
        tandem_list_push_back(&c->waiting, &req->link);
        c->waiting_count++;
    }
    deadline_insert(c, req);
    if (conn != NULL) {
        conn_flush(conn);
    }
    return 0;
}

static void client_timer_close_cb(uv_handle_t *handle)
{
    struct tandem_httpc *c = handle->data;
    c->timer_open = 0;
    client_maybe_finish(c);
}

static void client_maybe_finish(struct tandem_httpc *c)
{
    if (!c->closing || c->finished || c->timer_open || !tandem_list_empty(&c->conns)) {
        return;
    }
    c->finished = 1;
    free(c->read_buf);
    c->read_buf = NULL;
    if (c->close_cb != NULL) {
        c->close_cb(c); /* last: it may free c */
    }
}

void tandem_httpc_close(struct tandem_httpc *c, void (*close_cb)(struct tandem_httpc *c))
{
    if (c->closing) {
        return;
    }
    c->closing = 1;
    c->close_cb = close_cb;
    /* Callbacks below may call send (refused now) or close (a no-op), never add work. */
    while (!tandem_list_empty(&c->waiting)) {
        c->waiting_count--;
        request_finish(request_of(tandem_list_pop_front(&c->waiting)), UV_ECANCELED, NULL);
    }
    struct tandem_list *link;
    tandem_list_foreach(link, &c->conns)
    {
        conn_begin_close(conn_of(link));
    }
    tandem_list_foreach(link, &c->conns)
    {
        struct tandem_httpc_conn *conn = conn_of(link);
        while (!tandem_list_empty(&conn->fifo)) {
            request_finish(fifo_pop(conn), UV_ECANCELED, NULL);
        }
    }
    uv_close((uv_handle_t *)&c->timer, client_timer_close_cb);
}
