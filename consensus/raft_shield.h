/* A raft_io wrapper that shields tandem from libraft 0.22.1's known bugs, in tandemd (over raft_uv)
 * and in the simulations (over raft's fixture) alike.
 *
 * What it shields, and why this way (libraft source: cowsql/raft v0.22.1, src/ paths below):
 *
 * 1. Snapshot term mismatch (src/legacy.c legacyLoadSnapshotCb; unfixed upstream). A leader
 *    decides to send its snapshot N (index, term) to a lagging follower and asks raft_io for "the"
 *    snapshot; raft_io returns the newest one, M, if the leader took M in between. raft then
 *    sends M's data, index and configuration with N's term. When a term began between N and M the
 *    follower records the wrong term at M, later refuses the leader's entries as "conflicting
 *    terms for a committed entry" and shuts down (asserts compiled out, as in Debian's build: a
 *    double free in recvCb). The shield remembers the (index, term) of the snapshot that
 *    snapshot_get actually loaded and gives the InstallSnapshot sent from inside that callback
 *    (raft sends it synchronously there) the loaded snapshot's term. This is the sound fix: the
 *    message then describes one snapshot, M, whose term is the term of entry M in the leader's
 *    log (the legacy layer stores that term with M). Preventing the race instead (no snapshot
 *    taken while one is being loaded) would need to hold back the FSM's snapshots, which raft_io
 *    cannot do, and would still depend on raft_io's loading order.
 *    The same message carries the follower's address as a pointer into the configuration raft
 *    had when it queued the message (src/replication.c sendSnapshot); a configuration change
 *    received during the load frees it, and raft_uv then reads freed memory (seen under ASan in
 *    a chaos run with BCP promotions). The shield never reads that pointer: it sends to the
 *    address it last sent to for the same server id (an InstallSnapshot always follows an
 *    AppendEntries to that server), or refuses the send when it has none.
 * 2. InstallSnapshot during an install (src/replication.c replicationInstallSnapshot; fixed
 *    upstream after 0.22.1): one that arrives while another is being stored is ignored with its
 *    data and configuration never freed (src/recv.c meant to free on RAFT_BUSY, which is never
 *    returned): a whole snapshot leaks each time. The shield drops it before raft sees it and
 *    frees it by raft's rule for received messages (src/legacy.c recvCb while closing: close the
 *    configuration, raft_free the data). raft would have ignored it; while installing, a
 *    follower neither votes nor times out (src/timeout.c), so nothing else is lost, and the
 *    leader sends it again after install_snapshot_timeout if still needed.
 * 3. InstallSnapshot while this server writes its own snapshot (src/legacy.c takeSnapshotCb,
 *    fixed upstream by cowsql/raft#164 after 0.22.1). raft parks it; when the write completes the
 *    callback clears the parked request before reading it and dereferences NULL: SIGSEGV. The
 *    shield drops it (freeing as in 2) while its own snapshot_put is in flight, as a lossy
 *    network may; the leader resends after install_snapshot_timeout.
 * 4. The stale configuration marker (src/replication.c replicationAppend; still in upstream's
 *    main). A follower marks each configuration entry of an AppendEntries as uncommitted with
 *    membershipUncommittedChange(r, index, entry), index being the message's first new entry,
 *    not the configuration entry's own (src/client.c, the leader's side, passes index + i). When
 *    the entry is applied, raft clears the marker only if it names that entry's index
 *    (replicationApplyConfigurationChange), so it stays: on a leader every later raft_assign fails
 *    with RAFT_CANTCHANGE, the snapshots record the configuration before it, and a truncation
 *    between the two indexes would not roll the configuration back (deleteConflictingEntries
 *    compares with the marker). In 10,000 simulated BCP seeds the marker went stale 5,079 times.
 *    The shield ends an AppendEntries before any configuration entry other than its first: then a
 *    new configuration entry is always the first new entry of its message and index is right
 *    (200 seeds of tests/sim/test_bcp.c with it: 0 stale markers; without: 95).
 *    NOT INSTALLED (TANDEM_RAFT_SHIELD_TANDEMD leaves it out): a leader in pipeline mode has
 *    already advanced the follower's next index past the whole message, and takes the success
 *    answer to the cut message as an acknowledgement of what is still in flight, so it never
 *    resends the cut entries; once max_inflight_entries are "in flight" it sends only
 *    heartbeats and the follower stays behind for good (tests/sim/test_bcp.c seed 5438: west-2
 *    stuck 37 entries behind for 60 s). consensus/site_controller.c's repair clears the stale
 *    marker instead; tests/sim/test_shields.c still shows the shield removes the bug's cause.
 *
 * 5. A failed log write (src/legacy.c legacyPersistEntriesCb; src/uv_append.c). When raft_uv's
 *    asynchronous append fails (preparing a segment hits EMFILE or ENOSPC, a write fails), the
 *    callback's only check is assert(closing), compiled out in Debian's build: the entries stay
 *    in raft's memory as never persisted, raft_uv has already moved its next write index back,
 *    and the next append writes later entries at the failed ones' places on disk, found only
 *    at a restart, if at all. The shield stops the process at such a failure (tandem_fatal,
 *    exit status 70, the reason on stderr), as replication/proposer.c does when raft_apply
 *    fails after libraft took the entry: a restart reads the log from disk. tandemd only
 *    (TANDEM_RAFT_SHIELD_APPEND_FAILED): the simulations fail appends on purpose and check
 *    what raft does then.
 *
 * 6. Snapshots serialised on the loop (src/legacy.c legacyTakeSnapshot calls the FSM's
 *    snapshot_async synchronously, on the loop thread, despite its name). A state of hundreds of
 *    MiB held the loop for seconds per snapshot: elections during a preload (issue 17). With a
 *    fill hook (own_fill, not a flag: tandemd sets it) the FSM only pins its state in
 *    snapshot/snapshot_async, and the shield fills the buffers on libuv's thread pool between
 *    raft's snapshot_put and raft_uv's: raft_uv reads the buffers only from its own put on, and
 *    raft's own-put counts as in flight throughout (shield 3 covers the whole fill). A close
 *    while a fill runs waits for it (the worker reads state the close would free), then gives
 *    raft its put back as RAFT_CANCELED, as raft_uv does for a put it cancels.
 *
 * 7. Snapshots installed on the loop (src/legacy.c installSnapshotCb calls the FSM's restore on
 *    the loop thread): rebuilding a state of hundreds of MiB from the received bytes held the
 *    loop as long as serialising it did (6). With a prepare hook (install_prepare: tandemd sets
 *    it) the shield runs it on the thread pool between raft's snapshot_put of the install and
 *    raft_uv's, with the bytes raft holds until its callback; the FSM's restore then finds the
 *    state built and only swaps it in. The install counts as in flight from raft's put on (the
 *    drops of 2 cover it); a close waits for the prepare as for a fill.
 *
 * 8. A follower that lost entries it had acknowledged (src/progress.c, src/replication.c
 *    sendAppendEntries; unchanged upstream): a node whose data directory was emptied and that
 *    started again under its old name, so its old raft id. The leader keeps the match index the
 *    node had (progressMaybeUpdate never lowers one), and once the node has installed a snapshot
 *    older than that index its next index lies below the match index: sendAppendEntries counts
 *    the entries in flight as next - match - 1 in unsigned arithmetic, finds the limit exceeded
 *    and sends heartbeats only, so the node stays at the snapshot's index until the leader's
 *    log no longer reaches it (tests/integration/test_snapshot.py; a 10M-key node stayed minutes).
 *    The leader also keeps counting the node for entries it no longer holds. raft_io cannot
 *    correct raft's progress; the shield notices exactly that state (a rejection whose last
 *    index is below raft's match index for its sender: a follower's log never shrinks below what
 *    it acknowledged unless it lost it, and raft's match index starts afresh with each
 *    leadership and each re-added member; but not one just below the index rejected, which is
 *    what a sound follower answers for an entry it folded into its own snapshot) and records it
 *    (tandem_raft_shield_lost_log); the site
 *    controller then moves leadership, and a new leader starts every follower's progress afresh.
 *
 * 9. Raft's tick before the messages that came during a stall (raft_uv ticks from a libuv timer,
 *    and libuv runs due timers before it polls for I/O). When this node's loop was held (a long
 *    callback, the machine's CPUs busy elsewhere), the first tick after it runs while the
 *    messages that arrived meanwhile are still unread: a follower finds its election timer
 *    expired though its leader's AppendEntries wait in the socket, and a leader checks its
 *    contact with a quorum (src/tick.c tickLeader) without the answers that came, and steps
 *    down. Each is an election the cluster did not need (a 10M-key preload on a loaded machine
 *    had one). With the flag and a loop (tandemd), a tick that comes at least one interval late
 *    is run after the loop's next poll instead (a libuv check handle; an idle handle keeps that
 *    poll from waiting): the same tick, a poll later, never dropped, never two late in a row
 *    (the next tick is a whole interval away). Raft's safety does not depend on when ticks run.
 *
 * Both drops apply only to an InstallSnapshot whose term is at least ours: an older one raft
 * rejects and frees itself, and its reply tells a deposed leader of the newer term.
 *
 * "In flight" is tracked at the raft_io level: from snapshot_put to its callback. raft issues one
 * own-snapshot put (trailing > 0, src/legacy.c putSnapshot, between snapshot_taking being set and
 * cleared) and one install put (trailing == 0, legacyPersistSnapshotStart, while
 * raft->snapshot.installing) at a time. tandem never sets snapshot_trailing to 0; if it did, an
 * own put would count as an install, and the drop would be the same.
 *
 * All of this goes when libraft is upgraded past 0.22.1: re-check each bug then
 * (tests/sim/test_shields.c reproduces each one with its shield off). */
