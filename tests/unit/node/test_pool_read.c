/* Tests of node/pool_read.h on a real loop and a real LMDB store: reads run on the thread pool
 * and see everything applied before them, at most RUNNING_MAX at once and WAITING_MAX waiting
 * (one more is refused), and a snapshot install while a read runs waits for it instead of
 * deadlocking (the store pin is given back on the pool, not on the loop); a close waits for the
 * reads in flight. */
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

#include "node/pool_read.h"
#include "storage/error.h"
#include "storage/store.h"

#define MAP_SIZE      ((size_t)64 * 1024 * 1024)
#define FD_MAX        16
#define READS_MAX     (TANDEM_POOL_READS_RUNNING_MAX + TANDEM_POOL_READS_WAITING_MAX)
#define SLOW_READ_US  200000 /* a read the install must wait for */
#define LOOP_WAIT_S   30     /* bound of every loop run */
#define KEY           "pooled"
#define VALUE         "seen"
#define SNAPSHOT_FROM 7 /* the snapshot's applied_index */

struct fixture {
    char root[PATH_MAX];
    uv_loop_t loop;
    struct tandem_store store;
    struct tandem_pool_reads reads;
    struct tandem_pool_read read[READS_MAX + 1];
    uv_sem_t gate;                /* blocking reads wait on it */
    atomic_uint entered, blocked; /* reads that began, reads inside the gate */
    atomic_bool slow_finished;    /* the slow read's work returned */
    unsigned done, done_ok, found, closed;
    uint64_t applied_seen; /* what the slow read's store copy said */
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Applies key = value in the grouped write transaction, not committed. */
static void put(struct tandem_store *s, const char *key, const char *value)
{
    MDB_txn *txn;
    MDB_val k = {strlen(key), (void *)key}, v = {strlen(value), (void *)value};
    assert_int_equal(tandem_store_write_txn(s, &txn), 0);
    assert_int_equal(mdb_put(txn, s->dbi[TANDEM_DB_KV], &k, &v, 0), 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX + 8];
    assert_non_null(f);
    snprintf(f->root, sizeof f->root, "%s/tandem-pool-read-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->root));
    snprintf(dir, sizeof dir, "%s/state", f->root);
    assert_int_equal(tandem_store_open(&f->store, dir, MAP_SIZE), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_sem_init(&f->gate, 0), 0);
    tandem_pool_reads_init(&f->reads, &f->loop, &f->store);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(uv_loop_close(&f->loop), 0); /* nothing left on it */
    uv_sem_destroy(&f->gate);
    tandem_store_close(&f->store);
    assert_int_equal(nftw(f->root, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS), 0);
    free(f);
    return 0;
}

/* Runs the loop until n reads are done (bounded in time). */
static void run_until_done(struct fixture *f, unsigned n)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)LOOP_WAIT_S * 1000000000u;
    while (f->done < n && uv_hrtime() < deadline) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_int_equal(f->done, n);
}

/* On the pool: counts the key KEY when the read sees it. */
static int find_work(struct tandem_store *store, MDB_txn *txn, void *data)
{
    struct fixture *f = data;
    MDB_val k = {.mv_size = strlen(KEY), .mv_data = KEY}, v;
    atomic_fetch_add(&f->entered, 1);
    int rv = mdb_get(txn, store->dbi[TANDEM_DB_KV], &k, &v);
    if (rv == 0 && v.mv_size == strlen(VALUE) && memcmp(v.mv_data, VALUE, v.mv_size) == 0) {
        __atomic_fetch_add(&f->found, 1, __ATOMIC_SEQ_CST);
    }
    return rv == 0 || rv == MDB_NOTFOUND ? 0 : tandem_error_from_mdb(rv, store->errmsg, "get");
}

/* On the pool: waits at the gate, then reads. */
static int blocking_work(struct tandem_store *store, MDB_txn *txn, void *data)
{
    struct fixture *f = data;
    atomic_fetch_add(&f->blocked, 1);
    uv_sem_wait(&f->gate);
    return find_work(store, txn, data);
}

static int slow_work(struct tandem_store *store, MDB_txn *txn, void *data)
{
    struct fixture *f = data;
    usleep(SLOW_READ_US);
    f->applied_seen = store->applied_index; /* read by the loop after done */
    int rv = find_work(store, txn, data);
    atomic_store(&f->slow_finished, true);
    return rv;
}

static void done_cb(void *data, int rv, const char *errmsg)
{
    struct fixture *f = data;
    (void)errmsg;
    f->done++;
    f->done_ok += rv == 0 ? 1 : 0;
}

