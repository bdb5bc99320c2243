/* Unit tests for the LMDB state store: commits, abort, digests, snapshot, restore and swap
 * recovery. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>

#include "storage/store.h"

#define MAP_SIZE             ((size_t)256 * 1024 * 1024) /* big enough for the multi-txn restore */
#define FD_MAX               16                          /* descriptors nftw may hold open */
#define KEY_TEXT_MAX         64                          /* bytes of a generated key or value */
#define MANY_RECORDS         70000 /* more than one restore transaction's worth (65536) */
#define SNAPSHOT_HEADER_SIZE 136   /* magic 8, format 4, dbs 4, index/records/len 24, digests 96 */
#define HEADER_INDEX_OFFSET  16    /* applied_index in the snapshot header */
#define HEADER_APPLY_OFFSET  40    /* apply_digest in the snapshot header */
#define TINY_MAP_SIZE        ((size_t)1024 * 1024) /* a map LMDB fills within a few hundred puts */
#define BIG_VALUE_SIZE       4000                  /* bytes of one value filling the tiny map */
#define FILL_PUTS_MAX        1000                  /* bound on the puts before MDB_MAP_FULL */

/* One test's scratch directory holding the store directories. */
struct fixture {
    char root[PATH_MAX];
    char dir_a[PATH_MAX];
    char dir_b[PATH_MAX];
    struct tandem_store a;
    struct tandem_store b;
    bool a_open, b_open;
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    assert_non_null(f);
    snprintf(f->root, sizeof f->root, "%s/tandem-store-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir_a, sizeof f->dir_a, "%s/a", f->root);
    snprintf(f->dir_b, sizeof f->dir_b, "%s/b", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->a_open) {
        tandem_store_close(&f->a);
    }
    if (f->b_open) {
        tandem_store_close(&f->b);
    }
    assert_int_equal(nftw(f->root, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS), 0);
    free(f);
    return 0;
}

static void open_store(struct tandem_store *s, const char *dir, bool *is_open)
{
    int rv = tandem_store_open(s, dir, MAP_SIZE);
    if (rv != 0) {
        fail_msg("tandem_store_open %s: %d %s", dir, rv, s->errmsg);
    }
    *is_open = true;
}

static void close_store(struct tandem_store *s, bool *is_open)
{
    tandem_store_close(s);
    *is_open = false;
}

static void put(struct tandem_store *s, const char *key, const char *value)
{
    MDB_txn *txn;
    assert_int_equal(tandem_store_write_txn(s, &txn), 0);
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key};
    MDB_val v = {.mv_size = strlen(value), .mv_data = (void *)value};
    assert_int_equal(mdb_put(txn, s->dbi[TANDEM_DB_KV], &k, &v, 0), 0);
}

/* The committed value of key, or NULL; *buf receives a copy. */
static const char *get(struct tandem_store *s, const char *key, char *buf, size_t size)
{
    MDB_txn *txn;
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key}, v;
    assert_int_equal(tandem_store_read_txn(s, &txn), 0);
    int rv = mdb_get(txn, s->dbi[TANDEM_DB_KV], &k, &v);
    const char *out = NULL;
    if (rv == 0) {
        assert_true(v.mv_size < size);
        memcpy(buf, v.mv_data, v.mv_size);
        buf[v.mv_size] = '\0';
        out = buf;
    } else {
        assert_int_equal(rv, MDB_NOTFOUND);
    }
    mdb_txn_abort(txn);
    return out;
}

static void digest_of(struct tandem_store *s, uint8_t out[TANDEM_DIGEST_LEN])
{
    MDB_txn *txn;
    assert_int_equal(tandem_store_read_txn(s, &txn), 0);
    assert_int_equal(tandem_store_state_digest(s, txn, out), 0);
    mdb_txn_abort(txn);
}

static void fill_digest(uint8_t digest[TANDEM_DIGEST_LEN], uint8_t seed)
{
    for (size_t i = 0; i < TANDEM_DIGEST_LEN; i++) {
        digest[i] = (uint8_t)(seed + i * 7);
    }
}

static void set_applied(struct tandem_store *s, uint64_t index, uint8_t seed)
{
    uint8_t digest[TANDEM_DIGEST_LEN];
    fill_digest(digest, seed);
    assert_int_equal(tandem_store_set_applied(s, index, digest), 0);
    assert_int_equal(s->applied_index, index);
    assert_memory_equal(s->apply_digest, digest, TANDEM_DIGEST_LEN);
}

static void assert_applied(const struct tandem_store *s, uint64_t index, uint8_t seed)
{
    uint8_t digest[TANDEM_DIGEST_LEN];
    fill_digest(digest, seed);
    assert_int_equal(s->applied_index, index);
    assert_memory_equal(s->apply_digest, digest, TANDEM_DIGEST_LEN);
}

static bool path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void snapshot_of(struct tandem_store *s, void **buf, size_t *len)
{
    MDB_txn *txn;
    assert_int_equal(tandem_store_read_txn(s, &txn), 0);
    int rv = tandem_store_snapshot_write(s, txn, buf, len);
    mdb_txn_abort(txn);
    if (rv != 0) {
        fail_msg("snapshot_write: %d %s", rv, s->errmsg);
    }
}

/* Store a: three keys at applied_index 42, committed. */
static void populate_a(struct fixture *f)
{
    open_store(&f->a, f->dir_a, &f->a_open);
    put(&f->a, "alpha", "1");
    put(&f->a, "beta", "22");
    put(&f->a, "gamma", "333");
    set_applied(&f->a, 42, 0xA0);
    assert_int_equal(tandem_store_commit(&f->a), 0);
}

/* The unsynced mark's text in dir ("" when there is none). */
static void mark_of(const char *dir, char *out, size_t size)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s", dir, TANDEM_UNSYNCED_FILE);
    out[0] = '\0';
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, out, size - 1);
        out[n > 0 ? n : 0] = '\0';
        out[strcspn(out, "\n")] = '\0';
        close(fd);
    }
}

