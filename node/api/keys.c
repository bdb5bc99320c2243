/* Personal-data routes (issue 13 items 6-7): POST /v1/retention/erase, the erasure of
 * personal-data fields past personal_data_retention_days (or of named jobs, on demand), each
 * with a deletion record in /v1/disposals; POST /v1/keys/rotate and GET /v1/keys/status, the
 * re-sealing of every value under the current key of key_file in bounded batches. */
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/api/api.h"
#include "node/api/perms.h"
#include "node/log.h"
#include "node/node.h"
#include "replication/domain/domain.h"
#include "replication/identity/erase.h"
#include "replication/identity/pdata.h"
#include "storage/error.h"

/* X(id, method, pattern, flags, perm, handler) */
#define PDATA_ROUTES(X)                                                                            \
    X(retention_erase, HTTP_POST, "/v1/retention/erase", TANDEM_ROUTE_WRITE,                       \
      TANDEM_PERM_RETENTION, route_retention_erase)                                                \
    X(keys_rotate, HTTP_POST, "/v1/keys/rotate", TANDEM_ROUTE_WRITE, TANDEM_PERM_KEYS,             \
      route_keys_rotate)                                                                           \
    X(keys_status, HTTP_GET, "/v1/keys/status", TANDEM_ROUTE_READ, TANDEM_PERM_KEYS,               \
      route_keys_status)

TANDEM_ROUTE_TABLE(tandem_pdata_route_table, PDATA_ROUTES);

struct erase_write {
    struct tandem_route_write base; /* first: command, actor, body */
    Tandem__PersonalDataErase erase;
    char ids[TANDEM_PDATA_ERASE_BATCH][TANDEM_DOMAIN_ID_LEN_MAX + 1];
    char *id_ptrs[TANDEM_PDATA_ERASE_BATCH];
    bool more;      /* by policy: the batch was full, more jobs are past retention */
    bool submitted; /* the route's write owns it now (its done frees it) */
};

static void erase_write_free(void *arg)
{
    struct erase_write *w = arg;
    tandem_route_write_release(&w->base);
    free(w);
}

/* The command of w, its job list pointing at w->ids (n_jobs 0). */
static void erase_write_init(struct erase_write *w)
{
    tandem__personal_data_erase__init(&w->erase);
    w->erase.actor = &w->base.actor;
    for (size_t i = 0; i < TANDEM_PDATA_ERASE_BATCH; i++) {
        w->id_ptrs[i] = w->ids[i];
    }
    w->erase.jobs = w->id_ptrs;
    w->base.command.body_case = TANDEM__COMMAND__BODY_PERSONAL_DATA_ERASE;
    w->base.command.personal_data_erase = &w->erase;
}

/* {"jobs":["ID",...]}: the named jobs, erased now on the actor's word. Returns 0 or 400. */
static int erase_named(struct erase_write *w, json_t *jobs, char *why)
{
    if (!json_is_array(jobs) || json_array_size(jobs) == 0 ||
        json_array_size(jobs) > TANDEM_PDATA_ERASE_BATCH) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "\"jobs\" must be a list of 1 to %d job ids",
                 TANDEM_PDATA_ERASE_BATCH);
        return 400;
    }
    for (size_t i = 0; i < json_array_size(jobs); i++) {
        const char *id = json_string_value(json_array_get(jobs, i));
        if (id == NULL || !tandem_domain_id_ok(id)) {
            snprintf(why, TANDEM_ERRMSG_SIZE,
                     "\"jobs\" must hold job ids (1 to %d of "
                     "[A-Za-z0-9._:-])",
                     TANDEM_DOMAIN_ID_LEN_MAX);
            return 400;
        }
        snprintf(w->ids[i], sizeof w->ids[i], "%s", id);
    }
    w->erase.n_jobs = json_array_size(jobs);
    return 0;
}

/* By policy: the leader's clock and config decide the cutoff; apply only checks it. */
static void erase_policy_set(struct tandem_node *node, struct erase_write *w)
{
    unsigned days = node->config->personal_data_retention_days;
    w->erase.by_policy = true;
    w->erase.retention_days = days;
    w->erase.cutoff_ms = node->proposer.now_ms() - (int64_t)days * TANDEM_MS_PER_DAY;
}

/* On the pool: w's batch of the jobs past its cutoff (up to 2 x TANDEM_PDATA_ERASE_SCAN_MAX
 * index entries), from this node's applied state; apply checks each again. */
