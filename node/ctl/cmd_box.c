/* tandemctl box commands: check-in (one box, or ledger rows from a CSV or JSON file), get, list,
 * pick, return, move, dispose and trace, against /v1/boxes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/ctl.h"
#include "node/ctl/listing.h"

#define ROWS_FILE_MAX    (64L * 1024 * 1024) /* a ledger file; the server's body limit is lower */
#define CHECKIN_ROWS_MAX 10000               /* rows of one bulk check-in (the server's limit) */
#define CSV_COLUMNS_MAX  16
#define CSV_FIELD_MAX    32768 /* 256 volume ids of 64 bytes fit */
#define VOLUMES_MAX      256
#define ROW_ERRORS_SHOWN 100 /* the server lists at most this many too */

static const char *const csv_columns[] = {"id",    "ledger",  "client",       "site",
                                          "shelf", "volumes", "retain_until", NULL};

/* "a;b;c" (CSV) or "a,b,c" (flag) into a JSON array. */
static json_t *list_split(const char *text, size_t len, char separator)
{
    json_t *out = json_array();
    size_t i = 0;
    for (size_t n = 0; out != NULL && n <= VOLUMES_MAX && i < len; n++) {
        size_t start = i;
        while (i < len && text[i] != separator) {
            i++;
        }
        json_array_append_new(out, json_stringn(text + start, i - start));
        i++;
    }
    return out;
}

/* ---- CSV: RFC 4180 fields (quotes, "" escapes), records ending in \n or \r\n ---- */

struct csv {
    const char *p, *end;
    size_t line; /* of the next character */
};

/* Appends ch to the field; -1 (with why in out) when the field is full. */
static int csv_put(char *out, size_t *len, char ch)
{
    if (*len + 1 >= CSV_FIELD_MAX) {
        snprintf(out, CSV_FIELD_MAX, "field longer than %d bytes", CSV_FIELD_MAX);
        return -1;
    }
    out[(*len)++] = ch;
    return 0;
}

/* Reads one field into out; *last is set when it ended its record. Returns 0, or -1 (with why
 * in out) when a quote is unterminated or the field is too long. */
static int csv_field(struct csv *c, char *out, size_t *len, bool *last)
{
    bool quoted = c->p < c->end && *c->p == '"';
    *len = 0;
    c->p += quoted;
    for (; c->p < c->end; c->p++) {
        char ch = *c->p;
        if (quoted && ch == '"' && c->p + 1 < c->end && c->p[1] == '"') {
            c->p++; /* "" inside quotes is one quote */
        } else if (quoted && ch == '"') {
            quoted = false;
            continue;
        } else if (!quoted && (ch == ',' || ch == '\n' || ch == '\r')) {
            break;
        }
        c->line += ch == '\n';
        if (csv_put(out, len, ch) != 0) {
            return -1;
        }
    }
    if (quoted) {
        snprintf(out, CSV_FIELD_MAX, "unterminated quote");
        return -1;
    }
    out[*len] = '\0';
    *last = c->p >= c->end || *c->p != ',';
    if (!*last) {
        c->p++;
        return 0;
    }
    c->p += c->p < c->end && *c->p == '\r';
    if (c->p < c->end && *c->p == '\n') {
        c->p++;
        c->line++;
    }
    return 0;
}

static int csv_header(struct tandem_ctl_context *ctx, struct csv *c, char *field, int *columns,
                      size_t *n_columns)
{
    bool last = false;
    size_t len;
    for (*n_columns = 0; !last; (*n_columns)++) {
        if (*n_columns == CSV_COLUMNS_MAX || csv_field(c, field, &len, &last) != 0) {
            return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "CSV header: %s",
                                   *n_columns == CSV_COLUMNS_MAX ? "too many columns" : field);
        }
        columns[*n_columns] = -1;
        for (int k = 0; csv_columns[k] != NULL; k++) {
            columns[*n_columns] = strcmp(field, csv_columns[k]) == 0 ? k : columns[*n_columns];
        }
        if (columns[*n_columns] < 0) {
            return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE,
                                   "CSV header: unknown column '%s' (known: id, ledger, client, "
                                   "site, shelf, volumes, retain_until)",
                                   field);
        }
    }
    return TANDEM_CTL_OK;
}

/* One record into a row object; *blank when every field was empty. */
static int csv_record(struct tandem_ctl_context *ctx, struct csv *c, char *field,
                      const int *columns, size_t n_columns, json_t *row, bool *blank)
{
    bool last = false;
    size_t len, line = c->line;
    *blank = true;
    for (size_t i = 0; !last; i++) {
        if (csv_field(c, field, &len, &last) != 0) {
            return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "CSV line %zu: %s", line, field);
        }
        if (i >= n_columns) {
            return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "CSV line %zu: more fields than columns",
                                   line);
        }
        if (len == 0) {
            continue;
        }
        *blank = false;
        const char *name = csv_columns[columns[i]];
        json_object_set_new(row, name,
                            strcmp(name, "volumes") == 0 ? list_split(field, len, ';')
                                                         : json_stringn(field, len));
    }
    return TANDEM_CTL_OK;
}

