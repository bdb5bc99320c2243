/* The node's lifecycle: start (state, raft, proposer, API, BCP runtime on one loop), stop,
 * fatal, and the group commit that runs once per loop iteration. */
#include "node/node.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "consensus/log_repair.h"
#include "consensus/member.h"
#include "consensus/recover.h"
#include "consensus/transport.h"
#include "node/api/api.h"
#include "node/bcp/divergence.h"
#include "node/keyring.h"
#include "node/log.h"
#include "node/readiness.h"
#include "node/restore.h"
#include "node/tls_identity.h"
#include "storage/assert.h"
#include "storage/background.h"
#include "storage/dir_lock.h"
#include "storage/clock.h"
#include "storage/error.h"

/* Open files a node keeps for everything but API connections: raft's connections and
 * handshakes, LMDB, the BCP and forwarding clients (up to 64 peers x 4 each), logs. */
#define TANDEM_NODE_FDS_RESERVED 1024u
/* Connections the metrics_address listener takes at once (scrapers; within the reserve above). */
#define TANDEM_NODE_METRICS_CONNECTIONS_MAX 64u

/* Counts a new leader in the metrics and says who it is: an election or a transfer is then in
 * the log with its time, beside the stalls that may have caused it. */
static void leader_seen(struct tandem_node *node)
{
    raft_id id = 0;
    const char *address = NULL;
    raft_leader(&node->raft.raft, &id, &address);
    if (id != 0 && id != node->metrics.leader_seen && address != NULL) {
        const char *bar = strchr(address, '|'); /* "name|site|host:port|url" (member.h) */
        tandem_log(TANDEM_LOG_INFO, "raft: the leader is now %.*s (term %llu)",
                   bar != NULL ? (int)(bar - address) : (int)strlen(address), address,
                   (unsigned long long)raft_current_term(&node->raft.raft));
    }
    tandem_metrics_leader_seen(&node->metrics, id);
}

static void check_cb(uv_check_t *check)
{
    struct tandem_node *node = check->data;
    /* Group commit: one LMDB commit (one fdatasync) for everything applied within
     * commit_interval_ms, off the path of the answers already sent. raft's log is the source of
     * truth: a crash before this commit replays from the stored applied_index. Reads and
     * snapshots commit first, so they always see every applied entry. raft's tick timer wakes
     * the loop at least every heartbeat, so an idle node commits within about that long. */
    uint64_t interval_ns = (uint64_t)node->config->commit_interval_ms * 1000000u;
    if (tandem_store_commit_due(&node->store, uv_hrtime(), interval_ns) &&
        tandem_store_commit(&node->store) != 0) {
        tandem_node_fatal(node, node->store.errmsg);
        return;
    }
    tandem_store_sync_tick(&node->store_sync, uv_hrtime(), TANDEM_STORE_SYNC_INTERVAL_MS);
    /* A failed apply or a failed commit anywhere (snapshot, BCP, drill) poisons the store: a
     * node that can no longer apply must not go on voting, leading or answering. */
    if (node->store.poisoned) {
        tandem_node_fatal(node, "the state store refuses writes after a failed apply or commit");
        return;
    }
    if (node->stopping) {
        return;
    }
    leader_seen(node);
    tandem_pdata_erase_tick(node); /* leader only, every erase_interval_s */
    tandem_audit_check_tick(node); /* every TANDEM_AUDIT_CHECK_INTERVAL_MS, on the thread pool */
    tandem_backups_tick(node);     /* holders' checks; the leader's schedule */
    tandem_audit_flush(node);      /* one AuditAppend per turn, packed with the turn's writes */
    tandem_proposer_flush(&node->proposer);
}

/* The running totals of the loop's known heavy work, for a stall's log line. */
static struct tandem_loop_work loop_work(const struct tandem_node *node)
{
    struct tandem_loop_work w = {
        .apply_ns = node->fsm.apply_ns_total,
        .commit_ns = node->metrics.lmdb_commit.sum_ns,
        .restore_ns = node->fsm.restore_ns_total,
        .snapshot_ns = node->fsm.snapshot_ns_total,
    };
    struct timespec cpu;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) == 0) {
        w.cpu_ns = (uint64_t)cpu.tv_sec * 1000000000u + (uint64_t)cpu.tv_nsec;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) == 0) { /* on the loop thread: node.c's timer */
        w.majflt = (uint64_t)ru.ru_majflt;
    }
    /* schedstat: "<ns on a CPU> <ns waiting on a run queue> <time slices>" */
    char text[96];
    int fd = node->metrics.loop_lag.schedstat_fd;
    ssize_t n = fd >= 0 ? pread(fd, text, sizeof text - 1, 0) : -1;
    unsigned long long run_ns, runq_ns;
    if (n > 0) {
        text[n] = '\0';
        if (sscanf(text, "%llu %llu", &run_ns, &runq_ns) == 2) {
            w.runq_ns = runq_ns;
        }
    }
    return w;
}

static void leader_loss_log(void *data, const char *leader, unsigned fast_timeout_ms)
{
    (void)data;
    tandem_log(TANDEM_LOG_WARN,
               "leader %s went quiet and its raft port refuses connections: its process is gone; "
               "this election's timeout is %u ms",
               leader, fast_timeout_ms);
}

