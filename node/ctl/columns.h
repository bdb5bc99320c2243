/* tandemctl's tables of JSON objects: a column table names each column's header, the field it
 * shows and how that field becomes text, and one printer serves every listing. */
#ifndef TANDEM_CTL_COLUMNS_H
#define TANDEM_CTL_COLUMNS_H

#include <stddef.h>

#include <jansson.h>

#include "node/ctl/ctl.h"

#define TANDEM_CTL_CELL_SIZE  1024 /* bytes of one cell; every field the API sends fits */
#define TANDEM_CTL_VALUE_SIZE 160  /* bytes of a cell showing any JSON value (a list's column) */

struct tandem_ctl_column;

/* Writes item's cell for column into out (size bytes, always NUL-terminated). context is the
 * one given to tandem_ctl_columns_print. */
typedef void (*tandem_ctl_cell_format)(const json_t *item, const struct tandem_ctl_column *column,
                                       const void *context, char *out, size_t size);

struct tandem_ctl_column {
    const char *header;            /* borrowed; a string literal */
    const char *field;             /* the item's field the cell shows */
    tandem_ctl_cell_format format; /* NULL: tandem_ctl_cell_value */
    const char *absent; /* shown when the field is missing or of another type; NULL: "-" */
};

/* A column showing any value of field (tandem_ctl_cell_value). */
#define TANDEM_CTL_COLUMN(header, field)                                                           \
    {                                                                                              \
        (header), (field), NULL, NULL                                                              \
    }

/* The columns of a static column table, as tandem_ctl_columns_print takes them. */
#define TANDEM_CTL_COLUMNS(table) (table), (sizeof(table) / sizeof((table)[0]))

/* Prints items (an array of objects) as a table, one row per item. Returns an exit code. */
int tandem_ctl_columns_print(struct tandem_ctl_context *ctx, const json_t *items,
                             const struct tandem_ctl_column *columns, size_t column_count,
                             const void *context);

/* Prints every field of object, one "FIELD VALUE" row each. Returns an exit code. */
int tandem_ctl_object_print(struct tandem_ctl_context *ctx, const json_t *object);

/* One JSON value as a table cell: objects as "k=v k=v", arrays as "a,b", booleans as yes/no,
 * null as "-". */
void tandem_ctl_cell(const json_t *value, char *out, size_t size);

/* Formatters for column tables; each shows column->absent (or "-") when the field does not
 * hold what it expects. */

/* Any value as tandem_ctl_cell puts it, cut to TANDEM_CTL_VALUE_SIZE; "" shows as absent. */
void tandem_ctl_cell_value(const json_t *item, const struct tandem_ctl_column *column,
                           const void *context, char *out, size_t size);
/* A string. */
void tandem_ctl_cell_text(const json_t *item, const struct tandem_ctl_column *column,
                          const void *context, char *out, size_t size);
/* An integer. */
void tandem_ctl_cell_integer(const json_t *item, const struct tandem_ctl_column *column,
                             const void *context, char *out, size_t size);
/* A count or index: an integer of 0 or more. */
void tandem_ctl_cell_index(const json_t *item, const struct tandem_ctl_column *column,
                           const void *context, char *out, size_t size);
/* A number of hours with two decimals. */
void tandem_ctl_cell_hours(const json_t *item, const struct tandem_ctl_column *column,
                           const void *context, char *out, size_t size);
/* Milliseconds since the epoch (above 0) as "YYYY-MM-DD HH:MM:SS" UTC. */
void tandem_ctl_cell_time(const json_t *item, const struct tandem_ctl_column *column,
                          const void *context, char *out, size_t size);
/* "yes" when the field is true, else "no". */
void tandem_ctl_cell_yes_no(const json_t *item, const struct tandem_ctl_column *column,
                            const void *context, char *out, size_t size);
/* A site's state string, with " (witness)" when the item's "witness" is true. */
void tandem_ctl_cell_site_state(const json_t *item, const struct tandem_ctl_column *column,
                                const void *context, char *out, size_t size);

#endif
