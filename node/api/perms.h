/* The permissions routes declare (issue 13): each route of every table names one; a request runs
 * only when its principal holds it (default deny: a route that names none is refused). Roles
 * (replication/identity/roles.h) grant permissions; the table below is the one place that says
 * which. */
#ifndef TANDEM_NODE_API_PERMS_H
#define TANDEM_NODE_API_PERMS_H

#include <stdint.h>

#include "replication/identity/roles.h"

/* Roles whose permissions hold only at the user's home site (the operator's own-site rule,
 * checked at apply): a request that holds its permission through these roles alone acts only on
 * jobs and boxes at the user's site. */
#define TANDEM_ROLES_SITE_BOUND TANDEM_ROLE_OPERATOR

#define TANDEM_ROLES_STAFF                                                                         \
    (TANDEM_ROLE_VIEWER | TANDEM_ROLE_OPERATOR | TANDEM_ROLE_PLANNER | TANDEM_ROLE_BCP_ADMIN |     \
     TANDEM_ROLE_SECURITY_ADMIN | TANDEM_ROLE_AUDITOR)

/* X(id, name, roles granting it). NODE is held by node certificates only; PUBLIC by anyone,
 * anonymous included; SELF by any authenticated person (their own password, their session). */
#define TANDEM_PERMS(X)                                                                            \
    X(UNDECLARED, "undeclared", 0u)                                                                \
    X(PUBLIC, "public", 0u)                                                                        \
    X(SELF, "self", TANDEM_ROLES_ALL)                                                              \
    X(READ, "read", TANDEM_ROLES_STAFF)                                                            \
    X(DOMAIN_WRITE, "domain-write", TANDEM_ROLE_OPERATOR)                                          \
    X(KV_WRITE, "kv-write", TANDEM_ROLE_OPERATOR)                                                  \
    X(TRACE, "trace", TANDEM_ROLE_AUDITOR | TANDEM_ROLE_OPERATOR)                                  \
    X(PLAN, "plan", TANDEM_ROLE_PLANNER)                                                           \
    X(BCP, "bcp", TANDEM_ROLE_BCP_ADMIN)                                                           \
    X(MEMBERS, "members", TANDEM_ROLE_BCP_ADMIN)                                                   \
    X(BACKUP, "backup", TANDEM_ROLE_BCP_ADMIN)                                                     \
    X(USERS, "users", TANDEM_ROLE_SECURITY_ADMIN)                                                  \
    X(KEYS, "keys", TANDEM_ROLE_SECURITY_ADMIN)                                                    \
    X(RETENTION, "retention", TANDEM_ROLE_SECURITY_ADMIN)                                          \
    X(AUDIT, "audit", TANDEM_ROLE_AUDITOR)                                                         \
    X(PERSONAL_DATA, "personal-data", TANDEM_ROLE_PERSONAL_DATA)                                   \
    X(NODE, "node", 0u)

#define TANDEM_PERM_ENUM(id, name, roles) TANDEM_PERM_##id,
enum tandem_perm { TANDEM_PERMS(TANDEM_PERM_ENUM) TANDEM_PERM_COUNT };
#undef TANDEM_PERM_ENUM

#endif
