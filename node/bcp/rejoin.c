/* Member rejoin at the leader (node/bcp/rejoin.h): remove, re-seed, wait until back, add, assign
 * standby, record the decision, each move checked against the step table. */
#include "node/bcp/rejoin.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/log.h"
#include "replication/bcp/sites.h"
#include "storage/assert.h"
#include "storage/error.h"

#define BIT TANDEM_SM_BIT
/* A rejoin only goes forward: every step moves on to the next one, or fails. */
#define NEXT_OR_FAILED(step) (BIT(TANDEM_REJOIN_##step) | BIT(TANDEM_REJOIN_FAILED))

const struct tandem_sm_conf tandem_rejoin_sm_conf[TANDEM_REJOIN_STEPS] = {
    [TANDEM_REJOIN_REMOVE] = {"remove", TANDEM_SM_INITIAL, NEXT_OR_FAILED(RESEED)},
    [TANDEM_REJOIN_RESEED] = {"reseed", 0, NEXT_OR_FAILED(BACK)},
    [TANDEM_REJOIN_BACK] = {"back", 0, NEXT_OR_FAILED(ADD)},
    [TANDEM_REJOIN_ADD] = {"add", 0, NEXT_OR_FAILED(ASSIGN)},
    [TANDEM_REJOIN_ASSIGN] = {"assign", 0, NEXT_OR_FAILED(RECORD)},
    [TANDEM_REJOIN_RECORD] = {"record", 0, NEXT_OR_FAILED(DONE)},
    [TANDEM_REJOIN_DONE] = {"done", TANDEM_SM_FINAL, 0},
    [TANDEM_REJOIN_FAILED] = {"failed", TANDEM_SM_FINAL, 0},
};

struct rejoin {
    struct raft_change change;
    uv_timer_t timer; /* polls the re-seeded node until it is back, empty */
    bool timer_open;
    struct tandem_bcp *bcp;        /* borrowed */
    struct tandem_bcp_reply reply; /* answered once, on DONE or FAILED */
    struct tandem_member member;
    uint64_t id;
    uint64_t deadline_ms;
    bool in_config;      /* it was a member: raft_remove comes first */
    bool removed;        /* raft_remove succeeded */
    bool reseeded;       /* it accepted the re-seed */
    struct tandem_sm sm; /* the step: tandem_rejoin_sm_conf */
    char by[TANDEM_SITE_BY_LEN_MAX + 1];
    char kept_at[PATH_MAX]; /* where it said its old data goes; "" when it did not say */
    char boot_id[TANDEM_REJOIN_BOOT_ID_MAX + 1]; /* of the process that accepted the re-seed */
    json_t *divergence; /* owned: its newest divergence report's summary, or NULL */
    struct tandem_write write;
    Tandem__Command command;
    Tandem__SiteDecision decision;
    char reason[TANDEM_SITE_REASON_LEN_MAX + 1];
};

/* The id is the member's; the poll timer opens once the re-seed was accepted; a member leaves
 * the configuration before its re-seed, and is re-added only once it was re-seeded. */
static bool rejoin_invariant(const struct tandem_sm *sm, int prev, void *data)
{
    (void)prev;
    const struct rejoin *j = data;
    bool left = !j->in_config || j->removed;
    if (j->id != tandem_member_id(j->member.name) || (j->removed && !j->in_config)) {
        return false;
    }
    switch (tandem_sm_state(sm)) {
        case TANDEM_REJOIN_REMOVE:
            return !j->timer_open && !j->reseeded;
        case TANDEM_REJOIN_RESEED:
            return !j->timer_open && !j->reseeded && left;
        case TANDEM_REJOIN_FAILED:
            return true;
        default: /* back, add, assign, done */
            return j->timer_open && j->reseeded && left;
    }
}

static void rejoin_move(struct rejoin *j, int step)
{
    tandem_sm_move(&j->sm, step);
}

static void rejoin_closed_cb(uv_handle_t *handle)
{
    free(handle->data);
}

