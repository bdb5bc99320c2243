/* The API's authorisation decisions on the TLS peer of a request (node/api/authz.h). */
#include "node/api/authz.h"

#include <stdio.h>
#include <string.h>

#include "node/http/forward.h"
#include "storage/error.h"

/* What anyone may ask without a credential: health only. */
static bool health_route(const struct tandem_http_request *r)
{
    return (r->method == HTTP_GET || r->method == HTTP_HEAD) &&
           (strcmp(r->path, "/healthz") == 0 || strcmp(r->path, "/readyz") == 0);
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
    if (r->peer.kind == TANDEM_TLS_PEER_NONE) {
        if (health_route(r)) {
            return 0;
        }
        snprintf(why, TANDEM_ERRMSG_SIZE,
                 "authentication required: present a client certificate of the cluster CA");
        return 401;
    }
    const char *user = tandem_http_request_header(r, TANDEM_FORWARDED_USER_HEADER);
    const char *kind = tandem_http_request_header(r, TANDEM_FORWARDED_KIND_HEADER);
    bool forwarded = user != NULL || kind != NULL;
    /* X-Tandem-Forwarded-By steers the leader check and the actor's site: a node's word too. */
    if ((forwarded || tandem_http_request_header(r, TANDEM_FORWARDED_HEADER) != NULL) &&
        r->peer.kind != TANDEM_TLS_PEER_NODE) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "forwarded identity from a peer that is not a node");
        return 403;
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