static void write_mark(const char *dir, const char *text)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s", dir, TANDEM_UNSYNCED_FILE);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_unsynced_mark_from_first_commit_to_clean_close(void **state)
{
    struct fixture *f = *state;
    char boot[TANDEM_BOOT_ID_LEN + 1], errmsg[TANDEM_ERRMSG_SIZE], mark[64];
    assert_int_equal(tandem_boot_id(boot, errmsg), 0);
    open_store(&f->a, f->dir_a, &f->a_open);
    mark_of(f->dir_a, mark, sizeof mark);
    assert_string_equal(mark, ""); /* nothing unsynced yet: a store never written is trusted */
    put(&f->a, "k", "v");
    set_applied(&f->a, 1, 0x01);
    assert_int_equal(tandem_store_commit(&f->a), 0);
    mark_of(f->dir_a, mark, sizeof mark);
    assert_string_equal(mark, boot); /* on disk before the commit was */
    assert_true(f->a.marked);
    close_store(&f->a, &f->a_open);
    mark_of(f->dir_a, mark, sizeof mark);
    assert_string_equal(mark, ""); /* synced at the close */

    /* A crash (no close) in this boot: the page cache kept every commit, so it is trusted. */
    write_mark(f->dir_a, boot);
    open_store(&f->a, f->dir_a, &f->a_open);
    assert_true(f->a.marked && !f->a.untrusted);
    assert_applied(&f->a, 1, 0x01);
    /* A poisoned store's close leaves its mark for the next open to judge. */
    tandem_store_poison(&f->a);
    close_store(&f->a, &f->a_open);
    mark_of(f->dir_a, mark, sizeof mark);
    assert_string_equal(mark, boot);
}

static void test_unsynced_commits_of_another_boot_are_not_trusted(void **state)
{
    struct fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE], text[KEY_TEXT_MAX], path[PATH_MAX + 16];
    const char *marks[] = {"00000000-0000-4000-8000-000000000000\n", TANDEM_UNSYNCED_FAILED "\n",
                           "" /* torn: created, never written */};
    populate_a(f);
    close_store(&f->a, &f->a_open);
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
        write_mark(f->dir_a, marks[i]);
        int rv = tandem_store_open(&f->a, f->dir_a, MAP_SIZE);
        assert_int_equal(rv, TANDEM_CORRUPT);
        assert_true(f->a.untrusted && f->a.env == NULL);
        assert_non_null(strstr(f->a.errmsg, "never synced"));
    }
    /* Refused, not touched: the store is as it was until the owner discards it. */
    snprintf(path, sizeof path, "%s/data.mdb", f->dir_a);
    assert_true(path_exists(path));
    assert_int_equal(tandem_store_discard(f->dir_a, errmsg), 0);
    assert_false(path_exists(f->dir_a));
    open_store(&f->a, f->dir_a, &f->a_open);
    assert_int_equal(f->a.applied_index, 0);
    assert_null(get(&f->a, "alpha", text, sizeof text));
}

static void test_an_installed_snapshot_is_marked_at_its_first_commit(void **state)
{
    struct fixture *f = *state;
    void *buf;
    size_t len;
    char boot[TANDEM_BOOT_ID_LEN + 1], errmsg[TANDEM_ERRMSG_SIZE], mark[64];
    assert_int_equal(tandem_boot_id(boot, errmsg), 0);
    populate_a(f);
    snapshot_of(&f->a, &buf, &len);
    open_store(&f->b, f->dir_b, &f->b_open);
    put(&f->b, "old", "x");
    set_applied(&f->b, 3, 0x03);
    assert_int_equal(tandem_store_commit(&f->b), 0);
    assert_true(f->b.marked);
    /* The swapped-in directory was synced whole: no mark until something is committed on it. */
    assert_int_equal(tandem_store_restore(&f->b, buf, len), 0);
    free(buf);
    assert_false(f->b.marked);
    mark_of(f->dir_b, mark, sizeof mark);
    assert_string_equal(mark, "");
    put(&f->b, "new", "y");
    set_applied(&f->b, 43, 0x43);
    assert_int_equal(tandem_store_commit(&f->b), 0);
    mark_of(f->dir_b, mark, sizeof mark);
    assert_string_equal(mark, boot);
}

static void test_open_close_empty(void **state)
{
    struct fixture *f = *state;
    uint8_t zero[TANDEM_DIGEST_LEN] = {0};
    char path[PATH_MAX + 16];
    open_store(&f->a, f->dir_a, &f->a_open);
    assert_int_equal(f->a.applied_index, 0);
    assert_memory_equal(f->a.apply_digest, zero, TANDEM_DIGEST_LEN);
    assert_null(f->a.write_txn);
    close_store(&f->a, &f->a_open);
    snprintf(path, sizeof path, "%s/data.mdb", f->dir_a);
    assert_true(path_exists(path));
    open_store(&f->a, f->dir_a, &f->a_open);
    assert_int_equal(f->a.applied_index, 0);
}

static void test_commit_persists_meta(void **state)
{
    struct fixture *f = *state;
    char buf[KEY_TEXT_MAX];
    open_store(&f->a, f->dir_a, &f->a_open);
    put(&f->a, "k", "v");
    set_applied(&f->a, 7, 0x11);
    assert_non_null(f->a.write_txn);
    assert_int_equal(tandem_store_commit(&f->a), 0);
    assert_null(f->a.write_txn);
    assert_int_equal(f->a.commits, 1);
    /* Committing with no open transaction is a no-op. */
    assert_int_equal(tandem_store_commit(&f->a), 0);
    assert_int_equal(f->a.commits, 1);
    close_store(&f->a, &f->a_open);

    open_store(&f->a, f->dir_a, &f->a_open);
    assert_applied(&f->a, 7, 0x11);
    assert_string_equal(get(&f->a, "k", buf, sizeof buf), "v");
}

/* A second, read-only handle beside the writer (what `backup restore --to-index` does to a live
 * node's state): it sees the committed meta, not the open transaction, and refuses writes. */
static void test_open_shared_beside_the_writer(void **state)
{
    struct fixture *f = *state;
    struct tandem_store shared;
    MDB_txn *txn;
    populate_a(f);
    put(&f->a, "delta", "4444");
    set_applied(&f->a, 43, 0xB0); /* pending: not for the shared reader */
    assert_int_equal(tandem_store_open_shared(&shared, f->dir_a), 0);
    assert_applied(&shared, 42, 0xA0);
    assert_int_equal(tandem_store_write_txn(&shared, &txn), TANDEM_STATE);
    tandem_store_close(&shared);
    assert_int_equal(tandem_store_commit(&f->a), 0);
    assert_int_equal(tandem_store_open_shared(&shared, f->dir_a), 0);
    assert_applied(&shared, 43, 0xB0);
    tandem_store_close(&shared);
    assert_int_equal(tandem_store_open_shared(&shared, f->dir_b),
                     TANDEM_STORE); /* no environment */
    tandem_store_close(&shared);
}

static void test_close_commits_pending(void **state)
{
    struct fixture *f = *state;
    char buf[KEY_TEXT_MAX];
    open_store(&f->a, f->dir_a, &f->a_open);
    put(&f->a, "k", "v");
    set_applied(&f->a, 3, 0x33);
    close_store(&f->a, &f->a_open);
    open_store(&f->a, f->dir_a, &f->a_open);
    assert_applied(&f->a, 3, 0x33);
    assert_string_equal(get(&f->a, "k", buf, sizeof buf), "v");
}

