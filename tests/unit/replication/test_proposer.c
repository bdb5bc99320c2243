/* Unit tests of the proposer's ownership of an entry's buffer when raft_apply fails: libraft's
 * calls are replaced at link time (-Wl,--wrap, see CMakeLists.txt) so each failure libraft can
 * produce is injected: refused before raft took the entry (the buffer is ours to free) and
 * failed after raft took and freed it (freeing it again was a double free; the write's outcome
 * is then unknown until the applied index says), and out of memory after the trail took it but
 * before the copy (the buffer is still ours: the watching heap of consensus/raft_heap.h tells). */
#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "replication/proposer.h"
#include "storage/assert.h"

enum fake_mode { FAKE_REFUSE, FAKE_TAKE_AND_FAIL, FAKE_TAKE_NOMEM };

static struct {
    enum fake_mode mode;
    raft_index last_index;
    raft_index applied;
    unsigned applies;
} fake;

/* The libraft calls the proposer makes, as the wrapped names the linker points them at. */
int __wrap_raft_state(struct raft *r);
raft_index __wrap_raft_last_index(struct raft *r);
raft_index __wrap_raft_last_applied(struct raft *r);
int __wrap_raft_apply(struct raft *r, struct raft_apply *req, const struct raft_buffer bufs[],
                      unsigned n, raft_apply_cb cb);

int __wrap_raft_state(struct raft *r)
{
    (void)r;
    return RAFT_LEADER;
}

raft_index __wrap_raft_last_index(struct raft *r)
{
    (void)r;
    return fake.last_index;
}

raft_index __wrap_raft_last_applied(struct raft *r)
{
    (void)r;
    return fake.applied;
}

/* What libraft 0.22.1 leaves in raft_errmsg when a new segment's writer cannot get an eventfd
 * (legacyHandleUpdateEntries wrapping raft_uv's text). */
#define FAKE_APPEND_ERRMSG "append 1 entries: setup writer for open-3: eventfd: too many open files"

/* As libraft 0.22.1: FAKE_REFUSE fails before touching anything (not leader); FAKE_TAKE_AND_FAIL
 * appends the entry to its log, frees the caller's buffer, then fails to persist it;
 * FAKE_TAKE_NOMEM appends the entry to its in-memory trail (raft_last_index moves) but runs out
 * of memory copying it (legacyHandleUpdateEntries' entryCopy): the buffer is not freed. */
int __wrap_raft_apply(struct raft *r, struct raft_apply *req, const struct raft_buffer bufs[],
                      unsigned n, raft_apply_cb cb)
{
    (void)cb;
    assert_int_equal(n, 1);
    fake.applies++;
    if (fake.mode == FAKE_REFUSE) {
        return RAFT_NOTLEADER;
    }
    req->index = ++fake.last_index;
    if (fake.mode == FAKE_TAKE_NOMEM) {
        return RAFT_NOMEM;
    }
    raft_free(bufs[0].base);
    snprintf(r->errmsg, sizeof r->errmsg, "%s", FAKE_APPEND_ERRMSG);
    return RAFT_IOERR;
}

/* The heap under the proposer's watching heap (consensus/raft_heap.h): counts live blocks, so a
 * leaked entry buffer fails the test without LeakSanitizer. */
static long heap_live;

static void *h_malloc(void *data, size_t size)
{
    (void)data;
    void *p = malloc(size);
    heap_live += p != NULL;
    return p;
}

static void h_free(void *data, void *ptr)
{
    (void)data;
    heap_live -= ptr != NULL;
    free(ptr);
}

static void *h_calloc(void *data, size_t nmemb, size_t size)
{
    (void)data;
    void *p = calloc(nmemb, size);
    heap_live += p != NULL;
    return p;
}

static void *h_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    void *p = realloc(ptr, size);
    heap_live += ptr == NULL && p != NULL;
    return p;
}

static void *h_aligned_alloc(void *data, size_t alignment, size_t size)
{
    (void)data;
    void *p = aligned_alloc(alignment, size);
    heap_live += p != NULL;
    return p;
}

