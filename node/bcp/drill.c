/* BCP drill orchestration: preflight, probe writer, invoke and takeover, digest parity, revoke
 * with failback, verification of every acknowledged probe write, and the stored report. */
#include "node/bcp/drill.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node/bcp/events.h"
#include "node/bcp/gap.h"
#include "node/bcp/takeover.h"
#include "node/log.h"
#include "node/pool_read.h"
#include "replication/bcp/moves.h"
#include "replication/bcp/sites.h"
#include "storage/assert.h"
#include "storage/clock.h"
#include "storage/error.h"

#define STEP_POLL_MS           50
#define DIGEST_RETRY_MS        200
#define DIGEST_AT_WAIT_MS      1500u /* a member waits this long for the entry asked for */
#define DIGEST_CALL_TIMEOUT_MS 2500u /* beyond that wait */
#define DIGEST_AT_MARGIN_FIRST 8u    /* entries past the highest index seen: a few batches */
#define DIGEST_AT_MARGIN_MAX   4096u
#define CALL_TIMEOUT_MS        12000 /* invoke/revoke answer within their own wait bound */
#define DRAIN_TIMEOUT_MS       6000  /* in-flight probe writes finish within their timeout */
#define LIST_TIMEOUT_MS        10000
#define DIGEST_NODES_MAX       TANDEM_SITE_PLAN_MEMBERS_MAX

#define BIT TANDEM_SM_BIT
/* Names are the report's step names (lower case), so they are spelled out. */
const struct tandem_sm_conf tandem_drill_sm_conf[TANDEM_DRILL_STEPS] = {
    /* an early refusal ends the drill here, before anything changed */
    [TANDEM_DRILL_PREFLIGHT] = {"preflight", TANDEM_SM_INITIAL | TANDEM_SM_FINAL,
                                BIT(TANDEM_DRILL_WARMUP)},
    [TANDEM_DRILL_WARMUP] = {"warmup", 0, BIT(TANDEM_DRILL_INVOKE)},
    /* refused: nothing to revoke; not sent: revoke anyway, the invoke may have been applied */
    [TANDEM_DRILL_INVOKE] = {"invoke", 0,
                             BIT(TANDEM_DRILL_TAKEOVER) | BIT(TANDEM_DRILL_REVOKE) |
                                 BIT(TANDEM_DRILL_DRAIN)},
    [TANDEM_DRILL_TAKEOVER] = {"takeover", 0,
                               BIT(TANDEM_DRILL_DIGEST_AFTER_INVOKE) | BIT(TANDEM_DRILL_REVOKE)},
    [TANDEM_DRILL_DIGEST_AFTER_INVOKE] = {"digest_after_invoke", 0, BIT(TANDEM_DRILL_HOLD)},
    [TANDEM_DRILL_HOLD] = {"hold", 0, BIT(TANDEM_DRILL_REVOKE)},
    [TANDEM_DRILL_REVOKE] = {"revoke", 0, BIT(TANDEM_DRILL_FAILBACK) | BIT(TANDEM_DRILL_DRAIN)},
    [TANDEM_DRILL_FAILBACK] = {"failback", 0, BIT(TANDEM_DRILL_COOLDOWN) | BIT(TANDEM_DRILL_DRAIN)},
    [TANDEM_DRILL_COOLDOWN] = {"cooldown", 0, BIT(TANDEM_DRILL_DRAIN)},
    [TANDEM_DRILL_DRAIN] = {"drain", 0,
                            BIT(TANDEM_DRILL_DIGEST_AFTER_REVOKE) | BIT(TANDEM_DRILL_VERIFY)},
    [TANDEM_DRILL_DIGEST_AFTER_REVOKE] = {"digest_after_revoke", 0, BIT(TANDEM_DRILL_VERIFY)},
    [TANDEM_DRILL_VERIFY] = {"verify", 0, BIT(TANDEM_DRILL_STORE)},
    [TANDEM_DRILL_STORE] = {"store", 0, BIT(TANDEM_DRILL_DONE)},
    [TANDEM_DRILL_DONE] = {"done", TANDEM_SM_FINAL, 0},
};

struct probe {
    uint64_t sent_ms, ack_ms;
    int status; /* 0 pending, HTTP status, or a negative UV_* code */
};

struct probe_call {
    struct drill *d;
    unsigned n;
};

struct digest_view {
    char name[TANDEM_NAME_LEN_MAX + 1];
    char api[TANDEM_URL_LEN_MAX + 1];
    uint64_t applied;
    char digest[2 * TANDEM_DIGEST_LEN + 1];
    bool answered;
    bool past; /* asked for the state at an index it had already passed (409) */
};

struct drill {
    struct tandem_bcp *bcp;        /* borrowed */
    struct tandem_bcp_reply reply; /* answered at the end */
    bool reply_pending;
    char id[TANDEM_DRILL_ID_LEN_MAX + 1];
    char site[TANDEM_SITE_LEN_MAX + 1];
    char reason[TANDEM_DRILL_REASON_LEN_MAX + 1]; /* the operator's, "" when none given */
    char targets[2][TANDEM_URL_LEN_MAX + 1];
    char target_names[2][TANDEM_NAME_LEN_MAX + 1];
    unsigned rate;
    uv_timer_t probe_timer, step_timer;
    unsigned handles_open;
    struct probe *probes; /* owned, TANDEM_DRILL_PROBES_MAX */
    unsigned n_probes, inflight;
    bool probing;
    uint64_t pause_from, pause_to; /* the digest pause, excluded from the gap measure */
    /* [takeover, failback]: from the invoke (revoke) being sent until it completed */
    struct tandem_drill_span switchovers[2];
    struct tandem_sm sm; /* the step: tandem_drill_sm_conf */
    bool call_pending;
    uint64_t step_started_ms, started_ms;
    int64_t started_wall_ms;
    json_t *timeline;  /* owned */
    json_t *digests;   /* owned: each digest check, its nodes' digests */
    json_t *preflight; /* owned */
    bool failback;     /* leadership was in the site (or preferred there): return it on revoke */
    bool takeover_ok, failback_ok, digests_equal[2], aborted;
    int64_t takeover_ms, failback_ms;
    int64_t jobs_moved;    /* by the invoke, from its answer; -1 = unknown */
    int64_t jobs_returned; /* by the failback revoke; -1 = unknown */
    uint64_t rpo_writes, verified;
    struct digest_view views[DIGEST_NODES_MAX];
    unsigned n_views, digest_pending;
    uint64_t digest_next_ms;
    /* Under live writes the members rarely stand at the same index when asked at once: every
     * other round asks each for its state right after it applies the first entry at or past
     * digest_at (GET /v1/digest?at=), the highest index the round before saw plus a margin,
     * four times larger each time a member had already passed it. 0: a plain round. */
    uint64_t digest_at, digest_margin;
    json_t *report; /* owned */
    char error[TANDEM_ERRMSG_SIZE];
};