#ifndef TANDEM_CONSENSUS_RAFT_SHIELD_H
#define TANDEM_CONSENSUS_RAFT_SHIELD_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "consensus/member.h"
#include "storage/error.h"

/* Servers whose address shield 1 remembers; past this the oldest is forgotten. */
#define TANDEM_RAFT_SHIELD_PEERS_MAX 16

/* Which shields to turn on: tandemd and the simulations use TANDEM_RAFT_SHIELD_TANDEMD; the
 * tests turn one off to see its bug. */
#define TANDEM_RAFT_SHIELD_SNAPSHOT_TERM   0x1u  /* 1 above */
#define TANDEM_RAFT_SHIELD_INSTALL_INSTALL 0x2u  /* 2 above */
#define TANDEM_RAFT_SHIELD_INSTALL_OWN     0x4u  /* 3 above */
#define TANDEM_RAFT_SHIELD_CONFIG_INDEX    0x8u  /* 4 above */
#define TANDEM_RAFT_SHIELD_APPEND_FAILED   0x10u /* 5 above */
#define TANDEM_RAFT_SHIELD_LOST_LOG        0x20u /* 8 above */
#define TANDEM_RAFT_SHIELD_LATE_TICK       0x40u /* 9 above: needs shield->loop (tandemd) */
#define TANDEM_RAFT_SHIELD_ALL             0x7fu
#define TANDEM_RAFT_SHIELD_TANDEMD                                                                 \
    (TANDEM_RAFT_SHIELD_SNAPSHOT_TERM | TANDEM_RAFT_SHIELD_INSTALL_INSTALL |                       \
     TANDEM_RAFT_SHIELD_INSTALL_OWN | TANDEM_RAFT_SHIELD_LOST_LOG)