/* Parses CSV text into rows; lines[i] is the file line of row i. */
static int csv_rows(struct tandem_ctl_context *ctx, const char *text, size_t len, json_t *rows,
                    size_t *lines)
{
    struct csv c = {text, text + len, 1};
    int columns[CSV_COLUMNS_MAX];
    size_t n_columns;
    char *field = malloc(CSV_FIELD_MAX);
    if (field == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
    }
    int rc = csv_header(ctx, &c, field, columns, &n_columns);
    while (rc == TANDEM_CTL_OK && c.p < c.end) {
        bool blank;
        size_t line = c.line;
        json_t *row = json_object();
        rc = csv_record(ctx, &c, field, columns, n_columns, row, &blank);
        if (rc == TANDEM_CTL_OK && !blank && json_array_size(rows) == CHECKIN_ROWS_MAX) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "more than %d rows", CHECKIN_ROWS_MAX);
        }
        if (rc == TANDEM_CTL_OK && !blank) {
            lines[json_array_size(rows)] = line;
            json_array_append(rows, row);
        }
        json_decref(row);
    }
    free(field);
    return rc;
}

static int file_read(struct tandem_ctl_context *ctx, const char *path, char **text, size_t *len)
{
    *text = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s: %s", path, strerror(errno));
    }
    *text = malloc(ROWS_FILE_MAX + 1);
    *len = *text != NULL ? fread(*text, 1, ROWS_FILE_MAX + 1, f) : 0;
    bool failed = *text == NULL || ferror(f);
    fclose(f);
    if (failed || *len > ROWS_FILE_MAX) {
        free(*text);
        *text = NULL;
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s: %s", path,
                               failed ? "read failed" : "larger than 64 MiB");
    }
    (*text)[*len] = '\0';
    return TANDEM_CTL_OK;
}

/* ROWS.csv or ROWS.json (an array of rows, or {"boxes": [...]}) into rows. */
static int rows_load(struct tandem_ctl_context *ctx, const char *path, json_t *rows, size_t *lines,
                     bool *csv)
{
    size_t n = strlen(path), len = 0;
    char *text = NULL; /* file_read leaves it NULL when it fails before reading */
    *csv = n > 4 && strcmp(path + n - 4, ".csv") == 0;
    if (!*csv && !(n > 5 && strcmp(path + n - 5, ".json") == 0)) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--file must name a .csv or .json file");
    }
    int rc = file_read(ctx, path, &text, &len);
    if (rc != TANDEM_CTL_OK || *csv) {
        rc = rc == TANDEM_CTL_OK ? csv_rows(ctx, text, len, rows, lines) : rc;
        free(text);
        return rc;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    free(text);
    json_t *list = json_is_object(root) ? json_object_get(root, "boxes") : root;
    if (!json_is_array(list) || json_array_size(list) > CHECKIN_ROWS_MAX) {
        json_decref(root);
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s: %s", path,
                               root == NULL ? jerr.text
                                            : "expected an array of at most 10000 rows or "
                                              "{\"boxes\": [...]}");
    }
    json_array_extend(rows, list);
    json_decref(root);
    return TANDEM_CTL_OK;
}

/* The server's per-row errors, on stderr, with CSV line numbers when there are. */
static void row_errors_print(const struct tandem_ctl_response *resp, const size_t *lines,
                             size_t n_rows, bool csv)
{
    json_t *root = json_loadb(resp->body ? resp->body : "", resp->body_len, 0, NULL);
    json_t *errors = json_object_get(root, "rows");
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        json_int_t row = json_integer_value(json_object_get(e, "row"));
        const char *why = json_string_value(json_object_get(e, "error"));
        if (i == ROW_ERRORS_SHOWN) {
            break;
        }
        if (csv && row >= 0 && (size_t)row < n_rows) {
            fprintf(stderr, "  line %zu: %s\n", lines[row], why ? why : "?");
        } else {
            fprintf(stderr, "  row %" JSON_INTEGER_FORMAT ": %s\n", row, why ? why : "?");
        }
    }
    json_decref(root);
}

