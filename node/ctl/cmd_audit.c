/* tandemctl audit tail|show|verify|failures: the audit trail's newest records, one record, the
 * chain's verification (non-zero exit naming the broken link) and the periodic review of failed
 * logins and denials grouped by actor and source. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node/ctl/ctl.h"
#include "node/ctl/output.h"

#define AUDIT_TAIL_DEFAULT 20
#define AUDIT_TAIL_MAX     1000 /* the server's page */
#define AUDIT_SINCE_MAX    64   /* an RFC 3339 time or a duration */

static const char *text(const json_t *obj, const char *field)
{
    const char *v = json_string_value(json_object_get(obj, field));
    return v == NULL || v[0] == '\0' ? "-" : v;
}

static int records_print(struct tandem_ctl_context *ctx, const json_t *records)
{
    static const char *const headers[] = {"SEQ",  "TIME",   "ACTOR",  "SOURCE",
                                          "NODE", "ACTION", "OBJECT", "STATUS"};
    struct tandem_ctl_table t;
    size_t i;
    json_t *r;
    if (tandem_ctl_table_init(&t, 8, headers) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "table");
    }
    json_array_foreach(records, i, r)
    {
        char seq[24], status[8];
        snprintf(seq, sizeof seq, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(r, "seq")));
        snprintf(status, sizeof status, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(r, "status")));
        const char *cells[] = {seq,
                               text(r, "time"),
                               text(r, "actor"),
                               text(r, "source"),
                               text(r, "node"),
                               text(r, "action"),
                               text(r, "object"),
                               status};
        tandem_ctl_table_add(&t, cells);
    }
    tandem_ctl_table_print(&t, ctx->out);
    tandem_ctl_table_free(&t);
    return TANDEM_CTL_OK;
}

static int list_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                      const json_t *answer)
{
    (void)args;
    return records_print(ctx, json_object_get(answer, "records"));
}

int tandem_ctl_audit_tail(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *value = tandem_ctl_args_flag(args, "limit");
    unsigned long n = AUDIT_TAIL_DEFAULT;
    char path[96];
    json_t *status = NULL, *answer = NULL;
    if (value != NULL) {
        char *end = NULL;
        errno = 0;
        n = strtoul(value, &end, 10);
        if (value[0] < '0' || value[0] > '9' || *end != '\0' || errno != 0 || n == 0 ||
            n > AUDIT_TAIL_MAX) {
            return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--limit: 1 to %d records",
                                   AUDIT_TAIL_MAX);
        }
    }
    int rc = tandem_ctl_get_json(ctx, "/v1/status", NULL, &status);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    json_int_t head = json_integer_value(json_object_get(json_object_get(status, "audit"), "seq"));
    json_decref(status);
    json_int_t after = head > (json_int_t)n ? head - (json_int_t)n : 0;
    snprintf(path, sizeof path, "/v1/audit?after_seq=%" JSON_INTEGER_FORMAT "&limit=%lu", after, n);
    rc = tandem_ctl_get_json(ctx, path, "records", &answer);
    return tandem_ctl_answer(ctx, args, rc, answer, list_print);
}

static int record_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                        const json_t *answer)
{
    (void)args;
    return tandem_ctl_print_json(ctx, answer);
}

int tandem_ctl_audit_show(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *seq = args->positional[0];
    char path[64];
    json_t *answer = NULL;
    if (seq[0] < '0' || seq[0] > '9' || strspn(seq, "0123456789") != strlen(seq) ||
        strlen(seq) > 20) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "SEQ must be a record number, not \"%s\"",
                               seq);
    }
    snprintf(path, sizeof path, "/v1/audit/records/%s", seq);
    int rc = tandem_ctl_get_json(ctx, path, NULL, &answer);
    return tandem_ctl_answer(ctx, args, rc, answer, record_print);
}

