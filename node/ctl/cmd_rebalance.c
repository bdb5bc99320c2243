/* tandemctl rebalance commands: plan (sites before -> after with utilisation bars, then the
 * moves) and apply, against /v1/rebalance. */
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/columns.h"
#include "node/ctl/ctl.h"
#include "node/ctl/listing.h"

#define CELL_MAX         96
#define EXCLUDED_PRINTED 20 /* excluded jobs listed for people; -o json has them all */
#define RULES            2

static const char *text_of(const json_t *obj, const char *field)
{
    const char *v = json_string_value(json_object_get(obj, field));
    return v == NULL ? "?" : v;
}

static int sites_print(struct tandem_ctl_context *ctx, const json_t *sites)
{
    double scale = tandem_ctl_plan_scale(sites);
    return tandem_ctl_view_print(ctx, sites, TANDEM_CTL_VIEW_PLAN_SITES, &scale);
}

static int moves_print(struct tandem_ctl_context *ctx, const json_t *moves)
{
    if (json_array_size(moves) == 0) {
        fprintf(ctx->out, "\nno move improves the plan's objective: nothing to do\n");
        return TANDEM_CTL_OK;
    }
    fprintf(ctx->out, "\n");
    return tandem_ctl_view_print(ctx, moves, TANDEM_CTL_VIEW_PLAN_MOVES, NULL);
}

static int excluded_print(struct tandem_ctl_context *ctx, const json_t *plan)
{
    static const char *const rules[RULES] = {"pinned", "boxes_at_site"};
    const json_t *excluded = json_object_get(plan, "excluded"), *item;
    size_t counts[RULES] = {0}, i;
    json_int_t total = json_integer_value(json_object_get(plan, "excluded_total"));
    if (total == 0) {
        return TANDEM_CTL_OK;
    }
    json_array_foreach(excluded, i, item)
    {
        for (size_t r = 0; r < RULES; r++) {
            counts[r] += strcmp(text_of(item, "rule"), rules[r]) == 0 ? 1 : 0;
        }
    }
    fprintf(ctx->out,
            "\nexcluded: %" JSON_INTEGER_FORMAT " queued jobs (listed: %zu pinned, %zu "
            "with boxes at a site)\n",
            total, counts[0], counts[1]);
    json_array_foreach(excluded, i, item)
    {
        if (i == EXCLUDED_PRINTED) {
            fprintf(ctx->out, "  ... (-o json lists up to 1000)\n");
            break;
        }
        fprintf(ctx->out, "  %s at %s: %s\n", text_of(item, "job"), text_of(item, "site"),
                text_of(item, "rule"));
    }
    return TANDEM_CTL_OK;
}

static void summary_print(struct tandem_ctl_context *ctx, const json_t *plan)
{
    const json_t *before = json_object_get(plan, "before"), *after = json_object_get(plan, "after");
    char hb[CELL_MAX], ha[CELL_MAX];
    size_t n = json_array_size(json_object_get(plan, "moves"));
    tandem_ctl_field_text(before, "makespan_hours", tandem_ctl_cell_hours, "inf", hb, sizeof hb);
    tandem_ctl_field_text(after, "makespan_hours", tandem_ctl_cell_hours, "inf", ha, sizeof ha);
    fprintf(ctx->out,
            "\nplan %s (objective %s, state index %" JSON_INTEGER_FORMAT "): %zu moves; largest "
            "backlog %s h" TANDEM_CTL_ARROW "%s h; at risk %" JSON_INTEGER_FORMAT TANDEM_CTL_ARROW
            "%" JSON_INTEGER_FORMAT "; stranded jobs %" JSON_INTEGER_FORMAT TANDEM_CTL_ARROW
            "%" JSON_INTEGER_FORMAT "\n",
            text_of(plan, "id"), text_of(plan, "objective"),
            json_integer_value(json_object_get(plan, "index")), n, hb, ha,
            json_integer_value(json_object_get(before, "at_risk")),
            json_integer_value(json_object_get(after, "at_risk")),
            json_integer_value(json_object_get(before, "stranded_jobs")),
            json_integer_value(json_object_get(after, "stranded_jobs")));
    if (n > 0) {
        fprintf(ctx->out, "apply with: tandemctl rebalance apply %s\n", text_of(plan, "id"));
    }
}

