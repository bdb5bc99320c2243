/* The raft_io wrapper that shields tandem from libraft 0.22.1's known bugs (raft_shield.h). */
#include "consensus/raft_shield.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "storage/assert.h"
#include "storage/background.h"

/* The shields in use on this thread. raft_io calls its methods and callbacks on one loop thread,
 * and a method is given only the io: this list leads from the io back to its shield. It holds
 * one shield in tandemd and one per simulated server in the simulations. */
static _Thread_local struct tandem_raft_shield *shields;

static struct tandem_raft_shield *shield_of(struct raft_io *io)
{
    for (struct tandem_raft_shield *s = shields; s != NULL; s = s->next) {
        if (s->io == io) {
            return s;
        }
    }
    tandem_assert(false); /* only wrapped methods lead here, and only while wrapped */
    return NULL;
}

/* Frees what raft owns in a received InstallSnapshot: src/legacy.c recvCb's rule. */
static void install_drop(struct raft_message *message)
{
    raft_configuration_close(&message->install_snapshot.conf);
    raft_free(message->install_snapshot.data.base);
}

/* Shield 4: ends an AppendEntries before a configuration entry that is not its first, so that
 * raft marks the configuration at its true index. The entries cut off stay in the batch that
 * entries[0].batch owns (raft_uv and the fixture decode all of a message's entries into one), so
 * freeing is unchanged; the follower acknowledges only what it kept and the leader sends the rest
 * again, the configuration entry first. */
static void append_cut(struct tandem_raft_shield *s, struct raft_append_entries *append)
{
    for (unsigned k = 1; k < append->n_entries; k++) {
        if (append->entries[k].type == RAFT_CHANGE) {
            tandem_assert(append->entries[k].batch == append->entries[0].batch);
            append->n_entries = k;
            s->stats.appends_cut++;
            return;
        }
    }
}

bool tandem_raft_shield_observe_result(struct tandem_raft_shield *s, raft_id from, raft_term term,
                                       raft_index match,
                                       const struct raft_append_entries_result *result)
{
    tandem_assert(from != 0 && term != 0 && result->term == term);
    /* A success reports what the follower holds, or 0 during an install (raft's last_stored):
     * never a loss. A rejection reports the follower's last index when its log ends before the
     * index rejected, else one below that index (src/recv_append_entries.c). The latter is what
     * a sound follower answers to an AppendEntries whose previous entry it has already folded
     * into a snapshot of its own (its trail starts past it: "missing previous entry"), which a
     * leader probing from a match index it learnt late sends under load: no loss either. A
     * follower that lost its log answers with its real, shorter, last index. */
    if (result->rejected == 0 || result->last_log_index >= match ||
        result->last_log_index + 1 == result->rejected ||
        tandem_raft_shield_lost_log(s, from, term)) {
        return false;
    }
    struct tandem_raft_shield_lost *slot = NULL;
    for (unsigned i = 0; i < s->n_lost; i++) {
        if (s->lost[i].id == from) {
            slot = &s->lost[i]; /* an older term's */
        }
    }
    if (slot == NULL && s->n_lost < TANDEM_RAFT_SHIELD_LOST_MAX) {
        slot = &s->lost[s->n_lost++];
    }
    if (slot == NULL) { /* full: the record of the oldest term goes */
        slot = &s->lost[0];
        for (unsigned i = 1; i < s->n_lost; i++) {
            if (s->lost[i].term < slot->term) {
                slot = &s->lost[i];
            }
        }
    }
    slot->id = from;
    slot->term = term;
    s->stats.lost_logs++;
    return true;
}

bool tandem_raft_shield_lost_log(const struct tandem_raft_shield *s, raft_id id, raft_term term)
{
    for (unsigned i = 0; i < s->n_lost; i++) {
        if (s->lost[i].id == id && s->lost[i].term == term) {
            return true;
        }
    }
    return false;
}