int tandem_ctl_audit_verify(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    json_t *answer = NULL;
    int rc = tandem_ctl_get_json(ctx, "/v1/audit/verify", NULL, &answer);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    json_t *head = json_object_get(answer, "head");
    if (json_is_true(json_object_get(answer, "ok"))) {
        if (ctx->output == TANDEM_CTL_OUTPUT_JSON) {
            rc = tandem_ctl_print_json(ctx, answer);
        } else {
            fprintf(ctx->out,
                    "ok: %" JSON_INTEGER_FORMAT " records, head %" JSON_INTEGER_FORMAT " %s\n",
                    json_integer_value(json_object_get(answer, "records")),
                    json_integer_value(json_object_get(head, "seq")), text(head, "hash"));
        }
        json_decref(answer);
        return rc;
    }
    if (ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        tandem_ctl_print_json(ctx, answer);
    }
    rc = tandem_ctl_fail(
        ctx, TANDEM_CTL_EREFUSED, "the chain is broken at record %" JSON_INTEGER_FORMAT ": %s",
        json_integer_value(json_object_get(answer, "broken_at")), text(answer, "reason"));
    json_decref(answer);
    (void)args;
    return rc;
}

/* --since: an RFC 3339 time as given, or a duration back from now (30m, 24h, 7d) made one. */
static int since_value(struct tandem_ctl_context *ctx, const char *value, char *out, size_t size)
{
    char *end = NULL;
    errno = 0;
    unsigned long n = strtoul(value, &end, 10);
    long unit = end != NULL && strcmp(end, "m") == 0   ? 60
                : end != NULL && strcmp(end, "h") == 0 ? 3600
                : end != NULL && strcmp(end, "d") == 0 ? 86400
                                                       : 0;
    if (value[0] >= '0' && value[0] <= '9' && unit != 0 && errno == 0 && n <= 36500ul * 24) {
        time_t at = time(NULL) - (time_t)n * unit;
        struct tm tm;
        gmtime_r(&at, &tm);
        strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return TANDEM_CTL_OK;
    }
    if (strlen(value) >= size || strchr(value, 'T') == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE,
                               "--since: an RFC 3339 time (2026-01-31T09:00:00Z) or a duration "
                               "(30m, 24h, 7d)");
    }
    snprintf(out, size, "%s", value);
    return TANDEM_CTL_OK;
}

static int failures_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                          const json_t *answer)
{
    static const char *const headers[] = {"ACTOR", "SOURCE", "COUNT", "FIRST", "LAST", "ACTIONS"};
    struct tandem_ctl_table t;
    size_t i;
    json_t *g;
    (void)args;
    if (tandem_ctl_table_init(&t, 6, headers) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "table");
    }
    json_array_foreach(json_object_get(answer, "failures"), i, g)
    {
        char count[24], actions[256] = "";
        const char *name;
        json_t *n;
        size_t used = 0;
        snprintf(count, sizeof count, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(g, "count")));
        json_object_foreach(json_object_get(g, "actions"), name, n)
        {
            used += (size_t)snprintf(
                actions + used, used < sizeof actions ? sizeof actions - used : 0,
                "%s%s=%" JSON_INTEGER_FORMAT, used > 0 ? "," : "", name, json_integer_value(n));
            if (used >= sizeof actions) {
                break;
            }
        }
        const char *cells[] = {text(g, "actor"), text(g, "source"), count,
                               text(g, "first"), text(g, "last"),   actions};
        tandem_ctl_table_add(&t, cells);
    }
    tandem_ctl_table_print(&t, ctx->out);
    tandem_ctl_table_free(&t);
    if (!json_is_true(json_object_get(answer, "complete"))) {
        fprintf(stderr, "%s: only the first %" JSON_INTEGER_FORMAT " records were reviewed\n",
                ctx->what, json_integer_value(json_object_get(answer, "scanned")));
    }
    return TANDEM_CTL_OK;
}

int tandem_ctl_audit_failures(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *value = tandem_ctl_args_flag(args, "since");
    char since[AUDIT_SINCE_MAX], path[AUDIT_SINCE_MAX * 3 + 64];
    json_t *answer = NULL;
    if (value == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--since TIME|DURATION is required");
    }
    int rc = since_value(ctx, value, since, sizeof since);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    /* RFC 3339 needs no escaping but '+' (an offset), which a query reads as a space. */
    size_t used = (size_t)snprintf(path, sizeof path, "/v1/audit/failures?since=");
    for (const char *p = since; *p != '\0' && used + 4 < sizeof path; p++) {
        used += (size_t)snprintf(path + used, sizeof path - used, *p == '+' ? "%%2B" : "%c", *p);
    }
    rc = tandem_ctl_get_json(ctx, path, "failures", &answer);
    return tandem_ctl_answer(ctx, args, rc, answer, failures_print);
}
