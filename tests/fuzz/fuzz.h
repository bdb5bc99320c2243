/* What every fuzz target shares: the libFuzzer entry point it defines, a private temporary
 * directory, and a libuv loop run with a deadline (a target that needs the deadline has hung:
 * that is a finding, so it aborts). */
#ifndef TANDEM_TESTS_FUZZ_FUZZ_H
#define TANDEM_TESTS_FUZZ_FUZZ_H

#include <ftw.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#define FUZZ_RUN_DEADLINE_MS 5000 /* one input's network exchange ends well before this */

/* Defined by each target; libFuzzer calls it (tests/fuzz/replay.c does without clang). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline int fuzz_tmp_remove_entry(const char *path, const struct stat *st, int flag,
                                        struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static char fuzz_tmp_path[256];

static inline void fuzz_tmp_remove(void)
{
    nftw(fuzz_tmp_path, fuzz_tmp_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A directory of this process's own, removed at exit (a crash leaves it: tests/fuzz/run.sh
 * points TANDEM_FUZZ_TMPDIR at a directory it removes). In TANDEM_FUZZ_TMPDIR when set, else
 * /dev/shm when writable (LMDB's syncs cost nothing there), else TMPDIR or /tmp. */
static inline const char *fuzz_tmp_dir(void)
{
    if (fuzz_tmp_path[0] == '\0') {
        const char *base = getenv("TANDEM_FUZZ_TMPDIR");
        if (base == NULL || base[0] == '\0') {
            base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        }
        if (base == NULL || base[0] == '\0') {
            base = "/tmp";
        }
        snprintf(fuzz_tmp_path, sizeof fuzz_tmp_path, "%s/tandem-fuzz-XXXXXX", base);
        if (mkdtemp(fuzz_tmp_path) == NULL) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_tmp_remove);
    }
    return fuzz_tmp_path;
}

static inline void fuzz_tick_cb(uv_timer_t *t)
{
    (void)t;
}

/* Runs loop until done(arg), with a timer ticking so UV_RUN_ONCE never blocks for long; aborts
 * after FUZZ_RUN_DEADLINE_MS, naming what. */
static inline void fuzz_run_until(uv_loop_t *loop, uv_timer_t *tick, bool (*done)(void *),
                                  void *arg, const char *what)
{
    uv_timer_start(tick, fuzz_tick_cb, 2, 2);
    uv_update_time(loop);
    uint64_t deadline = uv_now(loop) + FUZZ_RUN_DEADLINE_MS;
    while (!done(arg)) {
        if (uv_now(loop) > deadline) {
            fprintf(stderr, "fuzz: %s did not finish within %d ms\n", what, FUZZ_RUN_DEADLINE_MS);
            abort();
        }
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_timer_stop(tick);
}

#endif
