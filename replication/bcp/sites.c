/* Site table apply functions: BCP state changes under an allowed-transition table, home roles,
 * the decision log and the drill history, all inside the batch's write transaction. */
#include "replication/bcp/moves.h"
#include "replication/bcp/sites.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/log_scan.h"
#include "replication/apply.h"
#include "storage/assert.h"
#include "storage/domain_codec.h"
#include "storage/error.h"

#define KEY_LEN_MAX      96 /* "decision/<20 digits>", "site/<31>", "home/<63>" */
#define SITE_PREFIX      "site/"
#define HOME_PREFIX      "home/"
#define DECISION_PREFIX  "decision/"
#define FORCED_PREFIX    "forced/"
#define INCIDENT_PREFIX  "incident/"
#define SETTINGS_KEY     "settings"
#define SITE_EPOCH_FIRST 1

/* The BCP state machine as a table of allowed moves (dqlite's sm): every state change of a
 * site is one of these rows, and nothing else. REGISTER and PREFER leave the state alone and
 * are handled before the table is consulted. */
struct site_move {
    int from;   /* enum tandem_site_state */
    int change; /* enum tandem_site_change */
    int to;     /* enum tandem_site_state */
};

static const struct site_move site_moves[] = {
    {TANDEM_SITE_ACTIVE, TANDEM_SITE_INVOKE, TANDEM_SITE_INVOKED},
    {TANDEM_SITE_INVOKED, TANDEM_SITE_REVOKE, TANDEM_SITE_RECOVERING},
    /* A site that fails again while it catches up is invoked again. */
    {TANDEM_SITE_RECOVERING, TANDEM_SITE_INVOKE, TANDEM_SITE_INVOKED},
    {TANDEM_SITE_RECOVERING, TANDEM_SITE_RECOVERED, TANDEM_SITE_ACTIVE},
};

static const char *const site_state_names[TANDEM_SITE_STATE_COUNT] = {
    [TANDEM_SITE_ACTIVE] = "active",
    [TANDEM_SITE_INVOKED] = "invoked",
    [TANDEM_SITE_RECOVERING] = "recovering",
};

static const char *const site_change_names[TANDEM_SITE_CHANGE_COUNT] = {
    [TANDEM_SITE_REGISTER] = "register", [TANDEM_SITE_INVOKE] = "invoke",
    [TANDEM_SITE_REVOKE] = "revoke",     [TANDEM_SITE_RECOVERED] = "recovered",
    [TANDEM_SITE_PREFER] = "prefer",
};

const char *tandem_site_state_name(int state)
{
    return state >= 0 && state < TANDEM_SITE_STATE_COUNT ? site_state_names[state] : "unknown";
}

int tandem_site_next_state(int from, int change)
{
    for (size_t i = 0; i < sizeof site_moves / sizeof site_moves[0]; i++) {
        if (site_moves[i].from == from && site_moves[i].change == change) {
            return site_moves[i].to;
        }
    }
    return -1;
}

static const char *change_name(int change)
{
    return change >= 0 && change < TANDEM_SITE_CHANGE_COUNT ? site_change_names[change] : "unknown";
}

/* What holds for every site at all times: a known state, and a witness (it holds no work) is
 * never taken out of service. */
static bool site_state_ok(int state, bool witness)
{
    return state >= 0 && state < TANDEM_SITE_STATE_COUNT &&
           (!witness || state == TANDEM_SITE_ACTIVE);
}

/* Moves record along change (dqlite's sm_move): the move must be a row of the table, the
 * epoch advances on every move that changes who serves the site's work, and the site holds
 * its invariant afterwards. Callers have refused what the table forbids: a forbidden move
 * here is a bug, not a business outcome. */
static void site_move(Tandem__SiteRecord *record, int change, int64_t now_ms)
{
    int from = (int)record->state, to = tandem_site_next_state(from, change);
    uint64_t epoch = record->epoch;
    tandem_assert(to >= 0 && to != from);
    record->state = (Tandem__SiteState)to;
    record->epoch += change == TANDEM_SITE_RECOVERED ? 0 : 1;
    record->since_ms = now_ms;
    tandem_assert(site_state_ok((int)record->state, record->witness));
    tandem_assert(record->epoch >= epoch && record->epoch >= SITE_EPOCH_FIRST);
}

bool tandem_site_table_ok(const struct tandem_site_table *t)
{
    if (t->n_sites > TANDEM_SITES_MAX || t->n_homes > TANDEM_SITE_HOMES_MAX) {
        return false;
    }
    for (unsigned i = 0; i < t->n_sites; i++) {
        const struct tandem_site *s = &t->sites[i];
        if (!tandem_member_name_ok(s->name, TANDEM_SITE_LEN_MAX) ||
            !site_state_ok(s->state, s->witness)) {
            return false;
        }
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(t->sites[j].name, s->name) == 0) {
                return false;
            }
        }
    }
    for (unsigned i = 0; i < t->n_homes; i++) {
        if (!tandem_member_name_ok(t->homes[i].name, TANDEM_NAME_LEN_MAX) ||
            t->homes[i].role < TANDEM_ROLE_VOTER || t->homes[i].role > TANDEM_ROLE_SPARE) {
            return false;
        }
    }
    return t->preferred_site[0] == '\0' || tandem_site_table_find(t, t->preferred_site) != NULL;
}

/* ---- records ---- */

static int record_get(struct tandem_store *store, MDB_txn *txn, int db, const char *key,
                      MDB_val *value)
{
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key};
    int rv = mdb_get(txn, store->dbi[db], &k, value);
    if (rv != 0 && rv != MDB_NOTFOUND) {
        return tandem_error_from_mdb(rv, store->errmsg, "sites get");
    }
    return rv;
}

/* Packs message under key (ProtobufCMessage generic packing). */
static int record_put(const struct tandem_apply_ctx *ctx, int db, const char *key,
                      const ProtobufCMessage *message)
{
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key};
    MDB_val v = {.mv_size = protobuf_c_message_get_packed_size(message)};
    int rv = mdb_put(ctx->txn, ctx->store->dbi[db], &k, &v, MDB_RESERVE);
    if (rv != 0) {
        return tandem_error_from_mdb(rv, ctx->store->errmsg, "sites put");
    }
    protobuf_c_message_pack(message, v.mv_data);
    return 0;
}

