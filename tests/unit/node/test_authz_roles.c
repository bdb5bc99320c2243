/* Unit tests of issue 13's authorisation: every route names a permission, principal resolution
 * (user records, bootstrap admin, nodes, insecure) and the default-deny decisions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "node/api/api.h"
#include "node/api/authz.h"
#include "storage/error.h"

static const struct tandem_route_table *const tables[] = {
    &tandem_cluster_route_table, &tandem_kv_route_table,        &tandem_domain_route_table,
    &tandem_bcp_route_table,     &tandem_rebalance_route_table, &tandem_quarantine_route_table,
    &tandem_events_route_table,  &tandem_users_route_table,     &tandem_ui_route_table,
};

/* Every row of every table names a permission; prints the route -> permission table. */
static void test_every_route_declared(void **state)
{
    (void)state;
    unsigned routes = 0;
    printf("| route | method | path | permission |\n|---|---|---|---|\n");
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        for (unsigned i = 0; i < tables[t]->count; i++) {
            const struct tandem_route *route = &tables[t]->routes[i];
            printf("| %s | %s | %s%s | %s |\n", route->name,
                   http_method_str((enum http_method)route->method), route->pattern,
                   (route->flags & TANDEM_ROUTE_PREFIX) != 0 ? "*" : "",
                   tandem_perm_name(route->perm));
            if (route->perm <= TANDEM_PERM_UNDECLARED || route->perm >= TANDEM_PERM_COUNT) {
                fail_msg("route %s declares no permission", route->name);
            }
            /* Only /v1/node/ routes are node-only, and every one of them is. */
            bool node_path = strncmp(route->pattern, TANDEM_AUTHZ_NODE_PREFIX,
                                     strlen(TANDEM_AUTHZ_NODE_PREFIX)) == 0;
            assert_int_equal(node_path, route->perm == TANDEM_PERM_NODE);
            routes++;
        }
    }
    assert_true(routes > 40);
}

/* The stub user database: op (operator at east), view (viewer), gone (disabled); "broken"
 * fails the lookup. */
static int stub_user_get(void *arg, const char *name, struct tandem_user *out, char *why)
{
    (void)arg;
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    if (strcmp(name, "broken") == 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "user records: disk on fire");
        return TANDEM_STORE;
    }
    if (strcmp(name, "op") == 0 || strcmp(name, "gone") == 0) {
        out->roles = TANDEM_ROLE_OPERATOR;
        snprintf(out->site, sizeof out->site, "east");
        out->disabled = strcmp(name, "gone") == 0;
        return TANDEM_OK;
    }
    if (strcmp(name, "view") == 0) {
        out->roles = TANDEM_ROLE_VIEWER;
        return TANDEM_OK;
    }
    return TANDEM_NOTFOUND;
}

/* The stub token check: "tok-op" is op's token, "tok-admin-cert"... anything else is refused. */
static int stub_token(void *arg, const char *token, struct tandem_user *out, char *why)
{
    if (strcmp(token, "tok-op") == 0) {
        return stub_user_get(arg, "op", out, why);
    }
    if (strcmp(token, "tok-gone") == 0) {
        return stub_user_get(arg, "gone", out, why);
    }
    snprintf(why, TANDEM_ERRMSG_SIZE, "token expired");
    return TANDEM_NOTFOUND;
}

static const struct tandem_authz_users stub_users = {stub_user_get, stub_token, NULL};

static int resolve(bool tls, enum tandem_tls_peer_kind kind, const char *name,
                   struct tandem_principal *p, char *why)
{
    struct tandem_http_request r;
    struct tandem_tls_peer id = {.kind = kind};
    memset(&r, 0, sizeof r);
    snprintf(id.name, sizeof id.name, "%s", name);
    why[0] = '\0';
    return tandem_authz_principal(tls, &r, &id, &stub_users, p, why);
}

