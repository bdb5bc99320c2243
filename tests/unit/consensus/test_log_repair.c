/* Unit tests for the raft log repair (consensus/log_repair.h): a real raft_uv log of several
 * segments is shaped the way libraft 0.22.1 leaves it when closing a segment fails (that
 * segment still open, later ones closed), which raft_uv's own load refuses; the repair closes it
 * into its gap and every entry loads at its index. Shapes the repair cannot prove are left as
 * they are. */
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

#include "consensus/log_repair.h"
#include "consensus/log_scan.h"

#define FD_MAX        16
#define SEGMENT_BYTES (32u * 1024u)
#define ENTRY_BYTES   1024u
#define ENTRIES       200u /* 31 to a segment: 7 segments besides 1-1 */
#define SEGMENTS_MAX  64u

struct fixture {
    char root[PATH_MAX], raft_dir[PATH_MAX + 8], scratch[PATH_MAX + 16];
    char closed[SEGMENTS_MAX][64]; /* the closed segments, oldest first */
    unsigned n_closed;
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void closed_cb(struct raft_io *io)
{
    *(bool *)io->data = true;
}

static void append_cb(struct raft_io_append *req, int status)
{
    assert_int_equal(status, 0);
    *(bool *)req->data = true;
}

/* Entry i (index i + 2: 1 is the bootstrap configuration) carries its index in its first 8
 * bytes. */
static void write_log(const char *dir)
{
    uv_loop_t loop;
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_configuration conf;
    struct raft_snapshot *snapshot = NULL;
    struct raft_entry *loaded = NULL;
    size_t n_loaded = 0;
    raft_term term;
    raft_id voted_for;
    raft_index start;
    bool closed = false;
    assert_int_equal(uv_loop_init(&loop), 0);
    tandem_log_scan_offline_transport(&transport);
    memset(&io, 0, sizeof io);
    assert_int_equal(raft_uv_init(&io, &loop, dir, &transport), 0);
    raft_uv_set_segment_size(&io, SEGMENT_BYTES);
    assert_int_equal(io.init(&io, 1, "127.0.0.1:1"), 0);
    raft_configuration_init(&conf);
    assert_int_equal(raft_configuration_add(&conf, 1, "127.0.0.1:1", RAFT_VOTER), 0);
    assert_int_equal(io.bootstrap(&io, &conf), 0);
    raft_configuration_close(&conf);
    assert_int_equal(io.load(&io, &term, &voted_for, &snapshot, &start, &loaded, &n_loaded), 0);
    assert_int_equal(n_loaded, 1);
    raft_free(loaded[0].batch);
    raft_free(loaded);
    for (unsigned i = 0; i < ENTRIES; i++) {
        struct raft_entry e = {.term = 1, .type = RAFT_COMMAND};
        struct raft_io_append req;
        bool done = false;
        e.buf.len = ENTRY_BYTES;
        e.buf.base = calloc(1, ENTRY_BYTES);
        assert_non_null(e.buf.base);
        uint64_t index = i + 2;
        memcpy(e.buf.base, &index, sizeof index);
        req.data = &done;
        assert_int_equal(io.append(&io, &req, &e, 1, append_cb), 0);
        while (!done) {
            uv_run(&loop, UV_RUN_ONCE);
        }
        free(e.buf.base);
    }
    io.data = &closed;
    io.close(&io, closed_cb);
    while (!closed) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    raft_uv_close(&io);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(a, b); /* zero-padded first indexes sort as numbers */
}

static void list_closed(struct fixture *f)
{
    DIR *d = opendir(f->raft_dir);
    assert_non_null(d);
    f->n_closed = 0;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (strlen(e->d_name) == 33 && e->d_name[16] == '-') {
            assert_true(f->n_closed < SEGMENTS_MAX);
            snprintf(f->closed[f->n_closed++], sizeof f->closed[0], "%s", e->d_name);
        }
    }
    closedir(d);
    qsort(f->closed, f->n_closed, sizeof f->closed[0], name_cmp);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    assert_non_null(f);
    snprintf(f->root, sizeof f->root, "%s/tandem-repair-XXXXXX",
             tmp != NULL && tmp[0] ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->raft_dir, sizeof f->raft_dir, "%s/raft", f->root);
    snprintf(f->scratch, sizeof f->scratch, "%s/raft.repair", f->root);
    assert_int_equal(mkdir(f->raft_dir, 0700), 0);
    write_log(f->raft_dir);
    list_closed(f);
    assert_true(f->n_closed >= 6); /* 1-1 and at least five of entries */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    (void)nftw(f->root, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Turns closed segment k back into open-counter as raft_uv leaves a full one it did not close:
 * the length of a whole segment, zeros after the entries. */
static void reopen(struct fixture *f, unsigned k, unsigned counter)
{
    char from[PATH_MAX + 80], to[PATH_MAX + 80];
    snprintf(from, sizeof from, "%s/%s", f->raft_dir, f->closed[k]);
    snprintf(to, sizeof to, "%s/open-%u", f->raft_dir, counter);
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(truncate(to, SEGMENT_BYTES), 0);
}

static bool exists(const struct fixture *f, const char *name)
{
    char path[PATH_MAX + 80];
    snprintf(path, sizeof path, "%s/%s", f->raft_dir, name);
    return access(path, F_OK) == 0;
}

/* The whole log loads, every entry at its index. */
static void assert_log_whole(const struct fixture *f)
{
    struct tandem_log_scan scan;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    int rv = tandem_log_scan_load(f->raft_dir, f->scratch, &scan, errmsg);
    assert_int_equal(rv, 0);
    assert_int_equal(scan.first_index, 1);
    assert_int_equal(scan.n, ENTRIES + 1);
    for (size_t i = 1; i < scan.n; i++) {
        uint64_t index;
        assert_true(scan.entries[i].buf.len >= sizeof index);
        memcpy(&index, scan.entries[i].buf.base, sizeof index);
        assert_int_equal(index, scan.first_index + i);
    }
    tandem_log_scan_free(&scan);
}

/* The CI case: the segment after the first one of entries was never closed, the next ones
 * were, and the newest is still open behind them. raft_uv refuses the log; the repair closes
 * open-1 into its gap, keeps open-2 open, and says so; a second pass finds nothing. */
static void test_segment_left_open_is_closed_into_its_gap(void **state)
{
    struct fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    char gap_name[64];
    struct tandem_log_scan scan;
    struct tandem_log_repair repair;
    snprintf(gap_name, sizeof gap_name, "%s", f->closed[2]);
    reopen(f, 2, 1);
    reopen(f, f->n_closed - 1, 2);
    assert_int_not_equal(tandem_log_scan_load(f->raft_dir, f->scratch, &scan, errmsg), 0);
    assert_non_null(strstr(errmsg, "unexpected closed segment"));

    struct tandem_log_gap gap;
    assert_int_equal(tandem_log_gap_find(f->raft_dir, &gap, errmsg), 0);
    assert_true(gap.found);
    assert_int_equal(gap.n, 1);
    char gap_range[64];
    snprintf(gap_range, sizeof gap_range, "%016llu-%016llu", (unsigned long long)gap.first,
             (unsigned long long)gap.end);
    assert_string_equal(gap_range, gap_name);

    assert_int_equal(tandem_log_repair(f->raft_dir, f->scratch, &repair, errmsg), 0);
    assert_int_equal(repair.closed, 1);
    assert_non_null(strstr(repair.detail, "open-1 as "));
    assert_non_null(strstr(repair.detail, gap_name));
    assert_true(exists(f, gap_name));
    assert_false(exists(f, "open-1"));
    assert_true(exists(f, "open-2"));
    assert_int_equal(access(f->scratch, F_OK), -1); /* no scratch left */
    char path[PATH_MAX + 80];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", f->raft_dir, gap_name);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size < SEGMENT_BYTES); /* cut where its entries end, as raft_uv closes */

    assert_int_equal(tandem_log_repair(f->raft_dir, f->scratch, &repair, errmsg), 0);
    assert_int_equal(repair.closed, 0);
    assert_int_equal(tandem_log_gap_find(f->raft_dir, &gap, errmsg), 0);
    assert_false(gap.found);
    assert_log_whole(f);
}

/* Two segments left open, each behind closed ones: both go back, oldest counter first. */
static void test_two_segments_left_open(void **state)
{
    struct fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    struct tandem_log_repair repair;
    reopen(f, 2, 1);
    reopen(f, 4, 3);
    assert_int_equal(tandem_log_repair(f->raft_dir, f->scratch, &repair, errmsg), 0);
    assert_int_equal(repair.closed, 2);
    assert_non_null(strstr(repair.detail, "open-1 as "));
    assert_non_null(strstr(repair.detail, "; open-3 as "));
    assert_log_whole(f);
}

/* Segment 2 left open, and closed segment `lost` gone as well: not a shape raft_uv leaves, so
 * nothing is renamed and raft_uv's load reports the log. */
static void assert_left_alone_when_lost(struct fixture *f, unsigned lost)
{
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    char path[PATH_MAX + 80];
    struct tandem_log_repair repair;
    struct tandem_log_scan scan;
    reopen(f, 2, 1);
    snprintf(path, sizeof path, "%s/%s", f->raft_dir, f->closed[lost]);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(tandem_log_repair(f->raft_dir, f->scratch, &repair, errmsg), 0);
    assert_int_equal(repair.closed, 0);
    assert_true(exists(f, "open-1"));
    assert_false(exists(f, f->closed[2]));
    assert_int_not_equal(tandem_log_scan_load(f->raft_dir, f->scratch, &scan, errmsg), 0);
}

/* The next segment lost too: the gap is larger than open-1 holds. */
static void test_a_gap_it_does_not_fill_is_left_alone(void **state)
{
    assert_left_alone_when_lost(*state, 3);
}

/* A second gap (a later segment lost) that no open segment fills: every gap is filled or
 * nothing is touched. */
static void test_every_gap_is_filled_or_none(void **state)
{
    assert_left_alone_when_lost(*state, 4);
}

/* A log without gaps, open segments at its end only (a crash mid-segment): untouched. */
static void test_a_sound_log_is_untouched(void **state)
{
    struct fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    struct tandem_log_repair repair;
    reopen(f, f->n_closed - 2, 7);
    reopen(f, f->n_closed - 1, 8);
    assert_int_equal(tandem_log_repair(f->raft_dir, f->scratch, &repair, errmsg), 0);
    assert_int_equal(repair.closed, 0);
    assert_true(exists(f, "open-7"));
    assert_true(exists(f, "open-8"));
    assert_log_whole(f);
}

/* Not a directory: a clear error. */
static void test_missing_directory(void **state)
{
    struct fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    char dir[PATH_MAX + 16];
    struct tandem_log_repair repair;
    snprintf(dir, sizeof dir, "%s/absent", f->root);
    assert_int_not_equal(tandem_log_repair(dir, f->scratch, &repair, errmsg), 0);
    assert_non_null(strstr(errmsg, "absent"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_segment_left_open_is_closed_into_its_gap, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_two_segments_left_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_gap_it_does_not_fill_is_left_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_sound_log_is_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_gap_is_filled_or_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_directory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
