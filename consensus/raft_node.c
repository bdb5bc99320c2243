/* libraft wiring: raft_uv with our transport and the raft_shield.h shields, the LIBRAFT-NOTES.md
 * must-dos, bootstrap/start. */
#include "consensus/raft_node.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "consensus/log_repair.h"
#include "consensus/raft_error.h"
#include "consensus/raft_heap.h"
#include "consensus/transport.h"
#include "storage/assert.h"
#include "storage/error.h"

int tandem_raft_role_to_raft(int role)
{
    switch (role) {
        case TANDEM_ROLE_STANDBY:
            return RAFT_STANDBY;
        case TANDEM_ROLE_SPARE:
            return RAFT_SPARE;
        default:
            return RAFT_VOTER;
    }
}

int tandem_raft_role_from_raft(int raft_role)
{
    switch (raft_role) {
        case RAFT_STANDBY:
            return TANDEM_ROLE_STANDBY;
        case RAFT_SPARE:
            return TANDEM_ROLE_SPARE;
        default:
            return TANDEM_ROLE_VOTER;
    }
}

int tandem_raft_configuration_build(struct raft_configuration *conf,
                                    const struct tandem_member *members, unsigned n_members,
                                    char *errmsg)
{
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    raft_configuration_init(conf);
    for (unsigned i = 0; i < n_members; i++) {
        const struct tandem_member *m = &members[i];
        if (tandem_member_address_format(m, address, sizeof address) != 0) {
            return tandem_error_set(errmsg, TANDEM_INVALID, "invalid member %s", m->name);
        }
        int rv = raft_configuration_add(conf, tandem_member_id(m->name), address,
                                        tandem_raft_role_to_raft(m->role));
        if (rv != 0) {
            char what[TANDEM_NAME_LEN_MAX + 16];
            snprintf(what, sizeof what, "member %s", m->name);
            return tandem_error_from_raft(rv, NULL, errmsg, what);
        }
    }
    tandem_assert(conf->n == n_members);
    return 0;
}

static int bootstrap(struct tandem_raft *n, const struct tandem_raft_options *o)
{
    struct raft_configuration conf;
    int rv = tandem_raft_configuration_build(&conf, o->members, o->n_members, n->errmsg);
    if (rv == 0) {
        rv = raft_bootstrap(&n->raft, &conf);
        if (rv == 0) {
            n->bootstrapped = true;
        } else if (rv == RAFT_CANTBOOTSTRAP) {
            rv = 0; /* existing state: this is a restart */
        } else {
            rv = tandem_error_from_raft(rv, raft_errmsg(&n->raft), n->errmsg, "bootstrap");
        }
    }
    raft_configuration_close(&conf);
    return rv;
}

/* raft_recover appends conf to the log on disk; raft must be initialised, not started. */
static int recover(struct tandem_raft *n, const struct tandem_raft_options *o)
{
    struct raft_configuration conf;
    int rv =
        tandem_raft_configuration_build(&conf, o->recover_members, o->n_recover_members, n->errmsg);
    if (rv == 0) {
        rv = tandem_error_from_raft(raft_recover(&n->raft, &conf), NULL, n->errmsg, "raft_recover");
    } else {
        tandem_error_wrap(n->errmsg, "raft_recover");
    }
    raft_configuration_close(&conf);
    return rv;
}

static void configure(struct tandem_raft *n, const struct tandem_raft_options *o)
{
    struct raft *r = &n->raft;
    raft_set_heartbeat_timeout(r, o->heartbeat_ms);
    raft_set_election_timeout(r, o->election_timeout_ms);
    raft_set_install_snapshot_timeout(r, o->install_snapshot_timeout_ms);
    raft_set_pre_vote(r, true);
    /* The default 1024/128 snapshots far too often and invites the takeSnapshotCb crash; a high
     * threshold with trailing >= 2x keeps a briefly lagging follower on entries. */
    raft_set_snapshot_threshold(r, o->snapshot_threshold);
    raft_set_snapshot_trailing(r, o->snapshot_trailing);
    raft_set_max_inflight_entries(r, o->max_inflight_entries);
    /* The capacity check is a 16-bit KiB count that wraps: turn it off. */
    raft_set_capacity_threshold(r, 0);
}

