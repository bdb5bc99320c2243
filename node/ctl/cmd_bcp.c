/* tandemctl bcp commands: status, invoke, revoke, drill, drills and prefer. */
#include <stdlib.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/columns.h"
#include "node/ctl/ctl.h"
#include "node/ctl/listing.h"
#include "node/ctl/report_html.h"
#include "storage/clock.h"

#define CHANGE_TIMEOUT_MS 30000  /* invoke/revoke wait for the takeover server-side (<= 10 s) */
#define DRILL_TIMEOUT_MS  180000 /* a drill takes tens of seconds */
#define DECISIONS_PRINTED 8
#define LIMIT_DEFAULT     20
#define LIMIT_MAX         100
/* Without a leader, bcp status answers from one node's own view within --timeout: the leader's
 * view may take all but 1/STATUS_LOCAL_SHARE of it, the local view the rest. */
#define STATUS_LOCAL_SHARE 3
/* Each node is asked for at most its share of the budget, and never less than this, so a
 * stalled node leaves time for the others: a follower forwards at once when there is a leader. */
#define STATUS_ATTEMPT_MS_MIN 1000
#define STATUS_PATH           "/v1/bcp/status"
#define STATUS_PATH_LOCAL     "/v1/bcp/status?consistency=local"

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

/* The header of a node's own view: whose, as of when, how far it got, the leader it knew. */
static void status_local_header(struct tandem_ctl_context *ctx, const json_t *root)
{
    const json_t *last = json_object_get(root, "last_leader");
    fprintf(ctx->out,
            "LOCAL VIEW of %s, not the leader's: as of %s, %s, term %" JSON_INTEGER_FORMAT
            ", applied index %" JSON_INTEGER_FORMAT ", commit index %" JSON_INTEGER_FORMAT "\n",
            str(root, "node"), str(root, "as_of"), str(root, "node_state"), num(root, "term", 0),
            num(root, "applied_index", 0), num(root, "commit_index", 0));
    if (json_is_object(last)) {
        fprintf(ctx->out, "last leader known here: %s, seen %s (%.1f s before)\n",
                str(last, "name"), str(last, "seen"), (double)num(last, "age_ms", 0) / 1000.0);
    } else {
        fprintf(ctx->out, "last leader known here: none since this node started\n");
    }
    if (str(root, "fallback_reason")[0] != '\0') {
        fprintf(ctx->out, "why local: %s\n", str(root, "fallback_reason"));
    }
}

/* An age in ms as seconds for a status line; "none" when null. */
static void age_text(const json_t *ms, char *out, size_t size)
{
    if (json_is_integer(ms)) {
        snprintf(out, size, "%.1fs ago", (double)json_integer_value(ms) / 1000.0);
    } else {
        snprintf(out, size, "none");
    }
}

/* One line per site with a backup: the age of its newest and newest verified backup. */
static void status_backups(struct tandem_ctl_context *ctx, const json_t *backups)
{
    const char *site;
    json_t *s;
    if (!json_is_object(backups)) {
        return;
    }
    fprintf(ctx->out, "backups: %s\n",
            json_is_true(json_object_get(backups, "scheduled")) ? "scheduled" : "not scheduled");
    json_object_foreach(json_object_get(backups, "sites"), site, s)
    {
        char newest[32], verified[32];
        age_text(json_object_get(s, "newest_age_ms"), newest, sizeof newest);
        age_text(json_object_get(s, "newest_verified_age_ms"), verified, sizeof verified);
        fprintf(ctx->out,
                "  %s: newest %s (index %" JSON_INTEGER_FORMAT
                "), newest verified %s, %" JSON_INTEGER_FORMAT " lost\n",
                site, newest, num(s, "newest_index", 0), verified, num(s, "lost", 0));
    }
}

