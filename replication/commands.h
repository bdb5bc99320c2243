/* The command table: every replicated command with its protobuf case and its apply function,
 * the union of the rows each folder declares, and the dispatch through it. */
#ifndef TANDEM_REPLICATION_COMMANDS_H
#define TANDEM_REPLICATION_COMMANDS_H

#include <stdbool.h>

#include "replication/apply.h"
#include "replication/bcp/backups.h"
#include "replication/bcp/sites.h"
#include "replication/domain/audit.h"
#include "replication/domain/domain.h"
#include "replication/domain/kv.h"
#include "replication/identity/users.h"
#include "replication/identity/erase.h"
#include "replication/rebalance/rebalance.h"
#include "tandem.pb-c.h"

/* X(name, protobuf body case, apply function). Each folder declares the rows it applies next to
 * its apply functions (kv.h, domain.h, rebalance.h, sites.h); the table is their union. */
#define TANDEM_COMMANDS(X)                                                                         \
    TANDEM_KV_COMMANDS(X)                                                                          \
    TANDEM_DOMAIN_COMMANDS(X)                                                                      \
    TANDEM_REBALANCE_COMMANDS(X)                                                                   \
    TANDEM_SITE_COMMANDS(X)                                                                        \
    TANDEM_INCIDENT_COMMANDS(X)                                                                    \
    TANDEM_AUDIT_COMMANDS(X)                                                                       \
    TANDEM_USER_COMMANDS(X) TANDEM_PDATA_COMMANDS(X) TANDEM_BACKUP_COMMANDS(X)

#define TANDEM_COMMAND_DECLARE(name, body_case, fn)                                                \
    int fn(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,                     \
           struct tandem_result *result);
TANDEM_COMMANDS(TANDEM_COMMAND_DECLARE)
#undef TANDEM_COMMAND_DECLARE

/* Dispatches one command through the table. Unknown commands are a 400 result. */
int tandem_command_apply(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                         struct tandem_result *result);
/* The table's name of command's body ("unknown" outside the table). */
const char *tandem_command_name(const Tandem__Command *command);
/* A client's command, not the cluster's own bookkeeping (site decisions, drills, incidents, the
 * audit trail's appends, shipped backups): what the BCP write-gap measure and a member's lag in
 * client writes count. */
bool tandem_command_is_client(const Tandem__Command *command);

#endif
