/* tandemctl site commands: the sites' capacity and load (list), set-capacity and the capacity
 * history, against /v1/sites. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/ctl.h"
#include "node/ctl/encode.h"
#include "node/ctl/output.h"

#define SITE_ENCODED_MAX  (TANDEM_CTL_VALUE_MAX * 3 + 1)
#define CELL_MAX          64
#define CAPACITY_MAX      1000000000L /* the server's limit (units per hour) */
#define HISTORY_LIMIT_MAX 1000

/* "/v1/sites/<encoded site><suffix>" into path. */
static int site_path(struct tandem_ctl_context *ctx, const char *site, const char *suffix,
                     char *path, size_t size)
{
    char encoded[SITE_ENCODED_MAX];
    if (site[0] == '\0' ||
        tandem_ctl_percent_encode(site, strlen(site), encoded, sizeof encoded) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "SITE must be 1 to %d bytes",
                               TANDEM_CTL_VALUE_MAX);
    }
    snprintf(path, size, "/v1/sites/%s%s", encoded, suffix);
    return TANDEM_CTL_OK;
}

static void cell_integer(const json_t *value, char *out)
{
    if (json_is_integer(value)) {
        snprintf(out, CELL_MAX, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    } else {
        snprintf(out, CELL_MAX, "-");
    }
}

/* Hours with two decimals; "inf" for work that can never finish (null). */
static void cell_hours(const json_t *value, char *out)
{
    if (json_is_number(value)) {
        snprintf(out, CELL_MAX, "%.2f", json_number_value(value));
    } else {
        snprintf(out, CELL_MAX, "inf");
    }
}

static int sites_print(struct tandem_ctl_context *ctx, const json_t *sites)
{
    static const char *const headers[] = {"SITE",  "STATE",  "CAPACITY", "SET",    "BACKLOG",
                                          "HOURS", "QUEUED", "RUNNING",  "AT_RISK"};
    static const char *const integers[] = {"capacity", "capacity_configured", "backlog_units"};
    static const char *const counts[] = {"jobs_queued", "jobs_in_progress", "jobs_at_risk"};
    struct tandem_ctl_table table;
    char cells[9][CELL_MAX];
    const char *row[9];
    size_t i;
    const json_t *site;
    if (tandem_ctl_table_init(&table, 9, headers) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
    }
    int rc = TANDEM_CTL_OK;
    json_array_foreach(sites, i, site)
    {
        const char *name = json_string_value(json_object_get(site, "name"));
        const char *state = json_string_value(json_object_get(site, "state"));
        snprintf(cells[0], CELL_MAX, "%s", name != NULL ? name : "?");
        snprintf(cells[1], CELL_MAX, "%s%s", state != NULL ? state : "?",
                 json_is_true(json_object_get(site, "witness")) ? " (witness)" : "");
        for (size_t k = 0; k < 3; k++) {
            cell_integer(json_object_get(site, integers[k]), cells[2 + k]);
        }
        cell_hours(json_object_get(site, "backlog_hours"), cells[5]);
        for (size_t k = 0; k < 3; k++) {
            cell_integer(json_object_get(site, counts[k]), cells[6 + k]);
        }
        for (size_t k = 0; k < 9; k++) {
            row[k] = cells[k];
        }
        if (tandem_ctl_table_add(&table, row) != 0) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
            break;
        }
    }
    if (rc == TANDEM_CTL_OK && tandem_ctl_table_print(&table, ctx->out) != 0) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "writing output failed");
    }
    tandem_ctl_table_free(&table);
    return rc;
}

int tandem_ctl_site_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    json_t *root = NULL;
    const char *path =
        tandem_ctl_args_flag(args, "local") != NULL ? "/v1/sites?consistency=local" : "/v1/sites";
    struct tandem_ctl_request req = {"GET", path, NULL, 0, NULL};
    int rc = tandem_ctl_call_json(ctx, &req, &root);
    json_t *sites = json_object_get(root, "sites");
    if (rc == TANDEM_CTL_OK && !json_is_array(sites)) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "answer has no \"sites\" list");
    }
    if (rc == TANDEM_CTL_OK) {
        rc = ctx->output == TANDEM_CTL_OUTPUT_JSON ? tandem_ctl_print_json(ctx, root)
                                                   : sites_print(ctx, sites);
    }
    json_decref(root);
    return rc;
}

int tandem_ctl_site_set_capacity(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[TANDEM_CTL_URL_MAX], *end = NULL;
    const char *text = args->positional[1];
    errno = 0;
    long capacity = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || capacity < 0 || capacity > CAPACITY_MAX) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE,
                               "N must be effort units per hour from 0 to %ld, got '%s'",
                               CAPACITY_MAX, text);
    }
    int rc = site_path(ctx, args->positional[0], "/capacity", path, sizeof path);
    json_t *body = json_pack("{s:I}", "capacity", (json_int_t)capacity), *out = NULL;
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_post_json(ctx, path, body, &out);
    }
    json_decref(body);
    if (rc == TANDEM_CTL_OK && ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        rc = tandem_ctl_print_json(ctx, out);
    } else if (rc == TANDEM_CTL_OK) {
        char previous[CELL_MAX];
        cell_integer(json_object_get(out, "previous"), previous);
        fprintf(ctx->out, "site %s: capacity %s -> %ld units/h%s\n", args->positional[0],
                strcmp(previous, "-") == 0 ? "unset" : previous, capacity,
                json_is_true(json_object_get(out, "changed")) ? "" : " (unchanged)");
    }
    json_decref(out);
    return rc;
}

int tandem_ctl_site_capacity_history(struct tandem_ctl_context *ctx,
                                     const struct tandem_ctl_args *args)
{
    static const char *const headers[] = {"SEQ", "AT", "BY", "BY_SITE", "OLD", "NEW", "INDEX"};
    static const char *const fields[] = {"seq", "at", "by", "by_site", "old", "new", "index"};
    char path[TANDEM_CTL_URL_MAX];
    size_t limit;
    int rc = tandem_ctl_limit_flag(ctx, args, &limit);
    if (rc == TANDEM_CTL_OK) {
        rc = site_path(ctx, args->positional[0], "/capacity/history", path, sizeof path);
    }
    if (rc == TANDEM_CTL_OK && tandem_ctl_args_flag(args, "limit") != NULL) {
        char number[32];
        snprintf(number, sizeof number, "%zu",
                 limit < HISTORY_LIMIT_MAX ? limit : HISTORY_LIMIT_MAX);
        rc = tandem_ctl_query_append(ctx, path, sizeof path, "limit", number);
    }
    json_t *root = NULL;
    struct tandem_ctl_request req = {"GET", path, NULL, 0, NULL};
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_call_json(ctx, &req, &root);
    }
    json_t *history = json_object_get(root, "history");
    if (rc == TANDEM_CTL_OK && !json_is_array(history)) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "answer has no \"history\" list");
    }
    if (rc == TANDEM_CTL_OK) {
        rc = ctx->output == TANDEM_CTL_OUTPUT_JSON
                 ? tandem_ctl_print_json(ctx, root)
                 : tandem_ctl_objects_print(ctx, history, headers, fields, 7);
    }
    json_decref(root);
    return rc;
}
