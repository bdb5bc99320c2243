/* tandemctl cluster commands: status (one row per member, each probed directly) and member
 * list/add/remove/transfer-leader/rejoin. */
#include <stdlib.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/columns.h"
#include "node/ctl/ctl.h"
#include "node/ctl/encode.h"
#include "node/ctl/listing.h"

#define PROBE_TIMEOUT_MS  1000 /* a member that cannot answer its own status in 1 s is "down" */
#define STATUS_PATH_LOCAL "/v1/status?consistency=local"
#define NAME_ENCODED_MAX  (63 * 3 + 1) /* node names are at most 63 bytes */
#define REJOIN_TIMEOUT_MS 30000        /* the server waits for the re-seed (<= 10 s) */

/* What status knows about one member: its entry in the configuration and its own answer. */
struct member_view {
    json_t *member;      /* borrowed from the first status answer */
    json_t *self_status; /* owned; the member's own /v1/status, NULL when it did not answer */
    json_t *self_node;   /* borrowed from self_status: its "node" object */
    char url[TANDEM_CTL_URL_MAX];
};

struct status_summary {
    const char *leader_name; /* borrowed; NULL when no leader is known */
    json_t *leader_node;     /* borrowed; the leader's "node" object, NULL when unknown */
    json_t *leader_members;  /* borrowed; members with match_index from the leader, or NULL */
    json_int_t commit_index; /* the leader's when known, else the answering node's; -1 unknown */
    /* What LAG is counted against: the leader's commit index when the leader answered, else
     * the highest commit or applied index any node reported (never a node's own, which made
     * every node's lag 0 without a leader); -1 unknown. */
    json_int_t lag_reference;
    bool lag_from_leader;
    json_int_t term;
    const char *cluster_id; /* borrowed */
};

static const char *member_string(const json_t *obj, const char *field)
{
    return json_string_value(json_object_get(obj, field));
}

static json_int_t json_index_or(const json_t *obj, const char *field, json_int_t fallback)
{
    json_t *v = json_object_get(obj, field);
    return json_is_integer(v) ? json_integer_value(v) : fallback;
}

/* Probes every member's own status at the same time; sets self_status for those answering. */
static int status_probe(struct tandem_ctl_context *ctx, struct member_view *views, size_t count)
{
    const char *urls[TANDEM_CTL_PROBES_MAX] = {0};
    char errmsg[TANDEM_CTL_ERRMSG_SIZE];
    long timeout_ms = ctx->timeout_ms < PROBE_TIMEOUT_MS ? ctx->timeout_ms : PROBE_TIMEOUT_MS;

    /* Heap, not stack: each response carries URL-sized buffers. */
    struct tandem_ctl_response *responses = calloc(count ? count : 1, sizeof(*responses));
    if (responses == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
    }
    for (size_t i = 0; i < count; i++) {
        const char *api = member_string(views[i].member, "api");
        size_t len = api ? strlen(api) : 0;
        while (len > 0 && api[len - 1] == '/') {
            len--;
        }
        /* Members registered as host:port get the scheme the API serves. */
        snprintf(views[i].url, sizeof(views[i].url), "%s%.*s%s",
                 api && strstr(api, "://") ? "" : "http://", (int)len, api ? api : "",
                 STATUS_PATH_LOCAL);
        urls[i] = views[i].url;
        tandem_ctl_response_init(&responses[i]);
    }
    if (tandem_ctl_client_probe(urls, count, timeout_ms, responses, errmsg) != 0) {
        free(responses);
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s", errmsg);
    }
    for (size_t i = 0; i < count; i++) {
        json_error_t jerr;
        if (responses[i].status == 200 && responses[i].body_len > 0) {
            views[i].self_status = json_loadb(responses[i].body, responses[i].body_len, 0, &jerr);
            views[i].self_node = json_object_get(views[i].self_status, "node");
            if (!json_is_object(views[i].self_node)) {
                json_decref(views[i].self_status);
                views[i].self_status = NULL;
                views[i].self_node = NULL;
            }
        }
        tandem_ctl_response_free(&responses[i]);
    }
    free(responses);
    return TANDEM_CTL_OK;
}

static json_int_t index_max(json_int_t a, json_int_t b)
{
    return a > b ? a : b;
}

/* The highest commit or applied index the answering node and every member that answered
 * reported; -1 when none did. */
static json_int_t highest_index(const json_t *node, const struct member_view *views, size_t count)
{
    json_int_t highest = index_max(json_index_or(node, "commit_index", -1),
                                   json_index_or(node, "applied_index", -1));
    for (size_t i = 0; i < count; i++) {
        highest = index_max(highest, json_index_or(views[i].self_node, "commit_index", -1));
        highest = index_max(highest, json_index_or(views[i].self_node, "applied_index", -1));
    }
    return highest;
}

