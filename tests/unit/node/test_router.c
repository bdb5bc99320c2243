/* Tests of the router on a stand-in node (raft is never started; its state is set by hand):
 * route matching by method and prefix with percent-decoding, JSON 404/405 bodies, the
 * leader check that runs a route here, forwards it, parks it or refuses it, and the
 * authorisation and rate limit in front of every route (the TLS peer set by hand). */
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"
#include "node/api/api.h"
#include "node/api/authz.h"
#include "node/audit_queue.h"
#include "node/node.h"

#define ELECTION_TIMEOUT_MS 15 /* the park holds a request about four of these */

struct fixture {
    struct harness h;
    struct tandem_config config;
    struct tandem_node node;
    struct tandem_httpc client;
    struct leader leader;
    char leader_address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    char store_dir[64]; /* an empty state store: member removal looks for lost members there */
    int http_closed, forwarder_closed, park_closed;
};

static struct fixture fixture; /* a tandem_node is large: not on the stack */

/* main.c's, which is not in the library: no route these tests take stops the node. */
void tandem_node_fatal(struct tandem_node *node, const char *what)
{
    (void)node;
    fail_msg("tandem_node_fatal: %s", what);
}

void tandem_node_stop(struct tandem_node *node, int exit_code)
{
    (void)node;
    fail_msg("tandem_node_stop: %d", exit_code);
}

/* Plays the TLS server's part: the peer is what X-Test-Peer says ("user:alice", "node:west-1"),
 * none without it. */
static void peer_handle(struct tandem_http_server *s, struct tandem_http_request *r)
{
    const char *peer = tandem_http_request_header(r, "X-Test-Peer");
    if (peer != NULL) {
        r->peer.kind = strncmp(peer, "node:", 5) == 0 ? TANDEM_TLS_PEER_NODE : TANDEM_TLS_PEER_USER;
        snprintf(r->peer.name, sizeof r->peer.name, "%s", strchr(peer, ':') + 1);
    }
    tandem_routes_handle(s, r);
}

static void fixture_start(struct fixture *f)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    memset(f, 0, sizeof *f);
    harness_init(&f->h);
    f->config.election_timeout_ms = ELECTION_TIMEOUT_MS;
    f->config.forward_connections = 2;
    f->config.forward_timeout_ms = 2000;
    f->config.pending_requests_max = 8;
    f->node.loop = &f->h.loop;
    f->node.config = &f->config;
    snprintf(f->node.self.name, sizeof f->node.self.name, "east-1");
    snprintf(f->node.self.site, sizeof f->node.self.site, "east");
    f->node.raft.raft.state = RAFT_LEADER;
    snprintf(f->store_dir, sizeof f->store_dir, "/tmp/tandem-test-router-XXXXXX");
    assert_non_null(mkdtemp(f->store_dir));
    assert_int_equal(tandem_store_open(&f->node.store, f->store_dir, 1u << 20), 0);
    f->node.bcp.env.store = &f->node.store;
    tandem_router_init(&f->node);
    assert_int_equal(
        tandem_http_server_init(&f->node.http, &f->h.loop, NULL, peer_handle, &f->node), 0);
    assert_int_equal(tandem_http_server_listen(&f->node.http, "127.0.0.1", 0, errmsg), 0);
    assert_int_equal(tandem_httpc_init(&f->client, &f->h.loop, "127.0.0.1",
                                       tandem_http_server_port(&f->node.http), 1, 5000),
                     0);
}

