/* Simulation of libraft 0.22.1's leadership transfer to a target a few entries behind, on
 * raft/fixture.h: raft_transfer sends its TimeoutNow on the target's next AppendEntries result,
 * not once the target holds the leader's last entry, so the target ignores it and the transfer
 * holds every write until libraft aborts it an election timeout later (the ~0.9 s failback
 * stall). The shield, tandem_site_transfer_ready, waits until the target holds the last entry;
 * the transfer then completes at once. When that wait runs out, tandem_site_transfer_resend
 * sends the TimeoutNow again once the writes the transfer holds let the target catch up.
 * Simulated time only: no wall-clock assertion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <raft.h>
#include <raft/fixture.h>

#include "consensus/site_controller.h"

#define SERVERS             3
#define LEADER              0
#define TARGET              1
#define ELECTION_TIMEOUT_MS 1000
#define ENTRIES_BEHIND      6   /* entries sent to the target one after another */
#define TARGET_DISK_MS      40  /* the target persists slowly: its results trail the entries */
#define READY_WAIT_MS       500 /* simulated time the shield may wait for a caught-up target */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    (void)fsm;
    (void)buf;
    *result = NULL;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)fsm;
    *bufs = raft_malloc(sizeof **bufs);
    if (*bufs == NULL) {
        return RAFT_NOMEM;
    }
    (*bufs)[0].len = 8;
    (*bufs)[0].base = raft_calloc(1, 8);
    *n_bufs = 1;
    return (*bufs)[0].base == NULL ? RAFT_NOMEM : 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    (void)fsm;
    raft_free(buf->base);
    return 0;
}

/* The fixture's own tracer prints every raft event: keep the output quiet. */
static void quiet_trace(struct raft_tracer *t, int type, const void *data)
{
    (void)t;
    (void)type;
    (void)data;
}

static struct raft_tracer quiet_tracer = {.impl = NULL, .version = 2, .emit = quiet_trace};

struct cluster {
    struct raft_fixture fixture;
    struct raft_fsm fsms[SERVERS];
    struct raft_apply applies[ENTRIES_BEHIND];
    struct raft_transfer transfer;
    bool transfer_done;
};

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    (void)req;
    (void)status;
    (void)result;
}

static void transfer_cb(struct raft_transfer *req)
{
    struct cluster *c = req->data;
    c->transfer_done = true;
}

static struct raft *server(struct cluster *c, unsigned i)
{
    return raft_fixture_get(&c->fixture, i);
}

static void cluster_start(struct cluster *c)
{
    struct raft_configuration conf;
    memset(c, 0, sizeof *c);
    assert_int_equal(raft_fixture_init(&c->fixture), 0);
    for (unsigned i = 0; i < SERVERS; i++) {
        c->fsms[i] = (struct raft_fsm){
            .version = 1, .apply = fsm_apply, .snapshot = fsm_snapshot, .restore = fsm_restore};
        assert_int_equal(raft_fixture_grow(&c->fixture, &c->fsms[i]), 0);
        server(c, i)->tracer = &quiet_tracer;
        raft_set_election_timeout(server(c, i), ELECTION_TIMEOUT_MS);
        raft_set_snapshot_threshold(server(c, i), 100000);
        raft_fixture_set_network_latency(&c->fixture, i, 5);
        raft_fixture_set_disk_latency(&c->fixture, i, 2);
    }
    assert_int_equal(raft_fixture_configuration(&c->fixture, SERVERS, &conf), 0);
    assert_int_equal(raft_fixture_bootstrap(&c->fixture, &conf), 0);
    raft_configuration_close(&conf);
    assert_int_equal(raft_fixture_start(&c->fixture), 0);
    raft_fixture_elect(&c->fixture, LEADER);
    raft_fixture_set_disk_latency(&c->fixture, TARGET, TARGET_DISK_MS);
}

/* Appends ENTRIES_BEHIND entries a few milliseconds apart: several are in flight to the slow
 * target at once, so it is behind but keeps acknowledging. */
static void append_behind(struct cluster *c)
{
    struct raft *leader = server(c, LEADER);
    for (unsigned k = 0; k < ENTRIES_BEHIND; k++) {
        struct raft_buffer buf = {.len = 8, .base = raft_calloc(1, 8)};
        assert_non_null(buf.base);
        assert_int_equal(raft_apply(leader, &c->applies[k], &buf, 1, apply_cb), 0);
        raft_fixture_step_until_elapsed(&c->fixture, 8);
    }
    raft_index match = 0;
    assert_int_equal(raft_match_index(leader, server(c, TARGET)->id, &match), 0);
    assert_true(match < raft_last_index(leader));
    assert_false(tandem_site_transfer_ready(leader, server(c, TARGET)->id));
}

static bool target_leads(struct raft_fixture *f, void *arg)
{
    (void)arg;
    return raft_state(raft_fixture_get(f, TARGET)) == RAFT_LEADER;
}

static bool target_ready(struct raft_fixture *f, void *arg)
{
    (void)arg;
    return tandem_site_transfer_ready(raft_fixture_get(f, LEADER), raft_fixture_get(f, TARGET)->id);
}