static int status_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                        const json_t *root)
{
    json_t *leader = json_object_get(root, "leader");
    const char *preferred = str(root, "preferred_site");
    (void)args;
    if (json_is_true(json_object_get(root, "local"))) {
        status_local_header(ctx, root);
    }
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
        status_backups(ctx, json_object_get(root, "backups"));
        status_decisions(ctx, json_object_get(root, "decisions"));
    }
    return rc;
}

/* GETs the leader's view within the deadline already set. Returns TANDEM_CTL_OK with *out,
 * -1 when no leader answered (why says so: a 503, or no node answered in time), or another
 * exit code with ctx->errmsg filled. */
static int status_leader_view(struct tandem_ctl_context *ctx, json_t **out, char *why,
                              size_t why_size)
{
    struct tandem_ctl_request req = {"GET", STATUS_PATH, NULL, 0, NULL};
    struct tandem_ctl_response resp;
    char reason[TANDEM_CTL_ERRMSG_SIZE];
    tandem_ctl_response_init(&resp);
    int rc = tandem_ctl_call(ctx, &req, &resp);
    if (rc == TANDEM_CTL_EREFUSED && resp.status == 503) {
        tandem_ctl_response_reason(&resp, reason, sizeof reason);
        snprintf(why, why_size, "%s answered: %s (HTTP 503)", resp.endpoint, reason);
        tandem_ctl_client_prefer(ctx->client, resp.endpoint); /* it answers: ask it first */
        rc = -1;
    } else if (rc == TANDEM_CTL_EUNREACHABLE) {
        snprintf(why, why_size, "no leader's view within %.1f s: %s",
                 (double)(ctx->timeout_ms - ctx->timeout_ms / STATUS_LOCAL_SHARE) / 1000.0,
                 ctx->client->errmsg);
        rc = -1;
    } else if (rc == TANDEM_CTL_OK) {
        *out = json_loadb(resp.body != NULL ? resp.body : "", resp.body_len, 0, NULL);
        if (!json_is_object(*out)) {
            json_decref(*out);
            *out = NULL;
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s answered with bad JSON",
                                 resp.endpoint);
        }
    }
    tandem_ctl_response_free(&resp);
    return rc;
}

/* Bounds the next request to end by deadline_ms, each endpoint getting its share of budget_ms. */
static void status_bound(struct tandem_ctl_context *ctx, long long deadline_ms, long budget_ms)
{
    size_t endpoints = ctx->client->endpoint_count > 0 ? ctx->client->endpoint_count : 1;
    long share = budget_ms / (long)endpoints;
    ctx->client->deadline_ms = deadline_ms;
    ctx->client->attempt_ms_max = share > STATUS_ATTEMPT_MS_MIN ? share : STATUS_ATTEMPT_MS_MIN;
    ctx->client->rounds_max = 1;
}

int tandem_ctl_bcp_status(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    json_t *root = NULL;
    char why[TANDEM_CTL_ERRMSG_SIZE] = "";
    long long started = tandem_ctl_now_ms();
    bool local = tandem_ctl_args_flag(args, "local") != NULL;
    long local_ms = local ? ctx->timeout_ms : ctx->timeout_ms / STATUS_LOCAL_SHARE;
    if (!local) {
        /* A 503 means no leader: one pass, then this node's own view rather than waiting. */
        status_bound(ctx, started + ctx->timeout_ms - local_ms, ctx->timeout_ms - local_ms);
        int rc = status_leader_view(ctx, &root, why, sizeof why);
        if (rc != -1) {
            return tandem_ctl_answer(ctx, args, rc, root, status_print);
        }
    }
    status_bound(ctx, started + ctx->timeout_ms, local_ms);
    int rc = tandem_ctl_get_json(ctx, STATUS_PATH_LOCAL, NULL, &root);
    if (rc == TANDEM_CTL_OK && why[0] != '\0') {
        json_object_set_new(root, "fallback_reason", json_string(why));
    }
    return tandem_ctl_answer(ctx, args, rc, root, status_print);
}

/* ---- invoke, revoke, prefer ---- */

