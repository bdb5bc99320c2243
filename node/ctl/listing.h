/* Paged listings for tandemctl: query strings, --limit, and the handler body every filtered
 * list command shares (pages over the server's "next" cursor, then one table or JSON). */
#ifndef TANDEM_CTL_LISTING_H
#define TANDEM_CTL_LISTING_H

#include <stdbool.h>
#include <stddef.h>

#include "node/ctl/columns.h"
#include "node/ctl/ctl.h"

/* Appends "?name=value" or "&name=value" (percent-encoded) to path; nothing when value is
 * NULL. */
int tandem_ctl_query_append(struct tandem_ctl_context *ctx, char *path, size_t size,
                            const char *name, const char *value);
/* --limit N (1..TANDEM_CTL_TABLE_ROWS_MAX), TANDEM_CTL_TABLE_ROWS_MAX when absent. */
int tandem_ctl_limit_flag(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                          size_t *limit);

/* A paged listing: GET path page by page, then one table or one JSON object. */
struct tandem_ctl_listing {
    const char *key;            /* the items' field in every page and in the -o json answer */
    const char *const *filters; /* flags sent on as query fields of the same name; NULL-ended */
    bool json_more;             /* -o json says whether --limit left items out */
    enum tandem_ctl_view view;  /* the table */
};

/* Lists path (plus the listing's filters, --local and --limit from args) as a table or JSON. */
int tandem_ctl_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                    const char *path, const struct tandem_ctl_listing *listing);

/* GETs path (one page) and prints the array under key as view's table, or the whole answer
 * with -o json. required: an answer without that array is refused, not an empty table. */
int tandem_ctl_list_answer(struct tandem_ctl_context *ctx, const char *path, const char *key,
                           bool required, enum tandem_ctl_view view);

#endif