/* raft_uv closes segments one at a time, in order, and removes the oldest first, so a gap between
 * closed segments that stays is one it failed to close and went on (libraft 0.22.1). Only a start
 * closes such a segment into its gap, and only while the segments around the gap are there
 * (consensus/log_repair.h): a gap seen at two looks in a row stops the node, long before a
 * snapshot's trailing removes them. */
static void log_gap_tick(struct tandem_node *node)
{
    if (++node->log_gap.ticks < TANDEM_LOG_GAP_CHECK_MS / TANDEM_LOOP_LAG_INTERVAL_MS ||
        node->stopping) {
        return;
    }
    node->log_gap.ticks = 0;
    char errmsg[TANDEM_ERRMSG_SIZE], what[TANDEM_ERRMSG_SIZE + 64];
    struct tandem_log_gap gap;
    if (tandem_log_gap_find(node->raft.raft_dir, &gap, errmsg) != 0) {
        tandem_log(TANDEM_LOG_WARN, "raft log watch: %s", errmsg);
        return;
    }
    if (!gap.found) {
        node->log_gap.first = node->log_gap.end = 0;
        return;
    }
    if (node->log_gap.first == gap.first && node->log_gap.end == gap.end) {
        tandem_log_gap_describe(&gap, errmsg, sizeof errmsg);
        snprintf(what, sizeof what, "%s; the restart closes it into its gap", errmsg);
        tandem_node_fatal(node, what);
        return;
    }
    tandem_log(TANDEM_LOG_WARN,
               "raft log: no closed segment holds entries %llu-%llu (%u gap(s)); the node stops "
               "if it is still so in %u ms",
               (unsigned long long)gap.first, (unsigned long long)gap.end, gap.n,
               TANDEM_LOG_GAP_CHECK_MS);
    node->log_gap.first = gap.first;
    node->log_gap.end = gap.end;
}

static void loop_lag_cb(uv_timer_t *timer)
{
    struct tandem_node *node = timer->data;
    struct tandem_loop_lag *l = &node->metrics.loop_lag;
    uint64_t late_ns = tandem_loop_lag_tick(l, uv_hrtime());
    struct tandem_loop_work now = loop_work(node);
    /* A schedstat that could not be read this time counts no wait. */
    uint64_t waited_ns = now.runq_ns >= l->seen.runq_ns ? now.runq_ns - l->seen.runq_ns : 0;
    uint64_t held_ns = late_ns > 0 ? tandem_loop_lag_held(l, late_ns, waited_ns) : 0;
    if (late_ns > (uint64_t)TANDEM_LOOP_LAG_WARN_MS * 1000000u ||
        held_ns > (uint64_t)TANDEM_LOOP_HELD_WARN_MS * 1000000u) {
        tandem_log(TANDEM_LOG_WARN,
                   "event loop stalled %llu ms; meanwhile apply took %llu ms, LMDB commits "
                   "%llu ms, snapshot installs %llu ms, snapshots taken %llu ms; the loop "
                   "thread ran %llu ms, waited %llu ms for a CPU and read %llu pages from the "
                   "disk (held %llu ms)",
                   (unsigned long long)(late_ns / 1000000u),
                   (unsigned long long)((now.apply_ns - l->seen.apply_ns) / 1000000u),
                   (unsigned long long)((now.commit_ns - l->seen.commit_ns) / 1000000u),
                   (unsigned long long)((now.restore_ns - l->seen.restore_ns) / 1000000u),
                   (unsigned long long)((now.snapshot_ns - l->seen.snapshot_ns) / 1000000u),
                   (unsigned long long)((now.cpu_ns - l->seen.cpu_ns) / 1000000u),
                   (unsigned long long)(waited_ns / 1000000u),
                   (unsigned long long)(now.majflt - l->seen.majflt),
                   (unsigned long long)(held_ns / 1000000u));
    }
    l->seen = now;
    if (!tandem_list_empty(&node->digest_waits)) {
        tandem_digest_waits_tick(node);
    }
    /* The same 10 ms beat watches a quiet leader (consensus/leader_loss.h): cheap until it
     * probes. */
    if (node->leader_loss.raft != NULL && !node->stopping) {
        tandem_leader_loss_tick(&node->leader_loss);
    }
    log_gap_tick(node);
}

static void handle_closed(struct tandem_node *node)
{
    if (--node->handles_open == 0) {
        tandem_store_close(&node->store);
        tandem_fsm_close(&node->fsm);
        tandem_rate_limit_free(&node->rate_limit);
        if (node->metrics.loop_lag.schedstat_fd >= 0) {
            close(node->metrics.loop_lag.schedstat_fd);
            node->metrics.loop_lag.schedstat_fd = -1;
        }
        tandem_dir_unlock(node->data_dir_lock); /* last: nothing touches the directory now */
        node->data_dir_lock = -1;
        tandem_log(TANDEM_LOG_INFO, "stopped");
    }
}

static void uv_handle_closed_cb(uv_handle_t *handle)
{
    handle_closed(handle->data);
}

static void raft_closed_cb(struct tandem_raft *raft)
{
    handle_closed(raft->loop->data);
}

static void http_closed_cb(struct tandem_http_server *s)
{
    handle_closed(s->data);
}

static void forwarder_closed_cb(struct tandem_forwarder *f)
{
    handle_closed(f->answer_data);
}