static void rejoin_free(struct rejoin *j)
{
    tandem_sm_fini(&j->sm);
    json_decref(j->divergence);
    j->divergence = NULL;
    if (j->timer_open) {
        uv_close((uv_handle_t *)&j->timer, rejoin_closed_cb);
    } else {
        free(j);
    }
}

static void rejoin_fail(struct rejoin *j, int status, const char *what, const char *detail)
{
    rejoin_move(j, TANDEM_REJOIN_FAILED);
    tandem_bcp_reply_error(&j->reply, status, "rejoin %s: %s: %s", j->member.name, what, detail);
    rejoin_free(j);
}

static void rejoin_change_cb(struct raft_change *req, int status);

static void rejoin_add(struct rejoin *j)
{
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    tandem_member_address_format(&j->member, address, sizeof address);
    rejoin_move(j, TANDEM_REJOIN_ADD);
    j->change.data = j;
    int rv = raft_add(&j->bcp->env.raft->raft, &j->change, j->id, address, rejoin_change_cb);
    if (rv != 0) {
        rejoin_fail(j, 503, "re-adding it failed (it was re-seeded; retry rejoin)",
                    raft_strerror(rv));
    }
}

static void rejoin_poll(uv_timer_t *timer);

/* The summary of a divergence report: where, the fork, how many entries after it, what they
 * touched. */
static json_t *divergence_summary(json_t *report)
{
    json_t *touched = json_object_get(report, "touched");
    static const char *const copied[] = {"folder", "created", "fork", "entries_after_fork",
                                         "bytes_kept"};
    static const char *const counted[] = {"keys", "jobs", "boxes"};
    json_t *out = json_object();
    for (size_t i = 0; out != NULL && i < sizeof copied / sizeof copied[0]; i++) {
        json_t *value = json_object_get(report, copied[i]);
        json_object_set(out, copied[i], value != NULL ? value : json_null());
    }
    for (size_t i = 0; out != NULL && i < sizeof counted / sizeof counted[0]; i++) {
        json_t *ids = json_object_get(touched, counted[i]);
        json_object_set_new(out, counted[i], json_integer((json_int_t)json_array_size(ids)));
    }
    return out;
}

/* Its report was written before it answered empty: the newest one is this re-seed's. A node
 * that cannot show it still rejoins; the decision then says the report is missing. */
static void rejoin_divergence_cb(void *data, int status, int http_status, const char *body,
                                 size_t len)
{
    struct rejoin *j = data;
    json_t *root = status == 0 && http_status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *newest = json_array_get(json_object_get(root, "reports"), 0);
    if (newest != NULL) {
        j->divergence = divergence_summary(newest);
    }
    json_decref(root);
    rejoin_add(j);
}

static void rejoin_divergence_fetch(struct rejoin *j)
{
    if (tandem_bcp_call(j->bcp, j->member.api, "GET", "/v1/node/divergence", NULL, NULL,
                        TANDEM_REJOIN_POLL_MS * 5, rejoin_divergence_cb, j) != 0) {
        rejoin_add(j);
    }
}

static void rejoin_poll_later(struct rejoin *j)
{
    int rv = uv_timer_start(&j->timer, rejoin_poll, TANDEM_REJOIN_POLL_MS, 0);
    if (rv != 0) {
        rejoin_fail(j, 500, "cannot wait for it", uv_strerror(rv));
    }
}

/* Back: a process started after the one that accepted the re-seed (another boot id: a node that
 * was already empty answers the same before its restart, and entries it acknowledged then would
 * be gone after it), with a raft log of nothing (join mode, wiped), at our epoch, not fenced. */
