/* Erasure of personal data after retention (issue 13 item 7): the replicated erase command, its
 * deletion (disposal) records, and the choice of the jobs whose retention has ended. */
#ifndef TANDEM_REPLICATION_IDENTITY_ERASE_H
#define TANDEM_REPLICATION_IDENTITY_ERASE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication/apply.h"
#include "storage/domain_codec.h"
#include "storage/store.h"
#include "tandem.pb-c.h"

#define TANDEM_PDATA_ERASE_BATCH        256    /* jobs one erase command names */
#define TANDEM_PDATA_ERASE_SCAN_MAX     100000 /* status-index entries one choice examines */
#define TANDEM_PDATA_RETENTION_DAYS_MIN 1
#define TANDEM_PDATA_RETENTION_DAYS_MAX 36500
#define TANDEM_PDATA_DISPOSAL_KIND      "personal_data_erase"

#define TANDEM_PDATA_COMMANDS(X)                                                                   \
    X(personal_data_erase, TANDEM__COMMAND__BODY_PERSONAL_DATA_ERASE, tandem_pdata_apply_erase)    \
    X(personal_data_reseal, TANDEM__COMMAND__BODY_PERSONAL_DATA_RESEAL, tandem_pdata_apply_reseal)

/* Fills ids (TANDEM_PDATA_ERASE_BATCH rows, each TANDEM_DOMAIN_ID_LEN_MAX + 1 bytes) with jobs
 * done or cancelled at or before cutoff_ms that still hold personal data; *more tells whether
 * further ones may exist. Returns 0 or a store error (s->errmsg). */
int tandem_pdata_erase_choose(struct tandem_store *s, MDB_txn *txn, int64_t cutoff_ms,
                              char (*ids)[TANDEM_DOMAIN_ID_LEN_MAX + 1], size_t *n, bool *more);

/* Visits every job holding personal data (all statuses, id order within each), at most
 * TANDEM_PDATA_ERASE_SCAN_MAX index entries per status; visit returns non-zero to stop. */
int tandem_pdata_jobs_walk(struct tandem_store *s, MDB_txn *txn,
                           int (*visit)(void *arg, const char *id, const Tandem__JobRecord *job),
                           void *arg);

#endif
