/* One tandem-bench connection: connect (and TLS handshake), write one request, parse its
 * response, reconnect. */
#include "tests/bench/bench_conn.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static int on_body(http_parser *p, const char *at, size_t len);
static int on_message_complete(http_parser *p);

static const http_parser_settings parser_settings = {
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void tcp_close_cb(uv_handle_t *handle);
static void connect_cb(uv_connect_t *req, int status);
static void stream_read(struct tandem_bench_conn *conn, ssize_t nread, const char *data);

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct tandem_bench_conn *conn = p->data;
    size_t room = sizeof conn->body_prefix - conn->body_prefix_len;
    size_t n = len < room ? len : room;
    memcpy(conn->body_prefix + conn->body_prefix_len, at, n);
    conn->body_prefix_len += n;
    return 0;
}

/* Pausing makes http_parser_execute return right after the message: with one request in
 * flight, any byte beyond it is a protocol error. */
static int on_message_complete(http_parser *p)
{
    struct tandem_bench_conn *conn = p->data;
    conn->message_complete = 1;
    conn->keep_alive = http_should_keep_alive(p);
    conn->status = p->status_code;
    http_parser_pause(p, 1);
    return 0;
}

static void maybe_closed(struct tandem_bench_conn *conn)
{
    if (conn->closing && conn->handles_open == 0 && conn->close_cb != NULL) {
        conn->close_cb(conn);
    }
}

static void close_socket(struct tandem_bench_conn *conn)
{
    if (conn->state == TANDEM_BENCH_CONN_CLOSED || conn->state == TANDEM_BENCH_CONN_CLOSING) {
        return;
    }
    if (conn->tls != NULL) {
        tandem_tls_read_stop(conn->tls);
    } else {
        uv_read_stop((uv_stream_t *)&conn->tcp);
    }
    uv_close((uv_handle_t *)&conn->tcp, tcp_close_cb);
    conn->state = TANDEM_BENCH_CONN_CLOSING;
}

static void complete(struct tandem_bench_conn *conn, enum tandem_bench_outcome outcome)
{
    uv_timer_stop(&conn->deadline);
    conn->request_waiting = 0;
    conn->cb(conn, outcome, uv_hrtime());
}

/* Ends the request in flight (if any) with outcome and drops the socket: after a timeout or an
 * error the stream position is unknown, so the connection cannot be reused. */
static void fail(struct tandem_bench_conn *conn, enum tandem_bench_outcome outcome)
{
    int has_request = conn->state == TANDEM_BENCH_CONN_CONNECTING ||
                      conn->state == TANDEM_BENCH_CONN_BUSY ||
                      (conn->state == TANDEM_BENCH_CONN_CLOSING && conn->request_waiting);
    close_socket(conn);
    if (has_request && !conn->closing) {
        complete(conn, outcome);
    }
}

static void write_cb(uv_write_t *req, int status);
static void tls_write_cb(void *data, void *write_data, int status);

/* The one place request bytes go to the socket: over TLS they are encrypted at once. */
static int transport_write(struct tandem_bench_conn *conn)
{
    if (conn->tls != NULL) {
        int rc = tandem_tls_write(conn->tls, conn->request.bufs, conn->request.nbufs, NULL,
                                  tls_write_cb);
        if (rc != TANDEM_OK) {
            snprintf(conn->tls_error, sizeof conn->tls_error, "%s", tandem_tls_error(conn->tls));
            return UV_EPROTO;
        }
        return 0;
    }
    return uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, conn->request.bufs,
                    conn->request.nbufs, write_cb);
}

/* Hands the formatted request to the socket, or leaves it waiting for the previous write's
 * callback: write_req cannot be reused before then, and a response can overtake that callback. */
static int write_request(struct tandem_bench_conn *conn)
{
    http_parser_init(&conn->parser, HTTP_RESPONSE);
    conn->parser.data = conn;
    conn->message_complete = 0;
    conn->body_prefix_len = 0;
    conn->status = 0;
    if (conn->writing) {
        conn->request_waiting = 1;
    } else {
        int rv = transport_write(conn);
        if (rv != 0) {
            return rv;
        }
        conn->writing = 1;
        conn->request_waiting = 0;
    }
    conn->state = TANDEM_BENCH_CONN_BUSY;
    return 0;
}

/* The request's bytes left (status 0) or could not (a UV_* code). */
static void write_done(struct tandem_bench_conn *conn, int status)
{
    conn->writing = 0;
    if (conn->state != TANDEM_BENCH_CONN_BUSY) {
        return; /* cancelled by a close, or the response already ended the request */
    }
    if (status < 0) {
        conn->last_error = status;
        fail(conn, TANDEM_BENCH_OUTCOME_IO);
        return;
    }
    if (conn->request_waiting) {
        conn->request_waiting = 0;
        int rv = transport_write(conn);
        if (rv != 0) {
            conn->last_error = rv;
            fail(conn, TANDEM_BENCH_OUTCOME_IO);
            return;
        }
        conn->writing = 1;
    }
}