static void test_abort_drops_uncommitted(void **state)
{
    struct fixture *f = *state;
    char buf[KEY_TEXT_MAX];
    open_store(&f->a, f->dir_a, &f->a_open);
    put(&f->a, "kept", "1");
    set_applied(&f->a, 5, 0x55);
    assert_int_equal(tandem_store_commit(&f->a), 0);

    put(&f->a, "dropped", "2");
    put(&f->a, "kept", "changed");
    set_applied(&f->a, 6, 0x66);
    tandem_store_abort(&f->a);
    assert_null(f->a.write_txn);
    assert_applied(&f->a, 5, 0x55);
    assert_null(get(&f->a, "dropped", buf, sizeof buf));
    assert_string_equal(get(&f->a, "kept", buf, sizeof buf), "1");

    /* The store stays usable after an abort. */
    put(&f->a, "after", "3");
    set_applied(&f->a, 6, 0x67);
    assert_int_equal(tandem_store_commit(&f->a), 0);
    close_store(&f->a, &f->a_open);
    open_store(&f->a, f->dir_a, &f->a_open);
    assert_applied(&f->a, 6, 0x67);
    assert_string_equal(get(&f->a, "after", buf, sizeof buf), "3");
    assert_null(get(&f->a, "dropped", buf, sizeof buf));
}

/* Builds store s in dir from key/value pairs (NULL-terminated), one transaction per pair. */
static void build(struct tandem_store *s, const char *dir, bool *is_open, ...)
{
    va_list args;
    open_store(s, dir, is_open);
    va_start(args, is_open);
    for (const char *key = va_arg(args, const char *); key != NULL;
         key = va_arg(args, const char *)) {
        put(s, key, va_arg(args, const char *));
        assert_int_equal(tandem_store_commit(s), 0);
    }
    va_end(args);
}

static void rebuild(struct fixture *f, const char *a_pairs[], const char *b_pairs[], size_t n)
{
    if (f->a_open) {
        close_store(&f->a, &f->a_open);
    }
    if (f->b_open) {
        close_store(&f->b, &f->b_open);
    }
    assert_int_equal(nftw(f->root, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS), 0);
    assert_int_equal(mkdir(f->root, 0700), 0);
    open_store(&f->a, f->dir_a, &f->a_open);
    open_store(&f->b, f->dir_b, &f->b_open);
    for (size_t i = 0; i < n; i++) {
        put(&f->a, a_pairs[2 * i], a_pairs[2 * i + 1]);
        put(&f->b, b_pairs[2 * i], b_pairs[2 * i + 1]);
    }
    assert_int_equal(tandem_store_commit(&f->a), 0);
    assert_int_equal(tandem_store_commit(&f->b), 0);
}

static bool digests_equal(struct fixture *f)
{
    uint8_t da[TANDEM_DIGEST_LEN], db[TANDEM_DIGEST_LEN];
    digest_of(&f->a, da);
    digest_of(&f->b, db);
    return memcmp(da, db, TANDEM_DIGEST_LEN) == 0;
}

static void test_digest_order_independent(void **state)
{
    struct fixture *f = *state;
    build(&f->a, f->dir_a, &f->a_open, "a", "1", "b", "2", "c", "3", NULL);
    build(&f->b, f->dir_b, &f->b_open, "c", "3", "a", "1", "b", "2", NULL);
    assert_true(digests_equal(f));
    /* applied_index and apply_digest (meta) are not state. */
    set_applied(&f->b, 99, 0x99);
    assert_int_equal(tandem_store_commit(&f->b), 0);
    assert_true(digests_equal(f));
    /* An overwritten value hashes as the final value only. */
    put(&f->b, "a", "x");
    assert_int_equal(tandem_store_commit(&f->b), 0);
    assert_false(digests_equal(f));
    put(&f->b, "a", "1");
    assert_int_equal(tandem_store_commit(&f->b), 0);
    assert_true(digests_equal(f));
}

static void test_digest_differs(void **state)
{
    struct fixture *f = *state;
    uint8_t empty[TANDEM_DIGEST_LEN], one[TANDEM_DIGEST_LEN];
    open_store(&f->a, f->dir_a, &f->a_open);
    digest_of(&f->a, empty);
    put(&f->a, "a", "");
    assert_int_equal(tandem_store_commit(&f->a), 0);
    digest_of(&f->a, one);
    assert_memory_not_equal(empty, one, TANDEM_DIGEST_LEN); /* an empty value still counts */
    close_store(&f->a, &f->a_open);

    const char *value_a[] = {"a", "1", "b", "2"}, *value_b[] = {"a", "1", "b", "3"};
    rebuild(f, value_a, value_b, 2);
    assert_false(digests_equal(f));
    /* Values swapped between keys. */
    const char *swap_a[] = {"k1", "x", "k2", "y"}, *swap_b[] = {"k1", "y", "k2", "x"};
    rebuild(f, swap_a, swap_b, 2);
    assert_false(digests_equal(f));
    /* Framing: bytes moving across the key/value boundary ("a"+"bc" vs "ab"+"c"). */
    const char *kv_a[] = {"a", "bc"}, *kv_b[] = {"ab", "c"};
    rebuild(f, kv_a, kv_b, 1);
    assert_false(digests_equal(f));
    /* Framing: part of a value moving into the next record ("a"+"bc"+"d"+"e" vs "a"+"b"+"cd"+"e").
     */
    const char *rec_a[] = {"a", "bc", "d", "e"}, *rec_b[] = {"a", "b", "cd", "e"};
    rebuild(f, rec_a, rec_b, 2);
    assert_false(digests_equal(f));
    /* A value moving from one key to another. */
    const char *move_a[] = {"k1", "value", "k2", ""}, *move_b[] = {"k1", "", "k2", "value"};
    rebuild(f, move_a, move_b, 2);
    assert_false(digests_equal(f));
    /* Sanity: the same pairs give the same digest through rebuild. */
    rebuild(f, move_a, move_a, 2);
    assert_true(digests_equal(f));
}