/* A write applied but not committed yet is seen: the read commits the group first. */
static void test_read_sees_applied_writes(void **state)
{
    struct fixture *f = *state;
    put(&f->store, KEY, VALUE);
    assert_int_equal(tandem_pool_read_submit(&f->reads, &f->read[0], find_work, done_cb, f), 0);
    assert_int_equal(f->done, 0); /* never inside submit */
    run_until_done(f, 1);
    assert_int_equal(f->done_ok, 1);
    assert_int_equal(f->found, 1);
    assert_int_equal(atomic_load(&f->store.copies), 0);
    assert_int_equal(f->reads.running, 0);
}

/* A pinned read sees the state of its submit: here it waits behind RUNNING_MAX blocked reads
 * while the key is applied and committed, and never sees it; an unpinned read submitted at the
 * same time does (its transaction begins when its turn comes). */
static void test_pinned_read_sees_the_state_of_its_submit(void **state)
{
    struct fixture *f = *state;
    for (unsigned i = 0; i < TANDEM_POOL_READS_RUNNING_MAX; i++) {
        assert_int_equal(tandem_pool_read_submit(&f->reads, &f->read[i], blocking_work, done_cb, f),
                         0);
    }
    unsigned pinned = TANDEM_POOL_READS_RUNNING_MAX, plain = pinned + 1;
    assert_int_equal(
        tandem_pool_read_submit_pinned(&f->reads, &f->read[pinned], find_work, done_cb, f), 0);
    assert_non_null(f->read[pinned].pinned);
    assert_int_equal(f->reads.waiting, 1);
    /* Pinned from its submit on: an install waits for it too. */
    assert_int_equal(atomic_load(&f->store.copies), TANDEM_POOL_READS_RUNNING_MAX + 1);
    assert_int_equal(tandem_pool_read_submit(&f->reads, &f->read[plain], find_work, done_cb, f), 0);
    put(&f->store, KEY, VALUE);
    assert_int_equal(tandem_store_commit(&f->store), 0);
    for (unsigned i = 0; i < TANDEM_POOL_READS_RUNNING_MAX; i++) {
        uv_sem_post(&f->gate);
    }
    run_until_done(f, plain + 1);
    assert_int_equal(f->done_ok, plain + 1);
    /* The blocked reads began before the put and see nothing either: only the plain one does. */
    assert_int_equal(f->found, 1);
    assert_null(f->read[pinned].pinned);
    assert_int_equal(atomic_load(&f->store.copies), 0);

    /* Refused during an install's swap, like any read: nothing pinned. */
    assert_int_equal(tandem_store_copies_drain(&f->store, f->store.errmsg), 0);
    assert_int_equal(tandem_pool_read_submit_pinned(&f->reads, &f->read[0], find_work, done_cb, f),
                     TANDEM_BUSY);
    assert_null(f->read[0].pinned);
    assert_int_equal(atomic_load(&f->store.copies), 0);
    tandem_store_swap_done(&f->store);
}

/* RUNNING_MAX run, WAITING_MAX wait, the next is refused; all the others finish in turn. */
static void test_bound_refuses_one_more(void **state)
{
    struct fixture *f = *state;
    put(&f->store, KEY, VALUE);
    for (unsigned i = 0; i < READS_MAX; i++) {
        assert_int_equal(tandem_pool_read_submit(&f->reads, &f->read[i], blocking_work, done_cb, f),
                         0);
    }
    assert_int_equal(f->reads.running, TANDEM_POOL_READS_RUNNING_MAX);
    assert_int_equal(f->reads.waiting, TANDEM_POOL_READS_WAITING_MAX);
    assert_int_equal(atomic_load(&f->store.copies), TANDEM_POOL_READS_RUNNING_MAX);
    assert_int_equal(
        tandem_pool_read_submit(&f->reads, &f->read[READS_MAX], blocking_work, done_cb, f),
        TANDEM_BUSY);
    assert_non_null(strstr(f->read[READS_MAX].store.errmsg, "wait on this node"));
    assert_int_equal(f->reads.refused_total, 1);
    /* Only RUNNING_MAX ever reach the pool at once: the gate sees no more until one is done. */
    while (atomic_load(&f->blocked) < TANDEM_POOL_READS_RUNNING_MAX) {
        usleep(1000);
    }
    usleep(50000);
    assert_int_equal(atomic_load(&f->blocked), TANDEM_POOL_READS_RUNNING_MAX);
    for (unsigned i = 0; i < READS_MAX; i++) {
        uv_sem_post(&f->gate);
    }
    run_until_done(f, READS_MAX);
    assert_int_equal(f->done_ok, READS_MAX);
    assert_int_equal(f->found, READS_MAX);
    assert_int_equal(f->reads.running, 0);
    assert_int_equal(f->reads.waiting, 0);
    assert_int_equal(f->reads.done_total, READS_MAX);
    assert_int_equal(atomic_load(&f->store.copies), 0);
}