static int erase_choose_work(struct tandem_store *store, MDB_txn *txn, void *arg)
{
    struct erase_write *w = arg;
    size_t n = 0;
    int rv = tandem_pdata_erase_choose(store, txn, w->erase.cutoff_ms, w->ids, &n, &w->more);
    w->erase.n_jobs = n;
    return rv;
}

/* {} back on the loop: the batch proposed, or the answer that no job is past retention. */
static void erase_policy_answer(struct tandem_node *node, struct tandem_http_request *r, void *arg,
                                int rv, const char *errmsg)
{
    struct erase_write *w = arg;
    if (rv != 0) {
        tandem_route_error(node, r, 500, "%s", errmsg);
    } else if (w->erase.n_jobs == 0) {
        tandem_route_jansson(node, r, 200,
                             json_pack("{s:i,s:[],s:b}", "erased", 0, "disposals", "more", 0));
    } else {
        w->submitted = true;
        tandem_route_submit(node, r, &w->base.command, erase_write_free, w);
    }
}

static void erase_policy_done(void *arg)
{
    struct erase_write *w = arg;
    if (!w->submitted) {
        erase_write_free(w);
    }
}

static void route_retention_erase(struct tandem_node *node, struct tandem_http_request *r,
                                  const char *param)
{
    static const char *const known[] = {"jobs", NULL};
    char why[TANDEM_ERRMSG_SIZE];
    (void)param;
    struct erase_write *w = tandem_route_write_new(node, r, sizeof *w, 500);
    if (w == NULL) {
        return;
    }
    erase_write_init(w);
    json_t *jobs = json_object_get(w->base.json, "jobs");
    if (tandem_route_fields_only(w->base.json, known, why) != 0 ||
        (jobs != NULL && erase_named(w, jobs, why) != 0)) {
        tandem_route_error(node, r, 400, "%s", why);
        erase_write_free(w);
    } else if (jobs != NULL) {
        tandem_route_submit(node, r, &w->base.command, erase_write_free, w);
    } else {
        /* {}: the jobs past retention, chosen on the pool from the leader's own state. */
        erase_policy_set(node, w);
        tandem_route_local_pooled(node, r, erase_choose_work, erase_policy_answer, w,
                                  erase_policy_done);
    }
}

/* ---- the automatic erasure after retention (issue 13 item 7) ---- */

struct erase_pass {
    struct erase_write w; /* first: the command, its actor (this node) and the batch */
    struct tandem_pool_read read;
    struct tandem_write write;
    struct tandem_node *node;
};

static void erase_pass_cb(struct tandem_write *write, int status, struct tandem_result *result)
{
    struct erase_pass *p = write->data;
    struct tandem_node *node = p->node;
    node->erase_inflight = false;
    if (status != 0 || result == NULL || result->status != 200) {
        tandem_log(TANDEM_LOG_WARN, "automatic personal-data erasure of %zu jobs failed: %s",
                   p->w.erase.n_jobs,
                   status != 0      ? "not committed"
                   : result != NULL ? result->body
                                    : "no result");
    } else {
        tandem_log(TANDEM_LOG_INFO, "personal data of %zu jobs erased by policy (%u days)",
                   p->w.erase.n_jobs, p->w.erase.retention_days);
        node->erase_again = p->w.more; /* the next batch without waiting an interval */
    }
    free(p);
}

/* On the loop: proposes the batch chosen, if any (still leading). */
static void erase_pass_chosen(void *data, int rv, const char *errmsg)
{
    struct erase_pass *p = data;
    struct tandem_node *node = p->node;
    if (rv != 0 || p->w.erase.n_jobs == 0 || node->stopping) {
        if (rv != 0) {
            tandem_log(TANDEM_LOG_WARN, "automatic personal-data erasure: %s", errmsg);
        }
        node->erase_inflight = false;
        free(p);
        return;
    }
    p->write = (struct tandem_write){.command = &p->w.base.command, .data = p, .cb = erase_pass_cb};
    if (tandem_proposer_write(&node->proposer, &p->write) != 0) {
        node->erase_inflight = false;
        free(p); /* not leading after all: the next leader's pass takes it */
    }
}

