/* Follower-to-leader forwarding over a pool of kept-alive connections, relaying the answer. */
#include "node/http/forward.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/http/park.h"
#include "storage/assert.h"

/* Headers of the leader's answer that travel back to the client. */
static const char *const relayed_headers[] = {
    "X-Tandem-Mod-Index",
    "X-Tandem-Create-Index",
    "X-Tandem-Applied-Index",
    "X-Tandem-Node",
    "Retry-After",
    "Set-Cookie", /* the console's token from POST /v1/auth/login?cookie=1 (issue 15) */
};

/* Headers of the client's request that the leader needs (who acts, what the body is). */
static const char *const forwarded_headers[] = {"Content-Type", TANDEM_USER_HEADER};

#define FORWARD_ATTEMPTS_MAX 3   /* sends of one request whose earlier tries wrote no byte */
#define MESSAGE_BYTES_MAX    512 /* as tandem_route_error's */
#define ERROR_BYTES_MAX      1200
#define RELAY_HEADERS_MAX    1024

struct forward {
    struct tandem_httpc_request req;
    struct tandem_forwarder *f;
    struct tandem_http_request *r; /* borrowed: answered exactly once from here or the park */
    unsigned attempts;
    bool hold; /* tandem_forwarder_send_held */
};

/* A leader's answer waiting for this node to apply up to index (tandem_forwarder_send_held). */
struct forward_held {
    struct tandem_list link;       /* in f->held */
    struct tandem_http_request *r; /* borrowed, as in struct forward */
    uint64_t index, deadline_ns;
    int status;
    char *content_type; /* owned; NULL: none */
    char *body;         /* owned; NULL when empty */
    size_t body_len;
    char headers[RELAY_HEADERS_MAX];
};

static int forward_start(struct forward *fw);

int tandem_forwarder_init(struct tandem_forwarder *f, uv_loop_t *loop, const char *self_name,
                          struct tandem_park *park, unsigned connections, unsigned timeout_ms,
                          tandem_forward_answer_fn answer, void *answer_data)
{
    memset(f, 0, sizeof *f);
    tandem_assert(self_name != NULL && park != NULL && answer != NULL);
    f->self_name = self_name;
    f->park = park;
    f->answer = answer;
    f->answer_data = answer_data;
    /* One client: when the leader changes, the former leader's requests already sent are let
     * finish (cancelling them would turn writes it may still apply into errors). */
    int rv = tandem_http_pool_init(&f->pool, loop, 1, connections, timeout_ms);
    f->pool.data = f;
    tandem_list_init(&f->held);
    if (rv == 0) {
        rv = uv_timer_init(loop, &f->hold_timer);
        tandem_assert(rv == 0); /* a timer on a live loop cannot fail */
        f->hold_timer.data = f;
    }
    return rv;
}

/* Answers r 503 (or 429) with {"error": message} through the owner: the same bytes as the
 * router's tandem_route_error. */
