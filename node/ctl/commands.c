/* tandemctl's command table, and the helpers handlers share to call the API and report. */
#include <stdlib.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/columns.h"
#include "node/ctl/ctl.h"
#include "node/ctl/encode.h"
#include "node/ctl/output.h"

#define ENCODED_VALUE_MAX (TANDEM_CTL_VALUE_MAX * 3 + 1)

/* Every command, in --help order; a new command is a row here and a handler in its cmd_*.c. */
const struct tandem_ctl_command tandem_ctl_commands[] = {
    {"status", NULL, "", 0, 0, tandem_ctl_status,
     "members with role, state, applied index and lag; leader marked *"},
    {"kv", "put", "KEY VALUE", 2, 2, tandem_ctl_kv_put,
     "store VALUE at KEY (VALUE '-' reads stdin, '@FILE' reads a file)"},
    {"kv", "get", "KEY [--local]", 1, 1, tandem_ctl_kv_get,
     "print the value bytes of KEY (--local: this node's state, may be stale)"},
    {"kv", "del", "KEY", 1, 1, tandem_ctl_kv_del, "delete KEY"},
    {"kv", "list", "[PREFIX] [--limit N] [--local]", 0, 1, tandem_ctl_kv_list,
     "list keys starting with PREFIX (all keys by default)"},
    {"kv", "cas", "KEY OLD NEW", 3, 3, tandem_ctl_kv_cas,
     "set KEY to NEW only if its value is OLD ('-' and '@FILE' work as for put)"},
    {"backup", "create", "[--out FILE]", 0, 0, tandem_ctl_backup_create,
     "take a backup at a leader-confirmed index (kept in the leader's backup_dir; --out also "
     "downloads it and checks it at level 1)"},
    {"backup", "verify", "FILE [--level 1|2|3] [--key-file FILE] [--scratch DIR] [--tandemd PATH]",
     1, 1, tandem_ctl_backup_verify,
     "check a backup file: 1 manifest and SHA-256, 2 also the state's digest and counts, 3 also "
     "a scratch node started on it; a damaged file names its first damaged part"},
    {"backup", "restore",
     "FILE --data-dir DIR --name NAME [--new-cluster-id ID] [--key-file FILE] "
     "[--data-key-file FILE] [--to-index N --log-dir NODE_DATA_DIR]",
     1, 1, tandem_ctl_backup_restore,
     "seed an empty data directory from a backup for node NAME, under a new cluster id (random "
     "unless given) so it cannot join the cluster it came from; a whole cluster: every node's "
     "directory under one --new-cluster-id; --data-key-file: the key_file the new nodes will "
     "run with, which must open every personal-data value of the backup; --to-index carries it "
     "on to index N through the raft log a node of that cluster keeps"},
    {"member", "list", "", 0, 0, tandem_ctl_member_list, "list cluster members"},
    {"user", "add", "NAME --roles R,.. --site S [--password-stdin]", 1, 1, tandem_ctl_user_add,
     "create a person's user (password: one line on stdin)"},
    {"login", NULL, "--user NAME [--password-stdin]", 0, 0, tandem_ctl_login,
     "log in with a password from stdin; later commands without a certificate send the token"},
    {"user", "list", "", 0, 0, tandem_ctl_user_list, "list users (never a password hash)"},
    {"user", "roles", "NAME R,..", 2, 2, tandem_ctl_user_roles,
     "set a user's roles (ends the user's sessions)"},
    {"user", "disable", "NAME", 1, 1, tandem_ctl_user_disable,
     "disable a user (ends the user's sessions on every node)"},
    {"user", "delete", "NAME", 1, 1, tandem_ctl_user_delete, "delete a user"},
    {"user", "passwd", "NAME [--password-stdin] [--old]", 1, 1, tandem_ctl_user_passwd,
     "set a password from stdin (--old: first line the old one, for one's own)"},
    {"member", "add", "NAME SITE RAFT API [--role voter|standby|spare]", 4, 4,
     tandem_ctl_member_add, "add a node started with join=true (RAFT host:port, API URL)"},
    {"member", "remove", "NAME", 1, 1, tandem_ctl_member_remove, "remove a member"},
    {"member", "transfer-leader", "NAME", 1, 1, tandem_ctl_member_transfer,
     "move leadership to the voter NAME"},
    {"member", "rejoin", "NAME", 1, 1, tandem_ctl_member_rejoin,
     "re-seed a fenced or broken member: move its old data aside (DATA_DIR/fenced-*, never "
     "deleted) with a divergence report, re-add it as a standby, let it catch up"},
    {"member", "divergence", "NAME", 1, 1, tandem_ctl_member_divergence,
     "show NAME's divergence reports (asked of NAME itself): fork point, entries after it, "
     "keys, jobs and boxes touched, where the old data is kept"},
    {"member", "release", "NAME [--reason TEXT]", 1, 1, tandem_ctl_member_release,
     "lift NAME's start-up quarantine (audited): only when you know no newer epoch runs "
     "elsewhere"},
    {"job", "create",
     "CLIENT KIND SITE [--id ID] [--stages a,b,..] [--effort N] [--due TIME] [--priority N] "
     "[--operator NAME] [--pinned] [--file JOB.json]",
     0, 3, tandem_ctl_job_create,
     "create a job (stages default receive,scan,enter,verify,ship; TIME is RFC 3339)"},
    {"job", "get", "ID [--local]", 1, 1, tandem_ctl_job_get, "show one job"},
    {"job", "list", "[--site S] [--status S] [--client C] [--stage S] [--limit N] [--local]", 0, 0,
     tandem_ctl_job_list, "list jobs in id order, filtered"},
    {"job", "advance", "ID", 1, 1, tandem_ctl_job_action,
     "move a job to its next stage (its picked boxes go into process)"},
    {"job", "hold", "ID", 1, 1, tandem_ctl_job_action, "put a queued or running job on hold"},
    {"job", "resume", "ID", 1, 1, tandem_ctl_job_action, "resume a job on hold"},
    {"job", "complete", "ID", 1, 1, tandem_ctl_job_action, "mark a job at its last stage done"},
    {"job", "cancel", "ID", 1, 1, tandem_ctl_job_action, "cancel an open job"},
    {"job", "pin", "ID", 1, 1, tandem_ctl_job_action, "keep a job at its site (rebalance)"},
    {"job", "unpin", "ID", 1, 1, tandem_ctl_job_action, "let rebalance move a job again"},
    {"job", "operator", "ID [NAME]", 1, 2, tandem_ctl_job_operator,
     "assign NAME to a job (no NAME: clear)"},
    {"job", "trace", "ID", 1, 1, tandem_ctl_trace_show, "print a job's timeline"},
    {"box", "checkin",
     "ID LEDGER CLIENT SITE [--shelf S] [--volumes a,b,..] [--retain-until TIME] | --file "
     "ROWS.csv|ROWS.json",
     0, 4, tandem_ctl_box_checkin,
     "check in one box, or all rows of a ledger file or none (CSV header: id,ledger,client,"
     "site,shelf,volumes,retain_until; volumes ;-separated)"},
    {"box", "get", "ID [--local]", 1, 1, tandem_ctl_box_get, "show one box"},
    {"box", "list", "[--site S] [--status S] [--job J] [--limit N] [--local]", 0, 0,
     tandem_ctl_box_list, "list boxes in id order, filtered"},
    {"box", "pick", "ID JOB", 2, 2, tandem_ctl_box_pick, "pick a stored box for an open job"},
    {"box", "return", "ID", 1, 1, tandem_ctl_box_action, "return a picked or processed box"},
    {"box", "move", "ID SITE SHELF", 3, 3, tandem_ctl_box_move,
     "shelve a box at SITE/SHELF (puts it in stock)"},
    {"box", "dispose", "ID", 1, 1, tandem_ctl_box_action,
     "dispose of a box (writes a disposal record)"},
    {"box", "trace", "ID", 1, 1, tandem_ctl_trace_show, "print a box's timeline"},
    {"trace", "job", "ID", 1, 1, tandem_ctl_trace_show, "print a job's timeline"},
    {"trace", "box", "ID", 1, 1, tandem_ctl_trace_show, "print a box's timeline"},
    {"backup", "list", "[--site S] [--retired] [--local]", 0, 0, tandem_ctl_backup_list,
     "each site's shipped backups: index, age, size, the nodes keeping them (and the witnesses "
     "keeping their manifests), state and last verification"},
    {"key", "rotate", "", 0, 0, tandem_ctl_key_rotate,
     "re-seal every personal-data value under key_file's current key (add the key on every node "
     "and SIGHUP first)"},
    {"key", "status", "", 0, 0, tandem_ctl_key_status,
     "the current key id and how many values are under it or pending"},
    {"trace", "purge", "[--events-max N]", 0, 0, tandem_ctl_trace_purge,
     "purge trace events older than the retention period (leaves disposal records)"},
    {"trace", "disposals", "[--limit N]", 0, 0, tandem_ctl_trace_disposals,
     "list disposal records (disposed boxes and purges)"},
    {"bcp", "status", "[--local]", 0, 0, tandem_ctl_bcp_status,
     "sites with state, epoch, nodes and lag (RPO exposure); leader and recent decisions; "
     "without a leader (or with --local) one node's own view, marked local and dated"},
    {"bcp", "invoke", "SITE [--reason TEXT] [--force] [--confirm-lost NAME,...] [--dry-run]", 1, 1,
     tandem_ctl_bcp_invoke,
     "take SITE out of service (planned); --force: quorum lost, recover the survivors; "
     "--confirm-lost: the members you guarantee are powered off or isolated; --dry-run: say "
     "which roles would change and which jobs would move, change nothing"},
    {"bcp", "revoke", "SITE [--failback] [--reason TEXT] [--dry-run]", 1, 1, tandem_ctl_bcp_revoke,
     "bring SITE back; --failback also returns leadership and the still-queued jobs to it; "
     "--dry-run: say what would change, change nothing"},
    {"bcp", "drill", "SITE [--dry-run] [--rate N] [--reason TEXT] [--report FILE]", 1, 1,
     tandem_ctl_bcp_drill,
     "invoke + probe writes + verify + revoke, with an RTO/RPO report (--dry-run: plan only; "
     "--report: also as a standalone HTML file)"},
    {"bcp", "drills", "[--limit N]", 0, 0, tandem_ctl_bcp_drills,
     "the replicated drill history, newest first"},
    {"bcp", "prefer", "SITE|-", 1, 1, tandem_ctl_bcp_prefer,
     "keep leadership on SITE when it is active ('-': no preference)"},
    {"audit", "tail", "[--limit N]", 0, 0, tandem_ctl_audit_tail,
     "the newest audit records (20 by default)"},
    {"audit", "show", "SEQ", 1, 1, tandem_ctl_audit_show, "one audit record with its hashes"},
    {"audit", "verify", "", 0, 0, tandem_ctl_audit_verify,
     "walk the audit chain; exit 1 naming the first broken link"},
    {"audit", "failures", "--since TIME|DURATION", 0, 0, tandem_ctl_audit_failures,
     "failed logins and denials since TIME (RFC 3339) or DURATION ago (30m, 24h, 7d), grouped by "
     "actor and source"},
    {"bcp", "events", "[--follow] [--since SEQ]", 0, 0, tandem_ctl_bcp_events,
     "BCP events one per line (-o json: JSON lines); --follow streams them as they happen"},
    {"bcp", "incidents", "[--limit N]", 0, 0, tandem_ctl_bcp_incidents,
     "incident reports of real invokes (timeline, longest write gap, jobs moved, lag)"},
    {"site", "list", "[--local]", 0, 0, tandem_ctl_site_list,
     "sites with state, capacity, backlog (units and hours), queued jobs and jobs at risk"},
    {"site", "set-capacity", "SITE N", 2, 2, tandem_ctl_site_set_capacity,
     "set SITE's capacity to N effort units per hour (kept in its history)"},
    {"site", "capacity-history", "SITE [--limit N]", 1, 1, tandem_ctl_site_capacity_history,
     "SITE's capacity changes, newest first"},
    {"rebalance", "plan", "[--objective makespan|due] [--max-moves N] [--at TIME] [--local]", 0, 0,
     tandem_ctl_rebalance_plan,
     "propose moves of queued jobs between sites: backlog hours and due-date risk before -> "
     "after"},
    {"rebalance", "apply", "PLAN_ID | --file PLAN.json", 0, 1, tandem_ctl_rebalance_apply,
     "apply a plan as one command; refused (exit 1) when a job it moves changed since"},
};
const size_t tandem_ctl_command_count =
    sizeof(tandem_ctl_commands) / sizeof(tandem_ctl_commands[0]);