/* Losses shield 8 remembers; past this, the one of the oldest term is forgotten. */
#define TANDEM_RAFT_SHIELD_LOST_MAX 16

struct tandem_raft_shield_stats {
    uint64_t terms_fixed;          /* InstallSnapshots sent with the loaded snapshot's term */
    uint64_t addresses_fixed;      /* ... to the address last seen for their server (1) */
    uint64_t installs_unaddressed; /* ... refused: no address seen for their server (1) */
    uint64_t dropped_installing;   /* InstallSnapshots dropped during an install */
    uint64_t dropped_snapshotting; /* InstallSnapshots dropped during our own snapshot write */
    uint64_t appends_cut;          /* AppendEntries ended before a configuration entry */
    uint64_t lost_logs;            /* followers seen losing acknowledged entries (8) */
    uint64_t ticks_deferred;       /* late ticks run after a poll (9) */
};

/* Shield 8: a follower seen losing acknowledged entries while this node led in term. */
struct tandem_raft_shield_lost {
    raft_id id;
    raft_term term;
};

/* A snapshot put in flight: our own request stands for raft's. */
struct tandem_raft_shield_put {
    struct raft_io_snapshot_put put;       /* ours, given to the inner io */
    struct raft_io_snapshot_put *raft_req; /* borrowed; NULL: no put in flight */
    raft_io_snapshot_put_cb raft_cb;
    unsigned trailing;                    /* raft's, for the inner put after a fill */
    const struct raft_snapshot *snapshot; /* borrowed from raft until its callback */
    struct tandem_raft_shield *owner;     /* the shield this slot is part of */
};

