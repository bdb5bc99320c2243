/* LMDB state store: grouped commits, applied_index bookkeeping, digests, snapshot and restore. */
#include "storage/store.h"
#include "storage/assert.h"
#include "storage/error.h"
#include "storage/sha256.h"
#include "storage/writeback.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define STORE_DBS_MAX           32
#define SNAPSHOT_MAGIC          "TANDEMSS"
#define RESTORE_RECORDS_PER_TXN 65536      /* bounds a restore transaction's dirty pages */
#define SNAPSHOT_FLUSH_BYTES    (8u << 20) /* a snapshot to a file is written in such chunks */
#define META_APPLIED_KEY        "applied_index"
#define META_APPLIED_KEY_LEN    (sizeof META_APPLIED_KEY - 1)
#define META_APPLIED_LEN        (8 + TANDEM_DIGEST_LEN) /* u64 LE index, then the digest */

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
/* The snapshot format's layout on disk, which tests and peers rely on. */
_Static_assert(offsetof(struct snapshot_header, checksum) == 104, "snapshot header layout");
_Static_assert(sizeof(struct snapshot_header) == 136, "snapshot header layout");

/* Per-record frame in the snapshot payload. */
struct record_frame {
    uint8_t db;
    uint8_t pad[3];
    uint32_t key_len;
    uint32_t value_len;
};

int tandem_store_error(struct tandem_store *s, int rv, const char *what)
{
    (void)tandem_error_from_mdb(rv, s->errmsg, what);
    return rv;
}

/* Where an LMDB code enters the store's own functions: text into s->errmsg, a tandem code out. */
static int store_mdb_fail(struct tandem_store *s, int mdb_rc, const char *what)
{
    tandem_assert(mdb_rc != MDB_SUCCESS);
    return tandem_error_from_mdb(mdb_rc, s->errmsg, what);
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
    const char *files[] = {"data.mdb", "lock.mdb", TANDEM_UNSYNCED_FILE};
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

int tandem_store_trash_remove(const char *path)
{
    return remove_env_dir(path);
}

bool tandem_store_trash_take(struct tandem_store *s, char *path, size_t size)
{
    if (s->trash[0] == '\0') {
        return false;
    }
    snprintf(path, size, "%s", s->trash);
    s->trash[0] = '\0';
    return true;
}

/* The environment a swap replaced (at old): to DIR.trash-<index> for the caller when it asked
 * for that and took the previous one, else removed here. */
static void old_env_discard(struct tandem_store *s, const char *old, uint64_t index)
{
    if (s->trash_later && s->trash[0] == '\0') {
        snprintf(s->trash, sizeof s->trash, "%s.trash-%" PRIu64, s->dir, index);
        if (rename(old, s->trash) == 0) {
            return;
        }
        s->trash[0] = '\0';
    }
    (void)remove_env_dir(old);
}

/* dir's parent directory into parent (PATH_MAX bytes: "." for a bare name, "/" for one in /);
 * returns dir's last component. */
static const char *parent_of(const char *dir, char parent[PATH_MAX])
{
    snprintf(parent, PATH_MAX, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash == NULL) {
        snprintf(parent, PATH_MAX, ".");
        return dir;
    }
    const char *base = dir + (slash - parent) + 1;
    if (slash == parent) {
        parent[1] = '\0';
    } else {
        *slash = '\0';
    }
    return base;
}

/* Removes what a crash left of environments replaced by swaps: DIR.trash-* beside dir. */
static void trash_leftovers_remove(const char *dir)
{
    char parent[PATH_MAX], prefix[PATH_MAX], path[2 * PATH_MAX];
    snprintf(prefix, sizeof prefix, "%s.trash-", parent_of(dir, parent));
    DIR *d = opendir(parent);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(path, sizeof path, "%s/%s", parent, e->d_name);
            (void)remove_env_dir(path);
        }
    }
    closedir(d);
}

/* Makes a rename in dir's parent durable. A failure is not fatal on purpose: until the rename
 * is on disk, a crash leaves dir.new beside dir, and recover_interrupted_swap either finishes
 * the swap or drops dir.new (raft sends the snapshot again). */
void tandem_store_fsync_parent(const char *dir)
{
    char parent[PATH_MAX];
    (void)parent_of(dir, parent);
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
            int saved = errno;
            char what[PATH_MAX + 32];
            snprintf(what, sizeof what, "finish restore: rename %s", next);
            return tandem_error_from_errno(saved, s->errmsg, what);
        }
        tandem_store_fsync_parent(dir);
    }
    if (stat(old, &st) == 0 && stat(dir, &st) == 0) {
        (void)remove_env_dir(old);
    }
    if (stat(next, &st) == 0 && stat(dir, &st) == 0) {
        (void)remove_env_dir(next); /* an unfinished restore: raft will send the snapshot again */
    }
    trash_leftovers_remove(dir);
    return 0;
}

static int load_meta(struct tandem_store *s, MDB_txn *txn)
{
    MDB_val key = {.mv_size = META_APPLIED_KEY_LEN, .mv_data = META_APPLIED_KEY}, value;
    int rv = mdb_get(txn, s->dbi[TANDEM_DB_META], &key, &value);
    s->applied_index = 0;
    memset(s->apply_digest, 0, sizeof s->apply_digest);
    if (rv == MDB_NOTFOUND) {
        return 0;
    }
    if (rv != 0) {
        return store_mdb_fail(s, rv, "read applied_index");
    }
    if (value.mv_size != META_APPLIED_LEN) {
        return tandem_error_set(s->errmsg, TANDEM_CORRUPT, "corrupt meta record: %zu bytes",
                                value.mv_size);
    }
    uint64_t index_le;
    memcpy(&index_le, value.mv_data, 8);
    s->applied_index = le64toh(index_le);
    memcpy(s->apply_digest, (const uint8_t *)value.mv_data + 8, TANDEM_DIGEST_LEN);
    return 0;
}

