/* Shields 5, 6 and 7 of consensus/raft_shield.h on a raft_io of our own. 5: a failed log write
 * stops the process (exit status 70, the reason on stderr) unless the io is closing; a write that
 * succeeds, or fails while closing, reaches raft's callback unchanged; without the flag append is
 * not wrapped at all. 6: an own snapshot is filled on the thread pool, and raft_uv's put sees it
 * only once filled; a failed fill or a close meanwhile reaches raft's callback instead. 7: an
 * install is prepared on the thread pool before raft_uv's put, and a close waits for it. 8: a
 * follower that lost acknowledged entries is noticed. 9: a tick that comes late runs after the
 * poll that reads what arrived meanwhile, and a close drops it. */
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
#include <pthread.h>
#include <raft.h>
#include <uv.h>

#include "consensus/raft_shield.h"
#include "storage/assert.h"

/* The fake io's start keeps the tick callback it is given: the test's timer calls it as
 * raft_uv's does. */
static raft_io_tick_cb inner_tick;

static int fake_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                      raft_io_recv_cb recv)
{
    (void)io;
    (void)msecs;
    (void)recv;
    inner_tick = tick;
    return 0;
}

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

/* The inner inner_puts: how many, and what the last one saw in the snapshot's first buffer. */
static unsigned inner_puts;
static void *put_base;
static struct raft_io_snapshot_put *put_req;
static raft_io_snapshot_put_cb put_cb;

static int fake_snapshot_put(struct raft_io *io, unsigned trailing,
                             struct raft_io_snapshot_put *req, const struct raft_snapshot *snapshot,
                             raft_io_snapshot_put_cb cb)
{
    (void)io;
    (void)trailing;
    inner_puts++;
    put_base = snapshot->bufs[0].base;
    put_req = req;
    put_cb = cb;
    return 0;
}

static bool io_closed;
static unsigned snapshot_done_calls; /* raft's snapshot callbacks so far */
static unsigned done_calls_at_close; /* ... when the inner close ran */

static void fake_close_cb(struct raft_io *io)
{
    (void)io;
    io_closed = true;
    done_calls_at_close = snapshot_done_calls;
}

static void fake_close_calls_back(struct raft_io *io, raft_io_close_cb cb)
{
    cb(io);
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
    fake.io.start = fake_start;
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
static void failed_write(void)
{
    struct tandem_raft_shield shield;
    struct raft_io_append req;
    fake_setup(&shield, TANDEM_RAFT_SHIELD_APPEND_FAILED);
    write_one(&req);
    fake.pending_cb(fake.pending, RAFT_IOERR);
}

/* Runs body in a child whose stderr goes to err; returns its wait status. */
static int child_stderr(void (*body)(void), char *err, size_t size)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        body();
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
    int status = child_stderr(failed_write, err, sizeof err);
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

/* Shield 6's hooks: what the fill saw, and what reached raft. */
struct fill_probe {
    pthread_t loop_thread;
    bool fill_on_loop_thread;
    unsigned puts_seen_by_fill; /* inner inner_puts before the fill: must stay 0 */
    int fill_rv, filled_status, filled_calls;
    struct raft_buffer *bufs; /* the snapshot's buffers, filled by fill */
    char bytes[8];
};

static struct fill_probe probe;
static int snapshot_done_status = -1;

static int probe_fill(void *data)
{
    struct fill_probe *p = data;
    p->fill_on_loop_thread = pthread_equal(pthread_self(), p->loop_thread) != 0;
    p->puts_seen_by_fill = inner_puts;
    return p->fill_rv;
}

static void probe_filled(void *data, int status)
{
    struct fill_probe *p = data;
    p->filled_status = status;
    p->filled_calls++;
    if (status == 0) {
        p->bufs[0].base = p->bytes; /* the FSM hands raft its bytes on the loop */
        p->bufs[0].len = sizeof p->bytes;
    }
}

static void raft_snapshot_cb(struct raft_io_snapshot_put *req, int status)
{
    (void)req;
    snapshot_done_status = status;
    snapshot_done_calls++;
}

static void fill_setup(struct tandem_raft_shield *shield, uv_loop_t *loop, int fill_rv)
{
    fake_setup(shield, TANDEM_RAFT_SHIELD_TANDEMD);
    shield->inner.close = fake_close_calls_back;
    memset(&probe, 0, sizeof probe);
    probe.loop_thread = pthread_self();
    probe.fill_rv = fill_rv;
    probe.filled_status = -1;
    inner_puts = 0;
    put_base = NULL;
    io_closed = false;
    snapshot_done_status = -1;
    snapshot_done_calls = 0;
    assert_int_equal(uv_loop_init(loop), 0);
    shield->loop = loop;
    shield->own_fill = probe_fill;
    shield->own_filled = probe_filled;
    shield->fill_data = &probe;
}

static void fill_teardown(struct tandem_raft_shield *shield, uv_loop_t *loop)
{
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0); /* nothing left on the loop */
    tandem_raft_shield_remove(shield);
}

