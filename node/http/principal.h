/* Who a request acts as once authenticated (issue 13): a person's user record reached through a
 * certificate or a bearer token, a node, or nobody; with the roles the request may use. The
 * router resolves it before any handler runs (node/api/authz.h); handlers, the audit trail and
 * the personal-data fields read it, never a header. */
#ifndef TANDEM_NODE_HTTP_PRINCIPAL_H
#define TANDEM_NODE_HTTP_PRINCIPAL_H

#include <stdbool.h>
#include <stdint.h>

#include "consensus/member.h"
#include "consensus/tls.h"

enum tandem_principal_kind {
    TANDEM_PRINCIPAL_ANONYMOUS = 0, /* no credential (health checks, login, insecure mode) */
    TANDEM_PRINCIPAL_USER,          /* a person: user certificate or bearer token */
    TANDEM_PRINCIPAL_NODE,          /* a node certificate acting for itself */
};

enum tandem_principal_via {
    TANDEM_PRINCIPAL_VIA_NONE = 0,
    TANDEM_PRINCIPAL_VIA_CERT,      /* the connection's client certificate */
    TANDEM_PRINCIPAL_VIA_TOKEN,     /* Authorization: Bearer <token from /v1/auth/login> */
    TANDEM_PRINCIPAL_VIA_FORWARDED, /* a node forwarded the request for this user */
    TANDEM_PRINCIPAL_VIA_COOKIE,    /* the web console's cookie holding such a token (issue 15) */
};

struct tandem_principal {
    enum tandem_principal_kind kind;
    enum tandem_principal_via via;
    char name[TANDEM_TLS_NAME_MAX + 1]; /* user or node name; "" when anonymous */
    uint32_t roles;                     /* replication/identity/roles.h bits the request holds */
    char site[TANDEM_SITE_LEN_MAX + 1]; /* the user's home site; "" for nodes and bootstrap */
    bool bootstrap; /* the bootstrap identity: certs.sh's admin certificate, no user record */
    bool insecure;  /* resolved on an insecure (plaintext, benchmark) node: every role */
};

#endif
