/* tandemctl trace commands (timelines, retention purge, disposal records) and the helpers the job
 * and box commands share: query building, paging, table cells and JSON posts. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/ctl.h"
#include "node/ctl/encode.h"
#include "node/ctl/output.h"

#define PAGE_MAX          1000   /* items asked for per page (the server's largest page) */
#define PAGES_MAX         100000 /* a listing of a million rows needs 1000 pages */
#define PURGE_ROUNDS_MAX  10000  /* purge commands one `trace purge` sends while more remain */
#define DETAILS_CELL_MAX  160    /* DETAILS column width */
#define ENCODED_VALUE_MAX (TANDEM_CTL_VALUE_MAX * 3 + 1)

int tandem_ctl_query_append(struct tandem_ctl_context *ctx, char *path, size_t size,
                            const char *name, const char *value)
{
    char encoded[ENCODED_VALUE_MAX];
    size_t used = strlen(path);
    if (value == NULL) {
        return TANDEM_CTL_OK;
    }
    if (tandem_ctl_percent_encode(value, strlen(value), encoded, sizeof encoded) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--%s: value too long", name);
    }
    int n =
        snprintf(path + used, size - used, "%s%s=%s", strchr(path, '?') ? "&" : "?", name, encoded);
    if (n < 0 || (size_t)n >= size - used) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "request path too long");
    }
    return TANDEM_CTL_OK;
}

int tandem_ctl_limit_flag(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                          size_t *limit)
{
    const char *text = tandem_ctl_args_flag(args, "limit");
    *limit = TANDEM_CTL_TABLE_ROWS_MAX;
    if (text == NULL) {
        return TANDEM_CTL_OK;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || n == 0 ||
        n > TANDEM_CTL_TABLE_ROWS_MAX) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--limit: expected 1..%d, got '%s'",
                               TANDEM_CTL_TABLE_ROWS_MAX, text);
    }
    *limit = (size_t)n;
    return TANDEM_CTL_OK;
}

/* base plus limit and the continuation from the previous page's next (a string or a number). */
static int page_path(struct tandem_ctl_context *ctx, const char *base, size_t want,
                     const json_t *next, char *path, size_t size)
{
    char number[32];
    snprintf(path, size, "%s", base);
    snprintf(number, sizeof number, "%zu", want < PAGE_MAX ? want : PAGE_MAX);
    int rc = tandem_ctl_query_append(ctx, path, size, "limit", number);
    if (rc == TANDEM_CTL_OK && json_is_string(next)) {
        rc = tandem_ctl_query_append(ctx, path, size, "after", json_string_value(next));
    } else if (rc == TANDEM_CTL_OK && json_is_integer(next)) {
        snprintf(number, sizeof number, "%" JSON_INTEGER_FORMAT, json_integer_value(next));
        rc = tandem_ctl_query_append(ctx, path, size, "after", number);
    }
    return rc;
}

int tandem_ctl_page_all(struct tandem_ctl_context *ctx, const char *base, const char *key,
                        size_t limit, json_t *out, bool *more)
{
    char path[TANDEM_CTL_URL_MAX];
    json_t *next = NULL; /* owned: the previous page's "next" */
    int rc = TANDEM_CTL_OK;
    *more = true;
    for (size_t page = 0; page < PAGES_MAX && json_array_size(out) < limit && *more; page++) {
        json_t *root = NULL;
        rc = page_path(ctx, base, limit - json_array_size(out), next, path, sizeof path);
        struct tandem_ctl_request req = {"GET", path, NULL, 0, NULL};
        if (rc == TANDEM_CTL_OK) {
            rc = tandem_ctl_call_json(ctx, &req, &root);
        }
        if (rc != TANDEM_CTL_OK) {
            break;
        }
        json_t *items = json_object_get(root, key);
        if (!json_is_array(items)) {
            json_decref(root);
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "answer has no \"%s\" list", key);
            break;
        }
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item)
        {
            if (json_array_size(out) < limit) {
                json_array_append(out, item);
            }
        }
        json_decref(next);
        next = json_incref(json_object_get(root, "next"));
        *more = next != NULL && !json_is_null(next);
        json_decref(root);
    }
    json_decref(next);
    return rc;
}

/* Objects become "key=value key=value", arrays "a,b", null "-". */
void tandem_ctl_cell(const json_t *value, char *out, size_t size)
{
    size_t used = 0;
    const char *key;
    json_t *item;
    size_t i;
    out[0] = '\0';
    if (json_is_object(value)) {
        json_object_foreach((json_t *)value, key, item)
        {
            char inner[DETAILS_CELL_MAX];
            tandem_ctl_cell(item, inner, sizeof inner);
            int n = snprintf(out + used, size - used, "%s%s=%s", used ? " " : "", key, inner);
            used = n < 0 || (size_t)n >= size - used ? size - 1 : used + (size_t)n;
        }
    } else if (json_is_array(value)) {
        json_array_foreach(value, i, item)
        {
            int n = snprintf(out + used, size - used, "%s%s", i ? "," : "",
                             json_is_string(item) ? json_string_value(item) : "?");
            used = n < 0 || (size_t)n >= size - used ? size - 1 : used + (size_t)n;
        }
    } else if (json_is_string(value)) {
        snprintf(out, size, "%s", json_string_value(value));
    } else if (json_is_integer(value)) {
        snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    } else if (json_is_boolean(value)) {
        snprintf(out, size, "%s", json_is_true(value) ? "yes" : "no");
    } else {
        snprintf(out, size, "-");
    }
}

