/* Tests of HTTPS in the HTTP server and client (consensus/tls.h underneath): plaintext and
 * foreign clients refused, the client certificate as each request's peer, pipelining, large
 * bodies, streams and reload over TLS, and the node's TLS identity in status and metrics. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "node/tls_identity.h"
#include "storage/clock.h"
#include "tls_certs.h"

#define PIPELINED    40
#define BIG_BODY     (1024u * 1024u)
#define RAW_RECV_MAX 4096

struct tls_fixture {
    struct harness h;
    char dir[TLS_CERTS_DIR_MAX];
    struct tandem_tls_ctx *east, *west, *alice;
    struct tandem_http_server server;
    int port;
    unsigned handled;
    struct tandem_tls_peer peer; /* the last request's */
    struct tandem_http_limits limits;
    struct tandem_http_stream *stream; /* the one /stream opened, until it closed */
    struct tandem_httpc clients[2];    /* a test's clients, closed by the teardown */
    unsigned clients_open;
    struct tandem_tls_ctx *extra; /* a test's own identity, freed by the teardown */
};

/* Answers "<kind>:<name> <path> <body length> <byte sum>", or opens a stream for /stream. */
static void tls_handle(struct tandem_http_server *s, struct tandem_http_request *r);

static void stream_closed_cb(struct tandem_http_stream *stream, void *data)
{
    struct tls_fixture *f = data;
    (void)stream;
    f->stream = NULL;
}

static void tls_handle(struct tandem_http_server *s, struct tandem_http_request *r)
{
    struct tls_fixture *f = s->data;
    char text[256];
    unsigned long sum = 0;
    f->handled++;
    f->peer = r->peer;
    if (strcmp(r->path, "/stream") == 0) {
        assert_int_equal(tandem_http_stream_open(r, 200, "text/event-stream", NULL,
                                                 stream_closed_cb, f, &f->stream),
                         0);
        assert_int_equal(tandem_http_stream_write(f->stream, "data: one\n\n", 11), 0);
        return;
    }
    for (size_t i = 0; i < r->body_len; i++) {
        sum += (unsigned char)r->body[i];
    }
    const char *kind = r->peer.kind == TANDEM_TLS_PEER_NODE   ? "node"
                       : r->peer.kind == TANDEM_TLS_PEER_USER ? "user"
                                                              : "none";
    int n = snprintf(text, sizeof text, "%s:%s %s %zu %lu", kind, r->peer.name, r->path,
                     r->body_len, sum);
    tandem_http_respond(r, 200, "text/plain", NULL, text, (size_t)n);
}

static char certs_dir[TLS_CERTS_DIR_MAX]; /* made once for the whole group */

static int group_setup(void **state)
{
    tls_certs_make(certs_dir);
    *state = certs_dir;
    return 0;
}

static int group_teardown(void **state)
{
    tls_certs_remove(*state); /* certs_dir */
    return 0;
}

static int tls_setup(void **state)
{
    struct tls_fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "%s", certs_dir);
    f->east = tls_certs_ctx(f->dir, "ca", "east-1");
    f->west = tls_certs_ctx(f->dir, "ca", "west-1");
    f->alice = tls_certs_ctx(f->dir, "ca", "alice");
    harness_init(&f->h);
    tandem_http_limits_default(&f->limits);
    f->limits.pipeline_depth_max = 4;   /* pipelined requests meet backpressure */
    f->limits.header_timeout_ms = 1000; /* a silent client goes soon */
    char errmsg[TANDEM_ERRMSG_SIZE];
    assert_int_equal(tandem_http_server_init(&f->server, &f->h.loop, &f->limits, tls_handle, f), 0);
    tandem_http_server_set_tls(&f->server, f->east);
    assert_int_equal(tandem_http_server_listen(&f->server, "127.0.0.1", 0, errmsg), 0);
    f->port = tandem_http_server_port(&f->server);
    *state = f;
    return 0;
}

