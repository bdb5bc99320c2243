/* Background priority for the thread pool (storage/background.h). */
#include "storage/background.h"

#include <errno.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_int configured_nice = TANDEM_BACKGROUND_NICE_DEFAULT;
static atomic_uint_fast64_t lowered, failures;
static _Thread_local bool entered; /* this thread already took its background priority */

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

bool tandem_background_enter(void)
{
    if (entered) {
        return false;
    }
    entered = true;
    int increment = atomic_load(&configured_nice);
    if (increment == 0) {
        return false;
    }
    /* Linux keeps a nice value per thread: PRIO_PROCESS with a thread id names only that
     * thread (setpriority(2), NOTES). */
    pid_t tid = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int now = getpriority(PRIO_PROCESS, (id_t)tid);
    if (now == -1 && errno != 0) {
        atomic_fetch_add(&failures, 1);
        return false;
    }
    int target =
        now + increment > TANDEM_BACKGROUND_NICE_MAX ? TANDEM_BACKGROUND_NICE_MAX : now + increment;
    if (setpriority(PRIO_PROCESS, (id_t)tid, target) != 0) {
        atomic_fetch_add(&failures, 1);
        return false;
    }
    atomic_fetch_add(&lowered, 1);
    return true;
}

uint64_t tandem_background_threads_lowered(void)
{
    return atomic_load(&lowered);
}

uint64_t tandem_background_failures(void)
{
    return atomic_load(&failures);
}