int tandem_store_meta_read(struct tandem_store *s, MDB_txn *txn)
{
    return load_meta(s, txn);
}

/* Creates the environment handle with its limits and opens it in dir (made when absent). */
static int env_create(struct tandem_store *s, MDB_env **out, const char *dir)
{
    MDB_env *env;
    int rv = mdb_env_create(&env);
    if (rv != 0) {
        return store_mdb_fail(s, rv, "mdb_env_create");
    }
    if ((rv = mdb_env_set_maxdbs(env, STORE_DBS_MAX)) != 0) {
        rv = store_mdb_fail(s, rv, "mdb_env_set_maxdbs");
        goto err_after_env;
    }
    if ((rv = mdb_env_set_mapsize(env, s->map_size)) != 0) {
        rv = store_mdb_fail(s, rv, "mdb_env_set_mapsize");
        goto err_after_env;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        int saved = errno;
        char what[PATH_MAX + 8];
        snprintf(what, sizeof what, "mkdir %s", dir);
        rv = tandem_error_from_errno(saved, s->errmsg, what);
        goto err_after_env;
    }
    /* NOSYNC: a commit only writes to the page cache, and the thread pool syncs (node/
     * store_sync.h), so the loop never waits on the disk. A process crash keeps every commit
     * (the page cache survives it); a power loss may tear the tree, which the unsynced mark
     * tells the next open (storage/unsynced.h). */
    rv = mdb_env_open(env, dir, MDB_NOSYNC | MDB_NOTLS | MDB_NORDAHEAD, 0600);
    if (rv != 0) {
        char what[PATH_MAX + 32];
        snprintf(what, sizeof what, "open LMDB environment %s", dir);
        rv = store_mdb_fail(s, rv, what);
        goto err_after_env;
    }
    *out = env;
    return 0;

err_after_env:
    mdb_env_close(env);
    return rv;
}

