/* Tests of follower-to-leader forwarding: a follower server whose handler forwards to a tiny
 * leader server on 127.0.0.1, with a park for what reached no leader. */
#include <stdlib.h>

#include "harness.h"
#include "node/http/forward.h"
#include "node/http/park.h"
#include "tls_certs.h"

#define PARK_WAIT_LONG_NS (5000ull * 1000000ull)

struct follower {
    struct harness *h;
    struct tandem_http_server server;
    struct tandem_forwarder forwarder;
    struct tandem_park park;
    struct tandem_member leader;
    struct tandem_httpc client;
    int port, answered, server_closed, forwarder_closed, park_closed;
    bool held;          /* requests go through tandem_forwarder_send_held */
    uint64_t held_wait; /* held_until predicate: this many answers held so far */
    uint64_t applied;   /* what "this node" has applied, for the hold */
};

static void follower_handle(struct tandem_http_server *s, struct tandem_http_request *r)
{
    struct follower *f = s->data;
    if (f->held) {
        tandem_forwarder_send_held(&f->forwarder, r, &f->leader);
    } else {
        tandem_forwarder_send(&f->forwarder, r, &f->leader);
    }
}

static uint64_t follower_applied(void *data)
{
    return ((struct follower *)data)->applied;
}

static void follower_redispatch(void *data, struct tandem_http_request *r)
{
    struct follower *f = data;
    tandem_forwarder_send(&f->forwarder, r, &f->leader);
}

static void follower_answer(void *data, struct tandem_http_request *r, int status,
                            const char *extra_headers, const char *json)
{
    struct follower *f = data;
    f->answered++;
    tandem_http_respond_json(r, status, extra_headers, json);
}

static void follower_start(struct harness *h, struct follower *f, int leader_port,
                           uint64_t park_wait_ns)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    memset(f, 0, sizeof *f);
    f->h = h;
    snprintf(f->leader.name, sizeof f->leader.name, "leader-1");
    snprintf(f->leader.api, sizeof f->leader.api, "http://127.0.0.1:%d", leader_port);
    assert_int_equal(
        tandem_park_init(&f->park, &h->loop, park_wait_ns, follower_redispatch, follower_answer, f),
        0);
    assert_int_equal(tandem_forwarder_init(&f->forwarder, &h->loop, "east-1", &f->park, 2, 2000,
                                           follower_answer, f),
                     0);
    assert_int_equal(tandem_http_server_init(&f->server, &h->loop, NULL, follower_handle, f), 0);
    assert_int_equal(tandem_http_server_listen(&f->server, "127.0.0.1", 0, errmsg), 0);
    f->port = tandem_http_server_port(&f->server);
    assert_int_equal(tandem_httpc_init(&f->client, &h->loop, "127.0.0.1", f->port, 1, 5000), 0);
}

static void follower_server_closed(struct tandem_http_server *s)
{
    ((struct follower *)s->data)->server_closed = 1;
}

static void follower_forwarder_closed(struct tandem_forwarder *fw)
{
    ((struct follower *)fw->answer_data)->forwarder_closed = 1;
}

static void follower_park_closed(struct tandem_park *p)
{
    ((struct follower *)p->data)->park_closed = 1;
}

static int follower_closed(void *arg)
{
    struct follower *f = arg;
    return f->server_closed && f->forwarder_closed && f->park_closed;
}

static void follower_stop(struct follower *f)
{
    client_stop(f->h, &f->client);
    tandem_forwarder_close(&f->forwarder, follower_forwarder_closed);
    tandem_park_close(&f->park, follower_park_closed);
    tandem_http_server_close(&f->server, follower_server_closed);
    assert_true(harness_run_until(f->h, follower_closed, f));
}

/* The request, its method, target, body and the headers the leader needs arrive; the answer
 * comes back with the relayed headers only. */
