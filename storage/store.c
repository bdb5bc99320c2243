/* LMDB state store: grouped commits, applied_index bookkeeping, digests, snapshot and restore. */
#include "storage/store.h"
#include "storage/error.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define STORE_DBS_MAX           32
#define SNAPSHOT_MAGIC          "TANDEMSS"
#define RESTORE_RECORDS_PER_TXN 65536 /* bounds a restore transaction's dirty pages */

static const char *const db_names[TANDEM_DB_COUNT] = {
#define TANDEM_STORE_DB_NAME(id, name) name,
    TANDEM_STORE_DBS(TANDEM_STORE_DB_NAME)
#undef TANDEM_STORE_DB_NAME
};

/* Fixed snapshot header; all integers little-endian. */
struct snapshot_header {
    char magic[8];
    uint32_t format;
    uint32_t db_count;
    uint64_t applied_index;
    uint64_t records;
    uint64_t payload_len;
    uint8_t apply_digest[TANDEM_DIGEST_LEN];
    uint8_t state_digest[TANDEM_DIGEST_LEN];
    uint8_t checksum[TANDEM_DIGEST_LEN]; /* SHA-256 of every header field above, then the payload */
};

/* Per-record frame in the snapshot payload. */
struct record_frame {
    uint8_t db;
    uint8_t pad[3];
    uint32_t key_len;
    uint32_t value_len;
};

int tandem_store_error(struct tandem_store *s, int rv, const char *what)
{
    snprintf(s->errmsg, sizeof s->errmsg, "%s: %s", what, mdb_strerror(rv));
    return rv;
}

void tandem_digest_hex(const uint8_t digest[TANDEM_DIGEST_LEN], char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < TANDEM_DIGEST_LEN; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 0xf];
    }
    out[2 * TANDEM_DIGEST_LEN] = '\0';
}

static int remove_env_dir(const char *dir)
{
    char path[PATH_MAX + 16];
    const char *files[] = {"data.mdb", "lock.mdb"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            return -1;
        }
    }
    if (rmdir(dir) != 0 && errno != ENOENT) {
        return -1;
    }
    return 0;
}