static void test_resolution(void **state)
{
    struct tandem_principal p;
    char why[TANDEM_ERRMSG_SIZE];
    (void)state;
    assert_int_equal(resolve(true, TANDEM_TLS_PEER_USER, "op", &p, why), 0);
    assert_int_equal(p.kind, TANDEM_PRINCIPAL_USER);
    assert_int_equal(p.via, TANDEM_PRINCIPAL_VIA_CERT);
    assert_int_equal(p.roles, TANDEM_ROLE_OPERATOR);
    assert_string_equal(p.site, "east");
    assert_string_equal(p.name, "op");
    assert_false(p.bootstrap);
    assert_int_equal(resolve(true, TANDEM_TLS_PEER_USER, "ghost", &p, why), 403);
    assert_string_equal(why, "no user record for certificate ghost");
    assert_int_equal(resolve(true, TANDEM_TLS_PEER_USER, "gone", &p, why), 403);
    assert_string_equal(why, "user gone is disabled");
    assert_int_equal(resolve(true, TANDEM_TLS_PEER_USER, "broken", &p, why), 500);
    assert_string_equal(why, "user records: disk on fire");
    assert_int_equal(resolve(true, TANDEM_TLS_PEER_USER, "admin", &p, why), 0);
    assert_true(p.bootstrap);
    assert_int_equal(p.roles, TANDEM_ROLES_ALL);
    assert_int_equal(resolve(true, TANDEM_TLS_PEER_NODE, "east-1", &p, why), 0);
    assert_int_equal(p.kind, TANDEM_PRINCIPAL_NODE);
    assert_int_equal(p.roles & TANDEM_ROLE_PERSONAL_DATA, 0);
    assert_int_equal(resolve(true, TANDEM_TLS_PEER_NONE, "", &p, why), 0);
    assert_int_equal(p.kind, TANDEM_PRINCIPAL_ANONYMOUS);
    assert_int_equal(p.roles, 0);
    assert_int_equal(resolve(false, TANDEM_TLS_PEER_NONE, "", &p, why), 0);
    assert_true(p.insecure);
    assert_int_equal(p.roles, TANDEM_ROLES_ALL);
}

static void test_decisions(void **state)
{
    struct tandem_principal op, view, admin, node, anon, insecure;
    char why[TANDEM_ERRMSG_SIZE];
    (void)state;
    resolve(true, TANDEM_TLS_PEER_USER, "op", &op, why);
    resolve(true, TANDEM_TLS_PEER_USER, "view", &view, why);
    resolve(true, TANDEM_TLS_PEER_USER, "admin", &admin, why);
    resolve(true, TANDEM_TLS_PEER_NODE, "west-1", &node, why);
    resolve(true, TANDEM_TLS_PEER_NONE, "", &anon, why);
    resolve(false, TANDEM_TLS_PEER_NONE, "", &insecure, why);
    assert_int_equal(tandem_authz_permit(&view, TANDEM_PERM_DOMAIN_WRITE, why), 403);
    assert_string_equal(why, "permission domain-write required (roles: operator)");
    assert_int_equal(tandem_authz_permit(&op, TANDEM_PERM_DOMAIN_WRITE, why), 0);
    assert_int_equal(tandem_authz_permit(&op, TANDEM_PERM_READ, why), 0);
    assert_int_equal(tandem_authz_permit(&op, TANDEM_PERM_BCP, why), 403);
    assert_string_equal(why, "permission bcp required (roles: bcp-admin)");
    assert_int_equal(tandem_authz_permit(&admin, TANDEM_PERM_NODE, why), 403);
    assert_string_equal(why, "permission node required (roles: node certificates)");
    assert_int_equal(tandem_authz_permit(&admin, TANDEM_PERM_UNDECLARED, why), 403);
    assert_string_equal(why, "permission undeclared required (roles: none)");
    assert_int_equal(tandem_authz_permit(&admin, 999, why), 403);
    assert_true(tandem_principal_may(&admin, TANDEM_PERM_PERSONAL_DATA));
    assert_false(tandem_principal_may(&node, TANDEM_PERM_PERSONAL_DATA));
    assert_false(tandem_principal_may(&op, TANDEM_PERM_PERSONAL_DATA));
    assert_true(tandem_principal_may(&node, TANDEM_PERM_NODE));
    assert_true(tandem_principal_may(&node, TANDEM_PERM_BCP));
    assert_true(tandem_principal_may(&anon, TANDEM_PERM_PUBLIC));
    assert_false(tandem_principal_may(&anon, TANDEM_PERM_READ));
    assert_false(tandem_principal_may(&anon, TANDEM_PERM_SELF));
    assert_true(tandem_principal_may(&view, TANDEM_PERM_SELF));
    assert_true(tandem_principal_may(&insecure, TANDEM_PERM_NODE));
    assert_true(tandem_principal_may(&insecure, TANDEM_PERM_PERSONAL_DATA));
    /* The own-site rule binds a user holding the permission through the operator role only. */
    assert_true(tandem_principal_site_bound(&op, TANDEM_PERM_DOMAIN_WRITE));
    assert_false(tandem_principal_site_bound(&view, TANDEM_PERM_READ));
    assert_false(tandem_principal_site_bound(&view, TANDEM_PERM_DOMAIN_WRITE));
    assert_false(tandem_principal_site_bound(&admin, TANDEM_PERM_DOMAIN_WRITE));
    assert_false(tandem_principal_site_bound(&node, TANDEM_PERM_DOMAIN_WRITE));
    assert_false(tandem_principal_site_bound(&insecure, TANDEM_PERM_DOMAIN_WRITE));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route_declared),
        cmocka_unit_test(test_resolution),
        cmocka_unit_test(test_decisions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