static void shield_recv(struct raft_io *io, struct raft_message *message)
{
    struct tandem_raft_shield *s = shield_of(io);
    struct raft *r = io->data; /* raft_init's */
    raft_index match = 0;
    if (message->type == RAFT_APPEND_ENTRIES_RESULT && (s->flags & TANDEM_RAFT_SHIELD_LOST_LOG) &&
        !s->closing && message->server_id != 0 && raft_state(r) == RAFT_LEADER &&
        message->append_entries_result.term == raft_current_term(r) &&
        raft_match_index(r, message->server_id, &match) == 0) {
        (void)tandem_raft_shield_observe_result(s, message->server_id, raft_current_term(r), match,
                                                &message->append_entries_result);
    }
    if (message->type == RAFT_APPEND_ENTRIES && (s->flags & TANDEM_RAFT_SHIELD_CONFIG_INDEX) &&
        !s->closing) {
        append_cut(s, &message->append_entries);
    }
    if (message->type == RAFT_INSTALL_SNAPSHOT && !s->closing &&
        message->install_snapshot.term >= raft_current_term(r)) {
        if ((s->flags & TANDEM_RAFT_SHIELD_INSTALL_INSTALL) && s->install.raft_req != NULL) {
            install_drop(message);
            s->stats.dropped_installing++;
            return;
        }
        if ((s->flags & TANDEM_RAFT_SHIELD_INSTALL_OWN) && s->own.raft_req != NULL) {
            install_drop(message);
            s->stats.dropped_snapshotting++;
            return;
        }
    }
    if (message->type == RAFT_INSTALL_SNAPSHOT) {
        /* raft puts the install from inside this call: the prepare fetches from its sender. */
        snprintf(s->install_sender, sizeof s->install_sender, "%s",
                 message->server_address != NULL ? message->server_address : "");
    }
    s->raft_recv(io, message);
}

/* Shield 9: the late tick, now that the poll has read what came during the stall. */
static void late_tick_check_cb(uv_check_t *check)
{
    struct tandem_raft_shield *s = check->data;
    (void)uv_check_stop(&s->tick_check);
    (void)uv_idle_stop(&s->tick_idle);
    tandem_assert(!s->closing); /* the close stops both handles */
    s->raft_tick(s->io);
}

static void late_tick_idle_cb(uv_idle_t *idle)
{
    (void)idle; /* active only so that the poll before the check does not wait */
}

static void shield_tick(struct raft_io *io)
{
    struct tandem_raft_shield *s = shield_of(io);
    uint64_t now = uv_now(s->loop);
    bool late = s->last_tick_ms != 0 && now - s->last_tick_ms >= 2 * (uint64_t)s->tick_ms;
    s->last_tick_ms = now;
    if (late && !s->closing && !uv_is_active((uv_handle_t *)&s->tick_check)) {
        if (!s->tick_handles) {
            int rv = uv_idle_init(s->loop, &s->tick_idle);
            rv = rv != 0 ? rv : uv_check_init(s->loop, &s->tick_check);
            tandem_assert(rv == 0); /* libuv's idle and check inits cannot fail */
            s->tick_idle.data = s->tick_check.data = s;
            s->tick_handles = true;
        }
        (void)uv_idle_start(&s->tick_idle, late_tick_idle_cb);
        (void)uv_check_start(&s->tick_check, late_tick_check_cb);
        s->stats.ticks_deferred++;
        return;
    }
    s->raft_tick(io);
}

static int shield_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                        raft_io_recv_cb recv)
{
    struct tandem_raft_shield *s = shield_of(io);
    s->raft_recv = recv;
    s->raft_tick = tick;
    s->tick_ms = msecs;
    bool late_tick = (s->flags & TANDEM_RAFT_SHIELD_LATE_TICK) && s->loop != NULL;
    return s->inner.start(io, msecs, late_tick ? shield_tick : tick, shield_recv);
}

static void shield_close(struct raft_io *io, raft_io_close_cb cb)
{
    struct tandem_raft_shield *s = shield_of(io);
    s->closing = true;     /* raft_close sets its own closing flag just before */
    if (s->tick_handles) { /* a tick still waiting is dropped: raft is closing (9) */
        s->tick_handles = false;
        uv_close((uv_handle_t *)&s->tick_idle, NULL);
        uv_close((uv_handle_t *)&s->tick_check, NULL);
    }
    if (s->filling || s->preparing) {
        /* The worker reads state raft's close leads to freeing: close after it (6, 7). */
        s->close_pending = true;
        s->close_after_fill = cb;
        return;
    }
    s->inner.close(io, cb);
}

/* raft's callback of slot's put, then for an install the FSM's install_done. */
static void put_done(struct tandem_raft_shield_put *slot, int status)
{
    struct tandem_raft_shield *s = slot->owner;
    struct raft_io_snapshot_put *req = slot->raft_req;
    tandem_assert(req != NULL);
    slot->raft_req = NULL;
    slot->raft_cb(req, status); /* raft's takeSnapshotCb or installSnapshotCb */
    if (slot == &s->install && s->install_done != NULL) {
        s->install_done(s->fill_data);
    }
}

static void shield_put_cb(struct raft_io_snapshot_put *put, int status)
{
    put_done(put->data, status);
}

