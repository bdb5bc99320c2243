/* Backup files (issue 14): one consistent copy of a node's LMDB state with its manifest, a
 * SHA-256 per part and over the whole file, optionally sealed with AES-256-GCM; written, checked
 * (levels 1 and 2) and unpacked into a state directory for a restore.
 *
 * Layout, integers little-endian (format 1):
 *   header    TANDEM_BACKUP_HEADER_BYTES: magic "TANDEMBK", u32 format, u32 flags (bit 0: the
 *             state is sealed), u32 key id (0 when plain), u32 zero, 12-byte GCM nonce, 4 zero
 *             bytes, u64 manifest length, u64 state length, SHA-256 of the manifest, SHA-256 of
 *             the header bytes before it
 *   manifest  JSON (tandem_backup_manifest_json), in clear even when the state is sealed, so a
 *             site that keeps a backup (or a witness that keeps only manifests) can list and
 *             check it without the key; it is the GCM's associated data, so it cannot be swapped
 *   state     the LMDB copy (mdb_env_copyfd2, compacted): the data.mdb of an environment whose
 *             meta record holds applied_index and apply_digest; or its AES-256-GCM ciphertext.
 *             Personal-data fields are sealed inside it already (replication/identity/pdata.h).
 *   tag       16 bytes: the GCM tag (zeros when plain)
 *   trailer   SHA-256 over every byte before it
 * The manifest carries the SHA-256 of the state as stored, so a damaged byte is named by part:
 * header, manifest, state, or trailer (tag or checksum). */
#ifndef TANDEM_STORAGE_BACKUP_H
#define TANDEM_STORAGE_BACKUP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/backup_file.h"
#include "storage/error.h"
#include "storage/store.h"

#define TANDEM_BACKUP_SUFFIX          ".tbk"
#define TANDEM_BACKUP_KEYS_MAX        64u /* keys a reader may try, by id */
#define TANDEM_BACKUP_LABEL_LEN_MAX   63u /* cluster id, node name, site */
#define TANDEM_BACKUP_VERSION_LEN_MAX 31u /* tandem version text */

/* The parts of a file, in file order: a check names the first one found damaged. */
#define TANDEM_BACKUP_PARTS(X)                                                                     \
    X(NONE, "none")                                                                                \
    X(HEADER, "header")                                                                            \
    X(MANIFEST, "manifest")                                                                        \
    X(STATE, "state")                                                                              \
    X(TRAILER, "trailer")

enum tandem_backup_part {
#define TANDEM_BACKUP_PART_ENUM(id, name) TANDEM_BACKUP_PART_##id,
    TANDEM_BACKUP_PARTS(TANDEM_BACKUP_PART_ENUM)
#undef TANDEM_BACKUP_PART_ENUM
        TANDEM_BACKUP_PART_COUNT
};

/* "header", "manifest", ...; "?" outside the table. */
const char *tandem_backup_part_name(int part);

/* Record counts of the backed-up state (mdb_stat entries of the databases). */
struct tandem_backup_counts {
    uint64_t keys, jobs, boxes, trace_events;
};

/* What a backup says about itself. Digests are those of GET /v1/digest at applied_index:
 * state_digest over every state database, data_digest without the audit trail. */
struct tandem_backup_manifest {
    uint32_t format;
    char cluster_id[TANDEM_BACKUP_LABEL_LEN_MAX + 1];
    char node[TANDEM_BACKUP_LABEL_LEN_MAX + 1]; /* the node that took it */
    char site[TANDEM_BACKUP_LABEL_LEN_MAX + 1]; /* that node's site */
    char tandem_version[TANDEM_BACKUP_VERSION_LEN_MAX + 1];
    uint64_t epoch, term, applied_index;
    uint8_t apply_digest[TANDEM_DIGEST_LEN]; /* the apply chain at applied_index */
    uint8_t state_digest[TANDEM_DIGEST_LEN];
    uint8_t data_digest[TANDEM_DIGEST_LEN];
    struct tandem_backup_counts counts;
    int64_t created_ms;                      /* Unix ms, UTC; shown as RFC 3339 with milliseconds */
    uint64_t state_bytes;                    /* the state part's length */
    uint8_t state_sha256[TANDEM_DIGEST_LEN]; /* of the state part as stored */
    bool encrypted;
    uint32_t key_id; /* 0 when plain */
};