static void park_closed_cb(struct tandem_park *p)
{
    handle_closed(p->data);
}

static void leader_watch_closed_cb(struct tandem_leader_watch *w)
{
    handle_closed(w->data);
}

static void bcp_closed_cb(struct tandem_bcp *b)
{
    handle_closed(b->env.data);
}

static void events_closed_cb(struct tandem_events *e)
{
    handle_closed(e->data);
}

static void watch_closed_cb(struct tandem_bcp_watch *w)
{
    handle_closed(w->bcp->env.data);
}

static void backups_closed_cb(struct tandem_node *node)
{
    handle_closed(node);
}

static void pool_reads_closed_cb(void *data)
{
    handle_closed(data);
}

static void store_sync_closed_cb(void *data)
{
    handle_closed(data);
}

/* The BCP runtime's way to stop the node (a restart in place sets reexec). */
static void bcp_stop(void *data, bool reexec)
{
    struct tandem_node *node = data;
    node->reexec = node->reexec || reexec;
    tandem_node_stop(node, 0);
}

/* The leader watch's look at raft. */
static void leader_look(void *data, bool want_leader, struct tandem_leader_view *out)
{
    struct tandem_node *node = data;
    memset(out, 0, sizeof *out);
    out->leading = raft_state(&node->raft.raft) == RAFT_LEADER;
    out->leader_known =
        want_leader && !out->leading && tandem_raft_leader(&node->raft, &out->leader) == 0;
    out->applied = raft_last_applied(&node->raft.raft);
    if (want_leader) {
        out->self = node->self.name;
        out->log_full = tandem_fsm_log_full(&node->fsm, &out->log_held, &out->log_budget);
    }
}

void tandem_node_stop(struct tandem_node *node, int exit_code)
{
    if (node->stopping) {
        return;
    }
    node->stopping = true;
    node->exit_code = exit_code;
    tandem_log(TANDEM_LOG_INFO, "stopping");
    tandem_digest_waits_tick(node); /* answers every waiting digest: the node stops */
    tandem_audit_fail_queued(node, RAFT_SHUTDOWN);
    tandem_proposer_fail_queued(&node->proposer, RAFT_SHUTDOWN);
    node->handles_open = node->metrics_http_open ? 17 : 16; /* the sd timers: 2 */
    /* A backup copying the store on the thread pool: the store closes after it (node/backup.c). */
    node->handles_open += node->backup != NULL ? 1 : 0;
    /* Likewise an audit chain walk (node/audit_check.c). */
    node->handles_open += node->audit_check.running ? 1 : 0;
    node->handles_open += 1; /* reads on the thread pool (node/pool_read.h) */
    node->handles_open += 1; /* the store's sync on the thread pool (node/store_sync.h) */
    tandem_sd_close(&node->sd, node->reexec, uv_handle_closed_cb);
    uv_close((uv_handle_t *)&node->sighup, uv_handle_closed_cb);
    uv_close((uv_handle_t *)&node->sigterm, uv_handle_closed_cb);
    uv_close((uv_handle_t *)&node->sigint, uv_handle_closed_cb);
    uv_close((uv_handle_t *)&node->flush_check, uv_handle_closed_cb);
    uv_close((uv_handle_t *)&node->metrics.loop_lag.timer, uv_handle_closed_cb);
    tandem_http_server_close(&node->http, http_closed_cb);
    if (node->metrics_http_open) {
        tandem_http_server_close(&node->metrics_http, http_closed_cb);
    }
    tandem_forwarder_close(&node->forwarder, forwarder_closed_cb);
    tandem_leader_watch_close(&node->leader_watch, leader_watch_closed_cb);
    tandem_park_close(&node->park, park_closed_cb);
    tandem_bcp_close(&node->bcp, bcp_closed_cb);
    tandem_bcp_watch_close(&node->watch, watch_closed_cb);
    tandem_events_close(&node->events, events_closed_cb);
    tandem_backups_close(node, backups_closed_cb); /* waits for backup work using the store */
    tandem_pool_reads_close(&node->pool_reads, pool_reads_closed_cb, node);
    tandem_store_sync_close(&node->store_sync, store_sync_closed_cb, node);
    tandem_fsm_cancel_fetch(&node->fsm); /* raft's close waits for an install's prepare */
    tandem_raft_close(&node->raft, raft_closed_cb);
}

void tandem_node_fatal(struct tandem_node *node, const char *what)
{
    tandem_log(TANDEM_LOG_ERROR, "fatal: %s; stopping (the raft log replays on restart)", what);
    /* Poisoned: drop the failed transaction; the next start replays from the last commit. */
    tandem_store_abort(&node->store);
    tandem_node_stop(node, 1);
}

static void signal_cb(uv_signal_t *handle, int signum)
{
    struct tandem_node *node = handle->data;
    tandem_log(TANDEM_LOG_INFO, "signal %d", signum);
    tandem_node_stop(node, 0);
}

/* SIGHUP: new connections use the re-read certificates; open ones keep theirs. */
static void reload_files(void *data)
{
    struct tandem_node *node = data;
    tandem_tls_identity_reload(node->tls);
    tandem_node_keyring_load(&node->keyring, node->config->key_file, node->config->insecure, false);
}