static void h_aligned_free(void *data, size_t alignment, void *ptr)
{
    (void)alignment;
    h_free(data, ptr);
}

static struct raft_heap counting_heap = {NULL,      h_malloc,        h_free,        h_calloc,
                                         h_realloc, h_aligned_alloc, h_aligned_free};

struct answer {
    struct tandem_write w;
    Tandem__Command command;
    unsigned calls;
    int status;
    bool result;
};

static void write_cb(struct tandem_write *w, int status, struct tandem_result *result)
{
    struct answer *a = w->data;
    a->calls++;
    a->status = status;
    a->result = result != NULL;
}

static struct raft fake_raft;

static void setup(struct tandem_proposer *p, struct answer *a, enum fake_mode mode)
{
    static const struct tandem_proposer_limits limits = {8, 65536, 16};
    memset(&fake, 0, sizeof fake);
    fake.mode = mode;
    heap_live = 0;
    raft_heap_set(&counting_heap); /* the proposer stacks its watching heap on this one */
    fake.last_index = 10;
    fake.applied = 10;
    tandem_proposer_init(p, &fake_raft, 7, &limits);
    memset(a, 0, sizeof *a);
    tandem__command__init(&a->command);
    a->w.command = &a->command;
    a->w.cb = write_cb;
    a->w.data = a;
    assert_int_equal(tandem_proposer_write(p, &a->w), 0);
}

static void test_refused_apply_frees_and_fails_the_write(void **state)
{
    (void)state;
    struct tandem_proposer p;
    struct answer a;
    setup(&p, &a, FAKE_REFUSE);
    tandem_proposer_flush(&p);
    assert_int_equal(fake.applies, 1);
    /* Never in raft's log: a definite failure the client may retry (and no leak under LSan). */
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, RAFT_NOTLEADER);
    assert_int_equal(p.propose_errors, 1);
    assert_int_equal(heap_live, 0);
}

/* raft's core took the entry, then the call failed: libraft 0.22.1 cannot append again after
 * that (replication/proposer.c fail_stop_after_copy), so the node stops at once with
 * TANDEM_FATAL_EXIT_STATUS. Run in a child: returns the child's exit status (-1: it went on) and
 * what it wrote to stderr in out (size bytes, NUL-terminated). */
static int flush_in_child(int mode, char *out, size_t size)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        struct tandem_proposer p;
        struct answer a;
        setup(&p, &a, mode);
        tandem_proposer_flush(&p);
        _exit(100); /* went on past the failure */
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t got;
    while (len + 1 < size &&
           ((got = read(fds[0], out + len, size - 1 - len)) > 0 || (got < 0 && errno == EINTR))) {
        len += got > 0 ? (size_t)got : 0;
    }
    out[len] = '\0';
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        assert_int_equal(errno, EINTR);
    }
    return WIFEXITED(status) && WEXITSTATUS(status) != 100 ? WEXITSTATUS(status) : -1;
}

/* The append failed after the copy (descriptors ran out): the node stops, no second free, and
 * its fatal line says why in raft's words, not only "I/O error". */
static void test_apply_failed_after_append_stops_the_node(void **state)
{
    (void)state;
    char err[1024];
    assert_int_equal(flush_in_child(FAKE_TAKE_AND_FAIL, err, sizeof err), TANDEM_FATAL_EXIT_STATUS);
    assert_non_null(strstr(err, "tandem: fatal: raft_apply: I/O error: " FAKE_APPEND_ERRMSG));
}

/* The copy ran out of memory after raft's core took the entry: the same gap, the same stop. */
static void test_apply_out_of_memory_in_the_copy_stops_the_node(void **state)
{
    (void)state;
    char err[1024];
    assert_int_equal(flush_in_child(FAKE_TAKE_NOMEM, err, sizeof err), TANDEM_FATAL_EXIT_STATUS);
    assert_non_null(strstr(err, "tandem: fatal: raft_apply: out of memory"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_apply_frees_and_fails_the_write),
        cmocka_unit_test(test_apply_failed_after_append_stops_the_node),
        cmocka_unit_test(test_apply_out_of_memory_in_the_copy_stops_the_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