/* Prints rows of objects as a table with the given fields as columns (upper-cased headers). */
int tandem_ctl_objects_print(struct tandem_ctl_context *ctx, const json_t *items,
                             const char *const *headers, const char *const *fields, size_t columns)
{
    struct tandem_ctl_table table;
    char cells[TANDEM_CTL_TABLE_COLUMNS_MAX][DETAILS_CELL_MAX];
    const char *row[TANDEM_CTL_TABLE_COLUMNS_MAX];
    size_t i;
    json_t *item;
    int rc = TANDEM_CTL_OK;
    if (tandem_ctl_table_init(&table, columns, headers) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "table setup failed");
    }
    json_array_foreach(items, i, item)
    {
        for (size_t c = 0; c < columns; c++) {
            json_t *value = json_object_get(item, fields[c]);
            tandem_ctl_cell(value, cells[c], sizeof cells[c]);
            row[c] = value == NULL || json_is_null(value) || cells[c][0] == '\0' ? "-" : cells[c];
        }
        if (tandem_ctl_table_add(&table, row) != 0) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory building the table");
            break;
        }
    }
    if (rc == TANDEM_CTL_OK && tandem_ctl_table_print(&table, ctx->out) != 0) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "writing output failed");
    }
    tandem_ctl_table_free(&table);
    return rc;
}

/* Every field of one object, one "FIELD VALUE" row each. */
static int object_print(struct tandem_ctl_context *ctx, const json_t *object)
{
    static const char *const headers[] = {"FIELD", "VALUE"};
    struct tandem_ctl_table table;
    char cell[DETAILS_CELL_MAX * 4];
    const char *key;
    json_t *value;
    int rc = TANDEM_CTL_OK;
    if (tandem_ctl_table_init(&table, 2, headers) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "table setup failed");
    }
    json_object_foreach((json_t *)object, key, value)
    {
        tandem_ctl_cell(value, cell, sizeof cell);
        const char *row[] = {key, json_is_null(value) || cell[0] == '\0' ? "-" : cell};
        if (tandem_ctl_table_add(&table, row) != 0) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory building the table");
            break;
        }
    }
    if (rc == TANDEM_CTL_OK && tandem_ctl_table_print(&table, ctx->out) != 0) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "writing output failed");
    }
    tandem_ctl_table_free(&table);
    return rc;
}

int tandem_ctl_get_print(struct tandem_ctl_context *ctx, const char *path)
{
    json_t *root = NULL;
    struct tandem_ctl_request req = {"GET", path, NULL, 0, NULL};
    int rc = tandem_ctl_call_json(ctx, &req, &root);
    if (rc == TANDEM_CTL_OK) {
        rc = ctx->output == TANDEM_CTL_OUTPUT_JSON ? tandem_ctl_print_json(ctx, root)
                                                   : object_print(ctx, root);
    }
    json_decref(root);
    return rc;
}

int tandem_ctl_post_json(struct tandem_ctl_context *ctx, const char *path, const json_t *body,
                         json_t **out)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body != NULL && text == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
    }
    struct tandem_ctl_request req = {"POST", path, text, text ? strlen(text) : 0,
                                     "application/json"};
    int rc = tandem_ctl_call_json(ctx, &req, out);
    free(text);
    return rc;
}

int tandem_ctl_trace_print(struct tandem_ctl_context *ctx, const char *kind, const char *id)
{
    static const char *const headers[] = {"SEQ", "TIME", "ACTION", "ACTOR", "SITE", "DETAILS"};
    static const char *const fields[] = {"seq", "time", "action", "actor", "site", "details"};
    char encoded[ENCODED_VALUE_MAX], base[TANDEM_CTL_URL_MAX];
    bool more;
    if (id[0] == '\0' || tandem_ctl_percent_encode(id, strlen(id), encoded, sizeof encoded) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "ID must be 1 to %d bytes",
                               TANDEM_CTL_VALUE_MAX);
    }
    snprintf(base, sizeof base, "/v1/trace/%s/%s", kind, encoded);
    json_t *events = json_array();
    if (events == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
    }
    int rc = tandem_ctl_page_all(ctx, base, "events", TANDEM_CTL_TABLE_ROWS_MAX, events, &more);
    if (rc == TANDEM_CTL_OK && ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        json_t *root = json_pack("{s:O}", "events", events);
        rc = tandem_ctl_print_json(ctx, root);
        json_decref(root);
    } else if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_objects_print(ctx, events, headers, fields, 6);
    }
    json_decref(events);
    return rc;
}

int tandem_ctl_trace_job(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    return tandem_ctl_trace_print(ctx, "job", args->positional[0]);
}

int tandem_ctl_trace_box(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    return tandem_ctl_trace_print(ctx, "box", args->positional[0]);
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
    static const char *const headers[] = {"SEQ", "TIME", "KIND", "BOX", "EVENTS", "ACTOR", "SITE"};
    static const char *const fields[] = {"seq",           "time",  "kind", "box",
                                         "events_purged", "actor", "site"};
    size_t limit;
    bool more;
    int rc = tandem_ctl_limit_flag(ctx, args, &limit);
    json_t *list = json_array();
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_page_all(ctx, "/v1/disposals", "disposals", limit, list, &more);
    }
    if (rc == TANDEM_CTL_OK && ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        json_t *root = json_pack("{s:O}", "disposals", list);
        rc = tandem_ctl_print_json(ctx, root);
        json_decref(root);
    } else if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_objects_print(ctx, list, headers, fields, 7);
    }
    json_decref(list);
    return rc;
}
