/* Background priority for the thread pool (storage/background.h). */
#include "storage/background.h"

#include <errno.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "storage/assert.h"

static atomic_int configured_nice = TANDEM_BACKGROUND_NICE_DEFAULT;
static atomic_uint_fast64_t works_lowered, threads_stuck, failures;
/* This thread's state: inside enter/leave, lowered by that enter, the nice to take back, and
 * whether an earlier leave could not take it back (then it stays low and enters do nothing). */
static _Thread_local bool inside, lowered, stuck;
static _Thread_local int restore_nice;

void tandem_background_set_nice(int nice)
{
    if (nice < 0) {
        nice = 0;
    }
    if (nice > TANDEM_BACKGROUND_NICE_MAX) {
        nice = TANDEM_BACKGROUND_NICE_MAX;
    }
    atomic_store(&configured_nice, nice);
}

int tandem_background_nice(void)
{
    return atomic_load(&configured_nice);
}

/* Linux keeps a nice value per thread: PRIO_PROCESS with a thread id names only that thread
 * (setpriority(2), NOTES). */
static id_t own_tid(void)
{
    return (id_t)syscall(SYS_gettid);
}

bool tandem_background_enter(void)
{
    tandem_assert(!inside); /* never nested */
    inside = true;
    lowered = false;
    int increment = atomic_load(&configured_nice);
    if (increment == 0 || stuck) {
        return false;
    }
    errno = 0;
    int now = getpriority(PRIO_PROCESS, own_tid());
    if (now == -1 && errno != 0) {
        atomic_fetch_add(&failures, 1);
        return false;
    }
    int target =
        now + increment > TANDEM_BACKGROUND_NICE_MAX ? TANDEM_BACKGROUND_NICE_MAX : now + increment;
    if (target == now) {
        return false; /* already as low as it goes */
    }
    if (setpriority(PRIO_PROCESS, own_tid(), target) != 0) {
        atomic_fetch_add(&failures, 1);
        return false;
    }
    restore_nice = now;
    lowered = true;
    atomic_fetch_add(&works_lowered, 1);
    return true;
}

void tandem_background_leave(void)
{
    tandem_assert(inside);
    inside = false;
    if (!lowered) {
        return;
    }
    lowered = false;
    if (setpriority(PRIO_PROCESS, own_tid(), restore_nice) != 0) {
        stuck = true; /* no privilege to take it back: low from now on, as it is now */
        atomic_fetch_add(&threads_stuck, 1);
    }
}

void tandem_background_run(void (*fn)(struct uv_work_s *work), struct uv_work_s *work)
{
    (void)tandem_background_enter();
    fn(work);
    tandem_background_leave();
}

uint64_t tandem_background_works_lowered(void)
{
    return atomic_load(&works_lowered);
}

uint64_t tandem_background_threads_stuck(void)
{
    return atomic_load(&threads_stuck);
}

uint64_t tandem_background_failures(void)
{
    return atomic_load(&failures);
}
