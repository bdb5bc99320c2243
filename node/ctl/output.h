/* tandemctl output: tables with columns sized to their content, and pretty JSON. */
#ifndef TANDEM_CTL_OUTPUT_H
#define TANDEM_CTL_OUTPUT_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#define TANDEM_CTL_TABLE_COLUMNS_MAX 12      /* wider tables do not fit a terminal anyway */
#define TANDEM_CTL_TABLE_ROWS_MAX    1000000 /* rows buffered to size the columns */
#define TANDEM_CTL_TABLE_GAP         "  "    /* between columns */

struct tandem_ctl_table {
    size_t column_count;
    const char *headers[TANDEM_CTL_TABLE_COLUMNS_MAX]; /* borrowed; string literals */
    char **cells; /* owned; row-major row_count * column_count strings, each owned */
    size_t row_count;
    size_t row_capacity; /* rows the cells array has room for */
};

/* Returns 0, or -1 when column_count is 0 or above TANDEM_CTL_TABLE_COLUMNS_MAX. */
int tandem_ctl_table_init(struct tandem_ctl_table *t, size_t column_count,
                          const char *const *headers);

/* Appends a row, copying column_count strings (NULL prints as "-"). Returns 0, or -1 when out
 * of memory or the table already holds TANDEM_CTL_TABLE_ROWS_MAX rows. */
int tandem_ctl_table_add(struct tandem_ctl_table *t, const char *const *cells);

/* Prints the header and the rows, each column as wide as its widest cell (in UTF-8
 * characters), no trailing blanks. Returns 0, or -1 when writing failed. */
int tandem_ctl_table_print(const struct tandem_ctl_table *t, FILE *out);

void tandem_ctl_table_free(struct tandem_ctl_table *t);

/* Prints value with 2-space indentation and a final newline. Returns 0 or -1. */
int tandem_ctl_json_print(FILE *out, const json_t *value);

#endif
