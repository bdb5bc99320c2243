/* The API's authorisation decisions on the TLS peer of a request (node/api/authz.h). */
#include "node/api/authz.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "node/http/forward.h"
#include "replication/domain/domain.h" /* TANDEM_ACTOR_DEFAULT */
#include "storage/error.h"

/* What anyone may ask without a credential: health, the console's files (they hold no data:
 * the login page must load before any login) and the login and logout that trade a password
 * for a token or drop the console's cookie. */
static bool anonymous_route(const struct tandem_http_request *r)
{
    if (r->method == HTTP_POST) {
        return strcmp(r->path, "/v1/auth/login") == 0 || strcmp(r->path, "/v1/auth/logout") == 0;
    }
    return (r->method == HTTP_GET || r->method == HTTP_HEAD) &&
           (strcmp(r->path, "/healthz") == 0 || strcmp(r->path, "/readyz") == 0 ||
            strcmp(r->path, "/ui") == 0 || strncmp(r->path, "/ui/", 4) == 0);
}

static bool has_token(const struct tandem_http_request *r)
{
    char cookie[TANDEM_AUTHZ_COOKIE_HEADER_MAX];
    bool from_cookie;
    return tandem_authz_token(r, cookie, &from_cookie) != NULL;
}

static bool ui_header(const struct tandem_http_request *r)
{
    const char *ui = tandem_http_request_header(r, TANDEM_AUTHZ_UI_HEADER);
    return ui != NULL && strcmp(ui, "1") == 0;
}

/* A login asking for the cookie from a page that is not the console's (login CSRF: a foreign
 * page logging the browser in as someone else). Checked where the request arrives: a node that
 * forwards it to the leader checked it (and forwards no such header). */
static bool cookie_login_forged(const struct tandem_http_request *r)
{
    char value[8];
    return r->method == HTTP_POST && r->peer.kind != TANDEM_TLS_PEER_NODE &&
           strcmp(r->path, "/v1/auth/login") == 0 &&
           tandem_http_query_get(r->query, "cookie", value, sizeof value) == 1 && !ui_header(r);
}

static bool node_route(const struct tandem_http_request *r)
{
    size_t len = strlen(TANDEM_AUTHZ_NODE_PREFIX);
    return strncmp(r->path, TANDEM_AUTHZ_NODE_PREFIX, len) == 0 || strcmp(r->path, "/v1/node") == 0;
}

/* A certificate name as the TLS module reports it: 1..TANDEM_TLS_NAME_MAX bytes, no control
 * characters. */
static bool forwarded_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > TANDEM_TLS_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch < 0x20 || ch == 0x7f) {
            return false;
        }
    }
    return true;
}

/* The identity a node forwarded (both headers, or neither). Returns 0, or 400 with why. */
static int forwarded_identity(const char *user, const char *kind, struct tandem_tls_peer *identity,
                              char *why)
{
    if (user == NULL || !forwarded_name_ok(user)) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "%s must be a certificate name of 1 to %d bytes",
                 TANDEM_FORWARDED_USER_HEADER, TANDEM_TLS_NAME_MAX);
        return 400;
    }
    if (kind == NULL || (strcmp(kind, "user") != 0 && strcmp(kind, "node") != 0)) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "%s must be user or node", TANDEM_FORWARDED_KIND_HEADER);
        return 400;
    }
    identity->kind = strcmp(kind, "node") == 0 ? TANDEM_TLS_PEER_NODE : TANDEM_TLS_PEER_USER;
    snprintf(identity->name, sizeof identity->name, "%s", user);
    return 0;
}