static void test_snapshot_round_trip(void **state)
{
    struct fixture *f = *state;
    void *buf;
    size_t len;
    uint64_t index = 0;
    char errmsg[256] = "", text[KEY_TEXT_MAX];
    uint8_t da[TANDEM_DIGEST_LEN], db[TANDEM_DIGEST_LEN];
    populate_a(f);
    /* Pending writes in the grouped transaction are not part of a snapshot of committed state. */
    put(&f->a, "pending", "p");
    set_applied(&f->a, 43, 0xA1);
    snapshot_of(&f->a, &buf, &len);
    tandem_store_abort(&f->a);
    assert_int_equal(tandem_store_snapshot_check(buf, len, &index, errmsg), 0);
    assert_int_equal(index, 42);

    open_store(&f->b, f->dir_b, &f->b_open);
    assert_int_equal(tandem_store_restore(&f->b, buf, len), 0);
    assert_applied(&f->b, 42, 0xA0);
    digest_of(&f->a, da);
    digest_of(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);
    assert_string_equal(get(&f->b, "beta", text, sizeof text), "22");
    assert_null(get(&f->b, "pending", text, sizeof text));

    /* The swap left no side directories, and the restored state survives a reopen. */
    char side[PATH_MAX + 8];
    snprintf(side, sizeof side, "%s.new", f->dir_b);
    assert_false(path_exists(side));
    snprintf(side, sizeof side, "%s.old", f->dir_b);
    assert_false(path_exists(side));
    close_store(&f->b, &f->b_open);
    open_store(&f->b, f->dir_b, &f->b_open);
    assert_applied(&f->b, 42, 0xA0);
    digest_of(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);
    free(buf);
}

static void test_snapshot_replaces_state(void **state)
{
    struct fixture *f = *state;
    void *buf;
    size_t len;
    char text[KEY_TEXT_MAX];
    uint8_t da[TANDEM_DIGEST_LEN], db[TANDEM_DIGEST_LEN];
    populate_a(f);
    snapshot_of(&f->a, &buf, &len);
    /* b is behind a and has a key a does not: the restore must drop it. */
    open_store(&f->b, f->dir_b, &f->b_open);
    put(&f->b, "stale", "s");
    set_applied(&f->b, 10, 0x10);
    assert_int_equal(tandem_store_commit(&f->b), 0);
    /* An uncommitted write below the snapshot's index is committed then replaced. */
    put(&f->b, "stale2", "s");
    set_applied(&f->b, 11, 0x12);
    assert_int_equal(tandem_store_restore(&f->b, buf, len), 0);
    assert_null(f->b.write_txn);
    assert_applied(&f->b, 42, 0xA0);
    assert_null(get(&f->b, "stale", text, sizeof text));
    assert_null(get(&f->b, "stale2", text, sizeof text));
    digest_of(&f->a, da);
    digest_of(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);
    /* Apply goes on in the swapped-in environment. */
    put(&f->b, "next", "n");
    set_applied(&f->b, 43, 0xA3);
    assert_int_equal(tandem_store_commit(&f->b), 0);
    close_store(&f->b, &f->b_open);
    open_store(&f->b, f->dir_b, &f->b_open);
    assert_applied(&f->b, 43, 0xA3);
    assert_string_equal(get(&f->b, "next", text, sizeof text), "n");
    free(buf);
}

static void test_snapshot_many_records(void **state)
{
    struct fixture *f = *state;
    void *buf;
    size_t len;
    char key[KEY_TEXT_MAX], value[KEY_TEXT_MAX], text[KEY_TEXT_MAX];
    uint8_t da[TANDEM_DIGEST_LEN], db[TANDEM_DIGEST_LEN];
    open_store(&f->a, f->dir_a, &f->a_open);
    for (unsigned i = 0; i < MANY_RECORDS; i++) {
        snprintf(key, sizeof key, "key-%08u", (i * 7919u) % MANY_RECORDS);
        snprintf(value, sizeof value, "value-%u", i);
        put(&f->a, key, value);
    }
    set_applied(&f->a, 1000, 0x42);
    assert_int_equal(tandem_store_commit(&f->a), 0);
    snapshot_of(&f->a, &buf, &len);
    open_store(&f->b, f->dir_b, &f->b_open);
    assert_int_equal(tandem_store_restore(&f->b, buf, len), 0);
    assert_applied(&f->b, 1000, 0x42);
    digest_of(&f->a, da);
    digest_of(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);
    snprintf(key, sizeof key, "key-%08u", (unsigned)(MANY_RECORDS - 1));
    assert_string_equal(get(&f->b, key, text, sizeof text), get(&f->a, key, value, sizeof value));
    free(buf);
}

/* A snapshot written to a file is the in-memory snapshot byte for byte, however many chunks it
 * took (here 3 flushes, one record larger than a chunk), and restores through its mapping. */
static void test_snapshot_to_a_file(void **state)
{
    struct fixture *f = *state;
    void *buf;
    size_t len;
    char key[KEY_TEXT_MAX], path[PATH_MAX + 16], errmsg[TANDEM_ERRMSG_SIZE];
    uint8_t checksum[TANDEM_DIGEST_LEN], da[TANDEM_DIGEST_LEN], db[TANDEM_DIGEST_LEN];
    uint64_t file_len = 0, index = 0;
    const size_t big = 9u << 20, value_len = 64u << 10;
    char *value = malloc(big + 1);
    assert_non_null(value);
    open_store(&f->a, f->dir_a, &f->a_open);
    for (unsigned i = 0; i < 300; i++) {
        memset(value, 'a' + (int)(i % 26), value_len);
        value[value_len] = '\0';
        snprintf(key, sizeof key, "key-%04u", i);
        put(&f->a, key, value);
    }
    memset(value, 'z', big);
    value[big] = '\0';
    put(&f->a, "key-big", value);
    free(value);
    set_applied(&f->a, 77, 0x77);
    assert_int_equal(tandem_store_commit(&f->a), 0);
    snapshot_of(&f->a, &buf, &len);

    snprintf(path, sizeof path, "%s/snap", f->root);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    MDB_txn *txn;
    assert_int_equal(tandem_store_read_txn(&f->a, &txn), 0);
    assert_int_equal(tandem_store_snapshot_write_fd(&f->a, txn, fd, &file_len, &index, checksum),
                     0);
    mdb_txn_abort(txn);
    assert_int_equal(close(fd), 0);
    assert_int_equal(index, 77);
    assert_int_equal(file_len, len);
    assert_true(len > 3 * (8u << 20));

    struct tandem_store_map map;
    assert_int_equal(tandem_store_snapshot_map(path, &map, errmsg), 0);
    assert_int_equal(map.len, len);
    assert_memory_equal(map.base, buf, len);
    assert_memory_equal((const uint8_t *)map.base + SNAPSHOT_HEADER_SIZE - TANDEM_DIGEST_LEN,
                        checksum, TANDEM_DIGEST_LEN);
    open_store(&f->b, f->dir_b, &f->b_open);
    assert_int_equal(tandem_store_restore(&f->b, map.base, map.len), 0);
    assert_applied(&f->b, 77, 0x77);
    digest_of(&f->a, da);
    digest_of(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);
    tandem_store_snapshot_unmap(&map);
    assert_null(map.base);
    tandem_store_snapshot_unmap(&map); /* twice is fine */
    free(buf);

    /* No file, or one too short to be a snapshot. */
    snprintf(path, sizeof path, "%s/absent", f->root);
    assert_int_equal(tandem_store_snapshot_map(path, &map, errmsg), TANDEM_NOTFOUND);
    snprintf(path, sizeof path, "%s/short", f->root);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "TANDEMSS", 8), 8);
    assert_int_equal(close(fd), 0);
    assert_int_equal(tandem_store_snapshot_map(path, &map, errmsg), TANDEM_CORRUPT);
    assert_null(map.base);
    assert_true(tandem_store_used_bytes(f->a.env) > len);
}

