/* Unit tests for the API's authorisation decisions (node/api/authz.h) on requests built by hand
 * with the TLS peer set: anonymous, user and node certificates, the /v1/node/ routes, forwarded
 * identities, and the insecure mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "node/api/authz.h"
#include "node/http/forward.h"
#include "storage/error.h"

#define ANONYMOUS "authentication required: present a client certificate of the cluster CA"
#define NOT_NODE  "forwarded identity from a peer that is not a node"

struct built {
    struct tandem_http_request r;
    char path[128];
};

static struct built built;

/* A request for method and path from a peer of kind named name, with header lines given as
 * name, value, ..., NULL. */
static struct tandem_http_request *request(int method, const char *path,
                                           enum tandem_tls_peer_kind kind, const char *name, ...)
{
    struct tandem_http_request *r = &built.r;
    tandem_http_head_free(&r->head);
    memset(r, 0, sizeof *r);
    snprintf(built.path, sizeof built.path, "%s", path);
    r->method = method;
    r->path = built.path;
    r->query = "";
    r->peer.kind = kind;
    snprintf(r->peer.name, sizeof r->peer.name, "%s", name);
    tandem_http_head_start(&r->head, 16384, false);
    assert_int_equal(tandem_http_head_lead(&r->head, path, strlen(path)), 0);
    va_list args;
    va_start(args, name);
    for (const char *field = va_arg(args, const char *); field != NULL;
         field = va_arg(args, const char *)) {
        const char *value = va_arg(args, const char *);
        assert_int_equal(tandem_http_head_field(&r->head, field, strlen(field)), 0);
        assert_int_equal(tandem_http_head_value(&r->head, value, strlen(value)), 0);
    }
    va_end(args);
    assert_int_equal(tandem_http_head_end(&r->head), 0);
    return r;
}

/* tandem_authz_check with TLS on: the status, and why when it is not 0. */
static int check(const struct tandem_http_request *r, struct tandem_tls_peer *identity, char *why)
{
    why[0] = '\0';
    return tandem_authz_check(true, r, identity, why);
}

/* r is allowed, acting as kind name. */
static void assert_acts_as(const struct tandem_http_request *r, enum tandem_tls_peer_kind kind,
                           const char *name)
{
    struct tandem_tls_peer id;
    char why[TANDEM_ERRMSG_SIZE];
    assert_int_equal(check(r, &id, why), 0);
    assert_int_equal(id.kind, kind);
    assert_string_equal(id.name, name);
}

static void test_insecure_allows_everything(void **state)
{
    (void)state;
    struct tandem_tls_peer id;
    char why[TANDEM_ERRMSG_SIZE];
    const char *paths[] = {"/v1/kv/a", "/v1/node/reseed", "/metrics", "/nope"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        struct tandem_http_request *r = request(HTTP_POST, paths[i], TANDEM_TLS_PEER_NONE, "",
                                                TANDEM_FORWARDED_USER_HEADER, "mallory", NULL);
        assert_int_equal(tandem_authz_check(false, r, &id, why), 0);
        assert_int_equal(id.kind, TANDEM_TLS_PEER_NONE);
    }
}

