/* Moving a site's open work when BCP is invoked for it, and back on a revoke with failback. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "replication/bcp/moves.h"
#include "replication/domain/domain.h"
#include "storage/assert.h"
#include "storage/domain_codec.h"
#include "storage/error.h"

struct id_list {
    char (*ids)[TANDEM_DOMAIN_ID_LEN_MAX + 1]; /* owned */
    size_t n, cap;
};

/* Appends id; errmsg (TANDEM_ERRMSG_SIZE) says why when it fails. */
static int id_list_add(struct id_list *l, const uint8_t *id, size_t len, char *errmsg)
{
    if (len == 0 || len > TANDEM_DOMAIN_ID_LEN_MAX) {
        /* ids are checked on the way in: a key that is no id is damage */
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "job key of %zu bytes", len);
    }
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 64 : 2 * l->cap;
        void *grown = realloc(l->ids, cap * sizeof *l->ids);
        if (grown == NULL) {
            return tandem_error_set(errmsg, TANDEM_NOMEM, "bcp moves: out of memory");
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

static int runnable_visit(void *arg, const char *id, const Tandem__JobRecord *job)
{
    struct site_walk *w = arg;
    return strcmp(job->site, w->site) == 0
               ? id_list_add(w->out, (const uint8_t *)id, strlen(id), w->ctx->store->errmsg)
               : 0;
}

static int moved_visit(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                       bool *stop)
{
    struct site_walk *w = arg;
    ProtobufCMessage *m = NULL;
    *stop = false;
    int rv = tandem_record_decode(w->ctx->store, value, &tandem__job_record__descriptor, &m);
    if (rv == 0 && strcmp(((const Tandem__JobRecord *)m)->bcp_from, w->site) == 0) {
        rv = id_list_add(w->out, rest, rest_len, w->ctx->store->errmsg);
    }
    if (m != NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rv;
}

/* Ids of the open work at site: the queued and in-progress jobs, found through the status
 * index (so the site's finished history is never walked), collected before anything moves. */
static int jobs_at_site(const struct tandem_apply_ctx *ctx, const char *site, struct id_list *out)
{
    struct site_walk w = {.ctx = ctx, .site = site, .out = out};
    bool exhausted = false;
    int rv =
        tandem_jobs_runnable_walk(ctx->store, ctx->txn, SIZE_MAX, runnable_visit, &w, &exhausted);
    tandem_assert(rv != 0 || exhausted);
    return rv;
}

/* Ids of every job that BCP moved away from site (a full scan: failbacks are rare). */
static int jobs_moved_from(const struct tandem_apply_ctx *ctx, const char *site,
                           struct id_list *out)
{
    struct site_walk w = {.ctx = ctx, .site = site, .out = out};
    uint8_t none[1] = {0};
    bool exhausted = false;
    return tandem_index_scan(ctx->store, ctx->txn, TANDEM_DB_JOBS, none, 0, none, 0, SIZE_MAX,
                             moved_visit, &w, &exhausted);
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
    /* The walks hand over only what they promise: on invoke, open work at the site. */
    tandem_assert(failback || ((queued || running) && strcmp(job->site, from) == 0));
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
    /* Work moves to another site, never back onto the one that is out of service. */
    tandem_assert(failback || (to != NULL && to[0] != '\0' && strcmp(to, site) != 0));
    *moved = 0;
    int rv = failback ? jobs_moved_from(ctx, site, &ids) : jobs_at_site(ctx, site, &ids);
    for (size_t i = 0; i < ids.n && rv == 0; i++) {
        rv = job_move(ctx, ids.ids[i], site, to, failback, &actor, moved);
    }
    tandem_assert(rv != 0 || *moved <= ids.n);
    free(ids.ids);
    return rv;
}

/* Whether a failback would bring job id back to site (job_move's rule, read-only). */
static int job_returns(const struct tandem_apply_ctx *ctx, const char *id, const char *site,
                       bool *returns)
{
    Tandem__JobRecord *job = NULL;
    int rv = tandem_job_get(ctx->store, ctx->txn, id, &job);
    *returns =
        rv == 0 && job != NULL && job->status == TANDEM_JOB_QUEUED && strcmp(job->site, site) != 0;
    if (job != NULL) {
        tandem__job_record__free_unpacked(job, NULL);
    }
    return rv;
}

int tandem_bcp_jobs_list(struct tandem_store *store, MDB_txn *txn, const char *site, bool failback,
                         json_t *out)
{
    struct tandem_apply_ctx ctx = {.store = store, .txn = txn};
    struct id_list ids = {0};
    int rv = failback ? jobs_moved_from(&ctx, site, &ids) : jobs_at_site(&ctx, site, &ids);
    size_t listed = 0;
    for (size_t i = 0; i < ids.n && rv == 0 && listed < TANDEM_BCP_JOBS_LISTED_MAX; i++) {
        bool returns = true;
        if (failback && (rv = job_returns(&ctx, ids.ids[i], site, &returns)) != 0) {
            break;
        }
        if (returns) {
            json_array_append_new(out, json_string(ids.ids[i]));
            listed++;
        }
    }
    free(ids.ids);
    return rv;
}