static void rejoin_back_cb(void *data, int status, int http_status, const char *body, size_t len)
{
    struct rejoin *j = data;
    tandem_assert(tandem_sm_state(&j->sm) == TANDEM_REJOIN_BACK);
    json_t *root = status == 0 && http_status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *n = json_object_get(root, "node");
    json_t *last = json_object_get(n, "last_index"), *epoch = json_object_get(n, "epoch");
    const char *boot = json_string_value(json_object_get(n, "boot_id"));
    bool back = boot != NULL && strcmp(boot, j->boot_id) != 0 && json_is_integer(last) &&
                json_integer_value(last) == 0 && json_is_integer(epoch) &&
                (uint64_t)json_integer_value(epoch) == j->bcp->epoch &&
                json_is_false(json_object_get(n, "fenced"));
    json_decref(root);
    if (back) {
        rejoin_divergence_fetch(j);
    } else if (uv_now(j->bcp->env.loop) >= j->deadline_ms) {
        rejoin_fail(j, 504, "it was re-seeded but did not come back empty in time",
                    "check its log; retry rejoin");
    } else {
        rejoin_poll_later(j);
    }
}

static void rejoin_poll(uv_timer_t *timer)
{
    struct rejoin *j = timer->data;
    if (tandem_bcp_call(j->bcp, j->member.api, "GET", "/v1/status", NULL, NULL,
                        TANDEM_REJOIN_POLL_MS * 5, rejoin_back_cb, j) != 0) {
        rejoin_fail(j, 502, "cannot poll its status", "no client");
    }
}

static void rejoin_reseed_cb(void *data, int status, int http_status, const char *body,
                             size_t body_len)
{
    struct rejoin *j = data;
    char detail[300];
    if (status != 0 || (http_status != 200 && http_status != 202)) {
        snprintf(detail, sizeof detail, "%s %.*s", status != 0 ? uv_strerror(status) : "refused:",
                 (int)(body_len > 200 ? 200 : body_len), body == NULL ? "" : body);
        rejoin_fail(j, 502,
                    "its re-seed failed (it is no longer a member if it was one; fix it and retry "
                    "rejoin)",
                    detail);
        return;
    }
    json_t *answer = json_loadb(body, body_len, 0, NULL);
    const char *kept = json_string_value(json_object_get(answer, "data_kept_at"));
    const char *boot = json_string_value(json_object_get(answer, "boot_id"));
    snprintf(j->kept_at, sizeof j->kept_at, "%s", kept != NULL ? kept : "");
    bool boot_ok = boot != NULL && strlen(boot) <= TANDEM_REJOIN_BOOT_ID_MAX;
    snprintf(j->boot_id, sizeof j->boot_id, "%s", boot_ok ? boot : "");
    json_decref(answer);
    if (!boot_ok) {
        rejoin_fail(j, 502,
                    "its re-seed answer has no boot_id, so its restart cannot be told apart (it "
                    "is no longer a member if it was one; upgrade it and retry rejoin)",
                    "boot_id missing or too long");
        return;
    }
    /* Re-adding it before its old process stopped would let that process acknowledge entries
     * the emptied one no longer has: wait until it answers again with an empty log. */
    j->reseeded = true;
    j->deadline_ms = uv_now(j->bcp->env.loop) + TANDEM_REJOIN_BACK_TIMEOUT_MS;
    int rv = uv_timer_init(j->bcp->env.loop, &j->timer);
    if (rv != 0) {
        rejoin_fail(j, 500, "cannot wait for it", uv_strerror(rv));
        return;
    }
    j->timer.data = j;
    j->timer_open = true;
    rejoin_move(j, TANDEM_REJOIN_BACK);
    rejoin_poll_later(j);
}

/* The forced failovers' histories of our log, for the node's fork point; [] when unreadable. */
static json_t *forced_histories(struct tandem_bcp *b)
{
    MDB_txn *txn;
    json_t *forced = NULL;
    if (tandem_store_commit(b->env.store) == 0 && tandem_store_read_txn(b->env.store, &txn) == 0) {
        forced = tandem_sites_forced_json(b->env.store, txn);
        mdb_txn_abort(txn);
    }
    return forced != NULL ? forced : json_array();
}

