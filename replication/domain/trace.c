/* The trace: append-only events per job and box change, disposal records, the retention purge,
 * and the counters and actor rules the domain's apply functions share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/member.h"
#include "replication/apply.h"
#include "replication/domain/audit.h"
#include "replication/domain/domain.h"
#include "replication/domain/records.h"
#include "storage/error.h"

#define COUNTER_TRACE    "trace_seq"
#define COUNTER_DISPOSAL "disposal_seq"
#define KIND_LEN_MAX     3 /* "job" or "box" */
/* "<kind>\0<id>\0<seq BE>" */
#define TRACE_IDX_KEY_MAX (KIND_LEN_MAX + 1 + TANDEM_DOMAIN_ID_LEN_MAX + 1 + 8)

bool tandem_domain_site_ok(const char *site)
{
    return site != NULL && tandem_member_name_ok(site, TANDEM_SITE_LEN_MAX);
}

int tandem_actor_check(const Tandem__Actor *actor, char *errmsg)
{
    if (actor == NULL || !tandem_domain_text_ok(actor->user, false)) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "the actor must be printable text of 1 to %d bytes",
                 TANDEM_DOMAIN_TEXT_LEN_MAX);
        return -1;
    }
    if (!tandem_domain_site_ok(actor->site)) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "the actor's site must be a site label");
        return -1;
    }
    return 0;
}

bool tandem_actor_site_refused(const Tandem__Actor *actor, const char *kind, const char *id,
                               const char *site, struct tandem_result *result)
{
    if (actor == NULL || !actor->site_bound || strcmp(actor->home_site, site) == 0) {
        return false;
    }
    char message[TANDEM_ERRMSG_SIZE];
    snprintf(message, sizeof message,
             "%s rule: operator %s of site %s acts only at its own site, and %s %s is at site %s "
             "(until BCP is invoked for %s and its work moved to %s)",
             TANDEM_OWN_SITE_RULE, actor->user, actor->home_site, kind, id, site, site,
             actor->home_site);
    tandem_result_jansson(result, 403,
                          json_pack("{s:s,s:s,s:s,s:s}", "error", message, "rule",
                                    TANDEM_OWN_SITE_RULE, "user_site", actor->home_site, "site",
                                    site));
    return true;
}

int tandem_domain_counter_next(const struct tandem_apply_ctx *ctx, const char *key, uint64_t *value)
{
    MDB_dbi dbi = ctx->store->dbi[TANDEM_DB_DOMAIN_META];
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key}, v;
    uint8_t buf[8];
    int rv = mdb_get(ctx->txn, dbi, &k, &v);
    if (rv != 0 && rv != MDB_NOTFOUND) {
        return tandem_error_from_mdb(rv, ctx->store->errmsg, "counter get");
    }
    if (rv == 0 && v.mv_size != sizeof buf) {
        return tandem_error_set(ctx->store->errmsg, TANDEM_CORRUPT, "corrupt counter %s", key);
    }
    *value = (rv == 0 ? tandem_be64_get(v.mv_data) : 0) + 1;
    tandem_be64_put(buf, *value);
    v.mv_size = sizeof buf;
    v.mv_data = buf;
    rv = mdb_put(ctx->txn, dbi, &k, &v, 0);
    return rv == 0 ? 0 : tandem_error_from_mdb(rv, ctx->store->errmsg, "counter put");
}

static size_t trace_idx_key(const char *kind, const char *id, uint64_t seq, bool with_seq,
                            uint8_t out[TRACE_IDX_KEY_MAX])
{
    size_t kind_len = strlen(kind), id_len = strlen(id);
    if (kind_len > KIND_LEN_MAX || id_len > TANDEM_DOMAIN_ID_LEN_MAX) {
        return 0;
    }
    memcpy(out, kind, kind_len);
    out[kind_len] = '\0';
    memcpy(out + kind_len + 1, id, id_len);
    out[kind_len + 1 + id_len] = '\0';
    size_t len = kind_len + id_len + 2;
    if (with_seq) {
        tandem_be64_put(out + len, seq);
        len += 8;
    }
    return len;
}