/* jobs: the answer's count of jobs moved, "jobs_moved" (invoke) or "jobs_returned" (revoke). */
static void change_print(struct tandem_ctl_context *ctx, const json_t *root, const char *verb,
                         const char *jobs)
{
    const json_t *site = json_object_get(root, "site");
    const json_t *leader = json_object_get(root, "leader");
    char count[24] = "-";
    if (json_is_integer(json_object_get(root, jobs))) {
        snprintf(count, sizeof count, "%" JSON_INTEGER_FORMAT, num(root, jobs, 0));
    }
    fprintf(ctx->out,
            "site %s %s (epoch %" JSON_INTEGER_FORMAT "); leader %s; %s in %" JSON_INTEGER_FORMAT
            " ms; %s %s\n",
            str(site, "name"), str(site, "state"), num(site, "epoch", 0),
            json_is_object(leader) ? str(leader, "name") : "none", verb, num(root, "elapsed_ms", 0),
            strcmp(jobs, "jobs_moved") == 0 ? "jobs moved" : "jobs returned", count);
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
    const json_t *quarantine = json_object_get(root, "quarantine");
    if (str(root, "operator_must")[0] != '\0') {
        fprintf(ctx->out,
                "YOU MUST: %s\n"
                "start-up quarantine covers: %s\n"
                "it does NOT cover: %s\n",
                str(root, "operator_must"), str(quarantine, "covers"),
                str(quarantine, "does_not_cover"));
    }
}

/* POSTs {"site": SITE, <flag>: --<flag> given, "reason": --reason} to path and prints the
 * answer: invoke and revoke differ only in the switch and the report. */
static int site_change(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                       const char *path, const char *flag, tandem_ctl_answer_print *print)
{
    const char *reason = tandem_ctl_args_flag(args, "reason");
    bool on = tandem_ctl_args_flag(args, flag) != NULL;
    bool dry = tandem_ctl_args_flag(args, "dry-run") != NULL;
    tandem_ctl_timeout_at_least(ctx, CHANGE_TIMEOUT_MS);
    json_t *body =
        json_pack("{s:s,s:b,s:b}", "site", args->positional[0], flag, on, "dry_run", dry);
    if (body != NULL && reason != NULL) {
        json_object_set_new(body, "reason", json_string(reason));
    }
    return tandem_ctl_post_answer(ctx, args, TANDEM_CTL_OK, path, body, print);
}

/* A dry run's answer (invoke, revoke, drill): what the change would do; nothing was changed. */
static void preview_print(struct tandem_ctl_context *ctx, const json_t *root, const char *verb)
{
    size_t i;
    json_t *e;
    bool invoke = json_object_get(root, "jobs_moved") != NULL;
    fprintf(ctx->out, "dry run: %s %s would change (nothing was changed):\n", verb,
            str(root, "site"));
    json_array_foreach(json_object_get(root, "role_changes"), i, e)
    {
        fprintf(ctx->out, "  %s (%s): %s -> %s\n", str(e, "member"), str(e, "site"), str(e, "from"),
                str(e, "to"));
    }
    if (json_is_true(json_object_get(root, "leadership_moves"))) {
        fprintf(ctx->out,
                invoke ? "  leadership leaves %s (now on %s)\n"
                       : "  leadership returns to %s (now on %s)\n",
                str(root, "site"), str(root, "leader"));
    }
    fprintf(ctx->out, "  jobs that would %s: %" JSON_INTEGER_FORMAT "\n",
            invoke ? "move" : "come back", num(root, invoke ? "jobs_moved" : "jobs_returned", 0));
}