static void test_restore_skipped_when_ahead(void **state)
{
    struct fixture *f = *state;
    void *buf;
    size_t len;
    char text[KEY_TEXT_MAX];
    uint8_t before[TANDEM_DIGEST_LEN], after[TANDEM_DIGEST_LEN];
    populate_a(f);
    snapshot_of(&f->a, &buf, &len);

    open_store(&f->b, f->dir_b, &f->b_open);
    put(&f->b, "local", "ahead");
    set_applied(&f->b, 50, 0x50);
    assert_int_equal(tandem_store_commit(&f->b), 0);
    digest_of(&f->b, before);
    assert_int_equal(tandem_store_restore(&f->b, buf, len), 0);
    assert_applied(&f->b, 50, 0x50);
    digest_of(&f->b, after);
    assert_memory_equal(before, after, TANDEM_DIGEST_LEN);
    assert_string_equal(get(&f->b, "local", text, sizeof text), "ahead");
    assert_null(get(&f->b, "alpha", text, sizeof text));

    /* Equal index: skipped as well. */
    close_store(&f->b, &f->b_open);
    assert_int_equal(nftw(f->dir_b, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS), 0);
    open_store(&f->b, f->dir_b, &f->b_open);
    put(&f->b, "local", "equal");
    set_applied(&f->b, 42, 0x42);
    assert_int_equal(tandem_store_commit(&f->b), 0);
    digest_of(&f->b, before);
    assert_int_equal(tandem_store_restore(&f->b, buf, len), 0);
    assert_applied(&f->b, 42, 0x42);
    digest_of(&f->b, after);
    assert_memory_equal(before, after, TANDEM_DIGEST_LEN);
    free(buf);
}

/* Shield 7's split: the state built off the loop, then only swapped in by the restore. */
/* A reader that holds the store for a while on its own thread, as a backup does on the pool. */
static void *reader_thread(void *arg)
{
    struct tandem_store *s = arg;
    (void)usleep(50 * 1000);
    tandem_store_copy_end(s);
    return NULL;
}

/* An install drains the readers off the loop: once it has begun no reader starts, it waits for
 * the running ones, and readers start again when the install is over. */
static void test_copies_drain_before_a_swap(void **state)
{
    (void)state;
    struct tandem_store s;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    pthread_t reader;
    memset(&s, 0, sizeof s);
    assert_true(tandem_store_copy_begin(&s));
    assert_int_equal(atomic_load(&s.copies), 1);
    assert_int_equal(pthread_create(&reader, NULL, reader_thread, &s), 0);
    assert_int_equal(tandem_store_copies_drain(&s, errmsg), 0); /* waits for the reader */
    assert_int_equal(atomic_load(&s.copies), 0);
    assert_int_equal(pthread_join(reader, NULL), 0);
    assert_false(tandem_store_copy_begin(&s)); /* refused, and nothing counted */
    assert_int_equal(atomic_load(&s.copies), 0);
    tandem_store_swap_done(&s);
    assert_true(tandem_store_copy_begin(&s));
    tandem_store_copy_end(&s);
    assert_int_equal(atomic_load(&s.copies), 0);
}

static void test_restore_prepared_swaps_without_reading_again(void **state)
{
    struct fixture *f = *state;
    void *buf;
    size_t len;
    struct tandem_store_prepared prepared;
    char errmsg[TANDEM_ERRMSG_SIZE] = "", text[KEY_TEXT_MAX], side[PATH_MAX + 8];
    uint8_t da[TANDEM_DIGEST_LEN], db[TANDEM_DIGEST_LEN];
    populate_a(f);
    snapshot_of(&f->a, &buf, &len);
    digest_of(&f->a, da);
    open_store(&f->b, f->dir_b, &f->b_open);
    snprintf(side, sizeof side, "%s.new", f->dir_b);

    /* The prepare builds DIR.new and leaves the open store as it was. */
    assert_int_equal(
        tandem_store_restore_prepare(f->dir_b, f->b.map_size, buf, len, &prepared, errmsg), 0);
    assert_true(prepared.ready && prepared.buf == buf && prepared.len == len);
    assert_true(path_exists(side));
    assert_int_equal(f->b.applied_index, 0);
    /* The restore of that very buffer only swaps: a byte flipped after the prepare (which
     * verified the bytes) goes unread, where a restore without it refuses the buffer. */
    ((uint8_t *)buf)[len - 1] ^= 0x01;
    assert_int_equal(tandem_store_restore_prepared(&f->b, buf, len, &prepared), 0);
    assert_applied(&f->b, 42, 0xA0);
    digest_of(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);
    assert_string_equal(get(&f->b, "beta", text, sizeof text), "22");
    assert_false(path_exists(side));
    ((uint8_t *)buf)[len - 1] ^= 0x01;

    /* Prepared from another buffer (a copy elsewhere): removed, and the given one restored. */
    close_store(&f->b, &f->b_open);
    assert_int_equal(nftw(f->dir_b, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS), 0);
    open_store(&f->b, f->dir_b, &f->b_open);
    void *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    assert_int_equal(
        tandem_store_restore_prepare(f->dir_b, f->b.map_size, copy, len, &prepared, errmsg), 0);
    ((uint8_t *)copy)[len - 1] ^= 0x01; /* the copy's prepared state must not be taken */
    assert_int_equal(tandem_store_restore_prepared(&f->b, buf, len, &prepared), 0);
    assert_applied(&f->b, 42, 0xA0);
    digest_of(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);
    assert_false(path_exists(side));
    free(copy);

    /* Prepared, but the store is already at the snapshot's index: nothing swapped, DIR.new
     * removed. */
    put(&f->b, "local", "later");
    set_applied(&f->b, 60, 0x60);
    assert_int_equal(tandem_store_commit(&f->b), 0);
    assert_int_equal(
        tandem_store_restore_prepare(f->dir_b, f->b.map_size, buf, len, &prepared, errmsg), 0);
    assert_int_equal(tandem_store_restore_prepared(&f->b, buf, len, &prepared), 0);
    assert_applied(&f->b, 60, 0x60);
    assert_string_equal(get(&f->b, "local", text, sizeof text), "later");
    assert_false(path_exists(side));

    /* A damaged buffer is refused by the prepare, which leaves nothing behind. */
    ((uint8_t *)buf)[len - 1] ^= 0x01;
    assert_int_equal(
        tandem_store_restore_prepare(f->dir_b, f->b.map_size, buf, len, &prepared, errmsg),
        TANDEM_CORRUPT);
    assert_false(prepared.ready);
    assert_non_null(strstr(errmsg, "checksum"));
    assert_false(path_exists(side));
    free(buf);
}