struct tandem_raft_shield {
    struct raft_io *io;   /* borrowed: the wrapped raft_io, whose methods now lead here */
    struct raft_io inner; /* the methods io had before, called through */
    unsigned flags;
    raft_io_recv_cb raft_recv; /* raft's receive callback, from io->start */
    raft_io_tick_cb raft_tick; /* raft's tick callback, from io->start (9) */
    unsigned tick_ms;          /* the ticks' interval, from io->start (9) */
    uint64_t last_tick_ms;     /* uv_now at the inner io's last tick; 0: none yet (9) */
    uv_idle_t tick_idle;       /* active while a tick waits: the poll before it does not wait */
    uv_check_t tick_check;     /* active while a tick waits: runs it after the poll (9) */
    bool tick_handles;         /* tick_idle and tick_check initialised (at the first late tick) */
    bool closing;              /* raft closed the io: raft frees what it receives itself */
    struct tandem_raft_shield_put own, install; /* snapshot puts in flight: trailing > 0, 0 */
    bool loading; /* inside a snapshot_get callback: raft sends the InstallSnapshot now */
    /* The address of each server this node last sent to (shield 1): the InstallSnapshot sent
     * from a snapshot_get callback carries a pointer into the configuration raft had when it
     * queued the message, freed when a configuration change came in meanwhile. */
    struct {
        raft_id id;
        char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    } peers[TANDEM_RAFT_SHIELD_PEERS_MAX];
    unsigned peers_n, peers_next;
    raft_index loaded_index;
    raft_term loaded_term;
    struct tandem_raft_shield_stats stats;
    /* With TANDEM_RAFT_SHIELD_APPEND_FAILED: called with the nanoseconds each successful log
     * write took, from the inner append to its callback (the write and its fsync); NULL: none. */
    void (*append_observe)(void *data, uint64_t ns);
    void *observe_data; /* borrowed: append_observe's */
    /* The loop raft_uv runs on (tandemd; NULL in the simulations): shield 9 needs it, and
     * shield 6 queues its work there.
     * Shield 6, set after install (tandemd): own_fill runs on loop's thread pool and fills the
     * buffers of the snapshot raft puts (returns 0 or a raft error code); own_filled then runs
     * on the loop thread with that code, before the inner put (or raft's callback on failure).
     * NULL own_fill: buffers are filled before snapshot_put, as libraft expects. */
    uv_loop_t *loop;
    int (*own_fill)(void *data);
    void (*own_filled)(void *data, int status);
    void *fill_data; /* borrowed: own_fill's and own_filled's */
    uv_work_t fill_work;
    bool filling;                      /* fill_work queued, its after-callback not yet run */
    int fill_status;                   /* own_fill's return, for the after-callback */
    raft_io_close_cb close_after_fill; /* a close that waits for the fill or the prepare */
    bool close_pending;
    /* Shield 7, set after install (tandemd): install_prepare runs on loop's thread pool with the
     * snapshot raft received, before raft_uv's put of the install, so that the FSM builds the
     * state raft's restore will then only swap in (fill_data is its data), and sender the raft
     * address of the member whose InstallSnapshot raft is installing ("" when unknown). 0: the
     * put follows whatever happened (NULL install_prepare: the restore builds on the loop). Not
     * 0: the install cannot be restored (prepare_errmsg says why), and the shield stops the
     * process before raft_uv stores it (tandem_fatal, as in 5): raft's legacy layer has already
     * moved its log to the snapshot and cannot take the put back; a restart reads the log and
     * the snapshot it had from disk and catches up again. */
    int (*install_prepare)(void *data, const struct raft_snapshot *snapshot, const char *sender,
                           char *errmsg);
    /* Shield 7: called on the loop thread once raft's callback of an install put has run
     * (restored or not), with fill_data; NULL: none. */
    void (*install_done)(void *data);
    /* Called on the loop thread right before raft_uv's put of a snapshot (own or installed),
     * which removes log segments behind it, with put_check_data; not 0 (a raft error code): an
     * own snapshot's put fails with it instead and raft gives the snapshot up, an install's
     * stops the process (tandem_fatal, as in 7). NULL: none. tandemd refuses a put while the
     * log shows a segment raft_uv failed to close (consensus/log_repair.h): its repair at start
     * needs the segments around the gap. */
    int (*put_check)(void *data, char *why); /* why: TANDEM_ERRMSG_SIZE bytes, when refused */
    void *put_check_data;
    int prepare_rv;
    char prepare_errmsg[TANDEM_ERRMSG_SIZE];
    char install_sender[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1]; /* the last InstallSnapshot's */
    uv_work_t prepare_work;
    bool preparing; /* prepare_work queued, its after-callback not yet run */
    struct tandem_raft_shield_lost lost[TANDEM_RAFT_SHIELD_LOST_MAX]; /* shield 8 */
    unsigned n_lost;
    struct tandem_raft_shield *next; /* the list of shields in use on this thread */
};