static void start_failed_close_cb(struct raft *r)
{
    struct tandem_raft *n = r->data;
    raft_uv_close(&n->io);
    tandem_raft_shield_remove(&n->shield);
    tandem_transport_close(&n->transport);
}

/* The shield's put_check: no snapshot put, which removes segments behind it, while the log
 * shows a gap (consensus/log_repair.h): an own snapshot waits, tandemd's watch stops the node
 * for the repair; an install stops it at once. */
static int put_check(void *data, char *why)
{
    struct tandem_raft *n = data;
    struct tandem_log_gap gap;
    if (tandem_log_gap_find(n->raft_dir, &gap, why) != 0) {
        return 0; /* not known: raft_uv's own put meets the same directory */
    }
    if (!gap.found) {
        return 0;
    }
    tandem_log_gap_describe(&gap, why, TANDEM_ERRMSG_SIZE);
    return RAFT_IOERR;
}

/* raft_uv_init and the raft_uv must-dos. Returns 0 or a tandem code with n->errmsg. */
static int io_init(struct tandem_raft *n, uv_loop_t *loop, const struct tandem_raft_options *o)
{
    int rv = raft_uv_init(&n->io, loop, o->raft_dir, &n->transport);
    if (rv != 0) {
        return tandem_error_from_raft(rv, n->io.errmsg, n->errmsg, "raft_uv_init");
    }
    /* A corrupt segment must stop the node, not silently roll its log back. */
    raft_uv_set_auto_recovery(&n->io, false);
    raft_uv_set_segment_size(&n->io, (size_t)o->segment_size_kib * 1024);
    raft_uv_set_connect_retry_delay(&n->io, 250);
    tandem_raft_shield_install(&n->shield, &n->io,
                               TANDEM_RAFT_SHIELD_TANDEMD | TANDEM_RAFT_SHIELD_APPEND_FAILED |
                                   TANDEM_RAFT_SHIELD_LATE_TICK);
    n->shield.loop = loop; /* shield 9 (and 6) */
    n->shield.put_check = put_check;
    n->shield.put_check_data = n;
    return 0;
}

/* An open segment raft_uv left behind a closed one is closed into its gap before raft_uv loads
 * the log (consensus/log_repair.h); the scratch copies go beside the raft directory. */
static int repair_log(struct tandem_raft *n, const struct tandem_raft_options *o)
{
    char scratch[PATH_MAX];
    struct tandem_log_repair repair;
    if ((size_t)snprintf(scratch, sizeof scratch, "%s.repair", o->raft_dir) >= sizeof scratch) {
        return tandem_error_set(n->errmsg, TANDEM_INVALID, "raft directory path too long");
    }
    int rv = tandem_log_repair(o->raft_dir, scratch, &repair, n->errmsg);
    if (rv != 0) {
        tandem_error_wrap(n->errmsg, "raft log repair");
        return rv;
    }
    if (repair.closed > 0 && o->log != NULL) {
        char msg[sizeof repair.detail + 128];
        snprintf(msg, sizeof msg,
                 "raft log: closed %u open segment(s) raft_uv left behind closed ones: %s",
                 repair.closed, repair.detail);
        o->log(o->log_data, LOG_WARNING, msg);
    }
    return 0;
}

/* raft_start's failure text: raft_uv leaves stale trace text in io.errmsg; the transport's says
 * why a listen failed. */
