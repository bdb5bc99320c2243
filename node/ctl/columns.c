/* Column tables for tandemctl: the cell formatters and the printer every listing shares. */
#include "node/ctl/columns.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "node/ctl/output.h"

#define OBJECT_VALUE_SIZE (TANDEM_CTL_VALUE_SIZE * 4) /* a single object's VALUE column */

static const char *absent_text(const struct tandem_ctl_column *column)
{
    return column->absent != NULL ? column->absent : "-";
}

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
            char inner[TANDEM_CTL_VALUE_SIZE];
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

void tandem_ctl_cell_value(const json_t *item, const struct tandem_ctl_column *column,
                           const void *context, char *out, size_t size)
{
    const json_t *value = json_object_get(item, column->field);
    (void)context;
    tandem_ctl_cell(value, out, size < TANDEM_CTL_VALUE_SIZE ? size : TANDEM_CTL_VALUE_SIZE);
    if (value == NULL || json_is_null(value) || out[0] == '\0') {
        snprintf(out, size, "%s", absent_text(column));
    }
}

void tandem_ctl_cell_text(const json_t *item, const struct tandem_ctl_column *column,
                          const void *context, char *out, size_t size)
{
    const char *text = json_string_value(json_object_get(item, column->field));
    (void)context;
    snprintf(out, size, "%s", text != NULL ? text : absent_text(column));
}

void tandem_ctl_cell_integer(const json_t *item, const struct tandem_ctl_column *column,
                             const void *context, char *out, size_t size)
{
    const json_t *value = json_object_get(item, column->field);
    (void)context;
    if (json_is_integer(value)) {
        snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    } else {
        snprintf(out, size, "%s", absent_text(column));
    }
}

void tandem_ctl_cell_index(const json_t *item, const struct tandem_ctl_column *column,
                           const void *context, char *out, size_t size)
{
    const json_t *value = json_object_get(item, column->field);
    (void)context;
    if (json_is_integer(value) && json_integer_value(value) >= 0) {
        snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    } else {
        snprintf(out, size, "%s", absent_text(column));
    }
}

void tandem_ctl_cell_hours(const json_t *item, const struct tandem_ctl_column *column,
                           const void *context, char *out, size_t size)
{
    const json_t *value = json_object_get(item, column->field);
    (void)context;
    if (json_is_number(value)) {
        snprintf(out, size, "%.2f", json_number_value(value));
    } else {
        snprintf(out, size, "%s", absent_text(column));
    }
}

void tandem_ctl_cell_time(const json_t *item, const struct tandem_ctl_column *column,
                          const void *context, char *out, size_t size)
{
    const json_t *value = json_object_get(item, column->field);
    json_int_t ms = json_is_integer(value) ? json_integer_value(value) : 0;
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;
    (void)context;
    if (ms <= 0 || gmtime_r(&seconds, &tm) == NULL ||
        strftime(out, size, "%Y-%m-%d %H:%M:%S", &tm) == 0) {
        snprintf(out, size, "%s", absent_text(column));
    }
}

void tandem_ctl_cell_yes_no(const json_t *item, const struct tandem_ctl_column *column,
                            const void *context, char *out, size_t size)
{
    (void)context;
    snprintf(out, size, "%s", json_is_true(json_object_get(item, column->field)) ? "yes" : "no");
}

void tandem_ctl_cell_site_state(const json_t *item, const struct tandem_ctl_column *column,
                                const void *context, char *out, size_t size)
{
    const char *state = json_string_value(json_object_get(item, column->field));
    (void)context;
    snprintf(out, size, "%s%s", state != NULL ? state : absent_text(column),
             json_is_true(json_object_get(item, "witness")) ? " (witness)" : "");
}

/* Prints the table and frees it; rc is what filling it returned. */
static int table_finish(struct tandem_ctl_context *ctx, struct tandem_ctl_table *table, int rc)
{
    if (rc == TANDEM_CTL_OK && tandem_ctl_table_print(table, ctx->out) != 0) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "writing output failed");
    }
    tandem_ctl_table_free(table);
    return rc;
}

static int table_row(struct tandem_ctl_context *ctx, struct tandem_ctl_table *table,
                     const char *const *row)
{
    if (tandem_ctl_table_add(table, row) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory building the table");
    }
    return TANDEM_CTL_OK;
}

int tandem_ctl_columns_print(struct tandem_ctl_context *ctx, const json_t *items,
                             const struct tandem_ctl_column *columns, size_t column_count,
                             const void *context)
{
    struct tandem_ctl_table table;
    const char *headers[TANDEM_CTL_TABLE_COLUMNS_MAX];
    char cells[TANDEM_CTL_TABLE_COLUMNS_MAX][TANDEM_CTL_CELL_SIZE];
    const char *row[TANDEM_CTL_TABLE_COLUMNS_MAX];
    size_t i;
    const json_t *item;
    int rc = TANDEM_CTL_OK;

    for (size_t c = 0; c < column_count && c < TANDEM_CTL_TABLE_COLUMNS_MAX; c++) {
        headers[c] = columns[c].header;
        row[c] = cells[c];
    }
    if (tandem_ctl_table_init(&table, column_count, headers) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "table setup failed");
    }
    json_array_foreach(items, i, item)
    {
        for (size_t c = 0; c < column_count; c++) {
            tandem_ctl_cell_format format =
                columns[c].format != NULL ? columns[c].format : tandem_ctl_cell_value;
            format(item, &columns[c], context, cells[c], sizeof cells[c]);
        }
        rc = table_row(ctx, &table, row);
        if (rc != TANDEM_CTL_OK) {
            break;
        }
    }
    return table_finish(ctx, &table, rc);
}

int tandem_ctl_object_print(struct tandem_ctl_context *ctx, const json_t *object)
{
    static const char *const headers[] = {"FIELD", "VALUE"};
    struct tandem_ctl_table table;
    char cell[OBJECT_VALUE_SIZE];
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
        rc = table_row(ctx, &table, row);
        if (rc != TANDEM_CTL_OK) {
            break;
        }
    }
    return table_finish(ctx, &table, rc);
}
