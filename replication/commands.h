/* The command table: every replicated command, its protobuf case and its apply function. */
#ifndef TANDEM_REPLICATION_COMMANDS_H
#define TANDEM_REPLICATION_COMMANDS_H

#include "replication/domain/domain_commands.h"
#include "replication/fsm.h"
#include "replication/bcp/site_commands.h"

/* X(name, protobuf body case, apply function) */
#define TANDEM_COMMANDS(X)                                                                         \
    X(kv_put, TANDEM__COMMAND__BODY_KV_PUT, tandem_kv_apply_put)                                   \
    X(kv_delete, TANDEM__COMMAND__BODY_KV_DELETE, tandem_kv_apply_delete)                          \
    X(txn, TANDEM__COMMAND__BODY_TXN, tandem_kv_apply_txn)                                         \
    TANDEM_DOMAIN_COMMANDS(X)                                                                      \
    TANDEM_SITE_COMMANDS(X)

/* An apply function mutates state inside ctx->txn and, when result is non-NULL, fills it.
 * Returns 0 (business failures are results) or an LMDB error, which is fatal for the node. */
typedef int (*tandem_command_apply_fn)(const struct tandem_apply_ctx *ctx,
                                       const Tandem__Command *command,
                                       struct tandem_result *result);

#define TANDEM_COMMAND_DECLARE(name, body_case, fn)                                                \
    int fn(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,                     \
           struct tandem_result *result);
TANDEM_COMMANDS(TANDEM_COMMAND_DECLARE)
#undef TANDEM_COMMAND_DECLARE

/* Dispatches one command through the table. Unknown commands are a 400 result. */
int tandem_command_apply(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                         struct tandem_result *result);
const char *tandem_command_name(const Tandem__Command *command);

/* Result helpers: body from printf-style JSON text. */
void tandem_result_set(struct tandem_result *result, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tandem_result_error(struct tandem_result *result, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