const char *tandem_ctl_args_flag(const struct tandem_ctl_args *args, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < args->flag_count; i++) {
        const struct tandem_ctl_flag *f = &args->flags[i];
        if (f->name_len == len && strncmp(f->name, name, len) == 0) {
            return f->value;
        }
    }
    return NULL;
}

int tandem_ctl_fail(struct tandem_ctl_context *ctx, int code, const char *fmt, ...)
{
    va_list ap;
    int prefix = snprintf(ctx->errmsg, sizeof(ctx->errmsg), "%s: ", ctx->what);
    size_t used = prefix < 0 ? 0 : (size_t)prefix;

    if (used < sizeof(ctx->errmsg)) {
        va_start(ap, fmt);
        vsnprintf(ctx->errmsg + used, sizeof(ctx->errmsg) - used, fmt, ap);
        va_end(ap);
    }
    for (char *p = ctx->errmsg; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7F) {
            *p = ' ';
        }
    }
    return code;
}

int tandem_ctl_call(struct tandem_ctl_context *ctx, const struct tandem_ctl_request *req,
                    struct tandem_ctl_response *resp)
{
    int rc = tandem_ctl_client_send(ctx->client, req, resp);
    if (rc != TANDEM_CTL_OK) {
        return tandem_ctl_fail(ctx, rc, "%s", ctx->client->errmsg);
    }
    if (resp->status < 200 || resp->status > 299) {
        char reason[TANDEM_CTL_ERRMSG_SIZE];
        tandem_ctl_response_reason(resp, reason, sizeof(reason));
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s (HTTP %ld)", reason, resp->status);
    }
    return TANDEM_CTL_OK;
}

