/* A restore's check of the personal data in the restored state against the key file the new
 * cluster will run with (node/ctl/backup_local.h, tandem_ctl_restore_pdata_check). */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "node/ctl/backup_local.h"
#include "replication/domain/domain.h"
#include "replication/identity/pdata.h"
#include "storage/error.h"
#include "storage/store.h"

#define PDATA_FIELD "individual_number" /* the one personal-data field (node/api/pdata.h) */

struct pdata_scan {
    const struct tandem_keyring *ring; /* borrowed; NULL: count only */
    struct tandem_ctl_restore_pdata *out;
};

static void key_id_note(struct tandem_ctl_restore_pdata *out, uint32_t key_id)
{
    for (unsigned i = 0; i < out->n_key_ids; i++) {
        if (out->key_ids[i] == key_id) {
            return;
        }
    }
    if (out->n_key_ids < TANDEM_CTL_RESTORE_KEY_IDS_MAX) {
        out->key_ids[out->n_key_ids++] = key_id;
    }
}

static int pdata_scan_visit(void *arg, const char *id, const Tandem__JobRecord *job)
{
    struct pdata_scan *scan = arg;
    uint8_t clear[TANDEM_PDATA_CLEAR_MAX + TANDEM_PDATA_OVERHEAD];
    char errmsg[TANDEM_ERRMSG_SIZE];
    size_t clear_len = 0;
    uint32_t key_id = 0;
    const ProtobufCBinaryData *v = &job->individual_number;
    if (!tandem_pdata_is_sealed(v->data, v->len, &key_id)) {
        return 0; /* an insecure node's clear value, or none */
    }
    scan->out->sealed++;
    key_id_note(scan->out, key_id);
    if (scan->ring == NULL || v->len - TANDEM_PDATA_OVERHEAD > TANDEM_PDATA_CLEAR_MAX) {
        return 0;
    }
    if (tandem_pdata_open(scan->ring, id, PDATA_FIELD, v->data, v->len, clear, &clear_len,
                          errmsg) == 0) {
        scan->out->opened++;
    } else if (scan->out->first_unopened[0] == '\0') {
        snprintf(scan->out->first_unopened, sizeof scan->out->first_unopened, "%s", id);
        scan->out->first_key_id = key_id;
    }
    OPENSSL_cleanse(clear, sizeof clear);
    return 0;
}

int tandem_ctl_restore_pdata_check(struct tandem_ctl_context *ctx, const char *state_file,
                                   const struct tandem_keyring *ring,
                                   struct tandem_ctl_restore_pdata *out)
{
    struct tandem_store store;
    struct pdata_scan scan = {ring, out};
    MDB_txn *txn = NULL;
    memset(out, 0, sizeof *out);
    out->checked = ring != NULL;
    int rv = tandem_store_open_readonly(&store, state_file);
    rv = rv != 0 ? rv : tandem_store_read_txn(&store, &txn);
    bool exhausted = true;
    for (uint32_t status = 0; status < TANDEM_JOB_STATUS_COUNT && rv == 0 && exhausted; status++) {
        rv = tandem_jobs_status_walk(&store, txn, status, "", TANDEM_CTL_RESTORE_JOBS_SCAN_MAX,
                                     pdata_scan_visit, &scan, &exhausted);
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    if (rv != 0) {
        rv = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "personal-data check of %s: %s", state_file,
                             store.errmsg);
    }
    tandem_store_close(&store);
    if (rv == 0 && !exhausted) {
        rv = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED,
                             "personal-data check of %s: more than %d jobs of one status",
                             state_file, TANDEM_CTL_RESTORE_JOBS_SCAN_MAX);
    } else if (rv == 0 && ring != NULL && out->opened < out->sealed) {
        rv = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED,
                             "--data-key-file opens %llu of the backup's %llu personal-data values "
                             "(job %s, sealed under key id %u, does not open): give the key file "
                             "of the cluster the backup came from",
                             (unsigned long long)out->opened, (unsigned long long)out->sealed,
                             out->first_unopened, out->first_key_id);
    }
    return rv;
}
