/* tandemctl bcp commands (status, invoke, revoke, drill, drills, prefer) and member rejoin. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node/ctl/client.h"
#include "node/ctl/ctl.h"
#include "node/ctl/encode.h"
#include "node/ctl/output.h"

#define CHANGE_TIMEOUT_MS 30000  /* invoke/revoke wait for the takeover server-side (<= 10 s) */
#define DRILL_TIMEOUT_MS  180000 /* a drill takes tens of seconds */
#define DECISIONS_PRINTED 8
#define NAME_ENCODED_MAX  (63 * 3 + 1)
#define NODES_CELL_MAX    512
#define LIMIT_DEFAULT     20
#define LIMIT_MAX         100

static const char *str(const json_t *obj, const char *field)
{
    const char *v = json_string_value(json_object_get(obj, field));
    return v == NULL ? "" : v;
}

static json_int_t num(const json_t *obj, const char *field, json_int_t fallback)
{
    json_t *v = json_object_get(obj, field);
    return json_is_integer(v) ? json_integer_value(v) : fallback;
}

static void format_num(json_int_t v, char *out, size_t size)
{
    if (v < 0) {
        snprintf(out, size, "-");
    } else {
        snprintf(out, size, "%" JSON_INTEGER_FORMAT, v);
    }
}

/* Milliseconds since the epoch as "YYYY-MM-DD HH:MM:SS" UTC. */
static void format_time(json_int_t ms, char *out, size_t size)
{
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || gmtime_r(&seconds, &tm) == NULL ||
        strftime(out, size, "%Y-%m-%d %H:%M:%S", &tm) == 0) {
        snprintf(out, size, "-");
    }
}

/* Lets long server-side operations finish inside one attempt. */
static void timeout_at_least(struct tandem_ctl_context *ctx, long ms)
{
    if (ctx->client->timeout_ms < ms) {
        ctx->client->timeout_ms = ms;
    }
}

static int post(struct tandem_ctl_context *ctx, const char *path, json_t *body, json_t **out)
{
    if (body == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "arguments must be UTF-8");
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
    }
    struct tandem_ctl_request req = {"POST", path, text, strlen(text), "application/json"};
    int rc = tandem_ctl_call_json(ctx, &req, out);
    free(text);
    return rc;
}

static int get(struct tandem_ctl_context *ctx, const char *path, json_t **out)
{
    struct tandem_ctl_request req = {"GET", path, NULL, 0, NULL};
    return tandem_ctl_call_json(ctx, &req, out);
}

/* ---- status ---- */

static void nodes_cell(const json_t *nodes, char *out, size_t size)
{
    size_t used = 0, i;
    json_t *n;
    out[0] = '\0';
    json_array_foreach(nodes, i, n)
    {
        int w = snprintf(out + used, size - used, "%s%s:%s%s", used > 0 ? " " : "", str(n, "name"),
                         str(n, "role"), json_is_false(json_object_get(n, "reachable")) ? "!" : "");
        if (w < 0 || (size_t)w >= size - used) {
            break;
        }
        used += (size_t)w;
    }
}

static int status_sites_table(struct tandem_ctl_context *ctx, const json_t *sites)
{
    static const char *const headers[] = {"SITE",        "STATE",  "EPOCH", "SINCE", "NODES",
                                          "LAG_ENTRIES", "LAG_MS", "BY",    "REASON"};
    struct tandem_ctl_table table;
    char epoch[24], since[32], nodes[NODES_CELL_MAX], lag[24], lag_ms[24];
    size_t i;
    json_t *s;
    int rc = TANDEM_CTL_OK;
    if (tandem_ctl_table_init(&table, 9, headers) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "table setup failed");
    }
    json_array_foreach(sites, i, s)
    {
        char state[40];
        snprintf(state, sizeof state, "%s%s", str(s, "state"),
                 json_is_true(json_object_get(s, "witness")) ? " (witness)" : "");
        format_num(num(s, "epoch", -1), epoch, sizeof epoch);
        format_time(num(s, "since", -1), since, sizeof since);
        nodes_cell(json_object_get(s, "nodes"), nodes, sizeof nodes);
        format_num(num(s, "lag_entries", -1), lag, sizeof lag);
        format_num(num(s, "lag_ms", -1), lag_ms, sizeof lag_ms);
        const char *row[] = {str(s, "name"), state,        epoch,           since, nodes, lag,
                             lag_ms,         str(s, "by"), str(s, "reason")};
        if (tandem_ctl_table_add(&table, row) != 0) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
            break;
        }
    }
    if (rc == TANDEM_CTL_OK && tandem_ctl_table_print(&table, ctx->out) != 0) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "writing output failed");
    }
    tandem_ctl_table_free(&table);
    return rc;
}

