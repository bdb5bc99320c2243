/* An LD_PRELOAD shim for integration tests that moves CLOCK_REALTIME forward by
 * TANDEM_CLOCKSHIFT_S seconds (the wall clock tandemd records times and decides retention with),
 * so that a test can make a record older than a retention period counted in days; the monotonic
 * clocks (timers, raft, libuv) are untouched.
 *   LD_PRELOAD=BUILD/libtandem_clockshift.so TANDEM_CLOCKSHIFT_S=172800 tandemd ...
 * Without TANDEM_CLOCKSHIFT_S it changes nothing. */
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static time_t shift_s;

__attribute__((constructor)) static void clockshift_init(void)
{
    const char *shift = getenv("TANDEM_CLOCKSHIFT_S");
    shift_s = shift != NULL ? (time_t)strtoll(shift, NULL, 10) : 0;
}

__attribute__((visibility("default"))) int clock_gettime(clockid_t id, struct timespec *ts)
{
    int rv = (int)syscall(SYS_clock_gettime, id, ts);
    if (rv == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        ts->tv_sec += shift_s;
    }
    return rv;
}