static void fsync_parent(const char *dir)
{
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash == NULL) {
        snprintf(parent, sizeof parent, ".");
    } else if (slash == parent) {
        parent[1] = '\0';
    } else {
        *slash = '\0';
    }
    int fd = open(parent, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Finishes a restore that a crash interrupted: dir.new complete but not yet renamed. */
static int recover_interrupted_swap(struct tandem_store *s, const char *dir)
{
    char next[PATH_MAX + 8], old[PATH_MAX + 8];
    struct stat st;
    snprintf(next, sizeof next, "%s.new", dir);
    snprintf(old, sizeof old, "%s.old", dir);
    if (stat(dir, &st) != 0 && stat(old, &st) == 0 && stat(next, &st) == 0) {
        if (rename(next, dir) != 0) {
            snprintf(s->errmsg, sizeof s->errmsg, "finish restore: rename %s: %s", next,
                     strerror(errno));
            return -1;
        }
        fsync_parent(dir);
    }
    if (stat(old, &st) == 0 && stat(dir, &st) == 0) {
        (void)remove_env_dir(old);
    }
    if (stat(next, &st) == 0 && stat(dir, &st) == 0) {
        (void)remove_env_dir(next); /* an unfinished restore: raft will send the snapshot again */
    }
    return 0;
}

static int load_meta(struct tandem_store *s, MDB_txn *txn)
{
    MDB_val key = {.mv_size = 13, .mv_data = "applied_index"}, value;
    int rv = mdb_get(txn, s->dbi[TANDEM_DB_META], &key, &value);
    s->applied_index = 0;
    memset(s->apply_digest, 0, sizeof s->apply_digest);
    if (rv == MDB_NOTFOUND) {
        return 0;
    }
    if (rv != 0) {
        return tandem_store_error(s, rv, "read applied_index");
    }
    if (value.mv_size != 8 + TANDEM_DIGEST_LEN) {
        snprintf(s->errmsg, sizeof s->errmsg, "corrupt meta record: %zu bytes", value.mv_size);
        return MDB_CORRUPTED;
    }
    uint64_t index_le;
    memcpy(&index_le, value.mv_data, 8);
    s->applied_index = le64toh(index_le);
    memcpy(s->apply_digest, (const uint8_t *)value.mv_data + 8, TANDEM_DIGEST_LEN);
    return 0;
}

static int env_open(struct tandem_store *s, MDB_env **out, const char *dir, bool load)
{
    MDB_env *env;
    MDB_txn *txn;
    int rv = mdb_env_create(&env);
    if (rv != 0) {
        return tandem_store_error(s, rv, "mdb_env_create");
    }
    (void)mdb_env_set_maxdbs(env, STORE_DBS_MAX);
    rv = mdb_env_set_mapsize(env, s->map_size);
    if (rv != 0) {
        tandem_store_error(s, rv, "mdb_env_set_mapsize");
        goto err_after_env;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(s->errmsg, sizeof s->errmsg, "mkdir %s: %s", dir, strerror(errno));
        rv = errno;
        goto err_after_env;
    }
    /* NOMETASYNC, never NOSYNC: a crash may lose the last commit's meta page (raft replays it),
     * but can never corrupt the tree. */
    rv = mdb_env_open(env, dir, MDB_NOMETASYNC | MDB_NOTLS | MDB_NORDAHEAD, 0600);
    if (rv != 0) {
        snprintf(s->errmsg, sizeof s->errmsg, "open LMDB environment %s: %s", dir,
                 mdb_strerror(rv));
        goto err_after_env;
    }
    rv = mdb_txn_begin(env, NULL, 0, &txn);
    if (rv != 0) {
        tandem_store_error(s, rv, "begin open transaction");
        goto err_after_env;
    }
    for (int i = 0; i < TANDEM_DB_COUNT; i++) {
        rv = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i]);
        if (rv != 0) {
            tandem_store_error(s, rv, "open database");
            goto err_after_txn;
        }
    }
    if (load && (rv = load_meta(s, txn)) != 0) {
        goto err_after_txn;
    }
    rv = mdb_txn_commit(txn);
    if (rv != 0) {
        tandem_store_error(s, rv, "commit open transaction");
        goto err_after_env;
    }
    *out = env;
    return 0;

err_after_txn:
    mdb_txn_abort(txn);
err_after_env:
    mdb_env_close(env);
    return rv;
}

int tandem_store_open(struct tandem_store *s, const char *dir, size_t map_size)
{
    memset(s, 0, sizeof *s);
    s->map_size = map_size;
    if (strlen(dir) + 8 >= sizeof s->dir) {
        snprintf(s->errmsg, sizeof s->errmsg, "state directory path too long");
        return ENAMETOOLONG;
    }
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    if (recover_interrupted_swap(s, dir) != 0) {
        return EIO;
    }
    return env_open(s, &s->env, dir, true);
}

void tandem_store_close(struct tandem_store *s)
{
    if (s->write_txn != NULL) {
        (void)tandem_store_commit(s);
    }
    if (s->env != NULL) {
        mdb_env_close(s->env);
        s->env = NULL;
    }
}

int tandem_store_write_txn(struct tandem_store *s, MDB_txn **txn)
{
    if (s->write_txn == NULL) {
        int rv = mdb_txn_begin(s->env, NULL, 0, &s->write_txn);
        if (rv != 0) {
            s->write_txn = NULL;
            return tandem_store_error(s, rv, "begin write transaction");
        }
        s->write_txn_opened_ns = uv_hrtime();
    }
    *txn = s->write_txn;
    return 0;
}

int tandem_store_commit(struct tandem_store *s)
{
    if (s->write_txn == NULL) {
        return 0;
    }
    int rv = mdb_txn_commit(s->write_txn);
    s->write_txn = NULL;
    if (rv != 0) {
        return tandem_store_error(s, rv, "commit write transaction");
    }
    s->commits++;
    return 0;
}

