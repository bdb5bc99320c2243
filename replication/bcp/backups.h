/* The replicated table of shipped backups (issue 14 item 4): which backup of which site exists,
 * at which index, where it is kept, its last verification and its losses, so that every node
 * lists every site's backups; applied from BackupStore and BackupUpdate commands. */
#ifndef TANDEM_REPLICATION_BCP_BACKUPS_H
#define TANDEM_REPLICATION_BCP_BACKUPS_H

#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "consensus/member.h"
#include "replication/apply.h"
#include "storage/store.h"
#include "tandem.pb-c.h"

#define TANDEM_BACKUP_ID_LEN_MAX         63   /* "<site>-<created ms>" and room to spare */
#define TANDEM_BACKUP_HOLDERS_MAX        16   /* holders, or manifest holders, of one backup */
#define TANDEM_BACKUP_RECORDS_MAX        1024 /* records kept, tombstones included; more: 409 */
#define TANDEM_BACKUP_RETIRED_KEPT       64   /* tombstones of retired backups kept (oldest go) */
#define TANDEM_BACKUP_MANIFEST_BYTES_MAX (64u * 1024u) /* a record's manifest JSON */
#define TANDEM_BACKUP_REASON_LEN_MAX     255
#define TANDEM_BACKUP_HEX_LEN            64 /* SHA-256 and state digests in hex */
#define TANDEM_BACKUP_LEVEL_MAX          3
#define TANDEM_BACKUP_SITES_MAX          16 /* sites a summary covers (TANDEM_SITES_MAX) */

/* The state of one record as listings show it. */
enum tandem_backup_state {
    TANDEM_BACKUP_KEPT,     /* every holder has its copy */
    TANDEM_BACKUP_DEGRADED, /* some holders lost theirs, at least one still has it */
    TANDEM_BACKUP_LOST,     /* every holder lost its copy */
    TANDEM_BACKUP_RETIRED,  /* retention removed it */
};

enum tandem_backup_state tandem_backup_state_of(const Tandem__BackupRecord *r);
const char *tandem_backup_state_name(enum tandem_backup_state state);
/* Whether name is one of r's holders, or one of those that lost their copy. */
bool tandem_backup_holds(const Tandem__BackupRecord *r, const char *name);
bool tandem_backup_lost_at(const Tandem__BackupRecord *r, const char *name);

/* Visits every record in id order (site, then creation time) until visit returns non-zero:
 * 1 stops the walk (returned as 0), anything else is returned. An LMDB error or a record that
 * does not decode is returned with store->errmsg filled. visit must not keep r. */
typedef int (*tandem_backup_visit_fn)(void *arg, const Tandem__BackupRecord *r);
int tandem_backups_walk(struct tandem_store *store, MDB_txn *txn, tandem_backup_visit_fn visit,
                        void *arg);
/* The record id into *out (NULL when absent; the caller frees with
 * tandem__backup_record__free_unpacked). Returns 0 or an error with store->errmsg. */
int tandem_backups_get(struct tandem_store *store, MDB_txn *txn, const char *id,
                       Tandem__BackupRecord **out);

/* One record for people and scripts: times in RFC 3339 UTC with milliseconds, ages as of
 * now_ms, "state" (kept, degraded, lost, retired) and "verified" (null when never). */
json_t *tandem_backup_json(const Tandem__BackupRecord *r, int64_t now_ms);
/* {"backups": [...]} in id order, retired ones only when retired; site "" = every site. NULL
 * with store->errmsg on an error. */
json_t *tandem_backups_list_json(struct tandem_store *store, MDB_txn *txn, const char *site,
                                 bool retired, int64_t now_ms);

/* Per site, what the status views show: the newest backup still kept somewhere and the newest
 * one with a successful verification (created_ms 0 when none). */
struct tandem_backup_site_summary {
    char site[TANDEM_SITE_LEN_MAX + 1];
    int64_t newest_created_ms;
    uint64_t newest_index;
    int64_t verified_created_ms; /* the newest verified backup's creation */
    int64_t verified_ms;         /* and when it was verified */
    uint32_t verified_level;
    unsigned kept, degraded, lost; /* records in each state (retired ones not counted) */
};
/* Fills out[0..*n) with one summary per site that has a record, in site order. */
int tandem_backups_summary(struct tandem_store *store, MDB_txn *txn,
                           struct tandem_backup_site_summary *out, unsigned max, unsigned *n);
/* {"<site>": {"newest": {id-less summary} | null, "newest_age_ms", "verified_age_ms", ...}}
 * from summaries, ages as of now_ms. */
json_t *tandem_backups_summary_json(const struct tandem_backup_site_summary *s, unsigned n,
                                    int64_t now_ms);

/* The shipped backups' rows of the command table, applied in backups.c. */
#define TANDEM_BACKUP_COMMANDS(X)                                                                  \
    X(backup_store, TANDEM__COMMAND__BODY_BACKUP_STORE, tandem_backups_apply_store)                \
    X(backup_update, TANDEM__COMMAND__BODY_BACKUP_UPDATE, tandem_backups_apply_update)

#endif