/* A store that removes replaced environments later (tandemd does it on the thread pool): the
 * swap leaves DIR.trash-<index>, handed over once, and an open removes what a crash left
 * there. */
static void test_a_swap_leaves_the_replaced_state_for_later(void **state)
{
    struct fixture *f = *state;
    void *buf;
    size_t len;
    char trash[PATH_MAX + 32], taken[PATH_MAX + 32], side[PATH_MAX + 8], text[KEY_TEXT_MAX];
    populate_a(f);
    snapshot_of(&f->a, &buf, &len);
    open_store(&f->b, f->dir_b, &f->b_open);
    put(&f->b, "mine", "m");
    set_applied(&f->b, 5, 0x05);
    assert_int_equal(tandem_store_commit(&f->b), 0);
    f->b.trash_later = true;
    assert_false(tandem_store_trash_take(&f->b, taken, sizeof taken));

    assert_int_equal(tandem_store_restore(&f->b, buf, len), 0);
    assert_applied(&f->b, 42, 0xA0);
    snprintf(trash, sizeof trash, "%s.trash-42", f->dir_b);
    snprintf(side, sizeof side, "%s.old", f->dir_b);
    assert_false(path_exists(side));
    assert_true(path_exists(trash)); /* the replaced state, whole */
    struct tandem_store old;
    bool old_open = false;
    open_store(&old, trash, &old_open);
    assert_int_equal(old.applied_index, 5);
    assert_string_equal(get(&old, "mine", text, sizeof text), "m");
    close_store(&old, &old_open);

    assert_true(tandem_store_trash_take(&f->b, taken, sizeof taken));
    assert_string_equal(taken, trash);
    assert_false(tandem_store_trash_take(&f->b, taken, sizeof taken)); /* handed over once */
    assert_int_equal(tandem_store_trash_remove(taken), 0);
    assert_false(path_exists(trash));

    /* Not taken yet: a crash leaves it, and the next open removes it. */
    close_store(&f->b, &f->b_open);
    assert_int_equal(nftw(f->dir_b, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS), 0);
    open_store(&f->b, f->dir_b, &f->b_open);
    f->b.trash_later = true;
    assert_int_equal(tandem_store_restore(&f->b, buf, len), 0);
    assert_true(path_exists(trash));
    close_store(&f->b, &f->b_open);
    open_store(&f->b, f->dir_b, &f->b_open);
    assert_false(path_exists(trash));
    assert_applied(&f->b, 42, 0xA0);
    assert_false(f->b.trash_later); /* the caller sets it after each open */
    free(buf);
}

/* Restoring the damaged buffer fails with errmsg containing expected and leaves b as it was. */
static void assert_refused(struct fixture *f, const void *buf, size_t len, const char *expected)
{
    uint8_t before[TANDEM_DIGEST_LEN], after[TANDEM_DIGEST_LEN];
    char errmsg[TANDEM_ERRMSG_SIZE] = "", text[KEY_TEXT_MAX], side[PATH_MAX + 8];
    uint64_t index = 0;
    assert_int_equal(tandem_store_snapshot_check(buf, len, &index, errmsg), TANDEM_CORRUPT);
    if (strstr(errmsg, expected) == NULL) {
        fail_msg("snapshot_check errmsg \"%s\", expected \"%s\"", errmsg, expected);
    }
    digest_of(&f->b, before);
    f->b.errmsg[0] = '\0';
    assert_int_equal(tandem_store_restore(&f->b, buf, len), TANDEM_CORRUPT);
    if (strstr(f->b.errmsg, expected) == NULL) {
        fail_msg("restore errmsg \"%s\", expected \"%s\"", f->b.errmsg, expected);
    }
    assert_applied(&f->b, 5, 0x05);
    digest_of(&f->b, after);
    assert_memory_equal(before, after, TANDEM_DIGEST_LEN);
    assert_string_equal(get(&f->b, "mine", text, sizeof text), "m");
    snprintf(side, sizeof side, "%s.new", f->dir_b);
    assert_false(path_exists(side));
}

static void test_corrupt_snapshot_refused(void **state)
{
    struct fixture *f = *state;
    void *buf;
    size_t len;
    populate_a(f);
    snapshot_of(&f->a, &buf, &len);
    assert_true(len > SNAPSHOT_HEADER_SIZE);
    uint8_t *bytes = buf;
    open_store(&f->b, f->dir_b, &f->b_open);
    put(&f->b, "mine", "m");
    set_applied(&f->b, 5, 0x05);
    assert_int_equal(tandem_store_commit(&f->b), 0);

    /* A flipped payload byte (inside a value). */
    bytes[len - 1] ^= 0x01;
    assert_refused(f, buf, len, "checksum");
    bytes[len - 1] ^= 0x01;
    /* A flipped byte in a record frame. */
    bytes[SNAPSHOT_HEADER_SIZE + 4] ^= 0x80;
    assert_refused(f, buf, len, "checksum");
    bytes[SNAPSHOT_HEADER_SIZE + 4] ^= 0x80;
    /* Truncated: inside the payload, and inside the header. */
    assert_refused(f, buf, len - 3, "length");
    assert_refused(f, buf, SNAPSHOT_HEADER_SIZE - 1, "too short");
    assert_refused(f, buf, 0, "too short");
    /* Bad magic. */
    bytes[0] ^= 0xff;
    assert_refused(f, buf, len, "magic");
    bytes[0] ^= 0xff;

    /* Undamaged, the same buffer restores. */
    assert_int_equal(tandem_store_restore(&f->b, buf, len), 0);
    assert_applied(&f->b, 42, 0xA0);
    free(buf);
}