/* Picks the leader's own view: its probe if it answered as leader, else the answering node
 * when that is the leader. Commit index and term come from there when possible. */
static void status_summarise(json_t *root, const struct member_view *views, size_t count,
                             struct status_summary *s)
{
    json_t *node = json_object_get(root, "node");
    json_t *leader_status = NULL;

    memset(s, 0, sizeof(*s));
    s->leader_name = member_string(json_object_get(root, "leader"), "name");
    s->cluster_id = member_string(node, "cluster_id");
    for (size_t i = 0; i < count && s->leader_name != NULL; i++) {
        const char *name = member_string(views[i].member, "name");
        const char *state = member_string(views[i].self_node, "state");
        if (name && strcmp(name, s->leader_name) == 0 && state && strcmp(state, "leader") == 0) {
            s->leader_node = views[i].self_node;
            leader_status = views[i].self_status;
        }
    }
    const char *state = member_string(node, "state");
    if (s->leader_node == NULL && state != NULL && strcmp(state, "leader") == 0) {
        s->leader_node = node;
        leader_status = root;
    }
    s->leader_members = json_object_get(leader_status, "members");
    json_t *source = s->leader_node ? s->leader_node : node;
    s->commit_index = json_index_or(source, "commit_index", -1);
    s->term = json_index_or(source, "term", -1);
    s->lag_from_leader = s->leader_node != NULL;
    s->lag_reference = s->lag_from_leader ? s->commit_index : highest_index(node, views, count);
}

/* The leader's match index for name, -1 when unknown. */
static json_int_t leader_match_index(const struct status_summary *s, const char *name)
{
    size_t i;
    json_t *m;
    json_array_foreach(s->leader_members, i, m)
    {
        const char *n = member_string(m, "name");
        if (n != NULL && name != NULL && strcmp(n, name) == 0) {
            return json_index_or(m, "match_index", -1);
        }
    }
    return -1;
}

/* A member a forced failover left behind: not in the configuration until rejoined. */
static bool member_lost(const struct member_view *v)
{
    return json_is_true(json_object_get(v->member, "lost"));
}

/* Lag in entries behind the lag reference (status_summary): from the member's own applied
 * index when it answered, else from the leader's match index; -1 when neither is known. */
static json_int_t member_lag(const struct status_summary *s, const struct member_view *v)
{
    if (member_lost(v)) {
        return -1; /* not replicated to: its lag means nothing */
    }
    json_int_t behind = json_index_or(v->self_node, "applied_index", -1);
    if (behind < 0) {
        behind = leader_match_index(s, member_string(v->member, "name"));
    }
    if (behind < 0 || s->lag_reference < 0) {
        return -1;
    }
    return s->lag_reference > behind ? s->lag_reference - behind : 0;
}

static void member_state(const struct member_view *v, char *out, size_t out_size)
{
    const char *state = member_string(v->self_node, "state");
    if (member_lost(v)) {
        snprintf(out, out_size, "lost");
        return;
    }
    if (v->self_node == NULL) {
        snprintf(out, out_size, "down");
        return;
    }
    snprintf(out, out_size, "%s%s", state ? state : "unknown",
             json_is_true(json_object_get(v->self_node, "fenced")) ? ",fenced" : "");
}

static int status_print_table(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                              const json_t *status)
{
    const char *cluster_id = member_string(status, "cluster_id");
    const char *leader = member_string(json_object_get(status, "leader"), "name");
    char term[24], commit[24];
    (void)args;
    tandem_ctl_field_text(status, "term", tandem_ctl_cell_index, "-", term, sizeof term);
    tandem_ctl_field_text(status, "commit_index", tandem_ctl_cell_index, "-", commit,
                          sizeof commit);
    fprintf(ctx->out, "cluster %s  leader %s  term %s  commit %s\n", cluster_id ? cluster_id : "-",
            leader ? leader : "none", term, commit);
    const json_t *against = json_object_get(status, "lag_against");
    if (!json_is_true(json_object_get(against, "leader"))) {
        char index[24];
        tandem_ctl_field_text(against, "index", tandem_ctl_cell_index, "-", index, sizeof index);
        fprintf(ctx->out,
                "no leader answered: LAG is behind the highest index any node reported "
                "(%s), not behind a leader's commit\n",
                index);
    }
    size_t i;
    json_t *warning;
    json_array_foreach(json_object_get(status, "warnings"), i, warning)
    {
        fprintf(ctx->out, "warning: %s\n", json_string_value(warning));
    }
    return tandem_ctl_view_print(ctx, json_object_get(status, "members"), TANDEM_CTL_VIEW_STATUS,
                                 NULL);
}

