/* Paged listings for tandemctl: query strings, --limit, the page loop over a "next" cursor and
 * the one handler body every filtered list command shares. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/columns.h"
#include "node/ctl/ctl.h"
#include "node/ctl/encode.h"
#include "node/ctl/listing.h"
#include "node/ctl/output.h"

#define PAGE_MAX          1000   /* items asked for per page (the server's largest page) */
#define PAGES_MAX         100000 /* a listing of a million rows needs 1000 pages */
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

/* GETs base page by page (limit, after = the previous page's "next") and appends the items
 * under key to out until the server says there are no more or limit items arrived. */
static int page_all(struct tandem_ctl_context *ctx, const char *base, const char *key, size_t limit,
                    json_t *out, bool *more)
{
    char path[TANDEM_CTL_URL_MAX];
    json_t *next = NULL; /* owned: the previous page's "next" */
    int rc = TANDEM_CTL_OK;
    *more = true;
    for (size_t page = 0; page < PAGES_MAX && json_array_size(out) < limit && *more; page++) {
        json_t *root = NULL;
        rc = page_path(ctx, base, limit - json_array_size(out), next, path, sizeof path);
        if (rc == TANDEM_CTL_OK) {
            rc = tandem_ctl_get_json(ctx, path, key, &root);
        }
        if (rc != TANDEM_CTL_OK) {
            break;
        }
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(root, key), i, item)
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

/* path plus the listing's filters and --local. */
static int list_base(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                     const char *path, const struct tandem_ctl_listing *listing, char *base,
                     size_t size)
{
    int rc = TANDEM_CTL_OK;
    snprintf(base, size, "%s", path);
    for (size_t i = 0; listing->filters != NULL && listing->filters[i] != NULL; i++) {
        const char *filter = listing->filters[i];
        rc = tandem_ctl_query_append(ctx, base, size, filter, tandem_ctl_args_flag(args, filter));
        if (rc != TANDEM_CTL_OK) {
            return rc;
        }
    }
    if (tandem_ctl_args_flag(args, "local") != NULL) {
        rc = tandem_ctl_query_append(ctx, base, size, "consistency", "local");
    }
    return rc;
}

int tandem_ctl_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                    const char *path, const struct tandem_ctl_listing *listing)
{
    char base[TANDEM_CTL_URL_MAX];
    size_t limit;
    bool more = false;
    int rc = tandem_ctl_limit_flag(ctx, args, &limit);
    if (rc == TANDEM_CTL_OK) {
        rc = list_base(ctx, args, path, listing, base, sizeof base);
    }
    json_t *items = json_array();
    if (rc == TANDEM_CTL_OK && items == NULL) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
    }
    if (rc == TANDEM_CTL_OK) {
        rc = page_all(ctx, base, listing->key, limit, items, &more);
    }
    if (rc == TANDEM_CTL_OK && ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        json_t *root = listing->json_more
                           ? json_pack("{s:O,s:b}", listing->key, items, "more", more)
                           : json_pack("{s:O}", listing->key, items);
        rc = tandem_ctl_print_json(ctx, root);
        json_decref(root);
    } else if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_view_print(ctx, items, listing->view, NULL);
    }
    json_decref(items);
    return rc;
}

int tandem_ctl_list_answer(struct tandem_ctl_context *ctx, const char *path, const char *key,
                           bool required, enum tandem_ctl_view view)
{
    json_t *answer = NULL;
    int rc = tandem_ctl_get_json(ctx, path, required ? key : NULL, &answer);
    if (rc == TANDEM_CTL_OK) {
        rc = ctx->output == TANDEM_CTL_OUTPUT_JSON
                 ? tandem_ctl_print_json(ctx, answer)
                 : tandem_ctl_view_print(ctx, json_object_get(answer, key), view, NULL);
    }
    json_decref(answer);
    return rc;
}