/* A started cluster whose target is behind; freed by cluster_stop. */
static struct cluster *cluster_behind(void)
{
    struct cluster *c = malloc(sizeof *c);
    assert_non_null(c);
    cluster_start(c);
    append_behind(c);
    c->transfer.data = c;
    return c;
}

static int transfer_to_target(struct cluster *c)
{
    return raft_transfer(server(c, LEADER), &c->transfer, server(c, TARGET)->id, transfer_cb);
}

static void cluster_stop(struct cluster *c)
{
    raft_fixture_close(&c->fixture);
    free(c);
}

/* The bug the shield exists for: a transfer to a lagging target is ignored and aborted after
 * an election timeout, with the old leader still leading (and refusing writes meanwhile). */
static void test_transfer_to_a_lagging_target_is_ignored(void **state)
{
    (void)state;
    struct cluster *c = cluster_behind();
    struct raft *leader = server(c, LEADER);
    assert_int_equal(transfer_to_target(c), 0);
    raft_time started = raft_fixture_time(&c->fixture);
    assert_false(raft_fixture_step_until(&c->fixture, target_leads, NULL, ELECTION_TIMEOUT_MS / 2));
    assert_int_equal(raft_state(leader), RAFT_LEADER);
    struct raft_buffer buf = {.len = 8, .base = raft_calloc(1, 8)};
    struct raft_apply req;
    assert_int_equal(raft_apply(leader, &req, &buf, 1, apply_cb), RAFT_NOTLEADER); /* held */
    raft_free(buf.base);
    raft_fixture_step_until_elapsed(&c->fixture, ELECTION_TIMEOUT_MS);
    assert_true(c->transfer_done); /* aborted by libraft */
    assert_int_equal(raft_state(leader), RAFT_LEADER);
    assert_true(raft_fixture_time(&c->fixture) - started >= ELECTION_TIMEOUT_MS);
    cluster_stop(c);
}

/* The shield: waiting for tandem_site_transfer_ready, the same transfer moves leadership within
 * a few message delays. */
static void test_transfer_to_a_caught_up_target_completes(void **state)
{
    (void)state;
    struct cluster *c = cluster_behind();
    assert_true(raft_fixture_step_until(&c->fixture, target_ready, NULL, READY_WAIT_MS));
    assert_int_equal(transfer_to_target(c), 0);
    assert_true(raft_fixture_step_until(&c->fixture, target_leads, NULL, ELECTION_TIMEOUT_MS / 2));
    cluster_stop(c);
}

static bool timeout_now_sent(struct raft_fixture *f, void *arg)
{
    (void)arg;
    return raft_fixture_get(f, LEADER)->leader_state.transferring;
}

static void resent_cb(struct raft_io_send *req, int status)
{
    int *statuses = req->data;
    statuses[0]++;
    statuses[1] = status;
}

/* The fallback once the wait for a caught-up target ran out: libraft's TimeoutNow is ignored,
 * raft_transfer holds the writes so the target catches up, and libraft never sends another
 * (without tandem_site_transfer_resend the first test shows the abort); the resent TimeoutNow
 * then moves leadership while the transfer is still live. */
static void test_transfer_resent_once_the_target_caught_up(void **state)
{
    (void)state;
    struct cluster *c = cluster_behind();
    struct raft *leader = server(c, LEADER);
    raft_id target = server(c, TARGET)->id;
    int sent[2] = {0, -1}; /* callbacks, last status */
    struct raft_io_send req = {.data = sent};
    assert_false(tandem_site_transfer_resend(leader, target, &req, resent_cb)); /* no transfer */
    assert_int_equal(transfer_to_target(c), 0);
    raft_time started = raft_fixture_time(&c->fixture);
    assert_true(raft_fixture_step_until(&c->fixture, timeout_now_sent, NULL, READY_WAIT_MS));
    /* libraft's own TimeoutNow is out; the target does not hold the last entry yet */
    assert_false(tandem_site_transfer_resend(leader, target, &req, resent_cb));
    assert_true(raft_fixture_step_until(&c->fixture, target_ready, NULL, READY_WAIT_MS));
    assert_int_equal(raft_state(leader), RAFT_LEADER); /* that TimeoutNow was ignored */
    assert_false(c->transfer_done);
    assert_true(tandem_site_transfer_resend(leader, target, &req, resent_cb));
    assert_true(raft_fixture_step_until(&c->fixture, target_leads, NULL, ELECTION_TIMEOUT_MS));
    assert_int_equal(sent[0], 1);
    assert_int_equal(sent[1], 0);
    /* Moved by the resent TimeoutNow before libraft's abort (an election timeout after start). */
    assert_true(raft_fixture_time(&c->fixture) - started < ELECTION_TIMEOUT_MS);
    cluster_stop(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transfer_to_a_lagging_target_is_ignored),
        cmocka_unit_test(test_transfer_to_a_caught_up_target_completes),
        cmocka_unit_test(test_transfer_resent_once_the_target_caught_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