/* Opens every named database (and loads applied_index when load) in one transaction. */
static int env_open(struct tandem_store *s, MDB_env **out, const char *dir, bool load)
{
    MDB_env *env;
    MDB_txn *txn;
    int rv = env_create(s, &env, dir);
    if (rv != 0) {
        return rv;
    }
    if ((rv = mdb_txn_begin(env, NULL, 0, &txn)) != 0) {
        rv = store_mdb_fail(s, rv, "begin open transaction");
        goto err_after_env;
    }
    for (int i = 0; i < TANDEM_DB_COUNT; i++) {
        if ((rv = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i])) != 0) {
            rv = store_mdb_fail(s, rv, "open database");
            goto err_after_txn;
        }
    }
    if (load && (rv = load_meta(s, txn)) != 0) {
        goto err_after_txn;
    }
    if ((rv = mdb_txn_commit(txn)) != 0) {
        rv = store_mdb_fail(s, rv, "commit open transaction");
        goto err_after_env;
    }
    /* A new environment's first pages and the databases just created, on disk before the mark
     * can be: a store never written to carries no mark and is trusted by every boot. */
    if ((rv = mdb_env_sync(env, 1)) != 0) {
        rv = store_mdb_fail(s, rv, "sync open transaction");
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

/* Whether dir may be opened: its unsynced mark, if any, must name the running boot (the page
 * cache then still holds every commit the process made). */
static int trust_check(struct tandem_store *s, const char *dir)
{
    char boot[TANDEM_BOOT_ID_LEN + 1];
    bool present;
    int rv = tandem_boot_id(s->boot_id, s->errmsg);
    if (rv == 0) {
        rv = tandem_unsynced_read(dir, &present, boot, s->errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    if (present && strcmp(boot, s->boot_id) != 0) {
        const char *when = strcmp(boot, TANDEM_UNSYNCED_FAILED) == 0 ? "before a sync failed"
                           : boot[0] == '\0'                         ? "while its mark was written"
                                             : "before the machine restarted";
        s->untrusted = true;
        return tandem_error_set(s->errmsg, TANDEM_CORRUPT,
                                "%s holds commits never synced to disk, made %s", dir, when);
    }
    s->mark_unsynced = true;
    s->marked = present;
    return 0;
}

int tandem_store_open(struct tandem_store *s, const char *dir, size_t map_size)
{
    memset(s, 0, sizeof *s);
    s->map_size = map_size;
    if (strlen(dir) + 8 >= sizeof s->dir) {
        return tandem_error_set(s->errmsg, TANDEM_INVALID, "state directory path too long");
    }
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    int rv = recover_interrupted_swap(s, dir);
    if (rv == 0) {
        rv = trust_check(s, dir);
    }
    if (rv != 0) {
        return rv;
    }
    rv = env_open(s, &s->env, dir, true);
    tandem_assert(rv != 0 || (s->env != NULL && s->write_txn == NULL));
    return rv;
}

/* LMDB's codes for a file that is not, or no longer, a sound environment. */
static bool mdb_damage(int mdb_rc)
{
    return mdb_rc == MDB_INVALID || mdb_rc == MDB_CORRUPTED || mdb_rc == MDB_PAGE_NOTFOUND ||
           mdb_rc == MDB_VERSION_MISMATCH || mdb_rc == MDB_INCOMPATIBLE || mdb_rc == MDB_NOTFOUND;
}

/* Opens every named database of a read-only environment in one read transaction and loads the
 * meta record. */
static int readonly_dbs(struct tandem_store *s)
{
    MDB_txn *txn;
    int rv = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rv != 0) {
        return store_mdb_fail(s, rv, "begin read transaction");
    }
    for (int i = 0; i < TANDEM_DB_COUNT && rv == 0; i++) {
        int mdb_rc = mdb_dbi_open(txn, db_names[i], 0, &s->dbi[i]);
        if (mdb_rc != 0) {
            char what[64];
            snprintf(what, sizeof what, "database %s", db_names[i]);
            rv = store_mdb_fail(s, mdb_rc, what);
            rv = mdb_damage(mdb_rc) ? TANDEM_CORRUPT : rv;
        }
    }
    if (rv == 0) {
        rv = load_meta(s, txn);
    }
    if (rv != 0) {
        mdb_txn_abort(txn);
        return rv;
    }
    /* Committing a read transaction keeps its database handles for the environment. */
    if ((rv = mdb_txn_commit(txn)) != 0) {
        return store_mdb_fail(s, rv, "commit read transaction");
    }
    return 0;
}

/* Opens path read-only with flags (MDB_RDONLY and more): every named database and the meta
 * record are loaded; writes are refused. */
static int open_readonly(struct tandem_store *s, const char *path, unsigned flags, const char *what)
{
    memset(s, 0, sizeof *s);
    if (strlen(path) + 8 >= sizeof s->dir) {
        return tandem_error_set(s->errmsg, TANDEM_INVALID, "state path too long");
    }
    snprintf(s->dir, sizeof s->dir, "%s", path);
    int rv = mdb_env_create(&s->env);
    if (rv != 0) {
        s->env = NULL;
        return store_mdb_fail(s, rv, "mdb_env_create");
    }
    if ((rv = mdb_env_set_maxdbs(s->env, STORE_DBS_MAX)) == 0) {
        rv = mdb_env_open(s->env, path, MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD | flags, 0600);
    }
    if (rv != 0) {
        int code = store_mdb_fail(s, rv, what);
        mdb_env_close(s->env);
        s->env = NULL;
        return mdb_damage(rv) ? TANDEM_CORRUPT : code;
    }
    if ((rv = readonly_dbs(s)) != 0) {
        mdb_env_close(s->env);
        s->env = NULL;
    }
    s->poisoned = true; /* read-only: tandem_store_write_txn refuses */
    return rv;
}

int tandem_store_open_readonly(struct tandem_store *s, const char *file)
{
    return open_readonly(s, file, MDB_NOSUBDIR | MDB_NOLOCK, "open LMDB copy");
}

int tandem_store_open_shared(struct tandem_store *s, const char *dir)
{
    return open_readonly(s, dir, 0, "open LMDB environment read-only");
}

void tandem_store_close(struct tandem_store *s)
{
    if (s->write_txn != NULL) {
        (void)tandem_store_commit(s); /* a failure is in s->errmsg; raft replays what it lost */
    }
    if (s->env != NULL) {
        /* Everything on disk now: the next open trusts the store whatever the boot. */
        if (s->marked && !s->poisoned && tandem_store_sync(s->env, s->dir, s->errmsg) == 0 &&
            tandem_unsynced_clear(s->dir, s->errmsg) == 0) {
            s->marked = false;
        }
        mdb_env_close(s->env);
        s->env = NULL;
    }
    tandem_assert(s->write_txn == NULL);
}

int tandem_store_discard(const char *dir, char *errmsg)
{
    if (remove_env_dir(dir) != 0) {
        return tandem_error_from_errno(errno, errmsg, dir);
    }
    tandem_store_fsync_parent(dir);
    return 0;
}

int tandem_store_sync(MDB_env *env, const char *dir, char *errmsg)
{
    int rv = mdb_env_sync(env, 1);
    if (rv == 0) {
        return 0;
    }
    rv = tandem_error_from_mdb(rv, errmsg, "sync the state store");
    char ignored[TANDEM_ERRMSG_SIZE];
    (void)tandem_unsynced_mark(dir, TANDEM_UNSYNCED_FAILED, ignored);
    return rv;
}

int tandem_store_write_txn(struct tandem_store *s, MDB_txn **txn)
{
    tandem_assert(s->env != NULL);
    if (s->poisoned) {
        return tandem_error_set(s->errmsg, TANDEM_STATE,
                                "store poisoned by a failed commit or reload: reopen it");
    }
    if (s->write_txn == NULL) {
        int rv = mdb_txn_begin(s->env, NULL, 0, &s->write_txn);
        if (rv != 0) {
            s->write_txn = NULL;
            return store_mdb_fail(s, rv, "begin write transaction");
        }
        s->write_txn_opened_ns = uv_hrtime();
    }
    *txn = s->write_txn;
    tandem_assert(*txn != NULL);
    return 0;
}

int tandem_store_commit(struct tandem_store *s)
{
    if (s->write_txn == NULL) {
        return 0;
    }
    tandem_assert(s->env != NULL);
    uint64_t started_ns = s->commit_observe != NULL ? uv_hrtime() : 0;
    if (s->mark_unsynced && !s->marked) { /* once per open or install: the mark's fsyncs */
        int rv = tandem_unsynced_mark(s->dir, s->boot_id, s->errmsg);
        if (rv != 0) {
            mdb_txn_abort(s->write_txn);
            s->write_txn = NULL;
            s->poisoned = true;
            return rv;
        }
        s->marked = true;
    }
    int rv = mdb_txn_commit(s->write_txn);
    s->write_txn = NULL; /* LMDB frees the transaction whether or not the commit worked */
    if (rv != 0) {
        /* applied_index in memory now counts entries whose data was lost, and raft will not
         * apply them again in this process: writing on would commit a state with holes. */
        s->poisoned = true;
        return store_mdb_fail(s, rv, "commit write transaction");
    }
    s->commits++;
    if (s->commit_observe != NULL) {
        s->commit_observe(s->observe_data, uv_hrtime() - started_ns);
    }
    return 0;
}

bool tandem_store_commit_due(const struct tandem_store *s, uint64_t now_ns, uint64_t interval_ns)
{
    return s->write_txn != NULL && now_ns - s->write_txn_opened_ns >= interval_ns;
}

void tandem_store_abort(struct tandem_store *s)
{
    MDB_txn *txn;
    if (s->env == NULL) {
        tandem_assert(s->write_txn == NULL);
        return; /* a failed restore swap closed it: nothing to throw away or reload */
    }
    if (s->write_txn != NULL) {
        mdb_txn_abort(s->write_txn);
        s->write_txn = NULL;
    }
    /* The in-memory applied_index may now be ahead of disk: if it cannot be reloaded, later
     * applies would skip entries, so the store refuses writes until it is reopened. */
    int rv = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rv != 0) {
        (void)store_mdb_fail(s, rv, "abort: reload applied_index");
        s->poisoned = true;
        return;
    }
    if (load_meta(s, txn) != 0) {
        s->poisoned = true;
    }
    mdb_txn_abort(txn);
}

void tandem_store_poison(struct tandem_store *s)
{
    s->poisoned = true;
}

int tandem_store_set_applied(struct tandem_store *s, uint64_t index,
                             const uint8_t digest[TANDEM_DIGEST_LEN])
{
    uint8_t record[META_APPLIED_LEN];
    uint64_t index_le = htole64(index);
    MDB_txn *txn = NULL;
    /* Replay skips entries at or below applied_index, so a caller that gets here with one has
     * a bug that would rewind the state's position in the log. */
    tandem_assert(index > s->applied_index);
    int rv = tandem_store_write_txn(s, &txn);
    if (rv != 0) {
        return rv;
    }
    memcpy(record, &index_le, 8);
    memcpy(record + 8, digest, TANDEM_DIGEST_LEN);
    MDB_val key = {.mv_size = META_APPLIED_KEY_LEN, .mv_data = META_APPLIED_KEY};
    MDB_val value = {.mv_size = sizeof record, .mv_data = record};
    rv = mdb_put(txn, s->dbi[TANDEM_DB_META], &key, &value, 0);
    if (rv != 0) {
        return store_mdb_fail(s, rv, "write applied_index");
    }
    s->applied_index = index;
    memcpy(s->apply_digest, digest, TANDEM_DIGEST_LEN);
    tandem_assert(s->write_txn == txn);
    return 0;
}

int tandem_store_read_txn(struct tandem_store *s, MDB_txn **txn)
{
    tandem_assert(s->env != NULL);
    int rv = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    if (rv != 0) {
        return store_mdb_fail(s, rv, "begin read transaction");
    }
    return 0;
}

static int hash_u32(EVP_MD_CTX *ctx, size_t value, char *errmsg)
{
    tandem_assert(value <= UINT32_MAX);
    uint32_t le = htole32((uint32_t)value);
    return tandem_sha256_update(ctx, &le, sizeof le, errmsg);
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
            return store_mdb_fail(s, rv, "open cursor");
        }
        rv = mdb_cursor_get(cursor, &key, &value, MDB_FIRST);
        while (rv == 0) {
            rv = visit(arg, db, &key, &value);
            if (rv != 0) {
                mdb_cursor_close(cursor);
                return rv; /* visit filled s->errmsg and returned a tandem code */
            }
            rv = mdb_cursor_get(cursor, &key, &value, MDB_NEXT);
        }
        mdb_cursor_close(cursor);
        if (rv != MDB_NOTFOUND) {
            return store_mdb_fail(s, rv, "walk database");
        }
    }
    return 0;
}