static void status_decisions(struct tandem_ctl_context *ctx, const json_t *decisions)
{
    size_t count = json_array_size(decisions);
    size_t first = count > DECISIONS_PRINTED ? count - DECISIONS_PRINTED : 0;
    if (count == 0) {
        return;
    }
    fprintf(ctx->out, "recent decisions:\n");
    for (size_t i = first; i < count; i++) {
        const json_t *d = json_array_get(decisions, i);
        char at[32], roles[48] = "";
        format_time(num(d, "at", -1), at, sizeof at);
        if (str(d, "to_role")[0] != '\0') {
            snprintf(roles, sizeof roles, " %s->%s", str(d, "from_role"), str(d, "to_role"));
        }
        bool member = str(d, "member")[0] != '\0';
        fprintf(ctx->out, "  #%" JSON_INTEGER_FORMAT " %s %s %s%s%s%s%s: %s [%s]\n",
                num(d, "seq", 0), at, str(d, "action"), str(d, "member"), member ? " (" : "",
                str(d, "site"), member ? ")" : "", roles, str(d, "reason"), str(d, "by"));
    }
}

int tandem_ctl_bcp_status(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    json_t *root = NULL;
    (void)args;
    int rc = get(ctx, "/v1/bcp/status", &root);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    if (ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        rc = tandem_ctl_print_json(ctx, root);
    } else {
        json_t *leader = json_object_get(root, "leader");
        const char *preferred = str(root, "preferred_site");
        fprintf(
            ctx->out,
            "leader %s%s%s%s  preferred site %s  auto_bcp %s  fencing epoch %" JSON_INTEGER_FORMAT
            "\n",
            json_is_object(leader) ? str(leader, "name") : "none",
            json_is_object(leader) ? " (" : "", json_is_object(leader) ? str(leader, "site") : "",
            json_is_object(leader) ? ")" : "", preferred[0] != '\0' ? preferred : "-",
            json_is_true(json_object_get(root, "auto_bcp")) ? "on" : "off", num(root, "epoch", 0));
        rc = status_sites_table(ctx, json_object_get(root, "sites"));
        if (rc == TANDEM_CTL_OK) {
            status_decisions(ctx, json_object_get(root, "decisions"));
        }
    }
    json_decref(root);
    return rc;
}

/* ---- invoke, revoke, prefer ---- */

static void change_print(struct tandem_ctl_context *ctx, const json_t *root, const char *verb)
{
    const json_t *site = json_object_get(root, "site");
    const json_t *leader = json_object_get(root, "leader");
    fprintf(ctx->out,
            "site %s %s (epoch %" JSON_INTEGER_FORMAT "); leader %s; %s in %" JSON_INTEGER_FORMAT
            " ms\n",
            str(site, "name"), str(site, "state"), num(site, "epoch", 0),
            json_is_object(leader) ? str(leader, "name") : "none", verb,
            num(root, "elapsed_ms", 0));
    if (!json_is_true(json_object_get(root, "complete"))) {
        fprintf(ctx->out, "not complete yet: %s\n", str(root, "note"));
    }
}

static void force_print(struct tandem_ctl_context *ctx, const json_t *root)
{
    size_t i;
    json_t *v;
    fprintf(ctx->out,
            "forced failover of site %s: seed %s, fencing epoch %" JSON_INTEGER_FORMAT
            ", highest index %" JSON_INTEGER_FORMAT "\n",
            str(root, "site"), str(root, "seed"), num(root, "epoch", 0),
            num(root, "highest_index", 0));
    json_t *lost = json_object_get(root, "lost_entries_max");
    if (json_is_integer(lost)) {
        fprintf(ctx->out, "entries that may be lost: at most %" JSON_INTEGER_FORMAT "\n",
                json_integer_value(lost));
    } else {
        fprintf(ctx->out, "entries that may be lost: unknown (%s)\n", str(root, "note"));
    }
    fprintf(ctx->out, "survivors:");
    json_array_foreach(json_object_get(root, "survivors"), i, v)
    {
        fprintf(ctx->out, " %s", json_string_value(v));
    }
    fprintf(ctx->out, "\nlost (fenced when they return; re-seed with member rejoin):");
    json_array_foreach(json_object_get(root, "lost"), i, v)
    {
        fprintf(ctx->out, " %s", json_string_value(v));
    }
    fprintf(ctx->out, "\n");
    json_array_foreach(json_object_get(root, "instructed"), i, v)
    {
        fprintf(ctx->out, "  %s: %s %s%s\n", str(v, "name"), str(v, "action"),
                json_is_true(json_object_get(v, "ok")) ? "accepted" : "FAILED ", str(v, "error"));
    }
}