bool tandem_store_commit_due(const struct tandem_store *s, uint64_t now_ns, uint64_t interval_ns)
{
    return s->write_txn != NULL && now_ns - s->write_txn_opened_ns >= interval_ns;
}

void tandem_store_abort(struct tandem_store *s)
{
    MDB_txn *txn;
    if (s->write_txn != NULL) {
        mdb_txn_abort(s->write_txn);
        s->write_txn = NULL;
    }
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0) {
        (void)load_meta(s, txn);
        mdb_txn_abort(txn);
    }
}

int tandem_store_set_applied(struct tandem_store *s, uint64_t index,
                             const uint8_t digest[TANDEM_DIGEST_LEN])
{
    uint8_t record[8 + TANDEM_DIGEST_LEN];
    uint64_t index_le = htole64(index);
    MDB_txn *txn;
    int rv = tandem_store_write_txn(s, &txn);
    if (rv != 0) {
        return rv;
    }
    memcpy(record, &index_le, 8);
    memcpy(record + 8, digest, TANDEM_DIGEST_LEN);
    MDB_val key = {.mv_size = 13, .mv_data = "applied_index"};
    MDB_val value = {.mv_size = sizeof record, .mv_data = record};
    rv = mdb_put(txn, s->dbi[TANDEM_DB_META], &key, &value, 0);
    if (rv != 0) {
        return tandem_store_error(s, rv, "write applied_index");
    }
    s->applied_index = index;
    memcpy(s->apply_digest, digest, TANDEM_DIGEST_LEN);
    return 0;
}

int tandem_store_read_txn(struct tandem_store *s, MDB_txn **txn)
{
    int rv = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    if (rv != 0) {
        return tandem_store_error(s, rv, "begin read transaction");
    }
    return 0;
}

static void hash_u32(EVP_MD_CTX *ctx, size_t value)
{
    uint32_t le = htole32((uint32_t)value);
    EVP_DigestUpdate(ctx, &le, sizeof le);
}

/* Walks every state database in key order; visit gets each record. */
typedef int (*record_visit_fn)(void *arg, int db, const MDB_val *key, const MDB_val *value);

static int state_walk(struct tandem_store *s, MDB_txn *txn, record_visit_fn visit, void *arg)
{
    for (int db = 0; db < TANDEM_DB_COUNT; db++) {
        MDB_cursor *cursor;
        MDB_val key, value;
        if (db == TANDEM_DB_META) {
            continue;
        }
        int rv = mdb_cursor_open(txn, s->dbi[db], &cursor);
        if (rv != 0) {
            return tandem_store_error(s, rv, "open cursor");
        }
        rv = mdb_cursor_get(cursor, &key, &value, MDB_FIRST);
        while (rv == 0) {
            rv = visit(arg, db, &key, &value);
            if (rv != 0) {
                mdb_cursor_close(cursor);
                return rv;
            }
            rv = mdb_cursor_get(cursor, &key, &value, MDB_NEXT);
        }
        mdb_cursor_close(cursor);
        if (rv != MDB_NOTFOUND) {
            return tandem_store_error(s, rv, "walk database");
        }
    }
    return 0;
}

struct digest_walk {
    EVP_MD_CTX *ctx;
    int db; /* the database whose name was hashed last, -1 before the first */
};

static int digest_visit(void *arg, int db, const MDB_val *key, const MDB_val *value)
{
    struct digest_walk *walk = arg;
    if (walk->db != db) {
        EVP_DigestUpdate(walk->ctx, db_names[db], strlen(db_names[db]) + 1);
        walk->db = db;
    }
    hash_u32(walk->ctx, key->mv_size);
    EVP_DigestUpdate(walk->ctx, key->mv_data, key->mv_size);
    hash_u32(walk->ctx, value->mv_size);
    EVP_DigestUpdate(walk->ctx, value->mv_data, value->mv_size);
    return 0;
}