static void test_forward_relays(void **state)
{
    (void)state;
    struct harness h;
    struct leader l;
    struct follower f;
    struct call c;
    harness_init(&h);
    leader_start(&h, &l, 0);
    follower_start(&h, &f, l.port, PARK_WAIT_LONG_NS);
    call_send(&f.client, &c, "PUT", "/v1/kv/a%20b?x=1",
              "Content-Type: text/plain\r\nX-Tandem-User: alice\r\nX-Other: 1\r\n", "hello");
    assert_true(harness_run_until(&h, call_done, &c));
    assert_int_equal(c.status, 0);
    assert_int_equal(c.http_status, 200);
    assert_string_equal(c.body, "{\"ok\":true}");
    assert_string_equal(c.mod_index, "7");
    assert_string_equal(c.node, "leader-1");
    assert_string_equal(c.private_header, ""); /* only the listed headers travel back */
    assert_string_equal(l.method_url, "PUT /v1/kv/a%20b?x=1");
    assert_string_equal(l.body, "hello");
    assert_string_equal(l.forwarded_by, "east-1");
    assert_string_equal(l.user, "alice");
    assert_string_equal(l.content_type, "text/plain");
    assert_int_equal(f.forwarder.forwarded, 1);
    assert_int_equal(f.answered, 0);
    follower_stop(&f);
    leader_stop(&h, &l);
    harness_close(&h);
}

/* A dead leader, once the park's bound is over: 503 naming the failure. */
static void test_forward_dead_leader(void **state)
{
    (void)state;
    struct harness h;
    struct follower f;
    struct call c;
    harness_init(&h);
    follower_start(&h, &f, harness_dead_port(&h), 0);
    call_send(&f.client, &c, "POST", "/v1/txn", NULL, "{}");
    assert_true(harness_run_until(&h, call_done, &c));
    assert_int_equal(c.http_status, 503);
    assert_string_equal(c.body,
                        "{\"error\":\"forwarding to the leader failed: connection refused\"}");
    assert_int_equal(f.forwarder.failed, 1);
    assert_int_equal(f.answered, 1);
    follower_stop(&f);
    harness_close(&h);
}

/* A leader URL that is not http://host:port: 503 saying whom it could not reach. */
static void test_forward_bad_url(void **state)
{
    (void)state;
    struct harness h;
    struct follower f;
    struct call c;
    harness_init(&h);
    follower_start(&h, &f, 1, 0);
    snprintf(f.leader.api, sizeof f.leader.api, "https://127.0.0.1:1");
    call_send(&f.client, &c, "GET", "/v1/kv/a", NULL, NULL);
    assert_true(harness_run_until(&h, call_done, &c));
    assert_int_equal(c.http_status, 503);
    assert_string_equal(c.body,
                        "{\"error\":\"cannot reach the leader leader-1 at https://127.0.0.1:1\"}");
    follower_stop(&f);
    harness_close(&h);
}

static int leader_handled(void *arg)
{
    return ((struct leader *)arg)->handled > 0;
}

/* No byte reached the leader (nothing listened yet): the request waits in the park and is sent
 * again, and answered, once the leader is up. */
static void test_forward_unsent_is_retried(void **state)
{
    (void)state;
    struct harness h;
    struct leader l;
    struct follower f;
    struct call c;
    harness_init(&h);
    int port = harness_dead_port(&h);
    follower_start(&h, &f, port, PARK_WAIT_LONG_NS);
    call_send(&f.client, &c, "PUT", "/v1/kv/k", NULL, "v");
    harness_run_for(&h, 100);
    assert_false(c.done);
    assert_true(f.park.parked_total >= 1);
    leader_start(&h, &l, port);
    assert_true(harness_run_until(&h, call_done, &c));
    assert_int_equal(c.http_status, 200);
    assert_int_equal(l.handled, 1);
    assert_string_equal(l.body, "v");
    follower_stop(&f);
    leader_stop(&h, &l);
    harness_close(&h);
}

/* A former leader's "not the leader, nothing done" (503 with the retry-safe header) parks the
 * request; it goes out again and the next answer is relayed. */
