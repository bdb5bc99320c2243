/* HTTP/1.1 server on libuv + http-parser: connections, pipelining, in-order responses. */
#include "node/http/server.h"
#include "node/log.h"
#include "storage/assert.h"
#include "storage/error.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A streaming response on one connection: bytes written before its head went out wait in
 * pending. Freed with its connection, after close_cb. */
struct tandem_http_stream {
    struct tandem_http_conn *conn; /* borrowed: the connection owns the stream */
    tandem_http_stream_close_fn close_cb;
    void *data;
    char *pending; /* owned */
    size_t pending_len, pending_cap;
    size_t buffered; /* pending + written but not yet confirmed */
    int head_sent;
    tandem_http_stream_drain_fn drain_cb; /* NULL: the writer is not told */
    int ending;    /* tandem_http_stream_end: linger once everything is written */
    int delivered; /* ended, and every byte written was confirmed by the socket */
};

/* One chunk of a stream in a uv_write. */
struct stream_chunk {
    uv_write_t req;
    size_t len;
    char data[];
};

/* One accepted socket. Requests live in `queue` from completion until their response is written;
 * the first `writing` of them are in write_req. Freed when both handles have closed. */
struct tandem_http_conn {
    struct tandem_http_server *server; /* borrowed */
    struct tandem_list link;           /* in server->conns */
    struct tandem_list resume_link;    /* in server->resume when resume_queued */
    struct tandem_list queue; /* owned tandem_http_request, oldest first, except handed ones */
    struct tandem_http_request *parsing; /* owned: the request being parsed */
    struct tandem_http_stream *stream;   /* owned: set once a request became a stream */
    uv_tcp_t tcp;
    uv_timer_t timer; /* idle timeout (or the head deadline, if sooner), then the linger timeout */
    uv_write_t write_req;
    uv_write_t continue_req;
    uv_shutdown_t shutdown_req;
    http_parser parser;
    unsigned depth;   /* requests in the queue */
    unsigned writing; /* queue head requests in write_req */
    char *pending;    /* owned: bytes read but not parsed while paused */
    size_t pending_len;
    uint64_t head_deadline; /* uv_now by which the request head parsed must be complete; 0: none */
    int reject_status;      /* set by a parser callback refusing the request */
    char reject_message[TANDEM_ERRMSG_SIZE];
    unsigned handles_open;
    struct tandem_source source; /* counted in server->sources when source_counted */
    int source_counted;
    int reading, paused, resume_queued, stopped, peer_eof, lingering, closing;
    int continue_in_flight;
    /* HTTPS: NULL on a plaintext server. Owned, freed once the tcp handle has closed. */
    struct tandem_tls *tls;
    struct tandem_tls_peer peer; /* who the handshake proved the client to be; NONE in plaintext */
    int handshaking;             /* no HTTP byte is read or written until it succeeds */
    int tls_quiet;               /* no close_notify: sent already, or the session failed */
};

static char continue_text[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void conn_close(struct tandem_http_conn *c);
static void conn_write(struct tandem_http_conn *c);
static void conn_read_start(struct tandem_http_conn *c);
static void conn_timer_start(struct tandem_http_conn *c, uint64_t timeout_ms);
static void server_maybe_finish(struct tandem_http_server *s);
static void server_resume_cb(uv_idle_t *idle);
static void conn_read_stop(struct tandem_http_conn *c);
static void conn_tls_refuse(struct tandem_http_conn *c, const char *why);
static int conn_send(struct tandem_http_conn *c, uv_write_t *req, const uv_buf_t bufs[],
                     unsigned nbufs, uv_write_cb cb);

/* ---- limits ---- */

static const struct tandem_http_limits limits_default = {
    .body_bytes_max = TANDEM_HTTP_BODY_BYTES_DEFAULT,
    .header_bytes_max = TANDEM_HTTP_HEADER_BYTES_DEFAULT,
    .connections_max = TANDEM_HTTP_CONNECTIONS_DEFAULT,
    .pipeline_depth_max = TANDEM_HTTP_PIPELINE_DEPTH_DEFAULT,
    .idle_timeout_ms = TANDEM_HTTP_IDLE_TIMEOUT_MS_DEFAULT,
    .header_timeout_ms = TANDEM_HTTP_HEADER_TIMEOUT_MS_DEFAULT,
    .requests_max = TANDEM_HTTP_REQUESTS_DEFAULT,
};

void tandem_http_limits_default(struct tandem_http_limits *l)
{
    *l = limits_default;
}

static int limit_check(const char *name, size_t value, size_t min, size_t max, char *errmsg)
{
    if (value >= min && value <= max) {
        return 0;
    }
    snprintf(errmsg, TANDEM_ERRMSG_SIZE, "http limit %s = %zu is outside [%zu, %zu]", name, value,
             min, max);
    return -1;
}

int tandem_http_limits_check(const struct tandem_http_limits *l, char *errmsg)
{
    if (limit_check("body_bytes_max", l->body_bytes_max, TANDEM_HTTP_BODY_BYTES_MIN,
                    TANDEM_HTTP_BODY_BYTES_MAX, errmsg) != 0 ||
        limit_check("header_bytes_max", l->header_bytes_max, TANDEM_HTTP_HEADER_BYTES_MIN,
                    TANDEM_HTTP_HEADER_BYTES_MAX, errmsg) != 0 ||
        limit_check("connections_max", l->connections_max, TANDEM_HTTP_CONNECTIONS_MIN,
                    TANDEM_HTTP_CONNECTIONS_MAX, errmsg) != 0 ||
        limit_check("pipeline_depth_max", l->pipeline_depth_max, TANDEM_HTTP_PIPELINE_DEPTH_MIN,
                    TANDEM_HTTP_PIPELINE_DEPTH_MAX, errmsg) != 0 ||
        limit_check("idle_timeout_ms", l->idle_timeout_ms, TANDEM_HTTP_IDLE_TIMEOUT_MS_MIN,
                    TANDEM_HTTP_IDLE_TIMEOUT_MS_MAX, errmsg) != 0 ||
        limit_check("header_timeout_ms", l->header_timeout_ms, TANDEM_HTTP_HEADER_TIMEOUT_MS_MIN,
                    TANDEM_HTTP_HEADER_TIMEOUT_MS_MAX, errmsg) != 0 ||
        limit_check("requests_max", l->requests_max, TANDEM_HTTP_REQUESTS_MIN,
                    TANDEM_HTTP_REQUESTS_MAX, errmsg) != 0) {
        return -1;
    }
    return 0;
}

/* ---- buffers and the request pool ---- */

static void buf_trim(char **buf, size_t *cap)
{
    if (*cap > TANDEM_HTTP_POOLED_BUFFER_BYTES_MAX) {
        free(*buf);
        *buf = NULL;
        *cap = 0;
    }
}

static struct tandem_http_request *request_of(struct tandem_list *link)
{
    return tandem_list_entry(link, struct tandem_http_request, link);
}

static struct tandem_http_conn *conn_of(struct tandem_list *link)
{
    return tandem_list_entry(link, struct tandem_http_conn, link);
}

static void request_free(struct tandem_http_request *r)
{
    tandem_http_head_free(&r->head);
    free(r->body_buf);
    free(r->resp);
    free(r);
}

/* Reuses a pooled object, keeping its buffers: the hot path allocates nothing once warm. */
static struct tandem_http_request *request_acquire(struct tandem_http_server *s)
{
    struct tandem_http_request *r = NULL;
    if (!tandem_list_empty(&s->pool)) {
        r = request_of(tandem_list_pop_front(&s->pool));
        s->pool_count--;
    } else {
        r = calloc(1, sizeof *r);
        if (r == NULL) {
            return NULL;
        }
    }
    struct tandem_http_head head = r->head;
    char *body_buf = r->body_buf, *resp = r->resp;
    size_t body_cap = r->body_cap, resp_cap = r->resp_cap;
    memset(r, 0, sizeof *r);
    r->head = head;
    tandem_http_head_start(&r->head, s->limits.header_bytes_max, false);
    r->body_buf = body_buf;
    r->body_cap = body_cap;
    r->resp = resp;
    r->resp_cap = resp_cap;
    r->server = s;
    tandem_list_init(&r->link);
    return r;
}

static void request_release(struct tandem_http_request *r)
{
    struct tandem_http_server *s = r->server;
    if (s->pool_count >= TANDEM_HTTP_REQUEST_POOL_MAX) {
        request_free(r);
        return;
    }
    buf_trim(&r->head.text, &r->head.cap);
    buf_trim(&r->body_buf, &r->body_cap);
    buf_trim(&r->resp, &r->resp_cap);
    tandem_list_push_front(&s->pool, &r->link);
    s->pool_count++;
}

const char *tandem_http_request_header(const struct tandem_http_request *r, const char *name)
{
    return tandem_http_head_find(&r->head, name);
}

/* ---- JSON error bodies ---- */

struct emitter {
    char *out;
    size_t size, len;
};

static void emit(struct emitter *e, const char *bytes, size_t n)
{
    if (e->len + n < e->size) {
        memcpy(e->out + e->len, bytes, n);
    }
    e->len += n;
}

/* Length of the valid UTF-8 sequence starting at p (at most n bytes), 0 when invalid. */
static size_t utf8_sequence(const unsigned char *p, size_t n)
{
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (p[0] >= 0xC2 && p[0] <= 0xDF) {
        len = 2;
    } else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        len = 3;
        lo = p[0] == 0xE0 ? 0xA0 : 0x80; /* no overlong forms */
        hi = p[0] == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        len = 4;
        lo = p[0] == 0xF0 ? 0x90 : 0x80;
        hi = p[0] == 0xF4 ? 0x8F : 0xBF; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (len > n || p[1] < lo || p[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF) {
            return 0;
        }
    }
    return len;
}

static void emit_json_string_body(struct emitter *e, const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        unsigned char ch = p[i];
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            emit(e, esc, 2);
            i++;
        } else if (ch < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned)ch);
            emit(e, esc, 6);
            i++;
        } else if (ch < 0x80) {
            emit(e, (const char *)p + i, 1);
            i++;
        } else {
            size_t len = utf8_sequence(p + i, n - i);
            if (len == 0) {
                emit(e, "\\ufffd", 6);
                i++;
            } else {
                emit(e, (const char *)p + i, len);
                i += len;
            }
        }
    }
}

