/* Unit tests for the fork point: term histories of a log (bounded to the newest terms), the
 * highest index whose term matches, how certain that is when the history is short, and a
 * kept raft_uv log read without changing a byte of it. */
#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <raft/uv.h>

#include "consensus/log_scan.h"

#define FD_MAX 16

/* A history from (term, first index) pairs, ending at last_index. */
static struct tandem_term_history history(const uint64_t (*starts)[2], unsigned n,
                                          uint64_t last_index)
{
    struct tandem_term_history h;
    memset(&h, 0, sizeof h);
    for (unsigned k = 0; k < n; k++) {
        h.terms[k].term = starts[k][0];
        h.terms[k].first_index = starts[k][1];
    }
    h.n = n;
    h.first_index = n > 0 ? starts[0][1] : 0;
    h.last_index = last_index;
    h.last_term = n > 0 ? starts[n - 1][0] : 0;
    assert_true(tandem_term_history_ok(&h));
    return h;
}

static void test_term_at_follows_the_starts(void **state)
{
    (void)state;
    const uint64_t starts[][2] = {{1, 1}, {3, 5}, {4, 9}};
    struct tandem_term_history h = history(starts, 3, 12);
    assert_int_equal(tandem_term_history_term_at(&h, 1), 1);
    assert_int_equal(tandem_term_history_term_at(&h, 4), 1);
    assert_int_equal(tandem_term_history_term_at(&h, 5), 3);
    assert_int_equal(tandem_term_history_term_at(&h, 12), 4);
    assert_int_equal(tandem_term_history_term_at(&h, 13), 0); /* beyond the log */
    assert_int_equal(tandem_term_history_term_at(&h, 0), 0);
}

/* A log of n entries whose terms step up at the given indexes: {{term, first index}, ...}. */
static uint64_t *terms_of(const uint64_t (*steps)[2], unsigned n_steps, size_t n)
{
    uint64_t *terms = calloc(n, sizeof *terms);
    assert_non_null(terms);
    for (size_t i = 0; i < n; i++) {
        for (unsigned k = 0; k < n_steps; k++) {
            terms[i] = i + 1 >= steps[k][1] ? steps[k][0] : terms[i];
        }
    }
    return terms;
}

/* The case: the old site's leader took writes at term 5 the survivors never had; the
 * survivors' log went on at term 4 from index 1058. */
static void test_fork_where_the_terms_part(void **state)
{
    (void)state;
    const uint64_t starts[][2] = {{1, 1}, {4, 1000}}, node[][2] = {{1, 1}, {4, 1000}, {5, 1058}};
    struct tandem_term_history cluster = history(starts, 2, 1060);
    uint64_t *terms = terms_of(node, 3, 1062);
    struct tandem_fork fork;
    tandem_fork_find(terms, 1, 1062, &cluster, &fork);
    assert_int_equal(fork.index, 1057);
    assert_int_equal(fork.term, 4);
    assert_int_equal(fork.certainty, TANDEM_FORK_EXACT);
    free(terms);
}

static void test_fork_at_the_end_of_a_shorter_log(void **state)
{
    (void)state;
    const uint64_t starts[][2] = {{2, 1}};
    struct tandem_term_history cluster = history(starts, 1, 10);
    uint64_t *terms = terms_of(starts, 1, 12); /* two entries more than the cluster */
    struct tandem_fork fork;
    tandem_fork_find(terms, 1, 12, &cluster, &fork);
    assert_int_equal(fork.index, 10);
    assert_int_equal(fork.certainty, TANDEM_FORK_EXACT);
    tandem_fork_find(terms, 1, 7, &cluster, &fork); /* a prefix: nothing after the fork */
    assert_int_equal(fork.index, 7);
    assert_int_equal(fork.term, 2);
    free(terms);
}

/* The cluster's history starts at 100 (older terms dropped): a node that shares no term with
 * it forked at 99 or before, and says so. */
static void test_fork_below_a_short_history_is_at_or_before(void **state)
{
    (void)state;
    const uint64_t starts[][2] = {{7, 100}, {8, 150}}, node[][2] = {{6, 1}};
    struct tandem_term_history cluster = history(starts, 2, 200);
    uint64_t *terms = terms_of(node, 1, 200); /* a term the cluster's history does not hold */
    struct tandem_fork fork;
    tandem_fork_find(terms, 1, 200, &cluster, &fork);
    assert_int_equal(fork.index, 99);
    assert_int_equal(fork.term, 0);
    assert_int_equal(fork.certainty, TANDEM_FORK_AT_OR_BEFORE);
    assert_string_equal(tandem_fork_certainty_name(fork.certainty), "at_or_before");
    const uint64_t first[][2] = {{7, 1}};
    cluster = history(first, 1, 5);
    tandem_fork_find(terms, 1, 3, &cluster, &fork); /* nothing in common at all: index 0 */
    assert_int_equal(fork.index, 0);
    assert_int_equal(fork.certainty, TANDEM_FORK_EXACT);
    free(terms);
}