/* One pass: a batch of the jobs past retention, chosen on the thread pool, proposed by policy. */
static void erase_pass_start(struct tandem_node *node)
{
    struct erase_pass *p = calloc(1, sizeof *p);
    if (p == NULL) {
        tandem_log(TANDEM_LOG_WARN, "automatic personal-data erasure: out of memory");
        return;
    }
    p->node = node;
    tandem__command__init(&p->w.base.command);
    tandem__actor__init(&p->w.base.actor);
    erase_write_init(&p->w);
    snprintf(p->w.base.user, sizeof p->w.base.user, "%s", node->self.name);
    snprintf(p->w.base.site, sizeof p->w.base.site, "%s", node->self.site);
    p->w.base.actor.user = p->w.base.user;
    p->w.base.actor.site = p->w.base.site;
    erase_policy_set(node, &p->w);
    int rv = tandem_pool_read_submit(&node->pool_reads, &p->read, erase_choose_work,
                                     erase_pass_chosen, p);
    if (rv != 0) { /* busy: the next tick tries again */
        tandem_log(TANDEM_LOG_WARN, "automatic personal-data erasure: %s", p->read.store.errmsg);
        free(p);
        return;
    }
    node->erase_inflight = true;
}

void tandem_pdata_erase_tick(struct tandem_node *node)
{
    uint64_t now = uv_now(node->loop);
    uint64_t interval_ms = (uint64_t)node->config->erase_interval_s * 1000u;
    if (node->erase_inflight || raft_state(&node->raft.raft) != RAFT_LEADER ||
        (!node->erase_again && now - node->erase_last_ms < interval_ms)) {
        return;
    }
    node->erase_last_ms = now;
    node->erase_again = false;
    erase_pass_start(node);
}

/* ---- keys: status and rotation ---- */

struct key_count {
    uint32_t current;
    uint64_t pending, done;
};

static int key_count_visit(void *arg, const char *id, const Tandem__JobRecord *job)
{
    struct key_count *k = arg;
    uint32_t key_id = 0;
    (void)id;
    bool sealed =
        tandem_pdata_is_sealed(job->individual_number.data, job->individual_number.len, &key_id);
    if (sealed && key_id == k->current) {
        k->done++;
    } else {
        k->pending++; /* another key, or clear from an insecure node */
    }
    return 0;
}

/* On the pool: every job holding personal data is examined. */
static int keys_status_work(struct tandem_store *store, MDB_txn *txn, void *arg)
{
    return tandem_pdata_jobs_walk(store, txn, key_count_visit, arg);
}

static void keys_status_answer(struct tandem_node *node, struct tandem_http_request *r, void *arg,
                               int rv, const char *errmsg)
{
    struct key_count *k = arg;
    if (rv != 0) {
        tandem_route_error(node, r, 500, "%s", errmsg);
        return;
    }
    tandem_route_jansson(node, r, 200,
                         json_pack("{s:I,s:I,s:I,s:I}", "current", (json_int_t)k->current, "keys",
                                   (json_int_t)node->keyring.n_keys, "pending",
                                   (json_int_t)k->pending, "done", (json_int_t)k->done));
}

static void route_keys_status(struct tandem_node *node, struct tandem_http_request *r,
                              const char *param)
{
    (void)param;
    struct key_count *k = calloc(1, sizeof *k);
    if (k == NULL) {
        tandem_route_error(node, r, 503, "out of memory");
        return;
    }
    k->current = tandem_keyring_current(&node->keyring);
    tandem_route_read_pooled(node, r, keys_status_work, keys_status_answer, k, free);
}

struct reseal_write {
    struct tandem_route_write base; /* first: command, actor, body */
    /* The pool's copy: a SIGHUP reloads node->keyring on the loop while the walk runs. */
    struct tandem_keyring ring;
    bool submitted; /* the write owns it now: its done frees it, not the read's */
    Tandem__PersonalDataReseal reseal;
    Tandem__PersonalDataResealed values[TANDEM_PDATA_ERASE_BATCH];
    Tandem__PersonalDataResealed *value_ptrs[TANDEM_PDATA_ERASE_BATCH];
    char ids[TANDEM_PDATA_ERASE_BATCH][TANDEM_DOMAIN_ID_LEN_MAX + 1];
    uint8_t sealed[TANDEM_PDATA_ERASE_BATCH][TANDEM_INDIVIDUAL_STORED_LEN_MAX];
    uint32_t current;
    size_t unreadable; /* values under a key key_file does not hold */
};