size_t tandem_http_error_json(char *out, size_t out_size, const char *text)
{
    struct emitter e = {out, out_size, 0};
    emit(&e, "{\"error\":\"", 10);
    emit_json_string_body(&e, text);
    emit(&e, "\"}", 2);
    if (e.len < out_size) {
        out[e.len] = '\0';
    } else if (out_size > 0) {
        out[0] = '\0';
    }
    return e.len;
}

/* ---- query helpers ---- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static int decode(const char *in, size_t in_len, char *out, size_t out_size, size_t *out_len,
                  int plus_as_space)
{
    size_t o = 0;
    if (out_size == 0) {
        return -1;
    }
    for (size_t i = 0; i < in_len; i++) {
        char ch = in[i];
        if (ch == '%') {
            if (i + 2 >= in_len) {
                return -1;
            }
            int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                return -1;
            }
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+' && plus_as_space) {
            ch = ' ';
        } else if (ch == '\0') {
            return -1;
        }
        if (o + 1 >= out_size) {
            return -1;
        }
        out[o++] = ch;
    }
    out[o] = '\0';
    if (out_len != NULL) {
        *out_len = o;
    }
    return 0;
}

int tandem_http_url_decode(const char *in, size_t in_len, char *out, size_t out_size,
                           size_t *out_len)
{
    return decode(in, in_len, out, out_size, out_len, 1);
}

int tandem_http_path_decode(const char *in, size_t in_len, char *out, size_t out_size,
                            size_t *out_len)
{
    return decode(in, in_len, out, out_size, out_len, 0);
}

int tandem_http_query_get(const char *query, const char *name, char *out, size_t out_size)
{
    if (query == NULL) {
        return 0;
    }
    size_t name_len = strlen(name);
    const char *p = query;
    /* Each pass consumes one '&'-separated pair, so the loop ends with the string. */
    for (;;) {
        const char *amp = strchr(p, '&');
        size_t pair_len = amp != NULL ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', pair_len);
        size_t key_len = eq != NULL ? (size_t)(eq - p) : pair_len;
        char key[TANDEM_HTTP_QUERY_NAME_BYTES_MAX];
        size_t decoded_len = 0;
        if (pair_len > 0 && decode(p, key_len, key, sizeof key, &decoded_len, 1) == 0 &&
            decoded_len == name_len && memcmp(key, name, name_len) == 0) {
            const char *value = eq != NULL ? eq + 1 : p + pair_len;
            size_t value_len = eq != NULL ? pair_len - key_len - 1 : 0;
            return decode(value, value_len, out, out_size, NULL, 1) == 0 ? 1 : -1;
        }
        if (amp == NULL) {
            return 0;
        }
        p = amp + 1;
    }
}

/* ---- parser callbacks: build conn->parsing ---- */

static int reject_status_set(struct tandem_http_conn *c, int status)
{
    tandem_assert(status >= 400 && status <= 599);
    c->reject_status = status;
    return -1;
}

/* Makes http_parser_execute stop with an error; conn_feed then answers `status` with the
 * formatted message. */
#define reject(c, status, ...)                                                                     \
    ((void)tandem_error_set((c)->reject_message, TANDEM_INVALID, __VA_ARGS__),                     \
     reject_status_set((c), (status)))

/* Turns a head collection error into the answer the request gets. */
static int head_reject(struct tandem_http_conn *c, int rv)
{
    switch (rv) {
        case 0:
            return 0;
        case TANDEM_HTTP_HEAD_TOO_BIG:
            return reject(c, 431, "request header fields exceed %zu bytes",
                          c->server->limits.header_bytes_max);
        case TANDEM_HTTP_HEAD_TOO_MANY:
            return reject(c, 431, "request has more than %d header fields",
                          TANDEM_HTTP_HEADERS_KEPT_MAX);
        default:
            return reject(c, 503, "server out of memory");
    }
}

static int on_message_begin(http_parser *p)
{
    struct tandem_http_conn *c = p->data;
    struct tandem_http_server *s = c->server;
    tandem_assert(c->parsing == NULL); /* one request parsed at a time per connection */
    if (s->stats.requests_outstanding >= s->limits.requests_max) {
        return reject(c, 503, "server has %u requests in progress", s->limits.requests_max);
    }
    c->parsing = request_acquire(s);
    if (c->parsing == NULL) {
        return reject(c, 503, "server out of memory");
    }
    if (c->head_deadline == 0) {
        c->head_deadline = uv_now(s->loop) + s->limits.header_timeout_ms;
        conn_timer_start(c, s->limits.idle_timeout_ms);
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct tandem_http_conn *c = p->data;
    return head_reject(c, tandem_http_head_lead(&c->parsing->head, at, len));
}

/* RFC 9110's tchar: http_parser, built lenient, lets a space or a separator into a field name. */
static bool field_name_ok(const char *at, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)at[i];
        if (!isalnum(ch) && strchr("!#$%&'*+-.^_`|~", ch) == NULL) {
            return false;
        }
    }
    return true;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct tandem_http_conn *c = p->data;
    if (!field_name_ok(at, len)) {
        return reject(c, 400, "malformed HTTP request: invalid character in a header field name");
    }
    return head_reject(c, tandem_http_head_field(&c->parsing->head, at, len));
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct tandem_http_conn *c = p->data;
    return head_reject(c, tandem_http_head_value(&c->parsing->head, at, len));
}