/* One own snapshot put through shield 6, its fill returning fill_rv. */
struct fill_case {
    struct tandem_raft_shield shield;
    uv_loop_t loop;
    struct raft_buffer buf;
    struct raft_snapshot snapshot;
    struct raft_io_snapshot_put req;
};

static void fill_put(struct fill_case *t, int fill_rv)
{
    memset(t, 0, sizeof *t);
    t->snapshot = (struct raft_snapshot){.index = 10, .term = 2, .bufs = &t->buf, .n_bufs = 1};
    fill_setup(&t->shield, &t->loop, fill_rv);
    probe.bufs = &t->buf;
    assert_int_equal(fake.io.snapshot_put(&fake.io, 100, &t->req, &t->snapshot, raft_snapshot_cb),
                     0);
}

static void test_an_own_snapshot_is_filled_off_the_loop(void **state)
{
    (void)state;
    struct fill_case t;
    fill_put(&t, 0);
    assert_int_equal(inner_puts, 0); /* nothing reaches raft_uv before the fill */
    assert_int_equal(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
    assert_false(probe.fill_on_loop_thread);
    assert_int_equal(probe.puts_seen_by_fill, 0);
    assert_int_equal(probe.filled_calls, 1);
    assert_int_equal(probe.filled_status, 0);
    assert_int_equal(inner_puts, 1);
    assert_ptr_equal(put_base, probe.bytes); /* raft_uv writes the filled bytes */
    assert_int_equal(snapshot_done_calls, 0);
    put_cb(put_req, 0); /* raft_uv's write completes: raft hears of it */
    assert_int_equal(snapshot_done_calls, 1);
    assert_int_equal(snapshot_done_status, 0);
    fill_teardown(&t.shield, &t.loop);
}

static void test_a_failed_fill_reaches_raft(void **state)
{
    (void)state;
    struct fill_case t;
    fill_put(&t, RAFT_IOERR);
    assert_int_equal(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(probe.filled_status, RAFT_IOERR);
    assert_int_equal(inner_puts, 0);
    assert_int_equal(snapshot_done_calls, 1);
    assert_int_equal(snapshot_done_status, RAFT_IOERR);
    fill_teardown(&t.shield, &t.loop);
}

static int refuse_put(void *data, char *why)
{
    (*(unsigned *)data)++;
    snprintf(why, TANDEM_ERRMSG_SIZE, "a gap");
    return RAFT_IOERR;
}

/* put_check refuses: raft_uv's put, which would remove segments, never runs, and raft hears of
 * the failure, after a fill as without one. */
static void test_a_refused_put_check_reaches_raft(void **state)
{
    (void)state;
    struct fill_case t;
    unsigned checks = 0;
    fill_put(&t, 0);
    t.shield.put_check = refuse_put;
    t.shield.put_check_data = &checks;
    assert_int_equal(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(probe.filled_calls, 1);
    assert_int_equal(checks, 1);
    assert_int_equal(inner_puts, 0);
    assert_int_equal(snapshot_done_calls, 1);
    assert_int_equal(snapshot_done_status, RAFT_IOERR);
    fill_teardown(&t.shield, &t.loop);

    struct tandem_raft_shield shield;
    fake_setup(&shield, TANDEM_RAFT_SHIELD_TANDEMD); /* no fill: the put goes straight through */
    shield.put_check = refuse_put;
    shield.put_check_data = &checks;
    assert_int_equal(fake.io.snapshot_put(&fake.io, 100, &t.req, &t.snapshot, raft_snapshot_cb),
                     RAFT_IOERR);
    assert_int_equal(checks, 2);
    assert_int_equal(inner_puts, 0);
    tandem_raft_shield_remove(&shield);
}

/* A close while the fill runs waits for it, then raft's put ends as canceled, then the close. */
static void test_a_close_waits_for_the_fill(void **state)
{
    (void)state;
    struct fill_case t;
    fill_put(&t, 0);
    fake.io.close(&fake.io, fake_close_cb);
    assert_false(io_closed); /* the worker may still read what the close frees */
    assert_int_equal(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(probe.filled_calls, 1);
    assert_int_equal(inner_puts, 0);
    assert_int_equal(snapshot_done_status, RAFT_CANCELED);
    assert_true(io_closed);
    /* A put asked for while closing is refused at once. */
    assert_int_equal(fake.io.snapshot_put(&fake.io, 100, &t.req, &t.snapshot, raft_snapshot_cb),
                     RAFT_CANCELED);
    fill_teardown(&t.shield, &t.loop);
}

/* Shield 7: what the install prepare saw, on which thread. */
static struct {
    pthread_t loop_thread;
    const struct raft_snapshot *seen;
    bool on_loop_thread;
    unsigned puts_seen, calls;
    unsigned done_calls;         /* install_done calls */
    unsigned raft_calls_at_done; /* raft's snapshot callbacks when install_done ran */
} prepare_probe;

static void probe_install_done(void *data)
{
    (void)data;
    prepare_probe.done_calls++;
    prepare_probe.raft_calls_at_done = snapshot_done_calls;
}

static int probe_prepare(void *data, const struct raft_snapshot *snapshot, const char *sender,
                         char *errmsg)
{
    (void)data;
    (void)sender;
    (void)errmsg;
    prepare_probe.on_loop_thread = pthread_equal(pthread_self(), prepare_probe.loop_thread) != 0;
    prepare_probe.seen = snapshot;
    prepare_probe.puts_seen = inner_puts;
    prepare_probe.calls++;
    return 0;
}

/* An install (trailing 0) put through shield 7. */
static void install_put(struct fill_case *t)
{
    memset(t, 0, sizeof *t);
    t->buf = (struct raft_buffer){.base = probe.bytes, .len = sizeof probe.bytes};
    t->snapshot = (struct raft_snapshot){.index = 10, .term = 2, .bufs = &t->buf, .n_bufs = 1};
    fill_setup(&t->shield, &t->loop, 0);
    memset(&prepare_probe, 0, sizeof prepare_probe);
    prepare_probe.loop_thread = pthread_self();
    t->shield.install_prepare = probe_prepare;
    t->shield.install_done = probe_install_done;
    assert_int_equal(fake.io.snapshot_put(&fake.io, 0, &t->req, &t->snapshot, raft_snapshot_cb), 0);
}

static void test_an_install_is_prepared_off_the_loop(void **state)
{
    (void)state;
    struct fill_case t;
    install_put(&t);
    assert_int_equal(inner_puts, 0); /* raft_uv's put waits for the prepare */
    assert_int_equal(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(prepare_probe.calls, 1);
    assert_false(prepare_probe.on_loop_thread);
    assert_ptr_equal(prepare_probe.seen, &t.snapshot); /* the bytes raft holds */
    assert_int_equal(prepare_probe.puts_seen, 0);
    assert_int_equal(inner_puts, 1);
    assert_ptr_equal(put_base, probe.bytes);
    assert_int_equal(probe.filled_calls, 0); /* an install is never filled */
    assert_int_equal(snapshot_done_calls, 0);
    assert_int_equal(prepare_probe.done_calls, 0);
    put_cb(put_req, 0); /* raft_uv's write completes: raft restores then */
    assert_int_equal(snapshot_done_calls, 1);
    assert_int_equal(snapshot_done_status, 0);
    /* Then, and only then, the FSM hears the install is over. */
    assert_int_equal(prepare_probe.done_calls, 1);
    assert_int_equal(prepare_probe.raft_calls_at_done, 1);
    fill_teardown(&t.shield, &t.loop);
}

/* A close while the prepare runs waits for it; raft's install then ends as canceled. */
static void refused_install(void)
{
    struct fill_case t;
    unsigned checks = 0;
    install_put(&t);
    t.shield.put_check = refuse_put;
    t.shield.put_check_data = &checks;
    uv_run(&t.loop, UV_RUN_DEFAULT);
}

/* An install put_check refuses cannot fail back to raft (its log moved already): the process
 * stops, naming why, before raft_uv's put. */
static void test_a_refused_install_stops_the_process(void **state)
{
    (void)state;
    char err[2048];
    int status = child_stderr(refused_install, err, sizeof err);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), TANDEM_FATAL_EXIT_STATUS);
    assert_non_null(strstr(err, "tandem: fatal: a snapshot install must not remove log segments "
                                "now: a gap"));
}

static void test_a_close_waits_for_the_prepare(void **state)
{
    (void)state;
    struct fill_case t;
    install_put(&t);
    fake.io.close(&fake.io, fake_close_cb);
    assert_false(io_closed);
    assert_int_equal(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(prepare_probe.calls, 1);
    assert_int_equal(inner_puts, 0);
    assert_int_equal(snapshot_done_status, RAFT_CANCELED);
    assert_int_equal(prepare_probe.done_calls, 1); /* a canceled install is over too */
    assert_int_equal(prepare_probe.raft_calls_at_done, 1);
    assert_true(io_closed);
    fill_teardown(&t.shield, &t.loop);
}

/* An own snapshot's fill and an install's prepare at once: the close waits for both. */
static void test_a_close_waits_for_a_fill_and_a_prepare(void **state)
{
    (void)state;
    struct fill_case t;
    struct raft_io_snapshot_put own_req;
    struct raft_buffer own_buf = {0};
    struct raft_snapshot own = {.index = 9, .term = 2, .bufs = &own_buf, .n_bufs = 1};
    install_put(&t);
    probe.bufs = &own_buf;
    assert_int_equal(fake.io.snapshot_put(&fake.io, 100, &own_req, &own, raft_snapshot_cb), 0);
    fake.io.close(&fake.io, fake_close_cb);
    assert_int_equal(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(prepare_probe.calls, 1);
    assert_int_equal(probe.filled_calls, 1);
    assert_int_equal(inner_puts, 0);
    assert_int_equal(snapshot_done_calls, 2); /* both canceled... */
    assert_int_equal(done_calls_at_close, 2); /* ...before the close: no worker ran after it */
    assert_int_equal(snapshot_done_status, RAFT_CANCELED);
    assert_true(io_closed);
    fill_teardown(&t.shield, &t.loop);
}

/* Shield 8: a rejection whose last index is below raft's match index for the follower, and is
 * the follower's own last index, is a lost log, counted once per term; a success, a rejection at
 * or above the match index, or one just below the index rejected (an entry the follower folded
 * into its own snapshot), is not. */
static void test_a_lost_log_is_noticed(void **state)
{
    struct tandem_raft_shield shield;
    (void)state;
    memset(&shield, 0, sizeof shield);
    struct raft_append_entries_result ok = {.term = 3, .rejected = 0, .last_log_index = 620};
    struct raft_append_entries_result installing = {.term = 3, .rejected = 0, .last_log_index = 0};
    struct raft_append_entries_result behind = {.term = 3, .rejected = 625, .last_log_index = 620};
    struct raft_append_entries_result lost = {.term = 3, .rejected = 620, .last_log_index = 1};
    /* A sound follower asked for an entry it folded into its own snapshot: one below it. */
    struct raft_append_entries_result compacted = {
        .term = 3, .rejected = 600, .last_log_index = 599};

    assert_false(tandem_raft_shield_observe_result(&shield, 7, 3, 610, &ok));
    /* A success during an install (raft reports last_stored, 0) and a rejection of entries past
     * what it holds are ordinary. */
    assert_false(tandem_raft_shield_observe_result(&shield, 7, 3, 620, &installing));
    assert_false(tandem_raft_shield_observe_result(&shield, 7, 3, 620, &behind));
    assert_false(tandem_raft_shield_observe_result(&shield, 7, 3, 620, &compacted));
    /* A member removed and added again under its name has a fresh match index: no loss. */
    assert_false(tandem_raft_shield_observe_result(&shield, 8, 3, 0, &lost));
    assert_false(tandem_raft_shield_lost_log(&shield, 7, 3));
    assert_false(tandem_raft_shield_lost_log(&shield, 8, 3));
    assert_int_equal(shield.stats.lost_logs, 0);

    assert_true(tandem_raft_shield_observe_result(&shield, 7, 3, 620, &lost));
    assert_true(tandem_raft_shield_lost_log(&shield, 7, 3));
    assert_false(tandem_raft_shield_lost_log(&shield, 7, 4));
    assert_false(tandem_raft_shield_lost_log(&shield, 8, 3));
    assert_int_equal(shield.stats.lost_logs, 1);
    /* Counted once per term. */
    assert_false(tandem_raft_shield_observe_result(&shield, 7, 3, 620, &lost));
    assert_int_equal(shield.stats.lost_logs, 1);
    /* In a later leadership it is a new loss, and the old record makes room for it. */
    struct raft_append_entries_result later = lost;
    later.term = 5;
    assert_true(tandem_raft_shield_observe_result(&shield, 7, 5, 620, &later));
    assert_true(tandem_raft_shield_lost_log(&shield, 7, 5));
    assert_false(tandem_raft_shield_lost_log(&shield, 7, 3));
    assert_int_equal(shield.n_lost, 1);

    /* Past TANDEM_RAFT_SHIELD_LOST_MAX followers the record of the oldest term goes. */
    for (raft_id id = 100; id < 100 + TANDEM_RAFT_SHIELD_LOST_MAX; id++) {
        struct raft_append_entries_result r6 = lost;
        r6.term = 6;
        assert_true(tandem_raft_shield_observe_result(&shield, id, 6, 620, &r6));
        assert_true(tandem_raft_shield_lost_log(&shield, id, 6));
    }
    assert_int_equal(shield.n_lost, TANDEM_RAFT_SHIELD_LOST_MAX);
    assert_false(tandem_raft_shield_lost_log(&shield, 7, 5));
    assert_int_equal(shield.stats.lost_logs, 2 + TANDEM_RAFT_SHIELD_LOST_MAX);
}

/* Shield 1: the InstallSnapshot raft sends from a snapshot load's callback carries the address
 * of when raft queued it, which a configuration change during the load freed: it goes to the
 * address last sent to for its server, never reading the stale one. */
static unsigned sends;
static char sent_address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
static raft_term sent_last_term;
static struct raft_io_snapshot_get *get_req;
static raft_io_snapshot_get_cb get_cb;
static const char *stale_address; /* freed before the callback: never to be read */
static int install_rv;

static int fake_send(struct raft_io *io, struct raft_io_send *req,
                     const struct raft_message *message, raft_io_send_cb cb)
{
    (void)io;
    (void)req;
    (void)cb;
    sends++;
    snprintf(sent_address, sizeof sent_address, "%s", message->server_address);
    sent_last_term = message->install_snapshot.last_term;
    return 0;
}

static int fake_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                             raft_io_snapshot_get_cb cb)
{
    (void)io;
    get_req = req;
    get_cb = cb;
    return 0;
}

static void raft_get_cb(struct raft_io_snapshot_get *req, struct raft_snapshot *snapshot,
                        int status)
{
    (void)req;
    assert_int_equal(status, 0);
    struct raft_message m = {.type = RAFT_INSTALL_SNAPSHOT,
                             .server_id = (raft_id)(uintptr_t)req->data};
    m.server_address = stale_address;
    m.install_snapshot.last_index = snapshot->index;
    m.install_snapshot.last_term = 2; /* the term raft queued it with */
    static struct raft_io_send send;
    install_rv = fake.io.send(&fake.io, &send, &m, NULL);
}

static void test_an_install_goes_to_the_address_last_sent_to(void **state)
{
    struct tandem_raft_shield shield;
    static struct raft_io_send send;
    (void)state;
    memset(&fake, 0, sizeof fake);
    fake.io.send = fake_send;
    fake.io.snapshot_get = fake_snapshot_get;
    tandem_raft_shield_install(&shield, &fake.io, TANDEM_RAFT_SHIELD_SNAPSHOT_TERM);
    sends = 0;

    /* An AppendEntries to server 2 at its address of then. */
    char *address = strdup("2|west|127.0.0.1:9002|https://127.0.0.1:8002");
    assert_non_null(address);
    struct raft_message ae = {.type = RAFT_APPEND_ENTRIES, .server_id = 2};
    ae.server_address = address;
    assert_int_equal(fake.io.send(&fake.io, &send, &ae, NULL), 0);
    assert_string_equal(sent_address, address);

    /* raft queues an InstallSnapshot for server 2 and loads the snapshot; meanwhile a
     * configuration change frees the address the message points to. */
    struct raft_io_snapshot_get get = {.data = (void *)(uintptr_t)2};
    assert_int_equal(fake.io.snapshot_get(&fake.io, &get, raft_get_cb), 0);
    stale_address = address;
    free(address); /* ASan: reading it now is a use after free */
    struct raft_snapshot snapshot = {.index = 40, .term = 3};
    get_cb(get_req, &snapshot, 0);
    assert_int_equal(install_rv, 0);
    assert_int_equal(sends, 2);
    assert_string_equal(sent_address, "2|west|127.0.0.1:9002|https://127.0.0.1:8002");
    assert_int_equal(sent_last_term, 3); /* and the loaded snapshot's term, as before */
    assert_int_equal(shield.stats.addresses_fixed, 1);
    assert_int_equal(shield.stats.terms_fixed, 1);

    /* A server never sent to: refused, raft sends it again later. */
    struct raft_io_snapshot_get other = {.data = (void *)(uintptr_t)9};
    assert_int_equal(fake.io.snapshot_get(&fake.io, &other, raft_get_cb), 0);
    get_cb(get_req, &snapshot, 0);
    assert_int_equal(install_rv, RAFT_NOCONNECTION);
    assert_int_equal(sends, 2);
    assert_int_equal(shield.stats.installs_unaddressed, 1);
    tandem_raft_shield_remove(&shield);
}

/* ---- shield 9: a late tick runs after the poll ---- */

#define TICK_MS  50
#define STALL_MS (3 * TICK_MS)

/* One run of the loop: raft_uv's tick timer (every TICK_MS); a callback that holds the loop
 * STALL_MS while a message (a byte on a pipe) arrives, run from the poll as raft's callbacks
 * are (so libuv's next iteration begins with the due timers); and raft's tick noting whether the
 * message had been read. */
struct late_tick_run {
    struct tandem_raft_shield shield;
    uv_loop_t loop;
    uv_timer_t tick_timer, trigger_timer;
    uv_pipe_t trigger, message;
    int trigger_fds[2], message_fds[2];
    unsigned ticks;       /* raft's ticks */
    bool message_read;    /* the message's read callback ran */
    bool read_at_tick[8]; /* message_read when raft's tick n ran */
    bool close_on_read;   /* the message's read callback closes the io (raft closes) */
};

static struct late_tick_run *run_now;

static void raft_tick_cb(struct raft_io *io)
{
    (void)io;
    if (run_now->ticks < 8) {
        run_now->read_at_tick[run_now->ticks] = run_now->message_read;
    }
    run_now->ticks++;
}

static void raft_recv_cb(struct raft_io *io, struct raft_message *message)
{
    (void)io;
    (void)message;
}

static void tick_timer_cb(uv_timer_t *timer)
{
    struct late_tick_run *run = timer->data;
    inner_tick(&fake.io); /* raft_uv's uvTickTimerCb */
    if (run->ticks + run->shield.stats.ticks_deferred >= 3) {
        uv_timer_stop(timer);
    }
}

/* Right after the first tick: makes the trigger readable for this iteration's poll. */
static void trigger_timer_cb(uv_timer_t *timer)
{
    struct late_tick_run *run = timer->data;
    assert_int_equal(write(run->trigger_fds[1], "t", 1), 1);
}

static void alloc_cb(uv_handle_t *handle, size_t size, uv_buf_t *buf)
{
    static char one[64];
    (void)handle;
    (void)size;
    *buf = uv_buf_init(one, sizeof one);
}

/* The stall, inside the poll: the message arrives, then the loop is held past the next tick. */
static void trigger_read_cb(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    struct late_tick_run *run = stream->data;
    (void)buf;
    if (n > 0) {
        uv_read_stop(stream);
        assert_int_equal(write(run->message_fds[1], "m", 1), 1);
        usleep(STALL_MS * 1000);
    }
}

static void message_read_cb(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    struct late_tick_run *run = stream->data;
    (void)buf;
    if (n > 0) {
        run->message_read = true;
        uv_read_stop(stream);
        if (run->close_on_read) {
            fake.io.close(&fake.io, NULL);
            uv_timer_stop(&run->tick_timer);
        }
    }
}

static void pipe_watch(struct late_tick_run *run, uv_pipe_t *p, int fds[2], uv_read_cb cb)
{
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(uv_pipe_init(&run->loop, p, 0), 0);
    assert_int_equal(uv_pipe_open(p, fds[0]), 0);
    p->data = run;
    assert_int_equal(uv_read_start((uv_stream_t *)p, alloc_cb, cb), 0);
}

static void late_tick_run(struct late_tick_run *run, unsigned flags)
{
    run_now = run;
    assert_int_equal(uv_loop_init(&run->loop), 0);
    fake_setup(&run->shield, flags);
    run->shield.loop = &run->loop;
    assert_int_equal(fake.io.start(&fake.io, TICK_MS, raft_tick_cb, raft_recv_cb), 0);
    assert_non_null(inner_tick);
    pipe_watch(run, &run->trigger, run->trigger_fds, trigger_read_cb);
    pipe_watch(run, &run->message, run->message_fds, message_read_cb);
    assert_int_equal(uv_timer_init(&run->loop, &run->tick_timer), 0);
    assert_int_equal(uv_timer_init(&run->loop, &run->trigger_timer), 0);
    run->tick_timer.data = run->trigger_timer.data = run;
    /* Ticks due at 50, 100 (late: the loop is held from about 60 to 210), 150... */
    assert_int_equal(uv_timer_start(&run->tick_timer, tick_timer_cb, TICK_MS, TICK_MS), 0);
    assert_int_equal(uv_timer_start(&run->trigger_timer, trigger_timer_cb, TICK_MS + 10, 0), 0);
    uv_run(&run->loop, UV_RUN_DEFAULT); /* until the tick timer stops and both reads are done */
    uv_close((uv_handle_t *)&run->trigger, NULL);
    uv_close((uv_handle_t *)&run->message, NULL);
    uv_close((uv_handle_t *)&run->tick_timer, NULL);
    uv_close((uv_handle_t *)&run->trigger_timer, NULL);
    if (!run->shield.closing) {
        fake.io.close(&fake.io, NULL); /* closes the shield's handles, if it made them */
    }
    uv_run(&run->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&run->loop), 0);
    close(run->trigger_fds[1]);
    close(run->message_fds[1]);
    tandem_raft_shield_remove(&run->shield);
    run_now = NULL;
}

static void test_a_late_tick_runs_after_the_poll(void **state)
{
    (void)state;
    struct late_tick_run run = {0};
    late_tick_run(&run, TANDEM_RAFT_SHIELD_LATE_TICK);
    assert_int_equal(run.ticks, 3); /* none dropped */
    assert_false(run.read_at_tick[0]);
    assert_true(run.read_at_tick[1]); /* the late one: the message first */
    /* One, unless the machine held this test a whole interval more somewhere else. */
    assert_true(run.shield.stats.ticks_deferred >= 1);
}

/* What the shield prevents: libuv runs the due timer before the poll. */
static void test_without_the_shield_a_late_tick_runs_first(void **state)
{
    (void)state;
    struct late_tick_run run = {0};
    late_tick_run(&run, TANDEM_RAFT_SHIELD_APPEND_FAILED); /* start is wrapped, tick is not */
    assert_int_equal(run.ticks, 3);
    assert_false(run.read_at_tick[1]); /* the late tick ran with the message unread */
    assert_int_equal(run.shield.stats.ticks_deferred, 0);
}

/* A close between the late tick and the poll's end drops the tick: raft is closing. */
static void test_a_close_drops_a_late_tick(void **state)
{
    (void)state;
    struct late_tick_run run = {.close_on_read = true};
    late_tick_run(&run, TANDEM_RAFT_SHIELD_LATE_TICK);
    assert_true(run.shield.stats.ticks_deferred >= 1);
    assert_int_equal(run.ticks, 1); /* the first only */
    assert_true(run.message_read);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_install_goes_to_the_address_last_sent_to),
        cmocka_unit_test(test_a_write_that_succeeds_reaches_raft),
        cmocka_unit_test(test_a_lost_log_is_noticed),
        cmocka_unit_test(test_a_failure_while_closing_reaches_raft),
        cmocka_unit_test(test_a_failed_write_stops_the_process),
        cmocka_unit_test(test_without_the_flag_append_is_not_wrapped),
        cmocka_unit_test(test_an_own_snapshot_is_filled_off_the_loop),
        cmocka_unit_test(test_a_failed_fill_reaches_raft),
        cmocka_unit_test(test_a_refused_put_check_reaches_raft),
        cmocka_unit_test(test_a_refused_install_stops_the_process),
        cmocka_unit_test(test_a_close_waits_for_the_fill),
        cmocka_unit_test(test_an_install_is_prepared_off_the_loop),
        cmocka_unit_test(test_a_close_waits_for_the_prepare),
        cmocka_unit_test(test_a_close_waits_for_a_fill_and_a_prepare),
        cmocka_unit_test(test_a_late_tick_runs_after_the_poll),
        cmocka_unit_test(test_without_the_shield_a_late_tick_runs_first),
        cmocka_unit_test(test_a_close_drops_a_late_tick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
