/* The replicated table of shipped backups: apply of BackupStore and BackupUpdate, reading,
 * listings and the per-site summary the status views show. */
#include "replication/bcp/backups.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/assert.h"
#include "storage/domain_codec.h"
#include "storage/error.h"

/* ---- reading ---- */

bool tandem_backup_holds(const Tandem__BackupRecord *r, const char *name)
{
    for (size_t i = 0; i < r->n_holders; i++) {
        if (strcmp(r->holders[i], name) == 0) {
            return true;
        }
    }
    return false;
}

bool tandem_backup_lost_at(const Tandem__BackupRecord *r, const char *name)
{
    for (size_t i = 0; i < r->n_lost; i++) {
        if (strcmp(r->lost[i], name) == 0) {
            return true;
        }
    }
    return false;
}

enum tandem_backup_state tandem_backup_state_of(const Tandem__BackupRecord *r)
{
    if (r->retired_ms != 0) {
        return TANDEM_BACKUP_RETIRED;
    }
    size_t lost = 0;
    for (size_t i = 0; i < r->n_holders; i++) {
        lost += tandem_backup_lost_at(r, r->holders[i]) ? 1 : 0;
    }
    return lost == 0             ? TANDEM_BACKUP_KEPT
           : lost < r->n_holders ? TANDEM_BACKUP_DEGRADED
                                 : TANDEM_BACKUP_LOST;
}

const char *tandem_backup_state_name(enum tandem_backup_state state)
{
    static const char *const names[] = {"kept", "degraded", "lost", "retired"};
    return state <= TANDEM_BACKUP_RETIRED ? names[state] : "unknown";
}

int tandem_backups_walk(struct tandem_store *store, MDB_txn *txn, tandem_backup_visit_fn visit,
                        void *arg)
{
    MDB_cursor *cursor;
    MDB_val k, v;
    int rv = mdb_cursor_open(txn, store->dbi[TANDEM_DB_BACKUPS], &cursor);
    if (rv != 0) {
        return tandem_error_from_mdb(rv, store->errmsg, "backups cursor");
    }
    /* Bounded: apply keeps at most TANDEM_BACKUP_RECORDS_MAX records. */
    unsigned seen = 0;
    for (rv = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
         rv == 0 && seen <= TANDEM_BACKUP_RECORDS_MAX;
         rv = mdb_cursor_get(cursor, &k, &v, MDB_NEXT), seen++) {
        Tandem__BackupRecord *r = tandem__backup_record__unpack(NULL, v.mv_size, v.mv_data);
        if (r == NULL) {
            mdb_cursor_close(cursor);
            return tandem_error_set(store->errmsg, TANDEM_CORRUPT, "corrupt backup record %.*s",
                                    (int)(k.mv_size > 64 ? 64 : k.mv_size), (char *)k.mv_data);
        }
        int stop = visit(arg, r);
        tandem__backup_record__free_unpacked(r, NULL);
        if (stop != 0) {
            mdb_cursor_close(cursor);
            return stop == 1 ? 0 : stop;
        }
    }
    mdb_cursor_close(cursor);
    if (rv != 0 && rv != MDB_NOTFOUND) {
        return tandem_error_from_mdb(rv, store->errmsg, "backups scan");
    }
    return 0;
}

int tandem_backups_get(struct tandem_store *store, MDB_txn *txn, const char *id,
                       Tandem__BackupRecord **out)
{
    MDB_val k = {.mv_size = strlen(id), .mv_data = (void *)id}, v;
    *out = NULL;
    int rv = mdb_get(txn, store->dbi[TANDEM_DB_BACKUPS], &k, &v);
    if (rv == MDB_NOTFOUND) {
        return 0;
    }
    if (rv != 0) {
        return tandem_error_from_mdb(rv, store->errmsg, "backup get");
    }
    *out = tandem__backup_record__unpack(NULL, v.mv_size, v.mv_data);
    if (*out == NULL) {
        return tandem_error_set(store->errmsg, TANDEM_CORRUPT, "corrupt backup record %s", id);
    }
    return 0;
}