/* Sends the interim response only when nothing earlier on the connection is unanswered, so it
 * cannot overtake a pipelined response; otherwise the client sends the body after its wait. */
static void conn_continue_cb(uv_write_t *req, int status)
{
    struct tandem_http_conn *c = req->data;
    c->continue_in_flight = 0;
    if (status < 0 && !c->closing) {
        conn_close(c);
    }
}

static void conn_send_continue(struct tandem_http_conn *c)
{
    if (c->depth > 0 || c->continue_in_flight) {
        return;
    }
    uv_buf_t buf = uv_buf_init(continue_text, (unsigned)(sizeof continue_text - 1));
    if (conn_send(c, &c->continue_req, &buf, 1, conn_continue_cb) == 0) {
        c->continue_in_flight = 1;
    }
}

static int on_headers_complete(http_parser *p)
{
    struct tandem_http_conn *c = p->data;
    struct tandem_http_request *r = c->parsing;
    if (head_reject(c, tandem_http_head_end(&r->head)) != 0) {
        return -1;
    }
    if (p->http_major != 1 || p->http_minor > 1) {
        return reject(c, 505, "HTTP/%u.%u is not supported: send HTTP/1.1 or HTTP/1.0",
                      p->http_major, p->http_minor);
    }
    c->head_deadline = 0; /* the head is in: the idle timeout governs from here */
    conn_timer_start(c, c->server->limits.idle_timeout_ms);
    size_t max = c->server->limits.body_bytes_max;
    if ((p->flags & F_CONTENTLENGTH) != 0 && p->content_length > max) {
        return reject(c, 413, "request body exceeds %zu bytes", max);
    }
    const char *expect = tandem_http_request_header(r, "Expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && p->http_major == 1 &&
        p->http_minor >= 1) {
        conn_send_continue(c);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct tandem_http_conn *c = p->data;
    struct tandem_http_request *r = c->parsing;
    size_t max = c->server->limits.body_bytes_max;
    if (r->body_len + len > max) {
        return reject(c, 413, "request body exceeds %zu bytes", max);
    }
    if (tandem_http_buf_append(&r->body_buf, &r->body_len, &r->body_cap, at, len) != 0) {
        return reject(c, 503, "server out of memory");
    }
    return 0;
}

/* Copies path and query out of the url so each is NUL-terminated, then fixes the pointers (the
 * head buffer no longer moves). Pauses the parser: conn_feed dispatches outside its callbacks. */
static int on_message_complete(http_parser *p)
{
    struct tandem_http_conn *c = p->data;
    struct tandem_http_request *r = c->parsing;
    struct tandem_http_head *h = &r->head;
    if (head_reject(c, tandem_http_head_end(h)) != 0) {
        return -1;
    }
    size_t url_len = h->lead_len;
    const char *question = memchr(h->text, '?', url_len);
    size_t path_len = question != NULL ? (size_t)(question - h->text) : url_len;
    size_t query_len = question != NULL ? url_len - path_len - 1 : 0;
    /* Copied within the buffer: reserved first, so the source does not move meanwhile. */
    if (tandem_http_buf_reserve(&h->text, &h->cap, h->len + path_len + query_len + 2) != 0) {
        return reject(c, 503, "server out of memory");
    }
    size_t path_off = h->len;
    memcpy(h->text + path_off, h->text, path_len);
    h->text[path_off + path_len] = '\0';
    size_t query_off = path_off + path_len + 1;
    memcpy(h->text + query_off, h->text + path_len + 1, query_len);
    h->text[query_off + query_len] = '\0';
    h->len = query_off + query_len + 1;
    r->url = h->text;
    r->path = h->text + path_off;
    r->query = h->text + query_off;
    if (r->body_len > 0) {
        r->body_buf[r->body_len] = '\0';
        r->body = r->body_buf;
    } else {
        r->body = "";
    }
    r->method = (int)p->method;
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    r->start_ns = uv_hrtime();
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = TANDEM_HTTP_PARSER_SETTINGS(on_url);

/* ---- responses ---- */

static const char *status_reason(int status)
{
    const char *text = http_status_str((enum http_status)status);
    return strcmp(text, "<unknown>") == 0 ? "Status" : text;
}

/* Serialises the response into r->resp. Returns 0 or UV_ENOMEM. */
static int request_format(struct tandem_http_request *r, int status, const char *content_type,
                          const char *extra_headers, const void *body, size_t body_len)
{
    if (status < 100 || status > 999) {
        status = 500;
    }
    int bodyless = (status >= 100 && status < 200) || status == 204 || status == 304;
    char length[48] = "";
    if (!bodyless && !r->streaming) {
        snprintf(length, sizeof length, "Content-Length: %zu\r\n", body_len);
    }
    const char *connection = "";
    if (!r->keep_alive) {
        connection = "Connection: close\r\n";
    } else if (r->http_major == 1 && r->http_minor == 0) {
        connection = "Connection: keep-alive\r\n";
    }
    const char *ct = content_type != NULL ? content_type : "";
    const char *ct_name = content_type != NULL ? "Content-Type: " : "";
    const char *ct_end = content_type != NULL ? "\r\n" : "";
    const char *extra = extra_headers != NULL ? extra_headers : "";
    const char *fmt = "HTTP/1.1 %d %s\r\n%s%s%s%s%s%s\r\n";
    int head_len = snprintf(NULL, 0, fmt, status, status_reason(status), ct_name, ct, ct_end,
                            length, connection, extra);
    if (head_len < 0) {
        return UV_EINVAL;
    }
    size_t send_body = (bodyless || r->method == HTTP_HEAD) ? 0 : body_len;
    if (tandem_http_buf_reserve(&r->resp, &r->resp_cap, (size_t)head_len + send_body + 1) != 0) {
        return UV_ENOMEM;
    }
    snprintf(r->resp, (size_t)head_len + 1, fmt, status, status_reason(status), ct_name, ct, ct_end,
             length, connection, extra);
    if (send_body > 0) {
        memcpy(r->resp + head_len, body, send_body);
    }
    r->resp_len = (size_t)head_len + send_body;
    r->responded = 1;
    return 0;
}

void tandem_http_respond(struct tandem_http_request *r, int status, const char *content_type,
                         const char *extra_headers, const void *body, size_t body_len)
{
    tandem_assert(r->handed && !r->responded); /* answered once, after it was handed over */
    struct tandem_http_server *s = r->server;
    struct tandem_http_conn *c = r->conn;
    tandem_assert(s->stats.requests_outstanding > 0);
    s->stats.requests_outstanding--;
    if (c == NULL) {
        /* The connection is gone: only release. This may finish a closing server. */
        r->responded = 1;
        request_release(r);
        server_maybe_finish(s);
        return;
    }
    if (request_format(r, status, content_type, extra_headers, body, body_len) != 0) {
        r->responded = 1; /* nothing to send: dropping the connection is the only honest answer */
        conn_close(c);
        return;
    }
    conn_write(c);
}

void tandem_http_respond_json(struct tandem_http_request *r, int status, const char *extra_headers,
                              const char *json_text)
{
    tandem_http_respond(r, status, "application/json", extra_headers, json_text, strlen(json_text));
}

void tandem_http_respond_error(struct tandem_http_request *r, int status, const char *fmt, ...)
{
    char message[TANDEM_HTTP_ERROR_MESSAGE_BYTES_MAX];
    /* Worst case every byte becomes a 6-byte \u escape. */
    char body[6 * TANDEM_HTTP_ERROR_MESSAGE_BYTES_MAX + 16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    size_t len = tandem_http_error_json(body, sizeof body, message);
    tandem_http_respond(r, status, "application/json", NULL, body, len);
}

/* ---- streams ---- */

static void conn_linger(struct tandem_http_conn *c);

/* Everything written is out: an ended stream lingers (FIN, then drain the peer) and closes; a
 * writer with a drain callback is asked for more whenever bytes left the buffer. */
static void stream_written(struct tandem_http_stream *st)
{
    struct tandem_http_conn *c = st->conn;
    if (c->closing || c->lingering || !st->head_sent) {
        return;
    }
    if (st->ending && st->buffered == 0) {
        st->delivered = 1;
        conn_linger(c);
    } else if (!st->ending && st->drain_cb != NULL) {
        st->drain_cb(st, st->data);
    }
}

static void stream_write_cb(uv_write_t *req, int status)
{
    struct stream_chunk *chunk = (struct stream_chunk *)req;
    struct tandem_http_stream *st = req->data;
    tandem_assert(st->buffered >= chunk->len);
    st->buffered -= chunk->len;
    free(chunk);
    if (status < 0 && !st->conn->closing) {
        conn_close(st->conn);
        return;
    }
    stream_written(st);
}

static int stream_send(struct tandem_http_stream *st, const void *bytes, size_t len)
{
    struct tandem_http_conn *c = st->conn;
    struct stream_chunk *chunk = malloc(sizeof *chunk + len);
    if (chunk == NULL) {
        conn_close(c);
        return UV_ENOMEM;
    }
    memcpy(chunk->data, bytes, len);
    chunk->len = len;
    chunk->req.data = st;
    uv_buf_t buf = uv_buf_init(chunk->data, (unsigned)len);
    int rv = conn_send(c, &chunk->req, &buf, 1, stream_write_cb);
    if (rv != 0) {
        free(chunk);
        conn_close(c);
        return rv;
    }
    st->buffered += len;
    return 0;
}

/* The head is out: what was written meanwhile follows it. */
static void stream_head_sent(struct tandem_http_conn *c)
{
    struct tandem_http_stream *st = c->stream;
    tandem_assert(st != NULL && !st->head_sent);
    st->head_sent = 1;
    size_t len = st->pending_len;
    st->buffered -= len;
    st->pending_len = 0;
    if (len > 0) {
        (void)stream_send(st, st->pending, len); /* a failure closes the connection */
    } else {
        stream_written(st); /* nothing was waiting: the writer may go on (or the end is here) */
    }
}

int tandem_http_stream_open(struct tandem_http_request *r, int status, const char *content_type,
                            const char *extra_headers, tandem_http_stream_close_fn close_cb,
                            void *data, struct tandem_http_stream **out)
{
    tandem_assert(r->handed && !r->responded && close_cb != NULL);
    struct tandem_http_conn *c = r->conn;
    if (c == NULL || c->closing) {
        return UV_ENOTCONN;
    }
    if (r->link.next != &c->queue || c->stream != NULL) {
        return UV_EBUSY; /* answers after it would land inside the stream */
    }
    struct tandem_http_stream *st = calloc(1, sizeof *st);
    if (st == NULL) {
        return UV_ENOMEM;
    }
    r->keep_alive = 0;
    r->streaming = 1;
    if (request_format(r, status, content_type, extra_headers, NULL, 0) != 0) {
        r->streaming = 0;
        free(st);
        return UV_ENOMEM;
    }
    *st = (struct tandem_http_stream){.conn = c, .close_cb = close_cb, .data = data};
    c->stream = st;
    /* A reader that vanished without a FIN is found by TCP keepalive, not by the idle timer
     * (which a stream does not have). Best effort: the stream works without it. */
    (void)uv_tcp_keepalive(&c->tcp, 1, TANDEM_HTTP_STREAM_KEEPALIVE_S);
    c->stopped = 1;
    c->server->stats.requests_outstanding--;
    c->server->stats.streams_open++;
    *out = st;
    conn_write(c);
    return 0;
}

int tandem_http_stream_write(struct tandem_http_stream *st, const void *bytes, size_t len)
{
    struct tandem_http_conn *c = st->conn;
    if (c->closing) {
        return UV_EPIPE;
    }
    if (st->buffered + len > TANDEM_HTTP_STREAM_BUFFERED_BYTES_MAX) {
        conn_close(c); /* a reader this slow resumes from its last event id */
        return UV_ENOBUFS;
    }
    if (st->head_sent) {
        return stream_send(st, bytes, len);
    }
    if (tandem_http_buf_append(&st->pending, &st->pending_len, &st->pending_cap, bytes, len) != 0) {
        conn_close(c);
        return UV_ENOMEM;
    }
    st->buffered += len;
    return 0;
}

int tandem_http_stream_open_sized(struct tandem_http_request *r, int status,
                                  const char *content_type, const char *extra_headers,
                                  uint64_t content_length, tandem_http_stream_drain_fn drain_cb,
                                  tandem_http_stream_close_fn close_cb, void *data,
                                  struct tandem_http_stream **out)
{
    char headers[TANDEM_HTTP_STREAM_HEADERS_BYTES_MAX];
    int n =
        snprintf(headers, sizeof headers, "Content-Length: %llu\r\n%s",
                 (unsigned long long)content_length, extra_headers != NULL ? extra_headers : "");
    if (n < 0 || (size_t)n >= sizeof headers) {
        return UV_E2BIG;
    }
    int rv = tandem_http_stream_open(r, status, content_type, headers, close_cb, data, out);
    if (rv == 0) {
        (*out)->drain_cb = drain_cb;
    }
    return rv;
}

size_t tandem_http_stream_buffered(const struct tandem_http_stream *st)
{
    return st->buffered;
}

void tandem_http_stream_end(struct tandem_http_stream *st)
{
    if (st->conn->closing || st->ending) {
        return;
    }
    st->ending = 1;
    if (st->head_sent && st->buffered == 0) {
        st->delivered = 1;
        conn_linger(st->conn);
    }
}

bool tandem_http_stream_delivered(const struct tandem_http_stream *st)
{
    return st->delivered != 0;
}

void tandem_http_stream_close(struct tandem_http_stream *st)
{
    if (!st->conn->closing) {
        conn_close(st->conn);
    }
}

/* ---- connection queue and writes ---- */

static void queue_push(struct tandem_http_conn *c, struct tandem_http_request *r)
{
    r->conn = c;
    tandem_list_push_back(&c->queue, &r->link);
    c->depth++;
}

static struct tandem_http_request *queue_pop(struct tandem_http_conn *c)
{
    tandem_assert(c->depth > 0);
    struct tandem_http_request *r = request_of(tandem_list_pop_front(&c->queue));
    c->depth--;
    return r;
}

static void conn_maybe_resume(struct tandem_http_conn *c)
{
    struct tandem_http_server *s = c->server;
    if (!c->paused || c->resume_queued || c->closing || c->depth >= s->limits.pipeline_depth_max) {
        return;
    }
    /* Resumed from the loop, not here: this may run inside another connection's handler. */
    c->resume_queued = 1;
    tandem_list_push_front(&s->resume, &c->resume_link);
    int rv = uv_idle_start(&s->resume_idle, server_resume_cb);
    tandem_assert(rv == 0); /* fails only without a callback */
}

static void conn_timer_cb(uv_timer_t *timer);

/* (Re)arms a connection's timer: the idle timeout, or the head deadline if it comes first, or
 * the linger timeout once lingering. */
static void conn_timer_start(struct tandem_http_conn *c, uint64_t timeout_ms)
{
    if (c->closing) {
        return; /* the timer is closing with the connection */
    }
    uint64_t now = uv_now(c->server->loop);
    if (!c->lingering && !c->stopped && c->head_deadline != 0) {
        uint64_t left = c->head_deadline > now ? c->head_deadline - now : 0;
        timeout_ms = left < timeout_ms ? left : timeout_ms;
    }
    int rv = uv_timer_start(&c->timer, conn_timer_cb, timeout_ms, 0);
    tandem_assert(rv == 0); /* fails only without a callback or on a closing handle */
}

static void conn_shutdown_cb(uv_shutdown_t *req, int status)
{
    struct tandem_http_conn *c = req->data;
    if (status < 0 && !c->closing) {
        conn_close(c);
    }
}

/* After the last response: send FIN, then read and discard what the client still sends, so
 * closing cannot reset the connection before the client has read the response. */
static void conn_linger(struct tandem_http_conn *c)
{
    if (c->peer_eof) {
        conn_close(c);
        return;
    }
    c->lingering = 1;
    if (c->tls != NULL) {
        tandem_tls_close_notify(c->tls); /* before the FIN, so the client sees a clean end */
        c->tls_quiet = 1;
    }
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, conn_shutdown_cb) != 0) {
        conn_close(c);
        return;
    }
    conn_read_start(c);
    conn_timer_start(c, TANDEM_HTTP_LINGER_MS);
}

static void stream_head_sent(struct tandem_http_conn *c);

static void conn_write_cb(uv_write_t *req, int status)
{
    struct tandem_http_conn *c = req->data;
    int last = 0;
    unsigned n = c->writing;
    c->writing = 0;
    int stream_head = 0;
    for (unsigned i = 0; i < n; i++) {
        struct tandem_http_request *r = queue_pop(c);
        last |= !r->keep_alive && !r->streaming;
        stream_head |= r->streaming;
        request_release(r);
    }
    if (c->closing) {
        return;
    }
    if (status >= 0 && stream_head && !c->peer_eof) {
        stream_head_sent(c);
        return;
    }
    if (status < 0) {
        conn_close(c);
    } else if (last) {
        conn_linger(c);
    } else if (c->peer_eof && c->depth == 0) {
        conn_close(c);
    } else {
        conn_write(c);
        conn_maybe_resume(c);
    }
}

/* Writes the answered requests at the head of the queue, up to the first unanswered one, so
 * responses leave in request order. One write in flight per connection. */
static void conn_write(struct tandem_http_conn *c)
{
    uv_buf_t bufs[TANDEM_HTTP_WRITE_BATCH_MAX];
    unsigned n = 0;
    if (c->closing || c->writing > 0) {
        return;
    }
    struct tandem_list *link;
    tandem_list_foreach(link, &c->queue)
    {
        struct tandem_http_request *r = request_of(link);
        if (!r->responded || n == TANDEM_HTTP_WRITE_BATCH_MAX) {
            break;
        }
        bufs[n++] = uv_buf_init(r->resp, (unsigned)r->resp_len);
        if (!r->keep_alive) {
            break;
        }
    }
    if (n == 0) {
        return;
    }
    if (conn_send(c, &c->write_req, bufs, n, conn_write_cb) != 0) {
        conn_close(c);
        return;
    }
    c->writing = n;
}

/* Answers a request the server itself refuses (400/413/431/503), in order after the requests
 * before it, and reads no further requests on this connection. */
static void conn_reject(struct tandem_http_conn *c, int status, const char *message)
{
    struct tandem_http_server *s = c->server;
    struct tandem_http_request *r = c->parsing;
    c->parsing = NULL;
    c->stopped = 1;
    if (r == NULL) {
        r = request_acquire(c->server);
    }
    if (r == NULL) {
        conn_close(c);
        return;
    }
    r->method = HTTP_GET;
    r->keep_alive = 0;
    char body[6 * sizeof c->reject_message + 16];
    size_t len = tandem_http_error_json(body, sizeof body, message);
    queue_push(c, r);
    if (request_format(r, status, "application/json",
                       s->reject_headers[0] != '\0' ? s->reject_headers : NULL, body, len) != 0) {
        conn_close(c);
        return;
    }
    switch (status) {
        case 400:
            s->stats.rejected_400++;
            break;
        case 408:
            s->stats.rejected_408++;
            break;
        case 505:
            s->stats.rejected_505++;
            break;
        case 413:
            s->stats.rejected_413++;
            break;
        case 431:
            s->stats.rejected_431++;
            break;
        default:
            s->stats.rejected_503++;
            break;
    }
    conn_write(c);
}

/* ---- reading and parsing ---- */

static void conn_dispatch(struct tandem_http_conn *c)
{
    struct tandem_http_server *s = c->server;
    struct tandem_http_request *r = c->parsing;
    tandem_assert(r != NULL && !r->handed && !r->responded); /* complete, not yet handed over */
    c->parsing = NULL;
    queue_push(c, r);
    r->handed = 1;
    r->peer = c->peer;
    s->stats.requests_outstanding++;
    s->stats.requests_total++;
    if (!r->keep_alive) {
        c->stopped = 1;
    }
    s->handler(s, r);
}

static void conn_pause(struct tandem_http_conn *c, const char *data, size_t len)
{
    c->paused = 1;
    conn_read_stop(c);
    if (len == 0) {
        return;
    }
    c->pending = malloc(len);
    if (c->pending == NULL) {
        conn_close(c);
        return;
    }
    memcpy(c->pending, data, len);
    c->pending_len = len;
}

/* Parses data, handing each complete request to the handler as soon as it is complete. When the
 * pipeline is full the rest is kept and reading pauses until responses drain. */
static void conn_feed(struct tandem_http_conn *c, const char *data, size_t len)
{
    struct tandem_http_server *s = c->server;
    size_t off = 0;
    while (off < len && !c->closing && !c->stopped) {
        if (c->depth >= s->limits.pipeline_depth_max) {
            conn_pause(c, data + off, len - off);
            return;
        }
        size_t n;
        int rv = tandem_http_parse(&c->parser, &parser_settings, data + off, len - off, &n);
        off += n;
        if (rv == TANDEM_HTTP_PARSE_MESSAGE) {
            conn_dispatch(c);
        } else if (rv == TANDEM_HTTP_PARSE_ERROR) {
            if (c->reject_status != 0) {
                conn_reject(c, c->reject_status, c->reject_message);
            } else {
                char message[160];
                snprintf(message, sizeof message, "malformed HTTP request: %s",
                         http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
                conn_reject(c, 400, message);
            }
        } else if (n == 0) {
            c->stopped = 1; /* the parser takes no more (upgrade): nothing more to read */
        }
    }
    if (!c->closing && !c->stopped && c->depth >= s->limits.pipeline_depth_max) {
        conn_pause(c, NULL, 0);
    }
}

static void server_resume_cb(uv_idle_t *idle)
{
    struct tandem_http_server *s = idle->data;
    struct tandem_list batch; /* this pass; conn_maybe_resume queues on s->resume for the next */
    tandem_list_init(&batch);
    tandem_list_take_all(&batch, &s->resume);
    uv_idle_stop(idle); /* cannot fail */
    while (!tandem_list_empty(&batch)) {
        struct tandem_http_conn *c =
            tandem_list_entry(tandem_list_pop_front(&batch), struct tandem_http_conn, resume_link);
        c->resume_queued = 0;
        if (c->closing) {
            continue;
        }
        char *pending = c->pending;
        size_t pending_len = c->pending_len;
        c->pending = NULL;
        c->pending_len = 0;
        c->paused = 0;
        if (pending != NULL) {
            conn_feed(c, pending, pending_len);
            free(pending);
        }
        if (!c->closing && !c->paused) {
            conn_read_start(c);
        }
    }
}

static void conn_alloc_cb(uv_handle_t *handle, size_t suggested_size, uv_buf_t *buf)
{
    struct tandem_http_conn *c = handle->data;
    struct tandem_http_server *s = c->server;
    (void)suggested_size;
    /* Reads complete synchronously after alloc, so one buffer serves every connection; the
     * fallback only guards against that ever changing. */
    if (!s->read_buf_busy) {
        s->read_buf_busy = 1;
        *buf = uv_buf_init(s->read_buf, TANDEM_HTTP_READ_BUFFER_BYTES);
        return;
    }
    char *p = malloc(TANDEM_HTTP_READ_BUFFER_BYTES);
    *buf = uv_buf_init(p, p != NULL ? TANDEM_HTTP_READ_BUFFER_BYTES : 0);
}

static void read_buf_release(struct tandem_http_server *s, const uv_buf_t *buf)
{
    if (buf->base == s->read_buf) {
        s->read_buf_busy = 0;
    } else {
        free(buf->base);
    }
}

/* Bytes (plaintext, decrypted when TLS) or the end of the connection (nread < 0). */
static void conn_on_read(struct tandem_http_conn *c, ssize_t nread, const char *bytes)
{
    struct tandem_http_server *s = c->server;
    if (nread > 0 && !c->closing) {
        if (!c->lingering) {
            conn_timer_start(c, s->limits.idle_timeout_ms);
            if (!c->stopped) {
                conn_feed(c, bytes, (size_t)nread);
            }
        }
    } else if (nread < 0 && !c->closing) {
        c->reading = 0;
        c->tls_quiet |= nread != UV_EOF; /* a broken TLS session gets no close_notify */
        if (nread == UV_EOF && !c->lingering && c->depth > 0) {
            /* Half-closed: answer what was asked, then close (conn_write_cb). */
            c->peer_eof = 1;
        } else {
            conn_close(c);
        }
    }
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tandem_http_conn *c = stream->data;
    conn_on_read(c, nread, buf->base);
    read_buf_release(c->server, buf);
}

static void conn_tls_read_cb(void *data, ssize_t nread, const char *bytes)
{
    conn_on_read(data, nread, bytes);
}

static void conn_read_start(struct tandem_http_conn *c)
{
    if (c->reading || c->closing || c->peer_eof || c->handshaking) {
        return;
    }
    /* Set first: the TLS stream may hand over bytes it kept from inside read_start, and a
     * pause there must stop it. */
    c->reading = 1;
    int rv = c->tls != NULL ? tandem_tls_read_start(c->tls, conn_tls_read_cb)
                            : uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
    if (rv != 0) {
        c->reading = 0;
        conn_close(c);
    }
}

static void conn_read_stop(struct tandem_http_conn *c)
{
    if (!c->reading) {
        return;
    }
    int rv = c->tls != NULL ? tandem_tls_read_stop(c->tls) : uv_read_stop((uv_stream_t *)&c->tcp);
    tandem_assert(rv == 0); /* stopping a reading stream cannot fail */
    c->reading = 0;
}

/* A TLS write finished: its uv_write_t's callback runs as libuv would run it (write_data is
 * the request conn_send was given). */
static void conn_tls_write_cb(void *data, void *write_data, int status)
{
    uv_write_t *req = write_data;
    (void)data;
    req->cb(req, status == 0 ? 0 : (status == TANDEM_NET ? UV_ECANCELED : UV_EPIPE));
}

/* Writes bufs on the connection, through TLS when it has a session: cb(req, status) runs once,
 * as for uv_write. Returns 0 or a UV_* code (then cb does not run). */
static int conn_send(struct tandem_http_conn *c, uv_write_t *req, const uv_buf_t bufs[],
                     unsigned nbufs, uv_write_cb cb)
{
    if (c->tls == NULL) {
        return uv_write(req, (uv_stream_t *)&c->tcp, bufs, nbufs, cb);
    }
    req->cb = cb;
    req->handle = (uv_stream_t *)&c->tcp;
    return tandem_tls_write(c->tls, bufs, nbufs, req, conn_tls_write_cb) == 0 ? 0 : UV_EPIPE;
}

/* The head deadline passed: 408, in order after the requests before it, then close. */
static void conn_head_timeout(struct tandem_http_conn *c)
{
    char message[96];
    c->head_deadline = 0;
    if (c->paused || c->pending != NULL) {
        conn_close(c); /* bytes are held back unparsed: nothing sensible to answer */
        return;
    }
    snprintf(message, sizeof message, "request head not received within %u ms",
             c->server->limits.header_timeout_ms);
    conn_reject(c, 408, message);
}

/* The idle timer does not close a connection whose requests are still with the handler or
 * being written: then the server, not the client, is the slow side. */
static void conn_timer_cb(uv_timer_t *timer)
{
    struct tandem_http_conn *c = timer->data;
    if (c->closing) {
        return;
    }
    if (c->handshaking) {
        /* Only the head deadline runs during a handshake: nothing can be answered yet. */
        char why[96];
        snprintf(why, sizeof why, "handshake not finished within %u ms",
                 c->server->limits.header_timeout_ms);
        conn_tls_refuse(c, why);
        return;
    }
    if (!c->lingering && !c->stopped && c->head_deadline != 0 &&
        uv_now(c->server->loop) >= c->head_deadline) {
        conn_head_timeout(c);
        return;
    }
    if (!c->lingering && (c->depth > 0 || c->stream != NULL)) {
        conn_timer_start(c, c->server->limits.idle_timeout_ms);
        return;
    }
    conn_close(c);
}

/* ---- connection lifetime ---- */

static void conn_handle_close_cb(uv_handle_t *handle)
{
    struct tandem_http_conn *c = handle->data;
    struct tandem_http_server *s = c->server;
    if (--c->handles_open > 0) {
        return;
    }
    if (c->stream != NULL) {
        c->stream->close_cb(c->stream, c->stream->data);
        free(c->stream->pending);
        free(c->stream);
        s->stats.streams_open--;
    }
    if (c->source_counted) {
        tandem_sources_release(&s->sources, &c->source);
    }
    tandem_list_remove(&c->link);
    s->stats.connections_open--;
    if (c->tls != NULL) {
        tandem_tls_free(c->tls); /* the tcp handle has closed: its writes were called back */
    }
    free(c);
    server_maybe_finish(s);
}

/* Closes at once. Requests with the handler are detached (respond releases them later); those
 * in the write in flight are released by its callback (UV_ECANCELED); the rest now. */
static void conn_close(struct tandem_http_conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = 1;
    if (c->resume_queued) {
        tandem_list_remove(&c->resume_link); /* from s->resume, or from a resume pass's batch */
        c->resume_queued = 0;
    }
    free(c->pending);
    c->pending = NULL;
    if (c->parsing != NULL) {
        request_release(c->parsing);
        c->parsing = NULL;
    }
    if (c->tls != NULL && !c->handshaking && !c->tls_quiet) {
        tandem_tls_close_notify(c->tls); /* best effort: a stream's reader sees a clean end */
    }
    struct tandem_list *link = c->queue.next;
    for (unsigned i = 0; i < c->writing; i++) {
        tandem_assert(link != &c->queue); /* the requests in the write are queued */
        link = link->next;
    }
    c->depth = c->writing;
    while (link != &c->queue) {
        struct tandem_http_request *r = request_of(link);
        link = link->next;
        tandem_list_remove(&r->link);
        if (r->handed && !r->responded) {
            r->conn = NULL;
        } else {
            request_release(r);
        }
    }
    uv_close((uv_handle_t *)&c->tcp, conn_handle_close_cb);
    uv_close((uv_handle_t *)&c->timer, conn_handle_close_cb);
}

static void reject_close_cb(uv_handle_t *handle)
{
    struct tandem_http_server *s = handle->data;
    free(handle);
    s->rejecting--;
    server_maybe_finish(s);
}

/* Over connections_max: accept (so the kernel queue drains) and close at once. */
static void server_reject_connection(struct tandem_http_server *s)
{
    uv_tcp_t *tcp = malloc(sizeof *tcp);
    if (tcp == NULL || uv_tcp_init(s->loop, tcp) != 0) {
        free(tcp);
        return;
    }
    tcp->data = s;
    /* Accepted or not, it is closed at once: a failed accept leaves the socket queued for the
     * next connection callback. */
    (void)uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)tcp);
    s->rejecting++;
    s->stats.connections_rejected++;
    uv_close((uv_handle_t *)tcp, reject_close_cb);
}