static int record_del(const struct tandem_apply_ctx *ctx, int db, const char *key)
{
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key};
    int rv = mdb_del(ctx->txn, ctx->store->dbi[db], &k, NULL);
    if (rv != 0 && rv != MDB_NOTFOUND) {
        return tandem_error_from_mdb(rv, ctx->store->errmsg, "sites delete");
    }
    return 0;
}

/* *out is NULL when absent. */
static int site_get(struct tandem_store *store, MDB_txn *txn, const char *name,
                    Tandem__SiteRecord **out)
{
    char key[KEY_LEN_MAX];
    MDB_val v;
    snprintf(key, sizeof key, SITE_PREFIX "%s", name);
    *out = NULL;
    int rv = record_get(store, txn, TANDEM_DB_SITES, key, &v);
    if (rv == MDB_NOTFOUND) {
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    *out = tandem__site_record__unpack(NULL, v.mv_size, v.mv_data);
    if (*out == NULL) {
        return tandem_error_set(store->errmsg, TANDEM_CORRUPT, "corrupt site record %s", name);
    }
    return 0;
}

int tandem_sites_invoked(const struct tandem_apply_ctx *ctx, const char *site, bool *invoked)
{
    Tandem__SiteRecord *record = NULL;
    int rv = site_get(ctx->store, ctx->txn, site, &record);
    *invoked = rv == 0 && record != NULL && record->state == TANDEM__SITE_STATE__SITE_INVOKED;
    tandem__site_record__free_unpacked(record, NULL);
    return rv;
}

/* The settings record, or defaults when none was written yet. */
struct settings_handle {
    Tandem__SiteSettings fallback;  /* used while no record exists */
    Tandem__SiteSettings *unpacked; /* owned; NULL when the fallback is used */
    Tandem__SiteSettings *s;        /* borrowed: fallback or unpacked */
};

static int settings_open(struct tandem_store *store, MDB_txn *txn, struct settings_handle *h)
{
    MDB_val v;
    tandem__site_settings__init(&h->fallback);
    h->unpacked = NULL;
    h->s = &h->fallback;
    int rv = record_get(store, txn, TANDEM_DB_SITES, SETTINGS_KEY, &v);
    if (rv == MDB_NOTFOUND) {
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    h->unpacked = tandem__site_settings__unpack(NULL, v.mv_size, v.mv_data);
    if (h->unpacked == NULL) {
        return tandem_error_set(store->errmsg, TANDEM_CORRUPT, "corrupt site settings");
    }
    h->s = h->unpacked;
    return 0;
}

static void settings_close(struct settings_handle *h)
{
    if (h->unpacked != NULL) {
        tandem__site_settings__free_unpacked(h->unpacked, NULL);
    }
    h->unpacked = NULL;
    h->s = NULL;
}

/* Writes the settings, with preferred_site replaced when preferred is not NULL, and closes h. */
static int settings_save(const struct tandem_apply_ctx *ctx, struct settings_handle *h,
                         const char *preferred)
{
    char *old = h->s->preferred_site;
    if (preferred != NULL) {
        h->s->preferred_site = (char *)preferred;
        h->s->preferred_set = true;
    }
    int rv = record_put(ctx, TANDEM_DB_SITES, SETTINGS_KEY, &h->s->base);
    h->s->preferred_site = old; /* free_unpacked must see its own string */
    settings_close(h);
    return rv;
}

static bool text_ok(const char *text, size_t len_max)
{
    return text != NULL && strlen(text) <= len_max;
}

struct decision_fields {
    const char *action, *member, *site, *from_role, *to_role, *reason, *by;
    int64_t jobs_moved; /* invoke and revoke */
};

/* Takes the next number of a sequence the settings keep (the decisions' or the drills'). */
static int settings_next_seq(const struct tandem_apply_ctx *ctx, bool drills, uint64_t *seq)
{
    struct settings_handle h;
    int rv = settings_open(ctx->store, ctx->txn, &h);
    if (rv != 0) {
        settings_close(&h);
        return rv;
    }
    uint64_t *next = drills ? &h.s->drills_next : &h.s->decisions_next;
    *seq = *next == 0 ? 1 : *next;
    *next = *seq + 1;
    return settings_save(ctx, &h, NULL);
}

/* Stores record at prefix + seq (20 digits) in db and deletes the record that fell out of the
 * newest `kept`. */
static int windowed_put(const struct tandem_apply_ctx *ctx, int db, const char *prefix,
                        uint64_t seq, uint64_t kept, const ProtobufCMessage *record)
{
    char key[KEY_LEN_MAX];
    snprintf(key, sizeof key, "%s%020" PRIu64, prefix, seq);
    int rv = record_put(ctx, db, key, record);
    if (rv == 0 && seq > kept) {
        snprintf(key, sizeof key, "%s%020" PRIu64, prefix, seq - kept);
        rv = record_del(ctx, db, key);
    }
    return rv;
}

/* Appends one decision record and prunes the one that fell out of the kept window. */
static int decision_append(const struct tandem_apply_ctx *ctx, const struct decision_fields *d,
                           uint64_t *seq_out)
{
    Tandem__SiteDecisionRecord record = TANDEM__SITE_DECISION_RECORD__INIT;
    uint64_t seq = 0;
    int rv = settings_next_seq(ctx, false, &seq);
    if (rv != 0) {
        return rv;
    }
    record.seq = seq;
    record.at_ms = ctx->now_ms;
    record.index = ctx->index;
    record.action = (char *)(d->action ? d->action : "");
    record.member = (char *)(d->member ? d->member : "");
    record.site = (char *)(d->site ? d->site : "");
    record.from_role = (char *)(d->from_role ? d->from_role : "");
    record.to_role = (char *)(d->to_role ? d->to_role : "");
    record.reason = (char *)(d->reason ? d->reason : "");
    record.by = (char *)(d->by ? d->by : "");
    record.jobs_moved = d->jobs_moved;
    record.proposer_id = ctx->proposer_id;
    if (seq_out != NULL) {
        *seq_out = seq;
    }
    return windowed_put(ctx, TANDEM_DB_SITES, DECISION_PREFIX, seq, TANDEM_SITE_DECISIONS_KEPT,
                        &record.base);
}

/* ---- JSON ---- */

/* Adds name (RFC 3339 UTC with milliseconds) beside a field holding Unix milliseconds, for the
 * people who read the JSON; the milliseconds stay for scripts. */
static json_t *with_time(json_t *object, const char *name, int64_t ms)
{
    char text[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_rfc3339_format_ms(ms, text);
    if (object != NULL) {
        json_object_set_new(object, name, json_string(text));
    }
    return object;
}

json_t *tandem_site_json(const struct tandem_site *site)
{
    json_t *out =
        json_pack("{s:s,s:s,s:I,s:I,s:s,s:s,s:I,s:b,s:b}", "name", site->name, "state",
                  tandem_site_state_name(site->state), "epoch", (json_int_t)site->epoch, "since",
                  (json_int_t)site->since_ms, "reason", site->reason, "by", site->by, "capacity",
                  (json_int_t)site->capacity, "witness", site->witness, "forced", site->forced);
    return with_time(out, "since_time", site->since_ms);
}

static void site_from_record(const Tandem__SiteRecord *r, struct tandem_site *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", r->name);
    out->state = (int)r->state;
    out->epoch = r->epoch;
    out->since_ms = r->since_ms;
    snprintf(out->reason, sizeof out->reason, "%s", r->reason);
    snprintf(out->by, sizeof out->by, "%s", r->by);
    out->capacity = r->capacity;
    out->witness = r->witness;
    out->forced = r->forced;
}

/* jobs: how many jobs the change moved, "jobs_returned" (to the site, a revoke) when returned,
 * else "jobs_moved" (away from it, an invoke). */
static void result_site(struct tandem_result *result, const Tandem__SiteRecord *r,
                        const char *preferred, unsigned jobs, bool returned)
{
    struct tandem_site site;
    if (result == NULL) {
        return;
    }
    site_from_record(r, &site);
    json_t *body = json_pack("{s:o,s:s,s:I}", "site", tandem_site_json(&site), "preferred_site",
                             preferred == NULL ? "" : preferred,
                             returned ? "jobs_returned" : "jobs_moved", (json_int_t)jobs);
    char *text = body == NULL ? NULL : json_dumps(body, JSON_COMPACT);
    json_decref(body);
    tandem_result_set(result, 200, "%s", text == NULL ? "{}" : text);
    free(text);
}

/* ---- apply: site state ---- */

static int count_visit(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                       bool *stop)
{
    (void)rest;
    (void)rest_len;
    (void)value;
    (void)stop;
    (*(unsigned *)arg)++;
    return 0;
}

/* How many records of the sites table have keys starting with prefix ("site/", "home/"). */
static int count_prefix(const struct tandem_apply_ctx *ctx, const char *prefix, unsigned *count)
{
    bool exhausted = false;
    *count = 0;
    return tandem_index_scan(ctx->store, ctx->txn, TANDEM_DB_SITES, (const uint8_t *)prefix,
                             strlen(prefix), NULL, 0, SIZE_MAX, count_visit, count, &exhausted);
}

static int apply_register(const struct tandem_apply_ctx *ctx, const Tandem__SiteUpdate *u,
                          struct tandem_result *result)
{
    Tandem__SiteRecord *existing = NULL, record = TANDEM__SITE_RECORD__INIT;
    char key[KEY_LEN_MAX];
    unsigned count = 0;
    int rv = site_get(ctx->store, ctx->txn, u->site, &existing);
    if (rv != 0) {
        return rv;
    }
    if (existing != NULL) {
        result_site(result, existing, NULL, 0, false);
        tandem__site_record__free_unpacked(existing, NULL);
        return 0;
    }
    if ((rv = count_prefix(ctx, SITE_PREFIX, &count)) != 0) {
        return rv;
    }
    if (count >= TANDEM_SITES_MAX) {
        tandem_result_error(result, 409, "the site table is full (%d sites)", TANDEM_SITES_MAX);
        return 0;
    }
    record.name = u->site;
    record.state = TANDEM__SITE_STATE__SITE_ACTIVE;
    record.epoch = SITE_EPOCH_FIRST;
    record.since_ms = ctx->now_ms;
    record.reason = u->reason;
    record.by = u->by;
    record.witness = u->witness;
    snprintf(key, sizeof key, SITE_PREFIX "%s", u->site);
    if ((rv = record_put(ctx, TANDEM_DB_SITES, key, &record.base)) != 0) {
        return rv;
    }
    struct decision_fields d = {
        .action = "register", .site = u->site, .reason = u->reason, .by = u->by};
    if ((rv = decision_append(ctx, &d, NULL)) == 0) {
        result_site(result, &record, NULL, 0, false);
    }
    return rv;
}

static int apply_prefer(const struct tandem_apply_ctx *ctx, const Tandem__SiteUpdate *u,
                        struct tandem_result *result)
{
    Tandem__SiteRecord *site = NULL;
    struct settings_handle h;
    int rv = u->site[0] == '\0' ? 0 : site_get(ctx->store, ctx->txn, u->site, &site);
    if (rv != 0) {
        return rv;
    }
    if (u->site[0] != '\0' && site == NULL) {
        tandem_result_error(result, 404, "no site named %s", u->site);
        return 0;
    }
    tandem__site_record__free_unpacked(site, NULL);
    if ((rv = settings_open(ctx->store, ctx->txn, &h)) != 0) {
        settings_close(&h);
        return rv;
    }
    if ((rv = settings_save(ctx, &h, u->site)) != 0) {
        return rv;
    }
    struct decision_fields d = {
        .action = "prefer", .site = u->site, .reason = u->reason, .by = u->by};
    if ((rv = decision_append(ctx, &d, NULL)) == 0) {
        tandem_result_set(result, 200, "{\"preferred_site\":\"%s\"}", u->site);
    }
    return rv;
}

/* The preferred site as a site change moves it: to u->site on revoke --failback, to none on an
 * invoke of the preferred site. A move is recorded as a "prefer" decision of the same author,
 * saying why and from which site to which, so that no preference changes without a record. */
static int preference_move(const struct tandem_apply_ctx *ctx, const Tandem__SiteUpdate *u,
                           bool failback)
{
    struct settings_handle h;
    char reason[TANDEM_SITE_REASON_LEN_MAX + 1];
    int rv = settings_open(ctx->store, ctx->txn, &h);
    const char *old = rv == 0 ? h.s->preferred_site : "", *want = failback ? u->site : "";
    bool moves = failback ? strcmp(old, u->site) != 0 : strcmp(old, u->site) == 0;
    if (rv != 0 || !moves) {
        settings_close(&h);
        return rv;
    }
    snprintf(reason, sizeof reason, "%s of %s: preferred site %s -> %s (%s)",
             failback ? "revoke --failback" : "invoke", u->site, old[0] != '\0' ? old : "none",
             want[0] != '\0' ? want : "none", u->reason);
    if ((rv = settings_save(ctx, &h, want)) != 0) {
        return rv;
    }
    struct decision_fields d = {.action = "prefer", .site = want, .reason = reason, .by = u->by};
    return decision_append(ctx, &d, NULL);
}

struct serving_walk {
    struct tandem_store *store;
    const char *site; /* the site being invoked */
    bool found;
    char *target; /* TANDEM_SITE_LEN_MAX + 1 bytes */
};

static int serving_visit(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                         bool *stop)
{
    struct serving_walk *w = arg;
    (void)rest;
    (void)rest_len;
    Tandem__SiteRecord *r = tandem__site_record__unpack(NULL, value->mv_size, value->mv_data);
    if (r == NULL) {
        return tandem_error_set(w->store->errmsg, TANDEM_CORRUPT, "corrupt site record");
    }
    bool serving = strcmp(r->name, w->site) != 0 && !r->witness &&
                   r->state != TANDEM__SITE_STATE__SITE_INVOKED;
    if (serving && (!w->found || r->state == TANDEM__SITE_STATE__SITE_ACTIVE)) {
        snprintf(w->target, TANDEM_SITE_LEN_MAX + 1, "%s", r->name);
        *stop = r->state == TANDEM__SITE_STATE__SITE_ACTIVE; /* the best there is */
        w->found = true;
    }
    tandem__site_record__free_unpacked(r, NULL);
    return 0;
}

/* An invoke needs another non-witness site that is not invoked to take the work over: the
 * first (in name order) active non-witness site other than site, else the first one that is
 * at least not invoked. *found is false when none can; target (TANDEM_SITE_LEN_MAX + 1 bytes)
 * gets its name. */
static int other_site_serving(const struct tandem_apply_ctx *ctx, const char *site, bool *found,
                              char *target)
{
    struct serving_walk w = {.store = ctx->store, .site = site, .target = target};
    bool exhausted = false;
    target[0] = '\0';
    int rv =
        tandem_index_scan(ctx->store, ctx->txn, TANDEM_DB_SITES, (const uint8_t *)SITE_PREFIX,
                          strlen(SITE_PREFIX), NULL, 0, SIZE_MAX, serving_visit, &w, &exhausted);
    *found = w.found;
    return rv;
}

/* The forced failover's history as a term history; false when it is not a valid one. */
static bool forced_history_of(const Tandem__ForcedHistory *f, struct tandem_term_history *h)
{
    memset(h, 0, sizeof *h);
    if (f->epoch == 0 || f->n_start_terms != f->n_start_indexes ||
        f->n_start_terms > TANDEM_TERM_HISTORY_MAX || !text_ok(f->seed, TANDEM_NAME_LEN_MAX)) {
        return false;
    }
    for (size_t k = 0; k < f->n_start_terms; k++) {
        h->terms[k] = (struct tandem_term_start){f->start_terms[k], f->start_indexes[k]};
    }
    h->n = (unsigned)f->n_start_terms;
    h->first_index = f->first_index;
    h->last_index = f->last_index;
    h->last_term = f->last_term;
    return tandem_term_history_ok(h);
}

/* Records a forced failover's history under its epoch, keeping the newest TANDEM_FORCED_KEPT.
 * A malformed history is left out: the invoke itself stands. */
static int forced_put(const struct tandem_apply_ctx *ctx, const Tandem__ForcedHistory *in)
{
    struct tandem_term_history h;
    if (!forced_history_of(in, &h)) {
        return 0;
    }
    Tandem__ForcedHistory record = *in;
    record.at_ms = ctx->now_ms;
    record.index = ctx->index;
    return windowed_put(ctx, TANDEM_DB_SITES, FORCED_PREFIX, in->epoch, TANDEM_FORCED_KEPT,
                        &record.base);
}

/* A forced invoke marks the home records of the members it left behind as lost. */
static int homes_mark_lost(const struct tandem_apply_ctx *ctx, const Tandem__SiteUpdate *u)
{
    char key[KEY_LEN_MAX];
    MDB_val v;
    int rv = 0;
    for (size_t i = 0; rv == 0 && i < u->n_lost_members; i++) {
        if (!text_ok(u->lost_members[i], TANDEM_NAME_LEN_MAX)) {
            continue;
        }
        snprintf(key, sizeof key, HOME_PREFIX "%s", u->lost_members[i]);
        rv = record_get(ctx->store, ctx->txn, TANDEM_DB_SITES, key, &v);
        if (rv == MDB_NOTFOUND) {
            rv = 0; /* no home record: nothing known to show it by */
            continue;
        }
        Tandem__MemberHome *h =
            rv == 0 ? tandem__member_home__unpack(NULL, v.mv_size, v.mv_data) : NULL;
        if (rv == 0 && h == NULL) {
            return tandem_error_set(ctx->store->errmsg, TANDEM_CORRUPT,
                                    "corrupt member home record");
        }
        if (h != NULL) {
            h->lost = true;
            rv = record_put(ctx, TANDEM_DB_SITES, key, &h->base);
            tandem__member_home__free_unpacked(h, NULL);
        }
    }
    return rv;
}

/* What an invoke does besides the move: the preference leaves the site, a forced invoke marks
 * the members it left behind and records the seed's log history, and the site's open work moves
 * to target. */
static int invoke_effects(const struct tandem_apply_ctx *ctx, const Tandem__SiteUpdate *u,
                          const char *target, unsigned *moved)
{
    /* Leadership leaves for good: only a revoke with failback brings it back. */
    int rv = preference_move(ctx, u, false);
    if (rv == 0 && u->force) {
        rv = homes_mark_lost(ctx, u);
    }
    if (rv == 0 && u->force && u->history != NULL) {
        rv = forced_put(ctx, u->history);
    }
    return rv == 0 ? tandem_bcp_jobs_move(ctx, u->site, target, false, u->by, moved) : rv;
}

static int apply_transition(const struct tandem_apply_ctx *ctx, const Tandem__SiteUpdate *u,
                            struct tandem_result *result)
{
    Tandem__SiteRecord *record = NULL;
    char key[KEY_LEN_MAX];
    int change = (int)u->action;
    int rv = site_get(ctx->store, ctx->txn, u->site, &record);
    if (rv != 0 || record == NULL) {
        if (rv == 0) {
            tandem_result_error(result, 404, "no site named %s", u->site);
        }
        return rv;
    }
    int next = tandem_site_next_state((int)record->state, change);
    bool serving = true;
    char target[TANDEM_SITE_LEN_MAX + 1] = "";
    unsigned moved = 0;
    if (change == TANDEM_SITE_INVOKE && next >= 0 &&
        (rv = other_site_serving(ctx, u->site, &serving, target)) != 0) {
        tandem__site_record__free_unpacked(record, NULL);
        return rv;
    }
    if (!serving) {
        tandem_result_error(result, 409,
                            "no other site can take over from %s: every other "
                            "non-witness site is invoked",
                            u->site);
    } else if (record->witness && change == TANDEM_SITE_INVOKE) {
        tandem_result_error(result, 409, "site %s is a witness: it holds no work to take over",
                            u->site);
    } else if (next < 0) {
        tandem_result_error(result, 409, "site %s is %s: cannot %s it", u->site,
                            tandem_site_state_name((int)record->state), change_name(change));
    } else {
        char *old_reason = record->reason, *old_by = record->by;
        site_move(record, change, ctx->now_ms);
        record->reason = u->reason;
        record->by = u->by;
        if (change == TANDEM_SITE_INVOKE) {
            record->forced = u->force;
        }
        snprintf(key, sizeof key, SITE_PREFIX "%s", u->site);
        rv = record_put(ctx, TANDEM_DB_SITES, key, &record->base);
        if (rv == 0 && change == TANDEM_SITE_REVOKE && (u->failback || u->return_jobs)) {
            rv = u->failback ? preference_move(ctx, u, true) : 0;
            if (rv == 0) {
                rv = tandem_bcp_jobs_move(ctx, u->site, NULL, true, u->by, &moved);
            }
        } else if (rv == 0 && change == TANDEM_SITE_INVOKE) {
            rv = invoke_effects(ctx, u, target, &moved);
        }
        struct decision_fields d = {.action = change_name(change),
                                    .site = u->site,
                                    .from_role = NULL,
                                    .reason = u->reason,
                                    .by = u->by,
                                    .jobs_moved = moved};
        if (rv == 0 && (rv = decision_append(ctx, &d, NULL)) == 0) {
            result_site(result, record,
                        change == TANDEM_SITE_REVOKE && u->failback ? u->site : NULL, moved,
                        change == TANDEM_SITE_REVOKE);
        }
        record->reason = old_reason;
        record->by = old_by;
    }
    tandem__site_record__free_unpacked(record, NULL);
    return rv;
}

int tandem_sites_apply_update(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                              struct tandem_result *result)
{
    const Tandem__SiteUpdate *u = command->site_update;
    bool empty_ok = u != NULL && u->action == TANDEM__SITE_UPDATE__ACTION__PREFER;
    if (u == NULL || u->site == NULL ||
        !((empty_ok && u->site[0] == '\0') ||
          tandem_member_name_ok(u->site, TANDEM_SITE_LEN_MAX))) {
        tandem_result_error(result, 400, "invalid site name");
        return 0;
    }
    if (!text_ok(u->reason, TANDEM_SITE_REASON_LEN_MAX) ||
        !text_ok(u->by, TANDEM_SITE_BY_LEN_MAX)) {
        tandem_result_error(result, 400, "reason or by too long");
        return 0;
    }
    switch ((int)u->action) {
        case TANDEM_SITE_REGISTER:
            return apply_register(ctx, u, result);
        case TANDEM_SITE_PREFER:
            return apply_prefer(ctx, u, result);
        case TANDEM_SITE_INVOKE:
        case TANDEM_SITE_REVOKE:
        case TANDEM_SITE_RECOVERED:
            return apply_transition(ctx, u, result);
        default:
            tandem_result_error(result, 400, "unknown site change %d", (int)u->action);
            return 0;
    }
}

/* ---- apply: decisions, homes, drills ---- */

int tandem_sites_apply_decision(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                                struct tandem_result *result)
{
    const Tandem__SiteDecision *d = command->site_decision;
    uint64_t seq = 0;
    if (d == NULL || !text_ok(d->action, TANDEM_SITE_ACTION_LEN_MAX) || d->action[0] == '\0' ||
        !text_ok(d->member, TANDEM_NAME_LEN_MAX) || !text_ok(d->site, TANDEM_SITE_LEN_MAX) ||
        !text_ok(d->from_role, 16) || !text_ok(d->to_role, 16) ||
        !text_ok(d->reason, TANDEM_SITE_REASON_LEN_MAX) ||
        !text_ok(d->by, TANDEM_SITE_BY_LEN_MAX)) {
        tandem_result_error(result, 400, "malformed decision");
        return 0;
    }
    struct decision_fields fields = {d->action,  d->member, d->site, d->from_role,
                                     d->to_role, d->reason, d->by,   0};
    int rv = decision_append(ctx, &fields, &seq);
    if (rv == 0) {
        tandem_result_set(result, 200, "{\"seq\":%" PRIu64 "}", seq);
    }
    return rv;
}

static bool home_ok(const Tandem__MemberHome *h)
{
    struct tandem_member m;
    char errmsg[TANDEM_ERRMSG_SIZE];
    return h != NULL && h->name != NULL && tandem_member_name_ok(h->name, TANDEM_NAME_LEN_MAX) &&
           h->site != NULL && tandem_member_name_ok(h->site, TANDEM_SITE_LEN_MAX) &&
           h->address != NULL && tandem_member_address_parse(h->address, &m, errmsg) == 0 &&
           strcmp(m.name, h->name) == 0 && h->role >= TANDEM_ROLE_VOTER &&
           h->role <= TANDEM_ROLE_SPARE;
}

int tandem_sites_apply_member_home(const struct tandem_apply_ctx *ctx,
                                   const Tandem__Command *command, struct tandem_result *result)
{
    const Tandem__MemberHomeSet *set = command->member_home_set;
    char key[KEY_LEN_MAX];
    unsigned count = 0;
    MDB_val v;
    if (set == NULL || set->n_members == 0 || set->n_members > TANDEM_SITE_HOMES_MAX) {
        tandem_result_error(result, 400, "member home set needs 1 to %d members",
                            TANDEM_SITE_HOMES_MAX);
        return 0;
    }
    for (size_t i = 0; i < set->n_members; i++) {
        if (!home_ok(set->members[i])) {
            tandem_result_error(result, 400, "malformed member home record");
            return 0;
        }
    }
    int rv = count_prefix(ctx, HOME_PREFIX, &count);
    for (size_t i = 0; rv == 0 && i < set->n_members; i++) {
        snprintf(key, sizeof key, HOME_PREFIX "%s", set->members[i]->name);
        rv = record_get(ctx->store, ctx->txn, TANDEM_DB_SITES, key, &v);
        if (set->members[i]->forget) {
            count -= rv == 0 ? 1 : 0;
            rv = rv == 0 || rv == MDB_NOTFOUND ? record_del(ctx, TANDEM_DB_SITES, key) : rv;
            continue;
        }
        if (rv == MDB_NOTFOUND && count >= TANDEM_SITE_HOMES_MAX) {
            tandem_result_error(result, 409, "member home table is full (%d)",
                                TANDEM_SITE_HOMES_MAX);
            return 0;
        }
        count += rv == MDB_NOTFOUND ? 1 : 0;
        if (rv == 0 || rv == MDB_NOTFOUND) {
            rv = record_put(ctx, TANDEM_DB_SITES, key, &set->members[i]->base);
        }
    }
    if (rv == 0 && set->n_members == 1 && set->members[0]->forget) {
        /* member remove of a lost member answers as a removal does */
        tandem_result_set(result, 200, "{\"removed\":\"%s\"}", set->members[0]->name);
    } else if (rv == 0) {
        tandem_result_set(result, 200, "{\"homes\":%zu}", set->n_members);
    }
    return rv;
}

int tandem_sites_apply_drill(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                             struct tandem_result *result)
{
    const Tandem__DrillStore *store = command->drill_store;
    const Tandem__DrillRecord *in = store == NULL ? NULL : store->record;
    uint64_t seq = 0;
    if (in == NULL || !text_ok(in->id, TANDEM_DRILL_ID_LEN_MAX) || in->id[0] == '\0' ||
        !text_ok(in->site, TANDEM_SITE_LEN_MAX) ||
        !text_ok(in->report_json, TANDEM_DRILL_REPORT_BYTES_MAX)) {
        tandem_result_error(result, 400, "malformed drill record");
        return 0;
    }
    int rv = settings_next_seq(ctx, true, &seq);
    if (rv != 0) {
        return rv;
    }
    Tandem__DrillRecord record = *in;
    record.seq = seq;
    rv = windowed_put(ctx, TANDEM_DB_DRILLS, "", seq, TANDEM_DRILLS_KEPT, &record.base);
    if (rv == 0) {
        tandem_result_set(result, 200, "{\"seq\":%" PRIu64 "}", seq);
    }
    return rv;
}

/* ---- reading ---- */

static int load_one(struct tandem_store *store, const MDB_val *k, const MDB_val *v,
                    struct tandem_site_table *out)
{
    if (k->mv_size > strlen(SITE_PREFIX) && memcmp(k->mv_data, SITE_PREFIX, 5) == 0) {
        Tandem__SiteRecord *r = tandem__site_record__unpack(NULL, v->mv_size, v->mv_data);
        if (r == NULL) {
            return tandem_error_set(store->errmsg, TANDEM_CORRUPT, "corrupt site record");
        }
        if (out->n_sites < TANDEM_SITES_MAX) {
            site_from_record(r, &out->sites[out->n_sites++]);
        }
        tandem__site_record__free_unpacked(r, NULL);
    } else if (k->mv_size > strlen(HOME_PREFIX) && memcmp(k->mv_data, HOME_PREFIX, 5) == 0) {
        Tandem__MemberHome *h = tandem__member_home__unpack(NULL, v->mv_size, v->mv_data);
        if (h == NULL) {
            return tandem_error_set(store->errmsg, TANDEM_CORRUPT, "corrupt member home record");
        }
        if (out->n_homes < TANDEM_SITE_HOMES_MAX) {
            struct tandem_member_home *home = &out->homes[out->n_homes++];
            snprintf(home->name, sizeof home->name, "%s", h->name);
            snprintf(home->site, sizeof home->site, "%s", h->site);
            snprintf(home->address, sizeof home->address, "%s", h->address);
            home->role = h->role;
            home->lost = h->lost;
        }
        tandem__member_home__free_unpacked(h, NULL);
    }
    return 0;
}

struct load_walk {
    struct tandem_store *store;
    struct tandem_site_table *out;
};

static int load_visit(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                      bool *stop)
{
    struct load_walk *w = arg;
    MDB_val key = {.mv_size = rest_len, .mv_data = (void *)rest};
    (void)stop;
    return load_one(w->store, &key, value, w->out);
}

int tandem_sites_load(struct tandem_store *store, MDB_txn *txn, struct tandem_site_table *out)
{
    struct load_walk w = {store, out};
    uint8_t none[1] = {0};
    bool exhausted = false;
    memset(out, 0, sizeof *out);
    int rv = tandem_index_scan(store, txn, TANDEM_DB_SITES, none, 0, NULL, 0, SIZE_MAX, load_visit,
                               &w, &exhausted);
    if (rv != 0) {
        return rv;
    }
    struct settings_handle h;
    rv = settings_open(store, txn, &h);
    if (rv == 0) {
        snprintf(out->preferred_site, sizeof out->preferred_site, "%s", h.s->preferred_site);
        out->preferred_set = h.s->preferred_set;
        out->decisions_next = h.s->decisions_next;
        out->drills_next = h.s->drills_next;
    }
    settings_close(&h);
    return rv;
}

/* The element of items (n structs of size bytes) whose name field, at name_offset, is name. */
static const void *find_by_name(const void *items, unsigned n, size_t size, size_t name_offset,
                                const char *name)
{
    const char *item = items;
    for (unsigned i = 0; i < n; i++, item += size) {
        if (strcmp(item + name_offset, name) == 0) {
            return item;
        }
    }
    return NULL;
}

const struct tandem_site *tandem_site_table_find(const struct tandem_site_table *t,
                                                 const char *name)
{
    return find_by_name(t->sites, t->n_sites, sizeof t->sites[0],
                        offsetof(struct tandem_site, name), name);
}

const struct tandem_member_home *tandem_site_table_home(const struct tandem_site_table *t,
                                                        const char *name)
{
    return find_by_name(t->homes, t->n_homes, sizeof t->homes[0],
                        offsetof(struct tandem_member_home, name), name);
}

/* An empty JSON array and a cursor on db for a listing; NULL with store->errmsg when either
 * cannot be had. */
static json_t *listing_open(struct tandem_store *store, MDB_txn *txn, int db, MDB_cursor **cursor)
{
    json_t *list = json_array();
    int rv = list == NULL ? tandem_error_set(store->errmsg, TANDEM_NOMEM, "out of memory")
                          : tandem_error_from_mdb(mdb_cursor_open(txn, store->dbi[db], cursor),
                                                  store->errmsg, "listing cursor");
    if (rv != 0) {
        json_decref(list);
        return NULL;
    }
    return list;
}

static json_t *decision_json(const ProtobufCMessage *m, bool full)
{
    const Tandem__SiteDecisionRecord *d = (const Tandem__SiteDecisionRecord *)m;
    (void)full;
    json_t *out = json_pack("{s:I,s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I}", "seq",
                            (json_int_t)d->seq, "at", (json_int_t)d->at_ms, "index",
                            (json_int_t)d->index, "action", d->action, "member", d->member, "site",
                            d->site, "from_role", d->from_role, "to_role", d->to_role, "reason",
                            d->reason, "by", d->by, "jobs_moved", (json_int_t)d->jobs_moved);
    return with_time(out, "at_time", d->at_ms);
}

/* Puts cursor on the last key below stop (the key right after a prefix's range, e.g.
 * "decision0" for "decision/"), or on the last key of the database (stop NULL). */
static int cursor_last_before(MDB_cursor *cursor, const char *stop, MDB_val *k, MDB_val *v)
{
    if (stop == NULL) {
        return mdb_cursor_get(cursor, k, v, MDB_LAST);
    }
    k->mv_size = strlen(stop);
    k->mv_data = (void *)stop;
    int rv = mdb_cursor_get(cursor, k, v, MDB_SET_RANGE);
    return rv == 0 ? mdb_cursor_get(cursor, k, v, MDB_PREV)
                   : mdb_cursor_get(cursor, k, v, MDB_LAST);
}

static bool key_in(const MDB_val *k, const char *prefix)
{
    size_t n = strlen(prefix);
    return k->mv_size > n && memcmp(k->mv_data, prefix, n) == 0;
}

/* A listing of stored records: the records of db with keys in [prefix, stop) ("" and NULL: the
 * whole database), each unpacked as descriptor and shown by item. */
struct listing {
    int db;
    const char *prefix, *stop;
    const ProtobufCMessageDescriptor *descriptor;
    json_t *(*item)(const ProtobufCMessage *record, bool full);
};

/* The newest `limit` records of l, newest first (oldest_first: the same ones reversed); NULL
 * with store->errmsg when the listing cannot be opened. Records that do not unpack are left
 * out. */
static json_t *listing_newest(struct tandem_store *store, MDB_txn *txn, const struct listing *l,
                              unsigned limit, bool full, bool oldest_first)
{
    MDB_cursor *cursor;
    MDB_val k, v;
    json_t *list = listing_open(store, txn, l->db, &cursor);
    if (list == NULL) {
        return NULL;
    }
    for (int rv = cursor_last_before(cursor, l->stop, &k, &v);
         rv == 0 && json_array_size(list) < limit && key_in(&k, l->prefix);
         rv = mdb_cursor_get(cursor, &k, &v, MDB_PREV)) {
        ProtobufCMessage *m = protobuf_c_message_unpack(l->descriptor, NULL, v.mv_size, v.mv_data);
        if (m != NULL) {
            json_t *item = l->item(m, full);
            (void)(oldest_first ? json_array_insert_new(list, 0, item)
                                : json_array_append_new(list, item));
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
    mdb_cursor_close(cursor);
    return list;
}

json_t *tandem_sites_decisions_json(struct tandem_store *store, MDB_txn *txn, unsigned limit)
{
    static const struct listing decisions = {TANDEM_DB_SITES, DECISION_PREFIX, "decision0",
                                             &tandem__site_decision_record__descriptor,
                                             decision_json};
    return listing_newest(store, txn, &decisions, limit, false, true);
}

/* The stored report as JSON under "report" when full. */
static void report_attach(json_t *out, const char *report_json, bool full)
{
    if (full) {
        json_t *report = json_loads(report_json, 0, NULL);
        json_object_set_new(out, "report", report == NULL ? json_null() : report);
    }
}

static json_t *drill_json(const ProtobufCMessage *m, bool full)
{
    const Tandem__DrillRecord *d = (const Tandem__DrillRecord *)m;
    json_t *out =
        json_pack("{s:I,s:s,s:s,s:I,s:I,s:b,s:I,s:I,s:b}", "seq", (json_int_t)d->seq, "id", d->id,
                  "site", d->site, "started", (json_int_t)d->started_ms, "finished",
                  (json_int_t)d->finished_ms, "ok", d->ok, "rto_ms", (json_int_t)d->rto_ms,
                  "rpo_writes", (json_int_t)d->rpo_writes, "digests_equal", d->digests_equal);
    if (with_time(with_time(out, "started_time", d->started_ms), "finished_time", d->finished_ms) ==
        NULL) {
        return NULL;
    }
    json_object_set_new(out, "jobs_moved",
                        d->jobs_moved < 0 ? json_null() : json_integer((json_int_t)d->jobs_moved));
    report_attach(out, d->report_json, full);
    return out;
}

json_t *tandem_sites_drills_json(struct tandem_store *store, MDB_txn *txn, unsigned limit,
                                 bool full)
{
    static const struct listing drills = {TANDEM_DB_DRILLS, "", NULL,
                                          &tandem__drill_record__descriptor, drill_json};
    return listing_newest(store, txn, &drills, limit, full, false);
}

int tandem_sites_decisions_after(struct tandem_store *store, MDB_txn *txn, uint64_t after,
                                 unsigned limit,
                                 void (*visit)(void *arg, const Tandem__SiteDecisionRecord *d),
                                 void *arg)
{
    MDB_cursor *cursor;
    MDB_val k, v;
    char key[KEY_LEN_MAX];
    int rv = tandem_error_from_mdb(mdb_cursor_open(txn, store->dbi[TANDEM_DB_SITES], &cursor),
                                   store->errmsg, "decisions cursor");
    if (rv != 0) {
        return rv;
    }
    snprintf(key, sizeof key, DECISION_PREFIX "%020" PRIu64, after + 1);
    k.mv_size = strlen(key);
    k.mv_data = key;
    unsigned n = 0;
    for (rv = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE); rv == 0 && n < limit;
         rv = mdb_cursor_get(cursor, &k, &v, MDB_NEXT), n++) {
        if (!key_in(&k, DECISION_PREFIX)) {
            break;
        }
        Tandem__SiteDecisionRecord *d =
            tandem__site_decision_record__unpack(NULL, v.mv_size, v.mv_data);
        if (d != NULL) {
            visit(arg, d);
            tandem__site_decision_record__free_unpacked(d, NULL);
        }
    }
    mdb_cursor_close(cursor);
    return rv == 0 || rv == MDB_NOTFOUND ? 0
                                         : tandem_error_from_mdb(rv, store->errmsg, "decisions");
}

/* ---- incidents ---- */

static bool incident_ok(const Tandem__IncidentRecord *in)
{
    return in != NULL && in->decision_seq > 0 && text_ok(in->site, TANDEM_SITE_LEN_MAX) &&
           in->site[0] != '\0' && text_ok(in->kind, TANDEM_INCIDENT_KIND_LEN_MAX) &&
           text_ok(in->report_json, TANDEM_INCIDENT_REPORT_BYTES_MAX);
}

/* Deletes the oldest incident reports beyond TANDEM_INCIDENTS_KEPT (keys sort by decision). */
static int incidents_prune(const struct tandem_apply_ctx *ctx)
{
    unsigned count = 0;
    MDB_cursor *cursor;
    MDB_val k = {.mv_size = strlen(INCIDENT_PREFIX), .mv_data = (void *)INCIDENT_PREFIX}, v;
    int rv = count_prefix(ctx, INCIDENT_PREFIX, &count);
    if (rv != 0 || count <= TANDEM_INCIDENTS_KEPT) {
        return rv;
    }
    rv = mdb_cursor_open(ctx->txn, ctx->store->dbi[TANDEM_DB_SITES], &cursor);
    if (rv != 0) {
        return tandem_error_from_mdb(rv, ctx->store->errmsg, "incidents cursor");
    }
    rv = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    for (; rv == 0 && count > TANDEM_INCIDENTS_KEPT; count--) {
        rv = mdb_cursor_del(cursor, 0); /* the cursor moves on to the next report */
        rv = rv != 0 ? rv : mdb_cursor_get(cursor, &k, &v, MDB_GET_CURRENT);
    }
    mdb_cursor_close(cursor);
    return rv == 0 || rv == MDB_NOTFOUND
               ? 0
               : tandem_error_from_mdb(rv, ctx->store->errmsg, "incident prune");
}

int tandem_sites_apply_incident(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                                struct tandem_result *result)
{
    const Tandem__IncidentStore *store = command->incident_store;
    const Tandem__IncidentRecord *in = store == NULL ? NULL : store->record;
    char key[KEY_LEN_MAX];
    MDB_val v;
    if (!incident_ok(in)) {
        tandem_result_error(result, 400, "malformed incident record");
        return 0;
    }
    snprintf(key, sizeof key, INCIDENT_PREFIX "%020" PRIu64, in->decision_seq);
    int rv = record_get(ctx->store, ctx->txn, TANDEM_DB_SITES, key, &v);
    if (rv == 0) {
        tandem_result_error(result, 409, "the incident of decision %" PRIu64 " is stored already",
                            in->decision_seq);
        return 0;
    }
    if (rv != MDB_NOTFOUND) {
        return rv;
    }
    rv = record_put(ctx, TANDEM_DB_SITES, key, &in->base);
    rv = rv != 0 ? rv : incidents_prune(ctx);
    if (rv == 0) {
        tandem_result_set(result, 200, "{\"decision_seq\":%" PRIu64 "}", in->decision_seq);
    }
    return rv;
}

static json_t *incident_json(const ProtobufCMessage *m, bool full)
{
    const Tandem__IncidentRecord *d = (const Tandem__IncidentRecord *)m;
    char decided[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_rfc3339_format(d->decided_ms, decided);
    json_t *out = json_pack("{s:I,s:s,s:s,s:s,s:I}", "decision_seq", (json_int_t)d->decision_seq,
                            "site", d->site, "kind", d->kind, "decided", decided, "jobs_moved",
                            (json_int_t)d->jobs_moved);
    if (out == NULL) {
        return NULL;
    }
    json_object_set_new(out, "longest_write_gap_ms",
                        d->longest_write_gap_ms < 0 ? json_null()
                                                    : json_integer(d->longest_write_gap_ms));
    report_attach(out, d->report_json, full);
    return out;
}

json_t *tandem_sites_incidents_json(struct tandem_store *store, MDB_txn *txn, unsigned limit,
                                    bool full)
{
    static const struct listing incidents = {TANDEM_DB_SITES, INCIDENT_PREFIX, "incident0",
                                             &tandem__incident_record__descriptor, incident_json};
    return listing_newest(store, txn, &incidents, limit, full, false);
}

/* ---- forced failover histories ---- */

static json_t *forced_json(const ProtobufCMessage *m, bool full)
{
    const Tandem__ForcedHistory *f = (const Tandem__ForcedHistory *)m;
    (void)full;
    char at[TANDEM_RFC3339_LEN_MAX + 1];
    json_t *terms = json_array();
    for (size_t k = 0; k < f->n_start_terms && k < f->n_start_indexes; k++) {
        json_array_append_new(terms, json_pack("[I,I]", (json_int_t)f->start_terms[k],
                                               (json_int_t)f->start_indexes[k]));
    }
    tandem_rfc3339_format(f->at_ms, at);
    return json_pack("{s:I,s:s,s:s,s:I,s:I,s:I,s:I,s:o}", "epoch", (json_int_t)f->epoch, "seed",
                     f->seed, "at", at, "index", (json_int_t)f->index, "first_index",
                     (json_int_t)f->first_index, "last_index", (json_int_t)f->last_index,
                     "last_term", (json_int_t)f->last_term, "terms", terms);
}

json_t *tandem_sites_forced_json(struct tandem_store *store, MDB_txn *txn)
{
    static const struct listing forced = {TANDEM_DB_SITES, FORCED_PREFIX, "forced0",
                                          &tandem__forced_history__descriptor, forced_json};
    return listing_newest(store, txn, &forced, TANDEM_FORCED_KEPT, false, false);
}