struct digest_walk {
    EVP_MD_CTX *ctx; /* owned */
    int db;          /* the database whose name was hashed last, -1 before the first */
    int skip;        /* a database left out (-1: none) */
    char *errmsg;    /* borrowed: the store's */
};

static int digest_visit(void *arg, int db, const MDB_val *key, const MDB_val *value)
{
    struct digest_walk *walk = arg;
    int rv = 0;
    if (db == walk->skip) {
        return 0;
    }
    if (walk->db != db) {
        tandem_assert(db > walk->db); /* state_walk goes through the databases in order */
        rv = tandem_sha256_update(walk->ctx, db_names[db], strlen(db_names[db]) + 1, walk->errmsg);
        walk->db = db;
    }
    if (rv == 0) {
        rv = hash_u32(walk->ctx, key->mv_size, walk->errmsg);
    }
    if (rv == 0) {
        rv = tandem_sha256_update(walk->ctx, key->mv_data, key->mv_size, walk->errmsg);
    }
    if (rv == 0) {
        rv = hash_u32(walk->ctx, value->mv_size, walk->errmsg);
    }
    if (rv == 0) {
        rv = tandem_sha256_update(walk->ctx, value->mv_data, value->mv_size, walk->errmsg);
    }
    return rv;
}

int tandem_store_state_digest(struct tandem_store *s, MDB_txn *txn, uint8_t out[TANDEM_DIGEST_LEN])
{
    return tandem_store_digest_without(s, txn, -1, out);
}

int tandem_store_digest_without(struct tandem_store *s, MDB_txn *txn, int skip_db,
                                uint8_t out[TANDEM_DIGEST_LEN])
{
    struct digest_walk walk = {.db = -1, .skip = skip_db, .errmsg = s->errmsg};
    int rv = tandem_sha256_begin(&walk.ctx, s->errmsg);
    if (rv != 0) {
        tandem_error_wrap(s->errmsg, "state digest");
        return rv;
    }
    rv = state_walk(s, txn, digest_visit, &walk);
    if (rv != 0) {
        EVP_MD_CTX_free(walk.ctx);
        return rv;
    }
    return tandem_sha256_end(&walk.ctx, out, s->errmsg);
}