static void test_anonymous(void **state)
{
    (void)state;
    struct tandem_tls_peer id;
    char why[TANDEM_ERRMSG_SIZE];
    /* Health only. */
    assert_int_equal(check(request(HTTP_GET, "/healthz", TANDEM_TLS_PEER_NONE, "", NULL), &id, why),
                     0);
    assert_int_equal(
        check(request(HTTP_HEAD, "/healthz", TANDEM_TLS_PEER_NONE, "", NULL), &id, why), 0);
    assert_int_equal(check(request(HTTP_GET, "/readyz", TANDEM_TLS_PEER_NONE, "", NULL), &id, why),
                     0);
    assert_int_equal(id.kind, TANDEM_TLS_PEER_NONE);
    const struct {
        int method;
        const char *path;
    } refused[] = {
        {HTTP_POST, "/healthz"},        {HTTP_DELETE, "/readyz"}, {HTTP_GET, "/healthz/x"},
        {HTTP_GET, "/metrics"},         {HTTP_GET, "/v1/status"}, {HTTP_PUT, "/v1/kv/a"},
        {HTTP_POST, "/v1/node/reseed"}, {HTTP_GET, "/nope"},      {HTTP_POST, "/v1/bcp/invoke"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        struct tandem_http_request *r =
            request(refused[i].method, refused[i].path, TANDEM_TLS_PEER_NONE, "", NULL);
        assert_int_equal(check(r, &id, why), 401);
        assert_string_equal(why, ANONYMOUS);
    }
    /* A forwarded identity does not stand in for a credential. */
    struct tandem_http_request *r =
        request(HTTP_GET, "/v1/status", TANDEM_TLS_PEER_NONE, "", TANDEM_FORWARDED_USER_HEADER,
                "admin", TANDEM_FORWARDED_KIND_HEADER, "user", NULL);
    assert_int_equal(check(r, &id, why), 401);
}

static void test_user(void **state)
{
    (void)state;
    struct tandem_tls_peer id;
    char why[TANDEM_ERRMSG_SIZE];
    assert_acts_as(request(HTTP_POST, "/v1/bcp/invoke", TANDEM_TLS_PEER_USER, "alice", NULL),
                   TANDEM_TLS_PEER_USER, "alice");
    assert_acts_as(request(HTTP_GET, "/metrics", TANDEM_TLS_PEER_USER, "alice", NULL),
                   TANDEM_TLS_PEER_USER, "alice");
    struct tandem_http_request *r;
    /* Every method under /v1/node/. */
    const int methods[] = {HTTP_GET, HTTP_POST, HTTP_PUT, HTTP_DELETE, HTTP_HEAD};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        r = request(methods[i], "/v1/node/epoch", TANDEM_TLS_PEER_USER, "alice", NULL);
        assert_int_equal(check(r, &id, why), 403);
        assert_string_equal(why, "/v1/node/* answers only node certificates, not user alice");
    }
    r = request(HTTP_GET, "/v1/node", TANDEM_TLS_PEER_USER, "alice", NULL);
    assert_int_equal(check(r, &id, why), 403);
    r = request(HTTP_GET, "/v1/nodes", TANDEM_TLS_PEER_USER, "alice", NULL); /* not a node route */
    assert_int_equal(check(r, &id, why), 0);
}

static void test_forwarded_from_user_refused(void **state)
{
    (void)state;
    struct tandem_tls_peer id;
    char why[TANDEM_ERRMSG_SIZE];
    const char *headers[][4] = {
        {TANDEM_FORWARDED_USER_HEADER, "admin", TANDEM_FORWARDED_KIND_HEADER, "user"},
        {TANDEM_FORWARDED_USER_HEADER, "east-1", TANDEM_FORWARDED_KIND_HEADER, "node"},
        {TANDEM_FORWARDED_KIND_HEADER, "node", "X-Other", "1"},
        {TANDEM_FORWARDED_HEADER, "east-1", "X-Other", "1"},
        {TANDEM_FORWARDED_SOURCE_HEADER, "203.0.113.9", "X-Other", "1"},
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        struct tandem_http_request *r =
            request(HTTP_PUT, "/v1/kv/a", TANDEM_TLS_PEER_USER, "alice", headers[i][0],
                    headers[i][1], headers[i][2], headers[i][3], NULL);
        assert_int_equal(check(r, &id, why), 403);
        assert_string_equal(why, NOT_NODE);
    }
}