static int trace_idx_op(struct tandem_store *s, MDB_txn *txn, const char *kind, const char *id,
                        uint64_t seq, bool put)
{
    uint8_t key[TRACE_IDX_KEY_MAX];
    MDB_val k = {.mv_size = trace_idx_key(kind, id, seq, true, key), .mv_data = key};
    MDB_val v = {.mv_size = 0, .mv_data = key};
    if (k.mv_size == 0) {
        return tandem_error_set(s->errmsg, TANDEM_INVALID, "trace of %s %s: kind or id too long",
                                kind, id);
    }
    int rv = put ? mdb_put(txn, s->dbi[TANDEM_DB_TRACE_IDX], &k, &v, 0)
                 : mdb_del(txn, s->dbi[TANDEM_DB_TRACE_IDX], &k, NULL);
    if (rv == MDB_NOTFOUND && !put) {
        return 0;
    }
    return rv == 0 ? 0 : tandem_error_from_mdb(rv, s->errmsg, "trace index");
}

int tandem_trace_append(const struct tandem_apply_ctx *ctx, const Tandem__Actor *actor,
                        const char *kind, const char *id, const char *action, json_t *details)
{
    Tandem__TraceEvent event = TANDEM__TRACE_EVENT__INIT;
    uint8_t key[8];
    /* Sorted keys: the stored text must not depend on how the details were built. */
    char *text =
        json_dumps(details != NULL ? details : json_object(), JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(details);
    if (text == NULL) {
        return tandem_error_set(ctx->store->errmsg, TANDEM_NOMEM, "trace: out of memory");
    }
    int rv = tandem_domain_counter_next(ctx, COUNTER_TRACE, &event.seq);
    if (rv == 0) {
        event.kind = (char *)kind;
        event.entity = (char *)id;
        event.action = (char *)action;
        event.actor = actor->user;
        event.site = actor->site;
        event.time_ms = ctx->now_ms;
        event.details = text;
        event.index = ctx->index;
        tandem_be64_put(key, event.seq);
        rv = tandem_record_put(ctx->store, ctx->txn, TANDEM_DB_TRACE, key, sizeof key, &event.base);
    }
    if (rv == 0) {
        rv = trace_idx_op(ctx->store, ctx->txn, kind, id, event.seq, true);
    }
    free(text);
    return rv;
}

int tandem_disposal_append(const struct tandem_apply_ctx *ctx, Tandem__DisposalRecord *d)
{
    uint8_t key[8];
    int rv = tandem_domain_counter_next(ctx, COUNTER_DISPOSAL, &d->seq);
    if (rv != 0) {
        return rv;
    }
    tandem_be64_put(key, d->seq);
    return tandem_record_put(ctx->store, ctx->txn, TANDEM_DB_DISPOSALS, key, sizeof key, &d->base);
}

static json_t *time_json(int64_t ms)
{
    char text[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_rfc3339_format(ms, text);
    return json_string(text);
}

json_t *tandem_trace_event_json(const Tandem__TraceEvent *e)
{
    json_t *details = json_loads(e->details, 0, NULL);
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:o,s:I,s:o}", "seq", (json_int_t)e->seq, "kind",
                     e->kind, "id", e->entity, "action", e->action, "actor", e->actor, "site",
                     e->site, "time", time_json(e->time_ms), "index", (json_int_t)e->index,
                     "details", details != NULL ? details : json_object());
}