static int tls_teardown(void **state)
{
    struct tls_fixture *f = *state;
    for (unsigned i = 0; i < f->clients_open; i++) {
        client_stop(&f->h, &f->clients[i]);
    }
    harness_stop_one(&f->h, NULL, &f->server);
    harness_close(&f->h);
    tandem_tls_ctx_free(f->east);
    tandem_tls_ctx_free(f->west);
    tandem_tls_ctx_free(f->alice);
    if (f->extra != NULL) {
        tandem_tls_ctx_free(f->extra);
    }
    free(f);
    return 0;
}

/* A client of the server with identity ctx, expecting the server to be node (NULL: any). */
static struct tandem_httpc *tls_client(struct tls_fixture *f, struct tandem_tls_ctx *ctx,
                                       const char *node)
{
    assert_true(f->clients_open < sizeof f->clients / sizeof f->clients[0]);
    struct tandem_httpc *c = &f->clients[f->clients_open++];
    assert_int_equal(tandem_httpc_init(c, &f->h.loop, "127.0.0.1", f->port, 1, 5000), 0);
    assert_int_equal(tandem_httpc_set_tls(c, ctx, node), 0);
    return c;
}

static void tls_get(struct tls_fixture *f, struct tandem_httpc *c, const char *path,
                    struct call *call)
{
    call_send(c, call, "GET", path, NULL, NULL);
    assert_true(harness_run_until(&f->h, call_done, call));
}

/* ---- a raw plaintext TCP client ---- */

struct raw {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    char recv[RAW_RECV_MAX];
    size_t recv_len;
    const char *send; /* written once connected ("" = nothing) */
    int connected, ended, closed;
};

static void raw_alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    struct raw *r = h->data;
    (void)size;
    *buf = uv_buf_init(r->recv + r->recv_len, (unsigned)(RAW_RECV_MAX - 1 - r->recv_len));
}

static void raw_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct raw *r = s->data;
    (void)buf; /* it is r->recv, filled in place */
    r->recv_len += nread > 0 ? (size_t)nread : 0;
    r->ended |= nread < 0;
}

static void raw_connect_cb(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    r->connected = 1;
    assert_int_equal(status, 0);
    if (r->send[0] != '\0') {
        uv_buf_t b = uv_buf_init((char *)r->send, (unsigned)strlen(r->send));
        assert_int_equal(uv_write(&r->write_req, (uv_stream_t *)&r->tcp, &b, 1, NULL), 0);
    }
    assert_int_equal(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc_cb, raw_read_cb), 0);
}

static int raw_ended(void *arg)
{
    return ((struct raw *)arg)->ended;
}

static void raw_close_cb(uv_handle_t *h)
{
    ((struct raw *)h->data)->closed = 1;
}

static int raw_closed(void *arg)
{
    return ((struct raw *)arg)->closed;
}

/* Connects a raw client to the server, sends text, and waits until the server ends it. */
static void raw_exchange(struct tls_fixture *f, struct raw *r, const char *text)
{
    struct sockaddr_in addr;
    memset(r, 0, sizeof *r);
    r->send = text;
    assert_int_equal(uv_ip4_addr("127.0.0.1", f->port, &addr), 0);
    assert_int_equal(uv_tcp_init(&f->h.loop, &r->tcp), 0);
    r->tcp.data = r->connect_req.data = r;
    assert_int_equal(
        uv_tcp_connect(&r->connect_req, &r->tcp, (const struct sockaddr *)&addr, raw_connect_cb),
        0);
    assert_true(harness_run_until(&f->h, raw_ended, r));
    r->recv[r->recv_len] = '\0';
    uv_close((uv_handle_t *)&r->tcp, raw_close_cb);
    assert_true(harness_run_until(&f->h, raw_closed, r));
}

/* One handshake refused (counted), and nothing reached the handler. */
static void assert_refused_once(struct tls_fixture *f)
{
    struct tandem_http_server_stats stats;
    tandem_http_server_stats(&f->server, &stats);
    assert_int_equal(stats.tls_refused, 1);
    assert_int_equal(f->handled, 0);
}

