/* What the simulations share to keep a seed cheap under ASan and to say what a seed costs: a
 * raft heap whose raft_realloc grows large blocks geometrically, the ASan options their seed
 * processes run with, and the per-seed timing their summary prints.
 *
 * raft's fixture keeps each server's "disk" as one array it raft_realloc()s on every append and
 * never compacts, and ASan's realloc always moves the block: O(entries) per append, a
 * quadratic seed (71% of sim_test_fixture's time under ASan). Here a block of SIM_HEAP_GROW_MIN
 * bytes or more gets twice what it asked for, the spare tail poisoned so that ASan still reports
 * a read or write past the size raft asked for. Everything else goes to malloc/free unchanged. */
#ifndef TANDEM_TESTS_SIM_HEAP_H
#define TANDEM_TESTS_SIM_HEAP_H

#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

#include <raft.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SIM_HEAP_POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define SIM_HEAP_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SIM_HEAP_POISON(p, n)   ((void)(p), (void)(n))
#define SIM_HEAP_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define SIM_HEAP_GROW_MIN 4096 /* blocks this big or more grow by doubling */
#define SIM_HEAP_BLOCKS   64   /* grown blocks alive at once (about 3 per server) */

/* A block realloc handed out with spare room: size bytes usable, capacity allocated. */
struct sim_heap_block {
    void *ptr; /* NULL for a free slot */
    size_t size, capacity;
};

static struct sim_heap_block sim_heap_blocks[SIM_HEAP_BLOCKS];
static unsigned sim_heap_top; /* slots at or above it were never used: every free stops there */

static struct sim_heap_block *sim_heap_find(const void *ptr)
{
    for (unsigned i = 0; ptr != NULL && i < sim_heap_top; i++) {
        if (sim_heap_blocks[i].ptr == ptr) {
            return &sim_heap_blocks[i];
        }
    }
    return NULL;
}

/* A free slot, NULL when all are taken. */
static struct sim_heap_block *sim_heap_slot(void)
{
    for (unsigned i = 0; i < SIM_HEAP_BLOCKS; i++) {
        if (sim_heap_blocks[i].ptr == NULL) {
            sim_heap_top = i >= sim_heap_top ? i + 1 : sim_heap_top;
            return &sim_heap_blocks[i];
        }
    }
    return NULL;
}

/* Stops tracking b; its whole capacity addressable again, for free() or realloc(). */
static void sim_heap_forget(struct sim_heap_block *b)
{
    SIM_HEAP_UNPOISON(b->ptr, b->capacity);
    b->ptr = NULL;
}

static void *sim_heap_malloc(void *data, size_t size)
{
    (void)data;
    return malloc(size);
}

static void *sim_heap_calloc(void *data, size_t nmemb, size_t size)
{
    (void)data;
    return calloc(nmemb, size);
}

static void sim_heap_free(void *data, void *ptr)
{
    struct sim_heap_block *b = sim_heap_find(ptr);
    (void)data;
    if (b != NULL) {
        sim_heap_forget(b);
    }
    free(ptr);
}

static void *sim_heap_realloc(void *data, void *ptr, size_t size)
{
    struct sim_heap_block *b = sim_heap_find(ptr);
    (void)data;
    if (b != NULL && size > 0 && size <= b->capacity) { /* fits: move the poisoned tail */
        SIM_HEAP_UNPOISON(b->ptr, b->capacity);
        SIM_HEAP_POISON((char *)b->ptr + size, b->capacity - size);
        b->size = size;
        return ptr;
    }
    struct sim_heap_block *slot = b != NULL ? b : sim_heap_slot();
    if (size < SIM_HEAP_GROW_MIN || slot == NULL) { /* small, or no slot: plain realloc */
        if (b != NULL) {
            sim_heap_forget(b);
        }
        return realloc(ptr, size);
    }
    size_t capacity = size * 2;
    char *grown = malloc(capacity);
    if (grown == NULL) {
        return NULL; /* ptr stays valid, as realloc's contract says */
    }
    if (ptr != NULL) {
        size_t old = b != NULL ? b->size : malloc_usable_size(ptr);
        if (b != NULL) {
            sim_heap_forget(b);
        }
        memcpy(grown, ptr, old < size ? old : size);
        free(ptr);
    }
    SIM_HEAP_POISON(grown + size, capacity - size);
    *slot = (struct sim_heap_block){.ptr = grown, .size = size, .capacity = capacity};
    return grown;
}

static void *sim_heap_aligned_alloc(void *data, size_t alignment, size_t size)
{
    (void)data;
    return aligned_alloc(alignment, size);
}

static void sim_heap_aligned_free(void *data, size_t alignment, void *ptr)
{
    (void)data;
    (void)alignment;
    free(ptr);
}

static struct raft_heap sim_heap = {
    .data = NULL,
    .malloc = sim_heap_malloc,
    .free = sim_heap_free,
    .calloc = sim_heap_calloc,
    .realloc = sim_heap_realloc,
    .aligned_alloc = sim_heap_aligned_alloc,
    .aligned_free = sim_heap_aligned_free,
};

/* The seed processes' ASan options (ASAN_OPTIONS still overrides them). ASan's quarantine keeps
 * freed memory out of reuse to catch a use after free; at its default 256 MB every seed process
 * maps and faults in fresh pages for each allocation it makes (half of a seed's time). A seed
 * frees far less than SIM_ASAN_QUARANTINE_MB between any allocation and its last use. */
#if defined(__SANITIZE_ADDRESS__)
#define SIM_ASAN_OPTIONS "quarantine_size_mb=8"
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return SIM_ASAN_OPTIONS;
}
#endif

/* When a run of seeds started: wall clock and the CPU its reaped seed processes had used. */
struct sim_clock {
    struct timespec wall;
    double cpu_s;
};

static double sim_children_cpu_s(void)
{
    struct rusage usage;
    if (getrusage(RUSAGE_CHILDREN, &usage) != 0) {
        return 0;
    }
    return (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           (double)(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

static struct sim_clock sim_clock_start(void)
{
    struct sim_clock c;
    clock_gettime(CLOCK_MONOTONIC, &c.wall);
    c.cpu_s = sim_children_cpu_s();
    return c;
}

/* The summary line: how many seeds ran and what one cost (a figure, never asserted). */
static void sim_clock_print(const struct sim_clock *c, const char *name, unsigned regressions,
                            unsigned random, unsigned parallel)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double wall =
        (double)(now.tv_sec - c->wall.tv_sec) + (double)(now.tv_nsec - c->wall.tv_nsec) / 1e9;
    double cpu = sim_children_cpu_s() - c->cpu_s;
    unsigned seeds = regressions + random;
    double per = seeds == 0 ? 0 : 1.0 / seeds;
    fprintf(stderr,
            "%s: %u seeds ran (%u regression + %u random) in %.1f s, %u at a time: %.3f s of "
            "wall time and %.3f s of CPU per seed\n",
            name, seeds, regressions, random, wall, parallel, wall * per, cpu * per);
}

#endif
