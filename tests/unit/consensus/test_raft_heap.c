/* Tests of consensus/raft_heap.c against libraft 0.22.1 itself (raft/fixture.h, the I/O fault
 * hook raft_fixture_io_fault): which failures of raft_apply and raft_barrier free the submitted
 * buffer, that raft_barrier frees its own buffer twice when the append fails (shield off), and
 * that with the watch the heap below sees every block freed exactly once (shield on). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <raft.h>
#include <raft/fixture.h>

#include "consensus/raft_heap.h"

#define SERVERS     3
#define TRACKED_MAX 4096
/* libraft 0.22.1 leaks its copy of an entry whose append failed: legacyHandleUpdateEntries
 * (src/legacy.c) puts an entryCopy in its log and on the error drops it with logDiscard, which
 * (src/log.c, removeSuffix with destroy false) frees no buffer. Nothing outside can free it. */
#define LEAKED_BY_FAILED_APPEND 1

/* A heap under test: keeps every live block in a table (so a block libraft leaks stays
 * reachable, and is counted and freed by the test instead of failing LeakSanitizer), and counts
 * the frees of the first 8-byte block allocated after arming (raft_barrier's buffer). It frees a
 * block only once, so that the bug it counts cannot corrupt the test's own heap. */
static struct {
    void *blocks[TRACKED_MAX];
    unsigned n;
    bool armed;
    void *first8;
    unsigned first8_frees;
    bool failing; /* fail the allocation fail_countdown from now (raft_heap_set's hook) */
    long fail_countdown;
    bool failed;     /* that allocation was refused */
    void *eights[2]; /* the first two 8-byte blocks allocated while failing is armed */
} counting;

/* Whether this allocation is the one to refuse. */
static bool refuse(void)
{
    if (!counting.failing || counting.fail_countdown-- != 0) {
        return false;
    }
    counting.failed = true;
    return true;
}

static void *track(void *p)
{
    if (p != NULL) {
        assert_true(counting.n < TRACKED_MAX);
        counting.blocks[counting.n++] = p;
    }
    return p;
}

static void untrack(void *p)
{
    for (unsigned i = 0; i < counting.n; i++) {
        if (counting.blocks[i] == p) {
            counting.blocks[i] = counting.blocks[--counting.n];
            return;
        }
    }
    fail_msg("free of a block that is not live: %p", p);
}

static void *c_malloc(void *data, size_t size)
{
    (void)data;
    if (refuse()) {
        return NULL;
    }
    void *p = track(malloc(size));
    if (counting.failing && size == 8) {
        counting.eights[counting.eights[0] == NULL ? 0 : 1] = p;
    }
    if (counting.armed && counting.first8 == NULL && size == 8) {
        counting.first8 = p;
    }
    return p;
}

static void c_free(void *data, void *ptr)
{
    (void)data;
    if (ptr == NULL || (ptr == counting.first8 && ++counting.first8_frees > 1)) {
        return; /* the second free of one block: counted, not done */
    }
    untrack(ptr);
    free(ptr);
}

static void *c_calloc(void *data, size_t nmemb, size_t size)
{
    (void)data;
    return refuse() ? NULL : track(calloc(nmemb, size));
}

static void *c_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    if (refuse()) {
        return NULL;
    }
    /* Untracked first: the old pointer must not be compared once realloc freed it. */
    if (ptr != NULL) {
        untrack(ptr);
    }
    void *p = realloc(ptr, size);
    track(p != NULL ? p : ptr);
    return p;
}

static void *c_aligned_alloc(void *data, size_t alignment, size_t size)
{
    (void)data;
    return refuse() ? NULL : track(aligned_alloc(alignment, size));
}

static void c_aligned_free(void *data, size_t alignment, void *ptr)
{
    (void)alignment;
    c_free(data, ptr);
}

static struct raft_heap counting_heap = {NULL,      c_malloc,        c_free,        c_calloc,
                                         c_realloc, c_aligned_alloc, c_aligned_free};

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    (void)fsm;
    (void)buf;
    *result = NULL;
    return 0;
}

static struct raft_fixture fixture;
static struct raft_fsm fsms[SERVERS];

/* Three servers on the fixture, server 0 elected, on the counting heap (and the watching heap
 * on top of it when shielded). */
