/* Moving a site's open work when BCP is invoked for it, and back on a revoke with failback. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "replication/bcp/moves.h"
#include "replication/domain/domain.h"
#include "storage/domain_codec.h"

struct id_list {
    char (*ids)[TANDEM_DOMAIN_ID_LEN_MAX + 1]; /* owned */
    size_t n, cap;
};

static int id_list_add(struct id_list *l, const uint8_t *id, size_t len)
{
    if (len > TANDEM_DOMAIN_ID_LEN_MAX) {
        return MDB_CORRUPTED; /* ids are checked on the way in */
    }
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 64 : 2 * l->cap;
        void *grown = realloc(l->ids, cap * sizeof *l->ids);
        if (grown == NULL) {
            return ENOMEM;
        }
        l->ids = grown;
        l->cap = cap;
    }
    memcpy(l->ids[l->n], id, len);
    l->ids[l->n][len] = '\0';
    l->n++;
    return 0;
}

struct site_walk {
    const struct tandem_apply_ctx *ctx;
    const char *site;
    struct id_list *out;
};

static int status_visit(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                        bool *stop)
{
    struct site_walk *w = arg;
    char id[TANDEM_DOMAIN_ID_LEN_MAX + 1];
    Tandem__JobRecord *job = NULL;
    (void)value;
    *stop = false;
    if (rest_len > TANDEM_DOMAIN_ID_LEN_MAX) {
        return MDB_CORRUPTED;
    }
    memcpy(id, rest, rest_len);
    id[rest_len] = '\0';
    int rv = tandem_job_get(w->ctx->store, w->ctx->txn, id, &job);
    if (rv == 0 && job != NULL && strcmp(job->site, w->site) == 0) {
        rv = id_list_add(w->out, rest, rest_len);
    }
    tandem__job_record__free_unpacked(job, NULL);
    return rv;
}

/* Ids of the open work at site: the queued and in-progress jobs, found through the status
 * index (so the site's finished history is never walked), collected before anything moves. */
static int jobs_at_site(const struct tandem_apply_ctx *ctx, const char *site, struct id_list *out)
{
    static const uint32_t statuses[] = {TANDEM_JOB_QUEUED, TANDEM_JOB_IN_PROGRESS};
    struct site_walk w = {.ctx = ctx, .site = site, .out = out};
    int rv = 0;
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0] && rv == 0; i++) {
        uint8_t prefix[TANDEM_INDEX_KEY_LEN_MAX];
        bool exhausted = false;
        size_t prefix_len =
            tandem_index_key(TANDEM_IDX_STATUS, tandem_job_status_name(statuses[i]), "", prefix);
        rv = tandem_index_scan(ctx->store, ctx->txn, TANDEM_DB_JOB_IDX, prefix, prefix_len, NULL, 0,
                               SIZE_MAX, status_visit, &w, &exhausted);
    }
    return rv;
}

/* Ids of every job that BCP moved away from site (a full scan: failbacks are rare). */
static int jobs_moved_from(const struct tandem_apply_ctx *ctx, const char *site,
                           struct id_list *out)
{
    MDB_cursor *cursor;
    MDB_val k, v;
    int rv = mdb_cursor_open(ctx->txn, ctx->store->dbi[TANDEM_DB_JOBS], &cursor);
    if (rv != 0) {
        return tandem_store_error(ctx->store, rv, "jobs cursor");
    }
    for (rv = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rv == 0;
         rv = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        Tandem__JobRecord *job = tandem__job_record__unpack(NULL, v.mv_size, v.mv_data);
        if (job == NULL) {
            rv = MDB_CORRUPTED;
            break;
        }
        bool ours = strcmp(job->bcp_from, site) == 0;
        tandem__job_record__free_unpacked(job, NULL);
        if (ours && (rv = id_list_add(out, k.mv_data, k.mv_size)) != 0) {
            break;
        }
    }
    mdb_cursor_close(cursor);
    return rv == MDB_NOTFOUND ? 0 : rv;
}

/* Moves one job; *moved counts it when it actually moved. */
static int job_move(const struct tandem_apply_ctx *ctx, const char *id, const char *from,
                    const char *to, bool failback, const Tandem__Actor *actor, unsigned *moved)
{
    Tandem__JobRecord *job = NULL;
    int rv = tandem_job_get(ctx->store, ctx->txn, id, &job);
    if (rv != 0 || job == NULL) {
        return rv;
    }
    bool queued = job->status == TANDEM_JOB_QUEUED;
    bool running = job->status == TANDEM_JOB_IN_PROGRESS;
    /* Invoke: the site's queued and in-progress work leaves. Failback: what BCP took away
     * comes back if nobody has started it elsewhere; the rest stays and forgets its origin. */
    bool move = failback ? queued && strcmp(job->site, from) != 0 : queued || running;
    Tandem__JobRecord next = *job;
    next.mod_index = ctx->index;
    next.updated_ms = ctx->now_ms;
    if (move) {
        next.site = (char *)(failback ? from : to);
        next.bcp_from = (char *)(failback ? "" : from);
        if (running) {
            next.operator_ = (char *)""; /* restarts at its stage, with the new site's people */
        }
    } else {
        next.bcp_from = (char *)"";
    }
    rv = tandem_job_write(ctx->store, ctx->txn, job, &next);
    if (rv == 0 && move) {
        json_t *details = json_pack("{s:s,s:s,s:s,s:b}", "from", job->site, "to", next.site,
                                    "stage", job->stages[job->stage], "restart", running);
        rv = tandem_trace_append(ctx, actor, "job", id, failback ? "bcp_failback" : "bcp_move",
                                 details);
        *moved += rv == 0 ? 1 : 0;
    }
    tandem__job_record__free_unpacked(job, NULL);
    return rv;
}

int tandem_bcp_jobs_move(const struct tandem_apply_ctx *ctx, const char *site, const char *to,
                         bool failback, const char *by, unsigned *moved)
{
    struct id_list ids = {0};
    Tandem__Actor actor = TANDEM__ACTOR__INIT;
    actor.user = (char *)(by != NULL && by[0] != '\0' ? by : "bcp");
    actor.site = (char *)site;
    *moved = 0;
    int rv = failback ? jobs_moved_from(ctx, site, &ids) : jobs_at_site(ctx, site, &ids);
    for (size_t i = 0; i < ids.n && rv == 0; i++) {
        rv = job_move(ctx, ids.ids[i], site, to, failback, &actor, moved);
    }
    free(ids.ids);
    return rv;
}

int tandem_bcp_jobs_list(struct tandem_store *store, MDB_txn *txn, const char *site, json_t *out)
{
    struct tandem_apply_ctx ctx = {.store = store, .txn = txn};
    struct id_list ids = {0};
    int rv = jobs_at_site(&ctx, site, &ids);
    for (size_t i = 0; i < ids.n && rv == 0 && i < TANDEM_BCP_JOBS_LISTED_MAX; i++) {
        json_array_append_new(out, json_string(ids.ids[i]));
    }
    free(ids.ids);
    return rv;
}