static int start_failed(struct tandem_raft *n, int raft_rc)
{
    char detail[TANDEM_ERRMSG_SIZE];
    snprintf(detail, sizeof detail, "%s%s%s", raft_errmsg(&n->raft),
             n->transport.errmsg[0] != '\0' ? " / " : "", n->transport.errmsg);
    return tandem_error_from_raft(raft_rc, detail, n->errmsg, "raft_start");
}

/* The transport tells peers in every handshake whether we lead (start-up quarantine and
 * reachability rely on it). */
static bool leading_cb(void *data)
{
    struct tandem_raft *n = data;
    return raft_state(&n->raft) == RAFT_LEADER;
}

/* The transport bounds inbound terms by ours (consensus/frame_check.h). */
static uint64_t term_cb(void *data)
{
    struct tandem_raft *n = data;
    return raft_current_term(&n->raft);
}

/* The transport learns a newer epoch only from a server of our configuration. */
static bool member_cb(void *data, raft_id id, const char *address)
{
    const struct raft_configuration *c = &((struct tandem_raft *)data)->raft.configuration;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == id && strcmp(c->servers[i].address, address) == 0) {
            return true;
        }
    }
    return false;
}

int tandem_raft_start(struct tandem_raft *n, uv_loop_t *loop, const struct tandem_raft_options *o,
                      struct raft_fsm *fsm)
{
    struct tandem_transport_config tc = {.cluster_id = o->cluster_id,
                                         .epoch = o->epoch,
                                         .log = o->log,
                                         .log_data = o->log_data,
                                         .leading = leading_cb,
                                         .leading_data = n,
                                         .quarantine = o->quarantine,
                                         .frame_limits = o->frame_limits,
                                         .term = term_cb,
                                         .term_data = n,
                                         .member = member_cb,
                                         .member_data = n,
                                         .tls = o->tls};
    struct tandem_allow allow;
    int rv;
    tandem_assert(o->self != NULL && fsm != NULL);
    /* Before raft or raft_uv allocate anything, and before libuv's threadpool runs raft_uv's
     * work: the proposer relies on it (consensus/raft_heap.h). */
    tandem_raft_heap_install();
    memset(n, 0, sizeof *n);
    n->loop = loop;
    if ((size_t)snprintf(n->raft_dir, sizeof n->raft_dir, "%s", o->raft_dir) >=
        sizeof n->raft_dir) {
        return tandem_error_set(n->errmsg, TANDEM_INVALID, "raft directory path too long");
    }
    n->close_wait_ms = TANDEM_RAFT_CLOSE_WAIT_MS;
    n->id = tandem_member_id(o->self->name);
    if (tandem_member_address_format(o->self, n->address, sizeof n->address) != 0) {
        return tandem_error_set(n->errmsg, TANDEM_INVALID, "invalid identity for %s",
                                o->self->name);
    }
    if (tandem_allow_parse(&allow, o->raft_allow != NULL ? o->raft_allow : "", n->errmsg) !=
        TANDEM_OK) {
        return TANDEM_CONFIG; /* errmsg names the bad entry */
    }
    tc.allow = &allow;
    if ((rv = repair_log(n, o)) != 0) {
        return rv;
    }
    n->transport.version = 1; /* raft_uv refuses version 0 */
    rv = tandem_transport_init(&n->transport, loop, &tc);
    if (rv != 0) {
        return tandem_error_from_raft(rv, n->transport.errmsg, n->errmsg, "transport");
    }
    if ((rv = io_init(n, loop, o)) != 0) {
        goto err_after_transport;
    }
    rv = raft_init(&n->raft, &n->io, fsm, n->id, n->address);
    if (rv != 0) {
        rv = tandem_error_from_raft(rv, raft_errmsg(&n->raft), n->errmsg, "raft_init");
        goto err_after_io;
    }
    n->raft.data = n;
    configure(n, o);
    if (!o->join && o->n_members > 0 && o->n_recover_members == 0 && (rv = bootstrap(n, o)) != 0) {
        goto err_after_raft;
    }
    if (o->n_recover_members > 0 && (rv = recover(n, o)) != 0) {
        goto err_after_raft;
    }
    rv = raft_start(&n->raft);
    if (rv != 0) {
        rv = start_failed(n, rv);
        goto err_after_raft;
    }
    return 0;

err_after_raft:
    /* raft_init succeeded: raft_close owns the io teardown; only raft's handles are on the loop
     * at start-up, so running it to completion finishes the close. */
    raft_close(&n->raft, start_failed_close_cb);
    (void)uv_run(loop, UV_RUN_DEFAULT);
    return rv;
err_after_io:
    raft_uv_close(&n->io);
    tandem_raft_shield_remove(&n->shield);
err_after_transport:
    tandem_transport_close(&n->transport);
    return rv;
}

