/* Who may call what on the API (issue 12): with TLS, a request needs a client certificate of the
 * cluster CA except GET /healthz and /readyz; the /v1/node/ routes answer only node certificates; a
 * forwarded identity is taken only from a node. Roles are not here (the identity issue). */
#ifndef TANDEM_NODE_API_AUTHZ_H
#define TANDEM_NODE_API_AUTHZ_H

#include <stdbool.h>

#include "consensus/tls.h"
#include "node/api/perms.h"
#include "node/http/principal.h"
#include "replication/identity/users.h"
#include "node/http/forward.h" /* TANDEM_FORWARDED_USER_HEADER, TANDEM_FORWARDED_KIND_HEADER */
#include "node/http/server.h"
/* Paths under it answer only node certificates (every method). */
#define TANDEM_AUTHZ_NODE_PREFIX "/v1/node/"
/* On every 401: the client must present a certificate in the TLS handshake. */
/* A bearer token from POST /v1/auth/login: "Authorization: Bearer <token>". */
#define TANDEM_AUTHZ_BEARER    "Bearer "
#define TANDEM_AUTHZ_CHALLENGE "WWW-Authenticate: Certificate realm=\"tandem\"\r\n"

/* The web console (issue 15) keeps the same token in this cookie (HttpOnly; Secure;
 * SameSite=Strict; Path=/), set by POST /v1/auth/login?cookie=1. A request carrying it and no
 * Authorization header is authenticated exactly as with "Authorization: Bearer <token>". */
#define TANDEM_AUTHZ_COOKIE "tandem_token"
/* Every request but GET and HEAD authenticated by the cookie must carry this header with the
 * value 1: a cross-site page cannot set it (no CORS is answered), so a forged form or fetch is
 * refused (CSRF) even by a browser that ignored SameSite. */
#define TANDEM_AUTHZ_UI_HEADER    "X-Tandem-UI"
#define TANDEM_AUTHZ_COOKIE_ATTRS "; HttpOnly; Secure; SameSite=Strict; Path=/"
/* The header line that removes the cookie (logout). */
#define TANDEM_AUTHZ_COOKIE_CLEAR                                                                  \
    "Set-Cookie: " TANDEM_AUTHZ_COOKIE "=" TANDEM_AUTHZ_COOKIE_ATTRS "; Max-Age=0\r\n"
#define TANDEM_AUTHZ_COOKIE_HEADER_MAX 1024 /* the Set-Cookie line of a token */

/* The "Set-Cookie: ...\r\n" line that keeps token for max_age_s seconds, into out
 * (TANDEM_AUTHZ_COOKIE_HEADER_MAX bytes). Returns 0, or -1 when it does not fit. */
int tandem_authz_cookie_header(const char *token, long long max_age_s, char *out, size_t size);

/* The token r carries: "Authorization: Bearer <token>" first, else the console's cookie
 * (*from_cookie set true); NULL without either. The cookie's value is copied into cookie
 * (TANDEM_AUTHZ_COOKIE_HEADER_MAX bytes). */
const char *tandem_authz_token(const struct tandem_http_request *r, char *cookie,
                               bool *from_cookie);

/* Decides whether r may run. tls_required: the listener speaks TLS (with 0, everything is allowed
 * as before: the insecure mode). Fills *identity with who r acts as: the connection's peer, or the
 * identity a node forwarded. Returns 0 (allowed), or 400 (malformed forwarded identity), 401 (no
 * credential; answer with TANDEM_AUTHZ_CHALLENGE) or 403, with why (TANDEM_ERRMSG_SIZE) the
 * answer's error text. */
int tandem_authz_check(bool tls_required, const struct tandem_http_request *r,
                       struct tandem_tls_peer *identity, char *why);

/* ---- roles and permissions (issue 13) ---- */

/* The name of a permission ("domain-write"), or "undeclared" for an unknown value. */
const char *tandem_perm_name(int perm);
/* The roles that grant perm, comma-separated ("operator"), into out (TANDEM_ROLES_TEXT_MAX
 * bytes); "node certificates" for NODE, "none" when no role grants it. */
void tandem_perm_roles_text(int perm, char *out, size_t size);
/* Whether p may use perm: UNDECLARED never; PUBLIC always; NODE only a node certificate (or an
 * insecure node's principal); SELF any authenticated identity; otherwise one of p's roles
 * grants it. */
bool tandem_principal_may(const struct tandem_principal *p, enum tandem_perm perm);
/* Whether p holds perm only through site-bound roles (TANDEM_ROLES_SITE_BOUND: the operator's
 * own-site rule). Never for nodes, the bootstrap identity, the insecure mode, or a user who also
 * holds perm through another role. */
bool tandem_principal_site_bound(const struct tandem_principal *p, enum tandem_perm perm);
/* Default deny: 0 when p may use the route's perm, else 403 with why
 * "permission <name> required (roles: <roles that grant it>)". */
int tandem_authz_permit(const struct tandem_principal *p, int perm, char *why);

/* The user records principal resolution reads (the router: this node's store). */
struct tandem_authz_users {
    /* User name's record: TANDEM_OK, TANDEM_NOTFOUND, or another error with why. */
    int (*get)(void *arg, const char *name, struct tandem_user *out, char *why);
    /* A bearer token's user (I1's tandem_token_check): TANDEM_OK, TANDEM_NOTFOUND with why when
     * the token is refused, or another error with why. */
    int (*token)(void *arg, const char *token, struct tandem_user *out, char *why);
    void *arg;
};
/* Resolves who r acts as from identity (what tandem_authz_check answered) into *out: a bearer
 * token (Authorization: Bearer) -> its user (with a user certificate, of the same name); a user
 * certificate's name (or a user a node forwarded) -> that user's record, its roles and home
 * site; the name admin without a record -> the bootstrap identity, every role; a node -> every
 * role but personal-data; tls_required false -> the insecure principal, every role; no
 * credential -> anonymous, no role. Returns 0, 400 (token and certificate of different users),
 * 401 (token refused), 403 (no user record, disabled, or a request authenticated by the
 * console's cookie that is not GET or HEAD and lacks TANDEM_AUTHZ_UI_HEADER: 1) or 500 (a lookup
 * failed) with why. The cookie is a token like a bearer one (principal via TANDEM_PRINCIPAL_VIA_
 * COOKIE). */
int tandem_authz_principal(bool tls_required, const struct tandem_http_request *r,
                           const struct tandem_tls_peer *identity,
                           const struct tandem_authz_users *users, struct tandem_principal *out,
                           char *why);

#endif