int tandem_store_state_digest(struct tandem_store *s, MDB_txn *txn, uint8_t out[TANDEM_DIGEST_LEN])
{
    struct digest_walk walk = {.ctx = EVP_MD_CTX_new(), .db = -1};
    if (walk.ctx == NULL || EVP_DigestInit_ex(walk.ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(walk.ctx);
        snprintf(s->errmsg, sizeof s->errmsg, "state digest: OpenSSL init failed");
        return ENOMEM;
    }
    int rv = state_walk(s, txn, digest_visit, &walk);
    unsigned len = 0;
    if (rv == 0) {
        EVP_DigestFinal_ex(walk.ctx, out, &len);
    }
    EVP_MD_CTX_free(walk.ctx);
    return rv;
}

struct snapshot_walk {
    struct tandem_store *s;
    struct digest_walk digest;
    uint8_t *buf; /* owned until handed to the caller */
    size_t len, cap;
    uint64_t records;
};

static int snapshot_reserve(struct snapshot_walk *w, size_t more)
{
    if (w->len + more <= w->cap) {
        return 0;
    }
    if (w->len + more > TANDEM_SNAPSHOT_BYTES_MAX) {
        snprintf(w->s->errmsg, sizeof w->s->errmsg, "snapshot would exceed %zu bytes",
                 TANDEM_SNAPSHOT_BYTES_MAX);
        return EFBIG;
    }
    size_t cap = w->cap == 0 ? 64 * 1024 : w->cap;
    while (cap < w->len + more) {
        cap *= 2;
    }
    uint8_t *grown = realloc(w->buf, cap);
    if (grown == NULL) {
        snprintf(w->s->errmsg, sizeof w->s->errmsg, "snapshot: out of memory (%zu bytes)", cap);
        return ENOMEM;
    }
    w->buf = grown;
    w->cap = cap;
    return 0;
}

static int snapshot_visit(void *arg, int db, const MDB_val *key, const MDB_val *value)
{
    struct snapshot_walk *w = arg;
    struct record_frame frame = {.db = (uint8_t)db,
                                 .key_len = htole32((uint32_t)key->mv_size),
                                 .value_len = htole32((uint32_t)value->mv_size)};
    int rv = snapshot_reserve(w, sizeof frame + key->mv_size + value->mv_size);
    if (rv != 0) {
        return rv;
    }
    memcpy(w->buf + w->len, &frame, sizeof frame);
    w->len += sizeof frame;
    memcpy(w->buf + w->len, key->mv_data, key->mv_size);
    w->len += key->mv_size;
    memcpy(w->buf + w->len, value->mv_data, value->mv_size);
    w->len += value->mv_size;
    w->records++;
    return digest_visit(&w->digest, db, key, value);
}

/* Covers the header too: a flipped applied_index or digest must not pass as valid. */
static void snapshot_checksum(const struct snapshot_header *header, const void *payload, size_t len,
                              uint8_t out[TANDEM_DIGEST_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned out_len = 0;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, header, offsetof(struct snapshot_header, checksum));
    EVP_DigestUpdate(ctx, payload, len);
    EVP_DigestFinal_ex(ctx, out, &out_len);
    EVP_MD_CTX_free(ctx);
}

int tandem_store_snapshot_write(struct tandem_store *s, MDB_txn *txn, void **out, size_t *out_len)
{
    struct snapshot_walk w = {.s = s, .digest = {.ctx = EVP_MD_CTX_new(), .db = -1}};
    struct snapshot_header header;
    struct tandem_store view = *s; /* applied state as seen by txn, not the open write txn */
    unsigned len = 0;
    int rv;

    if (w.digest.ctx == NULL || EVP_DigestInit_ex(w.digest.ctx, EVP_sha256(), NULL) != 1) {
        rv = ENOMEM;
        goto err_after_ctx;
    }
    if ((rv = load_meta(&view, txn)) != 0 || (rv = snapshot_reserve(&w, sizeof header)) != 0) {
        goto err_after_ctx;
    }
    w.len = sizeof header;
    if ((rv = state_walk(s, txn, snapshot_visit, &w)) != 0) {
        goto err_after_ctx;
    }
    memset(&header, 0, sizeof header);
    memcpy(header.magic, SNAPSHOT_MAGIC, 8);
    header.format = htole32(TANDEM_SNAPSHOT_FORMAT);
    header.db_count = htole32(TANDEM_DB_COUNT);
    header.applied_index = htole64(view.applied_index);
    header.records = htole64(w.records);
    header.payload_len = htole64(w.len - sizeof header);
    memcpy(header.apply_digest, view.apply_digest, TANDEM_DIGEST_LEN);
    EVP_DigestFinal_ex(w.digest.ctx, header.state_digest, &len);
    snapshot_checksum(&header, w.buf + sizeof header, w.len - sizeof header, header.checksum);
    memcpy(w.buf, &header, sizeof header);
    EVP_MD_CTX_free(w.digest.ctx);
    *out = w.buf;
    *out_len = w.len;
    return 0;

err_after_ctx:
    if (rv != 0 && s->errmsg[0] == '\0') {
        snprintf(s->errmsg, sizeof s->errmsg, "snapshot failed: %d", rv);
    }
    EVP_MD_CTX_free(w.digest.ctx);
    free(w.buf);
    return rv == 0 ? ENOMEM : rv;
}

static int header_read(const void *buf, size_t len, struct snapshot_header *header, char *errmsg)
{
    uint8_t sha[TANDEM_DIGEST_LEN];
    if (len < sizeof *header) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "snapshot too short: %zu bytes", len);
        return EINVAL;
    }
    memcpy(header, buf, sizeof *header);
    if (memcmp(header->magic, SNAPSHOT_MAGIC, 8) != 0) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "not a tandem snapshot (bad magic)");
        return EINVAL;
    }
    if (le32toh(header->format) != TANDEM_SNAPSHOT_FORMAT) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "unsupported snapshot format %u", le32toh(header->format));
        return EINVAL;
    }
    if (le64toh(header->payload_len) != len - sizeof *header) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "snapshot length mismatch: header says %llu, have %zu",
                 (unsigned long long)le64toh(header->payload_len), len - sizeof *header);
        return EINVAL;
    }
    snapshot_checksum(header, (const uint8_t *)buf + sizeof *header, len - sizeof *header, sha);
    if (memcmp(sha, header->checksum, TANDEM_DIGEST_LEN) != 0) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "snapshot checksum mismatch");
        return EINVAL;
    }
    return 0;
}