static void write_cb(uv_write_t *req, int status)
{
    write_done(req->data, status);
}

static void tls_write_cb(void *data, void *write_data, int status)
{
    (void)write_data;
    write_done(data, status == TANDEM_OK ? 0 : UV_EPIPE);
}

static int open_socket(struct tandem_bench_conn *conn)
{
    int rv = uv_tcp_init(conn->loop, &conn->tcp);
    if (rv != 0) {
        return rv;
    }
    conn->tcp.data = conn;
    conn->handles_open++;
    conn->state = TANDEM_BENCH_CONN_CONNECTING;
    /* Requests are small and latency is the measure: no Nagle delay. */
    rv = uv_tcp_nodelay(&conn->tcp, 1);
    if (rv == 0) {
        rv = uv_tcp_connect(&conn->connect_req, &conn->tcp,
                            (const struct sockaddr *)&conn->endpoint->addr, connect_cb);
    }
    if (rv != 0) {
        uv_close((uv_handle_t *)&conn->tcp, tcp_close_cb);
        conn->state = TANDEM_BENCH_CONN_CLOSING;
        return rv;
    }
    return 0;
}

static void tcp_close_cb(uv_handle_t *handle)
{
    struct tandem_bench_conn *conn = handle->data;
    tandem_tls_free(conn->tls); /* uv_close ran its write callbacks already */
    conn->tls = NULL;
    conn->handles_open--;
    conn->state = TANDEM_BENCH_CONN_CLOSED;
    if (conn->closing) {
        maybe_closed(conn);
        return;
    }
    if (conn->request_waiting) {
        conn->last_error = open_socket(conn);
        if (conn->last_error != 0) {
            complete(conn, TANDEM_BENCH_OUTCOME_CONNECT);
        }
    }
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct tandem_bench_conn *conn = handle->data;
    (void)suggested;
    *buf = uv_buf_init(conn->read_buf, sizeof conn->read_buf);
}

/* The one place response bytes come from the socket: a TLS layer decrypts before this. */
static void transport_feed(struct tandem_bench_conn *conn, const char *data, size_t len)
{
    if (conn->state != TANDEM_BENCH_CONN_BUSY || conn->request_waiting) {
        /* Bytes nobody asked for (or before the request left): the stream is out of step. */
        conn->parse_error = "bytes with no request outstanding";
        fail(conn, TANDEM_BENCH_OUTCOME_PARSE);
        return;
    }
    size_t parsed = http_parser_execute(&conn->parser, &parser_settings, data, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&conn->parser);
    if (!conn->message_complete) {
        if (err != HPE_OK) {
            conn->parse_error = http_errno_description(err);
            fail(conn, TANDEM_BENCH_OUTCOME_PARSE);
        }
        return;
    }
    if (err != HPE_PAUSED || parsed != len) {
        conn->parse_error = "bytes after the response (one request was outstanding)";
        fail(conn, TANDEM_BENCH_OUTCOME_PARSE);
        return;
    }
    enum tandem_bench_outcome outcome =
        tandem_bench_response_classify(conn->payload->target, conn->request.op, conn->status,
                                       conn->body_prefix, conn->body_prefix_len);
    if (outcome == TANDEM_BENCH_OUTCOME_PARSE) {
        conn->parse_error = "unexpected status";
    }
    if (conn->keep_alive) {
        conn->state = TANDEM_BENCH_CONN_IDLE;
    } else {
        close_socket(conn);
    }
    complete(conn, outcome);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    stream_read(stream->data, nread, buf->base);
}

static void tls_read_cb(void *data, ssize_t nread, const char *buf)
{
    struct tandem_bench_conn *conn = data;
    if (nread == UV_EPROTO) {
        snprintf(conn->tls_error, sizeof conn->tls_error, "%s", tandem_tls_error(conn->tls));
    }
    stream_read(conn, nread, buf);
}

/* Response bytes (nread > 0) or the end of the stream (a UV_* code), plain or decrypted. */
static void stream_read(struct tandem_bench_conn *conn, ssize_t nread, const char *data)
{
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        /* An idle keep-alive connection the server closed is not an error of any request. */
        if (conn->state == TANDEM_BENCH_CONN_BUSY) {
            conn->last_error = (int)nread;
            fail(conn, TANDEM_BENCH_OUTCOME_IO);
        } else {
            close_socket(conn);
        }
        return;
    }
    transport_feed(conn, data, (size_t)nread);
}

static void send_after_connect(struct tandem_bench_conn *conn)
{
    conn->last_error = write_request(conn);
    if (conn->last_error != 0) {
        fail(conn, TANDEM_BENCH_OUTCOME_IO);
    }
}

static void tls_handshake_cb(void *data, int status)
{
    struct tandem_bench_conn *conn = data;
    if (conn->state != TANDEM_BENCH_CONN_CONNECTING) {
        return; /* closed meanwhile */
    }
    if (status == TANDEM_OK && tandem_tls_read_start(conn->tls, tls_read_cb) == TANDEM_OK) {
        send_after_connect(conn);
        return;
    }
    snprintf(conn->tls_error, sizeof conn->tls_error, "%s", tandem_tls_error(conn->tls));
    conn->last_error = UV_EPROTO;
    fail(conn, TANDEM_BENCH_OUTCOME_CONNECT);
}