static void test_history_keeps_the_newest_terms(void **state)
{
    (void)state;
    size_t n = TANDEM_TERM_HISTORY_MAX + 10;
    struct raft_entry *entries = calloc(n, sizeof *entries);
    assert_non_null(entries);
    for (size_t i = 0; i < n; i++) {
        entries[i].term = i + 1; /* one term per entry */
    }
    struct tandem_log_scan scan = {.first_index = 5, .entries = entries, .n = n};
    struct tandem_term_history h;
    tandem_term_history_of(&scan, &h);
    assert_int_equal(h.n, TANDEM_TERM_HISTORY_MAX);
    assert_int_equal(h.first_index, 5 + 10);
    assert_int_equal(h.last_index, 5 + n - 1);
    assert_int_equal(h.last_term, n);
    assert_true(tandem_term_history_ok(&h));
    free(entries);
}

/* ---- a real raft_uv directory ---- */

/* nftw's visitor (FTW_DEPTH: a directory comes after its files). */
static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void closed_cb(struct raft_io *io)
{
    *(bool *)io->data = true;
}

/* Bootstraps a raft_uv log in dir: one configuration entry at term 1. */
static void bootstrap_log(const char *dir)
{
    uv_loop_t loop;
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_configuration conf;
    bool closed = false;
    assert_int_equal(uv_loop_init(&loop), 0);
    tandem_log_scan_offline_transport(&transport);
    memset(&io, 0, sizeof io);
    assert_int_equal(raft_uv_init(&io, &loop, dir, &transport), 0);
    assert_int_equal(io.init(&io, 1, "127.0.0.1:1"), 0);
    raft_configuration_init(&conf);
    assert_int_equal(raft_configuration_add(&conf, 1, "127.0.0.1:1", RAFT_VOTER), 0);
    assert_int_equal(io.bootstrap(&io, &conf), 0);
    raft_configuration_close(&conf);
    io.data = &closed;
    io.close(&io, closed_cb);
    while (!closed) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    raft_uv_close(&io);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static unsigned count_files(const char *dir)
{
    DIR *d = opendir(dir);
    unsigned n = 0;
    assert_non_null(d);
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        n += e->d_name[0] != '.' ? 1 : 0;
    }
    closedir(d);
    return n;
}

static void test_scan_reads_a_kept_log_and_leaves_it_alone(void **state)
{
    (void)state;
    char root[PATH_MAX], raft_dir[PATH_MAX + 8], scratch[PATH_MAX + 8];
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/tandem-scan-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
    assert_non_null(mkdtemp(root));
    snprintf(raft_dir, sizeof raft_dir, "%s/raft", root);
    snprintf(scratch, sizeof scratch, "%s/.scan", root);
    assert_int_equal(mkdir(raft_dir, 0700), 0);
    bootstrap_log(raft_dir);
    unsigned files = count_files(raft_dir);

    struct tandem_log_scan scan;
    assert_int_equal(tandem_log_scan_load(raft_dir, scratch, &scan, errmsg), 0);
    assert_int_equal(scan.first_index, 1);
    assert_int_equal(scan.n, 1);
    assert_int_equal(scan.entries[0].term, 1);
    assert_int_equal(scan.entries[0].type, RAFT_CHANGE);
    tandem_log_scan_free(&scan);
    assert_int_equal(count_files(raft_dir), files);
    assert_int_equal(access(scratch, F_OK), -1); /* the scratch copy is gone */

    /* Not a raft directory: a clear error, nothing left behind. */
    snprintf(raft_dir, sizeof raft_dir, "%s/absent", root);
    assert_int_not_equal(tandem_log_scan_load(raft_dir, scratch, &scan, errmsg), 0);
    assert_non_null(strstr(errmsg, "absent"));
    assert_int_equal(access(scratch, F_OK), -1);
    (void)nftw(root, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_term_at_follows_the_starts),
        cmocka_unit_test(test_fork_where_the_terms_part),
        cmocka_unit_test(test_fork_at_the_end_of_a_shorter_log),
        cmocka_unit_test(test_fork_below_a_short_history_is_at_or_before),
        cmocka_unit_test(test_history_keeps_the_newest_terms),
        cmocka_unit_test(test_scan_reads_a_kept_log_and_leaves_it_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