static void rejoin_reseed(struct rejoin *j)
{
    json_t *request = json_pack("{s:I,s:s,s:b,s:s,s:o}", "epoch", (json_int_t)j->bcp->epoch,
                                "cluster_id", j->bcp->env.config->cluster_id, "force", true, "by",
                                j->by, "forced", forced_histories(j->bcp));
    char *body = request != NULL ? json_dumps(request, JSON_COMPACT) : NULL;
    json_decref(request);
    rejoin_move(j, TANDEM_REJOIN_RESEED);
    int rv = body == NULL
                 ? UV_ENOMEM
                 : tandem_bcp_call(j->bcp, j->member.api, "POST", "/v1/node/reseed", NULL, body,
                                   TANDEM_REJOIN_RESEED_TIMEOUT_MS, rejoin_reseed_cb, j);
    free(body);
    if (rv != 0) {
        rejoin_fail(j, 502, "cannot call its API", uv_strerror(rv));
    }
}

static void rejoin_answer(struct rejoin *j, bool recorded)
{
    const struct tandem_member *m = &j->member;
    json_t *member = json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", m->name, "site", m->site, "role",
                               "standby", "raft", m->raft, "api", m->api);
    rejoin_move(j, TANDEM_REJOIN_DONE);
    json_t *out = json_pack("{s:o,s:I,s:s,s:O?,s:b,s:s}", "member", member, "epoch",
                            (json_int_t)j->bcp->epoch, "data_kept_at", j->kept_at, "divergence",
                            j->divergence, "decision_recorded", recorded, "note",
                            "the old data is kept there until someone deletes it: tandemd never "
                            "does; tandemctl member divergence shows what to reconcile");
    tandem_bcp_reply_json(&j->reply, 200, out);
    rejoin_free(j);
}

static void rejoin_recorded_cb(struct tandem_write *w, int status, struct tandem_result *result)
{
    struct rejoin *j = w->data;
    bool recorded = status == 0 && result != NULL && result->status == 200;
    if (!recorded) {
        tandem_log(TANDEM_LOG_WARN, "rejoin %s: the decision was not recorded: %s", j->member.name,
                   status != 0                              ? tandem_strerror(status)
                   : result != NULL && result->body != NULL ? result->body
                                                            : "no result");
    }
    rejoin_answer(j, recorded);
}

/* "old data kept at PATH; N entries after the fork at index I (certainty)", bounded. */
static void rejoin_reason(struct rejoin *j)
{
    json_t *fork = json_object_get(j->divergence, "fork");
    json_t *after = json_object_get(j->divergence, "entries_after_fork");
    json_t *index = json_object_get(fork, "index");
    const char *certainty = json_string_value(json_object_get(fork, "certainty"));
    char tail[96] = "no divergence report";
    if (j->divergence != NULL && json_is_integer(after) && json_is_integer(index)) {
        snprintf(tail, sizeof tail,
                 "%" JSON_INTEGER_FORMAT " entries after the fork at index %" JSON_INTEGER_FORMAT
                 " (%s)",
                 json_integer_value(after), json_integer_value(index),
                 certainty != NULL ? certainty : "?");
    } else if (j->divergence != NULL) {
        snprintf(tail, sizeof tail, "fork point %s", certainty != NULL ? certainty : "unknown");
    }
    /* The tail goes first in the budget: a long path is cut, never the count. */
    int room = (int)sizeof j->reason - (int)strlen(tail) - 24;
    snprintf(j->reason, sizeof j->reason, "old data kept at %.*s; %s", room > 0 ? room : 0,
             j->kept_at[0] != '\0' ? j->kept_at : "(not said)", tail);
}