int tandem_ctl_bcp_invoke(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *reason = tandem_ctl_args_flag(args, "reason");
    bool force = tandem_ctl_args_flag(args, "force") != NULL;
    json_t *root = NULL;
    timeout_at_least(ctx, CHANGE_TIMEOUT_MS);
    json_t *body = json_pack("{s:s,s:b}", "site", args->positional[0], "force", force);
    if (body != NULL && reason != NULL) {
        json_object_set_new(body, "reason", json_string(reason));
    }
    int rc = post(ctx, "/v1/bcp/invoke", body, &root);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    if (ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        rc = tandem_ctl_print_json(ctx, root);
    } else if (force) {
        force_print(ctx, root);
    } else {
        change_print(ctx, root, "takeover");
    }
    json_decref(root);
    return rc;
}

int tandem_ctl_bcp_revoke(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *reason = tandem_ctl_args_flag(args, "reason");
    bool failback = tandem_ctl_args_flag(args, "failback") != NULL;
    json_t *root = NULL;
    timeout_at_least(ctx, CHANGE_TIMEOUT_MS);
    json_t *body = json_pack("{s:s,s:b}", "site", args->positional[0], "failback", failback);
    if (body != NULL && reason != NULL) {
        json_object_set_new(body, "reason", json_string(reason));
    }
    int rc = post(ctx, "/v1/bcp/revoke", body, &root);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    if (ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        rc = tandem_ctl_print_json(ctx, root);
    } else {
        change_print(ctx, root, failback ? "recovery and failback" : "recovery");
    }
    json_decref(root);
    return rc;
}

int tandem_ctl_bcp_prefer(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *site = strcmp(args->positional[0], "-") == 0 ? "" : args->positional[0];
    json_t *root = NULL;
    int rc = post(ctx, "/v1/bcp/prefer", json_pack("{s:s}", "site", site), &root);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    if (ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        rc = tandem_ctl_print_json(ctx, root);
    } else {
        fprintf(ctx->out, "preferred site: %s\n", site[0] != '\0' ? site : "none");
    }
    json_decref(root);
    return rc;
}

/* ---- drills ---- */

static void drill_print(struct tandem_ctl_context *ctx, const json_t *root)
{
    size_t i;
    json_t *e;
    if (json_is_true(json_object_get(root, "dry_run"))) {
        fprintf(ctx->out, "dry run: invoking %s would change (nothing was changed):\n",
                str(root, "site"));
        json_array_foreach(json_object_get(root, "role_changes"), i, e)
        {
            fprintf(ctx->out, "  %s (%s): %s -> %s\n", str(e, "member"), str(e, "site"),
                    str(e, "from"), str(e, "to"));
        }
        if (json_is_true(json_object_get(root, "leadership_moves"))) {
            fprintf(ctx->out, "  leadership leaves %s (now on %s)\n", str(root, "site"),
                    str(root, "leader"));
        }
        fprintf(ctx->out, "  jobs that would move: %" JSON_INTEGER_FORMAT "\n",
                num(root, "jobs_moved", 0));
        return;
    }
    fprintf(ctx->out,
            "drill %s of site %s: %s\n  rto_ms %" JSON_INTEGER_FORMAT
            "  rpo_writes %" JSON_INTEGER_FORMAT
            "  digests_equal %s  takeover_ms %" JSON_INTEGER_FORMAT
            "  failback_ms %" JSON_INTEGER_FORMAT "\n  jobs moved %" JSON_INTEGER_FORMAT
            ", returned %" JSON_INTEGER_FORMAT "\n",
            str(root, "id"), str(root, "site"),
            json_is_true(json_object_get(root, "ok")) ? "OK" : "FAILED", num(root, "rto_ms", -1),
            num(root, "rpo_writes", -1),
            json_is_true(json_object_get(root, "digests_equal")) ? "yes" : "no",
            num(root, "takeover_ms", -1), num(root, "failback_ms", -1), num(root, "jobs_moved", -1),
            num(root, "jobs_returned", -1));
    const json_t *probe = json_object_get(root, "probe");
    fprintf(ctx->out,
            "  probe writes: %" JSON_INTEGER_FORMAT " sent, %" JSON_INTEGER_FORMAT
            " acknowledged, %" JSON_INTEGER_FORMAT " failed, %" JSON_INTEGER_FORMAT " verified\n",
            num(probe, "sent", 0), num(probe, "acked", 0), num(probe, "failed", 0),
            num(probe, "verified", 0));
    if (str(root, "error")[0] != '\0') {
        fprintf(ctx->out, "  error: %s\n", str(root, "error"));
    }
    fprintf(ctx->out, "timeline:\n");
    json_array_foreach(json_object_get(root, "timeline"), i, e)
    {
        fprintf(ctx->out, "  %6" JSON_INTEGER_FORMAT " ms  %s\n", num(e, "t_ms", 0),
                str(e, "event"));
    }
}

