/* Tests of node/store_sync.h on a real loop and a real LMDB store: a sync starts only when
 * commits were made since the last one and its interval passed, one at a time, gives its pin on
 * the store back, and a close waits for a sync in flight; a failed sync marks the store so that
 * no later open trusts it. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "node/store_sync.h"
#include "storage/error.h"
#include "storage/store.h"
#include "storage/unsynced.h"

#define MAP_SIZE    ((size_t)64 * 1024 * 1024)
#define FD_MAX      16
#define LOOP_WAIT_S 30   /* bound of every loop run */
#define INTERVAL_MS 1000 /* the interval the ticks below are given */
#define MS          1000000u

struct fixture {
    char root[PATH_MAX];
    char dir[PATH_MAX + 8];
    uv_loop_t loop;
    struct tandem_store store;
    struct tandem_store_sync sync;
    unsigned observed, failed, closed;
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void observe(void *data, uint64_t ns)
{
    struct fixture *f = data;
    (void)ns;
    f->observed++;
}

static void failed(void *data, const char *errmsg)
{
    struct fixture *f = data;
    assert_non_null(errmsg);
    f->failed++;
}

static void closed(void *data)
{
    struct fixture *f = data;
    f->closed++;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    assert_non_null(f);
    snprintf(f->root, sizeof f->root, "%s/tandem-store-sync-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir, sizeof f->dir, "%s/state", f->root);
    assert_int_equal(tandem_store_open(&f->store, f->dir, MAP_SIZE), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    tandem_store_sync_init(&f->sync, &f->loop, &f->store);
    f->sync.observe = observe;
    f->sync.failed = failed;
    f->sync.data = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(uv_loop_close(&f->loop), 0); /* nothing left on it */
    tandem_store_close(&f->store);
    assert_int_equal(nftw(f->root, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS), 0);
    free(f);
    return 0;
}

/* Applies and commits one key (the grouped commit the loop makes). */
static void commit_one(struct fixture *f, const char *key)
{
    MDB_txn *txn;
    MDB_val k = {strlen(key), (void *)key}, v = {1, (void *)"v"};
    assert_int_equal(tandem_store_write_txn(&f->store, &txn), 0);
    assert_int_equal(mdb_put(txn, f->store.dbi[TANDEM_DB_KV], &k, &v, 0), 0);
    assert_int_equal(tandem_store_commit(&f->store), 0);
}

static void run_while_running(struct fixture *f)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)LOOP_WAIT_S * 1000000000u;
    while (f->sync.running && uv_hrtime() < deadline) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_false(f->sync.running);
}

static void test_a_sync_follows_commits_at_most_once_an_interval(void **state)
{
    struct fixture *f = *state;
    uint64_t now = uv_hrtime();
    tandem_store_sync_tick(&f->sync, now, INTERVAL_MS);
    assert_false(f->sync.running); /* nothing committed: nothing to sync */

    commit_one(f, "a");
    tandem_store_sync_tick(&f->sync, now, INTERVAL_MS);
    assert_true(f->sync.running);
    commit_one(f, "b");                                 /* the loop goes on committing */
    tandem_store_sync_tick(&f->sync, now, INTERVAL_MS); /* one at a time */
    run_while_running(f);
    assert_int_equal(f->observed, 1);
    assert_int_equal(f->sync.syncs_total, 1);
    assert_int_equal(f->sync.commits_synced, 1); /* "b" came after it began */
    assert_int_equal(atomic_load(&f->store.copies), 0);

    /* "b" waits for the interval, then is synced. */
    tandem_store_sync_tick(&f->sync, now + (INTERVAL_MS - 1) * (uint64_t)MS, INTERVAL_MS);
    assert_false(f->sync.running);
    tandem_store_sync_tick(&f->sync, now + INTERVAL_MS * (uint64_t)MS, INTERVAL_MS);
    assert_true(f->sync.running);
    run_while_running(f);
    assert_int_equal(f->sync.commits_synced, f->store.commits);
    tandem_store_sync_tick(&f->sync, now + 5 * INTERVAL_MS * (uint64_t)MS, INTERVAL_MS);
    assert_false(f->sync.running); /* all synced */
    assert_int_equal(f->failed, 0);

    tandem_store_sync_close(&f->sync, closed, f);
    assert_int_equal(f->closed, 1);
}

static void test_a_close_waits_for_the_sync_in_flight(void **state)
{
    struct fixture *f = *state;
    commit_one(f, "a");
    tandem_store_sync_tick(&f->sync, uv_hrtime(), INTERVAL_MS);
    assert_true(f->sync.running);
    tandem_store_sync_close(&f->sync, closed, f);
    assert_int_equal(f->closed, 0);
    commit_one(f, "b");
    tandem_store_sync_tick(&f->sync, uv_hrtime() + 10 * INTERVAL_MS * (uint64_t)MS, INTERVAL_MS);
    run_while_running(f);
    assert_int_equal(f->closed, 1);
    assert_false(f->sync.running); /* none started once closing */
}

static void test_a_failed_sync_marks_the_store_untrusted(void **state)
{
    struct fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE], boot[TANDEM_BOOT_ID_LEN + 1];
    bool present;
    commit_one(f, "a");
    /* A read-only environment refuses mdb_env_sync (EACCES): the failure the pool may meet. */
    struct tandem_store reader;
    assert_int_equal(tandem_store_open_shared(&reader, f->dir), 0);
    assert_int_not_equal(tandem_store_sync(reader.env, f->dir, errmsg), 0);
    tandem_store_close(&reader);
    assert_int_equal(tandem_unsynced_read(f->dir, &present, boot, errmsg), 0);
    assert_true(present);
    assert_string_equal(boot, TANDEM_UNSYNCED_FAILED);
    tandem_store_poison(&f->store); /* what the node does: its close keeps the mark */
    tandem_store_close(&f->store);
    assert_int_equal(tandem_store_open(&f->store, f->dir, MAP_SIZE), TANDEM_CORRUPT);
    assert_true(f->store.untrusted);
    assert_int_equal(tandem_store_discard(f->dir, errmsg), 0);
    assert_int_equal(tandem_store_open(&f->store, f->dir, MAP_SIZE), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_sync_follows_commits_at_most_once_an_interval, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_close_waits_for_the_sync_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_failed_sync_marks_the_store_untrusted, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