int tandem_store_snapshot_check(const void *buf, size_t len, uint64_t *applied_index, char *errmsg)
{
    struct snapshot_header header;
    int rv = header_read(buf, len, &header, errmsg);
    if (rv == 0) {
        *applied_index = le64toh(header.applied_index);
    }
    return rv;
}

/* Loads the payload's records into env (opened by env_open on s's dbi table). */
static int restore_records(struct tandem_store *s, MDB_env *env, const uint8_t *payload, size_t len,
                           uint64_t records)
{
    size_t offset = 0;
    uint64_t done = 0;
    while (offset < len) {
        MDB_txn *txn;
        int rv = mdb_txn_begin(env, NULL, 0, &txn);
        if (rv != 0) {
            return tandem_store_error(s, rv, "restore: begin");
        }
        for (unsigned n = 0; n < RESTORE_RECORDS_PER_TXN && offset < len; n++) {
            struct record_frame frame;
            if (len - offset < sizeof frame) {
                mdb_txn_abort(txn);
                snprintf(s->errmsg, sizeof s->errmsg, "restore: truncated record frame");
                return EINVAL;
            }
            memcpy(&frame, payload + offset, sizeof frame);
            offset += sizeof frame;
            size_t key_len = le32toh(frame.key_len), value_len = le32toh(frame.value_len);
            if (frame.db == TANDEM_DB_META || frame.db >= TANDEM_DB_COUNT ||
                len - offset < key_len + value_len) {
                mdb_txn_abort(txn);
                snprintf(s->errmsg, sizeof s->errmsg, "restore: bad record %llu",
                         (unsigned long long)done);
                return EINVAL;
            }
            MDB_val key = {.mv_size = key_len, .mv_data = (void *)(payload + offset)};
            MDB_val value = {.mv_size = value_len, .mv_data = (void *)(payload + offset + key_len)};
            offset += key_len + value_len;
            rv = mdb_put(txn, s->dbi[frame.db], &key, &value, MDB_APPEND);
            if (rv != 0) {
                mdb_txn_abort(txn);
                return tandem_store_error(s, rv, "restore: put");
            }
            done++;
        }
        rv = mdb_txn_commit(txn);
        if (rv != 0) {
            return tandem_store_error(s, rv, "restore: commit");
        }
    }
    if (done != records) {
        snprintf(s->errmsg, sizeof s->errmsg, "restore: %llu records, header says %llu",
                 (unsigned long long)done, (unsigned long long)records);
        return EINVAL;
    }
    return 0;
}