static struct drill *active_drill; /* one drill per process */

static uint64_t now_ms(struct drill *d)
{
    return uv_now(d->bcp->env.loop);
}

static void event(struct drill *d, const char *what)
{
    if (json_array_size(d->timeline) < TANDEM_DRILL_TIMELINE_MAX) {
        json_array_append_new(
            d->timeline,
            json_pack("{s:I,s:s}", "t_ms", (json_int_t)(now_ms(d) - d->started_ms), "event", what));
    }
    tandem_log(TANDEM_LOG_INFO, "drill %s: %s", d->id, what);
}

static int drill_step(const struct drill *d)
{
    return tandem_sm_state(&d->sm);
}

/* What holds in every step: the answer is still owed and both timers are open until finish()
 * after the last move; the writer's counters are bounded, it writes only between the preflight
 * and the drain, and a success is recorded only once its step is behind. */
static bool drill_ok(const struct drill *d)
{
    int step = drill_step(d);
    bool writer_may_run = step >= TANDEM_DRILL_WARMUP && step <= TANDEM_DRILL_DRAIN;
    return d->reply_pending && d->handles_open == 2 && d->n_probes <= TANDEM_DRILL_PROBES_MAX &&
           d->inflight <= d->n_probes && d->inflight <= TANDEM_DRILL_INFLIGHT_MAX &&
           (!d->probing || writer_may_run) && (!d->takeover_ok || step > TANDEM_DRILL_TAKEOVER) &&
           (!d->failback_ok || step > TANDEM_DRILL_FAILBACK) && d->n_views <= DIGEST_NODES_MAX;
}

/* What a step promises on entry: nothing written before the preflight passed; the writer runs
 * from the warm-up; the digest pause follows a completed takeover with the writer paused; the
 * hold follows that takeover; the cool-down follows a completed failback. */
static bool drill_step_ok(const struct drill *d, int step)
{
    switch (step) {
        case TANDEM_DRILL_PREFLIGHT:
            return !d->probing && d->n_probes == 0 && d->report == NULL;
        case TANDEM_DRILL_WARMUP:
            return d->probing;
        case TANDEM_DRILL_DIGEST_AFTER_INVOKE:
            return d->takeover_ok && !d->probing;
        case TANDEM_DRILL_HOLD:
            return d->takeover_ok;
        case TANDEM_DRILL_COOLDOWN:
            return d->failback_ok;
        default:
            return true;
    }
}

static bool drill_invariant(const struct tandem_sm *sm, int prev, void *data)
{
    (void)prev;
    const struct drill *d = data;
    return drill_ok(d) && drill_step_ok(d, tandem_sm_state(sm));
}

static void goto_step(struct drill *d, int step)
{
    d->step_started_ms = now_ms(d);
    tandem_sm_move(&d->sm, step);
}

/* Notes a failure: the report carries the first one. */
static void fail_note(struct drill *d, const char *what)
{
    if (d->error[0] == '\0') {
        snprintf(d->error, sizeof d->error, "%s", what);
    }
    event(d, what);
    d->aborted = true;
}

/* Any failure: note it, stop the writer, and still revoke if the invoke happened. */
static void fail(struct drill *d, const char *what)
{
    fail_note(d, what);
    bool invoked = drill_step(d) >= TANDEM_DRILL_INVOKE && drill_step(d) < TANDEM_DRILL_REVOKE;
    goto_step(d, invoked ? TANDEM_DRILL_REVOKE : TANDEM_DRILL_DRAIN);
}

/* ---- probe writer ---- */

static void probe_cb(void *data, int status, int http_status, const char *body, size_t len)
{
    struct probe_call *call = data;
    struct drill *d = call->d;
    tandem_assert(call->n < d->n_probes && d->inflight > 0);
    struct probe *p = &d->probes[call->n];
    (void)body;
    (void)len;
    p->ack_ms = now_ms(d);
    p->status = status != 0 ? status : http_status;
    d->inflight--;
    free(call);
}

static void probe_tick(uv_timer_t *timer)
{
    struct drill *d = timer->data;
    char path[128], value[24];
    if (!d->probing || d->inflight >= TANDEM_DRILL_INFLIGHT_MAX ||
        d->n_probes >= TANDEM_DRILL_PROBES_MAX) {
        return;
    }
    unsigned n = d->n_probes;
    struct probe_call *call = calloc(1, sizeof *call);
    if (call == NULL) {
        return;
    }
    call->d = d;
    call->n = n;
    snprintf(path, sizeof path, "/v1/kv/drill/%s/%u", d->id, n);
    snprintf(value, sizeof value, "%u", n);
    d->probes[n].sent_ms = now_ms(d);
    d->probes[n].status = 0;
    d->n_probes++;
    d->inflight++;
    int rv = tandem_bcp_call(d->bcp, d->targets[n % 2], "PUT", path, NULL, value,
                             TANDEM_DRILL_WRITE_TIMEOUT_MS, probe_cb, call);
    if (rv != 0) {
        d->probes[n].status = rv;
        d->probes[n].ack_ms = now_ms(d);
        d->inflight--;
        free(call);
    }
}

static void sort_u64(uint64_t *v, unsigned n)
{
    for (unsigned i = 1; i < n; i++) { /* insertion sort: acks are nearly in order */
        uint64_t x = v[i];
        unsigned j = i;
        for (; j > 0 && v[j - 1] > x; j--) {
            v[j] = v[j - 1];
        }
        v[j] = x;
    }
}

uint64_t tandem_drill_longest_gap(uint64_t *acks, unsigned n, struct tandem_drill_span within,
                                  struct tandem_drill_span pause)
{
    uint64_t gap = 0;
    sort_u64(acks, n);
    for (unsigned i = 1; i < n; i++) {
        uint64_t a = acks[i - 1], b = acks[i];
        if (b < within.from || a >= within.to) {
            continue; /* writes went on throughout the switchover's span */
        }
        uint64_t g = tandem_gap_between(a, b, pause.from, pause.to);
        gap = g > gap ? g : gap;
    }
    return gap;
}

/* The switchovers as the probe writer saw them: for the takeover (k 0) and the failback (k 1),
 * the longest time without an acknowledged write that meets the span from the change being
 * sent until it completed (until now if it did not), the drill's digest pause left out; -1 for
 * a switchover never started. With neither started, every gap counts. */