static void forward_fail(struct tandem_forwarder *f, struct tandem_http_request *r, int status,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void forward_fail(struct tandem_forwarder *f, struct tandem_http_request *r, int status,
                         const char *fmt, ...)
{
    char message[MESSAGE_BYTES_MAX], body[ERROR_BYTES_MAX];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    size_t len = tandem_http_error_json(body, sizeof body, message);
    tandem_assert(len < sizeof body || body[0] == '\0'); /* cut answers are empty, never torn */
    f->answer(f->answer_data, r, status, NULL, body);
}

/* Formats the headers of names that msg carries ("Name: value\r\n" each) into out. Returns the
 * length, or out_size or more when they do not fit. */
static size_t headers_copy(char *out, size_t out_size, size_t used, const char *const *names,
                           size_t count, const char *(*get)(const void *msg, const char *name),
                           const void *msg)
{
    for (size_t i = 0; i < count && used < out_size; i++) {
        const char *value = get(msg, names[i]);
        if (value != NULL) {
            int n = snprintf(out + used, out_size - used, "%s: %s\r\n", names[i], value);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    return used;
}

static const char *response_header(const void *msg, const char *name)
{
    return tandem_httpc_response_header(msg, name);
}

static const char *request_header(const void *msg, const char *name)
{
    return tandem_http_request_header(msg, name);
}

/* What a caller without a credential (the console's login) hears of the leader's answer:
 * nothing of the cluster's state, as when a node answers it itself. */
static const char *const anonymous_relayed_headers[] = {"X-Tandem-Node", "Retry-After",
                                                        "Set-Cookie"};

/* The header lines of resp that travel back to r's caller (none when they do not fit). */
static void relay_headers(const struct tandem_http_request *r,
                          const struct tandem_httpc_response *resp, char headers[RELAY_HEADERS_MAX])
{
    headers[0] = '\0';
    const struct tandem_principal *p = &r->principal;
    bool anonymous = r->server != NULL && r->server->tls_required &&
                     p->kind == TANDEM_PRINCIPAL_ANONYMOUS && !p->insecure;
    size_t used =
        anonymous
            ? headers_copy(headers, RELAY_HEADERS_MAX, 0, anonymous_relayed_headers,
                           sizeof anonymous_relayed_headers / sizeof anonymous_relayed_headers[0],
                           response_header, resp)
            : headers_copy(headers, RELAY_HEADERS_MAX, 0, relayed_headers,
                           sizeof relayed_headers / sizeof relayed_headers[0], response_header,
                           resp);
    if (used >= RELAY_HEADERS_MAX) {
        headers[0] = '\0';
    }
}

static void relay(struct forward *fw, const struct tandem_httpc_response *resp)
{
    char headers[RELAY_HEADERS_MAX];
    relay_headers(fw->r, resp, headers);
    const char *content_type = tandem_httpc_response_header(resp, "Content-Type");
    tandem_http_respond(fw->r, resp->status, content_type, headers, resp->body, resp->body_len);
}

/* ---- answers held until this node has applied what they speak of ---- */

static void held_release(struct forward_held *h)
{
    tandem_list_remove(&h->link);
    tandem_http_respond(h->r, h->status, h->content_type, h->headers, h->body, h->body_len);
    free(h->content_type);
    free(h->body);
    free(h);
}

/* While answers are held, this often the node's applied index is looked at (it moves in raft's
 * apply, after which nothing here runs: so a poll, cheap, and only while something is held). */
#define HOLD_POLL_MS 2

/* Relays the held answers this node has applied, and those past their bound anyway: they are
 * true, only this node lags behind. Stops the poll when none is left. */
static void hold_check(struct tandem_forwarder *f)
{
    uint64_t applied = f->applied(f->applied_data);
    uint64_t now = uv_hrtime();
    struct tandem_list *link = tandem_list_first(&f->held);
    while (link != &f->held) {
        struct forward_held *h = tandem_list_entry(link, struct forward_held, link);
        link = link->next;
        if (h->index <= applied) {
            held_release(h);
        } else if (h->deadline_ns <= now) {
            f->hold_expired++;
            held_release(h);
        }
    }
    if (tandem_list_empty(&f->held)) {
        uv_timer_stop(&f->hold_timer);
    }
}

static void hold_timer_cb(uv_timer_t *timer)
{
    hold_check(timer->data);
}

/* The leader's applied index in resp, or 0 when it gave none. */
static uint64_t answer_index(const struct tandem_httpc_response *resp)
{
    const char *text = tandem_httpc_response_header(resp, "X-Tandem-Applied-Index");
    char *end = NULL;
    if (text == NULL || *text < '0' || *text > '9') {
        return 0;
    }
    errno = 0;
    unsigned long long index = strtoull(text, &end, 10);
    return errno != 0 || *end != '\0' ? 0 : (uint64_t)index;
}

/* Keeps resp for r until this node has applied the leader's index; false (nothing kept: relay
 * it now) when it has already, nothing is held here, or memory runs out. */
static bool hold(struct tandem_forwarder *f, struct tandem_http_request *r,
                 const struct tandem_httpc_response *resp)
{
    uint64_t index = answer_index(resp);
    if (f->applied == NULL || f->closing || index == 0 || f->applied(f->applied_data) >= index) {
        return false;
    }
    struct forward_held *h = calloc(1, sizeof *h);
    const char *content_type = tandem_httpc_response_header(resp, "Content-Type");
    if (h == NULL || (content_type != NULL && (h->content_type = strdup(content_type)) == NULL) ||
        (resp->body_len > 0 && (h->body = malloc(resp->body_len)) == NULL)) {
        if (h != NULL) {
            free(h->content_type);
        }
        free(h);
        return false;
    }
    if (resp->body_len > 0) {
        memcpy(h->body, resp->body, resp->body_len);
    }
    h->body_len = resp->body_len;
    h->r = r;
    h->index = index;
    h->status = resp->status;
    h->deadline_ns = uv_hrtime() + f->hold_ns;
    relay_headers(r, resp, h->headers);
    bool was_empty = tandem_list_empty(&f->held);
    tandem_list_push_back(&f->held, &h->link);
    f->held_total++;
    if (was_empty) {
        uv_timer_start(&f->hold_timer, hold_timer_cb, HOLD_POLL_MS, HOLD_POLL_MS);
    }
    return true;
}

void tandem_forwarder_set_hold(struct tandem_forwarder *f, uint64_t (*applied)(void *data),
                               void *data, unsigned hold_ms)
{
    tandem_assert(applied != NULL && hold_ms > 0);
    f->applied = applied;
    f->applied_data = data;
    f->hold_ns = (uint64_t)hold_ms * 1000000u;
}

static void forward_cb(struct tandem_httpc_request *req, int status,
                       const struct tandem_httpc_response *resp)
{
    struct forward *fw = req->data;
    struct tandem_forwarder *f = fw->f;
    tandem_assert(fw->attempts >= 1 && fw->attempts <= FORWARD_ATTEMPTS_MAX);
    tandem_assert(fw->r->handed && !fw->r->responded); /* answered once, from here or the park */
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
    if (retry_safe && !f->closing && tandem_park(f->park, fw->r)) {
        free(fw);
        return;
    }
    if (status != 0 || resp == NULL) {
        f->failed++;
        forward_fail(f, fw->r, 503, "forwarding to the leader failed: %s", uv_strerror(status));
    } else if (retry_safe) {
        /* Handed back and its wait is over: no leader acted on it, so this node answers it (and
         * its owner audits it) as a request that found no leader. */
        f->answer(f->answer_data, fw->r, 503, "Retry-After: 1\r\n", TANDEM_NO_LEADER_JSON);
    } else if (!fw->hold || !hold(f, fw->r, resp)) {
        relay(fw, resp);
    }
    free(fw);
}

/* The caller the router authenticated (r->principal: a certificate or a bearer token), else the
 * one the TLS handshake proved, for the leader to act as (node/api/router.c decides whether it
 * trusts it: only from a node's certificate). Nothing for an anonymous or plaintext caller. */
static size_t caller_headers(char *out, size_t out_size, size_t used,
                             const struct tandem_http_request *r)
{
    const struct tandem_principal *p = &r->principal;
    bool resolved = p->kind != TANDEM_PRINCIPAL_ANONYMOUS && !p->insecure;
    if ((!resolved && r->peer.kind == TANDEM_TLS_PEER_NONE) || used >= out_size) {
        return used;
    }
    bool node = resolved ? p->kind == TANDEM_PRINCIPAL_NODE : r->peer.kind == TANDEM_TLS_PEER_NODE;
    int n = snprintf(out + used, out_size - used, "%s: %s\r\n%s: %s\r\n",
                     TANDEM_FORWARDED_USER_HEADER, resolved ? p->name : r->peer.name,
                     TANDEM_FORWARDED_KIND_HEADER, node ? "node" : "user");
    return used + (n > 0 ? (size_t)n : 0);
}

static int forward_start(struct forward *fw)
{
    struct tandem_http_request *r = fw->r;
    char headers[1024]; /* ours, the caller's, and Content-Type and the user copied */
    char source[TANDEM_HTTP_SOURCE_BYTES_MAX];
    size_t used = (size_t)snprintf(headers, sizeof headers, "%s: %s\r\n", TANDEM_FORWARDED_HEADER,
                                   fw->f->self_name);
    /* The client's address goes along, for the leader's audit records of this request (a failed
     * login through a follower names the client, not the follower); none when the socket no
     * longer knows it ("?"), which the leader would refuse. */
    tandem_http_request_source(r, source, sizeof source);
    if (tandem_http_source_text_ok(source) && used < sizeof headers) {
        int n = snprintf(headers + used, sizeof headers - used, "%s: %s\r\n",
                         TANDEM_FORWARDED_SOURCE_HEADER, source);
        used += n > 0 ? (size_t)n : 0;
    }
    used = caller_headers(headers, sizeof headers, used, r);
    used = headers_copy(headers, sizeof headers, used, forwarded_headers,
                        sizeof forwarded_headers / sizeof forwarded_headers[0], request_header, r);
    if (used >= sizeof headers) {
        return UV_E2BIG; /* never send a request whose headers were cut */
    }
    if (fw->f->target[0] == '\0') {
        return UV_ENOTCONN; /* the leader changed meanwhile and its client is gone */
    }
    fw->attempts++;
    fw->req.data = fw;
    return tandem_http_pool_send_node(&fw->f->pool, fw->f->target, fw->f->target_node, &fw->req,
                                      http_method_str((enum http_method)r->method), r->url, headers,
                                      r->body, r->body_len, forward_cb);
}

static void forwarder_send(struct tandem_forwarder *f, struct tandem_http_request *r,
                           const struct tandem_member *leader, bool held)
{
    struct tandem_httpc *c = NULL;
    tandem_assert(r->handed && !r->responded); /* only a request still waiting for its answer */
    if (!f->closing && tandem_http_pool_get_node(&f->pool, leader->api, leader->name, &c) == 0) {
        snprintf(f->target, sizeof f->target, "%s", leader->api);
        snprintf(f->target_node, sizeof f->target_node, "%s", leader->name);
    } else if (!f->closing) {
        f->target[0] = '\0'; /* no client to any leader now: retries wait in the park */
        tandem_http_pool_retire(&f->pool);
    }
    struct forward *fw = c == NULL ? NULL : calloc(1, sizeof *fw);
    if (fw == NULL) {
        forward_fail(f, r, 503, "cannot reach the leader %s at %s", leader->name, leader->api);
        return;
    }
    fw->f = f;
    fw->r = r;
    fw->hold = held;
    int rv = forward_start(fw);
    if (rv != 0) {
        free(fw);
        forward_fail(f, r, rv == UV_ENOBUFS ? 429 : 503, "forwarding to the leader failed: %s",
                     uv_strerror(rv));
        return;
    }
    f->forwarded++;
}

void tandem_forwarder_send(struct tandem_forwarder *f, struct tandem_http_request *r,
                           const struct tandem_member *leader)
{
    forwarder_send(f, r, leader, false);
}

void tandem_forwarder_send_held(struct tandem_forwarder *f, struct tandem_http_request *r,
                                const struct tandem_member *leader)
{
    forwarder_send(f, r, leader, true);
}

void tandem_forwarder_set_tls(struct tandem_forwarder *f, struct tandem_tls_ctx *tls)
{
    tandem_http_pool_set_tls(&f->pool, tls);
}

/* The pool, then the hold timer: close_cb runs once both are closed. */
static void hold_timer_closed_cb(uv_handle_t *handle)
{
    struct tandem_forwarder *f = handle->data;
    if (f->close_cb != NULL) {
        f->close_cb(f); /* last: it may free f */
    }
}

static void pool_closed_cb(struct tandem_http_pool *p)
{
    struct tandem_forwarder *f = p->data;
    uv_close((uv_handle_t *)&f->hold_timer, hold_timer_closed_cb);
}

void tandem_forwarder_close(struct tandem_forwarder *f, void (*cb)(struct tandem_forwarder *f))
{
    f->closing = true;
    f->close_cb = cb;
    f->target[0] = '\0';
    while (!tandem_list_empty(&f->held)) { /* true answers: out now rather than lost */
        held_release(tandem_list_entry(tandem_list_first(&f->held), struct forward_held, link));
    }
    uv_timer_stop(&f->hold_timer);
    tandem_http_pool_close(&f->pool, pool_closed_cb); /* pending answers are cancelled */
}