static void sighup_cb(uv_signal_t *handle, int signum)
{
    struct tandem_node *node = handle->data;
    (void)signum;
    tandem_sd_reload(&node->sd, reload_files); /* RELOADING=1 ... READY=1 under systemd */
}

static void log_append_observe(void *data, uint64_t ns)
{
    struct tandem_node *node = data;
    tandem_histogram_observe(&node->metrics.log_append, ns);
}

static void lmdb_sync_observe(void *data, uint64_t ns)
{
    struct tandem_node *node = data;
    tandem_histogram_observe(&node->metrics.lmdb_sync, ns);
}

/* A failed fdatasync may have dropped pages the disk never got: the store's mark now says so
 * (no later open trusts it), and the node stops rather than serve from it. */
static void lmdb_sync_failed(void *data, const char *errmsg)
{
    struct tandem_node *node = data;
    tandem_store_poison(&node->store);
    tandem_node_fatal(node, errmsg);
}

static void lmdb_commit_observe(void *data, uint64_t ns)
{
    struct tandem_node *node = data;
    tandem_histogram_observe(&node->metrics.lmdb_commit, ns);
}

static void apply_observe(void *data, uint64_t ns)
{
    struct tandem_node *node = data;
    tandem_histogram_observe(&node->metrics.apply, ns);
    tandem_bcp_watch_applied(&node->watch);
    if (!tandem_list_empty(&node->digest_waits)) {
        tandem_digest_waits_applied(node);
    }
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        tandem_log(TANDEM_LOG_ERROR, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int start_state(struct tandem_node *node, const struct tandem_config *c)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/state", c->data_dir);
    size_t map_size = (size_t)c->map_size_mib * 1024 * 1024;
    int rv = tandem_store_open(&node->store, path, map_size);
    if (rv != 0 && node->store.untrusted) {
        /* raft's snapshot and log hold everything the store did (raft syncs them before it
         * relies on them): raft_start restores the snapshot into the empty store, and the log
         * replays from there. */
        char errmsg[TANDEM_ERRMSG_SIZE];
        tandem_log(TANDEM_LOG_WARN,
                   "state store: %s; discarding it: raft's snapshot and log rebuild the state",
                   node->store.errmsg);
        rv = tandem_store_discard(path, errmsg);
        if (rv != 0) {
            tandem_log(TANDEM_LOG_ERROR, "state store: discard: %s", errmsg);
            return -1;
        }
        node->store_rebuilt = true;
        rv = tandem_store_open(&node->store, path, map_size);
    }
    if (rv != 0) {
        tandem_log(TANDEM_LOG_ERROR, "state store: %s", node->store.errmsg);
        return -1;
    }
    node->store.commit_observe = lmdb_commit_observe;
    node->store.observe_data = node;
    node->store.trash_later = true; /* removed on the pool: install_done */
    tandem_fsm_init(&node->fsm, &node->store);
    node->fsm.apply_observe = apply_observe;
    node->fsm.observe_data = node;
    tandem_log(TANDEM_LOG_INFO, "state at applied_index %llu",
               (unsigned long long)node->store.applied_index);
    return 0;
}

/* The environment an installed snapshot replaced, removed on the thread pool (its data file is
 * as large as the state: unlinking gigabytes holds a thread for a while). */
#define TRASH_PATH_SIZE (PATH_MAX + 32) /* as storage/store.h's trash */

struct trash_job {
    uv_work_t work;
    int rv, err;
    char path[TRASH_PATH_SIZE];
};

static void trash_work(uv_work_t *work)
{
    struct trash_job *j = work->data;
    errno = 0;
    j->rv = tandem_store_trash_remove(j->path);
    j->err = errno;
}

static void trash_work_cb(uv_work_t *work)
{
    tandem_background_run(trash_work, work); /* storage/background.h */
}

static void trash_after_cb(uv_work_t *work, int status)
{
    struct trash_job *j = work->data;
    if (status != 0 || j->rv != 0) {
        tandem_log(TANDEM_LOG_WARN,
                   "cannot remove the state a snapshot replaced, %s: %s (the next start "
                   "removes it)",
                   j->path, status != 0 ? uv_strerror(status) : strerror(j->err));
    }
    free(j);
}

/* The environment the last restore replaced, if any, to the thread pool. */
static void trash_hand_off(struct tandem_node *node)
{
    char path[TRASH_PATH_SIZE];
    if (!tandem_store_trash_take(&node->store, path, sizeof path)) {
        return; /* the usual case: nothing was swapped */
    }
    struct trash_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        (void)tandem_store_trash_remove(path); /* here, then */
        return;
    }
    memcpy(j->path, path, sizeof path);
    j->work.data = j;
    if (uv_queue_work(node->loop, &j->work, trash_work_cb, trash_after_cb) != 0) {
        (void)tandem_store_trash_remove(j->path); /* here, then */
        free(j);
    }
}

/* Shield 7's install_done (data: the node's fsm): readers may start again, and the replaced
 * environment goes to the pool. */
static void install_done(void *data)
{
    struct tandem_node *node =
        (struct tandem_node *)((char *)data - offsetof(struct tandem_node, fsm));
    tandem_assert(data == &node->fsm);
    tandem_fsm_install_done(&node->fsm);
    trash_hand_off(node);
}

