/* tandemctl bcp commands: status, invoke, revoke, drill, drills and prefer. */
#include <stdlib.h>
#include <string.h>

#include "node/ctl/columns.h"
#include "node/ctl/ctl.h"
#include "node/ctl/listing.h"

#define CHANGE_TIMEOUT_MS 30000  /* invoke/revoke wait for the takeover server-side (<= 10 s) */
#define DRILL_TIMEOUT_MS  180000 /* a drill takes tens of seconds */
#define DECISIONS_PRINTED 8
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

/* ---- status ---- */

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
        tandem_ctl_field_text(d, "at", tandem_ctl_cell_time, "-", at, sizeof at);
        if (str(d, "to_role")[0] != '\0') {
            snprintf(roles, sizeof roles, " %s->%s", str(d, "from_role"), str(d, "to_role"));
        }
        bool member = str(d, "member")[0] != '\0';
        fprintf(ctx->out, "  #%" JSON_INTEGER_FORMAT " %s %s %s%s%s%s%s: %s [%s]\n",
                num(d, "seq", 0), at, str(d, "action"), str(d, "member"), member ? " (" : "",
                str(d, "site"), member ? ")" : "", roles, str(d, "reason"), str(d, "by"));
    }
}

static int status_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                        const json_t *root)
{
    json_t *leader = json_object_get(root, "leader");
    const char *preferred = str(root, "preferred_site");
    (void)args;
    fprintf(ctx->out,
            "leader %s%s%s%s  preferred site %s  auto_bcp %s  fencing epoch %" JSON_INTEGER_FORMAT
            "\n",
            json_is_object(leader) ? str(leader, "name") : "none",
            json_is_object(leader) ? " (" : "", json_is_object(leader) ? str(leader, "site") : "",
            json_is_object(leader) ? ")" : "", preferred[0] != '\0' ? preferred : "-",
            json_is_true(json_object_get(root, "auto_bcp")) ? "on" : "off", num(root, "epoch", 0));
    int rc =
        tandem_ctl_view_print(ctx, json_object_get(root, "sites"), TANDEM_CTL_VIEW_BCP_SITES, NULL);
    if (rc == TANDEM_CTL_OK) {
        status_decisions(ctx, json_object_get(root, "decisions"));
    }
    return rc;
}

int tandem_ctl_bcp_status(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    json_t *root = NULL;
    int rc = tandem_ctl_get_json(ctx, "/v1/bcp/status", NULL, &root);
    return tandem_ctl_answer(ctx, args, rc, root, status_print);
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

/* "last known lag of west-1 ...": what the seed lacked when the lost leader last said. */
static void force_print_lag(struct tandem_ctl_context *ctx, const json_t *lag)
{
    char commands[48] = "unknown", ms[48] = "unknown";
    if (!json_is_object(lag)) {
        return;
    }
    if (json_is_integer(json_object_get(lag, "commands"))) {
        snprintf(commands, sizeof commands, "%" JSON_INTEGER_FORMAT, num(lag, "commands", 0));
    }
    if (json_is_integer(json_object_get(lag, "ms"))) {
        snprintf(ms, sizeof ms, "%" JSON_INTEGER_FORMAT " ms", num(lag, "ms", 0));
    }
    fprintf(ctx->out,
            "last known lag of %s (heard from %s %" JSON_INTEGER_FORMAT
            " ms before the force): %" JSON_INTEGER_FORMAT
            " raft entries holding %s client writes, %s behind; writes accepted after that are "
            "lost too\n",
            str(lag, "member"), str(lag, "heard_from"), num(lag, "age_ms", 0),
            num(lag, "entries", -1), commands, ms);
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
    force_print_lag(ctx, json_object_get(root, "last_known_lag"));
    if (json_is_string(json_object_get(root, "revoke_note"))) {
        fprintf(ctx->out, "%s\n", str(root, "revoke_note"));
    }
    fprintf(ctx->out, "survivors:");
    json_array_foreach(json_object_get(root, "survivors"), i, v)
    {
        fprintf(ctx->out, " %s", json_string_value(v));
    }
    if (json_is_array(json_object_get(root, "confirmed_lost"))) {
        fprintf(ctx->out, "\nconfirmed lost by the operator:");
        json_array_foreach(json_object_get(root, "confirmed_lost"), i, v)
        {
            fprintf(ctx->out, " %s", json_string_value(v));
        }
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

/* POSTs {"site": SITE, <flag>: --<flag> given, "reason": --reason} to path and prints the
 * answer: invoke and revoke differ only in the switch and the report. */
static int site_change(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                       const char *path, const char *flag, tandem_ctl_answer_print *print)
{
    const char *reason = tandem_ctl_args_flag(args, "reason");
    bool on = tandem_ctl_args_flag(args, flag) != NULL;
    tandem_ctl_timeout_at_least(ctx, CHANGE_TIMEOUT_MS);
    json_t *body = json_pack("{s:s,s:b}", "site", args->positional[0], flag, on);
    if (body != NULL && reason != NULL) {
        json_object_set_new(body, "reason", json_string(reason));
    }
    return tandem_ctl_post_answer(ctx, args, TANDEM_CTL_OK, path, body, print);
}

static int invoke_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                        const json_t *root)
{
    if (tandem_ctl_args_flag(args, "force") != NULL) {
        force_print(ctx, root);
    } else {
        change_print(ctx, root, "takeover");
    }
    return TANDEM_CTL_OK;
}

/* --confirm-lost NAME,... as a JSON array of names, or NULL after a usage error. */
static json_t *confirm_lost_list(struct tandem_ctl_context *ctx, const char *names, int *rc)
{
    json_t *list = json_array();
    char copy[1024], *save = NULL;
    snprintf(copy, sizeof copy, "%s", names);
    for (char *name = strtok_r(copy, ",", &save); list != NULL && name != NULL;
         name = strtok_r(NULL, ",", &save)) {
        json_array_append_new(list, json_string(name));
    }
    if (list == NULL || json_array_size(list) == 0 || strlen(names) >= sizeof copy) {
        json_decref(list);
        *rc = tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE,
                              "--confirm-lost needs member names separated by commas");
        return NULL;
    }
    return list;
}

int tandem_ctl_bcp_invoke(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *confirm = tandem_ctl_args_flag(args, "confirm-lost");
    int rc = TANDEM_CTL_OK;
    if (confirm == NULL) {
        return site_change(ctx, args, "/v1/bcp/invoke", "force", invoke_print);
    }
    if (tandem_ctl_args_flag(args, "force") == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--confirm-lost goes with --force");
    }
    json_t *list = confirm_lost_list(ctx, confirm, &rc);
    if (list == NULL) {
        return rc;
    }
    const char *reason = tandem_ctl_args_flag(args, "reason");
    tandem_ctl_timeout_at_least(ctx, CHANGE_TIMEOUT_MS);
    json_t *body = json_pack("{s:s,s:b,s:o}", "site", args->positional[0], "force", true,
                             "confirm_lost", list);
    if (body != NULL && reason != NULL) {
        json_object_set_new(body, "reason", json_string(reason));
    }
    return tandem_ctl_post_answer(ctx, args, TANDEM_CTL_OK, "/v1/bcp/invoke", body, invoke_print);
}

static int revoke_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                        const json_t *root)
{
    bool failback = tandem_ctl_args_flag(args, "failback") != NULL;
    change_print(ctx, root, failback ? "recovery and failback" : "recovery");
    return TANDEM_CTL_OK;
}