/* Shield 6, on the thread pool: the FSM serialises the state it pinned. */
static void fill_run(uv_work_t *work)
{
    struct tandem_raft_shield *s = work->data;
    s->fill_status = s->own_fill(s->fill_data);
}

static void fill_work_cb(uv_work_t *work)
{
    tandem_background_run(fill_run, work); /* storage/background.h */
}

/* put_check before raft_uv's put. An own snapshot refused fails (raft asks again later); an
 * install cannot (raft's legacy layer has moved its log to the snapshot already, as in 7): the
 * process stops before raft_uv stores it. */
static int put_checked(struct tandem_raft_shield *s, bool install)
{
    char why[TANDEM_ERRMSG_SIZE] = "";
    int rv = s->put_check != NULL ? s->put_check(s->put_check_data, why) : 0;
    if (rv != 0 && install) {
        tandem_fatal("a snapshot install must not remove log segments now: %s; a restart reads "
                     "the log from disk and catches up again",
                     why);
    }
    return rv;
}

/* Back on the loop after the pool's part of slot's put (rv: how it went): the inner put, or
 * raft's callback with the failure (a close meanwhile: RAFT_CANCELED), then the close that
 * waited for the pool, once nothing runs there any more. */
static void put_after_pool(struct tandem_raft_shield *s, struct tandem_raft_shield_put *slot,
                           int rv)
{
    if (rv == 0 && s->closing) {
        rv = RAFT_CANCELED;
    }
    if (rv == 0) {
        rv = put_checked(s, slot == &s->install);
    }
    if (rv == 0) {
        slot->put.data = slot;
        rv =
            s->inner.snapshot_put(s->io, slot->trailing, &slot->put, slot->snapshot, shield_put_cb);
    }
    if (rv != 0) {
        put_done(slot, rv); /* nothing recorded */
    }
    if (s->close_pending && !s->filling && !s->preparing) {
        s->close_pending = false;
        s->inner.close(s->io, s->close_after_fill);
    }
}

static void fill_after_work_cb(uv_work_t *work, int status)
{
    struct tandem_raft_shield *s = work->data;
    int rv = status != 0 ? RAFT_IOERR : s->fill_status;
    s->filling = false;
    s->own_filled(s->fill_data, rv);
    put_after_pool(s, &s->own, rv);
}

/* Shield 7, on the thread pool: the FSM builds the state of the snapshot raft installs. */
static void prepare_run(uv_work_t *work)
{
    struct tandem_raft_shield *s = work->data;
    s->prepare_errmsg[0] = '\0';
    s->prepare_rv =
        s->install_prepare(s->fill_data, s->install.snapshot, s->install_sender, s->prepare_errmsg);
}

static void prepare_work_cb(uv_work_t *work)
{
    tandem_background_run(prepare_run, work); /* storage/background.h */
}

static void prepare_after_work_cb(uv_work_t *work, int status)
{
    struct tandem_raft_shield *s = work->data;
    /* Cancelled (status) or not, the put goes on: the restore builds what is missing. */
    int rv = status == 0 ? s->prepare_rv : 0;
    s->preparing = false;
    if (rv != 0 && !s->closing) {
        tandem_fatal("cannot install the snapshot raft received: %s; stopping before raft stores "
                     "it, so that a restart catches up from the log and the snapshot on disk",
                     s->prepare_errmsg);
    }
    put_after_pool(s, &s->install, rv != 0 ? RAFT_CANCELED : 0);
}

/* Shields 6 and 7: raft's put waits for the pool's part (work: fill or prepare), raft_uv's put
 * follows it. slot counts as in flight from now on. */
static int pool_start(struct tandem_raft_shield *s, struct tandem_raft_shield_put *slot,
                      uv_work_t *work, uv_work_cb work_cb, uv_after_work_cb after_cb,
                      unsigned trailing, struct raft_io_snapshot_put *req,
                      const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    /* Set before the work is queued: the worker reads slot->snapshot at once. */
    slot->raft_req = req;
    slot->raft_cb = cb;
    slot->trailing = trailing;
    slot->snapshot = snapshot;
    work->data = s;
    if (uv_queue_work(s->loop, work, work_cb, after_cb) != 0) {
        slot->raft_req = NULL;
        return RAFT_IOERR; /* raft gives this snapshot up (and asks again later) */
    }
    return 0;
}