/* Wraps the connected socket in TLS; the request goes out from tls_handshake_cb. */
static int tls_start(struct tandem_bench_conn *conn)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (conn->tls_ctx == NULL) {
        snprintf(conn->tls_error, sizeof conn->tls_error, "https:// needs --cacert/--cert/--key");
        return UV_EPROTO;
    }
    /* Any node certificate of the CA serves: the bench names endpoints by address. */
    if (tandem_tls_new(conn->tls_ctx, &conn->tcp, TANDEM_TLS_CLIENT, NULL, conn, &conn->tls,
                       errmsg) != TANDEM_OK) {
        snprintf(conn->tls_error, sizeof conn->tls_error, "%s", errmsg);
        return UV_EPROTO;
    }
    if (tandem_tls_handshake(conn->tls, tls_handshake_cb) != TANDEM_OK) {
        snprintf(conn->tls_error, sizeof conn->tls_error, "%s", tandem_tls_error(conn->tls));
        return UV_EPROTO;
    }
    return 0;
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct tandem_bench_conn *conn = req->data;
    if (conn->state != TANDEM_BENCH_CONN_CONNECTING) {
        return; /* closed meanwhile */
    }
    conn->last_error = status;
    if (status == 0 && conn->endpoint->tls) {
        conn->connects++;
        conn->last_error = tls_start(conn);
    } else if (status == 0) {
        conn->connects++;
        conn->last_error = uv_read_start((uv_stream_t *)&conn->tcp, alloc_cb, read_cb);
    }
    if (conn->last_error != 0) {
        fail(conn, TANDEM_BENCH_OUTCOME_CONNECT);
        return;
    }
    if (!conn->endpoint->tls) {
        send_after_connect(conn);
    }
}

static void deadline_cb(uv_timer_t *timer)
{
    fail(timer->data, TANDEM_BENCH_OUTCOME_TIMEOUT);
}

static void deadline_close_cb(uv_handle_t *handle)
{
    struct tandem_bench_conn *conn = handle->data;
    conn->handles_open--;
    maybe_closed(conn);
}

int tandem_bench_conn_init(struct tandem_bench_conn *conn, uv_loop_t *loop,
                           const struct tandem_bench_endpoint *endpoint,
                           const struct tandem_bench_payload *payload,
                           struct tandem_tls_ctx *tls_ctx, unsigned timeout_ms,
                           tandem_bench_conn_cb cb)
{
    void *data = conn->data;
    memset(conn, 0, offsetof(struct tandem_bench_conn, read_buf));
    conn->data = data;
    conn->loop = loop;
    conn->endpoint = endpoint;
    conn->payload = payload;
    conn->tls_ctx = tls_ctx;
    conn->timeout_ms = timeout_ms;
    conn->cb = cb;
    conn->state = TANDEM_BENCH_CONN_CLOSED;
    conn->connect_req.data = conn;
    conn->write_req.data = conn;
    int rv = uv_timer_init(loop, &conn->deadline);
    if (rv != 0) {
        return rv;
    }
    conn->deadline.data = conn;
    conn->handles_open = 1;
    return 0;
}

int tandem_bench_conn_send(struct tandem_bench_conn *conn, enum tandem_bench_op op,
                           uint64_t key_index)
{
    if (conn->closing) {
        return UV_ECANCELED;
    }
    if (conn->state == TANDEM_BENCH_CONN_CONNECTING || conn->state == TANDEM_BENCH_CONN_BUSY ||
        conn->request_waiting) {
        return UV_EBUSY;
    }
    int rv =
        tandem_bench_request_format(&conn->request, conn->payload, conn->endpoint, op, key_index);
    if (rv == 0) {
        rv = uv_timer_start(&conn->deadline, deadline_cb, conn->timeout_ms, 0);
    }
    if (rv != 0) {
        return rv;
    }
    if (conn->state == TANDEM_BENCH_CONN_IDLE) {
        rv = write_request(conn);
        if (rv != 0) {
            close_socket(conn);
        }
    } else if (conn->state == TANDEM_BENCH_CONN_CLOSED) {
        rv = open_socket(conn);
        conn->request_waiting = rv == 0;
    } else {
        conn->request_waiting = 1; /* CLOSING: tcp_close_cb reconnects */
    }
    if (rv != 0) {
        uv_timer_stop(&conn->deadline);
    }
    return rv;
}

void tandem_bench_conn_close(struct tandem_bench_conn *conn,
                             void (*close_cb)(struct tandem_bench_conn *conn))
{
    if (conn->closing) {
        return;
    }
    conn->closing = 1;
    conn->close_cb = close_cb;
    conn->request_waiting = 0;
    uv_timer_stop(&conn->deadline);
    uv_close((uv_handle_t *)&conn->deadline, deadline_close_cb);
    close_socket(conn);
}