static void conn_source(struct tandem_http_conn *c, char *out, size_t size);
static bool refusal_log_due(struct tandem_http_server *s, const char *source);

/* Counts a refusal on arrival and logs it at warn once per source a minute; returns -1. */
static int conn_admit_refuse(struct tandem_http_server *s, struct tandem_http_conn *c,
                             uint64_t *counter, const char *why)
{
    char source[TANDEM_HTTP_SOURCE_BYTES_MAX];
    (*counter)++;
    conn_source(c, source, sizeof source);
    if (refusal_log_due(s, source)) {
        tandem_log(TANDEM_LOG_WARN,
                   "connection from %s refused before TLS: %s (further refusals from it for %u s "
                   "are only counted)",
                   source, why, TANDEM_HTTP_TLS_REFUSAL_LOG_MS / 1000u);
    }
    return -1;
}

/* Admission right after accept, before anything is read or any TLS: the source must be allowed
 * and under its per-source count. Returns 0, or -1 (refusals counted) to close c at once. */
static int conn_admit(struct tandem_http_server *s, struct tandem_http_conn *c)
{
    struct sockaddr_storage peer;
    int len = (int)sizeof peer;
    if (s->allow == NULL && s->per_source_max == 0) {
        return 0;
    }
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &len) != 0) {
        return -1; /* the client is already gone */
    }
    if (s->allow != NULL && !tandem_allow_match(s->allow, (struct sockaddr *)&peer)) {
        return conn_admit_refuse(s, c, &s->stats.refused_allow, "not in the allow-list");
    }
    if (s->per_source_max > 0) {
        if (!tandem_source_of((struct sockaddr *)&peer, &c->source) ||
            !tandem_sources_acquire(&s->sources, &c->source, s->per_source_max)) {
            return conn_admit_refuse(s, c, &s->stats.refused_per_source,
                                     "it has connections_per_source_max connections open");
        }
        c->source_counted = 1;
    }
    return 0;
}