json_t *tandem_disposal_json(const Tandem__DisposalRecord *d)
{
    json_t *out = json_pack("{s:I,s:s,s:s,s:s,s:o,s:I}", "seq", (json_int_t)d->seq, "kind", d->kind,
                            "actor", d->actor, "site", d->site, "time", time_json(d->time_ms),
                            "index", (json_int_t)d->index);
    if (out == NULL) {
        return NULL;
    }
    if (strcmp(d->kind, "box") == 0) {
        json_t *volumes = json_array();
        for (size_t i = 0; i < d->n_volumes; i++) {
            json_array_append_new(volumes, json_string(d->volumes[i]));
        }
        json_object_set_new(out, "box", json_string(d->box));
        json_object_set_new(out, "ledger", json_string(d->ledger));
        json_object_set_new(out, "client", json_string(d->client));
        json_object_set_new(out, "volumes", volumes);
        json_object_set_new(out, "job", d->job[0] != '\0' ? json_string(d->job) : json_null());
        return out;
    }
    if (strcmp(d->kind, "personal_data_erase") == 0) { /* replication/identity/erase.h */
        json_t *fields = json_array();
        for (size_t i = 0; i < d->n_fields; i++) {
            json_array_append_new(fields, json_string(d->fields[i]));
        }
        json_object_set_new(out, "job", json_string(d->job));
        json_object_set_new(out, "fields", fields);
        json_object_set_new(out, "by", json_string(d->by_policy ? "policy" : "actor"));
        json_object_set_new(out, "retention_days", json_integer(d->retention_days));
        json_object_set_new(out, "cutoff", d->by_policy ? time_json(d->cutoff_ms) : json_null());
        return out;
    }
    json_object_set_new(out, "cutoff", time_json(d->cutoff_ms));
    json_object_set_new(out, "retention_days", json_integer(d->retention_days));
    json_object_set_new(out, "events_purged", json_integer((json_int_t)d->events_purged));
    json_object_set_new(out, "job_events", json_integer((json_int_t)d->job_events));
    json_object_set_new(out, "box_events", json_integer((json_int_t)d->box_events));
    json_object_set_new(out, "more", json_boolean(d->more));
    return out;
}

/* ---- listings ---- */

struct seq_walk {
    struct tandem_store *s;
    MDB_txn *txn;
    json_t *out;
    size_t limit, count;
    uint64_t last;
};

static int trace_visit(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                       bool *stop)
{
    struct seq_walk *w = arg;
    ProtobufCMessage *m;
    (void)value;
    if (rest_len != 8) {
        return tandem_error_set(w->s->errmsg, TANDEM_CORRUPT, "corrupt trace index key");
    }
    w->last = tandem_be64_get(rest);
    int rv = tandem_record_get(w->s, w->txn, TANDEM_DB_TRACE, rest, 8,
                               &tandem__trace_event__descriptor, &m);
    if (rv == 0 && m == NULL) {
        rv = tandem_error_set(w->s->errmsg, TANDEM_CORRUPT, "trace index names missing event %llu",
                              (unsigned long long)w->last);
    }
    if (rv != 0) {
        return rv;
    }
    json_array_append_new(w->out, tandem_trace_event_json((Tandem__TraceEvent *)m));
    protobuf_c_message_free_unpacked(m, NULL);
    *stop = ++w->count >= w->limit;
    return 0;
}

int tandem_trace_list(struct tandem_store *s, MDB_txn *txn, const char *kind, const char *id,
                      uint64_t after_seq, unsigned limit, json_t *out, uint64_t *next)
{
    uint8_t prefix[TRACE_IDX_KEY_MAX], after[8];
    struct seq_walk w = {.s = s, .txn = txn, .out = out, .limit = limit};
    bool exhausted;
    size_t prefix_len = trace_idx_key(kind, id, 0, false, prefix);
    *next = 0;
    if (prefix_len == 0 || limit == 0) {
        return 0;
    }
    tandem_be64_put(after, after_seq);
    int rv =
        tandem_index_scan(s, txn, TANDEM_DB_TRACE_IDX, prefix, prefix_len, after,
                          after_seq > 0 ? sizeof after : 0, limit, trace_visit, &w, &exhausted);
    *next = rv == 0 && !exhausted ? w.last : 0;
    return rv;
}

static int disposal_visit(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                          bool *stop)
{
    struct seq_walk *w = arg;
    ProtobufCMessage *m;
    if (rest_len != 8) {
        return tandem_error_set(w->s->errmsg, TANDEM_CORRUPT, "corrupt disposal key");
    }
    w->last = tandem_be64_get(rest);
    int rv = tandem_record_decode(w->s, value, &tandem__disposal_record__descriptor, &m);
    if (rv != 0) {
        return rv;
    }
    json_array_append_new(w->out, tandem_disposal_json((Tandem__DisposalRecord *)m));
    protobuf_c_message_free_unpacked(m, NULL);
    *stop = ++w->count >= w->limit;
    return 0;
}

