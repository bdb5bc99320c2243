/* Table and JSON printing for tandemctl. */
#include "node/ctl/output.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_INITIAL_ROWS 16 /* first allocation; doubles after */

int tandem_ctl_table_init(struct tandem_ctl_table *t, size_t column_count,
                          const char *const *headers)
{
    memset(t, 0, sizeof(*t));
    if (column_count == 0 || column_count > TANDEM_CTL_TABLE_COLUMNS_MAX) {
        return -1;
    }
    t->column_count = column_count;
    for (size_t i = 0; i < column_count; i++) {
        t->headers[i] = headers[i];
    }
    return 0;
}

static int table_grow(struct tandem_ctl_table *t)
{
    if (t->row_count < t->row_capacity) {
        return 0;
    }
    if (t->row_count >= TANDEM_CTL_TABLE_ROWS_MAX) {
        return -1;
    }
    size_t capacity = t->row_capacity ? t->row_capacity * 2 : TABLE_INITIAL_ROWS;
    if (capacity > TANDEM_CTL_TABLE_ROWS_MAX) {
        capacity = TANDEM_CTL_TABLE_ROWS_MAX;
    }
    char **cells = realloc(t->cells, capacity * t->column_count * sizeof(*cells));
    if (cells == NULL) {
        return -1;
    }
    t->cells = cells;
    t->row_capacity = capacity;
    return 0;
}

int tandem_ctl_table_add(struct tandem_ctl_table *t, const char *const *cells)
{
    if (table_grow(t) != 0) {
        return -1;
    }
    char **row = t->cells + t->row_count * t->column_count;
    for (size_t i = 0; i < t->column_count; i++) {
        row[i] = strdup(cells[i] != NULL ? cells[i] : "-");
        if (row[i] == NULL) {
            for (size_t k = 0; k < i; k++) {
                free(row[k]);
            }
            return -1;
        }
    }
    t->row_count++;
    return 0;
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t display_width(const char *s)
{
    size_t width = 0;
    for (; *s != '\0'; s++) {
        if (((unsigned char)*s & 0xC0) != 0x80) {
            width++;
        }
    }
    return width;
}

static int table_print_row(const struct tandem_ctl_table *t, const char *const *row,
                           const size_t *widths, FILE *out)
{
    for (size_t i = 0; i < t->column_count; i++) {
        bool last = i + 1 == t->column_count;
        if (fputs(row[i], out) == EOF) {
            return -1;
        }
        if (!last) {
            int pad = (int)(widths[i] - display_width(row[i]));
            if (fprintf(out, "%*s%s", pad, "", TANDEM_CTL_TABLE_GAP) < 0) {
                return -1;
            }
        }
    }
    return fputc('\n', out) == EOF ? -1 : 0;
}

int tandem_ctl_table_print(const struct tandem_ctl_table *t, FILE *out)
{
    size_t widths[TANDEM_CTL_TABLE_COLUMNS_MAX];

    for (size_t i = 0; i < t->column_count; i++) {
        widths[i] = display_width(t->headers[i]);
        for (size_t r = 0; r < t->row_count; r++) {
            size_t w = display_width(t->cells[r * t->column_count + i]);
            widths[i] = w > widths[i] ? w : widths[i];
        }
    }
    if (table_print_row(t, t->headers, widths, out) != 0) {
        return -1;
    }
    for (size_t r = 0; r < t->row_count; r++) {
        const char *const *row = (const char *const *)(t->cells + r * t->column_count);
        if (table_print_row(t, row, widths, out) != 0) {
            return -1;
        }
    }
    return 0;
}

void tandem_ctl_table_free(struct tandem_ctl_table *t)
{
    for (size_t i = 0; i < t->row_count * t->column_count; i++) {
        free(t->cells[i]);
    }
    free(t->cells);
    t->cells = NULL;
    t->row_count = 0;
    t->row_capacity = 0;
}

int tandem_ctl_json_print(FILE *out, const json_t *value)
{
    if (json_dumpf(value, out, JSON_INDENT(2)) != 0) {
        return -1;
    }
    return fputc('\n', out) == EOF ? -1 : 0;
}