/* ---- TLS ---- */

/* The client's address as text ("?" when the socket no longer knows it). */
static void conn_source(struct tandem_http_conn *c, char *out, size_t size)
{
    struct sockaddr_storage addr;
    int len = (int)sizeof addr;
    snprintf(out, size, "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&addr, &len) != 0) {
        return;
    }
    if (addr.ss_family == AF_INET6) {
        (void)uv_ip6_name((const struct sockaddr_in6 *)&addr, out, size);
    } else if (addr.ss_family == AF_INET) {
        (void)uv_ip4_name((const struct sockaddr_in *)&addr, out, size);
    }
}

bool tandem_http_source_text_ok(const char *text)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, text, addr) == 1 || inet_pton(AF_INET6, text, addr) == 1;
}

void tandem_http_request_source(const struct tandem_http_request *r, char *out, size_t size)
{
    const char *forwarded = r->peer.kind == TANDEM_TLS_PEER_NODE
                                ? tandem_http_request_header(r, TANDEM_FORWARDED_SOURCE_HEADER)
                                : NULL;
    if (forwarded != NULL && tandem_http_source_text_ok(forwarded)) {
        snprintf(out, size, "%s", forwarded);
        return;
    }
    if (r->conn == NULL) {
        snprintf(out, size, "?");
        return;
    }
    conn_source(r->conn, out, size);
}