/* This node's share of the snapshot stagger: its place among the members spread over half the
 * thresholds (0, 100, ... 400 permille for five), so no two members snapshot at the same index
 * and the log a node holds stays within 1.5 x its budget; a node not listed (a joiner) takes a
 * share from its raft id, a hash of its name. */
static unsigned snapshot_stagger_permille(const struct tandem_config *c)
{
    for (unsigned i = 0; i < c->n_members; i++) {
        if (strcmp(c->members[i].name, c->name) == 0) {
            return i * TANDEM_SNAPSHOT_STAGGER_PERMILLE_MAX / c->n_members;
        }
    }
    return (unsigned)(tandem_member_id(c->name) % TANDEM_SNAPSHOT_STAGGER_PERMILLE_MAX);
}

static int start_raft(struct tandem_node *node, const struct tandem_config *c)
{
    char path[PATH_MAX + 16];
    struct tandem_raft_options o = {
        .self = &node->self,
        .raft_dir = path,
        .cluster_id = c->cluster_id,
        .epoch = node->bcp.epoch,
        .quarantine = node->bcp.quarantined, /* every start: node/bcp/quarantine.h */
        .join = c->join,
        .members = c->members,
        .n_members = c->n_members,
        .heartbeat_ms = c->heartbeat_ms,
        .election_timeout_ms = c->election_timeout_ms,
        .install_snapshot_timeout_ms = c->install_snapshot_timeout_ms,
        .snapshot_threshold = c->snapshot_threshold,
        .snapshot_trailing = c->snapshot_trailing,
        .max_inflight_entries = c->max_inflight_entries,
        .segment_size_kib = c->segment_size_kib,
        /* An AppendEntries holds at most max_inflight_entries entries, each one proposer batch
         * (with slack for its framing); a snapshot is the state, which fits the LMDB map. */
        .frame_limits =
            {
                .append_bytes_max = (uint64_t)c->max_inflight_entries *
                                    ((uint64_t)c->batch_bytes_max_kib * 1024 + (1u << 20)),
                .snapshot_bytes_max = ((uint64_t)c->map_size_mib << 20) + (16u << 20),
            },
        .log = tandem_log_syslog,
        .raft_allow = c->raft_allow,
        .tls = node->tls, /* NULL when insecure: raft in plaintext */
    };
    struct tandem_recover_plan *plan = NULL;
    snprintf(path, sizeof path, "%s/raft", c->data_dir);
    /* A restored directory: its cluster id, and raft seeded at the backup's index (issue 14). */
    if (tandem_node_restore_start(&node->store, &node->self, c) != 0) {
        return -1;
    }
    if (make_dir(path) != 0 || tandem_bcp_raft_prepare(c->data_dir, &o, &plan) != 0) {
        return -1;
    }
    /* raft_start may apply committed entries already (a single voter knows its commit index):
     * the FSM needs the raft instance before that. */
    tandem_fsm_set_raft(&node->fsm, &node->raft.raft);
    /* Before raft_start: the entries it applies from the log count in the log's size. On disk
     * raft_uv's segments come on top of the entries (the open one, those it prepares ahead, the
     * one straddling the trailing's start: TANDEM_LOG_SEGMENTS_RESERVED), so the entries get
     * the budget less those, leaving them at least half the trailing. */
    uint64_t reserve = (uint64_t)TANDEM_LOG_SEGMENTS_RESERVED * c->segment_size_kib << 10;
    if (tandem_fsm_set_log_budget(&node->fsm, (uint64_t)c->snapshot_log_mib << 20,
                                  (uint64_t)c->trailing_log_mib << 20, reserve,
                                  c->snapshot_threshold, c->snapshot_trailing) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "%s", node->fsm.errmsg);
        free(plan);
        return -1;
    }
    tandem_fsm_set_snapshot_stagger(&node->fsm, snapshot_stagger_permille(c));
    /* Before raft_start too: its restore of a snapshot reference reads the file it names. */
    char errmsg[TANDEM_ERRMSG_SIZE], files[PATH_MAX];
    snprintf(files, sizeof files, "%.*s/snapshots", PATH_MAX - 16, c->data_dir);
    if (tandem_snapshot_fetcher_init(&node->snapshot_fetcher, c, errmsg) != 0 ||
        tandem_fsm_set_snapshot_files(&node->fsm, files, (uint64_t)c->snapshot_inline_mib << 20,
                                      tandem_snapshot_fetch, &node->snapshot_fetcher) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "snapshot files: %s",
                   node->fsm.errmsg[0] != '\0' ? node->fsm.errmsg : errmsg);
        free(plan);
        return -1;
    }
    node->fsm.fetch_deadline_ms = c->snapshot_fetch_timeout_s * 1000u;
    if (tandem_raft_start(&node->raft, node->loop, &o, &node->fsm.raft_fsm) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "raft: %s", node->raft.errmsg);
        free(plan);
        return -1;
    }
    trash_hand_off(node); /* what raft_start's restore replaced, if it swapped */
    node->raft.shield.append_observe = log_append_observe; /* raft_start installed the shield */
    node->raft.shield.observe_data = node;
    /* Snapshots are serialised on the thread pool, not on the loop (raft_shield.h, 6). */
    node->raft.shield.loop = node->loop;
    node->raft.shield.own_fill = tandem_fsm_snapshot_fill;
    node->raft.shield.own_filled = tandem_fsm_snapshot_filled;
    node->raft.shield.fill_data = &node->fsm;
    /* And an installed snapshot's state is built there too, before raft restores it (7). */
    node->raft.shield.install_prepare = tandem_fsm_install_prepare;
    node->raft.shield.install_done = install_done;
    node->fsm.fill_later = true;
    /* A leader whose port refuses a probe is gone: campaign after 2 heartbeats, not a whole
     * election timeout (a probe slower than a fifth of the handshake timeout proves nothing). */
    unsigned fast_ms =
        2 * c->heartbeat_ms < c->election_timeout_ms ? 2 * c->heartbeat_ms : c->heartbeat_ms;
    tandem_leader_loss_init(&node->leader_loss, &node->raft.raft, &node->raft.transport,
                            c->heartbeat_ms, c->election_timeout_ms, fast_ms,
                            TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_DEFAULT / 5);
    node->leader_loss.log = leader_loss_log;
    node->leader_loss.log_data = node;
    if (tandem_bcp_raft_started(c->data_dir, plan) != 0) {
        return -1;
    }
    tandem_log(TANDEM_LOG_INFO, "raft started as id %llu%s", (unsigned long long)node->raft.id,
               node->raft.bootstrapped ? " (bootstrapped a new cluster)" : "");
    return 0;
}