/* Puts through our own request, so that the callback knows the put is over. */
static int shield_snapshot_put(struct raft_io *io, unsigned trailing,
                               struct raft_io_snapshot_put *req,
                               const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    struct tandem_raft_shield *s = shield_of(io);
    struct tandem_raft_shield_put *slot = trailing > 0 ? &s->own : &s->install;
    if (slot->raft_req != NULL) {
        /* Not something 0.22.1 does (one of each at a time): leave it untracked. */
        tandem_assert(s->own_fill == NULL || trailing == 0); /* an unfilled snapshot */
        return s->inner.snapshot_put(io, trailing, req, snapshot, cb);
    }
    if (trailing > 0 && s->own_fill != NULL) {
        tandem_assert(s->loop != NULL && s->own_filled != NULL && !s->filling);
        int rv = s->closing ? RAFT_CANCELED
                            : pool_start(s, slot, &s->fill_work, fill_work_cb, fill_after_work_cb,
                                         trailing, req, snapshot, cb);
        s->filling = rv == 0;
        return rv;
    }
    if (trailing == 0 && s->install_prepare != NULL) {
        tandem_assert(s->loop != NULL && !s->preparing);
        int rv = s->closing ? RAFT_CANCELED
                            : pool_start(s, slot, &s->prepare_work, prepare_work_cb,
                                         prepare_after_work_cb, trailing, req, snapshot, cb);
        s->preparing = rv == 0;
        return rv;
    }
    int rv = put_checked(s, trailing == 0);
    if (rv != 0) {
        return rv; /* raft gives this snapshot up (and asks again later) */
    }
    slot->put.data = slot;
    rv = s->inner.snapshot_put(io, trailing, &slot->put, snapshot, shield_put_cb);
    if (rv == 0) {
        slot->raft_req = req;
        slot->raft_cb = cb;
    }
    return rv;
}

/* One snapshot load raft asked for, with our callback in front of raft's. */
struct shield_get {
    struct raft_io_snapshot_get get; /* ours, given to the inner io */
    struct tandem_raft_shield *shield;
    struct raft_io_snapshot_get *raft_req; /* borrowed */
    raft_io_snapshot_get_cb raft_cb;
};

static void shield_get_cb(struct raft_io_snapshot_get *get, struct raft_snapshot *snapshot,
                          int status)
{
    struct shield_get *g = get->data;
    struct tandem_raft_shield *s = g->shield;
    struct raft_io_snapshot_get *req = g->raft_req;
    raft_io_snapshot_get_cb cb = g->raft_cb;
    raft_free(g);
    s->loading = status == 0;
    if (status == 0) {
        s->loaded_index = snapshot->index;
        s->loaded_term = snapshot->term;
    }
    cb(req, snapshot, status); /* frees snapshot, then sends the InstallSnapshot */
    s->loading = false;
}

static int shield_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                               raft_io_snapshot_get_cb cb)
{
    struct tandem_raft_shield *s = shield_of(io);
    struct shield_get *g = raft_malloc(sizeof *g);
    if (g == NULL) {
        return RAFT_NOMEM;
    }
    *g = (struct shield_get){.shield = s, .raft_req = req, .raft_cb = cb};
    g->get.data = g;
    int rv = s->inner.snapshot_get(io, &g->get, shield_get_cb);
    if (rv != 0) {
        raft_free(g); /* the callback never runs */
    }
    return rv;
}

/* One log write raft asked for, with our callback in front of raft's. */
struct shield_append {
    struct raft_io_append append; /* ours, given to the inner io */
    struct tandem_raft_shield *shield;
    struct raft_io_append *raft_req; /* borrowed */
    raft_io_append_cb raft_cb;
    uint64_t started_ns; /* uv_hrtime when given to the inner io (0: nobody observes) */
};

static void shield_append_cb(struct raft_io_append *append, int status)
{
    struct shield_append *a = append->data;
    struct tandem_raft_shield *s = a->shield;
    struct raft_io_append *req = a->raft_req;
    raft_io_append_cb cb = a->raft_cb;
    uint64_t started_ns = a->started_ns;
    raft_free(a);
    if (status == 0 && started_ns != 0 && s->append_observe != NULL) {
        s->append_observe(s->observe_data, uv_hrtime() - started_ns);
    }
    if (status != 0 && !s->closing) {
        tandem_fatal("raft log write failed: %s (%s); libraft 0.22.1 would go on and write later "
                     "entries in their place: stopping so that a restart reads the raft log from "
                     "disk",
                     raft_strerror(status), s->io->errmsg);
    }
    cb(req, status);
}