static int checkin_send(struct tandem_ctl_context *ctx, json_t *body, const size_t *lines, bool csv)
{
    struct tandem_ctl_response resp;
    json_error_t jerr;
    char *text = json_dumps(body, JSON_COMPACT);
    if (text == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
    }
    struct tandem_ctl_request req = {"POST", "/v1/boxes", text, strlen(text), "application/json"};
    tandem_ctl_response_init(&resp);
    int rc = tandem_ctl_call(ctx, &req, &resp);
    free(text);
    json_t *rows = json_object_get(body, "boxes");
    if (rc == TANDEM_CTL_EREFUSED && resp.status >= 400) {
        row_errors_print(&resp, lines, rows ? json_array_size(rows) : 0, csv);
    }
    json_t *root = rc == TANDEM_CTL_OK ? json_loadb(resp.body, resp.body_len, 0, &jerr) : NULL;
    if (rc == TANDEM_CTL_OK && root == NULL) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "bad JSON answer: %s", jerr.text);
    } else if (rc == TANDEM_CTL_OK && ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        rc = tandem_ctl_print_json(ctx, root);
    } else if (rc == TANDEM_CTL_OK && rows != NULL) {
        fprintf(ctx->out, "checked in %" JSON_INTEGER_FORMAT " boxes\n",
                json_integer_value(json_object_get(root, "checked_in")));
    } else if (rc == TANDEM_CTL_OK) {
        fprintf(ctx->out, "checked in box %s: %s\n", json_string_value(json_object_get(root, "id")),
                json_string_value(json_object_get(root, "status")));
    }
    json_decref(root);
    tandem_ctl_response_free(&resp);
    return rc;
}

static json_t *single_box(const struct tandem_ctl_args *args)
{
    const char *shelf = tandem_ctl_args_flag(args, "shelf");
    const char *volumes = tandem_ctl_args_flag(args, "volumes");
    const char *until = tandem_ctl_args_flag(args, "retain-until");
    json_t *box =
        json_pack("{s:s,s:s,s:s,s:s}", "id", args->positional[0], "ledger", args->positional[1],
                  "client", args->positional[2], "site", args->positional[3]);
    if (box != NULL && shelf != NULL) {
        json_object_set_new(box, "shelf", json_string(shelf));
    }
    if (box != NULL && volumes != NULL) {
        json_object_set_new(box, "volumes", list_split(volumes, strlen(volumes), ','));
    }
    if (box != NULL && until != NULL) {
        json_object_set_new(box, "retain_until", json_string(until));
    }
    return box;
}

int tandem_ctl_box_checkin(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *file = tandem_ctl_args_flag(args, "file");
    size_t *lines = calloc(CHECKIN_ROWS_MAX, sizeof *lines);
    json_t *rows = json_array(), *body = NULL;
    bool csv = false;
    int rc = lines == NULL || rows == NULL
                 ? tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory")
                 : TANDEM_CTL_OK;
    if (rc == TANDEM_CTL_OK && (file != NULL) == (args->positional_count == 4)) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "give ID LEDGER CLIENT SITE, or --file");
    }
    if (rc == TANDEM_CTL_OK && file != NULL) {
        rc = rows_load(ctx, file, rows, lines, &csv);
        if (rc == TANDEM_CTL_OK && json_array_size(rows) == 0) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s holds no rows", file);
        }
        body = json_pack("{s:O}", "boxes", rows);
    } else if (rc == TANDEM_CTL_OK) {
        body = single_box(args);
    }
    if (rc == TANDEM_CTL_OK && body == NULL) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "arguments must be UTF-8");
    }
    if (rc == TANDEM_CTL_OK) {
        rc = checkin_send(ctx, body, lines, csv);
    }
    json_decref(body);
    json_decref(rows);
    free(lines);
    return rc;
}

int tandem_ctl_box_get(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    return tandem_ctl_item_show(ctx, args, "/v1/boxes");
}

int tandem_ctl_box_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    static const char *const filters[] = {"site", "status", "job", NULL};
    static const struct tandem_ctl_listing listing = {"boxes", filters, true,
                                                      TANDEM_CTL_VIEW_BOXES};
    return tandem_ctl_list(ctx, args, "/v1/boxes", &listing);
}

/* "box B: status at site/shelf, job J". */
static int box_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                     const json_t *box)
{
    const char *job = json_string_value(json_object_get(box, "job"));
    (void)args;
    fprintf(ctx->out, "box %s: %s at %s/%s%s%s\n", json_string_value(json_object_get(box, "id")),
            json_string_value(json_object_get(box, "status")),
            json_string_value(json_object_get(box, "site")),
            json_is_string(json_object_get(box, "shelf"))
                ? json_string_value(json_object_get(box, "shelf"))
                : "-",
            job != NULL ? ", job " : "", job != NULL ? job : "");
    return TANDEM_CTL_OK;
}

/* POSTs body (consumed; NULL: the arguments named what were not UTF-8) to the box's verb. */
static int box_action(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                      const char *verb, json_t *body, const char *what)
{
    int rc = TANDEM_CTL_OK;
    if (what != NULL && body == NULL) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s must be UTF-8", what);
    } else {
        rc = tandem_ctl_item_action(ctx, args, "/v1/boxes", verb, body, box_print);
    }
    json_decref(body);
    return rc;
}

int tandem_ctl_box_pick(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    return box_action(ctx, args, "pick", json_pack("{s:s}", "job", args->positional[1]), "JOB");
}

int tandem_ctl_box_action(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    return box_action(ctx, args, ctx->command->verb, NULL, NULL);
}

int tandem_ctl_box_move(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    return box_action(
        ctx, args, "move",
        json_pack("{s:s,s:s}", "site", args->positional[1], "shelf", args->positional[2]),
        "SITE and SHELF");
}