static void test_forward_retry_safe_503(void **state)
{
    (void)state;
    struct harness h;
    struct leader l;
    struct follower f;
    struct call c;
    harness_init(&h);
    leader_start(&h, &l, 0);
    l.answer_status = 503;
    follower_start(&h, &f, l.port, PARK_WAIT_LONG_NS);
    call_send(&f.client, &c, "DELETE", "/v1/kv/k", NULL, NULL);
    assert_true(harness_run_until(&h, leader_handled, &l));
    harness_run_for(&h, 30);
    assert_false(c.done);
    l.answer_status = 0;
    assert_true(harness_run_until(&h, call_done, &c));
    assert_int_equal(c.http_status, 200);
    assert_true(l.handled >= 2);
    follower_stop(&f);
    leader_stop(&h, &l);
    harness_close(&h);
}

static int parked_one(void *arg)
{
    return ((struct tandem_park *)arg)->count == 1;
}

/* Closing the forwarder with a request parked: the park answers it 503 shutting down. */
static void test_forward_close_answers_parked(void **state)
{
    (void)state;
    struct harness h;
    struct follower f;
    struct call c;
    harness_init(&h);
    follower_start(&h, &f, harness_dead_port(&h), PARK_WAIT_LONG_NS);
    call_send(&f.client, &c, "PUT", "/v1/kv/k", NULL, "v");
    assert_true(harness_run_until(&h, parked_one, &f.park)); /* not in a send just now */
    tandem_forwarder_close(&f.forwarder, follower_forwarder_closed);
    tandem_park_close(&f.park, follower_park_closed);
    assert_true(harness_run_until(&h, call_done, &c));
    assert_int_equal(c.http_status, 503);
    assert_string_equal(c.retry_after, "1");
    assert_string_equal(c.body, "{\"error\":\"node is shutting down\"}");
    client_stop(&h, &f.client);
    tandem_http_server_close(&f.server, follower_server_closed);
    assert_true(harness_run_until(&h, follower_closed, &f));
    harness_close(&h);
}

/* Over TLS: the follower's client certificate (a node's) reaches the leader, with the caller the
 * follower's own handshake proved in the forwarded identity headers. */
static void forward_tls_case(const char *dir, const char *caller, const char *leader_name,
                             const char *kind)
{
    struct harness h;
    struct leader l;
    struct follower f;
    struct call c;
    struct tandem_tls_ctx *east = tls_certs_ctx(dir, "ca", "east-1");
    struct tandem_tls_ctx *west = tls_certs_ctx(dir, "ca", "west-1");
    struct tandem_tls_ctx *client = tls_certs_ctx(dir, "ca", caller);
    harness_init(&h);
    leader_start(&h, &l, 0);
    tandem_http_server_set_tls(&l.server, west);
    follower_start(&h, &f, l.port, 0);
    snprintf(f.leader.name, sizeof f.leader.name, "%s", leader_name);
    snprintf(f.leader.api, sizeof f.leader.api, "https://127.0.0.1:%d", l.port);
    tandem_http_server_set_tls(&f.server, east);
    tandem_forwarder_set_tls(&f.forwarder, east);
    assert_int_equal(tandem_httpc_set_tls(&f.client, client, "east-1"), 0);
    call_send(&f.client, &c, "POST", "/v1/txn", "X-Tandem-Forwarded-User: mallory\r\n", "{}");
    assert_true(harness_run_until(&h, call_done, &c));
    assert_int_equal(c.status, 0);
    if (kind == NULL) { /* the leader did not prove to be leader_name: nothing reached it */
        assert_int_equal(c.http_status, 503);
        assert_string_equal(c.body, "{\"error\":\"forwarding to the leader failed: protocol "
                                    "error\"}");
        assert_int_equal(l.handled, 0);
    } else {
        assert_int_equal(c.http_status, 200);
        assert_string_equal(l.forwarded_by, "east-1");
        assert_string_equal(l.forwarded_user, caller); /* never what the caller claimed */
        assert_string_equal(l.forwarded_kind, kind);
        assert_int_equal(l.peer.kind, TANDEM_TLS_PEER_NODE);
        assert_string_equal(l.peer.name, "east-1");
    }
    follower_stop(&f);
    leader_stop(&h, &l);
    harness_close(&h);
    tandem_tls_ctx_free(east);
    tandem_tls_ctx_free(west);
    tandem_tls_ctx_free(client);
}