/* Whether a refusal from source is to be logged now: once per source per
 * TANDEM_HTTP_TLS_REFUSAL_LOG_MS, and not at all while every remembered source is that recent
 * (a flood from many addresses is counted, not logged line by line). */
static bool refusal_log_due(struct tandem_http_server *s, const char *source)
{
    uint64_t now = uv_now(s->loop);
    struct tandem_http_refusal_source *pick =
        NULL; /* a free slot, else the one whose quiet ends first */
    for (unsigned i = 0; i < TANDEM_HTTP_TLS_REFUSAL_SOURCES_MAX; i++) {
        struct tandem_http_refusal_source *e = &s->refusals[i];
        if (e->source[0] != '\0' && strcmp(e->source, source) == 0) {
            if (now < e->quiet_until_ms) {
                return false;
            }
            e->quiet_until_ms = now + TANDEM_HTTP_TLS_REFUSAL_LOG_MS;
            return true;
        }
        if (pick == NULL || (pick->source[0] != '\0' &&
                             (e->source[0] == '\0' || e->quiet_until_ms < pick->quiet_until_ms))) {
            pick = e;
        }
    }
    if (pick->source[0] != '\0' && now < pick->quiet_until_ms) {
        return false;
    }
    snprintf(pick->source, sizeof pick->source, "%s", source);
    pick->quiet_until_ms = now + TANDEM_HTTP_TLS_REFUSAL_LOG_MS;
    return true;
}