/* Wraps io's start, send, snapshot_get, snapshot_put, append and close with the shields in flags.
 * Call once io is initialised and before raft_start (before or after raft_init: the methods run
 * only once raft_init has set io->data to the raft). With flags 0 nothing is wrapped. shield must
 * stay put until tandem_raft_shield_remove. */
void tandem_raft_shield_install(struct tandem_raft_shield *shield, struct raft_io *io,
                                unsigned flags);
/* Shield 8: takes note of an AppendEntries result from follower `from` to this node as the
 * leader of `term`, whose match index for `from` raft reports as `match` (shield_recv checks and
 * asks raft with TANDEM_RAFT_SHIELD_LOST_LOG). Returns true when this answer shows, for the first
 * time in `term`, that the follower lost entries it had acknowledged. */
bool tandem_raft_shield_observe_result(struct tandem_raft_shield *shield, raft_id from,
                                       raft_term term, raft_index match,
                                       const struct raft_append_entries_result *result);
/* True when follower id was seen losing acknowledged entries while this node led in `term`. */
bool tandem_raft_shield_lost_log(const struct tandem_raft_shield *shield, raft_id id,
                                 raft_term term);

/* Forgets shield; call once io is closed (no callback of io runs after). Idempotent. */
void tandem_raft_shield_remove(struct tandem_raft_shield *shield);

#endif
