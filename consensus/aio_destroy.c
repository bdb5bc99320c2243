/* raft_uv's AIO contexts destroyed off the loop thread (consensus/aio_destroy.h). */
#include "consensus/aio_destroy.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>

#include "storage/assert.h"
#include "storage/error.h"

typedef long (*syscall_fn)(long number, ...);

static _Atomic(syscall_fn) libc_syscall;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping; /* the threads empty the queue and end */
    pthread_t threads[TANDEM_AIO_DESTROY_THREADS];
    unsigned n_threads; /* running: they take contexts (all under lock) */
    unsigned long queue[TANDEM_AIO_DESTROY_QUEUE_MAX]; /* aio_context_t values */
    unsigned head, n;
} destroyer = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static atomic_uint_fast64_t deferred, destroyed, synchronous, failed;

static syscall_fn libc(void)
{
    syscall_fn fn = atomic_load_explicit(&libc_syscall, memory_order_acquire);
    if (fn == NULL) {
        /* The next definition after this executable's: libc's. */
        void *symbol = dlsym(RTLD_NEXT, "syscall");
        tandem_assert(symbol != NULL);
        memcpy(&fn, &symbol, sizeof fn); /* POSIX: a function's address from dlsym */
        atomic_store_explicit(&libc_syscall, fn, memory_order_release);
    }
    return fn;
}

/* Resolved before main, while one thread runs: the first syscall() need not look it up. */
__attribute__((constructor)) static void resolve_libc_syscall(void)
{
    (void)libc();
}

static bool defer(unsigned long ctx)
{
    bool taken = false;
    pthread_mutex_lock(&destroyer.lock);
    if (destroyer.n_threads > 0 && !destroyer.stopping &&
        destroyer.n < TANDEM_AIO_DESTROY_QUEUE_MAX) {
        destroyer.queue[(destroyer.head + destroyer.n) % TANDEM_AIO_DESTROY_QUEUE_MAX] = ctx;
        destroyer.n++;
        taken = true;
        pthread_cond_signal(&destroyer.wake);
    }
    pthread_mutex_unlock(&destroyer.lock);
    return taken;
}

/* libc's syscall() with every call but a deferred io_destroy going on to it. The arguments are
 * read as libc's reads them, six machine words whatever the call passed (it is variadic and
 * cannot know): the words past those passed are the caller's registers and stack, read and
 * passed on, never used; so no sanitizer looks at those reads. */
__attribute__((no_sanitize("address", "undefined"))) long syscall(long number, ...)
{
    va_list ap;
    va_start(ap, number);
    long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
    long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_io_destroy) {
        if (defer((unsigned long)a1)) {
            atomic_fetch_add(&deferred, 1);
            return 0;
        }
        atomic_fetch_add(&synchronous, 1);
    }
    return libc()(number, a1, a2, a3, a4, a5, a6);
}

static void *destroyer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&destroyer.lock);
    for (;;) {
        while (destroyer.n == 0 && !destroyer.stopping) {
            pthread_cond_wait(&destroyer.wake, &destroyer.lock);
        }
        if (destroyer.n == 0) {
            break; /* stopping, and nothing left (another thread may still finish one) */
        }
        unsigned long ctx = destroyer.queue[destroyer.head];
        destroyer.head = (destroyer.head + 1) % TANDEM_AIO_DESTROY_QUEUE_MAX;
        destroyer.n--;
        pthread_mutex_unlock(&destroyer.lock);
        if (libc()(SYS_io_destroy, ctx) != 0) {
            atomic_fetch_add(&failed, 1);
        }
        atomic_fetch_add(&destroyed, 1);
        pthread_mutex_lock(&destroyer.lock);
    }
    pthread_mutex_unlock(&destroyer.lock);
    return NULL;
}

int tandem_aio_destroyer_start(char *errmsg)
{
    pthread_mutex_lock(&destroyer.lock);
    if (destroyer.n_threads > 0) {
        pthread_mutex_unlock(&destroyer.lock);
        return 0;
    }
    destroyer.stopping = false;
    int rv = 0;
    while (destroyer.n_threads < TANDEM_AIO_DESTROY_THREADS && rv == 0) {
        rv = pthread_create(&destroyer.threads[destroyer.n_threads], NULL, destroyer_main, NULL);
        destroyer.n_threads += rv == 0 ? 1u : 0u;
    }
    unsigned started = destroyer.n_threads; /* fewer than asked still take the calls */
    pthread_mutex_unlock(&destroyer.lock);
    if (started == 0) {
        return tandem_error_set(errmsg, TANDEM_NOMEM, "AIO context destroyer: pthread_create: %s",
                                strerror(rv));
    }
    return 0;
}

void tandem_aio_destroyer_stop(void)
{
    pthread_mutex_lock(&destroyer.lock);
    if (destroyer.n_threads == 0) {
        pthread_mutex_unlock(&destroyer.lock);
        return;
    }
    destroyer.stopping = true;
    pthread_cond_broadcast(&destroyer.wake);
    pthread_mutex_unlock(&destroyer.lock);
    for (unsigned i = 0; i < destroyer.n_threads; i++) {
        int rv = pthread_join(destroyer.threads[i], NULL);
        tandem_assert(rv == 0);
    }
    pthread_mutex_lock(&destroyer.lock);
    destroyer.n_threads = 0;
    tandem_assert(destroyer.n == 0);
    destroyer.stopping = false;
    pthread_mutex_unlock(&destroyer.lock);
}

void tandem_aio_destroy_stats_read(struct tandem_aio_destroy_stats *out)
{
    out->deferred = atomic_load(&deferred);
    out->destroyed = atomic_load(&destroyed);
    out->synchronous = atomic_load(&synchronous);
    out->failed = atomic_load(&failed);
}