/* A handshake failed or took too long: close without an answer, count, maybe log. */
static void conn_tls_refuse(struct tandem_http_conn *c, const char *why)
{
    struct tandem_http_server *s = c->server;
    char source[TANDEM_HTTP_SOURCE_BYTES_MAX];
    conn_source(c, source, sizeof source);
    s->stats.tls_refused++;
    if (refusal_log_due(s, source)) {
        tandem_log(TANDEM_LOG_WARN,
                   "API: TLS connection from %s refused: %s (further refusals from it for %u s "
                   "are only counted)",
                   source, why, TANDEM_HTTP_TLS_REFUSAL_LOG_MS / 1000u);
    }
    c->handshaking = 0;
    c->tls_quiet = 1;
    conn_close(c);
}

static void conn_handshake_cb(void *data, int status)
{
    struct tandem_http_conn *c = data;
    if (c->closing) {
        return;
    }
    if (status != 0) {
        const char *why = tandem_tls_error(c->tls);
        conn_tls_refuse(c, why[0] != '\0' ? why : tandem_strerror(status));
        return;
    }
    c->handshaking = 0;
    tandem_tls_peer(c->tls, &c->peer);
    conn_read_start(c);
}

/* Wraps the accepted socket in a TLS server session and starts the handshake. */
static void conn_tls_start(struct tandem_http_conn *c)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    /* No certificate is allowed: the router answers such a client 401 (node/api/authz.h). */
    if (tandem_tls_new(c->server->tls, &c->tcp, TANDEM_TLS_SERVER_CERT_OPTIONAL, NULL, c, &c->tls,
                       errmsg) != 0) {
        c->tls = NULL;
        tandem_log(TANDEM_LOG_ERROR, "API: %s", errmsg);
        conn_close(c);
        return;
    }
    c->handshaking = 1;
    if (tandem_tls_handshake(c->tls, conn_handshake_cb) != 0) {
        conn_tls_refuse(c, tandem_tls_error(c->tls));
    }
}

