/* Personal-data routes (issue 13 items 6-7): POST /v1/retention/erase, the erasure of
 * personal-data fields past personal_data_retention_days (or of named jobs, on demand), each
 * with a deletion record in /v1/disposals. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/api/api.h"
#include "node/api/perms.h"
#include "node/node.h"
#include "replication/domain/domain.h"
#include "replication/identity/erase.h"
#include "storage/error.h"

/* X(id, method, pattern, flags, perm, handler) */
#define PDATA_ROUTES(X)                                                                            \
    X(retention_erase, HTTP_POST, "/v1/retention/erase", TANDEM_ROUTE_WRITE,                       \
      TANDEM_PERM_RETENTION, route_retention_erase)

TANDEM_ROUTE_TABLE(tandem_pdata_route_table, PDATA_ROUTES);

struct erase_write {
    struct tandem_route_write base; /* first: command, actor, body */
    Tandem__PersonalDataErase erase;
    char ids[TANDEM_PDATA_ERASE_BATCH][TANDEM_DOMAIN_ID_LEN_MAX + 1];
    char *id_ptrs[TANDEM_PDATA_ERASE_BATCH];
};

static void erase_write_free(void *arg)
{
    struct erase_write *w = arg;
    tandem_route_write_release(&w->base);
    free(w);
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

/* {}: the jobs past retention, chosen from this node's applied state (apply checks again). */
static int erase_by_policy(struct tandem_node *node, struct tandem_http_request *r,
                           struct erase_write *w, bool *more, char *why)
{
    MDB_txn *txn;
    size_t n = 0;
    unsigned days = node->config->personal_data_retention_days;
    w->erase.by_policy = true;
    w->erase.retention_days = days;
    /* The leader's clock and config decide the cutoff; apply only checks it. */
    w->erase.cutoff_ms = node->proposer.now_ms() - (int64_t)days * TANDEM_MS_PER_DAY;
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return -1; /* answered */
    }
    int rv = tandem_pdata_erase_choose(&node->store, txn, w->erase.cutoff_ms, w->ids, &n, more);
    mdb_txn_abort(txn);
    if (rv != 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "%s", node->store.errmsg);
        return 500;
    }
    w->erase.n_jobs = n;
    return 0;
}

static void route_retention_erase(struct tandem_node *node, struct tandem_http_request *r,
                                  const char *param)
{
    static const char *const known[] = {"jobs", NULL};
    char why[TANDEM_ERRMSG_SIZE];
    bool more = false;
    (void)param;
    struct erase_write *w = tandem_route_write_new(node, r, sizeof *w, 500);
    if (w == NULL) {
        return;
    }
    tandem__personal_data_erase__init(&w->erase);
    w->erase.actor = &w->base.actor;
    for (size_t i = 0; i < TANDEM_PDATA_ERASE_BATCH; i++) {
        w->id_ptrs[i] = w->ids[i];
    }
    w->erase.jobs = w->id_ptrs;
    json_t *jobs = json_object_get(w->base.json, "jobs");
    int status = tandem_route_fields_only(w->base.json, known, why) != 0 ? 400
                 : jobs != NULL                                          ? erase_named(w, jobs, why)
                                : erase_by_policy(node, r, w, &more, why);
    if (status == 0 && w->erase.n_jobs == 0) {
        tandem_route_jansson(node, r, 200,
                             json_pack("{s:i,s:[],s:b}", "erased", 0, "disposals", "more", 0));
        status = -1;
    }
    if (status == 0) {
        w->base.command.body_case = TANDEM__COMMAND__BODY_PERSONAL_DATA_ERASE;
        w->base.command.personal_data_erase = &w->erase;
        tandem_route_submit(node, r, &w->base.command, erase_write_free, w);
        return;
    }
    if (status > 0) {
        tandem_route_error(node, r, status, "%s", why);
    }
    erase_write_free(w);
}
