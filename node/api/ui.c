/* Route table of the web console (issue 15): GET /ui/ and its embedded files (node/ui/assets.h)
 * with strict security headers, and POST /v1/auth/logout, which clears the console's cookie. The
 * files hold no data: every figure comes from the JSON API the pages call with the cookie. */
#include <stdint.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "node/api/api.h"
#include "node/api/authz.h"
#include "node/node.h"
#include "node/ui/assets.h"
#include "replication/identity/roles.h"

/* Every page and file: no framing, no sniffing, scripts and styles from this node only. */
#define UI_SECURITY_HEADERS                                                                        \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "           \
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "              \
    "frame-ancestors 'none'\r\n"                                                                   \
    "X-Content-Type-Options: nosniff\r\n"                                                          \
    "X-Frame-Options: DENY\r\n"                                                                    \
    "Referrer-Policy: no-referrer\r\n"                                                             \
    "Cross-Origin-Opener-Policy: same-origin\r\n"

/* Files are revalidated on every load (they change with the binary): the ETag makes that a
 * 304 without a body. */
#define UI_CACHE_HEADER "Cache-Control: no-cache\r\n"

#define UI_HEADERS_BYTES_MAX 768

/* FNV-1a of the file: a strong validator of the embedded bytes. */
static uint64_t asset_hash(const struct tandem_ui_asset *a)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < a->len; i++) {
        h = (h ^ a->bytes[i]) * 1099511628211ull;
    }
    return h;
}

static bool asset_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > TANDEM_UI_ASSET_NAME_MAX || name[0] == '.') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
        if (!ok) {
            return false;
        }
    }
    return true;
}

static void ui_serve(struct tandem_node *node, struct tandem_http_request *r, const char *name)
{
    char headers[UI_HEADERS_BYTES_MAX], etag[32];
    const struct tandem_ui_asset *a = asset_name_ok(name) ? tandem_ui_asset_find(name) : NULL;
    const char *type = a == NULL ? NULL : tandem_ui_content_type(a->name);
    if (a == NULL || type == NULL) {
        tandem_route_error(node, r, 404, "no such console file: %s", name);
        return;
    }
    snprintf(etag, sizeof etag, "\"%016llx\"", (unsigned long long)asset_hash(a));
    snprintf(headers, sizeof headers, "%s%sETag: %s\r\n", UI_SECURITY_HEADERS, UI_CACHE_HEADER,
             etag);
    const char *match = tandem_http_request_header(r, "If-None-Match");
    if (match != NULL && strcmp(match, etag) == 0) {
        tandem_node_respond(node, r, 304, NULL, headers, NULL, 0);
        return;
    }
    tandem_node_respond(node, r, 200, type, headers, a->bytes, a->len);
}

static void route_ui_root(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    (void)p;
    tandem_node_respond(node, r, 308, NULL, "Location: /ui/\r\n" UI_SECURITY_HEADERS, NULL, 0);
}

static void route_ui_index(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    (void)p;
    ui_serve(node, r, "index.html");
}

/* The same page: login.js shows the form at this path. */
static void route_ui_login(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    (void)p;
    ui_serve(node, r, "index.html");
}

static void route_ui_asset(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    ui_serve(node, r, p);
}

/* Clears the cookie whoever asks (it only ever removes the caller's own). The token itself
 * stays valid until it expires, like every token: tokens are signed, not stored, and end early
 * only all at once for a user (disable, delete, a roles or password change). */
static void route_logout(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    (void)p;
    tandem_route_json(node, r, 200, TANDEM_AUTHZ_COOKIE_CLEAR, "{\"ok\":true}");
}

static const char *const via_names[] = {
    [TANDEM_PRINCIPAL_VIA_NONE] = "none",     [TANDEM_PRINCIPAL_VIA_CERT] = "certificate",
    [TANDEM_PRINCIPAL_VIA_TOKEN] = "token",   [TANDEM_PRINCIPAL_VIA_FORWARDED] = "forwarded",
    [TANDEM_PRINCIPAL_VIA_COOKIE] = "cookie",
};

/* Who the caller is, for the console to show only what the caller may use (the API still
 * checks every request): {"user","kind","via","roles":[...],"site","node","node_site"}. */
static void route_session(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    (void)p;
    const struct tandem_principal *who = &r->principal;
    char roles[TANDEM_ROLES_TEXT_MAX];
    tandem_roles_format(who->roles, roles, sizeof roles);
    json_t *list = json_array();
    for (char *save = NULL, *role = strtok_r(roles, ",", &save); role != NULL && list != NULL;
         role = strtok_r(NULL, ",", &save)) {
        json_array_append_new(list, json_string(role));
    }
    unsigned via = (unsigned)who->via;
    tandem_route_jansson(
        node, r, 200,
        json_pack("{s:s,s:s,s:s,s:o*,s:s,s:s,s:s}", "user", who->name, "kind",
                  who->kind == TANDEM_PRINCIPAL_NODE ? "node" : "user", "via",
                  via < sizeof via_names / sizeof via_names[0] ? via_names[via] : "none", "roles",
                  list, "site", who->site, "node", node->self.name, "node_site", node->self.site));
}

/* X(id, method, pattern, flags, perm, handler): ids are metrics labels, in this order; the
 * exact paths come before the prefix that would match them. */
#define UI_ROUTES(X)                                                                               \
    X(ui_root, HTTP_GET, "/ui", TANDEM_ROUTE_LOCAL, TANDEM_PERM_PUBLIC, route_ui_root)             \
    X(ui_index, HTTP_GET, "/ui/", TANDEM_ROUTE_LOCAL, TANDEM_PERM_PUBLIC, route_ui_index)          \
    X(ui_login, HTTP_GET, "/ui/login", TANDEM_ROUTE_LOCAL, TANDEM_PERM_PUBLIC, route_ui_login)     \
    X(ui_asset, HTTP_GET, "/ui/", TANDEM_ROUTE_LOCAL | TANDEM_ROUTE_PREFIX, TANDEM_PERM_PUBLIC,    \
      route_ui_asset)                                                                              \
    X(auth_logout, HTTP_POST, "/v1/auth/logout", TANDEM_ROUTE_LOCAL, TANDEM_PERM_PUBLIC,           \
      route_logout)                                                                                \
    X(auth_session, HTTP_GET, "/v1/auth/session", TANDEM_ROUTE_LOCAL, TANDEM_PERM_SELF,            \
      route_session)

TANDEM_ROUTE_TABLE(tandem_ui_route_table, UI_ROUTES);