struct snapshot_walk {
    struct tandem_store *s;
    struct digest_walk digest;
    uint8_t *buf; /* owned until handed to the caller */
    size_t len, cap;
    uint64_t records;
    int fd;           /* -1: the whole snapshot in buf; else buf is a chunk flushed to fd */
    uint64_t flushed; /* bytes of the snapshot already written to fd */
    struct tandem_writeback pace;
};

/* write(2) until every byte went, or a tandem code with errmsg filled. */
static int write_full(int fd, const void *buf, size_t len, char *errmsg)
{
    const uint8_t *at = buf;
    while (len > 0) {
        ssize_t n = write(fd, at, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return tandem_error_from_errno(errno, errmsg, "snapshot file write");
        }
        at += n;
        len -= (size_t)n;
    }
    return 0;
}

static int snapshot_flush(struct snapshot_walk *w)
{
    int rv = write_full(w->fd, w->buf, w->len, w->s->errmsg);
    if (rv == 0) {
        w->flushed += w->len;
        w->len = 0;
        tandem_writeback_note(&w->pace, w->flushed);
    }
    return rv;
}

static int snapshot_reserve(struct snapshot_walk *w, size_t more)
{
    if (w->fd >= 0 && w->len > 0 && w->len + more > SNAPSHOT_FLUSH_BYTES) {
        int rv = snapshot_flush(w);
        if (rv != 0) {
            return rv;
        }
    }
    if (w->len + more <= w->cap) {
        return 0;
    }
    if (w->fd < 0 && w->len + more > TANDEM_SNAPSHOT_BYTES_MAX) {
        return tandem_error_set(w->s->errmsg, TANDEM_LIMIT, "snapshot would exceed %zu bytes",
                                TANDEM_SNAPSHOT_BYTES_MAX);
    }
    size_t cap = w->cap == 0 ? 64 * 1024 : w->cap;
    while (cap < w->len + more) {
        cap *= 2;
    }
    uint8_t *grown = realloc(w->buf, cap);
    if (grown == NULL) {
        return tandem_error_set(w->s->errmsg, TANDEM_NOMEM, "snapshot: out of memory (%zu bytes)",
                                cap);
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
    tandem_assert(w->len <= w->cap);
    return digest_visit(&w->digest, db, key, value);
}

/* Covers the header too: a flipped applied_index or digest must not pass as valid. */
static int snapshot_checksum(const struct snapshot_header *header, const void *payload, size_t len,
                             uint8_t out[TANDEM_DIGEST_LEN], char *errmsg)
{
    EVP_MD_CTX *ctx;
    int rv = tandem_sha256_begin(&ctx, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = tandem_sha256_update(ctx, header, offsetof(struct snapshot_header, checksum), errmsg);
    if (rv == 0) {
        rv = tandem_sha256_update(ctx, payload, len, errmsg);
    }
    if (rv != 0) {
        EVP_MD_CTX_free(ctx);
        return rv;
    }
    return tandem_sha256_end(&ctx, out, errmsg);
}

static int header_read(const void *buf, size_t len, struct snapshot_header *header, char *errmsg);

/* Fills the header of a snapshot whose records are in w (payload: all of them, len bytes), then
 * checksums header and payload into header. */
static int snapshot_header_seal(struct snapshot_walk *w, const struct tandem_store *view,
                                const uint8_t *payload, size_t len, struct snapshot_header *out)
{
    struct snapshot_header header;
    memset(&header, 0, sizeof header);
    memcpy(header.magic, SNAPSHOT_MAGIC, 8);
    header.format = htole32(TANDEM_SNAPSHOT_FORMAT);
    header.db_count = htole32(TANDEM_DB_COUNT);
    header.applied_index = htole64(view->applied_index);
    header.records = htole64(w->records);
    header.payload_len = htole64(len);
    memcpy(header.apply_digest, view->apply_digest, TANDEM_DIGEST_LEN);
    int rv = tandem_sha256_end(&w->digest.ctx, header.state_digest, w->s->errmsg);
    if (rv == 0) {
        rv = snapshot_checksum(&header, payload, len, header.checksum, w->s->errmsg);
    }
    if (rv == 0) {
        *out = header;
    }
    return rv;
}

static int snapshot_seal(struct snapshot_walk *w, const struct tandem_store *view)
{
    struct snapshot_header header;
    int rv = snapshot_header_seal(w, view, w->buf + sizeof header, w->len - sizeof header, &header);
    if (rv == 0) {
        memcpy(w->buf, &header, sizeof header);
    }
    return rv;
}

/* Starts a snapshot walk: the digest, the applied state txn sees (into view), and the zeroed
 * place of the header, written last. */
static int snapshot_begin(struct snapshot_walk *w, struct tandem_store *view, MDB_txn *txn)
{
    struct tandem_store *s = w->s;
    s->errmsg[0] = '\0';
    int rv = tandem_sha256_begin(&w->digest.ctx, s->errmsg);
    if (rv == 0 && (rv = load_meta(view, txn)) != 0) {
        memcpy(s->errmsg, view->errmsg, sizeof s->errmsg);
    }
    if (rv == 0 && (rv = snapshot_reserve(w, sizeof(struct snapshot_header))) == 0) {
        memset(w->buf, 0, sizeof(struct snapshot_header));
        w->len = sizeof(struct snapshot_header);
    }
    return rv;
}

int tandem_store_snapshot_write(struct tandem_store *s, MDB_txn *txn, void **out, size_t *out_len)
{
    struct snapshot_walk w = {.s = s, .digest = {.db = -1, .errmsg = s->errmsg}, .fd = -1};
    struct tandem_store view = *s; /* applied state as seen by txn, not the open write txn */
    int rv = snapshot_begin(&w, &view, txn);
    if (rv != 0 || (rv = state_walk(s, txn, snapshot_visit, &w)) != 0 ||
        (rv = snapshot_seal(&w, &view)) != 0) {
        goto err_after_ctx;
    }
    /* Check the header after writing it, the way a receiver will (debug and sim builds: it
     * hashes the whole snapshot again). */
    struct snapshot_header check;
    char check_errmsg[TANDEM_ERRMSG_SIZE];
    tandem_invariant(header_read(w.buf, w.len, &check, check_errmsg) == 0 &&
                     le64toh(check.applied_index) == view.applied_index);
    *out = w.buf;
    *out_len = w.len;
    return 0;

err_after_ctx:
    if (s->errmsg[0] == '\0') {
        snprintf(s->errmsg, sizeof s->errmsg, "snapshot failed: %s", tandem_strerror(rv));
    }
    EVP_MD_CTX_free(w.digest.ctx);
    free(w.buf);
    return rv;
}

/* The snapshot file's pages mapped read-only: the checksum and the reader's passes read it
 * there, so a snapshot of gigabytes never needs as much heap. */
int tandem_store_snapshot_map(const char *path, struct tandem_store_map *out, char *errmsg)
{
    struct stat st;
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        int rv = tandem_error_from_errno(errno, errmsg, "snapshot file");
        if (fd >= 0) {
            (void)close(fd);
        }
        return rv;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(struct snapshot_header)) {
        (void)close(fd);
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "snapshot file %.200s: %lld bytes", path,
                                (long long)st.st_size);
    }
    void *base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    (void)close(fd); /* the mapping keeps the file */
    if (base == MAP_FAILED) {
        return tandem_error_from_errno(saved, errmsg, "snapshot file mmap");
    }
    (void)madvise(base, (size_t)st.st_size, MADV_SEQUENTIAL);
    out->base = base;
    out->len = (size_t)st.st_size;
    return 0;
}