/* Every answering member's own warnings (a certificate near its expiry, say), each prefixed
 * with the member's name. */
static json_t *status_warnings(const struct member_view *views, size_t count)
{
    json_t *all = json_array();
    for (size_t i = 0; i < count && all != NULL; i++) {
        const char *name = member_string(views[i].member, "name");
        size_t j;
        json_t *warning;
        json_array_foreach(json_object_get(views[i].self_status, "warnings"), j, warning)
        {
            if (json_is_string(warning)) {
                json_array_append_new(
                    all, json_sprintf("%s: %s", name ? name : "?", json_string_value(warning)));
            }
        }
    }
    return all;
}

static json_t *json_index_value(json_int_t v)
{
    return v >= 0 ? json_integer(v) : json_null();
}

/* One composed member: the configuration entry plus what status learned about it. */
static json_t *status_member_json(const struct status_summary *s, const struct member_view *v)
{
    char state[48];
    const char *name = member_string(v->member, "name");
    json_t *m = json_deep_copy(v->member);

    member_state(v, state, sizeof(state));
    if (m == NULL ||
        json_object_set_new(
            m, "leader",
            json_boolean(name && s->leader_name && strcmp(name, s->leader_name) == 0)) != 0 ||
        json_object_set_new(m, "reachable", json_boolean(v->self_node != NULL)) != 0 ||
        json_object_set_new(m, "state", json_string(state)) != 0 ||
        json_object_set_new(m, "term", json_index_value(json_index_or(v->self_node, "term", -1))) ||
        json_object_set_new(m, "applied_index",
                            json_index_value(json_index_or(v->self_node, "applied_index", -1))) ||
        json_object_set_new(m, "match_index", json_index_value(leader_match_index(s, name))) ||
        json_object_set_new(m, "lag", json_index_value(member_lag(s, v))) != 0) {
        json_decref(m);
        return NULL;
    }
    return m;
}

/* What status prints: the cluster's id, leader, term and commit, and every member as
 * status_member_json composes it. NULL when memory ran out. */
static json_t *status_compose(json_t *root, const struct status_summary *s,
                              const struct member_view *views, size_t count)
{
    json_t *members = json_array();

    for (size_t i = 0; i < count && members != NULL; i++) {
        if (json_array_append_new(members, status_member_json(s, &views[i])) != 0) {
            json_decref(members);
            members = NULL;
        }
    }
    if (members == NULL) {
        return NULL;
    }
    json_t *against = json_pack("{s:o,s:b}", "index", json_index_value(s->lag_reference), "leader",
                                s->lag_from_leader);
    return json_pack("{s:o?,s:O?,s:o,s:o,s:o,s:o,s:o}", "cluster_id",
                     s->cluster_id ? json_string(s->cluster_id) : NULL, "leader",
                     json_object_get(root, "leader"), "term", json_index_value(s->term),
                     "commit_index", json_index_value(s->commit_index), "lag_against", against,
                     "members", members, "warnings", status_warnings(views, count));
}

int tandem_ctl_status(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    struct status_summary summary;
    json_t *root = NULL, *status = NULL;

    int rc = tandem_ctl_get_json(ctx, "/v1/status", NULL, &root);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    json_t *members = json_object_get(root, "members");
    size_t count = json_array_size(members);
    if (count > TANDEM_CTL_PROBES_MAX) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "more than %d members",
                             TANDEM_CTL_PROBES_MAX);
        goto err_after_root;
    }
    struct member_view *views = calloc(count ? count : 1, sizeof(*views));
    if (views == NULL) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
        goto err_after_root;
    }
    for (size_t i = 0; i < count; i++) {
        views[i].member = json_array_get(members, i);
    }
    rc = status_probe(ctx, views, count);
    if (rc == TANDEM_CTL_OK) {
        status_summarise(root, views, count, &summary);
        status = status_compose(root, &summary, views, count);
        rc = status != NULL
                 ? TANDEM_CTL_OK
                 : tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory composing JSON");
    }
    for (size_t i = 0; i < count; i++) {
        json_decref(views[i].self_status);
    }
    free(views);
    rc = tandem_ctl_answer(ctx, args, rc, status, status_print_table);

err_after_root:
    json_decref(root);
    return rc;
}

int tandem_ctl_member_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    (void)args;
    return tandem_ctl_list_answer(ctx, "/v1/members", "members", false, TANDEM_CTL_VIEW_MEMBERS);
}

/* The --role of member add, voter by default. */
static const char *member_role(const struct tandem_ctl_args *args)
{
    const char *role = tandem_ctl_args_flag(args, "role");
    return role != NULL ? role : "voter";
}