int tandem_disposal_list(struct tandem_store *s, MDB_txn *txn, uint64_t after_seq, unsigned limit,
                         json_t *out, uint64_t *next)
{
    uint8_t after[8];
    struct seq_walk w = {.s = s, .txn = txn, .out = out, .limit = limit};
    bool exhausted;
    *next = 0;
    if (limit == 0) {
        return 0;
    }
    tandem_be64_put(after, after_seq);
    int rv =
        tandem_index_scan(s, txn, TANDEM_DB_DISPOSALS, after, 0, after,
                          after_seq > 0 ? sizeof after : 0, limit, disposal_visit, &w, &exhausted);
    *next = rv == 0 && !exhausted ? w.last : 0;
    return rv;
}

/* ---- retention purge ---- */

struct purge {
    const struct tandem_apply_ctx *ctx;
    int64_t cutoff_ms;
    uint32_t events_max;
    uint64_t purged, job_events, box_events;
    bool more;
};

/* Looks at the oldest event: *old when it is older than the cutoff, and then removed if
 * remove is set. */
static int purge_oldest(struct purge *p, bool remove, bool *old)
{
    struct tandem_store *s = p->ctx->store;
    MDB_cursor *cursor;
    MDB_val key, value;
    ProtobufCMessage *m;
    int rv = mdb_cursor_open(p->ctx->txn, s->dbi[TANDEM_DB_TRACE], &cursor);
    if (rv != 0) {
        return tandem_error_from_mdb(rv, s->errmsg, "purge cursor");
    }
    *old = false;
    rv = mdb_cursor_get(cursor, &key, &value, MDB_FIRST);
    if (rv == MDB_NOTFOUND) {
        mdb_cursor_close(cursor);
        return 0;
    }
    rv = rv != 0 ? tandem_error_from_mdb(rv, s->errmsg, "purge first")
                 : tandem_record_decode(s, &value, &tandem__trace_event__descriptor, &m);
    if (rv != 0) {
        mdb_cursor_close(cursor);
        return rv;
    }
    Tandem__TraceEvent *e = (Tandem__TraceEvent *)m;
    *old = e->time_ms < p->cutoff_ms;
    if (*old && remove) {
        rv = trace_idx_op(s, p->ctx->txn, e->kind, e->entity, e->seq, false);
        if (rv == 0 && (rv = mdb_cursor_del(cursor, 0)) != 0) {
            rv = tandem_error_from_mdb(rv, s->errmsg, "purge delete");
        }
        p->purged++;
        p->job_events += strcmp(e->kind, "job") == 0;
        p->box_events += strcmp(e->kind, "box") == 0;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    mdb_cursor_close(cursor);
    return rv;
}

static int purge_run(struct purge *p)
{
    bool old = true;
    int rv = 0;
    /* Events are in sequence order, which is time order under one leader's clock: the purge
     * stops at the first event inside the retention period. */
    while (rv == 0 && old && p->purged < p->events_max) {
        rv = purge_oldest(p, true, &old);
    }
    if (rv == 0 && old) {
        rv = purge_oldest(p, false, &p->more);
    }
    return rv;
}

static int purge_check(const struct tandem_apply_ctx *ctx, const Tandem__RetentionPurge *p,
                       char *errmsg)
{
    if (p == NULL || tandem_actor_check(p->actor, errmsg) != 0) {
        if (p == NULL) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "empty purge command");
        }
        return -1;
    }
    if (p->retention_days < TANDEM_RETENTION_DAYS_MIN ||
        p->retention_days > TANDEM_RETENTION_DAYS_MAX || p->events_max > TANDEM_PURGE_EVENTS_MAX) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE,
                 "retention_days must be %d..%d and events_max at most %d",
                 TANDEM_RETENTION_DAYS_MIN, TANDEM_RETENTION_DAYS_MAX, TANDEM_PURGE_EVENTS_MAX);
        return -1;
    }
    if (tandem_audit_retention_check(ctx, p, errmsg) != 0) {
        return -1;
    }
    /* Nothing inside the retention period may go, whatever the proposer computed. */
    if (p->cutoff_ms > ctx->now_ms - (int64_t)p->retention_days * TANDEM_MS_PER_DAY) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "cutoff is inside the retention period of %u days",
                 p->retention_days);
        return -1;
    }
    return 0;
}

