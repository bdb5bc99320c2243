/* Shield 5 of consensus/raft_shield.h on a raft_io of our own: a failed log write stops the
 * process (exit status 70, the reason on stderr) unless the io is closing; a write that succeeds,
 * or fails while closing, reaches raft's callback unchanged; without the flag append is not
 * wrapped at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <raft.h>

#include "consensus/raft_shield.h"
#include "storage/assert.h"

/* The fake io: append keeps the request and its callback; the test completes it. */
struct fake {
    struct raft_io io;
    struct raft_io_append *pending;
    raft_io_append_cb pending_cb;
    unsigned appends;
};

static struct fake fake;

static int fake_append(struct raft_io *io, struct raft_io_append *req,
                       const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    (void)io;
    (void)entries;
    (void)n;
    fake.pending = req;
    fake.pending_cb = cb;
    fake.appends++;
    return 0;
}

static void fake_close(struct raft_io *io, raft_io_close_cb cb)
{
    (void)io;
    (void)cb;
}

static int fake_snapshot_put(struct raft_io *io, unsigned trailing,
                             struct raft_io_snapshot_put *req, const struct raft_snapshot *snapshot,
                             raft_io_snapshot_put_cb cb)
{
    (void)io;
    (void)trailing;
    (void)req;
    (void)snapshot;
    (void)cb;
    return 0;
}

/* raft's side: which request completed, with which status. */
static struct raft_io_append *done_req;
static int done_status = -1;

static void raft_append_cb(struct raft_io_append *req, int status)
{
    done_req = req;
    done_status = status;
}

static void fake_setup(struct tandem_raft_shield *shield, unsigned flags)
{
    memset(&fake, 0, sizeof fake);
    fake.io.append = fake_append;
    fake.io.close = fake_close;
    fake.io.snapshot_put = fake_snapshot_put;
    snprintf(fake.io.errmsg, sizeof fake.io.errmsg, "open-2: too many open files");
    tandem_raft_shield_install(shield, &fake.io, flags);
    done_req = NULL;
    done_status = -1;
}

/* Asks for one write through the (possibly wrapped) io. */
static void write_one(struct raft_io_append *req)
{
    struct raft_entry entry = {.term = 1, .type = RAFT_COMMAND};
    assert_int_equal(fake.io.append(&fake.io, req, &entry, 1, raft_append_cb), 0);
    assert_non_null(fake.pending);
}

static void test_a_write_that_succeeds_reaches_raft(void **state)
{
    (void)state;
    struct tandem_raft_shield shield;
    struct raft_io_append req;
    fake_setup(&shield, TANDEM_RAFT_SHIELD_APPEND_FAILED);
    write_one(&req);
    assert_ptr_not_equal(fake.pending, &req); /* the shield's own request stands for raft's */
    fake.pending_cb(fake.pending, 0);
    assert_ptr_equal(done_req, &req);
    assert_int_equal(done_status, 0);
    tandem_raft_shield_remove(&shield);
}

static void test_a_failure_while_closing_reaches_raft(void **state)
{
    (void)state;
    struct tandem_raft_shield shield;
    struct raft_io_append req;
    fake_setup(&shield, TANDEM_RAFT_SHIELD_APPEND_FAILED);
    write_one(&req);
    fake.io.close(&fake.io, NULL);
    fake.pending_cb(fake.pending, RAFT_CANCELED);
    assert_ptr_equal(done_req, &req);
    assert_int_equal(done_status, RAFT_CANCELED);
    tandem_raft_shield_remove(&shield);
}

/* The failure in a child process; its stderr comes back through a pipe. */
static int failed_write_child(char *err, size_t size)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        struct tandem_raft_shield shield;
        struct raft_io_append req;
        fake_setup(&shield, TANDEM_RAFT_SHIELD_APPEND_FAILED);
        write_one(&req);
        fake.pending_cb(fake.pending, RAFT_IOERR);
        _exit(0); /* not reached when the shield works */
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < size && (r = read(fds[0], err + got, size - 1 - got)) > 0) {
        got += (size_t)r;
    }
    err[got] = '\0';
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void test_a_failed_write_stops_the_process(void **state)
{
    (void)state;
    char err[2048];
    int status = failed_write_child(err, sizeof err);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), TANDEM_FATAL_EXIT_STATUS);
    assert_non_null(strstr(err, "tandem: fatal: raft log write failed"));
    assert_non_null(strstr(err, "too many open files")); /* raft_uv's reason */
}

static void test_without_the_flag_append_is_not_wrapped(void **state)
{
    (void)state;
    struct tandem_raft_shield shield;
    struct raft_io_append req;
    fake_setup(&shield, TANDEM_RAFT_SHIELD_TANDEMD);
    assert_ptr_equal(fake.io.append, fake_append);
    write_one(&req);
    assert_ptr_equal(fake.pending, &req);
    tandem_raft_shield_remove(&shield);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_write_that_succeeds_reaches_raft),
        cmocka_unit_test(test_a_failure_while_closing_reaches_raft),
        cmocka_unit_test(test_a_failed_write_stops_the_process),
        cmocka_unit_test(test_without_the_flag_append_is_not_wrapped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
