/* Forced failover coordinator: polls every member, refuses while quorum exists, picks the
 * survivor with the longest log, tells it to raft_recover at a new fencing epoch and the other
 * survivors to re-seed and join, reports what may be lost, then restarts itself if needed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/recover.h"
#include "node/bcp/force.h"
#include "node/log.h"
#include "replication/bcp/sites.h"
#include "storage/assert.h"
#include "storage/error.h"
#include "storage/sm.h"

#define FORCE_POLL_TIMEOUT_MS     1500 /* a member that cannot answer its status is lost */
#define FORCE_INSTRUCT_TIMEOUT_MS 5000

/* Polling every member; then instructing the chosen seed; then the other survivors; then
 * waiting for their answers before the report. */
enum force_phase { FORCE_POLL, FORCE_SEED, FORCE_JOINERS, FORCE_REPORT, FORCE_PHASES };

static const struct tandem_sm_conf force_phases[FORCE_PHASES] = {
    [FORCE_POLL] = {"poll", TANDEM_SM_INITIAL, TANDEM_SM_BIT(FORCE_SEED)},
    [FORCE_SEED] = {"seed", 0, TANDEM_SM_BIT(FORCE_JOINERS)},
    [FORCE_JOINERS] = {"joiners", 0, TANDEM_SM_BIT(FORCE_REPORT)},
    [FORCE_REPORT] = {"report", TANDEM_SM_FINAL, 0},
};

struct force {
    struct tandem_bcp *bcp;        /* borrowed */
    struct tandem_bcp_reply reply; /* answered once, when the force ends */
    char site[TANDEM_SITE_LEN_MAX + 1];
    char reason[128];
    struct tandem_recover_candidate cand[TANDEM_RECOVER_MEMBERS_MAX];
    char state[TANDEM_RECOVER_MEMBERS_MAX][16]; /* raft state each member reported */
    unsigned n;
    unsigned pending;
    struct tandem_sm sm; /* the phase: force_phases */
    int seed;
    uint64_t epoch;
    json_t *instructed; /* owned: what each survivor was told and how it answered */
    /* --confirm-lost: members the operator guarantees are lost (powered off or isolated). With
     * them named, answering members of the site survive too (as standbys of the invoked site)
     * and the seed may be one of them. */
    char confirmed[TANDEM_BCP_CONFIRM_LOST_MAX][TANDEM_NAME_LEN_MAX + 1];
    unsigned n_confirmed;
};

struct force_call {
    struct force *f;
    unsigned index;
};

static int force_phase(const struct force *f)
{
    return tandem_sm_state(&f->sm);
}

/* Past the poll a seed is chosen among the members polled, at an epoch above ours, or none
 * when the poll could not be sent; the survivors are told only once a seed was chosen, and
 * the seed is a reachable member outside the failed site (or, with members confirmed lost,
 * any reachable member). */
static bool force_invariant(const struct tandem_sm *sm, int prev, void *data)
{
    (void)prev;
    const struct force *f = data;
    int phase = tandem_sm_state(sm);
    bool decided = phase != FORCE_POLL, instructing = phase >= FORCE_JOINERS;
    bool seed_ok = f->seed >= 0 && (unsigned)f->seed < f->n && f->epoch > f->bcp->epoch &&
                   f->cand[f->seed].reachable &&
                   (f->n_confirmed > 0 || strcmp(f->cand[f->seed].member.site, f->site) != 0);
    return f->n <= TANDEM_RECOVER_MEMBERS_MAX && (!decided || f->seed < 0 || seed_ok) &&
           (!instructing || seed_ok) && (decided || f->seed < 0);
}

static void force_move(struct force *f, int phase)
{
    tandem_sm_move(&f->sm, phase);
}

static void force_free(struct force *f)
{
    json_decref(f->instructed);
    free(f);
}

static bool self_index(const struct force *f, unsigned i)
{
    return strcmp(f->cand[i].member.name, f->bcp->env.self->name) == 0;
}