/* The metrics_address listener's handler: GET (or HEAD) /metrics and nothing else, without a
 * credential. It is plaintext HTTP: point it at the monitoring network and limit it with
 * api_allow (it shares the API's list) or a firewall. */
static void metrics_only_handle(struct tandem_http_server *s, struct tandem_http_request *r)
{
    if (strcmp(r->path, "/metrics") != 0) {
        tandem_http_respond_error(r, 404, "this listener serves only GET /metrics");
    } else if (r->method != HTTP_GET && r->method != HTTP_HEAD) {
        tandem_http_respond_error(r, 405, "this listener serves only GET /metrics");
    } else {
        tandem_routes_handle(s, r); /* no TLS here: the router asks for no credential */
    }
}

static int start_metrics_listener(struct tandem_node *node, const struct tandem_config *c)
{
    struct tandem_http_limits limits;
    char host[TANDEM_HOSTPORT_LEN_MAX + 1], errmsg[TANDEM_ERRMSG_SIZE];
    int port;
    if (c->metrics_address[0] == '\0') {
        return 0;
    }
    tandem_http_limits_default(&limits);
    limits.connections_max = TANDEM_NODE_METRICS_CONNECTIONS_MAX;
    limits.body_bytes_max = TANDEM_HTTP_BODY_BYTES_MIN;
    limits.header_timeout_ms = c->header_timeout_ms;
    if (tandem_http_server_init(&node->metrics_http, node->loop, &limits, metrics_only_handle,
                                node) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "metrics listener: %s", node->metrics_http.errmsg);
        return -1;
    }
    node->metrics_http_open = true;
    if (tandem_http_server_set_sources(&node->metrics_http, &node->api_allow,
                                       c->connections_per_source_max) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "metrics listener: %s", node->metrics_http.errmsg);
        return -1;
    }
    tandem_hostport_split(c->metrics_address, host, sizeof host, &port);
    if (tandem_http_server_listen(&node->metrics_http, host, port, errmsg) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "metrics listen on %s: %s", c->metrics_address, errmsg);
        return -1;
    }
    tandem_log(TANDEM_LOG_INFO, "metrics on http://%s/metrics (no credential, plaintext)",
               c->metrics_address);
    return 0;
}

/* api_allow, connections per source and the rate limit, before the API listens. */
static int start_api_bounds(struct tandem_node *node, const struct tandem_config *c)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    int rc = tandem_allow_parse(&node->api_allow, c->api_allow, errmsg);
    tandem_assert(rc == TANDEM_OK); /* tandem_config_validate parsed it */
    tandem_rate_limit_init(&node->rate_limit, c->rate_limit_rps, c->rate_limit_burst);
    if (tandem_http_server_set_sources(&node->http, &node->api_allow,
                                       c->connections_per_source_max) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "API: %s", node->http.errmsg);
        return -1;
    }
    return 0;
}

static int start_api(struct tandem_node *node, const struct tandem_config *c)
{
    struct tandem_http_limits limits;
    char host[TANDEM_HOSTPORT_LEN_MAX + 1], errmsg[TANDEM_ERRMSG_SIZE];
    int port;
    tandem_http_limits_default(&limits);
    limits.body_bytes_max = (size_t)c->body_bytes_max_kib * 1024;
    limits.connections_max = c->connections_max;
    limits.header_timeout_ms = c->header_timeout_ms;
    if (tandem_http_server_init(&node->http, node->loop, &limits, tandem_routes_handle, node) !=
        0) {
        tandem_log(TANDEM_LOG_ERROR, "API: %s", node->http.errmsg);
        return -1;
    }
    snprintf(errmsg, sizeof errmsg, "X-Tandem-Node: %s\r\n", c->name);
    tandem_http_server_set_reject_headers(&node->http, errmsg);
    tandem_http_server_set_tls(&node->http, node->tls);
    if (start_api_bounds(node, c) != 0) {
        return -1;
    }
    tandem_hostport_split(c->api_address, host, sizeof host, &port);
    if (tandem_http_server_listen(&node->http, host, port, errmsg) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "API listen on %s: %s", c->api_address, errmsg);
        return -1;
    }
    tandem_log(TANDEM_LOG_INFO, "API on %s (%s, %s)", c->api_address, c->api_url,
               node->tls != NULL ? "TLS" : "plaintext");
    return start_metrics_listener(node, c);
}

