/* Who may call what on the API (issue 12): with TLS, a request needs a client certificate of the
 * cluster CA except GET /healthz and /readyz; the /v1/node/ routes answer only node certificates; a
 * forwarded identity is taken only from a node. Roles are not here (the identity issue). */
#ifndef TANDEM_NODE_API_AUTHZ_H
#define TANDEM_NODE_API_AUTHZ_H

#include <stdbool.h>

#include "consensus/tls.h"
#include "node/http/forward.h" /* TANDEM_FORWARDED_USER_HEADER, TANDEM_FORWARDED_KIND_HEADER */
#include "node/http/server.h"
/* Paths under it answer only node certificates (every method). */
#define TANDEM_AUTHZ_NODE_PREFIX "/v1/node/"
/* On every 401: the client must present a certificate in the TLS handshake. */
#define TANDEM_AUTHZ_CHALLENGE "WWW-Authenticate: Certificate realm=\"tandem\"\r\n"

/* Decides whether r may run. tls_required: the listener speaks TLS (with 0, everything is allowed
 * as before: the insecure mode). Fills *identity with who r acts as: the connection's peer, or the
 * identity a node forwarded. Returns 0 (allowed), or 400 (malformed forwarded identity), 401 (no
 * credential; answer with TANDEM_AUTHZ_CHALLENGE) or 403, with why (TANDEM_ERRMSG_SIZE) the
 * answer's error text. */
int tandem_authz_check(bool tls_required, const struct tandem_http_request *r,
                       struct tandem_tls_peer *identity, char *why);

#endif
