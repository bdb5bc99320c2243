/* What every fuzz target shares: the libFuzzer entry point it defines, a private temporary
 * directory, and a libuv loop run with a deadline (a target that needs the deadline has hung:
 * that is a finding, so it aborts). */
#ifndef TANDEM_TESTS_FUZZ_FUZZ_H
#define TANDEM_TESTS_FUZZ_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <uv.h>

#define FUZZ_RUN_DEADLINE_MS 5000 /* one input's network exchange ends well before this */

/* Defined by each target; libFuzzer calls it (tests/fuzz/replay.c does without clang). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A directory of this process's own in /dev/shm when writable, else under TMPDIR, made once.
 * It is left behind (a crash cannot clean up); tests/fuzz/run.sh removes its runs' dirs. */
static inline const char *fuzz_tmp_dir(void)
{
    static char dir[128];
    if (dir[0] == '\0') {
        const char *base = getenv("TMPDIR");
        if (access("/dev/shm", W_OK) == 0) {
            base = "/dev/shm"; /* LMDB's syncs cost nothing there */
        } else if (base == NULL || base[0] == '\0') {
            base = "/tmp";
        }
        snprintf(dir, sizeof dir, "%s/tandem-fuzz-XXXXXX", base);
        if (mkdtemp(dir) == NULL) {
            perror("fuzz: mkdtemp");
            abort();
        }
    }
    return dir;
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