/* Re-seals one job's value under the current key when it is under another one. */
static int reseal_visit(void *arg, const char *id, const Tandem__JobRecord *job)
{
    struct reseal_write *w = arg;
    char errmsg[TANDEM_ERRMSG_SIZE];
    uint8_t clear[TANDEM_PDATA_CLEAR_MAX];
    size_t clear_len = 0, n = w->reseal.n_values, len = 0;
    uint32_t key_id = 0;
    if (!tandem_pdata_is_sealed(job->individual_number.data, job->individual_number.len, &key_id) ||
        key_id == w->current) {
        return 0;
    }
    if (n == TANDEM_PDATA_ERASE_BATCH) {
        return 1; /* a full batch: the next call takes the rest */
    }
    if (tandem_pdata_open(&w->ring, id, "individual_number", job->individual_number.data,
                          job->individual_number.len, clear, &clear_len, errmsg) != TANDEM_OK ||
        tandem_pdata_seal(&w->ring, id, "individual_number", clear, clear_len, w->sealed[n], &len,
                          errmsg) != TANDEM_OK) {
        OPENSSL_cleanse(clear, sizeof clear);
        w->unreadable++;
        return 0;
    }
    OPENSSL_cleanse(clear, sizeof clear);
    snprintf(w->ids[n], sizeof w->ids[n], "%s", id);
    tandem__personal_data_resealed__init(&w->values[n]);
    w->values[n].job = w->ids[n];
    w->values[n].expected_mod_index = job->mod_index;
    w->values[n].sealed.data = w->sealed[n];
    w->values[n].sealed.len = len;
    w->value_ptrs[n] = &w->values[n];
    w->reseal.n_values = n + 1;
    return 0;
}

static void reseal_write_free(void *arg)
{
    struct reseal_write *w = arg;
    OPENSSL_cleanse(w->sealed, sizeof w->sealed);
    tandem_keyring_clear(&w->ring);
    tandem_route_write_release(&w->base);
    free(w);
}

/* The pooled walk's done: frees w unless its batch went on as a write. */
static void reseal_walk_done(void *arg)
{
    struct reseal_write *w = arg;
    if (!w->submitted) {
        reseal_write_free(w);
    }
}

/* On the pool: the next batch of values under an older key (the walk grows with the jobs). */
static int reseal_work(struct tandem_store *store, MDB_txn *txn, void *arg)
{
    int rv = tandem_pdata_jobs_walk(store, txn, reseal_visit, arg);
    return rv == 1 ? 0 : rv; /* 1: the batch is full */
}

/* Back on the loop: the batch proposed, or the answer that nothing is left to re-seal. */
static void reseal_answer(struct tandem_node *node, struct tandem_http_request *r, void *arg,
                          int rv, const char *errmsg)
{
    struct reseal_write *w = arg;
    if (rv != 0) {
        tandem_route_error(node, r, 500, "%s", errmsg);
        return;
    }
    if (w->reseal.n_values == 0) {
        tandem_route_jansson(node, r, 200,
                             json_pack("{s:i,s:b,s:I,s:I}", "resealed", 0, "more", 0, "current",
                                       (json_int_t)w->current, "unreadable",
                                       (json_int_t)w->unreadable));
        return;
    }
    w->base.command.body_case = TANDEM__COMMAND__BODY_PERSONAL_DATA_RESEAL;
    w->base.command.personal_data_reseal = &w->reseal;
    w->submitted = true;
    tandem_route_submit(node, r, &w->base.command, reseal_write_free, w);
}

/* POST /v1/keys/rotate: one batch of values re-sealed under the current key. The answer says
 * whether more remain; tandemctl key rotate calls it until none do. */
static void route_keys_rotate(struct tandem_node *node, struct tandem_http_request *r,
                              const char *param)
{
    static const char *const none[] = {NULL};
    char why[TANDEM_ERRMSG_SIZE];
    (void)param;
    struct reseal_write *w = tandem_route_write_new(node, r, sizeof *w, 500);
    if (w == NULL) {
        return;
    }
    w->ring = node->keyring;
    w->current = tandem_keyring_current(&w->ring);
    tandem__personal_data_reseal__init(&w->reseal);
    w->reseal.actor = &w->base.actor;
    w->reseal.values = w->value_ptrs;
    if (tandem_route_fields_only(w->base.json, none, why) != 0 || w->current == 0) {
        tandem_route_error(node, r, 400, "%s",
                           w->current == 0 ? "no key_file: nothing to rotate to" : why);
        reseal_write_free(w);
        return;
    }
    /* The leader's own state (this runs on the leader), walked on the pool: the write carries
     * each value's mod_index, so one changed meanwhile is left for the next batch. */
    tandem_route_local_pooled(node, r, reseal_work, reseal_answer, w, reseal_walk_done);
}