static uint64_t json_u64(json_t *object, const char *name)
{
    json_t *v = json_object_get(object, name);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static void force_decide(struct force *f);
static void force_instruct_next(struct force *f);

static void poll_cb(void *data, int status, int http_status, const char *body, size_t len)
{
    struct force_call *call = data;
    struct force *f = call->f;
    struct tandem_recover_candidate *c = &f->cand[call->index];
    json_t *root = status == 0 && http_status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *node = json_object_get(root, "node");
    if (json_is_object(node)) {
        c->reachable = true;
        c->term = json_u64(node, "term");
        c->last_index = json_u64(node, "last_index");
        c->commit_index = json_u64(node, "commit_index");
        c->epoch = json_u64(node, "epoch");
        const char *state = json_string_value(json_object_get(node, "state"));
        snprintf(f->state[call->index], sizeof f->state[call->index], "%s", state ? state : "");
    }
    json_decref(root);
    free(call);
    if (--f->pending == 0) {
        force_decide(f);
    }
}

static void poll_self(struct force *f, unsigned i)
{
    struct raft *r = &f->bcp->env.raft->raft;
    struct tandem_recover_candidate *c = &f->cand[i];
    c->reachable = true;
    c->term = raft_current_term(r);
    c->last_index = raft_last_index(r);
    c->commit_index = raft_commit_index(r);
    c->epoch = f->bcp->epoch;
    snprintf(f->state[i], sizeof f->state[i], "%s",
             raft_state(r) == RAFT_LEADER ? "leader" : "follower");
}

/* Starts polling every member of our configuration; the decision follows the last answer. */
static int force_poll(struct force *f)
{
    const struct raft_configuration *conf = &f->bcp->env.raft->raft.configuration;
    char errmsg[TANDEM_ERRMSG_SIZE];
    f->pending = 1; /* held until every poll is sent */
    for (unsigned i = 0; i < conf->n && f->n < TANDEM_RECOVER_MEMBERS_MAX; i++) {
        struct tandem_recover_candidate *c = &f->cand[f->n];
        if (tandem_member_address_parse(conf->servers[i].address, &c->member, errmsg) != 0) {
            continue;
        }
        c->member.role = tandem_raft_role_from_raft(conf->servers[i].role);
        unsigned index = f->n++;
        if (self_index(f, index)) {
            poll_self(f, index);
            continue;
        }
        struct force_call *call = calloc(1, sizeof *call);
        if (call == NULL) {
            return -1;
        }
        call->f = f;
        call->index = index;
        f->pending++;
        if (tandem_bcp_call(f->bcp, c->member.api, "GET", "/v1/status", NULL, NULL,
                            FORCE_POLL_TIMEOUT_MS, poll_cb, call) != 0) {
            f->pending--;
            free(call);
        }
    }
    if (--f->pending == 0) {
        force_decide(f);
    }
    return 0;
}

static bool confirmed_lost(const struct force *f, const char *name)
{
    for (unsigned i = 0; i < f->n_confirmed; i++) {
        if (strcmp(f->confirmed[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* The members that did not answer the poll, comma-separated, into out. */
static void silent_members(const struct force *f, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < f->n && used < size; i++) {
        if (!f->cand[i].reachable) {
            used += (size_t)snprintf(out + used, size - used, "%s%s", used > 0 ? "," : "",
                                     f->cand[i].member.name);
        }
    }
}

/* 409 when a member the operator confirmed lost answers (404 when it is no member), or when a
 * member that does not answer is not confirmed lost: nothing is guessed about an unnamed node. */
static int confirm_refuse(struct force *f)
{
    char silent[512];
    for (unsigned k = 0; k < f->n_confirmed; k++) {
        unsigned i = 0;
        while (i < f->n && strcmp(f->cand[i].member.name, f->confirmed[k]) != 0) {
            i++;
        }
        if (i == f->n) {
            tandem_bcp_reply_error(&f->reply, 404,
                                   "--confirm-lost names %s, which is not a member of the "
                                   "configuration",
                                   f->confirmed[k]);
            return -1;
        }
        if (f->cand[i].reachable) {
            tandem_bcp_reply_error(&f->reply, 409,
                                   "%s answers its API now: it is not lost; power it off or "
                                   "isolate it before naming it in --confirm-lost",
                                   f->confirmed[k]);
            return -1;
        }
    }
    silent_members(f, silent, sizeof silent);
    for (unsigned i = 0; i < f->n; i++) {
        if (!f->cand[i].reachable && !confirmed_lost(f, f->cand[i].member.name)) {
            tandem_bcp_reply_error(&f->reply, 409,
                                   "%s does not answer but is not named in --confirm-lost: name "
                                   "every member that does not answer (%s) once each is powered "
                                   "off or isolated for good",
                                   f->cand[i].member.name, silent);
            return -1;
        }
    }
    return 0;
}

/* Whether site is a witness in t, this node's copy of the site table (by its label when the
 * table could not be read or does not list it). */
static bool table_witness(const struct tandem_site_table *t, const char *site)
{
    const struct tandem_site *s = t == NULL ? NULL : tandem_site_table_find(t, site);
    return s != NULL ? s->witness : strcmp(site, TANDEM_SITE_WITNESS_NAME) == 0;
}

/* 409 when the site cannot be the lost one: a witness (it holds no work), a site already
 * invoked (its work went elsewhere before: the lost site is another), or a site whose work no
 * survivor of another non-witness site could take over (the force would leave the leader in
 * an invoked site and the work at a site without members). */
static int site_refuse(struct force *f)
{
    struct tandem_site_table *t = tandem_bcp_table_load(f->bcp);
    const struct tandem_site *s = t == NULL ? NULL : tandem_site_table_find(t, f->site);
    bool elsewhere = false;
    for (unsigned i = 0; i < f->n; i++) {
        const char *site = f->cand[i].member.site;
        elsewhere |= f->cand[i].reachable && strcmp(site, f->site) != 0 && !table_witness(t, site);
    }
    int rv = -1;
    if (table_witness(t, f->site)) {
        tandem_bcp_reply_error(&f->reply, 409,
                               "site %s is a witness: it holds no work to take over; force the "
                               "invoke of the lost site that held work",
                               f->site);
    } else if (s != NULL && s->state == TANDEM_SITE_INVOKED) {
        tandem_bcp_reply_error(&f->reply, 409,
                               "site %s is already invoked: force the invoke of the site whose "
                               "members were lost",
                               f->site);
    } else if (!elsewhere) {
        tandem_bcp_reply_error(&f->reply, 409,
                               "no member of another non-witness site answers: none could take "
                               "over the work of %s; force the invoke of the site whose members "
                               "were lost",
                               f->site);
    } else {
        rv = 0;
    }
    free(t);
    return rv;
}

/* The note of a force whose site's work has nowhere to go but an invoked site: the survivors'
 * site is revoked by the new leader first (consensus/site_controller.c), said in the report. */
static json_t *revoke_note(const struct force *f)
{
    struct tandem_site_table *t = tandem_bcp_table_load(f->bcp);
    const char *invoked = NULL;
    bool serving = false;
    for (unsigned i = 0; t != NULL && i < t->n_sites; i++) {
        const struct tandem_site *s = &t->sites[i];
        if (s->witness || strcmp(s->name, f->site) == 0) {
            continue;
        }
        serving |= s->state != TANDEM_SITE_INVOKED;
        invoked = s->state == TANDEM_SITE_INVOKED && invoked == NULL ? s->name : invoked;
    }
    json_t *note = NULL;
    if (t != NULL && !serving && invoked != NULL) {
        char text[256];
        snprintf(text, sizeof text,
                 "every other site was invoked: the new leader revokes the survivors' site (%s) "
                 "so that it serves, then records %s as invoked",
                 invoked, f->site);
        note = json_string(text);
    }
    free(t);
    return note;
}

/* 409 when a reachable majority of the old voters could still elect a leader. */
static int majority_refuse(struct force *f)
{
    unsigned voters = 0, answering = 0;
    for (unsigned i = 0; i < f->n; i++) {
        if (f->cand[i].member.role == TANDEM_ROLE_VOTER) {
            voters++;
            answering += f->cand[i].reachable ? 1 : 0;
        }
    }
    if (voters > 0 && answering * 2 > voters) {
        tandem_bcp_reply_error(&f->reply, 409,
                               "%u of %u voters answer: quorum is not lost, a leader is being "
                               "elected; use a planned invoke once bcp status shows it",
                               answering, voters);
        return -1;
    }
    return 0;
}

/* 409 while quorum may exist: a leader answered, a majority of voters answered, or a node of
 * the site answered (unless the operator confirmed which members are lost). */
static int force_refuse(struct force *f)
{
    bool site_known = false;
    char silent[512];
    for (unsigned i = 0; i < f->n; i++) {
        const struct tandem_recover_candidate *c = &f->cand[i];
        site_known |= strcmp(c->member.site, f->site) == 0;
        if (c->reachable && strcmp(f->state[i], "leader") == 0) {
            tandem_bcp_reply_error(&f->reply, 409,
                                   "%s is leader: quorum is not lost, use a planned invoke",
                                   c->member.name);
            return -1;
        }
    }
    if (!site_known) {
        tandem_bcp_reply_error(&f->reply, 404, "no member of site %s in the configuration",
                               f->site);
        return -1;
    }
    if (site_refuse(f) != 0 || majority_refuse(f) != 0) {
        return -1;
    }
    if (f->n_confirmed > 0) {
        return confirm_refuse(f);
    }
    silent_members(f, silent, sizeof silent);
    for (unsigned i = 0; i < f->n; i++) {
        const struct tandem_recover_candidate *c = &f->cand[i];
        if (c->reachable && strcmp(c->member.site, f->site) == 0) {
            tandem_bcp_reply_error(&f->reply, 409,
                                   "%s of site %s answers, so the site is not lost (forcing would "
                                   "split the cluster); if %s are powered off or isolated for "
                                   "good: tandemctl bcp invoke %s --force --confirm-lost %s",
                                   c->member.name, f->site, silent, f->site, silent);
            return -1;
        }
    }
    return 0;
}

static void force_decide(struct force *f)
{
    if (force_phase(f) != FORCE_POLL) {
        return;
    }
    tandem_assert(f->pending == 0);
    if (force_refuse(f) != 0) {
        force_free(f);
        return;
    }
    f->seed = tandem_recover_choose(f->cand, f->n, f->n_confirmed > 0 ? "" : f->site);
    if (f->seed < 0) {
        tandem_bcp_reply_error(&f->reply, 503, "no surviving member answers");
        force_free(f);
        return;
    }
    /* The new epoch is above every epoch seen, this node's own included (it may not be among
     * the members polled), so every old-epoch peer is fenced by it. */
    f->epoch = f->bcp->epoch;
    for (unsigned i = 0; i < f->n; i++) {
        if (f->cand[i].reachable && f->cand[i].epoch > f->epoch) {
            f->epoch = f->cand[i].epoch;
        }
    }
    f->epoch++;
    tandem_log(TANDEM_LOG_WARN,
               "forced failover of site %s: seed %s (term %" PRIu64 ", last index %" PRIu64
               "), new epoch %" PRIu64,
               f->site, f->cand[f->seed].member.name, f->cand[f->seed].term,
               f->cand[f->seed].last_index, f->epoch);
    force_move(f, FORCE_SEED);
    force_instruct_next(f);
}

/* Every reachable member outside the site; with members confirmed lost, every reachable one. */
static bool survivor(const struct force *f, unsigned i)
{
    return f->cand[i].reachable &&
           (f->n_confirmed > 0 || strcmp(f->cand[i].member.site, f->site) != 0);
}

/* {"epoch","site","reason","members":[seed voter, other survivors standby]} */
static char *plan_body(struct force *f)
{
    json_t *members = json_array();
    for (unsigned i = 0; i < f->n; i++) {
        const struct tandem_member *m = &f->cand[i].member;
        if (!survivor(f, i)) {
            continue;
        }
        json_array_append_new(members, json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", m->name, "site",
                                                 m->site, "raft", m->raft, "api", m->api, "role",
                                                 (int)i == f->seed ? "voter" : "standby"));
    }
    json_t *body = json_pack("{s:I,s:s,s:s,s:o}", "epoch", (json_int_t)f->epoch, "site", f->site,
                             "reason", f->reason, "members", members);
    char *text = body == NULL ? NULL : json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return text;
}

static void instructed_add(struct force *f, unsigned i, const char *action, bool ok,
                           const char *error)
{
    json_array_append_new(f->instructed,
                          json_pack("{s:s,s:s,s:b,s:s}", "name", f->cand[i].member.name, "action",
                                    action, "ok", ok, "error", error == NULL ? "" : error));
}

static void instruct_cb(void *data, int status, int http_status, const char *body, size_t len)
{
    struct force_call *call = data;
    struct force *f = call->f;
    tandem_assert(f->pending > 0);
    tandem_assert(force_phase(f) == FORCE_JOINERS || force_phase(f) == FORCE_REPORT);
    bool ok = status == 0 && (http_status == 202 || http_status == 200);
    char error[TANDEM_ERRMSG_SIZE];
    snprintf(error, sizeof error, "%s%.*s", status != 0 ? uv_strerror(status) : "",
             ok || body == NULL ? 0 : (int)(len > 200 ? 200 : len), body == NULL ? "" : body);
    bool seed = (int)call->index == f->seed;
    instructed_add(f, call->index, seed ? "recover" : "reseed", ok, ok ? NULL : error);
    free(call);
    if (seed && !ok) {
        /* Nothing changed anywhere yet: the joiners are only told after the seed accepted. */
        tandem_bcp_reply_error(&f->reply, 502, "the chosen survivor %s refused to recover: %s",
                               f->cand[f->seed].member.name, error);
        force_free(f);
        return;
    }
    if (--f->pending == 0) {
        force_instruct_next(f);
    }
}

static int instruct(struct force *f, unsigned i)
{
    char reseed[256];
    bool seed = (int)i == f->seed;
    char *body = seed ? plan_body(f) : NULL;
    snprintf(reseed, sizeof reseed, "{\"epoch\":%" PRIu64 ",\"cluster_id\":\"%s\",\"force\":true}",
             f->epoch, f->bcp->env.config->cluster_id);
    struct force_call *call = calloc(1, sizeof *call);
    int rv = call == NULL || (seed && body == NULL) ? UV_ENOMEM : 0;
    if (rv == 0) {
        call->f = f;
        call->index = i;
        f->pending++;
        rv = tandem_bcp_call(f->bcp, f->cand[i].member.api, "POST",
                             seed ? "/v1/node/recover" : "/v1/node/reseed", NULL,
                             seed ? body : reseed, FORCE_INSTRUCT_TIMEOUT_MS, instruct_cb, call);
        if (rv != 0) {
            f->pending--;
            free(call);
        }
    }
    free(body);
    if (rv != 0) {
        instructed_add(f, i, seed ? "recover" : "reseed", false, uv_strerror(rv));
    }
    return rv;
}

static json_t *names_json(const struct force *f, bool survivors)
{
    json_t *list = json_array();
    for (unsigned i = 0; i < f->n; i++) {
        if (survivor(f, i) == survivors) {
            json_array_append_new(list, json_string(f->cand[i].member.name));
        }
    }
    return list;
}

/* What the operator must guarantee after a forced invoke, and what start-up quarantine does and
 * does not cover (issue 10 section 1). */
#define FORCE_OPERATOR_MUST                                                                        \
    "keep every lost node powered off or isolated from clients until it is fenced (it learns the " \
    "new epoch when it reaches a survivor) or re-seeded with tandemctl member rejoin"
#define FORCE_QUARANTINE_COVERS                                                                    \
    "lost nodes that restart (a majority of the old configuration included) neither vote nor "     \
    "campaign until they reach a node of every non-witness site or a leader of their epoch, or "   \
    "an operator releases them with tandemctl member release; reaching a survivor fences them"
#define FORCE_QUARANTINE_MISSES                                                                    \
    "lost nodes that never stopped: if the 'lost' site was cut off rather than down and still "    \
    "holds a majority of the old voters, it keeps its leader and accepts writes that the new "     \
    "epoch never sees; quarantine only acts when a node starts"

static void force_guarantee_add(json_t *body)
{
    json_t *q = json_pack("{s:s,s:s}", "covers", FORCE_QUARANTINE_COVERS, "does_not_cover",
                          FORCE_QUARANTINE_MISSES);
    if (body != NULL) {
        json_object_set_new(body, "operator_must", json_string(FORCE_OPERATOR_MUST));
        json_object_set_new(body, "quarantine", q);
    } else {
        json_decref(q);
    }
}

/* The seed's lag as the lost leader last told this node (JSON null when never heard): the
 * least that the seed lacked of what the leader had, in entries, client writes and time. */
static json_t *last_known_lag(const struct force *f)
{
    const struct tandem_bcp_lag_heard *h = &f->bcp->lag_heard;
    const char *seed = f->cand[f->seed].member.name;
    for (unsigned i = 0; i < h->n; i++) {
        const struct tandem_bcp_lag *l = &h->members[i];
        if (strcmp(l->name, seed) != 0) {
            continue;
        }
        json_t *out = json_pack("{s:s,s:s,s:I}", "member", seed, "heard_from", h->from, "age_ms",
                                (json_int_t)(uv_now(f->bcp->env.loop) - h->at_ms));
        json_object_set_new(out, "entries",
                            l->entries < 0 ? json_null() : json_integer(l->entries));
        json_object_set_new(out, "commands",
                            l->commands < 0 ? json_null() : json_integer(l->commands));
        json_object_set_new(out, "ms", l->ms < 0 ? json_null() : json_integer(l->ms));
        return out;
    }
    return json_null();
}

static void force_report(struct force *f)
{
    const struct tandem_recover_candidate *seed = &f->cand[f->seed];
    uint64_t committed = 0;
    for (unsigned i = 0; i < f->n; i++) {
        if (survivor(f, i) && f->cand[i].commit_index > committed) {
            committed = f->cand[i].commit_index;
        }
    }
    bool safe = tandem_recover_no_committed_loss(f->cand, f->n, f->n_confirmed > 0 ? "" : f->site);
    json_t *body = json_pack(
        "{s:s,s:s,s:I,s:I,s:I,s:o,s:b,s:o,s:o,s:O}", "site", f->site, "seed", seed->member.name,
        "epoch", (json_int_t)f->epoch, "highest_index", (json_int_t)seed->last_index,
        "committed_index_seen", (json_int_t)committed, "lost_entries_max",
        safe ? json_integer(0) : json_null(), "no_committed_loss", safe, "survivors",
        names_json(f, true), "lost", names_json(f, false), "instructed", f->instructed);
    if (body != NULL) {
        json_object_set_new(body, "last_known_lag", last_known_lag(f));
        json_t *revoke = revoke_note(f);
        if (revoke != NULL) {
            json_object_set_new(body, "revoke_note", revoke);
        }
    }
    if (body != NULL && f->n_confirmed > 0) {
        json_t *confirmed = json_array();
        for (unsigned i = 0; i < f->n_confirmed; i++) {
            json_array_append_new(confirmed, json_string(f->confirmed[i]));
        }
        json_object_set_new(body, "confirmed_lost", confirmed);
    }
    if (body != NULL && !safe) {
        json_object_set_new(body, "note",
                            json_string("the lost members held a majority of the old voters: "
                                        "entries they committed after the survivors last heard "
                                        "from them may be lost, and their number is unknown"));
    }
    force_guarantee_add(body);
    tandem_bcp_reply_json(&f->reply, 200, body);
}

/* Runs the local part after the answer: this node restarts as the seed or as a joiner. */
static void force_self(struct force *f)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    for (unsigned i = 0; i < f->n; i++) {
        if (!self_index(f, i) || !survivor(f, i)) {
            continue;
        }
        if ((int)i == f->seed) {
            struct tandem_recover_plan *plan = calloc(1, sizeof *plan);
            if (plan == NULL) {
                tandem_log(TANDEM_LOG_ERROR, "forced failover: out of memory");
                return;
            }
            plan->epoch = f->epoch;
            snprintf(plan->site, sizeof plan->site, "%s", f->site);
            snprintf(plan->reason, sizeof plan->reason, "%s", f->reason);
            for (unsigned j = 0; j < f->n; j++) {
                if (survivor(f, j)) {
                    plan->members[plan->n_members] = f->cand[j].member;
                    plan->members[plan->n_members++].role =
                        (int)j == f->seed ? TANDEM_ROLE_VOTER : TANDEM_ROLE_STANDBY;
                }
            }
            int rv = tandem_recover_plan_write(f->bcp->env.config->data_dir, plan, errmsg);
            free(plan);
            if (rv != 0) {
                tandem_log(TANDEM_LOG_ERROR, "forced failover: %s", errmsg);
                return;
            }
            tandem_bcp_restart(f->bcp, "forced failover: raft_recover as the seed");
        } else if (tandem_recover_write_u64(f->bcp->env.config->data_dir, TANDEM_RESEED_FILE,
                                            f->epoch, errmsg) == 0) {
            tandem_bcp_restart(f->bcp, "forced failover: re-seed from the seed");
        } else {
            tandem_log(TANDEM_LOG_ERROR, "forced failover: %s", errmsg);
        }
    }
}

/* Remote seed first; once it accepted, every other remote survivor; then answer and act. */
static void force_instruct_next(struct force *f)
{
    if (force_phase(f) == FORCE_SEED) {
        force_move(f, FORCE_JOINERS);
        if (!self_index(f, (unsigned)f->seed)) {
            if (instruct(f, (unsigned)f->seed) != 0) {
                tandem_bcp_reply_error(&f->reply, 502, "cannot reach the chosen survivor %s",
                                       f->cand[f->seed].member.name);
                force_free(f);
            }
            return;
        }
    }
    if (force_phase(f) == FORCE_JOINERS) {
        force_move(f, FORCE_REPORT);
        f->pending = 1;
        for (unsigned i = 0; i < f->n; i++) {
            if (survivor(f, i) && (int)i != f->seed && !self_index(f, i)) {
                (void)instruct(f, i);
            }
        }
        if (--f->pending > 0) {
            return;
        }
    }
    force_report(f);
    force_self(f);
    force_free(f);
}

void tandem_bcp_force_invoke(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                             const char *site, const char *reason)
{
    tandem_bcp_force_invoke_confirmed(b, reply, site, reason, NULL, 0);
}

void tandem_bcp_force_invoke_confirmed(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                                       const char *site, const char *reason,
                                       const char *const *confirmed_lost, unsigned n_confirmed)
{
    tandem_assert(n_confirmed <= TANDEM_BCP_CONFIRM_LOST_MAX);
    struct force *f = calloc(1, sizeof *f);
    if (f == NULL || (f->instructed = json_array()) == NULL) {
        free(f);
        tandem_bcp_reply_error(reply, 500, "out of memory");
        return;
    }
    f->bcp = b;
    f->reply = *reply;
    f->seed = -1;
    for (unsigned i = 0; i < n_confirmed; i++) {
        snprintf(f->confirmed[i], sizeof f->confirmed[i], "%s", confirmed_lost[i]);
    }
    f->n_confirmed = n_confirmed;
    tandem_sm_init(&f->sm, "forced failover", force_phases, FORCE_PHASES, FORCE_POLL,
                   force_invariant, f);
    snprintf(f->site, sizeof f->site, "%s", site);
    snprintf(f->reason, sizeof f->reason, "%s", reason);
    if (raft_state(&b->env.raft->raft) == RAFT_LEADER) {
        tandem_bcp_reply_error(reply, 409, "this node is the leader: quorum is not lost");
        force_free(f);
        return;
    }
    if (force_poll(f) != 0) {
        tandem_bcp_reply_error(reply, 500, "out of memory");
        force_move(f, FORCE_SEED); /* late poll answers must not decide */
    }
}