static void test_forward_over_tls(void **state)
{
    char dir[TLS_CERTS_DIR_MAX];
    (void)state;
    tls_certs_make(dir);
    forward_tls_case(dir, "alice", "west-1", "user");
    forward_tls_case(dir, "west-1", "west-1", "node");
    forward_tls_case(dir, "alice", "north-9", NULL); /* west-1's certificate, not north-9's */
    tls_certs_remove(dir);
}

static int held_until(void *arg)
{
    struct follower *f = arg;
    return f->forwarder.held_total >= f->held_wait;
}

/* A session write's answer (tandem_forwarder_send_held) waits until this node has applied the
 * leader's X-Tandem-Applied-Index; a plain one does not; past hold_ms it goes anyway; closing
 * the forwarder lets what is held out. */
static void test_forward_held_until_applied(void **state)
{
    (void)state;
    struct harness h;
    struct leader l;
    struct follower f;
    struct call c;
    harness_init(&h);
    leader_start(&h, &l, 0);
    l.applied_index = 10;
    follower_start(&h, &f, l.port, PARK_WAIT_LONG_NS);
    tandem_forwarder_set_hold(&f.forwarder, follower_applied, &f, 60000);
    f.applied = 9;

    call_send(&f.client, &c, "POST", "/v1/auth/login", NULL, "{}"); /* not held: sent plain */
    assert_true(harness_run_until(&h, call_done, &c));
    assert_int_equal(c.http_status, 200);
    assert_int_equal(f.forwarder.held_total, 0);

    f.held = true;
    f.held_wait = 1;
    call_send(&f.client, &c, "POST", "/v1/auth/login", NULL, "{}");
    assert_true(harness_run_until(&h, held_until, &f));
    harness_run_for(&h, 30);
    assert_false(c.done); /* index 9 < 10: still held */
    f.applied = 10;
    assert_true(harness_run_until(&h, call_done, &c));
    assert_int_equal(c.http_status, 200);
    assert_string_equal(c.body, "{\"ok\":true}");
    assert_string_equal(c.mod_index, "7");
    assert_int_equal(f.forwarder.hold_expired, 0);

    l.applied_index = 20; /* applied already: relayed at once, nothing held */
    call_send(&f.client, &c, "POST", "/v1/auth/login", NULL, "{}");
    f.applied = 20;
    assert_true(harness_run_until(&h, call_done, &c));
    assert_int_equal(f.forwarder.held_total, 1);

    l.applied_index = 30; /* this node never gets there: out after hold_ms */
    tandem_forwarder_set_hold(&f.forwarder, follower_applied, &f, 50);
    call_send(&f.client, &c, "POST", "/v1/auth/login", NULL, "{}");
    assert_true(harness_run_until(&h, call_done, &c));
    assert_int_equal(c.http_status, 200);
    assert_int_equal(f.forwarder.held_total, 2);
    assert_int_equal(f.forwarder.hold_expired, 1);

    tandem_forwarder_set_hold(&f.forwarder, follower_applied, &f, 60000);
    f.held_wait = 3;
    call_send(&f.client, &c, "POST", "/v1/auth/login", NULL, "{}");
    assert_true(harness_run_until(&h, held_until, &f));
    assert_false(c.done);
    tandem_forwarder_close(&f.forwarder, follower_forwarder_closed); /* held: out now */
    assert_true(harness_run_until(&h, call_done, &c));
    assert_int_equal(c.http_status, 200);
    client_stop(&h, &f.client);
    tandem_park_close(&f.park, follower_park_closed);
    tandem_http_server_close(&f.server, follower_server_closed);
    assert_true(harness_run_until(&h, follower_closed, &f));
    leader_stop(&h, &l);
    harness_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_relays),
        cmocka_unit_test(test_forward_dead_leader),
        cmocka_unit_test(test_forward_bad_url),
        cmocka_unit_test(test_forward_unsent_is_retried),
        cmocka_unit_test(test_forward_retry_safe_503),
        cmocka_unit_test(test_forward_close_answers_parked),
        cmocka_unit_test(test_forward_over_tls),
        cmocka_unit_test(test_forward_held_until_applied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
