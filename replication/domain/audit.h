/* The replicated audit trail: records chained with SHA-256 at apply (every node computes the
 * same chain), their key layout in the audit database, the head, and the chain's verifier. */
#ifndef TANDEM_REPLICATION_DOMAIN_AUDIT_H
#define TANDEM_REPLICATION_DOMAIN_AUDIT_H

#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication/apply.h"
#include "storage/store.h"
#include "tandem.pb-c.h"

#define TANDEM_AUDIT_HASH_LEN               32   /* SHA-256 */
#define TANDEM_AUDIT_RECORDS_MAX            1024 /* records in one AuditAppend */
#define TANDEM_AUDIT_TEXT_LEN_MAX           256  /* actor, source, node, action, object */
#define TANDEM_AUDIT_DETAIL_LEN_MAX         1024 /* detail (short JSON) */
#define TANDEM_AUDIT_LIST_LIMIT_MAX         1000 /* records in one page of GET /v1/audit */
#define TANDEM_AUDIT_RETENTION_DAYS_DEFAULT 400

/* Keys in TANDEM_DB_AUDIT: 'r' + big-endian seq -> packed AuditRecord; 'h' -> the head
 * (big-endian seq + hash); 'a' -> the anchor left by a purge (the last purged seq + its hash;
 * absent: the chain starts at seq 1 after 32 zero bytes). */
#define TANDEM_AUDIT_KEY_RECORD 'r'
#define TANDEM_AUDIT_KEY_HEAD   'h'
#define TANDEM_AUDIT_KEY_ANCHOR 'a'

enum tandem_audit_actor_kind {
    TANDEM_AUDIT_ANONYMOUS = 0,
    TANDEM_AUDIT_USER = 1,
    TANDEM_AUDIT_NODE = 2,
};

/* A position in the chain: seq (0 = before the first record) and the hash there. */
struct tandem_audit_link {
    uint64_t seq;
    uint8_t hash[TANDEM_AUDIT_HASH_LEN];
};

/* The outcome of walking the chain. */
struct tandem_audit_verdict {
    bool ok;
    uint64_t records;   /* records checked */
    uint64_t broken_at; /* seq of the first broken link when !ok */
    const char *reason; /* "hash mismatch", "prev mismatch", "gap", "undecodable" */
    struct tandem_audit_link head, anchor;
};

/* hash = SHA-256(prev_hash || record packed with its hash field empty). */
void tandem_audit_hash(const Tandem__AuditRecord *record, uint8_t out[TANDEM_AUDIT_HASH_LEN]);

/* Reads the head (seq 0 and zero hash when none) and the anchor (likewise). Return 0 or an
 * LMDB error. */
int tandem_audit_head(MDB_txn *txn, const struct tandem_store *store,
                      struct tandem_audit_link *head);
int tandem_audit_anchor(MDB_txn *txn, const struct tandem_store *store,
                        struct tandem_audit_link *anchor);

/* Walks every kept record from the anchor, checking seq continuity, prev_hash and hash, and
 * that the last one is the head. Returns 0 (verdict filled) or an LMDB error. */
int tandem_audit_verify(MDB_txn *txn, const struct tandem_store *store,
                        struct tandem_audit_verdict *verdict);

/* Record as JSON (times RFC 3339, hashes hex). */
json_t *tandem_audit_record_json(const Tandem__AuditRecord *record);

/* Appends to out up to limit records with seq > after_seq and time_ms >= since_ms; *next is
 * the seq to continue after (0 when the list is complete). Returns 0 or an LMDB error. */
int tandem_audit_list(MDB_txn *txn, const struct tandem_store *store, uint64_t after_seq,
                      int64_t since_ms, unsigned limit, json_t *out, uint64_t *next);

/* Reads one record (NOTFOUND -> *out NULL). Free with tandem__audit_record__free_unpacked. */
int tandem_audit_get(MDB_txn *txn, const struct tandem_store *store, uint64_t seq,
                     Tandem__AuditRecord **out);

/* Removes records older than before_ms (never the head), moving the anchor to the last one
 * removed; at most max_records. *purged counts them. Returns 0 or an LMDB error. */
int tandem_audit_purge(MDB_txn *txn, struct tandem_store *store, int64_t before_ms,
                       unsigned max_records, uint64_t *purged);

/* This header's rows of the command table (replication/commands.h). */
#define TANDEM_AUDIT_COMMANDS(X)                                                                   \
    X(audit_append, TANDEM__COMMAND__BODY_AUDIT_APPEND, tandem_audit_apply_append)

#endif