static int invoke_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                        const json_t *root)
{
    if (json_is_true(json_object_get(root, "dry_run"))) {
        preview_print(ctx, root, "invoking");
    } else if (tandem_ctl_args_flag(args, "force") != NULL) {
        force_print(ctx, root);
    } else {
        change_print(ctx, root, "takeover", "jobs_moved");
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
    if (json_is_true(json_object_get(root, "dry_run"))) {
        preview_print(ctx, root, failback ? "revoking with failback" : "revoking");
    } else {
        change_print(ctx, root, failback ? "recovery and failback" : "recovery", "jobs_returned");
    }
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
        preview_print(ctx, root, "invoking");
        if (str(root, "refusal")[0] != '\0') {
            fprintf(ctx->out, "  a drill now would be refused: %s\n", str(root, "refusal"));
        }
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

/* Asks the node (a dry run) whether a drill of site would start now; TANDEM_CTL_EREFUSED with
 * its reason when not. */
static int drill_check(struct tandem_ctl_context *ctx, const char *site)
{
    json_t *root = NULL;
    int rc = tandem_ctl_post_packed(ctx, "/v1/bcp/drill",
                                    json_pack("{s:s,s:b}", "site", site, "dry_run", true), &root);
    if (rc == TANDEM_CTL_OK && str(root, "refusal")[0] != '\0') {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "drill %s: %s (HTTP 409)", site,
                             str(root, "refusal"));
    }
    json_decref(root);
    return rc;
}

/* --report FILE: the drill's report as one standalone HTML file (node/ctl/report_html.h). */
static int drill_report(struct tandem_ctl_context *ctx, const char *path, const json_t *root)
{
    char why[TANDEM_CTL_ERRMSG_SIZE];
    if (tandem_ctl_report_write(root, tandem_wall_ms(), path, why, sizeof why) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "--report: %s", why);
    }
    if (ctx->output != TANDEM_CTL_OUTPUT_JSON) {
        fprintf(ctx->out, "report written to %s\n", path);
    }
    return TANDEM_CTL_OK;
}

int tandem_ctl_bcp_drill(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *rate = tandem_ctl_args_flag(args, "rate");
    const char *report = tandem_ctl_args_flag(args, "report");
    bool dry = tandem_ctl_args_flag(args, "dry-run") != NULL;
    if (report != NULL && (dry || report[0] == '\0')) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE,
                               dry ? "--report: a dry run has no report"
                                   : "--report: expected a file name");
    }
    json_t *root = NULL;
    char *end = NULL;
    long rate_value = rate == NULL ? 0 : strtol(rate, &end, 10);
    if (rate != NULL && (end == rate || *end != '\0' || rate_value < 1 || rate_value > 500)) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--rate: expected 1..500 writes/s");
    }
    tandem_ctl_timeout_at_least(ctx, DRILL_TIMEOUT_MS);
    if (!dry && ctx->output != TANDEM_CTL_OUTPUT_JSON) {
        /* The progress line only once the node would take the drill: a refusal comes alone. */
        int checked = drill_check(ctx, args->positional[0]);
        if (checked != TANDEM_CTL_OK) {
            return checked;
        }
        fprintf(ctx->out, "drilling site %s (invoke, verify, revoke with failback)...\n",
                args->positional[0]);
        fflush(ctx->out);
    }
    json_t *body = json_pack("{s:s,s:b}", "site", args->positional[0], "dry_run", dry);
    if (body != NULL && rate != NULL) {
        json_object_set_new(body, "rate", json_integer(rate_value));
    }
    const char *reason = tandem_ctl_args_flag(args, "reason");
    if (body != NULL && reason != NULL && !dry) {
        json_object_set_new(body, "reason", json_string(reason)); /* NULL (not UTF-8): refused */
    }
    int rc = tandem_ctl_post_packed(ctx, "/v1/bcp/drill", body, &root);
    bool failed = rc == TANDEM_CTL_OK && !dry && !json_is_true(json_object_get(root, "ok"));
    int written = rc == TANDEM_CTL_OK && report != NULL ? drill_report(ctx, report, root) : rc;
    rc = tandem_ctl_answer(ctx, args, rc, root, drill_print);
    rc = rc == TANDEM_CTL_OK ? written : rc;
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
