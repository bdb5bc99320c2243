/* tandemctl site commands: the sites' capacity and load (list), set-capacity and the capacity
 * history, against /v1/sites. */
#include <errno.h>
#include <stdlib.h>

#include "node/ctl/client.h"
#include "node/ctl/columns.h"
#include "node/ctl/ctl.h"
#include "node/ctl/listing.h"

#define CAPACITY_MAX      1000000000L /* the server's limit (units per hour) */
#define HISTORY_LIMIT_MAX 1000

int tandem_ctl_site_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *path =
        tandem_ctl_args_flag(args, "local") != NULL ? "/v1/sites?consistency=local" : "/v1/sites";
    return tandem_ctl_list_answer(ctx, path, "sites", true, TANDEM_CTL_VIEW_SITES);
}

/* N, checked: effort units per hour. */
static int capacity_arg(struct tandem_ctl_context *ctx, const char *text, long *capacity)
{
    char *end = NULL;
    errno = 0;
    *capacity = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || *capacity < 0 || *capacity > CAPACITY_MAX) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE,
                               "N must be effort units per hour from 0 to %ld, got '%s'",
                               CAPACITY_MAX, text);
    }
    return TANDEM_CTL_OK;
}

static int capacity_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                          const json_t *answer)
{
    char previous[TANDEM_CTL_CELL_SIZE];
    long capacity = strtol(args->positional[1], NULL, 10); /* checked before the request */
    tandem_ctl_field_text(answer, "previous", tandem_ctl_cell_integer, "unset", previous,
                          sizeof previous);
    fprintf(ctx->out, "site %s: capacity %s -> %ld units/h%s\n", args->positional[0], previous,
            capacity, json_is_true(json_object_get(answer, "changed")) ? "" : " (unchanged)");
    return TANDEM_CTL_OK;
}

int tandem_ctl_site_set_capacity(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[TANDEM_CTL_URL_MAX];
    long capacity = 0;
    int rc = capacity_arg(ctx, args->positional[1], &capacity);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    rc = tandem_ctl_item_path(ctx, "/v1/sites", "SITE", args->positional[0], "/capacity", path,
                              sizeof path);
    return tandem_ctl_post_answer(
        ctx, args, rc, path, json_pack("{s:I}", "capacity", (json_int_t)capacity), capacity_print);
}

int tandem_ctl_site_capacity_history(struct tandem_ctl_context *ctx,
                                     const struct tandem_ctl_args *args)
{
    char path[TANDEM_CTL_URL_MAX];
    size_t limit;
    int rc = tandem_ctl_limit_flag(ctx, args, &limit);
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_item_path(ctx, "/v1/sites", "SITE", args->positional[0],
                                  "/capacity/history", path, sizeof path);
    }
    if (rc == TANDEM_CTL_OK && tandem_ctl_args_flag(args, "limit") != NULL) {
        char number[32];
        snprintf(number, sizeof number, "%zu",
                 limit < HISTORY_LIMIT_MAX ? limit : HISTORY_LIMIT_MAX);
        rc = tandem_ctl_query_append(ctx, path, sizeof path, "limit", number);
    }
    return rc == TANDEM_CTL_OK ? tandem_ctl_list_answer(ctx, path, "history", true,
                                                        TANDEM_CTL_VIEW_CAPACITY_HISTORY)
                               : rc;
}