static void self_from_config(struct tandem_member *self, const struct tandem_config *c)
{
    memset(self, 0, sizeof *self);
    snprintf(self->name, sizeof self->name, "%s", c->name);
    snprintf(self->site, sizeof self->site, "%s", c->site);
    snprintf(self->raft, sizeof self->raft, "%s", c->raft_address);
    snprintf(self->api, sizeof self->api, "%s", c->api_url);
}

/* The BCP runtime's view of the node: borrowed pointers and the way to stop. */
static void bcp_init(struct tandem_node *node)
{
    struct tandem_bcp_env env = {
        .loop = node->loop,
        .config = node->config,
        .raft = &node->raft,
        .store = &node->store,
        .proposer = &node->proposer,
        .self = &node->self,
        .stop = bcp_stop,
        .data = node,
    };
    env.events = &node->events; /* where the runtime, the drill and quarantine tell events */
    env.pool_reads = &node->pool_reads; /* dry runs list jobs on the thread pool */
    tandem_bcp_init(&node->bcp, &env);
}

static void start_proposer(struct tandem_node *node, const struct tandem_config *c)
{
    struct tandem_proposer_limits limits = {
        .batch_commands_max = c->batch_commands_max,
        .batch_bytes_max = (size_t)c->batch_bytes_max_kib * 1024,
        .pending_max = c->pending_requests_max,
    };
    tandem_proposer_init(&node->proposer, &node->raft.raft, node->raft.id, &limits);
    node->proposer.now_ms = tandem_wall_ms;
    /* Serials must not repeat across restarts: an entry proposed before a restart can still be
     * committed and applied afterwards, and must not be claimed by a new batch. */
    node->proposer.next_serial = (uint64_t)tandem_wall_ms() << 20;
    node->proposer.limbo_ns = (uint64_t)c->election_timeout_ms * 4 * 1000000u;
    tandem_fsm_set_claim(&node->fsm, tandem_proposer_claim, &node->proposer);
}

/* systemd's poll (node/sd_notify.h): ready as /readyz says, and who leads. */
static const char *sd_look(void *data, char *status, size_t size)
{
    struct tandem_node *node = data;
    struct tandem_readiness_facts facts;
    struct tandem_member leader = {0};
    tandem_readiness_facts_read(&node->raft, &node->bcp, &facts);
    const char *reason = tandem_readiness_reason(&facts);
    bool leading = raft_state(&node->raft.raft) == RAFT_LEADER;
    if (reason == NULL && !leading && tandem_raft_leader(&node->raft, &leader) != 0) {
        reason = "no leader"; /* lost between the two looks */
    }
    tandem_sd_status_text(reason, leading, leader.name, status, size);
    return reason;
}

/* The flush check, the signals and systemd's notifications. */
static int start_handles(struct tandem_node *node, char *errmsg)
{
    int rv = uv_check_init(node->loop, &node->flush_check);
    node->flush_check.data = node;
    if (rv == 0) {
        rv = uv_check_start(&node->flush_check, check_cb);
    }
    if (rv == 0) {
        rv = uv_timer_init(node->loop, &node->metrics.loop_lag.timer);
        node->metrics.loop_lag.timer.data = node;
        /* Opened here, on the loop thread: thread-self is the thread that opens it. */
        node->metrics.loop_lag.schedstat_fd =
            open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    }
    if (rv == 0) {
        rv = uv_timer_start(&node->metrics.loop_lag.timer, loop_lag_cb, TANDEM_LOOP_LAG_INTERVAL_MS,
                            TANDEM_LOOP_LAG_INTERVAL_MS);
    }
    uv_signal_t *signals[] = {&node->sigterm, &node->sigint};
    int signums[] = {SIGTERM, SIGINT};
    for (unsigned i = 0; rv == 0 && i < 2; i++) {
        rv = uv_signal_init(node->loop, signals[i]);
        signals[i]->data = node;
        if (rv == 0) {
            rv = uv_signal_start(signals[i], signal_cb, signums[i]);
        }
    }
    if (rv == 0) {
        rv = uv_signal_init(node->loop, &node->sighup);
        node->sighup.data = node;
    }
    if (rv == 0) {
        rv = uv_signal_start(&node->sighup, sighup_cb, SIGHUP);
    }
    if (rv == 0) {
        rv = tandem_sd_start(&node->sd, node->loop, sd_look, node);
    }
    return rv == 0 ? 0 : tandem_error_from_uv(rv, errmsg, "node handles");
}

/* Forwarding, the leader watch and parking: the follower's helpers. */
static int start_follower_side(struct tandem_node *node, const struct tandem_config *c,
                               char *errmsg)
{
    tandem_router_init(node); /* the park and the forwarder (node/api/api.h) */
    node->leader_watch.data = node;
    if (tandem_leader_watch_start(&node->leader_watch, node->loop, c->snapshot_trailing,
                                  leader_look, node, errmsg) != 0) {
        return -1;
    }
    node->fsm.snapshot_gate = tandem_leader_watch_snapshot_allowed;
    node->fsm.snapshot_gate_data = &node->leader_watch;
    /* Node-to-node HTTP speaks TLS with this node's certificate as the client's. */
    tandem_forwarder_set_tls(&node->forwarder, node->tls);
    tandem_http_pool_set_tls(&node->leader_watch.pool, node->tls);
    return 0;
}