int tandem_ctl_call_json(struct tandem_ctl_context *ctx, const struct tandem_ctl_request *req,
                         json_t **out)
{
    struct tandem_ctl_response resp;
    json_error_t jerr;

    tandem_ctl_response_init(&resp);
    int rc = tandem_ctl_call(ctx, req, &resp);
    if (rc != TANDEM_CTL_OK) {
        goto err_after_response;
    }
    json_t *root = json_loadb(resp.body ? resp.body : "", resp.body_len, 0, &jerr);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s answered with bad JSON: %s",
                             resp.endpoint, root == NULL ? jerr.text : "not an object");
        goto err_after_response;
    }
    *out = root;

err_after_response:
    tandem_ctl_response_free(&resp);
    return rc;
}

int tandem_ctl_print_json(struct tandem_ctl_context *ctx, const json_t *value)
{
    if (tandem_ctl_json_print(ctx->out, value) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "writing output failed");
    }
    return TANDEM_CTL_OK;
}

void tandem_ctl_timeout_at_least(struct tandem_ctl_context *ctx, long ms)
{
    if (ctx->client->timeout_ms < ms) {
        ctx->client->timeout_ms = ms;
    }
}

int tandem_ctl_get_json(struct tandem_ctl_context *ctx, const char *path, const char *list,
                        json_t **out)
{
    json_t *root = NULL;
    struct tandem_ctl_request req = {"GET", path, NULL, 0, NULL};
    int rc = tandem_ctl_call_json(ctx, &req, &root);
    if (rc == TANDEM_CTL_OK && list != NULL && !json_is_array(json_object_get(root, list))) {
        json_decref(root);
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "answer has no \"%s\" list", list);
    }
    if (rc == TANDEM_CTL_OK) {
        *out = root;
    }
    return rc;
}