static void test_snapshot_header_tamper_refused(void **state)
{
    struct fixture *f = *state;
    void *buf;
    size_t len;
    populate_a(f);
    snapshot_of(&f->a, &buf, &len);
    uint8_t *bytes = buf;
    open_store(&f->b, f->dir_b, &f->b_open);
    put(&f->b, "mine", "m");
    set_applied(&f->b, 5, 0x05);
    assert_int_equal(tandem_store_commit(&f->b), 0);
    /* The header is data read back like the payload: a flipped applied_index would make a node
     * skip or replay the wrong entries, a flipped apply_digest would break replica parity. */
    bytes[HEADER_INDEX_OFFSET + 1] ^= 0x01; /* 42 -> 298 */
    assert_refused(f, buf, len, "checksum");
    bytes[HEADER_INDEX_OFFSET + 1] ^= 0x01;
    bytes[HEADER_APPLY_OFFSET] ^= 0x01;
    assert_refused(f, buf, len, "checksum");
    bytes[HEADER_APPLY_OFFSET] ^= 0x01;
    assert_int_equal(tandem_store_restore(&f->b, buf, len), 0);
    assert_applied(&f->b, 42, 0xA0);
    free(buf);
}

/* Copies an environment's data file into another directory (which must exist). */
static void copy_env(const char *from, const char *to)
{
    char src[PATH_MAX + 16], dst[PATH_MAX + 16];
    snprintf(src, sizeof src, "%s/data.mdb", from);
    snprintf(dst, sizeof dst, "%s/data.mdb", to);
    int in = open(src, O_RDONLY);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(in >= 0 && out >= 0);
    char chunk[65536];
    ssize_t n;
    while ((n = read(in, chunk, sizeof chunk)) > 0) {
        assert_int_equal(write(out, chunk, (size_t)n), n);
    }
    assert_int_equal(n, 0);
    assert_int_equal(close(in), 0);
    assert_int_equal(close(out), 0);
}

static void test_interrupted_swap_finished_by_open(void **state)
{
    struct fixture *f = *state;
    char next[PATH_MAX + 8], old[PATH_MAX + 8], text[KEY_TEXT_MAX];
    uint8_t da[TANDEM_DIGEST_LEN], db[TANDEM_DIGEST_LEN];
    populate_a(f);
    digest_of(&f->a, da);
    close_store(&f->a, &f->a_open);

    /* b crashed between "rename b -> b.old" and "rename b.new -> b": b.new holds a complete
     * environment (a's), b.old the previous state, b itself is gone. */
    open_store(&f->b, f->dir_b, &f->b_open);
    put(&f->b, "previous", "p");
    set_applied(&f->b, 3, 0x03);
    close_store(&f->b, &f->b_open);
    snprintf(next, sizeof next, "%s.new", f->dir_b);
    snprintf(old, sizeof old, "%s.old", f->dir_b);
    assert_int_equal(rename(f->dir_b, old), 0);
    assert_int_equal(mkdir(next, 0700), 0);
    copy_env(f->dir_a, next);

    open_store(&f->b, f->dir_b, &f->b_open);
    assert_applied(&f->b, 42, 0xA0);
    digest_of(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);
    assert_null(get(&f->b, "previous", text, sizeof text));
    assert_false(path_exists(next));
    assert_false(path_exists(old));
}

static void test_unfinished_restore_discarded_by_open(void **state)
{
    struct fixture *f = *state;
    char next[PATH_MAX + 8], text[KEY_TEXT_MAX];
    populate_a(f);
    close_store(&f->a, &f->a_open);
    /* A crash while building b.new: b is intact and wins; b.new is thrown away. */
    open_store(&f->b, f->dir_b, &f->b_open);
    put(&f->b, "previous", "p");
    set_applied(&f->b, 3, 0x03);
    close_store(&f->b, &f->b_open);
    snprintf(next, sizeof next, "%s.new", f->dir_b);
    assert_int_equal(mkdir(next, 0700), 0);
    copy_env(f->dir_a, next);
    open_store(&f->b, f->dir_b, &f->b_open);
    assert_applied(&f->b, 3, 0x03);
    assert_string_equal(get(&f->b, "previous", text, sizeof text), "p");
    assert_false(path_exists(next));
}

static void test_poisoned_store_refuses_writes_until_reopened(void **state)
{
    struct fixture *f = *state;
    MDB_txn *txn;
    char buf[KEY_TEXT_MAX];
    open_store(&f->a, f->dir_a, &f->a_open);
    put(&f->a, "k", "v");
    set_applied(&f->a, 1, 0x01);
    assert_int_equal(tandem_store_commit(&f->a), 0);
    /* What a failed commit leaves behind (LMDB gives no easy way to fail one on purpose). */
    f->a.poisoned = true;
    assert_int_equal(tandem_store_write_txn(&f->a, &txn), TANDEM_STATE);
    assert_non_null(strstr(f->a.errmsg, "poisoned"));
    assert_null(f->a.write_txn);
    /* Reads of committed state still work: a stopping node can still answer them. */
    assert_string_equal(get(&f->a, "k", buf, sizeof buf), "v");
    close_store(&f->a, &f->a_open);
    open_store(&f->a, f->dir_a, &f->a_open);
    assert_false(f->a.poisoned);
    assert_int_equal(tandem_store_write_txn(&f->a, &txn), 0);
    assert_applied(&f->a, 1, 0x01);
}

static void test_open_errors_are_tandem_codes(void **state)
{
    struct fixture *f = *state;
    char file[PATH_MAX + 16], long_dir[PATH_MAX + 1];
    struct tandem_store s;
    /* A state directory under a regular file cannot be made. */
    snprintf(file, sizeof file, "%s/plain", f->root);
    FILE *out = fopen(file, "w");
    assert_non_null(out);
    assert_int_equal(fclose(out), 0);
    snprintf(long_dir, sizeof long_dir, "%s/state", file);
    assert_int_equal(tandem_store_open(&s, long_dir, MAP_SIZE), TANDEM_IO);
    assert_non_null(strstr(s.errmsg, "mkdir"));
    memset(long_dir, 'd', PATH_MAX - 4);
    long_dir[PATH_MAX - 4] = '\0';
    assert_int_equal(tandem_store_open(&s, long_dir, MAP_SIZE), TANDEM_INVALID);
}

/* Puts BIG_VALUE_SIZE-byte values into s's write transaction until LMDB refuses one; returns
 * how many went in before the refusal, which must be MDB_MAP_FULL. */
static unsigned fill_until_full(struct tandem_store *s)
{
    static char big[BIG_VALUE_SIZE];
    char key[KEY_TEXT_MAX];
    MDB_txn *txn;
    memset(big, 'x', sizeof big);
    assert_int_equal(tandem_store_write_txn(s, &txn), 0);
    for (unsigned i = 0; i < FILL_PUTS_MAX; i++) {
        snprintf(key, sizeof key, "big-%06u", i);
        MDB_val k = {.mv_size = strlen(key), .mv_data = key};
        MDB_val v = {.mv_size = sizeof big, .mv_data = big};
        int rv = mdb_put(txn, s->dbi[TANDEM_DB_KV], &k, &v, 0);
        if (rv != 0) {
            assert_int_equal(rv, MDB_MAP_FULL);
            return i;
        }
    }
    fail_msg("no MDB_MAP_FULL after %d puts into a %zu-byte map", FILL_PUTS_MAX, TINY_MAP_SIZE);
    return 0;
}

