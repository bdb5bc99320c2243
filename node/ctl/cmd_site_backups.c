/* tandemctl backup list: every site's shipped backups from the replicated table (any node answers
 * the same), with index, age, size, where they are kept, their state and last verification, and
 * per site the age of the newest and of the newest verified backup. */
#include <stdio.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/columns.h"
#include "node/ctl/ctl.h"
#include "node/ctl/listing.h"

#define BACKUPS_PATH_MAX 256

/* "east: newest 12s ago at index 1234, newest verified 12s ago (last check L1 ...)". */
static void sites_print(struct tandem_ctl_context *ctx, const json_t *sites)
{
    const char *site;
    json_t *s;
    json_object_foreach((json_t *)sites, site, s)
    {
        const char *newest = json_string_value(json_object_get(s, "newest"));
        const char *verified = json_string_value(json_object_get(s, "newest_verified"));
        fprintf(ctx->out,
                "%s: newest %s (index %" JSON_INTEGER_FORMAT
                "), newest verified %s; %" JSON_INTEGER_FORMAT " kept, %" JSON_INTEGER_FORMAT
                " degraded, %" JSON_INTEGER_FORMAT " lost\n",
                site, newest != NULL ? newest : "none",
                json_integer_value(json_object_get(s, "newest_index")),
                verified != NULL ? verified : "none",
                json_integer_value(json_object_get(s, "kept")),
                json_integer_value(json_object_get(s, "degraded")),
                json_integer_value(json_object_get(s, "lost")));
    }
}

int tandem_ctl_backup_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[BACKUPS_PATH_MAX] = "/v1/backups";
    json_t *answer = NULL;
    int rc =
        tandem_ctl_query_append(ctx, path, sizeof path, "site", tandem_ctl_args_flag(args, "site"));
    if (rc == TANDEM_CTL_OK && tandem_ctl_args_flag(args, "retired") != NULL) {
        rc = tandem_ctl_query_append(ctx, path, sizeof path, "retired", "1");
    }
    if (rc == TANDEM_CTL_OK && tandem_ctl_args_flag(args, "local") != NULL) {
        rc = tandem_ctl_query_append(ctx, path, sizeof path, "consistency", "local");
    }
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_get_json(ctx, path, "backups", &answer);
    }
    if (rc == TANDEM_CTL_OK && ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        rc = tandem_ctl_print_json(ctx, answer);
    } else if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_view_print(ctx, json_object_get(answer, "backups"),
                                   TANDEM_CTL_VIEW_SITE_BACKUPS, NULL);
        sites_print(ctx, json_object_get(answer, "sites"));
    }
    json_decref(answer);
    return rc;
}