void tandem_store_snapshot_unmap(struct tandem_store_map *m)
{
    if (m->base != NULL) {
        (void)munmap(m->base, m->len);
    }
    memset(m, 0, sizeof *m);
}

int tandem_store_snapshot_write_fd(struct tandem_store *s, MDB_txn *txn, int fd, uint64_t *out_len,
                                   uint64_t *out_index, uint8_t checksum[TANDEM_DIGEST_LEN])
{
    struct snapshot_walk w = {.s = s, .digest = {.db = -1, .errmsg = s->errmsg}, .fd = fd};
    tandem_writeback_init(&w.pace, fd);
    struct tandem_store view = *s;
    struct snapshot_header header;
    struct tandem_store_map map = {0};
    int rv;

    if ((rv = snapshot_begin(&w, &view, txn)) != 0 ||
        (rv = state_walk(s, txn, snapshot_visit, &w)) != 0 || (rv = snapshot_flush(&w)) != 0) {
        goto out;
    }
    /* The payload is on disk now: checksum it from the page cache, through a mapping. */
    void *base = mmap(NULL, (size_t)w.flushed, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        rv = tandem_error_from_errno(errno, s->errmsg, "snapshot file mmap");
        goto out;
    }
    map = (struct tandem_store_map){.base = base, .len = (size_t)w.flushed};
    const uint8_t *bytes = map.base;
    if ((rv = snapshot_header_seal(&w, &view, bytes + sizeof header, map.len - sizeof header,
                                   &header)) != 0) {
        goto out;
    }
    if (pwrite(fd, &header, sizeof header, 0) != (ssize_t)sizeof header) {
        rv = tandem_error_from_errno(errno != 0 ? errno : EIO, s->errmsg, "snapshot header write");
        goto out;
    }
    if (fdatasync(fd) != 0) {
        rv = tandem_error_from_errno(errno, s->errmsg, "snapshot file fdatasync");
        goto out;
    }
    struct snapshot_header check;
    char check_errmsg[TANDEM_ERRMSG_SIZE];
    tandem_invariant(header_read(map.base, map.len, &check, check_errmsg) == 0 &&
                     le64toh(check.applied_index) == view.applied_index);
    *out_len = w.flushed;
    *out_index = view.applied_index;
    memcpy(checksum, header.checksum, TANDEM_DIGEST_LEN);

out:
    if (rv != 0 && s->errmsg[0] == '\0') {
        snprintf(s->errmsg, sizeof s->errmsg, "snapshot failed: %s", tandem_strerror(rv));
    }
    tandem_store_snapshot_unmap(&map);
    EVP_MD_CTX_free(w.digest.ctx); /* NULL once sealed */
    free(w.buf);
    return rv;
}

uint64_t tandem_store_used_bytes(MDB_env *env)
{
    MDB_envinfo info;
    MDB_stat stat;
    if (mdb_env_info(env, &info) != 0 || mdb_env_stat(env, &stat) != 0) {
        return 0;
    }
    return ((uint64_t)info.me_last_pgno + 1) * stat.ms_psize;
}

/* The header of buf, its fields checked against len; the checksum is not verified. */
static int header_peek(const void *buf, size_t len, struct snapshot_header *header, char *errmsg)
{
    if (len < sizeof *header) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "snapshot too short: %zu bytes", len);
    }
    memcpy(header, buf, sizeof *header);
    if (memcmp(header->magic, SNAPSHOT_MAGIC, 8) != 0) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "not a tandem snapshot (bad magic)");
    }
    if (le32toh(header->format) != TANDEM_SNAPSHOT_FORMAT) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "unsupported snapshot format %u",
                                le32toh(header->format));
    }
    if (le64toh(header->payload_len) != len - sizeof *header) {
        return tandem_error_set(
            errmsg, TANDEM_CORRUPT, "snapshot length mismatch: header says %llu, have %zu",
            (unsigned long long)le64toh(header->payload_len), len - sizeof *header);
    }
    return 0;
}

