/* Dispatch through the command table: the one switch that routes a command to its apply. */
#include "replication/commands.h"

#include "storage/assert.h"

int tandem_command_apply(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                         struct tandem_result *result)
{
    tandem_assert(ctx->store != NULL && ctx->txn != NULL && ctx->ops != NULL);
    switch (command->body_case) {
#define TANDEM_COMMAND_CASE(name, body_case, fn)                                                   \
    case body_case:                                                                                \
        return fn(ctx, command, result);
        TANDEM_COMMANDS(TANDEM_COMMAND_CASE)
#undef TANDEM_COMMAND_CASE
        default:
            /* A newer node's command this binary does not know: refusing it everywhere the same
             * way keeps replicas identical. */
            tandem_result_error(result, 400, "unknown command %d", (int)command->body_case);
            return 0;
    }
}

const char *tandem_command_name(const Tandem__Command *command)
{
    switch (command->body_case) {
#define TANDEM_COMMAND_NAME(name, body_case, fn)                                                   \
    case body_case:                                                                                \
        return #name;
        TANDEM_COMMANDS(TANDEM_COMMAND_NAME)
#undef TANDEM_COMMAND_NAME
        default:
            return "unknown";
    }
}

bool tandem_command_is_client(const Tandem__Command *command)
{
#define TANDEM_BOOKKEEPING_CASE_(name, body_case, fn) case body_case:
    switch (command->body_case) {
        TANDEM_SITE_COMMANDS(TANDEM_BOOKKEEPING_CASE_)
        TANDEM_INCIDENT_COMMANDS(TANDEM_BOOKKEEPING_CASE_)
        TANDEM_AUDIT_COMMANDS(TANDEM_BOOKKEEPING_CASE_)
        TANDEM_BACKUP_COMMANDS(TANDEM_BOOKKEEPING_CASE_)
        return false;
        default:
            return true;
    }
#undef TANDEM_BOOKKEEPING_CASE_
}