int tandem_ctl_bcp_revoke(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    return site_change(ctx, args, "/v1/bcp/revoke", "failback", revoke_print);
}

/* The preferred site argument: "-" clears the preference. */
static const char *prefer_site(const struct tandem_ctl_args *args)
{
    return strcmp(args->positional[0], "-") == 0 ? "" : args->positional[0];
}

static int prefer_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                        const json_t *root)
{
    const char *site = prefer_site(args);
    (void)root;
    fprintf(ctx->out, "preferred site: %s\n", site[0] != '\0' ? site : "none");
    return TANDEM_CTL_OK;
}

int tandem_ctl_bcp_prefer(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    return tandem_ctl_post_answer(ctx, args, TANDEM_CTL_OK, "/v1/bcp/prefer",
                                  json_pack("{s:s}", "site", prefer_site(args)), prefer_print);
}

/* ---- drills ---- */

static int drill_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                       const json_t *root)
{
    size_t i;
    json_t *e;
    (void)args;
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
        return TANDEM_CTL_OK;
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
    return TANDEM_CTL_OK;
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
    tandem_ctl_timeout_at_least(ctx, DRILL_TIMEOUT_MS);
    if (!dry && ctx->output != TANDEM_CTL_OUTPUT_JSON) {
        fprintf(ctx->out, "drilling site %s (invoke, verify, revoke with failback)...\n",
                args->positional[0]);
        fflush(ctx->out);
    }
    json_t *body = json_pack("{s:s,s:b}", "site", args->positional[0], "dry_run", dry);
    if (body != NULL && rate != NULL) {
        json_object_set_new(body, "rate", json_integer(rate_value));
    }
    int rc = tandem_ctl_post_packed(ctx, "/v1/bcp/drill", body, &root);
    bool failed = rc == TANDEM_CTL_OK && !dry && !json_is_true(json_object_get(root, "ok"));
    rc = tandem_ctl_answer(ctx, args, rc, root, drill_print);
    if (rc == TANDEM_CTL_OK && failed) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "the drill did not pass (see the report)");
    }
    return rc;
}

int tandem_ctl_bcp_drills(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *limit = tandem_ctl_args_flag(args, "limit");
    char *end = NULL, path[64];
    long n = limit == NULL ? LIMIT_DEFAULT : strtol(limit, &end, 10);
    if (limit != NULL && (end == limit || *end != '\0' || n < 1 || n > LIMIT_MAX)) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--limit: expected 1..%d", LIMIT_MAX);
    }
    snprintf(path, sizeof path, "/v1/bcp/drills?limit=%ld&full=%d", n,
             ctx->output == TANDEM_CTL_OUTPUT_JSON ? 1 : 0);
    return tandem_ctl_list_answer(ctx, path, "drills", false, TANDEM_CTL_VIEW_DRILLS);
}
