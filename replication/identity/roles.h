/* The least-privilege roles a person's user record holds (issue 13): their bits and names, shared
 * by the user records, the route table's permissions, the audit trail and the personal-data
 * fields. A role set is a bitwise OR of enum tandem_user_role values. */
#ifndef TANDEM_REPLICATION_IDENTITY_ROLES_H
#define TANDEM_REPLICATION_IDENTITY_ROLES_H

#include <stddef.h>
#include <stdint.h>

/* X(id, bit, name, what it allows) */
#define TANDEM_ROLES(X)                                                                            \
    X(VIEWER, 0, "viewer", "read status and non-personal data")                                    \
    X(OPERATOR, 1, "operator", "jobs and boxes at the user's own site")                            \
    X(PLANNER, 2, "planner", "capacity and rebalancing")                                           \
    X(BCP_ADMIN, 3, "bcp-admin", "BCP, drills and members")                                        \
    X(SECURITY_ADMIN, 4, "security-admin", "users and keys")                                       \
    X(AUDITOR, 5, "auditor", "the audit trail and traces")                                         \
    X(PERSONAL_DATA, 6, "personal-data", "personal-data fields in clear")

#define TANDEM_ROLE_ENUM(id, bit, name, what) TANDEM_ROLE_##id = 1u << (bit),
enum tandem_user_role { TANDEM_ROLES(TANDEM_ROLE_ENUM) };
#undef TANDEM_ROLE_ENUM

#define TANDEM_ROLE_COUNT     7
#define TANDEM_ROLES_ALL      ((uint32_t)((1u << TANDEM_ROLE_COUNT) - 1u))
#define TANDEM_ROLES_TEXT_MAX 128 /* "viewer,operator,..." with every role */

/* The role called name (exactly, lower case), or 0 when there is none. */
uint32_t tandem_role_from_name(const char *name, size_t len);
/* The name of one role bit, or NULL when role is not exactly one known bit. */
const char *tandem_role_name_of(uint32_t role);
/* Parses "viewer,operator" (comma-separated, no blanks, no repeats, at least one) into *roles.
 * Returns 0, or -1 with errmsg (TANDEM_ERRMSG_SIZE bytes) naming the unknown or repeated role. */
int tandem_roles_parse(const char *text, uint32_t *roles, char *errmsg);
/* Writes the names of roles, comma-separated in bit order, into out (at least
 * TANDEM_ROLES_TEXT_MAX bytes); "" for none. */
void tandem_roles_format(uint32_t roles, char *out, size_t size);

#endif
