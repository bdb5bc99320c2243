/* The command table: every replicated command, its protobuf case and its apply function, in one
 * place (the apply functions live in domain/, bcp/ and rebalance/). */
#ifndef TANDEM_REPLICATION_COMMANDS_H
#define TANDEM_REPLICATION_COMMANDS_H

#include "replication/apply.h"
#include "tandem.pb-c.h"

/* X(name, protobuf body case, apply function), in groups by the file that applies them. */
#define TANDEM_COMMANDS(X)                                                                         \
    TANDEM_KV_COMMANDS(X)                                                                          \
    TANDEM_DOMAIN_COMMANDS(X) TANDEM_REBALANCE_COMMANDS(X) TANDEM_SITE_COMMANDS(X)

/* domain/kv.c */
#define TANDEM_KV_COMMANDS(X)                                                                      \
    X(kv_put, TANDEM__COMMAND__BODY_KV_PUT, tandem_kv_apply_put)                                   \
    X(kv_delete, TANDEM__COMMAND__BODY_KV_DELETE, tandem_kv_apply_delete)                          \
    X(txn, TANDEM__COMMAND__BODY_TXN, tandem_kv_apply_txn)

/* domain/jobs.c, domain/boxes.c, domain/trace.c */
#define TANDEM_DOMAIN_COMMANDS(X)                                                                  \
    X(job_create, TANDEM__COMMAND__BODY_JOB_CREATE, tandem_job_apply_create)                       \
    X(job_action, TANDEM__COMMAND__BODY_JOB_ACTION, tandem_job_apply_action)                       \
    X(box_checkin, TANDEM__COMMAND__BODY_BOX_CHECKIN, tandem_box_apply_checkin)                    \
    X(box_action, TANDEM__COMMAND__BODY_BOX_ACTION, tandem_box_apply_action)                       \
    X(retention_purge, TANDEM__COMMAND__BODY_RETENTION_PURGE, tandem_trace_apply_purge)

/* rebalance/capacity.c */
#define TANDEM_REBALANCE_COMMANDS(X)                                                               \
    X(capacity_set, TANDEM__COMMAND__BODY_CAPACITY_SET, tandem_capacity_apply_set)                 \
    X(rebalance_apply, TANDEM__COMMAND__BODY_REBALANCE_APPLY, tandem_rebalance_apply)

/* bcp/sites.c */
#define TANDEM_SITE_COMMANDS(X)                                                                    \
    X(site_update, TANDEM__COMMAND__BODY_SITE_UPDATE, tandem_sites_apply_update)                   \
    X(site_decision, TANDEM__COMMAND__BODY_SITE_DECISION, tandem_sites_apply_decision)             \
    X(member_home_set, TANDEM__COMMAND__BODY_MEMBER_HOME_SET, tandem_sites_apply_member_home)      \
    X(drill_store, TANDEM__COMMAND__BODY_DRILL_STORE, tandem_sites_apply_drill)

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

#endif