static int64_t rto(struct drill *d, unsigned *acked, unsigned *failed, int64_t gaps[2])
{
    *acked = *failed = 0;
    gaps[0] = gaps[1] = -1;
    uint64_t *acks = malloc((d->n_probes + 1) * sizeof *acks);
    if (acks == NULL) {
        return -1;
    }
    for (unsigned i = 0; i < d->n_probes; i++) {
        if (d->probes[i].status == 200) {
            acks[(*acked)++] = d->probes[i].ack_ms;
        } else {
            (*failed)++;
        }
    }
    struct tandem_drill_span pause = {d->pause_from, d->pause_to};
    int64_t longest = -1;
    for (int k = 0; k < 2; k++) {
        struct tandem_drill_span *w = &d->switchovers[k];
        if (w->from > 0) {
            struct tandem_drill_span within = {w->from, w->to > 0 ? w->to : now_ms(d) + 1};
            gaps[k] = (int64_t)tandem_drill_longest_gap(acks, *acked, within, pause);
            longest = gaps[k] > longest ? gaps[k] : longest;
        }
    }
    if (longest < 0) {
        longest = (int64_t)tandem_drill_longest_gap(
            acks, *acked, (struct tandem_drill_span){0, UINT64_MAX}, pause);
    }
    free(acks);
    return longest;
}

/* ---- preflight ---- */

static void finish(struct drill *d);

/* Refuses before anything changed: answers and ends the drill without a report. */
static void abort_early(struct drill *d, int status, const char *why)
{
    tandem_assert(drill_step(d) == TANDEM_DRILL_PREFLIGHT && d->reply_pending);
    tandem_bcp_reply_error(&d->reply, status, "drill %s: %s", d->site, why);
    d->reply_pending = false;
    finish(d);
}

/* Whether a member of the raft configuration belongs to site. */
static bool site_configured(const struct raft_configuration *conf, const char *site)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    for (unsigned i = 0; i < conf->n; i++) {
        struct tandem_member m;
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) == 0 &&
            strcmp(m.site, site) == 0) {
            return true;
        }
    }
    return false;
}

/* Local checks: the site and every other site are active, the site's nodes answer, and there
 * is a node to write through on each side. Fills why on refusal. */
static int preflight_local(struct drill *d, const struct tandem_site_table *t, char *why)
{
    const struct raft_configuration *conf = &d->bcp->env.raft->raft.configuration;
    const struct tandem_site *s = tandem_site_table_find(t, d->site);
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (s == NULL && site_configured(conf, d->site)) {
        snprintf(why, TANDEM_ERRMSG_SIZE,
                 "site %s is not registered yet (the site controller registers every site of the "
                 "configuration after an election): try again in a moment",
                 d->site);
        return -1;
    }
    if (s == NULL || s->witness) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "site %s is %s", d->site,
                 s == NULL ? "unknown" : "a witness");
        return -1;
    }
    for (unsigned i = 0; i < t->n_sites; i++) {
        if (t->sites[i].state != TANDEM_SITE_ACTIVE) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "site %s is %s: drills need every site active",
                     t->sites[i].name, tandem_site_state_name(t->sites[i].state));
            return -1;
        }
    }
    d->targets[0][0] = d->targets[1][0] = '\0';
    for (unsigned i = 0; i < conf->n; i++) {
        struct tandem_member m;
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0) {
            continue;
        }
        const struct tandem_site *ms = tandem_site_table_find(t, m.site);
        bool ours = strcmp(m.site, d->site) == 0;
        bool reachable = tandem_bcp_reachable(d->bcp, m.name);
        if (ours && !reachable) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "%s of site %s does not answer", m.name, d->site);
            return -1;
        }
        int k = ours ? 0 : 1;
        if (reachable && d->targets[k][0] == '\0' && (ours || (ms != NULL && !ms->witness))) {
            snprintf(d->targets[k], sizeof d->targets[k], "%s", m.api);
            snprintf(d->target_names[k], sizeof d->target_names[k], "%s", m.name);
        }
    }
    struct tandem_member leader;
    d->failback =
        strcmp(t->preferred_site, d->site) == 0 ||
        (tandem_raft_leader(d->bcp->env.raft, &leader) == 0 && strcmp(leader.site, d->site) == 0);
    if (d->targets[0][0] == '\0' || d->targets[1][0] == '\0') {
        snprintf(why, TANDEM_ERRMSG_SIZE, "no reachable node to write through in %s",
                 d->targets[0][0] == '\0' ? d->site : "another non-witness site");
        return -1;
    }
    return 0;
}

static void preflight_cb(void *data, int status, int http_status, const char *body, size_t len)
{
    struct drill *d = data;
    tandem_assert(drill_step(d) == TANDEM_DRILL_PREFLIGHT && d->call_pending);
    json_t *root = status == 0 && http_status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *sites = json_object_get(root, "sites"), *s;
    json_int_t lag_max = -1;
    size_t i;
    d->call_pending = false;
    json_array_foreach(sites, i, s)
    {
        json_t *lag = json_object_get(s, "lag_entries");
        lag_max = json_is_integer(lag) && json_integer_value(lag) > lag_max
                      ? json_integer_value(lag)
                      : lag_max;
    }
    d->preflight = json_pack("{s:I,s:s,s:s}", "lag_entries_max", lag_max, "write_through_site",
                             d->target_names[0], "write_through_other", d->target_names[1]);
    json_decref(root);
    if (lag_max < 0 || lag_max > TANDEM_DRILL_LAG_ENTRIES_MAX) {
        abort_early(d, 409,
                    lag_max < 0 ? "preflight: the leader's replication lag is unknown"
                                : "preflight: replication lag above the drill threshold");
        return;
    }
    event(d, "preflight passed; probe writer started");
    d->probing = true;
    goto_step(d, TANDEM_DRILL_WARMUP);
}

/* ---- invoke, revoke and their waits ---- */

static void change_cb(void *data, int status, int http_status, const char *body, size_t len)
{
    struct drill *d = data;
    tandem_assert(d->call_pending);
    tandem_assert(drill_step(d) == TANDEM_DRILL_INVOKE || drill_step(d) == TANDEM_DRILL_REVOKE);
    char what[300];
    d->call_pending = false;
    if (status != 0 || (http_status != 200 && http_status != 202)) {
        snprintf(what, sizeof what, "%s refused: %s %.*s",
                 drill_step(d) == TANDEM_DRILL_INVOKE ? "invoke" : "revoke",
                 status != 0 ? uv_strerror(status) : "",
                 body == NULL ? 0 : (int)(len > 160 ? 160 : len), body == NULL ? "" : body);
        if (drill_step(d) == TANDEM_DRILL_INVOKE) {
            fail_note(d, what);
            goto_step(d, TANDEM_DRILL_DRAIN); /* nothing was invoked: nothing to revoke */
        } else {
            fail(d, what);
        }
        return;
    }
    json_t *answer = body == NULL ? NULL : json_loadb(body, len, 0, NULL);
    bool invoke = drill_step(d) == TANDEM_DRILL_INVOKE;
    json_t *moved = json_object_get(answer, invoke ? "jobs_moved" : "jobs_returned");
    if (json_is_integer(moved)) {
        *(invoke ? &d->jobs_moved : &d->jobs_returned) = json_integer_value(moved);
    }
    json_decref(answer);
    event(d, drill_step(d) == TANDEM_DRILL_INVOKE
                 ? "invoke recorded"
                 : (d->failback ? "revoke recorded (with failback)"
                                : "revoke recorded (leadership was elsewhere: "
                                  "no failback)"));
    goto_step(d,
              drill_step(d) == TANDEM_DRILL_INVOKE ? TANDEM_DRILL_TAKEOVER : TANDEM_DRILL_FAILBACK);
}