void tandem_http_server_set_tls(struct tandem_http_server *s, struct tandem_tls_ctx *tls)
{
    s->tls = tls;
    s->tls_required = tls != NULL; /* the router asks for credentials (node/api/authz.h) */
}

static void server_connection_cb(uv_stream_t *listener, int status)
{
    struct tandem_http_server *s = listener->data;
    if (status < 0 || s->closing) {
        return;
    }
    if (s->stats.connections_open >= s->limits.connections_max) {
        server_reject_connection(s);
        return;
    }
    struct tandem_http_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        server_reject_connection(s);
        return;
    }
    if (uv_tcp_init(s->loop, &c->tcp) != 0) {
        free(c);
        server_reject_connection(s);
        return;
    }
    int rv = uv_timer_init(s->loop, &c->timer);
    tandem_assert(rv == 0); /* a timer on a live loop cannot fail to initialise */
    c->server = s;
    c->tcp.data = c->timer.data = c;
    c->write_req.data = c->continue_req.data = c->shutdown_req.data = c;
    c->handles_open = 2;
    tandem_list_init(&c->queue);
    tandem_list_init(&c->resume_link);
    tandem_list_push_back(&s->conns, &c->link);
    s->stats.connections_open++;
    s->stats.connections_total++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || conn_admit(s, c) != 0) {
        conn_close(c);
        return;
    }
    /* Answers are small writes the client waits for: Nagle would hold them back. */
    if (uv_tcp_nodelay(&c->tcp, 1) != 0) {
        conn_close(c);
        return;
    }
    /* The first request's head deadline; with TLS it bounds the handshake too. */
    c->head_deadline = uv_now(s->loop) + s->limits.header_timeout_ms;
    conn_timer_start(c, s->limits.idle_timeout_ms);
    if (s->tls != NULL) {
        conn_tls_start(c);
    } else {
        conn_read_start(c);
    }
}

/* ---- server ---- */

int tandem_http_server_init(struct tandem_http_server *s, uv_loop_t *loop,
                            const struct tandem_http_limits *limits, tandem_http_handler_fn handler,
                            void *data)
{
    int rc;
    memset(s, 0, sizeof *s);
    tandem_list_init(&s->conns);
    tandem_list_init(&s->resume);
    tandem_list_init(&s->pool);
    s->data = data;
    s->loop = loop;
    s->handler = handler;
    if (limits != NULL) {
        s->limits = *limits;
    } else {
        tandem_http_limits_default(&s->limits);
    }
    if (tandem_http_limits_check(&s->limits, s->errmsg) != 0) {
        return UV_EINVAL;
    }
    s->read_buf = malloc(TANDEM_HTTP_READ_BUFFER_BYTES);
    if (s->read_buf == NULL) {
        snprintf(s->errmsg, sizeof s->errmsg, "http server: out of memory");
        return UV_ENOMEM;
    }
    rc = uv_tcp_init(loop, &s->listener);
    if (rc != 0) {
        snprintf(s->errmsg, sizeof s->errmsg, "http server: %s", uv_strerror(rc));
        goto err_after_read_buf;
    }
    /* uv_idle_init cannot fail; it comes after the one handle init that can. */
    rc = uv_idle_init(loop, &s->resume_idle);
    tandem_assert(rc == 0);
    s->listener.data = s;
    s->resume_idle.data = s;
    s->handles_open = 2;
    return 0;

err_after_read_buf:
    free(s->read_buf);
    s->read_buf = NULL;
    return rc;
}

int tandem_http_server_listen(struct tandem_http_server *s, const char *host, int port,
                              char *errmsg)
{
    struct sockaddr_storage addr;
    int rc;
    if (port < 0 || port > 65535) {
        rc = UV_EINVAL;
        snprintf(s->errmsg, sizeof s->errmsg, "http listen: port %d out of range", port);
        goto err;
    }
    if (strchr(host, ':') != NULL) {
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    } else {
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    }
    if (rc != 0) {
        snprintf(s->errmsg, sizeof s->errmsg, "http listen: invalid address '%s'", host);
        goto err;
    }
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&s->listener, TANDEM_HTTP_LISTEN_BACKLOG,
                       server_connection_cb);
    }
    if (rc != 0) {
        snprintf(s->errmsg, sizeof s->errmsg, "http listen on %s:%d: %s", host, port,
                 uv_strerror(rc));
        goto err;
    }
    s->listening = 1;
    return 0;

err:
    if (errmsg != NULL) {
        memcpy(errmsg, s->errmsg, sizeof s->errmsg);
    }
    return rc;
}

int tandem_http_server_port(const struct tandem_http_server *s)
{
    struct sockaddr_storage addr;
    int len = (int)sizeof addr;
    if (!s->listening || uv_tcp_getsockname(&s->listener, (struct sockaddr *)&addr, &len) != 0) {
        return -1;
    }
    if (addr.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&addr)->sin_port);
}

int tandem_http_server_set_reject_headers(struct tandem_http_server *s, const char *headers)
{
    if (strlen(headers) >= sizeof s->reject_headers) {
        return -1;
    }
    snprintf(s->reject_headers, sizeof s->reject_headers, "%s", headers);
    return 0;
}

int tandem_http_server_set_sources(struct tandem_http_server *s, const struct tandem_allow *allow,
                                   unsigned per_source_max)
{
    tandem_assert(!s->listening && s->sources.slots == NULL); /* once, before listen */
    s->allow = allow;
    s->per_source_max = per_source_max;
    if (per_source_max > 0 && tandem_sources_init(&s->sources, s->limits.connections_max) != 0) {
        s->per_source_max = 0;
        snprintf(s->errmsg, sizeof s->errmsg, "http server: out of memory");
        return UV_ENOMEM;
    }
    return 0;
}

void tandem_http_server_stats(const struct tandem_http_server *s,
                              struct tandem_http_server_stats *out)
{
    *out = s->stats;
}

static void server_handle_close_cb(uv_handle_t *handle)
{
    struct tandem_http_server *s = handle->data;
    s->handles_open--;
    server_maybe_finish(s);
}

static void server_maybe_finish(struct tandem_http_server *s)
{
    if (!s->closing || s->finished || s->handles_open > 0 || !tandem_list_empty(&s->conns) ||
        s->rejecting > 0 || s->stats.requests_outstanding > 0) {
        return;
    }
    s->finished = 1;
    while (!tandem_list_empty(&s->pool)) {
        request_free(request_of(tandem_list_pop_front(&s->pool)));
    }
    s->pool_count = 0;
    free(s->read_buf);
    s->read_buf = NULL;
    tandem_sources_free(&s->sources);
    if (s->close_cb != NULL) {
        s->close_cb(s); /* last: it may free s */
    }
}

void tandem_http_server_close(struct tandem_http_server *s,
                              void (*close_cb)(struct tandem_http_server *s))
{
    if (s->closing) {
        return;
    }
    tandem_assert(s->handles_open == 2); /* listener and resume_idle close only here */
    s->closing = 1;
    s->close_cb = close_cb;
    s->listening = 0;
    uv_close((uv_handle_t *)&s->listener, server_handle_close_cb);
    uv_close((uv_handle_t *)&s->resume_idle, server_handle_close_cb);
    /* Bounded by connections_max; conn_close never unlinks (its close callback does). */
    struct tandem_list *link;
    tandem_list_foreach(link, &s->conns)
    {
        conn_close(conn_of(link));
    }
}