int tandem_authz_check(bool tls_required, const struct tandem_http_request *r,
                       struct tandem_tls_peer *identity, char *why)
{
    *identity = r->peer;
    if (!tls_required) {
        return 0;
    }
    if (cookie_login_forged(r)) {
        snprintf(why, TANDEM_ERRMSG_SIZE,
                 "a login for the console's cookie must carry %s: 1 (cross-site request refused)",
                 TANDEM_AUTHZ_UI_HEADER);
        return 403;
    }
    if (r->peer.kind == TANDEM_TLS_PEER_NONE) {
        if (anonymous_route(r) || has_token(r)) {
            return 0;
        }
        snprintf(why, TANDEM_ERRMSG_SIZE,
                 "authentication required: present a client certificate of the cluster CA");
        return 401;
    }
    const char *user = tandem_http_request_header(r, TANDEM_FORWARDED_USER_HEADER);
    const char *kind = tandem_http_request_header(r, TANDEM_FORWARDED_KIND_HEADER);
    bool forwarded = user != NULL || kind != NULL;
    /* X-Tandem-Forwarded-By steers the leader check and the actor's site, and
     * X-Tandem-Forwarded-Source the audit's source: a node's word too. */
    const char *source = tandem_http_request_header(r, TANDEM_FORWARDED_SOURCE_HEADER);
    if ((forwarded || source != NULL ||
         tandem_http_request_header(r, TANDEM_FORWARDED_HEADER) != NULL) &&
        r->peer.kind != TANDEM_TLS_PEER_NODE) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "forwarded identity from a peer that is not a node");
        return 403;
    }
    if (source != NULL && !tandem_http_source_text_ok(source)) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "%s must be an IPv4 or IPv6 address",
                 TANDEM_FORWARDED_SOURCE_HEADER);
        return 400;
    }
    if (forwarded) {
        int status = forwarded_identity(user, kind, identity, why);
        if (status != 0) {
            return status;
        }
    }
    /* Only a node acting for itself: a node relaying a user's request does not lend it its
     * power over /v1/node/. */
    if (node_route(r) && identity->kind != TANDEM_TLS_PEER_NODE) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "%s* answers only node certificates, not user %s",
                 TANDEM_AUTHZ_NODE_PREFIX, identity->name);
        return 403;
    }
    return 0;
}

/* ---- roles and permissions (issue 13) ---- */

#define PERM_NAME(id, name, roles) name,
static const char *const perm_names[] = {TANDEM_PERMS(PERM_NAME)};
#undef PERM_NAME
#define PERM_ROLES(id, name, roles) (uint32_t)(roles),
static const uint32_t perm_roles[] = {TANDEM_PERMS(PERM_ROLES)};
#undef PERM_ROLES

const char *tandem_perm_name(int perm)
{
    return perm > 0 && perm < TANDEM_PERM_COUNT ? perm_names[perm]
                                                : perm_names[TANDEM_PERM_UNDECLARED];
}

void tandem_perm_roles_text(int perm, char *out, size_t size)
{
    if (perm == TANDEM_PERM_NODE) {
        snprintf(out, size, "node certificates");
        return;
    }
    uint32_t roles = perm > 0 && perm < TANDEM_PERM_COUNT ? perm_roles[perm] : 0;
    char text[TANDEM_ROLES_TEXT_MAX];
    tandem_roles_format(roles, text, sizeof text);
    snprintf(out, size, "%s", roles == 0 ? "none" : text);
}

bool tandem_principal_may(const struct tandem_principal *p, enum tandem_perm perm)
{
    switch (perm) {
        case TANDEM_PERM_UNDECLARED:
        case TANDEM_PERM_COUNT:
            return false;
        case TANDEM_PERM_PUBLIC:
            return true;
        case TANDEM_PERM_NODE:
            return p->kind == TANDEM_PRINCIPAL_NODE || p->insecure;
        case TANDEM_PERM_SELF:
            return p->kind != TANDEM_PRINCIPAL_ANONYMOUS || p->insecure;
        default:
            return (p->roles & perm_roles[perm]) != 0;
    }
}

bool tandem_principal_site_bound(const struct tandem_principal *p, enum tandem_perm perm)
{
    if (p->kind != TANDEM_PRINCIPAL_USER || p->bootstrap || p->insecure || perm <= 0 ||
        perm >= TANDEM_PERM_COUNT) {
        return false;
    }
    uint32_t granting = p->roles & perm_roles[perm];
    return granting != 0 && (granting & ~(uint32_t)TANDEM_ROLES_SITE_BOUND) == 0;
}