/* This node follows the leader server started here. */
static void fixture_follow(struct fixture *f)
{
    struct tandem_member m = {.role = TANDEM_ROLE_VOTER};
    leader_start(&f->h, &f->leader, 0);
    snprintf(m.name, sizeof m.name, "west-1");
    snprintf(m.site, sizeof m.site, "west");
    snprintf(m.raft, sizeof m.raft, "127.0.0.1:1");
    snprintf(m.api, sizeof m.api, "http://127.0.0.1:%d", f->leader.port);
    assert_int_equal(tandem_member_address_format(&m, f->leader_address, sizeof f->leader_address),
                     0);
    f->node.raft.raft.state = RAFT_FOLLOWER;
    f->node.raft.raft.follower_state.current_leader.id = 2;
    f->node.raft.raft.follower_state.current_leader.address = f->leader_address;
}

static void http_closed_cb(struct tandem_http_server *s)
{
    (void)s;
    fixture.http_closed = 1;
}

static void forwarder_closed_cb(struct tandem_forwarder *fw)
{
    (void)fw;
    fixture.forwarder_closed = 1;
}

static void park_closed_cb(struct tandem_park *p)
{
    (void)p;
    fixture.park_closed = 1;
}

static int fixture_closed(void *arg)
{
    struct fixture *f = arg;
    return f->http_closed && f->forwarder_closed && f->park_closed;
}

static void fixture_stop(struct fixture *f)
{
    client_stop(&f->h, &f->client);
    tandem_forwarder_close(&f->node.forwarder, forwarder_closed_cb);
    tandem_park_close(&f->node.park, park_closed_cb);
    tandem_http_server_close(&f->node.http, http_closed_cb);
    assert_true(harness_run_until(&f->h, fixture_closed, f));
    tandem_audit_fail_queued(&f->node, RAFT_SHUTDOWN); /* as tandemd's stop does */
    if (f->leader.port != 0) {
        leader_stop(&f->h, &f->leader);
    }
    harness_close(&f->h);
    tandem_store_close(&f->node.store);
    char path[96];
    for (const char *const *name = (const char *const[]){"data.mdb", "lock.mdb", NULL}; *name;
         name++) {
        snprintf(path, sizeof path, "%s/%s", f->store_dir, *name);
        (void)unlink(path);
    }
    assert_int_equal(rmdir(f->store_dir), 0);
}

/* Sends one request and waits for its answer. */
static void ask(struct fixture *f, struct call *c, const char *method, const char *target,
                const char *headers, const char *body)
{
    call_send(&f->client, c, method, target, headers, body);
    assert_true(harness_run_until(&f->h, call_done, c));
    assert_int_equal(c->status, 0);
}

static void test_router_matching(void **state)
{
    struct fixture *f = &fixture;
    struct call c;
    (void)state;
    fixture_start(f);
    ask(f, &c, "GET", "/healthz", NULL, NULL);
    assert_int_equal(c.http_status, 200);
    assert_string_equal(c.body, "{\"ok\":true}");
    assert_string_equal(c.node, "east-1");
    ask(f, &c, "HEAD", "/healthz", NULL, NULL); /* GET routes answer HEAD */
    assert_int_equal(c.http_status, 200);
    ask(f, &c, "POST", "/healthz", NULL, "{}");
    assert_int_equal(c.http_status, 405);
    assert_string_equal(c.body, "{\"error\":\"method POST not allowed on /healthz\"}");
    ask(f, &c, "GET", "/nope?x=1", NULL, NULL);
    assert_int_equal(c.http_status, 404);
    assert_string_equal(c.body, "{\"error\":\"no such route: /nope\"}");
    ask(f, &c, "DELETE", "/v1/members/", NULL, NULL); /* a prefix route needs a parameter */
    assert_int_equal(c.http_status, 404);
    fixture_stop(f);
}

static void test_router_prefix_decoding(void **state)
{
    struct fixture *f = &fixture;
    struct call c;
    (void)state;
    fixture_start(f);
    ask(f, &c, "DELETE", "/v1/members/a%20b+c", NULL, NULL);
    assert_int_equal(c.http_status, 404);
    assert_string_equal(c.body, "{\"error\":\"no member named a b+c\"}");
    ask(f, &c, "DELETE", "/v1/members/%zz", NULL, NULL);
    assert_int_equal(c.http_status, 400);
    assert_string_equal(c.body, "{\"error\":\"malformed path parameter\"}");
    ask(f, &c, "DELETE", "/v1/members/a%00", NULL, NULL);
    assert_int_equal(c.http_status, 400);
    fixture_stop(f);
}