static int header_read(const void *buf, size_t len, struct snapshot_header *header, char *errmsg)
{
    uint8_t sha[TANDEM_DIGEST_LEN];
    int rv = header_peek(buf, len, header, errmsg);
    if (rv == 0) {
        rv = snapshot_checksum(header, (const uint8_t *)buf + sizeof *header, len - sizeof *header,
                               sha, errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    if (memcmp(sha, header->checksum, TANDEM_DIGEST_LEN) != 0) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "snapshot checksum mismatch");
    }
    return 0;
}

int tandem_store_snapshot_peek(const void *buf, size_t len, uint64_t *applied_index,
                               uint8_t checksum[TANDEM_DIGEST_LEN], char *errmsg)
{
    struct snapshot_header header;
    int rv = header_peek(buf, len, &header, errmsg);
    if (rv == 0) {
        *applied_index = le64toh(header.applied_index);
        memcpy(checksum, header.checksum, TANDEM_DIGEST_LEN);
    }
    return rv;
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

/* Reads the record frame at *offset of payload into key and value, checking its bounds before
 * anything is copied: the payload passed its checksum, but a sender's bug must not become an
 * out-of-bounds read. Returns 0, or TANDEM_CORRUPT with s->errmsg filled. */
static int restore_frame_next(struct tandem_store *s, const uint8_t *payload, size_t len,
                              size_t *offset, uint64_t done, int *db, MDB_val *key, MDB_val *value)
{
    struct record_frame frame;
    if (len - *offset < sizeof frame) {
        return tandem_error_set(s->errmsg, TANDEM_CORRUPT, "restore: truncated record frame");
    }
    memcpy(&frame, payload + *offset, sizeof frame);
    *offset += sizeof frame;
    size_t key_len = le32toh(frame.key_len), value_len = le32toh(frame.value_len);
    if (frame.db == TANDEM_DB_META || frame.db >= TANDEM_DB_COUNT ||
        len - *offset < key_len + value_len) {
        return tandem_error_set(s->errmsg, TANDEM_CORRUPT, "restore: bad record %llu",
                                (unsigned long long)done);
    }
    *db = frame.db;
    key->mv_size = key_len;
    key->mv_data = (void *)(payload + *offset);
    value->mv_size = value_len;
    value->mv_data = (void *)(payload + *offset + key_len);
    *offset += key_len + value_len;
    tandem_assert(*offset <= len);
    return 0;
}

/* A restore's commits are not synced (MDB_NOSYNC) until the end: without pacing, the whole state
 * would be dirty at once and flushed in one burst (storage/writeback.h). Wait for the writeback
 * started after the commit before, then start this one's. */
static void restore_pace(MDB_env *env)
{
    int fd;
    if (mdb_env_get_fd(env, &fd) == 0) {
        (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE);
    }
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
            return store_mdb_fail(s, rv, "restore: begin");
        }
        for (unsigned n = 0; n < RESTORE_RECORDS_PER_TXN && offset < len; n++) {
            MDB_val key, value;
            int db = 0; /* set by restore_frame_next; zero quiets -Wmaybe-uninitialized at -O2 */
            rv = restore_frame_next(s, payload, len, &offset, done, &db, &key, &value);
            if (rv == 0 && (rv = mdb_put(txn, s->dbi[db], &key, &value, MDB_APPEND)) != 0) {
                rv = store_mdb_fail(s, rv, "restore: put");
            }
            if (rv != 0) {
                mdb_txn_abort(txn);
                return rv;
            }
            done++;
        }
        if ((rv = mdb_txn_commit(txn)) != 0) {
            return store_mdb_fail(s, rv, "restore: commit");
        }
        restore_pace(env);
    }
    if (done != records) {
        return tandem_error_set(s->errmsg, TANDEM_CORRUPT,
                                "restore: %llu records, header says %llu", (unsigned long long)done,
                                (unsigned long long)records);
    }
    return 0;
}

/* Fills fresh (open on dir.new) from the snapshot and checks its state digest. */
static int restore_fill(struct tandem_store *fresh, const uint8_t *buf, size_t len,
                        const struct snapshot_header *header)
{
    MDB_txn *txn;
    uint8_t digest[TANDEM_DIGEST_LEN];
    int rv = restore_records(fresh, fresh->env, buf + sizeof *header, len - sizeof *header,
                             le64toh(header->records));
    if (rv == 0) {
        rv = tandem_store_set_applied(fresh, le64toh(header->applied_index), header->apply_digest);
    }
    if (rv == 0) {
        rv = tandem_store_commit(fresh);
    }
    if (rv != 0 || (rv = tandem_store_read_txn(fresh, &txn)) != 0) {
        return rv;
    }
    rv = tandem_store_state_digest(fresh, txn, digest);
    mdb_txn_abort(txn);
    if (rv == 0 && memcmp(digest, header->state_digest, TANDEM_DIGEST_LEN) != 0) {
        rv = tandem_error_set(fresh->errmsg, TANDEM_CORRUPT, "restored state digest mismatch");
    }
    if (rv == 0 && (rv = mdb_env_sync(fresh->env, 1)) != 0) {
        rv = store_mdb_fail(fresh, rv, "sync");
    }
    return rv;
}

