/* Every table tandemctl prints: one column table (view, header, field, cell formatter) for all
 * views, the cell formatters, and the printer every table goes through. */
#ifndef TANDEM_CTL_COLUMNS_H
#define TANDEM_CTL_COLUMNS_H

#include <stddef.h>

#include <jansson.h>

#include "node/ctl/ctl.h"

#define TANDEM_CTL_CELL_SIZE  1024 /* bytes of one cell; every field the API sends fits */
#define TANDEM_CTL_VALUE_SIZE 160  /* bytes of a cell showing any JSON value (a list's column) */
#define TANDEM_CTL_ARROW      " \xe2\x86\x92 " /* " → ": before and after in a plan */

/* The tables; each row of the column table belongs to one. */
enum tandem_ctl_view {
    TANDEM_CTL_VIEW_KV,               /* kv list */
    TANDEM_CTL_VIEW_STATUS,           /* status: members with their own view */
    TANDEM_CTL_VIEW_MEMBERS,          /* member list */
    TANDEM_CTL_VIEW_JOBS,             /* job list */
    TANDEM_CTL_VIEW_BOXES,            /* box list */
    TANDEM_CTL_VIEW_EVENTS,           /* a job's or box's trace */
    TANDEM_CTL_VIEW_DISPOSALS,        /* trace disposals */
    TANDEM_CTL_VIEW_SITES,            /* site list */
    TANDEM_CTL_VIEW_CAPACITY_HISTORY, /* site capacity-history */
    TANDEM_CTL_VIEW_PLAN_SITES,       /* rebalance plan: sites before and after */
    TANDEM_CTL_VIEW_PLAN_MOVES,       /* rebalance plan: the moves */
    TANDEM_CTL_VIEW_BCP_SITES,        /* bcp status */
    TANDEM_CTL_VIEW_DRILLS,           /* bcp drills */
    TANDEM_CTL_VIEW_SITE_BACKUPS,     /* backup list: the sites' shipped backups */
    TANDEM_CTL_VIEW_COUNT
};

struct tandem_ctl_column;

/* Writes item's cell for column into out (size bytes, always NUL-terminated). context is the
 * one given to tandem_ctl_view_print. */
typedef void tandem_ctl_cell_format(const json_t *item, const struct tandem_ctl_column *column,
                                    const void *context, char *out, size_t size);

struct tandem_ctl_column {
    const char *header;             /* borrowed; a string literal */
    const char *field;              /* the item's field the cell shows */
    tandem_ctl_cell_format *format; /* how the field becomes text */
    const char *absent;             /* shown when the field is missing or of another type */
};

/* Prints items (an array of objects) as view's table, one row per item. context goes to the
 * cell formatters (TANDEM_CTL_VIEW_PLAN_SITES: the scale of its bars, a double). Returns an
 * exit code. */
int tandem_ctl_view_print(struct tandem_ctl_context *ctx, const json_t *items,
                          enum tandem_ctl_view view, const void *context);

/* Prints every field of object, one "FIELD VALUE" row each. Returns an exit code. */
int tandem_ctl_object_print(struct tandem_ctl_context *ctx, const json_t *object);

/* The largest finite backlog in hours, before or after, over every site of a plan: the
 * TANDEM_CTL_VIEW_PLAN_SITES bars' full scale. */
double tandem_ctl_plan_scale(const json_t *sites);

/* One JSON value as a table cell: objects as "k=v k=v", arrays as "a,b", booleans as yes/no,
 * null as "-". */
void tandem_ctl_cell(const json_t *value, char *out, size_t size);

/* Writes item's field as format shows it in a table (absent: see struct tandem_ctl_column). */
void tandem_ctl_field_text(const json_t *item, const char *field, tandem_ctl_cell_format *format,
                           const char *absent, char *out, size_t size);

/* Formatters for single fields too; each shows column->absent when the field does not hold
 * what it expects. */

/* An integer. */
tandem_ctl_cell_format tandem_ctl_cell_integer;
/* A count or index: an integer of 0 or more. */
tandem_ctl_cell_format tandem_ctl_cell_index;
/* A number of hours with two decimals. */
tandem_ctl_cell_format tandem_ctl_cell_hours;
/* Milliseconds since the epoch (above 0) as RFC 3339 UTC (tandem_ctl_time_text). */
tandem_ctl_cell_format tandem_ctl_cell_time;
/* Unix milliseconds as RFC 3339 UTC with milliseconds ("2024-05-01T09:30:00.250Z"), the one
 * way tandemctl shows a time. Returns 0, or -1 (out untouched or cut) when ms is negative or
 * out is too small. */
int tandem_ctl_time_text(long long ms, char *out, size_t size);

#endif