/* Facts about the source the store cannot know, stamped into the manifest. */
struct tandem_backup_source {
    const char *cluster_id, *node, *site, *tandem_version; /* borrowed */
    uint64_t epoch, term;
    int64_t created_ms;
};

/* Writes a backup of s's committed state to path (created with mode 0600 beside a temporary
 * file that is renamed into place only when complete and synced). The LMDB copy is taken with
 * mdb_env_copyfd2 (its own read transaction: the writer is never stopped); applied_index, the
 * digests and the counts are then read from that copy itself, so the manifest describes exactly
 * what the file holds. key: NULL for a plain file, else the key that seals the state.
 * Safe on a thread other than the store owner's: it touches only s->env and s->dbi, never
 * s->errmsg or the write transaction. Returns 0 with *out filled, or a tandem code with errmsg
 * (TANDEM_ERRMSG_SIZE) filled and nothing left at path. */
int tandem_backup_write(struct tandem_store *s, const char *path,
                        const struct tandem_backup_source *source,
                        const struct tandem_backup_key *key, struct tandem_backup_manifest *out,
                        char *errmsg);

/* Reads and checks the header and manifest only (cheap: for listings and for the witness).
 * Returns 0, or TANDEM_CORRUPT with *damaged (may be NULL) the part at fault. */
int tandem_backup_manifest_read(const char *path, struct tandem_backup_manifest *out,
                                enum tandem_backup_part *damaged, char *errmsg);

/* Checks a backup file. Level 1: header, manifest, the state's and the whole file's SHA-256
 * (no key needed). Level 2: also unpacks the state into scratch_dir (an existing, empty
 * directory, emptied again afterwards), opening the seal with the key of the file's key id from
 * keys (n_keys of them), opens it read-only and recomputes applied_index, the apply digest,
 * both state digests and the counts against the manifest. Returns 0 with *out filled, or
 * TANDEM_CORRUPT with *damaged naming the first damaged part and errmsg saying what is wrong;
 * other codes (I/O, no key for a sealed file: TANDEM_NOTFOUND) leave *damaged NONE. */
int tandem_backup_verify(const char *path, int level, const struct tandem_backup_key *keys,
                         unsigned n_keys, const char *scratch_dir,
                         struct tandem_backup_manifest *out, enum tandem_backup_part *damaged,
                         char *errmsg);

/* Unpacks the state of a checked backup into state_dir (created; refused when it exists) as an
 * LMDB environment (data.mdb), then checks it as level 2 does. Used by a restore. Returns 0 with
 * *out filled, or a code as tandem_backup_verify; on failure state_dir is removed again. */
int tandem_backup_unpack(const char *path, const struct tandem_backup_key *keys, unsigned n_keys,
                         const char *state_dir, struct tandem_backup_manifest *out,
                         enum tandem_backup_part *damaged, char *errmsg);

/* Opens the LMDB data file `file` read-only (tandem_store_open_readonly) and reads what a
 * manifest says about it: applied index, apply digest, state and data digests (the functions
 * GET /v1/digest calls) and the counts. TANDEM_CORRUPT when a database is missing or LMDB finds
 * the file damaged. */
int tandem_backup_state_facts(const char *file, struct tandem_backup_manifest *facts, char *errmsg);

/* The record counts of the state visible in txn (mdb_stat: constant time). */
int tandem_backup_counts_read(struct tandem_store *s, MDB_txn *txn,
                              struct tandem_backup_counts *out, char *errmsg);

/* The manifest as JSON (a new reference; digests in hex, created as RFC 3339 UTC with ms and as
 * created_ms); NULL when out of memory. */
json_t *tandem_backup_manifest_json(const struct tandem_backup_manifest *m);
/* Parses manifest JSON (every field required, types and lengths checked). Returns 0 or
 * TANDEM_CORRUPT with errmsg naming the field. */
int tandem_backup_manifest_parse(const char *text, size_t len, struct tandem_backup_manifest *out,
                                 char *errmsg);

#endif