static void test_node(void **state)
{
    (void)state;
    struct tandem_tls_peer id;
    char why[TANDEM_ERRMSG_SIZE];
    assert_acts_as(request(HTTP_POST, "/v1/node/reseed", TANDEM_TLS_PEER_NODE, "west-1", NULL),
                   TANDEM_TLS_PEER_NODE, "west-1");
    /* Forwarding a user: the request acts as that user. */
    struct tandem_http_request *r = request(
        HTTP_PUT, "/v1/kv/a", TANDEM_TLS_PEER_NODE, "west-1", TANDEM_FORWARDED_HEADER, "west-1",
        TANDEM_FORWARDED_USER_HEADER, "Jane Doe", TANDEM_FORWARDED_KIND_HEADER, "user", NULL);
    assert_acts_as(r, TANDEM_TLS_PEER_USER, "Jane Doe");
    /* Forwarding for another node (a relayed BCP call). */
    r = request(HTTP_POST, "/v1/node/epoch", TANDEM_TLS_PEER_NODE, "west-1",
                TANDEM_FORWARDED_USER_HEADER, "east-2", TANDEM_FORWARDED_KIND_HEADER, "node", NULL);
    assert_acts_as(r, TANDEM_TLS_PEER_NODE, "east-2");
    /* A node relaying a user does not lend it its power over /v1/node/. */
    r = request(HTTP_POST, "/v1/node/reseed", TANDEM_TLS_PEER_NODE, "west-1",
                TANDEM_FORWARDED_USER_HEADER, "alice", TANDEM_FORWARDED_KIND_HEADER, "user", NULL);
    assert_int_equal(check(r, &id, why), 403);
    assert_string_equal(why, "/v1/node/* answers only node certificates, not user alice");
}

/* The client's address a node forwarded for is the request's source; from anyone else, or
 * malformed, it is not. */
static void test_forwarded_source(void **state)
{
    (void)state;
    struct tandem_tls_peer id;
    char why[TANDEM_ERRMSG_SIZE], source[TANDEM_HTTP_SOURCE_BYTES_MAX];
    const char *ok[] = {"203.0.113.9", "2001:db8::7", "127.0.0.99"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct tandem_http_request *r =
            request(HTTP_POST, "/v1/login", TANDEM_TLS_PEER_NODE, "west-1", TANDEM_FORWARDED_HEADER,
                    "west-1", TANDEM_FORWARDED_SOURCE_HEADER, ok[i], NULL);
        assert_int_equal(check(r, &id, why), 0);
        tandem_http_request_source(r, source, sizeof source);
        assert_string_equal(source, ok[i]);
    }
    const char *bad[] = {"", "east-1", "203.0.113.9, 10.0.0.1", "203.0.113.9:80", "::g"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct tandem_http_request *r =
            request(HTTP_POST, "/v1/login", TANDEM_TLS_PEER_NODE, "west-1",
                    TANDEM_FORWARDED_SOURCE_HEADER, bad[i], NULL);
        assert_int_equal(check(r, &id, why), 400);
        assert_string_equal(why, "X-Tandem-Forwarded-Source must be an IPv4 or IPv6 address");
        tandem_http_request_source(r, source, sizeof source);
        assert_string_equal(source, "?"); /* the connection's own address (none here) */
    }
    /* A user's word for its address is not taken. */
    struct tandem_http_request *r = request(HTTP_POST, "/v1/login", TANDEM_TLS_PEER_USER, "alice",
                                            TANDEM_FORWARDED_SOURCE_HEADER, "203.0.113.9", NULL);
    tandem_http_request_source(r, source, sizeof source);
    assert_string_equal(source, "?");
}