/* Raises the soft limit on open files to the hard limit and checks that it covers
 * connections_max API connections plus TANDEM_NODE_FDS_RESERVED for everything else (raft,
 * LMDB, the BCP and forwarding clients, handshakes, logs). Running out of descriptors at run time
 * fails raft's appends and sends; refusing to start is the clear failure. Returns 0 or -1 with
 * errmsg filled. */
static int fd_limit_raise(const struct tandem_config *c, char *errmsg)
{
    struct rlimit limit;
    rlim_t need = (rlim_t)c->connections_max + TANDEM_NODE_FDS_RESERVED;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        tandem_error_from_errno(errno, errmsg, "getrlimit(RLIMIT_NOFILE)");
        return -1;
    }
    if (limit.rlim_cur < limit.rlim_max) {
        rlim_t was = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
            tandem_error_from_errno(errno, errmsg, "setrlimit(RLIMIT_NOFILE)");
            return -1;
        }
        tandem_log(TANDEM_LOG_DEBUG, "open files limit raised from %llu to %llu",
                   (unsigned long long)was, (unsigned long long)limit.rlim_cur);
    }
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < need) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE,
                 "option connections_max: %u connections need %llu open files (%u kept for raft, "
                 "LMDB and peers) but the hard limit is %llu: raise it (ulimit -Hn, systemd "
                 "LimitNOFILE) or lower connections_max",
                 c->connections_max, (unsigned long long)need, TANDEM_NODE_FDS_RESERVED,
                 (unsigned long long)limit.rlim_cur);
        return -1;
    }
    return 0;
}

/* A fresh boot id: random; without entropy, the start time and the pid, which also differ from
 * every earlier start of this data directory's process. */
static void boot_id_make(char *out)
{
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id) {
        id = ((uint64_t)tandem_wall_ms() << 20) ^ (uint64_t)getpid();
    }
    snprintf(out, TANDEM_NODE_BOOT_ID_LEN + 1, "%016" PRIx64, id);
}

int tandem_node_start(struct tandem_node *node, uv_loop_t *loop, const struct tandem_config *c)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    tandem_assert(loop != NULL && c != NULL && !node->stopping);
    node->loop = loop;
    loop->data = node; /* raft's close callback finds the node through its loop */
    tandem_list_init(&node->digest_waits); /* first: tandem_node_stop walks it */
    node->closed = handle_closed;
    node->config = c;
    self_from_config(&node->self, c);
    boot_id_make(node->boot_id);
    tandem_background_set_nice((int)c->pool_nice); /* before any work reaches the pool */
    tandem_tls_identity_log_start(c, node->tls);
    if (tandem_node_keyring_load(&node->keyring, c->key_file, c->insecure, true) != 0) {
        return -1;
    }
    if (fd_limit_raise(c, errmsg) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "%s", errmsg);
        return -1;
    }
    /* One process per data directory, before anything in it is read, wiped or written. */
    node->data_dir_lock = -1;
    if (make_dir(c->data_dir) != 0) {
        return -1;
    }
    if (tandem_dir_lock(c->data_dir, &node->data_dir_lock, errmsg) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "%s", errmsg);
        return -1;
    }
    /* A pending re-seed or forced recovery acts before anything reads the data directory. */
    struct tandem_divergence_self divergence = {c->name, c->site};
    if (tandem_recover_prepare(c->data_dir, tandem_divergence_write_cb, &divergence, errmsg) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "data directory: %s", errmsg);
        return -1;
    }
    if (tandem_events_init(&node->events, loop, c, node->self.name, &node->bcp.epoch) != 0) {
        return -1;
    }
    node->events.data = node;
    node->metrics.loop_lag.schedstat_fd = -1; /* opened with the loop-lag timer */
    tandem_pool_reads_init(&node->pool_reads, loop, &node->store);
    tandem_store_sync_init(&node->store_sync, loop, &node->store);
    node->store_sync.observe = lmdb_sync_observe;
    node->store_sync.failed = lmdb_sync_failed;
    node->store_sync.data = node;
    bcp_init(node);
    if (start_state(node, c) != 0) {
        return -1;
    }
    if (tandem_backups_init(node) != 0) {
        tandem_store_close(&node->store);
        return -1;
    }
    if (start_raft(node, c) != 0) {
        tandem_store_close(&node->store);
        return -1;
    }
    start_proposer(node, c);
    if (start_handles(node, errmsg) != 0 || start_follower_side(node, c, errmsg) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "%s", errmsg);
        return -1;
    }
    if (start_api(node, c) != 0 || tandem_bcp_start(&node->bcp) != 0) {
        return -1;
    }
    tandem_http_pool_set_tls(&node->bcp.clients, node->tls); /* probes and BCP calls */
    if (tandem_events_start(&node->events) != 0 ||
        tandem_bcp_watch_start(&node->watch, &node->bcp, &node->events,
                               &node->fsm.client_commands_applied) != 0) {
        return -1; /* the process exits: nothing to hand back */
    }
    return 0;
}