static struct raft *cluster_up(bool shielded)
{
    memset(&counting, 0, sizeof counting);
    raft_heap_set(&counting_heap);
    if (shielded) {
        tandem_raft_heap_install();
    }
    memset(&fixture, 0, sizeof fixture);
    assert_int_equal(raft_fixture_init(&fixture), 0);
    for (unsigned i = 0; i < SERVERS; i++) {
        fsms[i] = (struct raft_fsm){.version = 1, .apply = fsm_apply};
        assert_int_equal(raft_fixture_grow(&fixture, &fsms[i]), 0);
        raft_fixture_get(&fixture, i)->tracer = NULL; /* libraft skips a NULL tracer: quiet */
    }
    struct raft_configuration conf;
    assert_int_equal(raft_fixture_configuration(&fixture, SERVERS, &conf), 0);
    assert_int_equal(raft_fixture_bootstrap(&fixture, &conf), 0);
    raft_configuration_close(&conf);
    assert_int_equal(raft_fixture_start(&fixture), 0);
    raft_fixture_elect(&fixture, 0);
    return raft_fixture_get(&fixture, 0);
}

/* Closes the fixture; leaked: how many blocks libraft is known to leak in the test (the test's
 * own heap frees them); when one, it must be leaked_block if that is not NULL. */
static void cluster_down_leaking(unsigned leaked, const void *leaked_block)
{
    raft_fixture_close(&fixture);
    raft_heap_set_default();
    unsigned live = counting.n;
    const void *left = live > 0 ? counting.blocks[0] : NULL;
    while (counting.n > 0) {
        free(counting.blocks[--counting.n]);
    }
    assert_int_equal(live, leaked);
    if (leaked == 1 && leaked_block != NULL) {
        assert_ptr_equal(left, leaked_block);
    }
}

static void cluster_down(unsigned leaked)
{
    cluster_down_leaking(leaked, NULL);
}

static void barrier_cb(struct raft_barrier *req, int status)
{
    (void)req;
    (void)status;
}

static struct raft_barrier barrier_req;

static void test_barrier_append_failure_frees_twice_unshielded(void **state)
{
    (void)state;
    struct raft *r = cluster_up(false);
    raft_fixture_io_fault(&fixture, 0, 0, 1); /* the next I/O call, the append, fails */
    counting.armed = true;
    int rv = raft_barrier(r, &barrier_req, barrier_cb);
    counting.armed = false;
    assert_int_not_equal(rv, 0);
    /* libraft 0.22.1: freed after the copy into its log, and again on its error path. */
    assert_int_equal(counting.first8_frees, 2);
    cluster_down(LEAKED_BY_FAILED_APPEND);
}

static void test_barrier_append_failure_shielded(void **state)
{
    (void)state;
    struct raft *r = cluster_up(true);
    uint64_t absorbed = tandem_raft_heap_double_frees();
    raft_fixture_io_fault(&fixture, 0, 0, 1);
    counting.armed = true;
    assert_true(tandem_raft_heap_watch_next(8));
    int rv = raft_barrier(r, &barrier_req, barrier_cb);
    assert_int_equal(tandem_raft_heap_unwatch(), 2);
    counting.armed = false;
    assert_int_not_equal(rv, 0);
    assert_int_equal(counting.first8_frees, 1); /* the heap below saw one free */
    assert_int_equal(tandem_raft_heap_double_frees(), absorbed + 1);
    cluster_down(LEAKED_BY_FAILED_APPEND);
}

/* raft_apply on the fixture: the watch tells whether raft freed the caller's buffer. */
static unsigned apply_watched(struct raft *r, int *rv)
{
    static struct raft_apply req;
    struct raft_buffer buf = {.base = raft_malloc(8), .len = 8};
    assert_non_null(buf.base);
    memset(buf.base, 0, buf.len);
    assert_true(tandem_raft_heap_watch(buf.base));
    *rv = raft_apply(r, &req, &buf, 1, NULL);
    unsigned frees = tandem_raft_heap_unwatch();
    if (*rv != 0 && frees == 0) {
        raft_free(buf.base); /* raft never took it */
    }
    return frees;
}

static void test_apply_ownership_on_failure(void **state)
{
    (void)state;
    struct raft *r = cluster_up(true);
    int rv;
    /* Refused by a follower: the buffer stays the caller's. */
    assert_int_equal(apply_watched(raft_fixture_get(&fixture, 1), &rv), 0);
    assert_int_equal(rv, RAFT_NOTLEADER);
    /* The append fails after the copy: raft freed it, once, and still reports a failure. */
    raft_fixture_io_fault(&fixture, 0, 0, 1);
    assert_int_equal(apply_watched(r, &rv), 1);
    assert_int_not_equal(rv, 0);
    cluster_down(LEAKED_BY_FAILED_APPEND);
}