/* The invoke's or revoke's body: the decision's reason names the drill and the operator's
 * reason (JSON-escaped by jansson); NULL when out of memory. */
static char *change_body(struct drill *d, bool invoke)
{
    char reason[TANDEM_DRILL_REASON_LEN_MAX + TANDEM_DRILL_ID_LEN_MAX + 16], by[64];
    snprintf(reason, sizeof reason, "drill %s%s%s", d->id, d->reason[0] != '\0' ? ": " : "",
             d->reason);
    snprintf(by, sizeof by, "drill:%s", d->id);
    json_t *body =
        json_pack("{s:s,s:s,s:s,s:i}", "site", d->site, "reason", reason, "by", by, "wait_ms", 0);
    if (body != NULL && !invoke) { /* only the revoke takes these: the routes refuse others */
        json_object_set_new(body, "failback", json_boolean(d->failback));
        json_object_set_new(body, "return_jobs", json_true());
    }
    char *text = body == NULL ? NULL : json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return text;
}

static void change_start(struct drill *d, bool invoke)
{
    tandem_assert(drill_step(d) == (invoke ? TANDEM_DRILL_INVOKE : TANDEM_DRILL_REVOKE));
    tandem_assert(!d->call_pending);
    char *body = change_body(d, invoke);
    d->call_pending = true;
    d->switchovers[invoke ? 0 : 1].from = now_ms(d);
    int rv = body == NULL ? UV_ENOMEM
                          : tandem_bcp_call(d->bcp, d->bcp->env.self->api, "POST",
                                            invoke ? "/v1/bcp/invoke" : "/v1/bcp/revoke", NULL,
                                            body, CALL_TIMEOUT_MS, change_cb, d);
    free(body);
    if (rv != 0) {
        d->call_pending = false;
        fail(d, invoke ? "cannot send the invoke" : "cannot send the revoke");
    }
}

static bool failback_done(struct drill *d)
{
    struct tandem_site_table *t = tandem_bcp_table_load(d->bcp);
    bool done = t != NULL && tandem_bcp_revoke_done(d->bcp, t, d->site, d->failback);
    free(t);
    return done;
}

/* ---- digest parity ---- */

static void digest_cb(void *data, int status, int http_status, const char *body, size_t len)
{
    struct digest_view *v = data;
    struct drill *d = active_drill;
    json_t *root = status == 0 && http_status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *applied = json_object_get(root, "applied_index");
    const char *digest = json_string_value(json_object_get(root, "state_digest"));
    v->past = status == 0 && http_status == 409;
    if (json_is_integer(applied) && digest != NULL) {
        v->answered = true;
        v->applied = (uint64_t)json_integer_value(applied);
        snprintf(v->digest, sizeof v->digest, "%s", digest);
    }
    json_decref(root);
    if (d != NULL) {
        d->digest_pending--;
    }
}

/* One round: GET /v1/digest from every member that answers probes. */
static void digest_round(struct drill *d)
{
    const struct raft_configuration *conf = &d->bcp->env.raft->raft.configuration;
    char errmsg[TANDEM_ERRMSG_SIZE];
    d->n_views = 0;
    for (unsigned i = 0; i < conf->n && d->n_views < DIGEST_NODES_MAX; i++) {
        struct tandem_member m;
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0 ||
            !tandem_bcp_reachable(d->bcp, m.name)) {
            continue;
        }
        struct digest_view *v = &d->views[d->n_views++];
        memset(v, 0, sizeof *v);
        snprintf(v->name, sizeof v->name, "%s", m.name);
        snprintf(v->api, sizeof v->api, "%s", m.api);
        char path[96];
        if (d->digest_at != 0) {
            snprintf(path, sizeof path, "/v1/digest?at=%" PRIu64 "&wait_ms=%u", d->digest_at,
                     DIGEST_AT_WAIT_MS);
        } else {
            snprintf(path, sizeof path, "/v1/digest");
        }
        d->digest_pending++;
        if (tandem_bcp_call(d->bcp, v->api, "GET", path, NULL, NULL, DIGEST_CALL_TIMEOUT_MS,
                            digest_cb, v) != 0) {
            d->digest_pending--;
        }
    }
}

/* Keeps what the check saw for the report: each node's applied index and state digest. */
static void digest_record(struct drill *d, int which, bool same_index)
{
    json_t *nodes = json_array();
    for (unsigned i = 0; nodes != NULL && i < d->n_views; i++) {
        const struct digest_view *v = &d->views[i];
        json_array_append_new(nodes, json_pack("{s:s,s:I,s:s?}", "name", v->name, "applied_index",
                                               (json_int_t)v->applied, "digest",
                                               v->answered ? v->digest : NULL));
    }
    json_t *check = json_pack("{s:s,s:b,s:b,s:I,s:o*}", "after", which == 0 ? "invoke" : "revoke",
                              "equal", d->digests_equal[which], "same_index", same_index,
                              "applied_index", (json_int_t)d->views[0].applied, "nodes", nodes);
    if (check != NULL) {
        json_array_append_new(d->digests, check);
    }
}

/* After a round that found the members at different indexes: the next round's digest_at. */
static void digest_next_at(struct drill *d)
{
    if (d->digest_at != 0) { /* an index round: a plain one next */
        bool past = false;
        for (unsigned i = 0; i < d->n_views; i++) {
            past |= d->views[i].past;
        }
        if (past && d->digest_margin < DIGEST_AT_MARGIN_MAX) {
            d->digest_margin *= 4;
        }
        d->digest_at = 0;
        return;
    }
    uint64_t highest = 0;
    for (unsigned i = 0; i < d->n_views; i++) {
        if (d->views[i].answered && d->views[i].applied > highest) {
            highest = d->views[i].applied;
        }
    }
    if (highest > 0) {
        d->digest_margin = d->digest_margin == 0 ? DIGEST_AT_MARGIN_FIRST : d->digest_margin;
        d->digest_at = highest + d->digest_margin;
    }
}

/* Returns 1 when settled (equal or not, result stored), 0 to keep polling. */
static int digest_settle(struct drill *d, int which)
{
    bool same_index = d->n_views > 0, same_digest = true;
    for (unsigned i = 0; i < d->n_views; i++) {
        same_index &= d->views[i].answered && d->views[i].applied == d->views[0].applied;
        same_digest &= strcmp(d->views[i].digest, d->views[0].digest) == 0;
    }
    bool late = now_ms(d) - d->step_started_ms > TANDEM_DRILL_DIGEST_TIMEOUT_MS;
    if (!same_index && !late) {
        digest_next_at(d);
        return 0;
    }
    char what[200];
    d->digests_equal[which] = same_index && same_digest;
    snprintf(what, sizeof what, "state digests %s across %u live nodes at applied index %" PRIu64,
             d->digests_equal[which] ? "equal" : (same_index ? "DIFFER" : "did not converge"),
             d->n_views, d->views[0].applied);
    event(d, what);
    digest_record(d, which, same_index);
    return 1;
}