/* Builds dir.new from the snapshot and checks its state digest against the header. */
static int restore_build(struct tandem_store *s, const char *next, const uint8_t *buf, size_t len,
                         const struct snapshot_header *header)
{
    struct tandem_store fresh = {.map_size = s->map_size};
    MDB_txn *txn;
    uint8_t digest[TANDEM_DIGEST_LEN];
    (void)remove_env_dir(next);
    int rv = env_open(&fresh, &fresh.env, next, false);
    if (rv != 0) {
        snprintf(s->errmsg, sizeof s->errmsg, "restore: %s", fresh.errmsg);
        return rv;
    }
    rv = restore_records(&fresh, fresh.env, buf + sizeof *header, len - sizeof *header,
                         le64toh(header->records));
    if (rv == 0) {
        rv = tandem_store_set_applied(&fresh, le64toh(header->applied_index), header->apply_digest);
    }
    if (rv == 0) {
        rv = tandem_store_commit(&fresh);
    }
    if (rv == 0 && (rv = tandem_store_read_txn(&fresh, &txn)) == 0) {
        rv = tandem_store_state_digest(&fresh, txn, digest);
        mdb_txn_abort(txn);
        if (rv == 0 && memcmp(digest, header->state_digest, TANDEM_DIGEST_LEN) != 0) {
            snprintf(fresh.errmsg, sizeof fresh.errmsg, "restored state digest mismatch");
            rv = EINVAL;
        }
    }
    if (rv != 0) {
        snprintf(s->errmsg, sizeof s->errmsg, "restore: %s", fresh.errmsg);
    }
    mdb_env_sync(fresh.env, 1);
    tandem_store_close(&fresh);
    if (rv != 0) {
        (void)remove_env_dir(next);
    }
    return rv;
}

int tandem_store_restore(struct tandem_store *s, const void *buf, size_t len)
{
    struct snapshot_header header;
    char next[PATH_MAX + 8], old[PATH_MAX + 8];
    int rv = header_read(buf, len, &header, s->errmsg);
    if (rv != 0) {
        return rv;
    }
    if ((rv = tandem_store_commit(s)) != 0) {
        return rv;
    }
    if (s->applied_index >= le64toh(header.applied_index)) {
        return 0; /* already at or past it: replay skips what the snapshot covers */
    }
    snprintf(next, sizeof next, "%s.new", s->dir);
    snprintf(old, sizeof old, "%s.old", s->dir);
    if ((rv = restore_build(s, next, buf, len, &header)) != 0) {
        return rv;
    }
    mdb_env_close(s->env);
    s->env = NULL;
    if (rename(s->dir, old) != 0 || rename(next, s->dir) != 0) {
        snprintf(s->errmsg, sizeof s->errmsg, "restore: swap directories: %s", strerror(errno));
        return EIO;
    }
    fsync_parent(s->dir);
    (void)remove_env_dir(old);
    return env_open(s, &s->env, s->dir, true);
}