/* Writes and linearizable reads on a follower go to the leader; local routes stay here. */
static void test_router_forwards_when_follower(void **state)
{
    struct fixture *f = &fixture;
    struct call c;
    (void)state;
    fixture_start(f);
    fixture_follow(f);
    /* The actor is the authenticated identity: a client's X-Tandem-User is refused here. */
    ask(f, &c, "PUT", "/v1/kv/k", "X-Tandem-User: bob\r\n", "v");
    assert_int_equal(c.http_status, 400);
    assert_string_equal(c.body, "{\"error\":\"X-Tandem-User is not accepted: the actor is the "
                                "authenticated identity\"}");
    assert_int_equal(f->leader.handled, 0);
    ask(f, &c, "PUT", "/v1/kv/k", NULL, "v");
    assert_int_equal(c.http_status, 200);
    assert_string_equal(c.node, "leader-1");
    assert_string_equal(f->leader.method_url, "PUT /v1/kv/k");
    assert_string_equal(f->leader.forwarded_by, "east-1");
    assert_string_equal(f->leader.user, "");
    ask(f, &c, "GET", "/v1/kv/k", NULL, NULL);
    assert_int_equal(c.http_status, 200);
    assert_string_equal(f->leader.method_url, "GET /v1/kv/k");
    ask(f, &c, "GET", "/healthz", NULL, NULL);
    assert_string_equal(c.node, "east-1");
    assert_int_equal(f->leader.handled, 2);
    assert_int_equal(f->node.forwarder.forwarded, 2);
    fixture_stop(f);
}

/* A request already forwarded once is never forwarded again: 503 retry-safe. It did nothing
 * here and goes on to the next leader, which audits its outcome: no record here. */
static void test_router_no_second_forward(void **state)
{
    struct fixture *f = &fixture;
    struct call c;
    (void)state;
    fixture_start(f);
    fixture_follow(f);
    unsigned queued = f->node.audit.queued;
    ask(f, &c, "PUT", "/v1/kv/k", "X-Tandem-Forwarded-By: west-2\r\n", "v");
    assert_int_equal(c.http_status, 503);
    assert_string_equal(c.body, "{\"error\":\"not the leader\"}");
    assert_string_equal(c.retry_after, "1");
    assert_int_equal(f->leader.handled, 0);
    assert_int_equal(f->node.audit.queued, queued);
    /* A write refused here for what it is (a 4xx) is this node's to audit. */
    ask(f, &c, "PUT", "/v1/kv/k", "X-Tandem-User: bob\r\n", "v");
    assert_int_equal(c.http_status, 400);
    assert_int_equal(f->node.audit.queued, queued + 1);
    fixture_stop(f);
}

/* A forwarded write that no leader answers ends on this node, which audits it once: one that
 * every leader hands back until its wait runs out, and one whose leader refuses connections. A
 * write the leader answered is the leader's to audit. */
static void test_router_failed_forward_audited(void **state)
{
    struct fixture *f = &fixture;
    struct call c;
    (void)state;
    fixture_start(f);
    fixture_follow(f);
    unsigned queued = f->node.audit.queued;
    ask(f, &c, "PUT", "/v1/kv/k", NULL, "v");
    assert_int_equal(c.http_status, 200);
    assert_int_equal(f->node.audit.queued, queued);
    f->leader.answer_status = 503;
    ask(f, &c, "PUT", "/v1/kv/k", NULL, "v");
    assert_int_equal(c.http_status, 503);
    assert_string_equal(c.body, "{\"error\":\"no leader\",\"leader\":null}");
    assert_true(f->leader.handled >= 2); /* sent, handed back, sent again from the park */
    assert_int_equal(f->node.audit.queued, queued + 1);
    /* The leader is gone: every forward is refused until the wait runs out. */
    leader_stop(&f->h, &f->leader);
    f->leader.port = 0;
    ask(f, &c, "PUT", "/v1/kv/k", NULL, "v");
    assert_int_equal(c.http_status, 503);
    assert_int_equal(f->node.audit.queued, queued + 2);
    fixture_stop(f);
}