static bool digest_step(struct drill *d, int which)
{
    if (d->inflight > 0 && now_ms(d) - d->step_started_ms < DRAIN_TIMEOUT_MS) {
        return false; /* let the writes in flight land first */
    }
    if (d->digest_pending > 0 || now_ms(d) < d->digest_next_ms) {
        return false;
    }
    if (d->n_views > 0 && digest_settle(d, which)) {
        d->n_views = 0;
        d->digest_at = 0; /* the next check starts plain */
        return true;
    }
    d->digest_next_ms = now_ms(d) + DIGEST_RETRY_MS;
    digest_round(d);
    return false;
}

/* ---- verification and storing ---- */

static void verify_cb(void *data, int status, int http_status, const char *body, size_t len)
{
    struct drill *d = data;
    tandem_assert(drill_step(d) == TANDEM_DRILL_VERIFY && d->call_pending);
    json_t *root = status == 0 && http_status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *kvs = json_object_get(root, "kvs"), *kv;
    char prefix[TANDEM_DRILL_ID_LEN_MAX + 16];
    bool *found = calloc(d->n_probes + 1, sizeof *found);
    size_t i;
    d->call_pending = false;
    snprintf(prefix, sizeof prefix, "drill/%s/", d->id);
    json_array_foreach(kvs, i, kv)
    {
        const char *key = json_string_value(json_object_get(kv, "key"));
        if (found != NULL && key != NULL && strncmp(key, prefix, strlen(prefix)) == 0) {
            unsigned long n = strtoul(key + strlen(prefix), NULL, 10);
            if (n < d->n_probes) {
                found[n] = true;
            }
        }
    }
    d->rpo_writes = d->verified = 0;
    for (unsigned n = 0; found != NULL && root != NULL && n < d->n_probes; n++) {
        if (d->probes[n].status == 200) {
            d->verified++;
            d->rpo_writes += found[n] ? 0 : 1;
        }
    }
    if (root == NULL || found == NULL) {
        fail_note(d, "verification: listing the probe keys failed");
    } else {
        event(d, d->rpo_writes == 0 ? "every acknowledged probe write is readable"
                                    : "ACKNOWLEDGED PROBE WRITES ARE MISSING");
    }
    free(found);
    json_decref(root);
    goto_step(d, TANDEM_DRILL_STORE);
}

static void verify_start(struct drill *d)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/kv?prefix=drill/%s/&limit=%d", d->id, TANDEM_DRILL_PROBES_MAX);
    d->call_pending = true;
    if (tandem_bcp_call(d->bcp, d->bcp->env.self->api, "GET", path, NULL, NULL, LIST_TIMEOUT_MS,
                        verify_cb, d) != 0) {
        d->call_pending = false;
        fail_note(d, "verification: cannot list the probe keys");
        goto_step(d, TANDEM_DRILL_STORE);
    }
}

json_t *tandem_drill_latency_series(const struct tandem_drill_probe_sample *probes, unsigned n,
                                    uint64_t started_ms, uint64_t now_ms)
{
    uint64_t span = now_ms > started_ms ? now_ms - started_ms : 0;
    uint64_t bucket =
        (span + TANDEM_DRILL_LATENCY_POINTS_MAX - 1) / TANDEM_DRILL_LATENCY_POINTS_MAX;
    bucket =
        bucket < TANDEM_DRILL_LATENCY_BUCKET_MS_MIN ? TANDEM_DRILL_LATENCY_BUCKET_MS_MIN : bucket;
    /* Per bucket: the longest acknowledged latency + 1 (0: none), acknowledged, failed. */
    uint64_t(*b)[3] = calloc(TANDEM_DRILL_LATENCY_POINTS_MAX + 1, sizeof *b);
    json_t *points = json_array();
    if (b == NULL || points == NULL) {
        free(b);
        json_decref(points);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        uint64_t t = probes[i].sent_ms > started_ms ? probes[i].sent_ms - started_ms : 0;
        uint64_t k = t / bucket;
        k = k > TANDEM_DRILL_LATENCY_POINTS_MAX ? TANDEM_DRILL_LATENCY_POINTS_MAX : k;
        uint64_t latency =
            probes[i].ack_ms > probes[i].sent_ms ? probes[i].ack_ms - probes[i].sent_ms : 0;
        if (probes[i].ok) {
            b[k][0] = latency + 1 > b[k][0] ? latency + 1 : b[k][0];
            b[k][1]++;
        } else {
            b[k][2]++;
        }
    }
    for (unsigned k = 0; k <= TANDEM_DRILL_LATENCY_POINTS_MAX; k++) {
        if (b[k][1] + b[k][2] == 0) {
            continue;
        }
        json_t *max = b[k][0] > 0 ? json_integer((json_int_t)(b[k][0] - 1)) : json_null();
        json_array_append_new(points, json_pack("[I,o,I,I]", (json_int_t)(k * bucket), max,
                                                (json_int_t)b[k][1], (json_int_t)b[k][2]));
    }
    free(b);
    return json_pack("{s:I,s:o}", "bucket_ms", (json_int_t)bucket, "points", points);
}

/* The drill's probes as samples for tandem_drill_latency_series; NULL when out of memory. */
static json_t *report_latency(struct drill *d)
{
    struct tandem_drill_probe_sample *samples = calloc(d->n_probes + 1, sizeof *samples);
    if (samples == NULL) {
        return NULL;
    }
    for (unsigned i = 0; i < d->n_probes; i++) {
        samples[i] = (struct tandem_drill_probe_sample){d->probes[i].sent_ms, d->probes[i].ack_ms,
                                                        d->probes[i].status == 200};
    }
    json_t *series = tandem_drill_latency_series(samples, d->n_probes, d->started_ms, now_ms(d));
    free(samples);
    return series;
}