/* The fixture's own append (src/fixture.c) asserts its allocation succeeds: the failures are
 * injected into libraft's code only, so allocations inside it are never refused. */
static int (*fixture_append)(struct raft_io *io, struct raft_io_append *req,
                             const struct raft_entry entries[], unsigned n, raft_io_append_cb cb);

static int append_not_failing(struct raft_io *io, struct raft_io_append *req,
                              const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    bool failing = counting.failing;
    counting.failing = false;
    int rv = fixture_append(io, req, entries, n, cb);
    counting.failing = failing;
    return rv;
}

/* One raft_apply or raft_barrier on the leader with the allocation number n refused; returns
 * whether a refusal happened (false: the call got through all its allocations). Each caller's
 * rule is the proposer's: the buffer is freed by us only when raft did not free it. */
static bool call_with_allocation_refused(long n, bool barrier)
{
    static struct raft_apply apply_req;
    struct raft *r = cluster_up(true);
    fixture_append = r->io->append;
    r->io->append = append_not_failing;
    struct raft_buffer buf = {.base = raft_malloc(8), .len = 8};
    assert_non_null(buf.base);
    memset(buf.base, 0, buf.len);
    counting.fail_countdown = n;
    counting.failed = false;
    counting.eights[0] = counting.eights[1] = NULL;
    counting.failing = true;
    int rv;
    if (barrier) {
        assert_true(tandem_raft_heap_watch_next(8));
        rv = raft_barrier(r, &barrier_req, barrier_cb);
        (void)tandem_raft_heap_unwatch();
        raft_free(buf.base);
    } else {
        assert_true(tandem_raft_heap_watch(buf.base));
        rv = raft_apply(r, &apply_req, &buf, 1, NULL);
        if (tandem_raft_heap_unwatch() == 0 && rv != 0) {
            raft_free(buf.base);
        }
    }
    counting.failing = false;
    bool failed = counting.failed;
    assert_int_equal(rv, failed ? RAFT_NOMEM : 0);
    r->io->append = fixture_append;
    /* The entry's copy in raft's log (raft_barrier's second 8-byte block, raft_apply's first)
     * is leaked by libraft when a later allocation fails (LEAKED_BY_FAILED_APPEND's logDiscard,
     * or logAppend failing after entryCopy). Anything else left is ours: a leak. */
    void *copy = counting.eights[barrier ? 1 : 0];
    bool copy_leaked = rv != 0 && copy != NULL;
    cluster_down_leaking(copy_leaked ? LEAKED_BY_FAILED_APPEND : 0, copy);
    return failed;
}

/* raft's heap hook refusing each allocation of raft_apply, then of raft_barrier, in turn (the
 * allocation count after arming), until a call needs no more: no double free, no leak. */
static void test_every_allocation_failure_of_apply_and_barrier(void **state)
{
    (void)state;
    for (int barrier = 0; barrier <= 1; barrier++) {
        long n = 0;
        while (call_with_allocation_refused(n, barrier)) {
            n++;
            assert_true(n < 64); /* a bound: 0.22.1 allocates 6 times in raft_apply */
        }
        assert_true(n >= 3); /* the sweep did refuse allocations before and after the copy */
    }
}

static void test_watch_needs_the_current_heap(void **state)
{
    (void)state;
    raft_heap_set(&counting_heap); /* somebody else's heap on top: the watch cannot see */
    int x;
    assert_false(tandem_raft_heap_watch(&x));
    tandem_raft_heap_install();
    assert_true(tandem_raft_heap_watch(&x));
    assert_false(tandem_raft_heap_watch_next(8)); /* one watch at a time */
    assert_int_equal(tandem_raft_heap_unwatch(), 0);
    raft_heap_set_default();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_barrier_append_failure_shielded),
        cmocka_unit_test(test_barrier_append_failure_frees_twice_unshielded),
        cmocka_unit_test(test_apply_ownership_on_failure),
        cmocka_unit_test(test_every_allocation_failure_of_apply_and_barrier),
        cmocka_unit_test(test_watch_needs_the_current_heap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