/* ---- JSON ---- */

static json_t *strings_json(char **items, size_t n)
{
    json_t *out = json_array();
    for (size_t i = 0; out != NULL && i < n; i++) {
        json_array_append_new(out, json_string(items[i]));
    }
    return out;
}

static json_t *time_json(int64_t ms)
{
    char text[TANDEM_RFC3339_LEN_MAX + 1];
    if (ms <= 0) {
        return json_null();
    }
    tandem_rfc3339_format_ms(ms, text);
    return json_string(text);
}

static json_t *age_json(int64_t ms, int64_t now_ms)
{
    return ms <= 0 ? json_null() : json_integer(now_ms > ms ? (json_int_t)(now_ms - ms) : 0);
}

static json_t *verified_json(const Tandem__BackupRecord *r, int64_t now_ms)
{
    if (r->verified_ms <= 0) {
        return json_null();
    }
    return json_pack("{s:o,s:o,s:i,s:s}", "at", time_json(r->verified_ms), "age_ms",
                     age_json(r->verified_ms, now_ms), "level", (int)r->verified_level, "by",
                     r->verified_by);
}

json_t *tandem_backup_json(const Tandem__BackupRecord *r, int64_t now_ms)
{
    json_t *out = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s,s:o,s:o,s:o,s:o,s:s}", "id", r->id,
                            "site", r->site, "taken_by", r->taken_by, "index", (json_int_t)r->index,
                            "term", (json_int_t)r->term, "size", (json_int_t)r->size, "sha256",
                            r->sha256, "state_digest", r->state_digest, "created",
                            time_json(r->created_ms), "age_ms", age_json(r->created_ms, now_ms),
                            "holders", strings_json(r->holders, r->n_holders), "manifest_holders",
                            strings_json(r->manifest_holders, r->n_manifest_holders), "state",
                            tandem_backup_state_name(tandem_backup_state_of(r)));
    if (out == NULL) {
        return NULL;
    }
    json_object_set_new(out, "verified", verified_json(r, now_ms));
    json_object_set_new(out, "lost", strings_json(r->lost, r->n_lost));
    json_object_set_new(out, "lost_reason",
                        r->n_lost > 0 ? json_string(r->lost_reason) : json_null());
    json_object_set_new(out, "lost_at", time_json(r->lost_ms));
    json_object_set_new(out, "retired", time_json(r->retired_ms));
    json_object_set_new(out, "recorded", time_json(r->recorded_ms));
    json_t *manifest = json_loads(r->manifest_json, 0, NULL);
    json_object_set_new(out, "manifest", manifest != NULL ? manifest : json_null());
    return out;
}

struct list_walk {
    const char *site;
    bool retired;
    int64_t now_ms;
    json_t *list;
};

static int list_visit(void *arg, const Tandem__BackupRecord *r)
{
    struct list_walk *w = arg;
    if ((w->site[0] != '\0' && strcmp(w->site, r->site) != 0) ||
        (!w->retired && r->retired_ms != 0)) {
        return 0;
    }
    json_t *one = tandem_backup_json(r, w->now_ms);
    return one == NULL || json_array_append_new(w->list, one) != 0 ? TANDEM_NOMEM : 0;
}

json_t *tandem_backups_list_json(struct tandem_store *store, MDB_txn *txn, const char *site,
                                 bool retired, int64_t now_ms)
{
    struct list_walk w = {site, retired, now_ms, json_array()};
    int rv = w.list == NULL ? TANDEM_NOMEM : tandem_backups_walk(store, txn, list_visit, &w);
    if (rv != 0) {
        if (rv == TANDEM_NOMEM) {
            tandem_error_set(store->errmsg, TANDEM_NOMEM, "out of memory");
        }
        json_decref(w.list);
        return NULL;
    }
    return json_pack("{s:o}", "backups", w.list);
}

/* ---- the per-site summary ---- */

struct summary_walk {
    struct tandem_backup_site_summary *out;
    unsigned max, n;
};