static json_t *report_build(struct drill *d)
{
    unsigned acked, failed;
    int64_t gaps[2];
    int64_t gap = rto(d, &acked, &failed, gaps);
    bool ok = !d->aborted && d->takeover_ok && d->failback_ok && d->digests_equal[0] &&
              d->digests_equal[1] && d->rpo_writes == 0;
    json_t *report = json_pack(
        "{s:s,s:s,s:I,s:I,s:b,s:I,s:I,s:b,s:I,s:I,s:I,s:I,s:O,s:O,s:{s:I,s:I,s:I,s:I,s:I}}", "id",
        d->id, "site", d->site, "started", (json_int_t)d->started_wall_ms, "finished",
        (json_int_t)tandem_wall_ms(), "ok", ok, "rto_ms", (json_int_t)gap, "rpo_writes",
        (json_int_t)d->rpo_writes, "digests_equal", d->digests_equal[0] && d->digests_equal[1],
        "jobs_moved", (json_int_t)d->jobs_moved, "jobs_returned", (json_int_t)d->jobs_returned,
        "takeover_ms", (json_int_t)d->takeover_ms, "failback_ms", (json_int_t)d->failback_ms,
        "timeline", d->timeline, "preflight", d->preflight ? d->preflight : json_null(), "probe",
        "rate_per_s", (json_int_t)d->rate, "sent", (json_int_t)d->n_probes, "acked",
        (json_int_t)acked, "failed", (json_int_t)failed, "verified", (json_int_t)d->verified);
    if (report != NULL) {
        json_object_set_new(report, "failback", json_boolean(d->failback));
        json_object_set_new(report, "probe_latency", report_latency(d));
        json_object_set_new(report, "reason", json_string(d->reason));
        json_object_set(report, "digests", d->digests);
        json_object_set_new(report, "takeover_gap_ms",
                            gaps[0] < 0 ? json_null() : json_integer((json_int_t)gaps[0]));
        json_object_set_new(report, "failback_gap_ms",
                            gaps[1] < 0 ? json_null() : json_integer((json_int_t)gaps[1]));
        if (d->jobs_moved < 0) {
            json_object_set_new(report, "jobs_moved", json_null());
        }
        if (d->jobs_returned < 0) {
            json_object_set_new(report, "jobs_returned", json_null());
        }
    }
    if (report != NULL && d->error[0] != '\0') {
        json_object_set_new(report, "error", json_string(d->error));
    }
    return report;
}

static void store_cb(void *data, int status, int http_status, const char *body, size_t len)
{
    struct drill *d = data;
    tandem_assert(drill_step(d) == TANDEM_DRILL_STORE && d->call_pending);
    json_t *root = status == 0 && http_status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *seq = json_object_get(root, "seq");
    d->call_pending = false;
    json_object_set_new(d->report, "stored", json_boolean(json_is_integer(seq)));
    if (json_is_integer(seq)) {
        json_object_set(d->report, "seq", seq);
    }
    json_decref(root);
    goto_step(d, TANDEM_DRILL_DONE);
}

static void store_start(struct drill *d)
{
    d->report = report_build(d);
    char *text = d->report == NULL ? NULL : json_dumps(d->report, JSON_COMPACT);
    d->call_pending = true;
    if (text == NULL || tandem_bcp_call(d->bcp, d->bcp->env.self->api, "POST", "/v1/bcp/drills",
                                        NULL, text, CALL_TIMEOUT_MS, store_cb, d) != 0) {
        d->call_pending = false;
        goto_step(d, TANDEM_DRILL_DONE);
    }
    free(text);
}

/* ---- the step machine ---- */

static void drill_free(struct drill *d)
{
    json_decref(d->timeline);
    json_decref(d->digests);
    json_decref(d->preflight);
    json_decref(d->report);
    free(d->probes);
    free(d);
}

static void handle_closed_cb(uv_handle_t *handle)
{
    struct drill *d = handle->data;
    tandem_assert(d->handles_open > 0);
    if (--d->handles_open > 0) {
        return;
    }
    drill_free(d);
}

static void finish(struct drill *d)
{
    if (d->report == NULL) {
        d->report = report_build(d);
    }
    if (d->report != NULL && drill_step(d) != TANDEM_DRILL_PREFLIGHT) {
        json_t *ok = json_object_get(d->report, "ok");
        tandem_events_emit(d->bcp->env.events, "drill_result", d->site,
                           "drill %s of site %s %s: longest write gap %" JSON_INTEGER_FORMAT
                           " ms, %" JSON_INTEGER_FORMAT " acknowledged writes missing",
                           d->id, d->site, json_is_true(ok) ? "passed" : "FAILED",
                           json_integer_value(json_object_get(d->report, "rto_ms")),
                           json_integer_value(json_object_get(d->report, "rpo_writes")));
    }
    if (d->reply_pending) {
        d->reply_pending = false;
        tandem_bcp_reply_json(&d->reply, 200, json_incref(d->report));
    }
    tandem_assert(d->handles_open == 2);
    tandem_sm_fini(&d->sm);
    active_drill = NULL;
    uv_timer_stop(&d->probe_timer);
    uv_timer_stop(&d->step_timer);
    uv_close((uv_handle_t *)&d->probe_timer, handle_closed_cb);
    uv_close((uv_handle_t *)&d->step_timer, handle_closed_cb);
}

static bool elapsed(struct drill *d, uint64_t ms)
{
    return now_ms(d) - d->step_started_ms >= ms;
}

static void step_wait(struct drill *d, bool done, bool invoke)
{
    char what[128];
    tandem_assert(drill_step(d) == (invoke ? TANDEM_DRILL_TAKEOVER : TANDEM_DRILL_FAILBACK));
    int64_t took = (int64_t)(now_ms(d) - d->step_started_ms);
    if (done) {
        d->switchovers[invoke ? 0 : 1].to = now_ms(d);
        snprintf(what, sizeof what, "%s complete after %" PRId64 " ms",
                 invoke ? "takeover" : "failback", took);
        event(d, what);
        if (invoke) {
            d->takeover_ok = true;
            d->takeover_ms = took;
            d->probing = false; /* paused for the digest check */
            d->pause_from = now_ms(d);
            goto_step(d, TANDEM_DRILL_DIGEST_AFTER_INVOKE);
        } else {
            d->failback_ok = true;
            d->failback_ms = took;
            goto_step(d, TANDEM_DRILL_COOLDOWN);
        }
    } else if (elapsed(d, TANDEM_DRILL_STEP_TIMEOUT_MS)) {
        fail(d, invoke ? "takeover not complete in time" : "failback not complete in time");
    }
}

/* After settling in the warm-up (hold), invoke (revoke). */
static void settle_then_change(struct drill *d, bool invoke)
{
    tandem_assert(drill_step(d) == (invoke ? TANDEM_DRILL_WARMUP : TANDEM_DRILL_HOLD));
    if (elapsed(d, TANDEM_DRILL_SETTLE_MS)) {
        event(d, invoke ? "invoking BCP" : "revoking BCP");
        goto_step(d, invoke ? TANDEM_DRILL_INVOKE : TANDEM_DRILL_REVOKE);
        change_start(d, invoke);
    }
}