static int member_add_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                            const json_t *root)
{
    json_t *member = json_object_get(root, "member");
    const char *name = member_string(member, "name");
    const char *assigned = member_string(member, "role");
    fprintf(ctx->out, "added %s as %s\n", name ? name : args->positional[0],
            assigned ? assigned : member_role(args));
    return TANDEM_CTL_OK;
}

int tandem_ctl_member_add(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *role = member_role(args);

    if (strcmp(role, "voter") != 0 && strcmp(role, "standby") != 0 && strcmp(role, "spare") != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE,
                               "--role: expected voter, standby or spare, got '%s'", role);
    }
    json_t *body =
        json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", args->positional[0], "site", args->positional[1],
                  "raft", args->positional[2], "api", args->positional[3], "role", role);
    return tandem_ctl_post_answer(ctx, args, TANDEM_CTL_OK, "/v1/members", body, member_add_print);
}

/* "/v1/members/<encoded NAME><suffix>" into path. */
static int member_path(struct tandem_ctl_context *ctx, const char *name, const char *suffix,
                       char *path, size_t size)
{
    char encoded[NAME_ENCODED_MAX];
    if (name[0] == '\0' ||
        tandem_ctl_percent_encode(name, strlen(name), encoded, sizeof encoded) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "NAME must be 1..63 bytes");
    }
    snprintf(path, size, "/v1/members/%s%s", encoded, suffix);
    return TANDEM_CTL_OK;
}

/* "<what> <name>": the name the answer's field gives, else NAME. */
static int member_named_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                              const json_t *root, const char *what, const char *field)
{
    const char *name = member_string(root, field);
    fprintf(ctx->out, "%s %s\n", what, name ? name : args->positional[0]);
    return TANDEM_CTL_OK;
}

static int member_remove_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                               const json_t *root)
{
    return member_named_print(ctx, args, root, "removed", "removed");
}

int tandem_ctl_member_remove(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[NAME_ENCODED_MAX + 32];
    json_t *root = NULL;

    int rc = member_path(ctx, args->positional[0], "", path, sizeof path);
    if (rc == TANDEM_CTL_OK) {
        struct tandem_ctl_request req = {"DELETE", path, NULL, 0, NULL};
        rc = tandem_ctl_call_json(ctx, &req, &root);
    }
    return tandem_ctl_answer(ctx, args, rc, root, member_remove_print);
}

static int member_transfer_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                                 const json_t *root)
{
    return member_named_print(ctx, args, root, "leader is now", "leader");
}

int tandem_ctl_member_transfer(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    return tandem_ctl_post_answer(ctx, args, TANDEM_CTL_OK, "/v1/leader/transfer",
                                  json_pack("{s:s}", "name", args->positional[0]),
                                  member_transfer_print);
}

static int member_rejoin_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                               const json_t *root)
{
    const char *kept = member_string(root, "data_kept_at");
    json_t *d = json_object_get(root, "divergence");
    json_t *fork = json_object_get(d, "fork");
    fprintf(ctx->out,
            "%s re-seeded at epoch %" JSON_INTEGER_FORMAT
            " and re-added as a standby; it catches up from the leader\n",
            args->positional[0], json_index_or(root, "epoch", 0));
    if (kept != NULL && kept[0] != '\0') {
        fprintf(ctx->out,
                "its old data is kept in %s on %s (%.1f MiB; never deleted automatically: "
                "delete it by hand once reconciled)\n",
                kept, args->positional[0],
                (double)json_index_or(d, "bytes_kept", 0) / (1024.0 * 1024.0));
    }
    if (json_is_object(d)) {
        fprintf(ctx->out,
                "divergence: %" JSON_INTEGER_FORMAT
                " entries after the fork at index %" JSON_INTEGER_FORMAT
                " (%s), touching %" JSON_INTEGER_FORMAT " keys, %" JSON_INTEGER_FORMAT
                " jobs, %" JSON_INTEGER_FORMAT " boxes; details: tandemctl member divergence %s\n",
                json_index_or(d, "entries_after_fork", -1), json_index_or(fork, "index", -1),
                member_string(fork, "certainty") ? member_string(fork, "certainty") : "unknown",
                json_index_or(d, "keys", 0), json_index_or(d, "jobs", 0),
                json_index_or(d, "boxes", 0), args->positional[0]);
    }
    return TANDEM_CTL_OK;
}

int tandem_ctl_member_rejoin(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[NAME_ENCODED_MAX + 32];

    int rc = member_path(ctx, args->positional[0], "/rejoin", path, sizeof path);
    tandem_ctl_timeout_at_least(ctx, REJOIN_TIMEOUT_MS);
    return tandem_ctl_post_answer(ctx, args, rc, path, json_object(), member_rejoin_print);
}