static void rejoin_record(struct rejoin *j)
{
    rejoin_move(j, TANDEM_REJOIN_RECORD);
    rejoin_reason(j);
    tandem__command__init(&j->command);
    tandem__site_decision__init(&j->decision);
    j->decision.action = "rejoin";
    j->decision.member = j->member.name;
    j->decision.site = j->member.site;
    j->decision.from_role = "";
    j->decision.to_role = "standby";
    j->decision.reason = j->reason;
    j->decision.by = j->by;
    j->command.body_case = TANDEM__COMMAND__BODY_SITE_DECISION;
    j->command.site_decision = &j->decision;
    j->write.command = &j->command;
    j->write.data = j;
    j->write.cb = rejoin_recorded_cb;
    if (tandem_proposer_write(j->bcp->env.proposer, &j->write) != 0) {
        rejoin_recorded_cb(&j->write, TANDEM_BUSY, NULL);
    }
}

static void rejoin_change_cb(struct raft_change *req, int status)
{
    struct rejoin *j = req->data;
    if (status != 0) {
        rejoin_fail(j, 503,
                    tandem_sm_state(&j->sm) == TANDEM_REJOIN_REMOVE ? "removing it failed"
                                                                    : "re-adding it failed",
                    raft_strerror(status));
        return;
    }
    if (tandem_sm_state(&j->sm) == TANDEM_REJOIN_REMOVE) {
        j->removed = true;
        rejoin_reseed(j);
    } else if (tandem_sm_state(&j->sm) == TANDEM_REJOIN_ADD) {
        rejoin_move(j, TANDEM_REJOIN_ASSIGN);
        int rv =
            raft_assign(&j->bcp->env.raft->raft, &j->change, j->id, RAFT_STANDBY, rejoin_change_cb);
        if (rv != 0) {
            rejoin_fail(j, 503, "making it a standby failed", raft_strerror(rv));
        }
    } else {
        tandem_assert(tandem_sm_state(&j->sm) == TANDEM_REJOIN_ASSIGN);
        rejoin_record(j);
    }
}

/* The member from the configuration, or from its home record when it is no longer in it. */
static int rejoin_lookup(struct tandem_bcp *b, const char *name, struct tandem_member *m,
                         bool *in_config)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    *in_config = tandem_raft_member_by_name(b->env.raft, name, m, NULL) == 0;
    if (*in_config) {
        return 0;
    }
    struct tandem_site_table *t = tandem_bcp_table_load(b);
    int rv = -1;
    if (t != NULL) {
        const struct tandem_member_home *home = tandem_site_table_home(t, name);
        rv = home == NULL ? -1 : tandem_member_address_parse(home->address, m, errmsg);
    }
    free(t);
    return rv;
}

void tandem_bcp_rejoin_start(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                             const char *name, const char *by)
{
    struct rejoin *j = calloc(1, sizeof *j);
    bool in_config = false;
    if (j == NULL) {
        tandem_bcp_reply_error(reply, 500, "out of memory");
        return;
    }
    if (rejoin_lookup(b, name, &j->member, &in_config) != 0) {
        tandem_bcp_reply_error(
            reply, 404, "no member named %s (not in the configuration, no home record)", name);
        free(j);
        return;
    }
    if (strcmp(name, b->env.self->name) == 0) {
        tandem_bcp_reply_error(reply, 409, "%s is the leader: transfer leadership first", name);
        free(j);
        return;
    }
    j->bcp = b;
    j->reply = *reply;
    snprintf(j->by, sizeof j->by, "%s", by != NULL && by[0] != '\0' ? by : "operator");
    j->id = tandem_member_id(name);
    j->in_config = in_config;
    j->change.data = j;
    tandem_sm_init(&j->sm, "rejoin", tandem_rejoin_sm_conf, TANDEM_REJOIN_STEPS,
                   TANDEM_REJOIN_REMOVE, rejoin_invariant, j);
    if (!in_config) {
        rejoin_reseed(j);
        return;
    }
    int rv = raft_remove(&b->env.raft->raft, &j->change, j->id, rejoin_change_cb);
    if (rv != 0) {
        rejoin_fail(j, 503, "removing it failed", raft_strerror(rv));
    }
}