/* A plaintext HTTP request to the TLS server: closed, no HTTP answer, counted, no handler. */
static void test_plaintext_client_refused(void **state)
{
    struct tls_fixture *f = *state;
    struct raw r;
    raw_exchange(f, &r, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_null(strstr(r.recv, "HTTP/")); /* at most a TLS alert, never an HTTP answer */
    assert_refused_once(f);
}

/* The log (stderr) while a test runs something, kept in a temporary file. */
struct log_capture {
    char path[32];
    int fd, saved;
    char text[4096];
};

static void log_capture_start(struct log_capture *l)
{
    snprintf(l->path, sizeof l->path, "/tmp/tandem-tls-log-XXXXXX");
    l->fd = mkstemp(l->path);
    l->saved = dup(2);
    assert_true(l->fd >= 0 && l->saved >= 0);
    fflush(stderr);
    assert_true(dup2(l->fd, 2) >= 0);
}

/* Ends the capture; whether text appears in it exactly once. */
static bool log_capture_once(struct log_capture *l, const char *text)
{
    fflush(stderr);
    assert_true(dup2(l->saved, 2) >= 0);
    ssize_t n = pread(l->fd, l->text, sizeof l->text - 1, 0);
    l->text[n > 0 ? n : 0] = '\0';
    close(l->fd);
    close(l->saved);
    unlink(l->path);
    const char *first = strstr(l->text, text);
    return first != NULL && strstr(first + 1, text) == NULL;
}

/* Refusals from one source are all counted but logged once a minute. */
static void test_refusals_logged_once_per_source(void **state)
{
    struct tls_fixture *f = *state;
    struct raw r;
    struct log_capture log;
    log_capture_start(&log);
    for (int i = 0; i < 3; i++) {
        raw_exchange(f, &r, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    assert_true(log_capture_once(&log, "API: TLS connection from 127.0.0.1 refused: "));
    struct tandem_http_server_stats stats;
    tandem_http_server_stats(&f->server, &stats);
    assert_int_equal(stats.tls_refused, 3);
}

/* A client certificate of another CA (the client trusts both CAs, so it gets as far as sending
 * it): the server refuses the handshake and no request reaches the handler. */
static void test_foreign_client_certificate_refused(void **state)
{
    struct tls_fixture *f = *state;
    struct call call;
    f->extra = tls_certs_ctx(f->dir, "both", "foreign");
    struct tandem_httpc *c = tls_client(f, f->extra, NULL);
    tls_get(f, c, "/x", &call);
    assert_int_not_equal(call.status, 0);
    assert_refused_once(f);
}

/* Each request carries who the client certificate names: a node, or a user. */
static void test_peer_is_node_or_user(void **state)
{
    struct tls_fixture *f = *state;
    struct call call;
    struct tandem_httpc *node_client = tls_client(f, f->west, "east-1");
    tls_get(f, node_client, "/a", &call);
    assert_int_equal(call.status, 0);
    assert_string_equal(call.body, "node:west-1 /a 0 0");
    assert_int_equal(f->peer.kind, TANDEM_TLS_PEER_NODE);
    struct tandem_httpc *user_client = tls_client(f, f->alice, NULL);
    tls_get(f, user_client, "/b", &call);
    assert_int_equal(call.status, 0);
    assert_string_equal(call.body, "user:alice /b 0 0");
    assert_int_equal(f->peer.kind, TANDEM_TLS_PEER_USER);
    assert_string_equal(f->peer.name, "alice");
}

/* The client insists on the node it meant: a server proving another name is refused. */
static void test_client_expects_node_name(void **state)
{
    struct tls_fixture *f = *state;
    struct call call;
    struct log_capture log;
    struct tandem_httpc *c = tls_client(f, f->west, "north-9");
    log_capture_start(&log);
    for (int i = 0; i < 2; i++) {
        tls_get(f, c, "/x", &call);
        assert_int_equal(call.status, UV_EPROTO);
    }
    /* Counted each time, logged once a minute. */
    assert_true(log_capture_once(&log, "(north-9) failed: "));
    assert_int_equal(c->stats.tls_refused, 2);
    assert_int_equal(f->handled, 0);
}

struct pipelined {
    struct call calls[PIPELINED];
    unsigned done;
};

static int all_done(void *arg)
{
    struct pipelined *p = arg;
    p->done = 0;
    for (unsigned i = 0; i < PIPELINED; i++) {
        p->done += (unsigned)p->calls[i].done;
    }
    return p->done == PIPELINED;
}

/* 40 requests on one connection (the server's pipeline holds 4: it pauses reading and resumes)
 * and a 1 MiB body, over TLS: every answer right and in order. */
static void test_pipeline_and_large_body(void **state)
{
    struct tls_fixture *f = *state;
    struct pipelined *p = calloc(1, sizeof *p);
    char path[32], expect[64];
    assert_non_null(p);
    struct tandem_httpc *c = tls_client(f, f->west, "east-1");
    for (unsigned i = 0; i < PIPELINED; i++) {
        snprintf(path, sizeof path, "/p/%u", i);
        call_send(c, &p->calls[i], "POST", path, NULL, "xy");
    }
    assert_true(harness_run_until(&f->h, all_done, p));
    for (unsigned i = 0; i < PIPELINED; i++) {
        snprintf(expect, sizeof expect, "node:west-1 /p/%u 2 241", i);
        assert_int_equal(p->calls[i].status, 0);
        assert_string_equal(p->calls[i].body, expect);
    }
    char *big = malloc(BIG_BODY + 1);
    assert_non_null(big);
    memset(big, 'a', BIG_BODY);
    big[BIG_BODY] = '\0';
    call_send(c, &p->calls[0], "PUT", "/big", NULL, big);
    assert_true(harness_run_until(&f->h, call_done, &p->calls[0]));
    snprintf(expect, sizeof expect, "node:west-1 /big %u %lu", BIG_BODY, 97ul * BIG_BODY);
    assert_int_equal(p->calls[0].status, 0);
    assert_string_equal(p->calls[0].body, expect);
    assert_int_equal(c->stats.connects, 1); /* all of it on one kept-alive connection */
    free(big);
    free(p);
}

/* A stream's chunks go through TLS, and its end is a clean one (close_notify). */
static void test_stream_over_tls(void **state)
{
    struct tls_fixture *f = *state;
    struct call call;
    struct tandem_httpc *c = tls_client(f, f->west, "east-1");
    call_send(c, &call, "GET", "/stream", NULL, NULL);
    harness_run_for(&f->h, 200); /* the head, then the chunk written before it */
    assert_non_null(f->stream);
    assert_int_equal(tandem_http_stream_write(f->stream, "data: two\n\n", 11), 0);
    harness_run_for(&f->h, 100);
    tandem_http_stream_close(f->stream); /* the response ends with the connection */
    assert_true(harness_run_until(&f->h, call_done, &call));
    assert_int_equal(call.status, 0);
    assert_int_equal(call.http_status, 200);
    assert_string_equal(call.body, "data: one\n\ndata: two\n\n");
}

/* A request with "Expect: 100-continue" gets its interim answer through TLS, then the answer;
 * one with "Connection: close" ends the connection cleanly. */
static void test_expect_continue_over_tls(void **state)
{
    struct tls_fixture *f = *state;
    struct call call;
    struct tandem_httpc *c = tls_client(f, f->west, "east-1");
    call_send(c, &call, "POST", "/c", "Expect: 100-continue\r\n", "abc");
    assert_true(harness_run_until(&f->h, call_done, &call));
    assert_int_equal(call.status, 0);
    assert_string_equal(call.body, "node:west-1 /c 3 294");
    /* "Connection: close": the answer, then close_notify, FIN and the linger; the client's
     * next request opens a new connection. */
    call_send(c, &call, "GET", "/last", "Connection: close\r\n", NULL);
    assert_true(harness_run_until(&f->h, call_done, &call));
    assert_int_equal(call.status, 0);
    assert_string_equal(call.body, "node:west-1 /last 0 0");
    tls_get(f, c, "/again", &call);
    assert_string_equal(call.body, "node:west-1 /again 0 0");
    assert_int_equal(c->stats.connects, 2);
}

/* A handshake that never comes (a silent TCP client) is dropped at the head deadline. */
static void test_silent_client_dropped(void **state)
{
    struct tls_fixture *f = *state;
    struct raw r;
    raw_exchange(f, &r, ""); /* ends within header_timeout_ms (1 s) */
    assert_int_equal(r.recv_len, 0);
    assert_refused_once(f);
}

static void copy_file(const char *dir, const char *from, const char *to)
{
    char command[256];
    snprintf(command, sizeof command, "cp %s/%s %s/%s", dir, from, dir, to);
    assert_int_equal(system(command), 0);
}

/* Reload: new connections get the new certificate; an open kept-alive one keeps working. */
static void test_reload_keeps_open_connections(void **state)
{
    struct tls_fixture *f = *state;
    struct call call;
    char errmsg[TANDEM_ERRMSG_SIZE];
    copy_file(f->dir, "east-1.pem", "srv.pem");
    copy_file(f->dir, "east-1.key", "srv.key");
    struct tandem_tls_ctx *srv = tls_certs_ctx(f->dir, "ca", "srv");
    tandem_http_server_set_tls(&f->server, srv);
    struct tandem_tls_cert_info was, now;
    tandem_tls_ctx_info(srv, &was);
    struct tandem_httpc *before = tls_client(f, f->west, "east-1");
    tls_get(f, before, "/1", &call);
    assert_int_equal(call.status, 0);
    copy_file(f->dir, "soon.pem", "srv.pem"); /* east-1 again, expiring in 10 days */
    copy_file(f->dir, "soon.key", "srv.key");
    assert_int_equal(tandem_tls_ctx_reload(srv, errmsg), TANDEM_OK);
    tandem_tls_ctx_info(srv, &now);
    assert_int_equal(now.reloads, was.reloads + 1);
    assert_true(now.cert_not_after_ms < was.cert_not_after_ms);
    tls_get(f, before, "/2", &call); /* the open connection */
    assert_int_equal(call.status, 0);
    assert_int_equal(before->stats.connects, 1);
    struct tandem_httpc *after = tls_client(f, f->west, "east-1");
    tls_get(f, after, "/3", &call); /* a new one, with the new certificate */
    assert_int_equal(call.status, 0);
    assert_string_equal(call.body, "node:west-1 /3 0 0");
    /* A broken file: the reload fails and the loaded identity stays in use. */
    copy_file(f->dir, "west-1.key", "srv.key");
    assert_int_not_equal(tandem_tls_ctx_reload(srv, errmsg), TANDEM_OK);
    assert_non_null(strstr(errmsg, "srv"));
    tandem_http_server_set_tls(&f->server, f->east);
    tandem_tls_ctx_free(srv); /* connections still closing keep what they use */
}

/* ---- the node's identity: load, status, metrics ---- */

static void config_paths(struct tandem_config *c, const char *dir, const char *cert,
                         const char *key)
{
    memset(c, 0, sizeof *c);
    snprintf(c->tls_ca, sizeof c->tls_ca, "%s/ca.pem", dir);
    snprintf(c->tls_cert, sizeof c->tls_cert, "%s/%s", dir, cert);
    snprintf(c->tls_key, sizeof c->tls_key, "%s/%s", dir, key);
}

/* A missing or mismatched file stops the start with a message naming it. */
static void test_identity_load_errors(void **state)
{
    struct tls_fixture *f = *state;
    struct tandem_config *c = calloc(1, sizeof *c);
    struct tandem_tls_ctx *ctx = NULL;
    char errmsg[TANDEM_ERRMSG_SIZE];
    assert_non_null(c);
    config_paths(c, f->dir, "east-1.pem", "west-1.key");
    assert_int_not_equal(tandem_tls_identity_load(c, &ctx, errmsg), TANDEM_OK);
    assert_null(ctx);
    assert_non_null(strstr(errmsg, "west-1.key"));
    config_paths(c, f->dir, "east-1.pem", "missing.key");
    assert_int_not_equal(tandem_tls_identity_load(c, &ctx, errmsg), TANDEM_OK);
    assert_non_null(strstr(errmsg, "missing.key"));
    c->tls_key[0] = '\0';
    assert_int_equal(tandem_tls_identity_load(c, &ctx, errmsg), TANDEM_CONFIG);
    assert_string_equal(errmsg, "option tls_key is required with TLS (or start with --insecure)");
    memset(c, 0, sizeof *c); /* no files and not insecure: never plaintext by omission */
    assert_int_equal(tandem_tls_identity_load(c, &ctx, errmsg), TANDEM_CONFIG);
    assert_string_equal(errmsg, "option tls_ca is required with TLS (or start with --insecure)");
    c->insecure = true; /* no TLS at all */
    assert_int_equal(tandem_tls_identity_load(c, &ctx, errmsg), TANDEM_OK);
    assert_null(ctx);
    config_paths(c, f->dir, "east-1.pem", "east-1.key");
    assert_int_equal(tandem_tls_identity_load(c, &ctx, errmsg), TANDEM_OK);
    assert_non_null(ctx);
    tandem_tls_ctx_free(ctx);
    free(c);
}

/* Status shows each expiry and warns of a certificate within 30 days; metrics the seconds. */
static void test_identity_status_and_metrics(void **state)
{
    struct tls_fixture *f = *state;
    struct tandem_tls_ctx *soon = tls_certs_ctx(f->dir, "ca", "soon");
    int64_t now = tandem_wall_ms();
    json_t *warnings = json_array();
    json_t *status = tandem_tls_identity_status(f->east, now, warnings);
    json_int_t days = -1;
    const char *name = NULL, *not_after = NULL;
    assert_int_equal(json_unpack(status, "{s:{s:s,s:s,s:I}}", "cert", "name", &name, "not_after",
                                 &not_after, "days_left", &days),
                     0);
    assert_string_equal(name, "east-1");
    assert_true(days >= 398 && days <= 400);
    assert_int_equal(strlen(not_after), 24); /* 2027-01-09T11:00:00.000Z */
    assert_true(json_is_true(json_object_get(status, "enabled")));
    assert_true(json_is_null(json_object_get(json_object_get(status, "crl"), "next_update")));
    assert_int_equal(json_array_size(warnings), 0);
    json_decref(status);
    status = tandem_tls_identity_status(soon, now, warnings);
    assert_int_equal(json_array_size(warnings), 1);
    assert_non_null(strstr(json_string_value(json_array_get(warnings, 0)),
                           "TLS certificate east-1 expires at "));
    json_decref(status);
    status = tandem_tls_identity_status(NULL, now, warnings);
    assert_true(json_is_false(json_object_get(status, "enabled")));
    json_decref(status);
    json_decref(warnings);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    tandem_tls_identity_metrics(soon, now, out);
    assert_int_equal(fclose(out), 0);
    /* Refused handshakes are with the other refusals (node/api/cluster.c), not here. */
    assert_null(strstr(text, "tandem_connections_refused_total"));
    assert_non_null(strstr(text, "tandem_tls_reloads_total 0\n"));
    const char *expiry = strstr(text, "tandem_tls_cert_expiry_seconds{cert=\"node\"} ");
    assert_non_null(expiry);
    long seconds =
        strtol(expiry + strlen("tandem_tls_cert_expiry_seconds{cert=\"node\"} "), NULL, 10);
    assert_true(seconds > 9 * 86400 && seconds <= 10 * 86400);
    free(text);
    tandem_tls_ctx_free(soon);
}

int main(void)
{
/* Each test with its own server (and the group's certificates). */
#define TLS_TEST(name) cmocka_unit_test_setup_teardown(name, tls_setup, tls_teardown)
    const struct CMUnitTest tests[] = {
        TLS_TEST(test_plaintext_client_refused),
        TLS_TEST(test_refusals_logged_once_per_source),
        TLS_TEST(test_foreign_client_certificate_refused),
        TLS_TEST(test_peer_is_node_or_user),
        TLS_TEST(test_client_expects_node_name),
        TLS_TEST(test_pipeline_and_large_body),
        TLS_TEST(test_stream_over_tls),
        TLS_TEST(test_expect_continue_over_tls),
        TLS_TEST(test_silent_client_dropped),
        TLS_TEST(test_reload_keeps_open_connections),
        TLS_TEST(test_identity_load_errors),
        TLS_TEST(test_identity_status_and_metrics),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