/* A snapshot of another store at SNAPSHOT_FROM, into *buf. */
static void snapshot_of_other(struct fixture *f, void **buf, size_t *len)
{
    struct tandem_store other;
    char dir[PATH_MAX + 8];
    uint8_t digest[TANDEM_DIGEST_LEN] = {1};
    MDB_txn *txn;
    snprintf(dir, sizeof dir, "%s/other", f->root);
    assert_int_equal(tandem_store_open(&other, dir, MAP_SIZE), 0);
    put(&other, "other", "state");
    assert_int_equal(tandem_store_set_applied(&other, SNAPSHOT_FROM, digest), 0);
    assert_int_equal(tandem_store_commit(&other), 0);
    assert_int_equal(tandem_store_read_txn(&other, &txn), 0);
    assert_int_equal(tandem_store_snapshot_write(&other, txn, buf, len), 0);
    mdb_txn_abort(txn);
    tandem_store_close(&other);
}

/* The install blocks the loop until the read gave its pin back on the pool; the read finishes
 * on the state it began on, and its done runs on the loop after the swap. */
static void test_install_waits_for_read(void **state)
{
    struct fixture *f = *state;
    void *buf;
    size_t len;
    snapshot_of_other(f, &buf, &len);
    put(&f->store, KEY, VALUE);
    assert_int_equal(tandem_pool_read_submit(&f->reads, &f->read[0], slow_work, done_cb, f), 0);
    assert_int_equal(tandem_store_restore(&f->store, buf, len), 0);
    assert_true(atomic_load(&f->slow_finished)); /* the swap came after the read */
    free(buf);
    assert_int_equal(f->store.applied_index, SNAPSHOT_FROM);
    run_until_done(f, 1);
    assert_int_equal(f->done_ok, 1);
    assert_int_equal(f->found, 1);        /* the state before the install */
    assert_int_equal(f->applied_seen, 0); /* and its applied_index */
    assert_int_equal(atomic_load(&f->store.copies), 0);
    /* A read after the install sees the new environment. */
    f->found = 0;
    assert_int_equal(tandem_pool_read_submit(&f->reads, &f->read[1], find_work, done_cb, f), 0);
    run_until_done(f, 2);
    assert_int_equal(f->found, 0);
}

/* An install that drained the readers (tandem_store_copies_drain, on the pool) is about to swap:
 * a read submitted then is refused as busy, counts nothing, and reads start again after it. */
static void test_read_refused_while_an_install_swaps(void **state)
{
    struct fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    put(&f->store, KEY, VALUE);
    assert_int_equal(tandem_store_copies_drain(&f->store, errmsg), 0);
    assert_int_equal(tandem_pool_read_submit(&f->reads, &f->read[0], find_work, done_cb, f),
                     TANDEM_BUSY);
    assert_non_null(strstr(f->read[0].store.errmsg, "a snapshot install is replacing"));
    assert_int_equal(atomic_load(&f->store.copies), 0);
    assert_int_equal(f->reads.running, 0);
    tandem_store_swap_done(&f->store);
    assert_int_equal(tandem_pool_read_submit(&f->reads, &f->read[1], find_work, done_cb, f), 0);
    run_until_done(f, 1);
    assert_int_equal(f->found, 1);
    assert_int_equal(atomic_load(&f->store.copies), 0);
}

static void closed_cb(void *data)
{
    struct fixture *f = data;
    f->closed++;
}

/* A close waits for the read in flight, refuses new ones, and tells once. */
static void test_close_waits_for_reads(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(tandem_pool_read_submit(&f->reads, &f->read[0], blocking_work, done_cb, f), 0);
    tandem_pool_reads_close(&f->reads, closed_cb, f);
    assert_int_equal(f->closed, 0);
    assert_int_equal(tandem_pool_read_submit(&f->reads, &f->read[1], find_work, done_cb, f),
                     TANDEM_SHUTDOWN);
    uv_sem_post(&f->gate);
    run_until_done(f, 1);
    assert_int_equal(f->closed, 1);
    assert_int_equal(atomic_load(&f->store.copies), 0);
}

/* A close with nothing in flight tells at once. */
static void test_close_idle(void **state)
{
    struct fixture *f = *state;
    tandem_pool_reads_close(&f->reads, closed_cb, f);
    assert_int_equal(f->closed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_sees_applied_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_refuses_one_more, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pinned_read_sees_the_state_of_its_submit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_install_waits_for_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_refused_while_an_install_swaps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_waits_for_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_idle, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