static int shield_append(struct raft_io *io, struct raft_io_append *req,
                         const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    struct tandem_raft_shield *s = shield_of(io);
    struct shield_append *a = raft_malloc(sizeof *a);
    if (a == NULL) {
        return RAFT_NOMEM; /* raft fails the write at once: it never took the entries */
    }
    *a = (struct shield_append){.shield = s, .raft_req = req, .raft_cb = cb};
    a->started_ns = s->append_observe != NULL ? uv_hrtime() : 0;
    a->append.data = a;
    int rv = s->inner.append(io, &a->append, entries, n, shield_append_cb);
    if (rv != 0) {
        raft_free(a); /* the callback never runs */
    }
    return rv;
}

/* The slot of server id among the remembered peers, or peers_n when it has none. */
static unsigned peer_slot(const struct tandem_raft_shield *s, raft_id id)
{
    unsigned i = 0;
    while (i < s->peers_n && s->peers[i].id != id) {
        i++;
    }
    return i;
}

/* The address last sent to for server id, or NULL. */
static const char *peer_address(const struct tandem_raft_shield *s, raft_id id)
{
    unsigned i = peer_slot(s, id);
    return i < s->peers_n ? s->peers[i].address : NULL;
}

/* Remembers address as server id's (a message raft builds and sends at once: its address is
 * the current configuration's). */
static void peer_remember(struct tandem_raft_shield *s, raft_id id, const char *address)
{
    unsigned i = peer_slot(s, id);
    if (i == s->peers_n) {
        if (s->peers_n < TANDEM_RAFT_SHIELD_PEERS_MAX) {
            s->peers_n++;
        } else {
            i = s->peers_next; /* forget the oldest added */
            s->peers_next = (s->peers_next + 1) % TANDEM_RAFT_SHIELD_PEERS_MAX;
        }
        s->peers[i].id = id;
    }
    if (strcmp(s->peers[i].address, address) != 0) {
        snprintf(s->peers[i].address, sizeof s->peers[i].address, "%s", address);
    }
}

static int shield_send(struct raft_io *io, struct raft_io_send *req,
                       const struct raft_message *message, raft_io_send_cb cb)
{
    struct tandem_raft_shield *s = shield_of(io);
    if (message->type != RAFT_INSTALL_SNAPSHOT || !s->loading) {
        peer_remember(s, message->server_id, message->server_address);
        return s->inner.send(io, req, message, cb);
    }
    /* Sent from the snapshot load's callback (src/legacy.c legacyLoadSnapshotCb): its
     * server_address points into the configuration of when raft queued it, which a
     * configuration change received during the load has freed. It is never read: the message
     * goes to the address last sent to for that server (every InstallSnapshot follows an
     * AppendEntries to the same server). raft_uv encodes the message and the fixture copies it
     * before send returns. */
    struct raft_message fixed = *message;
    fixed.server_address = peer_address(s, message->server_id);
    if (fixed.server_address == NULL) {
        s->stats.installs_unaddressed++;
        return RAFT_NOCONNECTION; /* raft frees it; the leader sends it again later */
    }
    s->stats.addresses_fixed++;
    if (message->install_snapshot.last_index == s->loaded_index &&
        message->install_snapshot.last_term != s->loaded_term) {
        fixed.install_snapshot.last_term = s->loaded_term;
        s->stats.terms_fixed++;
    }
    return s->inner.send(io, req, &fixed, cb);
}

void tandem_raft_shield_install(struct tandem_raft_shield *shield, struct raft_io *io,
                                unsigned flags)
{
    tandem_assert(io != NULL && (flags & ~TANDEM_RAFT_SHIELD_ALL) == 0);
    memset(shield, 0, sizeof *shield);
    shield->io = io;
    shield->flags = flags;
    shield->own.owner = shield->install.owner = shield;
    if (flags == 0) {
        return;
    }
    for (struct tandem_raft_shield *s = shields; s != NULL; s = s->next) {
        tandem_assert(s->io != io); /* one shield per io */
    }
    shield->inner = *io;
    shield->next = shields;
    shields = shield;
    io->start = shield_start;
    io->close = shield_close;
    io->snapshot_put = shield_snapshot_put;
    if (flags & TANDEM_RAFT_SHIELD_SNAPSHOT_TERM) {
        io->snapshot_get = shield_snapshot_get;
        io->send = shield_send;
    }
    if (flags & TANDEM_RAFT_SHIELD_APPEND_FAILED) {
        io->append = shield_append;
    }
}

void tandem_raft_shield_remove(struct tandem_raft_shield *shield)
{
    for (struct tandem_raft_shield **p = &shields; *p != NULL; p = &(*p)->next) {
        if (*p == shield) {
            *p = shield->next;
            shield->next = NULL;
            return;
        }
    }
}