static void node_close_cb(struct raft *r)
{
    struct tandem_raft *n = r->data;
    raft_uv_close(&n->io);
    tandem_raft_shield_remove(&n->shield);
    tandem_transport_close(&n->transport);
    if (n->close_cb != NULL) {
        n->close_cb(n);
    }
}

/* A snapshot in flight in libraft's legacy layer (fields of struct raft, read only). */
static bool snapshot_in_flight(const struct raft *r)
{
    return r->legacy.snapshot_install || r->legacy.snapshot_taking;
}

struct close_wait {
    uv_timer_t timer;
    struct tandem_raft *n; /* borrowed */
    uint64_t deadline_ms;  /* uv_now() */
};

static void close_wait_closed_cb(uv_handle_t *handle)
{
    free(handle->data);
}

static void close_wait_cb(uv_timer_t *timer)
{
    struct close_wait *w = timer->data;
    if (snapshot_in_flight(&w->n->raft) && uv_now(timer->loop) < w->deadline_ms) {
        return;
    }
    uv_timer_stop(timer);
    uv_close((uv_handle_t *)timer, close_wait_closed_cb);
    raft_close(&w->n->raft, node_close_cb);
}

void tandem_raft_close(struct tandem_raft *n, void (*cb)(struct tandem_raft *n))
{
    n->close_cb = cb;
    struct close_wait *w = snapshot_in_flight(&n->raft) ? malloc(sizeof *w) : NULL;
    if (w == NULL || uv_timer_init(n->loop, &w->timer) != 0) {
        free(w); /* nothing in flight, or no timer: close now */
        raft_close(&n->raft, node_close_cb);
        return;
    }
    w->timer.data = w;
    w->n = n;
    w->deadline_ms = uv_now(n->loop) + n->close_wait_ms;
    int rv = uv_timer_start(&w->timer, close_wait_cb, TANDEM_RAFT_CLOSE_POLL_MS,
                            TANDEM_RAFT_CLOSE_POLL_MS);
    tandem_assert(rv == 0); /* fails only without a callback or on a closing handle */
}

int tandem_raft_member_by_name(struct tandem_raft *n, const char *name, struct tandem_member *out,
                               uint64_t *id)
{
    const struct raft_configuration *conf = &n->raft.configuration;
    char errmsg[TANDEM_ERRMSG_SIZE];
    for (unsigned i = 0; i < conf->n; i++) {
        if (tandem_member_address_parse(conf->servers[i].address, out, errmsg) == 0 &&
            strcmp(out->name, name) == 0) {
            out->role = tandem_raft_role_from_raft(conf->servers[i].role);
            if (id != NULL) {
                *id = conf->servers[i].id;
            }
            return 0;
        }
    }
    return -1;
}

int tandem_raft_leader(struct tandem_raft *n, struct tandem_member *out)
{
    raft_id id;
    const char *address;
    char errmsg[TANDEM_ERRMSG_SIZE];
    raft_leader(&n->raft, &id, &address);
    if (id == 0 || address == NULL || tandem_member_address_parse(address, out, errmsg) != 0) {
        return -1;
    }
    return 0;
}