static struct tandem_backup_site_summary *summary_site(struct summary_walk *w, const char *site)
{
    for (unsigned i = 0; i < w->n; i++) {
        if (strcmp(w->out[i].site, site) == 0) {
            return &w->out[i];
        }
    }
    if (w->n == w->max) {
        return NULL;
    }
    struct tandem_backup_site_summary *s = &w->out[w->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->site, sizeof s->site, "%s", site);
    return s;
}

static int summary_visit(void *arg, const Tandem__BackupRecord *r)
{
    enum tandem_backup_state state = tandem_backup_state_of(r);
    struct tandem_backup_site_summary *s = summary_site(arg, r->site);
    if (s == NULL || state == TANDEM_BACKUP_RETIRED) {
        return 0;
    }
    s->kept += state == TANDEM_BACKUP_KEPT ? 1 : 0;
    s->degraded += state == TANDEM_BACKUP_DEGRADED ? 1 : 0;
    s->lost += state == TANDEM_BACKUP_LOST ? 1 : 0;
    if (state == TANDEM_BACKUP_LOST) {
        return 0; /* nowhere to restore it from: neither the newest nor verified */
    }
    if (r->created_ms >= s->newest_created_ms) {
        s->newest_created_ms = r->created_ms;
        s->newest_index = r->index;
    }
    if (r->verified_ms > 0 && r->created_ms >= s->verified_created_ms) {
        s->verified_created_ms = r->created_ms;
        s->verified_ms = r->verified_ms;
        s->verified_level = r->verified_level;
    }
    return 0;
}

int tandem_backups_summary(struct tandem_store *store, MDB_txn *txn,
                           struct tandem_backup_site_summary *out, unsigned max, unsigned *n)
{
    struct summary_walk w = {out, max, 0};
    int rv = tandem_backups_walk(store, txn, summary_visit, &w);
    *n = w.n;
    return rv;
}

json_t *tandem_backups_summary_json(const struct tandem_backup_site_summary *s, unsigned n,
                                    int64_t now_ms)
{
    json_t *out = json_object();
    for (unsigned i = 0; out != NULL && i < n; i++) {
        json_t *one = json_pack(
            "{s:o,s:o,s:o,s:o,s:o,s:o,s:i,s:i,s:i}", "newest", time_json(s[i].newest_created_ms),
            "newest_age_ms", age_json(s[i].newest_created_ms, now_ms), "newest_index",
            s[i].newest_created_ms > 0 ? json_integer((json_int_t)s[i].newest_index) : json_null(),
            "newest_verified", time_json(s[i].verified_created_ms), "newest_verified_age_ms",
            age_json(s[i].verified_created_ms, now_ms), "last_verification",
            time_json(s[i].verified_ms), "kept", (int)s[i].kept, "degraded", (int)s[i].degraded,
            "lost", (int)s[i].lost);
        json_object_set_new(out, s[i].site, one);
    }
    return out;
}

/* ---- apply ---- */

static bool text_ok(const char *text, size_t len_max, bool empty_ok)
{
    return text != NULL && strlen(text) <= len_max && (empty_ok || text[0] != '\0');
}

static bool names_ok(char **names, size_t n, bool empty_ok)
{
    if (n > TANDEM_BACKUP_HOLDERS_MAX || (!empty_ok && n == 0)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!tandem_member_name_ok(names[i], TANDEM_NAME_LEN_MAX)) {
            return false;
        }
    }
    return true;
}

static bool record_ok(const Tandem__BackupRecord *r)
{
    return r != NULL && text_ok(r->id, TANDEM_BACKUP_ID_LEN_MAX, false) &&
           tandem_domain_id_ok(r->id) && tandem_member_name_ok(r->site, TANDEM_SITE_LEN_MAX) &&
           tandem_member_name_ok(r->taken_by, TANDEM_NAME_LEN_MAX) &&
           text_ok(r->sha256, TANDEM_BACKUP_HEX_LEN, false) &&
           text_ok(r->state_digest, TANDEM_BACKUP_HEX_LEN, true) &&
           names_ok(r->holders, r->n_holders, false) &&
           names_ok(r->manifest_holders, r->n_manifest_holders, true) && r->n_lost == 0 &&
           r->retired_ms == 0 && r->verified_level <= TANDEM_BACKUP_LEVEL_MAX &&
           text_ok(r->verified_by, TANDEM_NAME_LEN_MAX, true) &&
           text_ok(r->manifest_json, TANDEM_BACKUP_MANIFEST_BYTES_MAX, true) &&
           text_ok(r->lost_reason, TANDEM_BACKUP_REASON_LEN_MAX, true);
}