int tandem_ctl_bcp_drill(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *rate = tandem_ctl_args_flag(args, "rate");
    bool dry = tandem_ctl_args_flag(args, "dry-run") != NULL;
    json_t *root = NULL;
    char *end = NULL;
    long rate_value = rate == NULL ? 0 : strtol(rate, &end, 10);
    if (rate != NULL && (end == rate || *end != '\0' || rate_value < 1 || rate_value > 500)) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--rate: expected 1..500 writes/s");
    }
    timeout_at_least(ctx, DRILL_TIMEOUT_MS);
    if (!dry && ctx->output != TANDEM_CTL_OUTPUT_JSON) {
        fprintf(ctx->out, "drilling site %s (invoke, verify, revoke with failback)...\n",
                args->positional[0]);
        fflush(ctx->out);
    }
    json_t *body = json_pack("{s:s,s:b}", "site", args->positional[0], "dry_run", dry);
    if (body != NULL && rate != NULL) {
        json_object_set_new(body, "rate", json_integer(rate_value));
    }
    int rc = post(ctx, "/v1/bcp/drill", body, &root);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    if (ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        rc = tandem_ctl_print_json(ctx, root);
    } else {
        drill_print(ctx, root);
    }
    bool failed = !dry && !json_is_true(json_object_get(root, "ok"));
    json_decref(root);
    if (rc == TANDEM_CTL_OK && failed) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "the drill did not pass (see the report)");
    }
    return rc;
}

static int drills_table(struct tandem_ctl_context *ctx, const json_t *drills)
{
    static const char *const headers[] = {"SEQ", "ID",         "SITE",       "OK",     "RTO_MS",
                                          "RPO", "DIGESTS_EQ", "JOBS_MOVED", "STARTED"};
    struct tandem_ctl_table table;
    char seq[24], rto[24], rpo[24], jobs[24], started[32];
    size_t i;
    json_t *d;
    int rc = TANDEM_CTL_OK;
    if (tandem_ctl_table_init(&table, 9, headers) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "table setup failed");
    }
    json_array_foreach(drills, i, d)
    {
        format_num(num(d, "seq", -1), seq, sizeof seq);
        format_num(num(d, "rto_ms", -1), rto, sizeof rto);
        format_num(num(d, "rpo_writes", -1), rpo, sizeof rpo);
        format_num(num(d, "jobs_moved", -1), jobs, sizeof jobs);
        format_time(num(d, "started", -1), started, sizeof started);
        const char *row[] = {seq,
                             str(d, "id"),
                             str(d, "site"),
                             json_is_true(json_object_get(d, "ok")) ? "yes" : "no",
                             rto,
                             rpo,
                             json_is_true(json_object_get(d, "digests_equal")) ? "yes" : "no",
                             jobs,
                             started};
        if (tandem_ctl_table_add(&table, row) != 0) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
            break;
        }
    }
    if (rc == TANDEM_CTL_OK && tandem_ctl_table_print(&table, ctx->out) != 0) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "writing output failed");
    }
    tandem_ctl_table_free(&table);
    return rc;
}

int tandem_ctl_bcp_drills(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *limit = tandem_ctl_args_flag(args, "limit");
    char *end = NULL, path[64];
    long n = limit == NULL ? LIMIT_DEFAULT : strtol(limit, &end, 10);
    json_t *root = NULL;
    if (limit != NULL && (end == limit || *end != '\0' || n < 1 || n > LIMIT_MAX)) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--limit: expected 1..%d", LIMIT_MAX);
    }
    snprintf(path, sizeof path, "/v1/bcp/drills?limit=%ld&full=%d", n,
             ctx->output == TANDEM_CTL_OUTPUT_JSON ? 1 : 0);
    int rc = get(ctx, path, &root);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    rc = ctx->output == TANDEM_CTL_OUTPUT_JSON ? tandem_ctl_print_json(ctx, root)
                                               : drills_table(ctx, json_object_get(root, "drills"));
    json_decref(root);
    return rc;
}

/* ---- member rejoin ---- */

int tandem_ctl_member_rejoin(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char encoded[NAME_ENCODED_MAX], path[NAME_ENCODED_MAX + 32];
    const char *name = args->positional[0];
    json_t *root = NULL;
    if (name[0] == '\0' ||
        tandem_ctl_percent_encode(name, strlen(name), encoded, sizeof encoded) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "NAME must be 1..63 bytes");
    }
    snprintf(path, sizeof path, "/v1/members/%s/rejoin", encoded);
    timeout_at_least(ctx, CHANGE_TIMEOUT_MS);
    int rc = post(ctx, path, json_object(), &root);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    if (ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        rc = tandem_ctl_print_json(ctx, root);
    } else {
        fprintf(ctx->out,
                "%s re-seeded at epoch %" JSON_INTEGER_FORMAT
                " and re-added as a standby; it catches up from the leader\n",
                name, num(root, "epoch", 0));
    }
    json_decref(root);
    return rc;
}