/* LMDB's rule: after a failed mdb_put the transaction can only be aborted (a commit fails and
 * frees it). tandem_store_abort aborts it once, reloads the committed meta, and the store
 * takes writes again (ASan: no double free, no leak). */
static void test_map_full_write_is_aborted_and_the_store_recovers(void **state)
{
    struct fixture *f = *state;
    char text[KEY_TEXT_MAX];
    assert_int_equal(tandem_store_open(&f->a, f->dir_a, TINY_MAP_SIZE), 0);
    f->a_open = true;
    put(&f->a, "kept", "1");
    set_applied(&f->a, 5, 0x11);
    assert_int_equal(tandem_store_commit(&f->a), 0);
    assert_true(fill_until_full(&f->a) > 0);
    tandem_store_abort(&f->a);
    assert_null(f->a.write_txn);
    assert_false(f->a.poisoned);
    assert_applied(&f->a, 5, 0x11); /* the committed meta, reloaded */
    assert_null(get(&f->a, "big-000000", text, sizeof text));
    put(&f->a, "after", "2");
    set_applied(&f->a, 6, 0x12);
    assert_int_equal(tandem_store_commit(&f->a), 0);
    close_store(&f->a, &f->a_open);
    open_store(&f->a, f->dir_a, &f->a_open);
    assert_string_equal(get(&f->a, "kept", text, sizeof text), "1");
    assert_string_equal(get(&f->a, "after", text, sizeof text), "2");
    assert_applied(&f->a, 6, 0x12);
}

/* A commit of a transaction LMDB already failed: mdb_txn_commit frees it and fails, the store
 * forgets it (no abort after the commit: that was a double free) and is poisoned. */
static void test_commit_after_map_full_poisons_without_double_free(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(tandem_store_open(&f->a, f->dir_a, TINY_MAP_SIZE), 0);
    f->a_open = true;
    assert_true(fill_until_full(&f->a) > 0);
    assert_int_not_equal(tandem_store_commit(&f->a), 0);
    assert_null(f->a.write_txn);
    assert_true(f->a.poisoned);
    MDB_txn *txn;
    assert_int_not_equal(tandem_store_write_txn(&f->a, &txn), 0);
    tandem_store_abort(&f->a); /* nothing left to abort: only the meta is reloaded */
    assert_null(f->a.write_txn);
}

/* A snapshot larger than the map: the restore fails in a put of the new environment, which is
 * aborted and discarded; the store keeps its old state and stays usable. */
static void test_restore_into_a_full_map_keeps_the_old_state(void **state)
{
    struct fixture *f = *state;
    void *buf;
    size_t len;
    char text[KEY_TEXT_MAX], key[KEY_TEXT_MAX], value[BIG_VALUE_SIZE];
    open_store(&f->a, f->dir_a, &f->a_open);
    memset(value, 'y', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    for (unsigned i = 0; i < 2 * TINY_MAP_SIZE / BIG_VALUE_SIZE; i++) {
        snprintf(key, sizeof key, "big-%06u", i);
        put(&f->a, key, value);
    }
    set_applied(&f->a, 900, 0x33);
    assert_int_equal(tandem_store_commit(&f->a), 0);
    snapshot_of(&f->a, &buf, &len);
    assert_int_equal(tandem_store_open(&f->b, f->dir_b, TINY_MAP_SIZE), 0);
    f->b_open = true;
    put(&f->b, "mine", "3");
    set_applied(&f->b, 7, 0x44);
    assert_int_equal(tandem_store_commit(&f->b), 0);
    assert_int_not_equal(tandem_store_restore(&f->b, buf, len), 0);
    free(buf);
    assert_non_null(f->b.env);
    assert_applied(&f->b, 7, 0x44);
    assert_string_equal(get(&f->b, "mine", text, sizeof text), "3");
    put(&f->b, "later", "4");
    assert_int_equal(tandem_store_commit(&f->b), 0);
}

/* Opening with no descriptor left (RLIMIT_NOFILE at what is open): mdb_env_open fails, and the
 * handle is closed exactly once. Run in a child, whose exit status carries the verdict (and
 * LeakSanitizer's, under ASan: a leak makes it exit non-zero). */
static void test_open_out_of_descriptors_fails_cleanly(void **state)
{
    struct fixture *f = *state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct tandem_store s;
        int fd = open("/dev/null", O_RDONLY);
        struct rlimit lim = {.rlim_cur = (rlim_t)fd + 1, .rlim_max = (rlim_t)fd + 1};
        close(fd); /* exactly one descriptor free: not enough for data.mdb and lock.mdb */
        if (fd < 0 || setrlimit(RLIMIT_NOFILE, &lim) != 0) {
            _exit(2);
        }
        int rv = tandem_store_open(&s, f->dir_a, MAP_SIZE);
        exit(rv != 0 && s.env == NULL && s.errmsg[0] != '\0' ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_digest_hex(void **state)
{
    (void)state;
    uint8_t digest[TANDEM_DIGEST_LEN];
    char hex[2 * TANDEM_DIGEST_LEN + 1];
    memset(digest, 0, sizeof digest);
    digest[0] = 0xab;
    digest[TANDEM_DIGEST_LEN - 1] = 0x09;
    tandem_digest_hex(digest, hex);
    assert_int_equal(strlen(hex), 2 * TANDEM_DIGEST_LEN);
    assert_memory_equal(hex, "ab00", 4);
    assert_string_equal(hex + 2 * TANDEM_DIGEST_LEN - 2, "09");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_close_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_persists_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsynced_mark_from_first_commit_to_clean_close, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unsynced_commits_of_another_boot_are_not_trusted,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_installed_snapshot_is_marked_at_its_first_commit,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_commits_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_shared_beside_the_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_drops_uncommitted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_order_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_differs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_replaces_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_many_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_to_a_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_skipped_when_ahead, setup, teardown),
        cmocka_unit_test(test_copies_drain_before_a_swap),
        cmocka_unit_test_setup_teardown(test_restore_prepared_swaps_without_reading_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_swap_leaves_the_replaced_state_for_later, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_snapshot_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_header_tamper_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupted_swap_finished_by_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unfinished_restore_discarded_by_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full_write_is_aborted_and_the_store_recovers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_after_map_full_poisons_without_double_free,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_into_a_full_map_keeps_the_old_state, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_out_of_descriptors_fails_cleanly, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_poisoned_store_refuses_writes_until_reopened, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_errors_are_tandem_codes, setup, teardown),
        cmocka_unit_test(test_digest_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
