/* The watching raft heap: knows whether libraft freed a buffer during one call (raft_heap.h). */
#include "consensus/raft_heap.h"

#include <raft.h>
#include <stdatomic.h>

#include "storage/assert.h"

/* The heap under ours: raft's current heap when ours was installed. */
static const struct raft_heap *base;
static _Atomic uint64_t double_frees;

/* The watch of the calling thread (only the loop thread ever starts one). */
static _Thread_local struct {
    bool active;
    void *ptr;        /* the watched block, NULL while waiting for the next allocation */
    size_t next_size; /* with ptr NULL: the size of the allocation to watch */
    unsigned frees;
} watch;

static void *heap_malloc(void *data, size_t size)
{
    (void)data;
    void *ptr = base->malloc(base->data, size);
    if (watch.active && watch.ptr == NULL && size == watch.next_size && ptr != NULL) {
        watch.ptr = ptr;
    }
    return ptr;
}

static void heap_free(void *data, void *ptr)
{
    (void)data;
    if (watch.active && ptr != NULL && ptr == watch.ptr) {
        /* Deferred to the end of the watch: the address is not reused in between. */
        if (++watch.frees > 1) {
            atomic_fetch_add(&double_frees, 1);
        }
        return;
    }
    base->free(base->data, ptr);
}

static void *heap_calloc(void *data, size_t nmemb, size_t size)
{
    (void)data;
    return base->calloc(base->data, nmemb, size);
}

static void *heap_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    /* Only entry buffers are watched, and libraft never reallocates those. */
    tandem_assert(!watch.active || ptr == NULL || ptr != watch.ptr);
    return base->realloc(base->data, ptr, size);
}

static void *heap_aligned_alloc(void *data, size_t alignment, size_t size)
{
    (void)data;
    return base->aligned_alloc(base->data, alignment, size);
}

static void heap_aligned_free(void *data, size_t alignment, void *ptr)
{
    (void)data;
    base->aligned_free(base->data, alignment, ptr);
}

static struct raft_heap watching_heap = {
    NULL, heap_malloc, heap_free, heap_calloc, heap_realloc, heap_aligned_alloc, heap_aligned_free};

void tandem_raft_heap_install(void)
{
    const struct raft_heap *current = raft_heap_get();
    if (current == &watching_heap) {
        return;
    }
    base = current;
    raft_heap_set(&watching_heap);
}

static bool watch_start(void *ptr, size_t next_size)
{
    /* One watch at a time: a nested call is answered as without the heap. */
    if (watch.active || raft_heap_get() != &watching_heap) {
        return false;
    }
    watch.active = true;
    watch.ptr = ptr;
    watch.next_size = next_size;
    watch.frees = 0;
    return true;
}

bool tandem_raft_heap_watch(void *ptr)
{
    tandem_assert(ptr != NULL);
    return watch_start(ptr, 0);
}

bool tandem_raft_heap_watch_next(size_t size)
{
    tandem_assert(size > 0);
    return watch_start(NULL, size);
}

unsigned tandem_raft_heap_unwatch(void)
{
    tandem_assert(watch.active);
    unsigned frees = watch.frees;
    watch.active = false;
    if (frees > 0) {
        base->free(base->data, watch.ptr);
    }
    watch.ptr = NULL;
    return frees;
}

uint64_t tandem_raft_heap_double_frees(void)
{
    return atomic_load(&double_frees);
}