/* Builds dir.new from the snapshot and checks its state digest against the header; errmsg
 * (TANDEM_ERRMSG_SIZE bytes) says why not. Touches no open store: runs on any thread. */
static int restore_build(size_t map_size, const char *next, const uint8_t *buf, size_t len,
                         const struct snapshot_header *header, char *errmsg)
{
    struct tandem_store fresh = {.map_size = map_size};
    (void)remove_env_dir(next); /* a stale one from a crash; env_open reports what is left */
    int rv = env_open(&fresh, &fresh.env, next, false);
    if (rv == 0) {
        rv = restore_fill(&fresh, buf, len, header);
        tandem_store_close(&fresh);
    }
    if (rv != 0) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "restore: %.200s", fresh.errmsg);
        (void)remove_env_dir(next);
    }
    return rv;
}

int tandem_store_restore_prepare(const char *dir, size_t map_size, const void *buf, size_t len,
                                 struct tandem_store_prepared *out, char *errmsg)
{
    struct snapshot_header header;
    char next[PATH_MAX + 8];
    memset(out, 0, sizeof *out);
    int rv = header_read(buf, len, &header, errmsg);
    if (rv != 0) {
        return rv;
    }
    snprintf(next, sizeof next, "%s.new", dir);
    if ((rv = restore_build(map_size, next, buf, len, &header, errmsg)) != 0) {
        return rv;
    }
    *out = (struct tandem_store_prepared){.buf = buf, .len = len, .ready = true};
    memcpy(out->checksum, header.checksum, sizeof out->checksum);
    return 0;
}

bool tandem_store_copy_begin(struct tandem_store *s)
{
    /* Counted first, then checked: a drain that set swapping before sees this count (and waits
     * for it to go), or this sees swapping and takes it back. */
    atomic_fetch_add(&s->copies, 1);
    if (atomic_load(&s->swapping)) {
        atomic_fetch_sub(&s->copies, 1);
        return false;
    }
    return true;
}

void tandem_store_copy_end(struct tandem_store *s)
{
    tandem_assert(atomic_load(&s->copies) > 0);
    atomic_fetch_sub(&s->copies, 1);
}

/* Readers of s->env on the thread pool (backups, pool reads, the audit walk, the sync): closing
 * it under one would crash. Waits until none is left, up to TANDEM_STORE_COPY_WAIT_MS; then
 * TANDEM_BUSY with errmsg saying what. An install drains them on the pool beforehand
 * (tandem_store_copies_drain), so that its swap on the loop finds none. */
static int copies_wait(struct tandem_store *s, char *errmsg, const char *what)
{
    for (unsigned waited_ms = 0; atomic_load(&s->copies) > 0; waited_ms += 10) {
        if (waited_ms >= TANDEM_STORE_COPY_WAIT_MS) {
            return tandem_error_set(errmsg, TANDEM_BUSY, "%s", what);
        }
        (void)usleep(10 * 1000);
    }
    return 0;
}

int tandem_store_copies_drain(struct tandem_store *s, char *errmsg)
{
    atomic_store(&s->swapping, true);
    return copies_wait(s, errmsg, "snapshot install: a reader of the store is still running");
}

void tandem_store_swap_done(struct tandem_store *s)
{
    atomic_store(&s->swapping, false);
}

int tandem_store_restore(struct tandem_store *s, const void *buf, size_t len)
{
    return tandem_store_restore_prepared(s, buf, len, NULL);
}

int tandem_store_restore_prepared(struct tandem_store *s, const void *buf, size_t len,
                                  const struct tandem_store_prepared *prepared)
{
    struct snapshot_header header;
    char next[PATH_MAX + 8], old[PATH_MAX + 8];
    snprintf(next, sizeof next, "%s.new", s->dir);
    snprintf(old, sizeof old, "%s.old", s->dir);
    /* The prepare verified these very bytes (raft hands restore the buffer it put). */
    int rv = header_peek(buf, len, &header, s->errmsg);
    bool ready = rv == 0 && prepared != NULL && prepared->ready && prepared->buf == buf &&
                 prepared->len == len &&
                 memcmp(prepared->checksum, header.checksum, sizeof header.checksum) == 0;
    if (!ready && prepared != NULL && prepared->ready) {
        (void)remove_env_dir(next); /* built for another buffer */
    }
    if (rv == 0 && !ready) {
        rv = header_read(buf, len, &header, s->errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    uint64_t index = le64toh(header.applied_index);
    if ((rv = tandem_store_commit(s)) != 0) {
        return rv;
    }
    if (s->applied_index >= index) {
        if (ready) {
            (void)remove_env_dir(next);
        }
        return 0; /* already at or past it: replay skips what the snapshot covers */
    }
    if (!ready && (rv = restore_build(s->map_size, next, buf, len, &header, s->errmsg)) != 0) {
        return rv;
    }
    if ((rv = copies_wait(s, s->errmsg, "restore: a backup copy still reads the store")) != 0) {
        (void)remove_env_dir(next);
        return rv;
    }
    mdb_env_close(s->env);
    s->env = NULL;
    if (rename(s->dir, old) != 0 || rename(next, s->dir) != 0) {
        return tandem_error_from_errno(errno, s->errmsg, "restore: swap directories");
    }
    tandem_store_fsync_parent(s->dir);
    old_env_discard(s, old, index);
    s->marked = false; /* the mark went with the old directory; the new one is all synced */
    rv = env_open(s, &s->env, s->dir, true);
    /* The state now is the snapshot's: its index and apply digest, nothing half-written. */
    tandem_assert(rv != 0 ||
                  (s->applied_index == index && s->write_txn == NULL &&
                   memcmp(s->apply_digest, header.apply_digest, TANDEM_DIGEST_LEN) == 0));
    return rv;
}