int tandem_ctl_post_json(struct tandem_ctl_context *ctx, const char *path, const json_t *body,
                         json_t **out)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body != NULL && text == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
    }
    struct tandem_ctl_request req = {"POST", path, text, text ? strlen(text) : 0,
                                     "application/json"};
    int rc = tandem_ctl_call_json(ctx, &req, out);
    free(text);
    return rc;
}

int tandem_ctl_post_packed(struct tandem_ctl_context *ctx, const char *path, json_t *body,
                           json_t **out)
{
    if (body == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "arguments must be UTF-8");
    }
    int rc = tandem_ctl_post_json(ctx, path, body, out);
    json_decref(body);
    return rc;
}

int tandem_ctl_answer(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args, int rc,
                      json_t *answer, tandem_ctl_answer_print *print)
{
    if (rc == TANDEM_CTL_OK) {
        rc = ctx->output == TANDEM_CTL_OUTPUT_JSON ? tandem_ctl_print_json(ctx, answer)
                                                   : print(ctx, args, answer);
    }
    json_decref(answer);
    return rc;
}

int tandem_ctl_post_answer(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                           int rc, const char *path, json_t *body, tandem_ctl_answer_print *print)
{
    json_t *answer = NULL;
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_post_packed(ctx, path, body, &answer);
    } else {
        json_decref(body);
    }
    return tandem_ctl_answer(ctx, args, rc, answer, print);
}