static int record_put(const struct tandem_apply_ctx *ctx, const Tandem__BackupRecord *r)
{
    return tandem_record_put(ctx->store, ctx->txn, TANDEM_DB_BACKUPS, r->id, strlen(r->id),
                             &r->base);
}

struct count_walk {
    unsigned records, retired;
    char oldest_retired[TANDEM_BACKUP_ID_LEN_MAX + 1];
    int64_t oldest_retired_ms;
};

static int count_visit(void *arg, const Tandem__BackupRecord *r)
{
    struct count_walk *w = arg;
    w->records++;
    if (r->retired_ms != 0) {
        w->retired++;
        if (w->oldest_retired[0] == '\0' || r->retired_ms < w->oldest_retired_ms) {
            w->oldest_retired_ms = r->retired_ms;
            snprintf(w->oldest_retired, sizeof w->oldest_retired, "%s", r->id);
        }
    }
    return 0;
}

/* Drops the oldest tombstone while more than keep are kept (or the table is full). */
static int tombstones_prune(const struct tandem_apply_ctx *ctx, unsigned keep, unsigned *records)
{
    for (unsigned round = 0; round < TANDEM_BACKUP_RECORDS_MAX; round++) {
        struct count_walk w = {0};
        int rv = tandem_backups_walk(ctx->store, ctx->txn, count_visit, &w);
        *records = w.records;
        if (rv != 0 || w.retired <= keep) {
            return rv;
        }
        MDB_val k = {.mv_size = strlen(w.oldest_retired), .mv_data = w.oldest_retired};
        rv = mdb_del(ctx->txn, ctx->store->dbi[TANDEM_DB_BACKUPS], &k, NULL);
        if (rv != 0) {
            return tandem_error_from_mdb(rv, ctx->store->errmsg, "backup tombstone delete");
        }
    }
    return 0;
}

int tandem_backups_apply_store(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                               struct tandem_result *result)
{
    const Tandem__BackupRecord *in = command->backup_store ? command->backup_store->record : NULL;
    Tandem__BackupRecord *old = NULL;
    unsigned records = 0;
    if (!record_ok(in)) {
        tandem_result_error(result, 400, "malformed backup record");
        return 0;
    }
    int rv = tandem_backups_get(ctx->store, ctx->txn, in->id, &old);
    if (rv != 0) {
        return rv;
    }
    if (old != NULL) {
        tandem__backup_record__free_unpacked(old, NULL);
        tandem_result_error(result, 409, "backup %s is recorded already", in->id);
        return 0;
    }
    rv = tombstones_prune(ctx, TANDEM_BACKUP_RETIRED_KEPT, &records);
    if (rv != 0) {
        return rv;
    }
    if (records >= TANDEM_BACKUP_RECORDS_MAX) {
        tandem_result_error(result, 409, "the backup table is full (%d records): lower backup_keep",
                            TANDEM_BACKUP_RECORDS_MAX);
        return 0;
    }
    Tandem__BackupRecord record = *in;
    record.recorded_ms = ctx->now_ms;
    if (record.verified_level > 0 && record.verified_ms == 0) {
        record.verified_ms = ctx->now_ms;
    }
    rv = record_put(ctx, &record);
    if (rv == 0) {
        tandem_result_jansson(result, 200, tandem_backup_json(&record, ctx->now_ms));
    }
    return rv;
}

/* The update's change to r (a copy whose lost list is lost[]). Returns 0, or an HTTP status
 * with why filled. */