int tandem_authz_permit(const struct tandem_principal *p, int perm, char *why)
{
    enum tandem_perm checked =
        perm > 0 && perm < TANDEM_PERM_COUNT ? (enum tandem_perm)perm : TANDEM_PERM_UNDECLARED;
    if (tandem_principal_may(p, checked)) {
        return 0;
    }
    char roles[TANDEM_ROLES_TEXT_MAX + 32];
    tandem_perm_roles_text(checked, roles, sizeof roles);
    snprintf(why, TANDEM_ERRMSG_SIZE, "permission %s required (roles: %s)",
             tandem_perm_name(checked), roles);
    return 403;
}

/* The bearer token of r (Authorization: Bearer <token>), or NULL. */
static const char *bearer_token(const struct tandem_http_request *r)
{
    const char *value = tandem_http_request_header(r, "Authorization");
    size_t len = strlen(TANDEM_AUTHZ_BEARER);
    if (value == NULL || strncasecmp(value, TANDEM_AUTHZ_BEARER, len) != 0) {
        return NULL;
    }
    return value + len;
}

/* The value of the console's cookie in a Cookie header ("a=1; tandem_token=...; b=2") into out;
 * false when absent, empty or too long. */
static bool cookie_value(const char *header, char *out, size_t size)
{
    size_t name_len = strlen(TANDEM_AUTHZ_COOKIE);
    for (const char *p = header; p != NULL && *p != '\0';) {
        while (*p == ' ' || *p == ';') {
            p++;
        }
        const char *end = strchr(p, ';');
        size_t len = end == NULL ? strlen(p) : (size_t)(end - p);
        if (len > name_len && strncmp(p, TANDEM_AUTHZ_COOKIE, name_len) == 0 &&
            p[name_len] == '=') {
            size_t value_len = len - name_len - 1;
            while (value_len > 0 && p[name_len + value_len] == ' ') {
                value_len--; /* "a=b ; c=d": the blank is no part of the value */
            }
            if (value_len == 0 || value_len >= size) {
                return false;
            }
            memcpy(out, p + name_len + 1, value_len);
            out[value_len] = '\0';
            return true;
        }
        p = end;
    }
    return false;
}

const char *tandem_authz_token(const struct tandem_http_request *r, char *cookie, bool *from_cookie)
{
    *from_cookie = false;
    const char *bearer = bearer_token(r);
    if (bearer != NULL) {
        return bearer;
    }
    const char *header = tandem_http_request_header(r, "Cookie");
    if (header == NULL || !cookie_value(header, cookie, TANDEM_AUTHZ_COOKIE_HEADER_MAX)) {
        return NULL;
    }
    *from_cookie = true;
    return cookie;
}

int tandem_authz_cookie_header(const char *token, long long max_age_s, char *out, size_t size)
{
    int n = snprintf(out, size, "Set-Cookie: %s=%s%s; Max-Age=%lld\r\n", TANDEM_AUTHZ_COOKIE, token,
                     TANDEM_AUTHZ_COOKIE_ATTRS, max_age_s);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

/* A cookie rides along with every request the browser sends to the node, from any page: a
 * request that changes something must prove it came from the console's own script. */
static int csrf_check(const struct tandem_http_request *r, char *why)
{
    if (r->method == HTTP_GET || r->method == HTTP_HEAD || ui_header(r)) {
        return 0;
    }
    snprintf(why, TANDEM_ERRMSG_SIZE,
             "a %s authenticated by the console's cookie must carry %s: 1 (cross-site request "
             "refused)",
             http_method_str((enum http_method)r->method), TANDEM_AUTHZ_UI_HEADER);
    return 403;
}

/* The principal's roles and site from a user record; 403 when it is disabled. */
static int principal_from_record(const struct tandem_user *user, struct tandem_principal *out,
                                 char *why)
{
    if (user->disabled) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "user %s is disabled", user->name);
        return 403;
    }
    out->kind = TANDEM_PRINCIPAL_USER;
    out->roles = user->roles;
    snprintf(out->name, sizeof out->name, "%s", user->name);
    snprintf(out->site, sizeof out->site, "%s", user->site);
    return 0;
}

