/* raft_uv's kernel AIO contexts destroyed off the loop thread.
 *
 * libraft 0.22.1 gives each open segment of the raft log a kernel AIO context of its own and,
 * when the segment is full and closes, destroys it on the loop thread (src/uv_writer.c,
 * uvWriterCleanUpAndFireCloseCb). io_destroy(2) returns only once the context's references are
 * gone, which the kernel drops after RCU grace periods: 38-69 ms measured at 1M keys on the
 * 2-core bench machine, at every segment close (every segment_size_kib of log), during which
 * the loop sends no heartbeat and answers nothing. libraft reaches io_destroy through libc's
 * syscall() (src/syscall.c), called through the PLT, so tandemd defines syscall() itself: every
 * call goes on to libc's, except io_destroy once the destroyer runs, which threads of its own
 * make instead and which returns 0 at once (raft_uv ignores its result, and the context is
 * never used again: its segment's file and eventfd are closed). When the destroyer's queue is
 * full, or it is not running, io_destroy is made where it is called, as before.
 *
 * Only an executable linking this object (tandemd, and tests of it) takes syscall() over; an
 * object of the consensus library is linked only when one of its symbols is referenced, so
 * tandemd calls tandem_aio_destroyer_start. */
#ifndef TANDEM_CONSENSUS_AIO_DESTROY_H
#define TANDEM_CONSENSUS_AIO_DESTROY_H

#include <stdint.h>

/* Contexts waiting to be destroyed, and the threads destroying them: one io_destroy takes tens
 * of milliseconds of waiting, not of CPU, so four overlap their waits. At 8 MiB a segment
 * closes every second or so; the tests' 128 KiB segments close 30 times a second and more, which
 * one thread did not keep up with under load. A context reserves 16 of the kernel's 65,536 AIO
 * events (fs.aio-max-nr) on two CPUs, so the queue holds at most 1,024 of them. */
#define TANDEM_AIO_DESTROY_QUEUE_MAX 64u
#define TANDEM_AIO_DESTROY_THREADS   4u

struct tandem_aio_destroy_stats {
    uint64_t deferred;    /* io_destroy calls handed to the destroyer */
    uint64_t destroyed;   /* of those, destroyed (the kernel answered, whatever it said) */
    uint64_t synchronous; /* made where they were called: the destroyer not running, or full */
    uint64_t failed;      /* deferred ones the kernel refused (EINVAL: not a context) */
};

/* Starts the destroyer's threads. Returns 0 or a tandem error code with errmsg filled; calling it
 * again while it runs does nothing. */
int tandem_aio_destroyer_start(char *errmsg);

/* Destroys what is queued, then stops the threads; io_destroy is synchronous again. */
void tandem_aio_destroyer_stop(void);

void tandem_aio_destroy_stats_read(struct tandem_aio_destroy_stats *out);

#endif