/* No leader: a write waits in the park, then 503 with Retry-After once its bound passed. */
static void test_router_no_leader(void **state)
{
    struct fixture *f = &fixture;
    struct call c;
    (void)state;
    fixture_start(f);
    f->node.raft.raft.state = RAFT_CANDIDATE;
    uint64_t start = uv_hrtime();
    ask(f, &c, "PUT", "/v1/kv/k", NULL, "v");
    assert_true(uv_hrtime() - start >= 4ull * ELECTION_TIMEOUT_MS * 1000000ull);
    assert_int_equal(c.http_status, 503);
    assert_string_equal(c.body, "{\"error\":\"no leader\",\"leader\":null}");
    assert_string_equal(c.retry_after, "1");
    assert_true(f->node.park.parked_total >= 1);
    fixture_stop(f);
}

static void test_router_fenced(void **state)
{
    struct fixture *f = &fixture;
    struct call c;
    (void)state;
    fixture_start(f);
    f->node.bcp.fenced = true;
    ask(f, &c, "PUT", "/v1/kv/k", NULL, "v");
    assert_int_equal(c.http_status, 503);
    assert_non_null(strstr(c.body, "this node is fenced"));
    ask(f, &c, "GET", "/healthz", NULL, NULL); /* local routes still answer */
    assert_int_equal(c.http_status, 200);
    fixture_stop(f);
}

/* The routes that answer without a credential: health, the console's files (issue 15) and the
 * login and logout that trade a password for a token or drop the console's cookie. */