/* A person: the user record of name (or the bootstrap identity for admin without one). */
static int principal_user(const char *name, const struct tandem_authz_users *users,
                          struct tandem_principal *out, char *why)
{
    struct tandem_user user;
    int rv = users->get(users->arg, name, &user, why);
    if (rv == TANDEM_NOTFOUND && strcmp(name, TANDEM_USER_BOOTSTRAP_NAME) == 0) {
        out->kind = TANDEM_PRINCIPAL_USER;
        snprintf(out->name, sizeof out->name, "%s", name);
        out->roles = TANDEM_ROLES_ALL;
        out->bootstrap = true;
        return 0;
    }
    if (rv == TANDEM_NOTFOUND) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "no user record for certificate %s", name);
        return 403;
    }
    return rv != TANDEM_OK ? 500 /* why set by get */ : principal_from_record(&user, out, why);
}

/* A person by bearer token; with a user certificate, it must name the same user. */
static int principal_token(const char *token, const struct tandem_tls_peer *identity,
                           const struct tandem_authz_users *users, struct tandem_principal *out,
                           char *why)
{
    struct tandem_user user;
    int rv = users->token(users->arg, token, &user, why);
    if (rv == TANDEM_NOTFOUND) {
        return 401; /* why says which check failed */
    }
    if (rv != TANDEM_OK) {
        return 500;
    }
    if (identity->kind == TANDEM_TLS_PEER_USER && strcmp(identity->name, user.name) != 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE,
                 "the bearer token is of user %s but the client certificate of %s", user.name,
                 identity->name);
        return 400;
    }
    out->via = TANDEM_PRINCIPAL_VIA_TOKEN;
    return principal_from_record(&user, out, why);
}

int tandem_authz_principal(bool tls_required, const struct tandem_http_request *r,
                           const struct tandem_tls_peer *identity,
                           const struct tandem_authz_users *users, struct tandem_principal *out,
                           char *why)
{
    *out = (struct tandem_principal){.kind = TANDEM_PRINCIPAL_ANONYMOUS};
    if (!tls_required) {
        out->insecure = true;
        out->roles = TANDEM_ROLES_ALL;
        snprintf(out->name, sizeof out->name, "%s", TANDEM_ACTOR_DEFAULT);
        return 0;
    }
    char cookie[TANDEM_AUTHZ_COOKIE_HEADER_MAX];
    bool from_cookie;
    const char *token = tandem_authz_token(r, cookie, &from_cookie);
    bool forwarded = tandem_http_request_header(r, TANDEM_FORWARDED_USER_HEADER) != NULL;
    if (token != NULL && !forwarded) {
        int status = principal_token(token, identity, users, out, why);
        if (status == 0 && from_cookie) {
            /* Checked once the user is known, so the refusal's audit record names whose
             * session a cross-site page tried to use. */
            out->via = TANDEM_PRINCIPAL_VIA_COOKIE;
            status = csrf_check(r, why);
        }
        return status;
    }
    if (identity->kind == TANDEM_TLS_PEER_NONE) {
        return 0;
    }
    out->via = forwarded ? TANDEM_PRINCIPAL_VIA_FORWARDED : TANDEM_PRINCIPAL_VIA_CERT;
    if (identity->kind == TANDEM_TLS_PEER_NODE) {
        out->kind = TANDEM_PRINCIPAL_NODE;
        snprintf(out->name, sizeof out->name, "%s", identity->name);
        out->roles = TANDEM_ROLES_ALL & ~(uint32_t)TANDEM_ROLE_PERSONAL_DATA;
        return 0;
    }
    return principal_user(identity->name, users, out, why);
}