int tandem_ctl_item_path(struct tandem_ctl_context *ctx, const char *collection, const char *what,
                         const char *value, const char *suffix, char *path, size_t size)
{
    char encoded[ENCODED_VALUE_MAX];
    if (value[0] == '\0' ||
        tandem_ctl_percent_encode(value, strlen(value), encoded, sizeof encoded) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s must be 1 to %d bytes", what,
                               TANDEM_CTL_VALUE_MAX);
    }
    snprintf(path, size, "%s/%s%s", collection, encoded, suffix);
    return TANDEM_CTL_OK;
}

static int object_answer_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                               const json_t *answer)
{
    (void)args;
    return tandem_ctl_object_print(ctx, answer);
}

int tandem_ctl_item_show(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                         const char *collection)
{
    char path[TANDEM_CTL_URL_MAX];
    json_t *item = NULL;
    bool local = tandem_ctl_args_flag(args, "local") != NULL;
    int rc = tandem_ctl_item_path(ctx, collection, "ID", args->positional[0],
                                  local ? "?consistency=local" : "", path, sizeof path);
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_get_json(ctx, path, NULL, &item);
    }
    return tandem_ctl_answer(ctx, args, rc, item, object_answer_print);
}

int tandem_ctl_item_action(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                           const char *collection, const char *verb, const json_t *body,
                           tandem_ctl_answer_print *print)
{
    char path[TANDEM_CTL_URL_MAX], suffix[32];
    json_t *item = NULL;
    snprintf(suffix, sizeof suffix, "/%s", verb);
    int rc =
        tandem_ctl_item_path(ctx, collection, "ID", args->positional[0], suffix, path, sizeof path);
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_post_json(ctx, path, body, &item);
    }
    return tandem_ctl_answer(ctx, args, rc, item, print);
}