int tandem_trace_apply_purge(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                             struct tandem_result *result)
{
    const Tandem__RetentionPurge *cmd = command->retention_purge;
    Tandem__DisposalRecord d = TANDEM__DISPOSAL_RECORD__INIT;
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (purge_check(ctx, cmd, errmsg) != 0) {
        tandem_result_error(result, 400, "%s", errmsg);
        return 0;
    }
    struct purge p = {.ctx = ctx,
                      .cutoff_ms = cmd->cutoff_ms,
                      .events_max =
                          cmd->events_max == 0 ? TANDEM_PURGE_EVENTS_MAX : cmd->events_max};
    int rv = purge_run(&p);
    if (rv != 0) {
        return rv;
    }
    d.kind = "trace_purge";
    d.actor = cmd->actor->user;
    d.site = cmd->actor->site;
    d.time_ms = ctx->now_ms;
    d.index = ctx->index;
    d.cutoff_ms = cmd->cutoff_ms;
    d.retention_days = cmd->retention_days;
    d.events_purged = p.purged;
    d.job_events = p.job_events;
    d.box_events = p.box_events;
    d.more = p.more;
    if ((rv = tandem_disposal_append(ctx, &d)) != 0) {
        return rv;
    }
    json_t *audit = NULL; /* the audit trail's own purge, with its deletion record */
    if ((rv = tandem_audit_apply_retention(ctx, cmd, &audit)) != 0) {
        return rv;
    }
    tandem_result_jansson(result, 200,
                          json_pack("{s:o,s:o}", "disposal", tandem_disposal_json(&d), "audit",
                                    audit != NULL ? audit : json_null()));
    return 0;
}

/* ---- invariant ---- */

int domain_index_count_check(struct tandem_store *s, MDB_txn *txn, int idx_db, size_t expected,
                             const char *what)
{
    MDB_stat stat;
    int rv = mdb_stat(txn, s->dbi[idx_db], &stat);
    if (rv != 0) {
        return tandem_error_from_mdb(rv, s->errmsg, what);
    }
    if (stat.ms_entries != expected) {
        return tandem_error_set(s->errmsg, TANDEM_CORRUPT, "%s holds %zu entries, %zu expected",
                                what, stat.ms_entries, expected);
    }
    return 0;
}

static int trace_check_visit(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                             bool *stop)
{
    struct seq_walk *w = arg;
    ProtobufCMessage *m;
    uint8_t key[TRACE_IDX_KEY_MAX];
    (void)rest;
    (void)rest_len;
    (void)stop;
    int rv = tandem_record_decode(w->s, value, &tandem__trace_event__descriptor, &m);
    if (rv != 0) {
        return rv;
    }
    const Tandem__TraceEvent *e = (Tandem__TraceEvent *)m;
    MDB_val k = {.mv_size = trace_idx_key(e->kind, e->entity, e->seq, true, key), .mv_data = key};
    MDB_val v;
    rv = k.mv_size == 0 ? MDB_NOTFOUND : mdb_get(w->txn, w->s->dbi[TANDEM_DB_TRACE_IDX], &k, &v);
    if (rv == MDB_NOTFOUND) {
        rv = tandem_error_set(w->s->errmsg, TANDEM_CORRUPT,
                              "trace event %llu (%s %s) has no index entry",
                              (unsigned long long)e->seq, e->kind, e->entity);
    } else if (rv != 0) {
        rv = tandem_error_from_mdb(rv, w->s->errmsg, "trace check");
    }
    w->count++;
    protobuf_c_message_free_unpacked(m, NULL);
    return rv;
}

int tandem_trace_index_check(struct tandem_store *s, MDB_txn *txn)
{
    struct seq_walk w = {.s = s, .txn = txn};
    bool exhausted;
    uint8_t none[1] = {0};
    int rv = tandem_index_scan(s, txn, TANDEM_DB_TRACE, none, 0, none, 0, SIZE_MAX,
                               trace_check_visit, &w, &exhausted);
    return rv != 0 ? rv
                   : domain_index_count_check(s, txn, TANDEM_DB_TRACE_IDX, w.count, "trace_idx");
}