static void test_forwarded_malformed(void **state)
{
    (void)state;
    struct tandem_tls_peer id;
    char why[TANDEM_ERRMSG_SIZE];
    char long_name[TANDEM_TLS_NAME_MAX + 2];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    const struct {
        const char *user, *kind, *why;
    } cases[] = {
        {"alice", NULL, "X-Tandem-Forwarded-Kind must be user or node"},
        {"alice", "admin", "X-Tandem-Forwarded-Kind must be user or node"},
        {"alice", "", "X-Tandem-Forwarded-Kind must be user or node"},
        {NULL, "user", "X-Tandem-Forwarded-User must be a certificate name of 1 to 63 bytes"},
        {"", "user", "X-Tandem-Forwarded-User must be a certificate name of 1 to 63 bytes"},
        {long_name, "user", "X-Tandem-Forwarded-User must be a certificate name of 1 to 63 bytes"},
        {"a\tb", "user", "X-Tandem-Forwarded-User must be a certificate name of 1 to 63 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct tandem_http_request *r =
            request(HTTP_GET, "/v1/status", TANDEM_TLS_PEER_NODE, "west-1",
                    cases[i].user ? TANDEM_FORWARDED_USER_HEADER : "X-Other",
                    cases[i].user ? cases[i].user : "1",
                    cases[i].kind ? TANDEM_FORWARDED_KIND_HEADER : "X-Other2",
                    cases[i].kind ? cases[i].kind : "1", NULL);
        assert_int_equal(check(r, &id, why), 400);
        assert_string_equal(why, cases[i].why);
    }
}

/* Issue 15: the console's files, login and logout need no credential; a cookie counts as one. */
static void test_console_anonymous(void **state)
{
    (void)state;
    struct tandem_tls_peer id;
    char why[TANDEM_ERRMSG_SIZE];
    const struct {
        int method;
        const char *path;
        int status;
    } cases[] = {
        {HTTP_GET, "/ui", 0},
        {HTTP_GET, "/ui/", 0},
        {HTTP_HEAD, "/ui/app.js", 0},
        {HTTP_GET, "/ui/login", 0},
        {HTTP_POST, "/v1/auth/login", 0},
        {HTTP_POST, "/v1/auth/logout", 0},
        {HTTP_POST, "/ui/", 401},
        {HTTP_GET, "/uix", 401},
        {HTTP_GET, "/v1/auth/login", 401},
        {HTTP_GET, "/v1/auth/session", 401},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct tandem_http_request *r =
            request(cases[i].method, cases[i].path, TANDEM_TLS_PEER_NONE, "", NULL);
        assert_int_equal(check(r, &id, why), cases[i].status);
    }
    /* A login for the cookie only from the console's script (login CSRF). */
    struct tandem_http_request *r =
        request(HTTP_POST, "/v1/auth/login", TANDEM_TLS_PEER_NONE, "", NULL);
    built.r.query = "cookie=1";
    assert_int_equal(check(r, &id, why), 403);
    assert_non_null(strstr(why, "login for the console's cookie must carry X-Tandem-UI: 1"));
    r = request(HTTP_POST, "/v1/auth/login", TANDEM_TLS_PEER_NONE, "", "X-Tandem-UI", "1", NULL);
    built.r.query = "cookie=1";
    assert_int_equal(check(r, &id, why), 0);
    r = request(HTTP_POST, "/v1/auth/login", TANDEM_TLS_PEER_NODE, "east-2", NULL); /* forwarded */
    built.r.query = "cookie=1";
    assert_int_equal(check(r, &id, why), 0);
    r = request(HTTP_GET, "/v1/status", TANDEM_TLS_PEER_NONE, "", "Cookie",
                "a=1; tandem_token=t.x; b=2", NULL);
    assert_int_equal(check(r, &id, why), 0);
    r = request(HTTP_GET, "/v1/status", TANDEM_TLS_PEER_NONE, "", "Cookie",
                "xtandem_token=t.x; tandem_token=", NULL);
    assert_int_equal(check(r, &id, why), 401);
}

static void test_console_token(void **state)
{
    (void)state;
    char cookie[TANDEM_AUTHZ_COOKIE_HEADER_MAX];
    bool from_cookie;
    struct tandem_http_request *r =
        request(HTTP_GET, "/v1/status", TANDEM_TLS_PEER_NONE, "", "Cookie",
                "theme=dark;tandem_token=abc.def ; x=1", NULL);
    assert_string_equal(tandem_authz_token(r, cookie, &from_cookie), "abc.def");
    assert_true(from_cookie);
    /* The Authorization header wins over the cookie. */
    r = request(HTTP_GET, "/v1/status", TANDEM_TLS_PEER_NONE, "", "Cookie", "tandem_token=c",
                "Authorization", "Bearer b", NULL);
    assert_string_equal(tandem_authz_token(r, cookie, &from_cookie), "b");
    assert_false(from_cookie);
    r = request(HTTP_GET, "/v1/status", TANDEM_TLS_PEER_NONE, "", "Cookie", "other=1", NULL);
    assert_null(tandem_authz_token(r, cookie, &from_cookie));
    char header[TANDEM_AUTHZ_COOKIE_HEADER_MAX];
    assert_int_equal(tandem_authz_cookie_header("abc.def", 3600, header, sizeof header), 0);
    assert_string_equal(header, "Set-Cookie: tandem_token=abc.def; HttpOnly; Secure; "
                                "SameSite=Strict; Path=/; Max-Age=3600\r\n");
    assert_int_equal(tandem_authz_cookie_header("abc.def", 3600, header, 20), -1);
}

static int stub_get(void *arg, const char *name, struct tandem_user *out, char *why)
{
    (void)arg;
    (void)why;
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    out->roles = TANDEM_ROLE_BCP_ADMIN;
    return TANDEM_OK;
}

static int stub_token(void *arg, const char *token, struct tandem_user *out, char *why)
{
    if (strcmp(token, "good") == 0) {
        return stub_get(arg, "bea", out, why);
    }
    snprintf(why, TANDEM_ERRMSG_SIZE, "token expired");
    return TANDEM_NOTFOUND;
}

/* A cookie write needs X-Tandem-UI: 1 (CSRF); reads do not; a bearer token never does. */
static void test_console_csrf(void **state)
{
    (void)state;
    const struct tandem_authz_users users = {stub_get, stub_token, NULL};
    struct tandem_principal p;
    struct tandem_tls_peer none = {.kind = TANDEM_TLS_PEER_NONE};
    char why[TANDEM_ERRMSG_SIZE];
    struct tandem_http_request *r = request(HTTP_POST, "/v1/bcp/invoke", TANDEM_TLS_PEER_NONE, "",
                                            "Cookie", "tandem_token=good", NULL);
    assert_int_equal(tandem_authz_principal(true, r, &none, &users, &p, why), 403);
    assert_non_null(strstr(why, "must carry X-Tandem-UI: 1"));
    assert_string_equal(p.name, "bea"); /* the refusal is audited as bea's */
    assert_int_equal(p.via, TANDEM_PRINCIPAL_VIA_COOKIE);
    r = request(HTTP_POST, "/v1/bcp/invoke", TANDEM_TLS_PEER_NONE, "", "Cookie",
                "tandem_token=good", "X-Tandem-UI", "yes", NULL);
    assert_int_equal(tandem_authz_principal(true, r, &none, &users, &p, why), 403);
    r = request(HTTP_POST, "/v1/bcp/invoke", TANDEM_TLS_PEER_NONE, "", "Cookie",
                "tandem_token=good", "X-Tandem-UI", "1", NULL);
    assert_int_equal(tandem_authz_principal(true, r, &none, &users, &p, why), 0);
    assert_int_equal(p.via, TANDEM_PRINCIPAL_VIA_COOKIE);
    assert_int_equal(p.roles, TANDEM_ROLE_BCP_ADMIN);
    r = request(HTTP_GET, "/v1/bcp/status", TANDEM_TLS_PEER_NONE, "", "Cookie", "tandem_token=good",
                NULL);
    assert_int_equal(tandem_authz_principal(true, r, &none, &users, &p, why), 0);
    r = request(HTTP_POST, "/v1/bcp/invoke", TANDEM_TLS_PEER_NONE, "", "Authorization",
                "Bearer good", NULL);
    assert_int_equal(tandem_authz_principal(true, r, &none, &users, &p, why), 0);
    assert_int_equal(p.via, TANDEM_PRINCIPAL_VIA_TOKEN);
    r = request(HTTP_GET, "/v1/bcp/status", TANDEM_TLS_PEER_NONE, "", "Cookie", "tandem_token=bad",
                NULL);
    assert_int_equal(tandem_authz_principal(true, r, &none, &users, &p, why), 401);
}

static int teardown(void **state)
{
    (void)state;
    tandem_http_head_free(&built.r.head);
    memset(&built, 0, sizeof built);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_insecure_allows_everything, teardown),
        cmocka_unit_test_teardown(test_anonymous, teardown),
        cmocka_unit_test_teardown(test_user, teardown),
        cmocka_unit_test_teardown(test_forwarded_from_user_refused, teardown),
        cmocka_unit_test_teardown(test_node, teardown),
        cmocka_unit_test_teardown(test_forwarded_source, teardown),
        cmocka_unit_test_teardown(test_forwarded_malformed, teardown),
        cmocka_unit_test_teardown(test_console_anonymous, teardown),
        cmocka_unit_test_teardown(test_console_token, teardown),
        cmocka_unit_test_teardown(test_console_csrf, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