static int plan_path(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args, char *path,
                     size_t size)
{
    static const char *const flags[][2] = {
        {"objective", "objective"}, {"max-moves", "max_moves"}, {"at", "at"}};
    snprintf(path, size, "/v1/rebalance/plan");
    int rc = TANDEM_CTL_OK;
    for (size_t i = 0; i < sizeof flags / sizeof flags[0] && rc == TANDEM_CTL_OK; i++) {
        rc = tandem_ctl_query_append(ctx, path, size, flags[i][1],
                                     tandem_ctl_args_flag(args, flags[i][0]));
    }
    if (rc == TANDEM_CTL_OK && tandem_ctl_args_flag(args, "local") != NULL) {
        rc = tandem_ctl_query_append(ctx, path, size, "consistency", "local");
    }
    return rc;
}

static int plan_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                      const json_t *plan)
{
    (void)args;
    int rc = sites_print(ctx, json_object_get(plan, "sites"));
    rc = rc == TANDEM_CTL_OK ? moves_print(ctx, json_object_get(plan, "moves")) : rc;
    rc = rc == TANDEM_CTL_OK ? excluded_print(ctx, plan) : rc;
    if (rc == TANDEM_CTL_OK) {
        summary_print(ctx, plan);
    }
    return rc;
}

int tandem_ctl_rebalance_plan(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[TANDEM_CTL_URL_MAX];
    json_t *plan = NULL;
    const char *objective = tandem_ctl_args_flag(args, "objective");
    if (objective != NULL && strcmp(objective, "makespan") != 0 && strcmp(objective, "due") != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--objective must be makespan or due");
    }
    int rc = plan_path(ctx, args, path, sizeof path);
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_get_json(ctx, path, NULL, &plan);
    }
    if (rc == TANDEM_CTL_OK && (!json_is_array(json_object_get(plan, "sites")) ||
                                !json_is_array(json_object_get(plan, "moves")))) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "answer is not a plan");
    }
    return tandem_ctl_answer(ctx, args, rc, plan, plan_print);
}

/* The apply body: {"id"} for a plan the server keeps, or a plan file's whole object. */
static int apply_body(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                      json_t **body)
{
    const char *file = tandem_ctl_args_flag(args, "file");
    json_error_t jerr;
    if ((file == NULL) == (args->positional_count == 0)) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "give PLAN_ID, or --file PLAN.json");
    }
    if (file == NULL) {
        *body = json_pack("{s:s}", "id", args->positional[0]);
    } else {
        *body = json_load_file(file, 0, &jerr);
    }
    if (*body == NULL || !json_is_object(*body)) {
        json_decref(*body);
        *body = NULL;
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s: %s", file != NULL ? file : "PLAN_ID",
                               file != NULL ? jerr.text : "must be UTF-8");
    }
    return TANDEM_CTL_OK;
}

static int apply_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                       const json_t *applied)
{
    (void)args;
    fprintf(ctx->out,
            "applied plan %s: %" JSON_INTEGER_FORMAT " jobs moved (at index %" JSON_INTEGER_FORMAT
            ")\n",
            text_of(applied, "id"), json_integer_value(json_object_get(applied, "moved")),
            json_integer_value(json_object_get(applied, "applied_index")));
    return TANDEM_CTL_OK;
}

int tandem_ctl_rebalance_apply(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    json_t *body = NULL;
    int rc = apply_body(ctx, args, &body);
    return tandem_ctl_post_answer(ctx, args, rc, "/v1/rebalance/apply", body, apply_print);
}