static void step_tick(uv_timer_t *timer)
{
    struct drill *d = timer->data;
    if (d->call_pending) {
        return;
    }
    switch (drill_step(d)) {
        case TANDEM_DRILL_WARMUP:
            settle_then_change(d, true);
            break;
        case TANDEM_DRILL_TAKEOVER:
            step_wait(d, tandem_bcp_invoke_done(d->bcp, d->site), true);
            break;
        case TANDEM_DRILL_DIGEST_AFTER_INVOKE:
            if (digest_step(d, 0)) {
                d->pause_to = now_ms(d);
                d->probing = !d->aborted;
                goto_step(d, TANDEM_DRILL_HOLD);
            }
            break;
        case TANDEM_DRILL_HOLD:
            settle_then_change(d, false);
            break;
        case TANDEM_DRILL_REVOKE: /* reached through fail() after an invoke: revoke anyway */
            change_start(d, false);
            break;
        case TANDEM_DRILL_FAILBACK:
            step_wait(d, failback_done(d), false);
            break;
        case TANDEM_DRILL_COOLDOWN:
            if (elapsed(d, TANDEM_DRILL_SETTLE_MS)) {
                event(d, "probe writer stopped");
                d->probing = false;
                goto_step(d, TANDEM_DRILL_DRAIN);
            }
            break;
        default:
            break;
    }
}

static void step_tick_end(uv_timer_t *timer)
{
    struct drill *d = timer->data;
    step_tick(timer);
    if (d->call_pending) {
        return;
    }
    switch (drill_step(d)) {
        case TANDEM_DRILL_DRAIN:
            d->probing = false;
            if (d->inflight == 0 || elapsed(d, DRAIN_TIMEOUT_MS)) {
                goto_step(d, d->aborted ? TANDEM_DRILL_VERIFY : TANDEM_DRILL_DIGEST_AFTER_REVOKE);
            }
            break;
        case TANDEM_DRILL_DIGEST_AFTER_REVOKE:
            if (digest_step(d, 1)) {
                goto_step(d, TANDEM_DRILL_VERIFY);
            }
            break;
        case TANDEM_DRILL_VERIFY:
            if (d->digest_pending == 0) {
                verify_start(d);
            }
            break;
        case TANDEM_DRILL_STORE:
            store_start(d);
            break;
        case TANDEM_DRILL_DONE:
            if (d->inflight == 0 && d->digest_pending == 0) {
                finish(d);
            }
            break;
        default:
            break;
    }
}

/* ---- dry run ---- */

/* A dry run waiting for the jobs it would move, read on the thread pool. */
struct preview {
    struct tandem_pool_read read; /* first */
    struct tandem_bcp_reply reply;
    char site[TANDEM_SITE_LEN_MAX + 1];
    bool failback;
    const char *jobs_key; /* "jobs_moved" or "jobs_returned" */
    json_t *body;         /* owned: the answer but its jobs */
    json_t *jobs;         /* owned: the jobs an invoke of site would move (a failback bring
                             back); NULL when they could not be read (answered as null) */
};

/* On the pool (or the loop without one): every job of the site is examined. */
static int preview_work(struct tandem_store *store, MDB_txn *txn, void *data)
{
    struct preview *p = data;
    p->jobs = json_array();
    if (p->jobs != NULL && tandem_bcp_jobs_list(store, txn, p->site, p->failback, p->jobs) != 0) {
        json_decref(p->jobs);
        p->jobs = NULL;
    }
    return 0;
}

static void preview_answer(struct preview *p)
{
    json_t *jobs = p->jobs != NULL ? p->jobs : json_null();
    json_object_set_new(p->body, p->jobs_key, json_integer((json_int_t)json_array_size(jobs)));
    json_object_set_new(p->body, "jobs", jobs);
    tandem_bcp_reply_json(&p->reply, 200, p->body);
    free(p);
}

static void preview_done_cb(void *data, int rv, const char *errmsg)
{
    (void)rv; /* a read that failed leaves jobs NULL: answered as null */
    (void)errmsg;
    preview_answer(data);
}

/* Reads the jobs of p on the thread pool, or here without one; answers p's reply after. */
static void preview_jobs(struct tandem_bcp *b, struct preview *p)
{
    struct tandem_store *store = b->env.store;
    MDB_txn *txn;
    if (b->env.pool_reads != NULL) {
        int rv =
            tandem_pool_read_submit(b->env.pool_reads, &p->read, preview_work, preview_done_cb, p);
        if (rv != 0) {
            tandem_bcp_reply_error(&p->reply,
                                   rv == TANDEM_BUSY || rv == TANDEM_SHUTDOWN ? 503 : 500,
                                   "%s: retry later", p->read.store.errmsg);
            json_decref(p->body);
            free(p);
        }
        return;
    }
    if (tandem_store_commit(store) == 0 && tandem_store_read_txn(store, &txn) == 0) {
        (void)preview_work(store, txn, p);
        mdb_txn_abort(txn);
    }
    preview_answer(p);
}

/* What an invoke of the site would change, from the site controller's own planner. */
/* Why a drill of site started now would be refused before it changed anything (a drill is
 * running, or the local preflight fails), as JSON text, or JSON null when it would start. */
static json_t *dry_run_refusal(struct tandem_bcp *b, const char *site)
{
    char why[TANDEM_ERRMSG_SIZE] = "";
    if (active_drill != NULL) {
        snprintf(why, sizeof why, "drill %s is already running on this node", active_drill->id);
        return json_string(why);
    }
    struct drill *d = calloc(1, sizeof *d);
    struct tandem_site_table *t = tandem_bcp_table_load(b);
    if (d == NULL || t == NULL) {
        snprintf(why, sizeof why, "cannot read the site table");
    } else {
        d->bcp = b;
        snprintf(d->site, sizeof d->site, "%s", site);
        (void)preflight_local(d, t, why);
    }
    free(t);
    free(d);
    return why[0] == '\0' ? json_null() : json_string(why);
}

/* The role changes of the site's change, from the site controller's own planner; NULL when the
 * site table cannot be read. */
static json_t *preview_roles(struct tandem_bcp *b, const char *site, bool invoke)
{
    struct tandem_site_plan_input *in = malloc(sizeof *in);
    if (in == NULL || tandem_bcp_plan_input(b, in) != 0) {
        free(in);
        return NULL;
    }
    json_t *changes = json_array();
    for (unsigned i = 0; i < in->n_sites; i++) {
        if (strcmp(in->sites[i].name, site) == 0) {
            in->sites[i].state = invoke ? TANDEM_PLAN_SITE_INVOKED : TANDEM_PLAN_SITE_ACTIVE;
        }
    }
    for (unsigned i = 0; i < in->n_members; i++) {
        const struct tandem_site_plan_member *m = &in->members[i];
        int want = tandem_site_desired_role(in, m);
        if (want != m->role) {
            json_array_append_new(changes, json_pack("{s:s,s:s,s:s,s:s}", "member", m->name, "site",
                                                     m->site, "from", tandem_role_name(m->role),
                                                     "to", tandem_role_name(want)));
        }
    }
    free(in);
    return changes;
}