static int update_change(const struct tandem_apply_ctx *ctx, const Tandem__BackupUpdate *u,
                         Tandem__BackupRecord *r, char **lost, char *why, size_t why_size)
{
    bool holder = tandem_backup_holds(r, u->node);
    size_t n = 0;
    switch (u->kind) {
        case TANDEM__BACKUP_UPDATE__KIND__VERIFIED:
            if (!holder || u->level == 0 || u->level > TANDEM_BACKUP_LEVEL_MAX) {
                snprintf(why, why_size, "%s holds no copy of %s to verify (or level %u)", u->node,
                         r->id, u->level);
                return 409;
            }
            r->verified_ms = ctx->now_ms;
            r->verified_level = u->level;
            r->verified_by = u->node;
            for (size_t i = 0; i < r->n_lost; i++) { /* a verified copy is there again */
                if (strcmp(r->lost[i], u->node) != 0) {
                    lost[n++] = r->lost[i];
                }
            }
            break;
        case TANDEM__BACKUP_UPDATE__KIND__LOST:
            if (!holder) {
                snprintf(why, why_size, "%s holds no copy of %s", u->node, r->id);
                return 409;
            }
            for (size_t i = 0; i < r->n_lost; i++) {
                lost[n++] = r->lost[i];
            }
            if (!tandem_backup_lost_at(r, u->node)) {
                lost[n++] = u->node;
            }
            r->lost_reason = u->reason;
            r->lost_ms = ctx->now_ms;
            break;
        default: /* RETIRED */
            for (size_t i = 0; i < r->n_lost; i++) {
                lost[n++] = r->lost[i];
            }
            r->retired_ms = r->retired_ms != 0 ? r->retired_ms : ctx->now_ms;
            break;
    }
    tandem_assert(n <= TANDEM_BACKUP_HOLDERS_MAX);
    r->lost = lost;
    r->n_lost = n;
    return 0;
}

int tandem_backups_apply_update(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                                struct tandem_result *result)
{
    const Tandem__BackupUpdate *u = command->backup_update;
    char why[TANDEM_ERRMSG_SIZE];
    char *lost[TANDEM_BACKUP_HOLDERS_MAX];
    Tandem__BackupRecord *r = NULL;
    unsigned records = 0;
    if (u == NULL || !text_ok(u->id, TANDEM_BACKUP_ID_LEN_MAX, false) ||
        !text_ok(u->reason, TANDEM_BACKUP_REASON_LEN_MAX, true) ||
        (u->kind != TANDEM__BACKUP_UPDATE__KIND__RETIRED &&
         !tandem_member_name_ok(u->node, TANDEM_NAME_LEN_MAX))) {
        tandem_result_error(result, 400, "malformed backup update");
        return 0;
    }
    int rv = tandem_backups_get(ctx->store, ctx->txn, u->id, &r);
    if (rv != 0 || r == NULL) {
        if (rv == 0) {
            tandem_result_error(result, 404, "no backup %s", u->id);
        }
        return rv;
    }
    char **lost_was = r->lost;
    size_t n_lost_was = r->n_lost;
    char *verified_by_was = r->verified_by, *reason_was = r->lost_reason;
    int status = update_change(ctx, u, r, lost, why, sizeof why);
    if (status == 0) {
        rv = record_put(ctx, r);
    }
    if (status == 0 && rv == 0 && u->kind == TANDEM__BACKUP_UPDATE__KIND__RETIRED) {
        rv = tombstones_prune(ctx, TANDEM_BACKUP_RETIRED_KEPT, &records);
    }
    if (status != 0) {
        tandem_result_error(result, status, "%s", why);
    } else if (rv == 0) {
        tandem_result_jansson(result, 200, tandem_backup_json(r, ctx->now_ms));
    }
    /* Give the unpacked message its own pointers back before freeing it. */
    r->lost = lost_was;
    r->n_lost = n_lost_was;
    r->verified_by = verified_by_was;
    r->lost_reason = reason_was;
    tandem__backup_record__free_unpacked(r, NULL);
    return rv;
}
