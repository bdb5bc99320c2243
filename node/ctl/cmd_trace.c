/* tandemctl trace commands: timelines of jobs and boxes, retention purge, disposal records. */
#include <stdlib.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/ctl.h"
#include "node/ctl/listing.h"

#define PURGE_ROUNDS_MAX 10000 /* purge commands one `trace purge` sends while more remain */

int tandem_ctl_trace_show(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    static const struct tandem_ctl_listing listing = {"events", NULL, false,
                                                      TANDEM_CTL_VIEW_EVENTS};
    const struct tandem_ctl_command *c = ctx->command;
    /* "trace job ID" and "job trace ID" alike. */
    const char *kind = strcmp(c->noun, "trace") == 0 ? c->verb : c->noun;
    char collection[32], path[TANDEM_CTL_URL_MAX];
    snprintf(collection, sizeof collection, "/v1/trace/%s", kind);
    int rc =
        tandem_ctl_item_path(ctx, collection, "ID", args->positional[0], "", path, sizeof path);
    return rc == TANDEM_CTL_OK ? tandem_ctl_list(ctx, args, path, &listing) : rc;
}

/* Sends purge commands until the server reports no older events left; sums the counts. */
int tandem_ctl_trace_purge(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *max = tandem_ctl_args_flag(args, "events-max");
    json_t *body = json_object(), *disposals = json_array();
    json_int_t purged = 0;
    int rc = TANDEM_CTL_OK;
    bool more = true;
    if (max != NULL) {
        char *end = NULL;
        long long n = strtoll(max, &end, 10);
        if (end == max || *end != '\0' || n < 1) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--events-max: expected a count");
        }
        json_object_set_new(body, "events_max", json_integer(n));
    }
    for (unsigned round = 0; rc == TANDEM_CTL_OK && more && round < PURGE_ROUNDS_MAX; round++) {
        json_t *root = NULL;
        rc = tandem_ctl_post_json(ctx, "/v1/retention/purge", body, &root);
        json_t *d = json_object_get(root, "disposal");
        if (rc == TANDEM_CTL_OK && !json_is_object(d)) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "answer has no disposal record");
        }
        if (rc == TANDEM_CTL_OK) {
            json_array_append(disposals, d);
            purged += json_integer_value(json_object_get(d, "events_purged"));
            more = json_is_true(json_object_get(d, "more"));
        }
        json_decref(root);
    }
    if (rc == TANDEM_CTL_OK && ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        json_t *root = json_pack("{s:O,s:I}", "disposals", disposals, "events_purged", purged);
        rc = tandem_ctl_print_json(ctx, root);
        json_decref(root);
    } else if (rc == TANDEM_CTL_OK) {
        json_t *last = json_array_get(disposals, json_array_size(disposals) - 1);
        fprintf(ctx->out,
                "purged %" JSON_INTEGER_FORMAT " trace events older than %s (%zu "
                "disposal record%s)\n",
                purged, json_string_value(json_object_get(last, "cutoff")),
                json_array_size(disposals), json_array_size(disposals) == 1 ? "" : "s");
    }
    json_decref(body);
    json_decref(disposals);
    return rc;
}

int tandem_ctl_trace_disposals(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    static const struct tandem_ctl_listing listing = {"disposals", NULL, false,
                                                      TANDEM_CTL_VIEW_DISPOSALS};
    return tandem_ctl_list(ctx, args, "/v1/disposals", &listing);
}