void tandem_bcp_change_preview(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                               const char *site, bool invoke, bool failback, bool return_jobs,
                               json_t *extra)
{
    struct tandem_member leader;
    struct preview *p = calloc(1, sizeof *p);
    json_t *changes = p != NULL ? preview_roles(b, site, invoke) : NULL;
    if (changes == NULL) {
        tandem_bcp_reply_error(reply, 500, "cannot read the site table");
        json_decref(extra);
        free(p);
        return;
    }
    bool known = tandem_raft_leader(b->env.raft, &leader) == 0;
    bool here = known && strcmp(leader.site, site) == 0;
    /* An invoke takes leadership away from the site; a failback brings it back. */
    bool moves = known && (invoke ? here : failback && !here);
    p->reply = *reply;
    snprintf(p->site, sizeof p->site, "%s", site);
    p->failback = !invoke;
    p->jobs_key = invoke ? "jobs_moved" : "jobs_returned";
    p->body = json_pack("{s:o,s:s?,s:b}", "role_changes", changes, "leader",
                        known ? leader.name : NULL, "leadership_moves", moves);
    if (p->body != NULL && extra != NULL) {
        json_object_update(p->body, extra);
    }
    json_decref(extra);
    if (p->body == NULL) {
        tandem_bcp_reply_error(reply, 500, "out of memory");
        free(p);
    } else if (invoke || failback || return_jobs) {
        preview_jobs(b, p);
    } else {
        p->jobs = json_array(); /* nothing moves back */
        preview_answer(p);
    }
}

static void dry_run(struct tandem_bcp *b, const struct tandem_bcp_reply *reply, const char *site)
{
    json_t *extra = json_pack("{s:b,s:s,s:o}", "dry_run", true, "site", site, "refusal",
                              dry_run_refusal(b, site));
    tandem_bcp_change_preview(b, reply, site, true, false, false, extra);
}

/* ---- start ---- */

/* The timers: both open, or none and an error (errmsg). */
static int drill_timers_init(struct drill *d, char *errmsg)
{
    uv_loop_t *loop = d->bcp->env.loop;
    int rv = uv_timer_init(loop, &d->probe_timer);
    if (rv != 0) {
        return tandem_error_from_uv(rv, errmsg, "drill timer");
    }
    rv = uv_timer_init(loop, &d->step_timer);
    if (rv != 0) {
        d->handles_open = 1;
        d->probe_timer.data = d;
        uv_close((uv_handle_t *)&d->probe_timer, handle_closed_cb);
        return tandem_error_from_uv(rv, errmsg, "drill timer");
    }
    d->probe_timer.data = d->step_timer.data = d;
    d->handles_open = 2;
    return 0;
}

/* A new drill with its timers open, or NULL after answering reply with 500. */
static struct drill *drill_new(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                               const char *site, unsigned rate)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct drill *d = calloc(1, sizeof *d);
    if (d == NULL || (d->probes = calloc(TANDEM_DRILL_PROBES_MAX, sizeof *d->probes)) == NULL ||
        (d->timeline = json_array()) == NULL || (d->digests = json_array()) == NULL) {
        if (d != NULL) {
            drill_free(d);
        }
        tandem_bcp_reply_error(reply, 500, "out of memory");
        return NULL;
    }
    d->bcp = b;
    d->reply = *reply;
    d->reply_pending = true;
    d->rate = rate;
    d->jobs_moved = d->jobs_returned = -1;
    snprintf(d->site, sizeof d->site, "%s", site);
    d->started_wall_ms = tandem_wall_ms();
    snprintf(d->id, sizeof d->id, "d%" PRId64, d->started_wall_ms);
    d->started_ms = uv_now(b->env.loop);
    if (drill_timers_init(d, errmsg) != 0) {
        tandem_bcp_reply_error(reply, 500, "%s", errmsg);
        if (d->handles_open == 0) {
            drill_free(d);
        }
        return NULL;
    }
    tandem_sm_init(&d->sm, "drill", tandem_drill_sm_conf, TANDEM_DRILL_STEPS,
                   TANDEM_DRILL_PREFLIGHT, drill_invariant, d);
    return d;
}

/* Validates body; answers 400 and returns -1 when it is not {"site", "rate"?}. */
static int drill_body(const struct tandem_bcp_reply *reply, json_t *body, const char **site,
                      unsigned *rate)
{
    json_t *rate_json = json_object_get(body, "rate");
    json_int_t value =
        json_is_integer(rate_json) ? json_integer_value(rate_json) : TANDEM_DRILL_RATE_DEFAULT;
    const char *reason = json_string_value(json_object_get(body, "reason"));
    *site = json_string_value(json_object_get(body, "site"));
    if (*site == NULL || !tandem_member_name_ok(*site, TANDEM_SITE_LEN_MAX) || value < 1 ||
        value > TANDEM_DRILL_RATE_MAX ||
        (reason != NULL && strlen(reason) > TANDEM_DRILL_REASON_LEN_MAX)) {
        tandem_bcp_reply_error(reply, 400,
                               "body must be {\"site\", \"dry_run\"?, \"rate\"? (1-%d), "
                               "\"reason\"? (up to %d bytes)}",
                               TANDEM_DRILL_RATE_MAX, TANDEM_DRILL_REASON_LEN_MAX);
        return -1;
    }
    *rate = (unsigned)value;
    return 0;
}

/* Starts the timers and asks for the replication lag; the preflight answer goes on. */
static void drill_begin(struct drill *d)
{
    uint64_t probe_ms = 1000 / (uint64_t)d->rate;
    int rv = uv_timer_start(&d->probe_timer, probe_tick, probe_ms, probe_ms);
    if (rv == 0) {
        rv = uv_timer_start(&d->step_timer, step_tick_end, STEP_POLL_MS, STEP_POLL_MS);
    }
    if (rv != 0) {
        abort_early(d, 500, uv_strerror(rv));
        return;
    }
    active_drill = d;
    event(d, "drill started");
    d->call_pending = true;
    if (tandem_bcp_call(d->bcp, d->bcp->env.self->api, "GET", "/v1/bcp/status", NULL, NULL, 5000,
                        preflight_cb, d) != 0) {
        active_drill = NULL;
        abort_early(d, 500, "cannot ask the leader for replication lag");
    }
}

void tandem_bcp_drill_start(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                            json_t *body)
{
    const char *site;
    unsigned rate;
    char why[TANDEM_ERRMSG_SIZE];
    if (drill_body(reply, body, &site, &rate) != 0) {
        return;
    }
    if (json_is_true(json_object_get(body, "dry_run"))) {
        dry_run(b, reply, site);
        return;
    }
    if (active_drill != NULL) {
        tandem_bcp_reply_error(reply, 409, "drill %s is already running on this node",
                               active_drill->id);
        return;
    }
    struct drill *d = drill_new(b, reply, site, rate);
    if (d == NULL) {
        return;
    }
    const char *reason = json_string_value(json_object_get(body, "reason"));
    snprintf(d->reason, sizeof d->reason, "%s", reason != NULL ? reason : "");
    struct tandem_site_table *t = tandem_bcp_table_load(b);
    if (t == NULL) {
        abort_early(d, 500, "cannot read the site table");
        return;
    }
    int rv = preflight_local(d, t, why);
    free(t);
    if (rv != 0) {
        abort_early(d, 409, why);
        return;
    }
    drill_begin(d);
}