static bool anonymous_route(const struct tandem_route *route)
{
    static const char *const open[] = {
        "/healthz", "/readyz", "/ui", "/ui/", "/ui/login", "/v1/auth/login", "/v1/auth/logout"};
    for (size_t i = 0; i < sizeof open / sizeof open[0]; i++) {
        if (strcmp(route->pattern, open[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Every route of every table, asked without a credential on a TLS listener: 401 with the
 * challenge, before the route runs; only anonymous_route() answer. */
static void test_router_anonymous_every_route(void **state)
{
    const struct tandem_route_table *const tables[] = {
        &tandem_cluster_route_table,   &tandem_kv_route_table,
        &tandem_domain_route_table,    &tandem_bcp_route_table,
        &tandem_rebalance_route_table, &tandem_quarantine_route_table,
        &tandem_events_route_table,    &tandem_audit_route_table,
        &tandem_users_route_table,     &tandem_pdata_route_table,
        &tandem_backups_route_table,   &tandem_backup_site_route_table,
        &tandem_snapshot_route_table,  &tandem_ui_route_table,
    };
    struct fixture *f = &fixture;
    struct call c;
    char target[128];
    unsigned routes = 0, refused = 0, open = 0;
    (void)state;
    fixture_start(f);
    f->node.http.tls_required = 1;
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        for (unsigned i = 0; i < tables[t]->count; i++) {
            const struct tandem_route *route = &tables[t]->routes[i];
            bool prefix = (route->flags & TANDEM_ROUTE_PREFIX) != 0;
            snprintf(target, sizeof target, "%s%s", route->pattern, prefix ? "x/advance" : "");
            ask(f, &c, http_method_str((enum http_method)route->method), target, NULL, "{}");
            routes++;
            if (anonymous_route(route)) {
                assert_int_not_equal(c.http_status, 401);
                open++;
                continue;
            }
            if (c.http_status != 401) {
                fail_msg("%s %s answered %d without a credential", http_method_str(route->method),
                         target, c.http_status);
            }
            assert_string_equal(c.body, "{\"error\":\"authentication required: present a client "
                                        "certificate of the cluster CA\"}");
            assert_string_equal(c.www_authenticate, "Certificate realm=\"tandem\"");
            assert_string_equal(c.node, "east-1");
            assert_string_equal(c.applied_index, ""); /* nothing but the node's name */
            refused++;
        }
    }
    const char *const *names;
    assert_int_equal(routes + 1, tandem_route_names(&names)); /* every table was asked */
    assert_int_equal(open, 8); /* /ui/ twice: the page and the prefix of its files */
    assert_int_equal(refused, routes - open);
    ask(f, &c, "GET", "/no/such/route", NULL, NULL); /* 401, not 404: nothing is disclosed */
    assert_int_equal(c.http_status, 401);
    ask(f, &c, "GET", "/healthz", NULL, NULL);
    assert_int_equal(c.http_status, 200);
    assert_string_equal(c.body, "{\"ok\":true}");
    fixture_stop(f);
}

#define AS_ALICE "X-Test-Peer: user:alice\r\n"
#define AS_ADMIN "X-Test-Peer: user:admin\r\n"
#define AS_WEST  "X-Test-Peer: node:west-1\r\n"
#define FOR_ADMIN                                                                                  \
    TANDEM_FORWARDED_USER_HEADER ": admin\r\n" TANDEM_FORWARDED_KIND_HEADER ": user\r\n"

/* With a credential: user certificates reach the routes but not /v1/node/, nor may they claim a
 * forwarded identity; node certificates may. A 404 or 400 here means the route itself ran. */
static void test_router_user_and_node(void **state)
{
    static const struct {
        const char *method, *path, *headers, *body;
        int status;
        const char *answer; /* NULL: not checked */
    } cases[] = {
        {"GET", "/healthz", AS_ALICE, NULL, 200, "{\"ok\":true}"},
        {"DELETE", "/v1/members/nobody", AS_ALICE, NULL, 403,
         "{\"error\":\"no user record for certificate alice\"}"},
        {"DELETE", "/v1/members/nobody", AS_ADMIN, NULL, 404, NULL},
        {"GET", "/v1/node/epoch", AS_ALICE, NULL, 403,
         "{\"error\":\"/v1/node/* answers only node certificates, not user alice\"}"},
        {"POST", "/v1/node/release", AS_WEST, "[]", 400, NULL},
        {"DELETE", "/v1/members/nobody", AS_ALICE FOR_ADMIN, NULL, 403,
         "{\"error\":\"forwarded identity from a peer that is not a node\"}"},
        {"DELETE", "/v1/members/nobody", AS_WEST FOR_ADMIN, NULL, 404, NULL},
        /* A forwarded user is resolved on this node: no record here, refused here too. */
        {"DELETE", "/v1/members/nobody",
         AS_WEST TANDEM_FORWARDED_USER_HEADER ": alice\r\n" TANDEM_FORWARDED_KIND_HEADER
                                              ": user\r\n",
         NULL, 403, "{\"error\":\"no user record for certificate alice\"}"},
    };
    struct fixture *f = &fixture;
    struct call c;
    (void)state;
    fixture_start(f);
    f->node.http.tls_required = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ask(f, &c, cases[i].method, cases[i].path, cases[i].headers, cases[i].body);
        assert_int_equal(c.http_status, cases[i].status);
        assert_string_not_equal(c.applied_index, ""); /* a credential: the full answer */
        if (cases[i].answer != NULL) {
            assert_string_equal(c.body, cases[i].answer);
        }
    }
    fixture_stop(f);
}

/* Over the rate: 429 with Retry-After before the route runs; another user and nodes are not
 * held back. Bounded in requests, and robust to a slow machine (a refill only delays the 429). */
static void test_router_rate_limit(void **state)
{
    struct fixture *f = &fixture;
    struct call c;
    (void)state;
    fixture_start(f);
    f->node.http.tls_required = 1;
    tandem_rate_limit_init(&f->node.rate_limit, 1, 3);
    unsigned ok = 0;
    for (unsigned i = 0; i < 20; i++) {
        ask(f, &c, "GET", "/v1/members", AS_ADMIN, NULL);
        if (c.http_status == 429) {
            break;
        }
        assert_int_equal(c.http_status, 200);
        ok++;
    }
    assert_int_equal(c.http_status, 429);
    assert_true(ok >= 3);
    assert_string_equal(c.retry_after, "1");
    assert_string_equal(c.body, "{\"error\":\"rate limit: 1 requests per second for admin\"}");
    assert_int_equal(f->node.rate_limit.limited, 1);
    ask(f, &c, "GET", "/v1/members", "X-Test-Peer: node:west-2\r\n", NULL);
    assert_int_equal(c.http_status, 200);
    for (unsigned i = 0; i < 10; i++) {
        ask(f, &c, "GET", "/v1/members", "X-Test-Peer: node:west-1\r\n", NULL);
        assert_int_equal(c.http_status, 200);
    }
    tandem_rate_limit_free(&f->node.rate_limit);
    fixture_stop(f);
}

/* The field checker the strict routes share: unknown, mistyped and missing fields, each named. */
static void test_router_fields_check(void **state)
{
    static const struct tandem_route_field fields[] = {TANDEM_REQUIRED("site", STRING),
                                                       TANDEM_OPTIONAL("force", BOOL),
                                                       TANDEM_OPTIONAL("wait_ms", INT),
                                                       TANDEM_OPTIONAL("list", ARRAY),
                                                       TANDEM_OPTIONAL("plan", OBJECT),
                                                       TANDEM_OPTIONAL("any", ANY),
                                                       TANDEM_FIELDS_END};
    const struct {
        const char *json, *why;
    } cases[] = {
        {"{\"site\":\"east\"}", ""},
        {"{\"site\":\"east\",\"force\":true,\"wait_ms\":5,\"list\":[],\"plan\":{},\"any\":null}",
         ""},
        {"{\"site\":\"east\",\"x\":1}", "unknown field \"x\""},
        {"{\"force\":false}", "missing field \"site\""},
        {"{\"site\":1}", "field \"site\" must be a string"},
        {"{\"site\":\"e\",\"force\":\"yes\"}", "field \"force\" must be a boolean"},
        {"{\"site\":\"e\",\"wait_ms\":1.5}", "field \"wait_ms\" must be an integer"},
        {"{\"site\":\"e\",\"list\":{}}", "field \"list\" must be an array"},
        {"{\"site\":\"e\",\"plan\":[]}", "field \"plan\" must be an object"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char why[TANDEM_ERRMSG_SIZE] = "";
        json_t *object = json_loads(cases[i].json, 0, NULL);
        assert_non_null(object);
        int rv = tandem_route_fields_check(object, fields, why);
        assert_int_equal(rv, cases[i].why[0] == '\0' ? 0 : -1);
        assert_string_equal(why, cases[i].why);
        json_decref(object);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_router_matching),
        cmocka_unit_test(test_router_prefix_decoding),
        cmocka_unit_test(test_router_forwards_when_follower),
        cmocka_unit_test(test_router_no_second_forward),
        cmocka_unit_test(test_router_failed_forward_audited),
        cmocka_unit_test(test_router_no_leader),
        cmocka_unit_test(test_router_fenced),
        cmocka_unit_test(test_router_anonymous_every_route),
        cmocka_unit_test(test_router_user_and_node),
        cmocka_unit_test(test_router_rate_limit),
        cmocka_unit_test(test_router_fields_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
