/* One node's raft: libraft's legacy API on raft_uv with our transport, configured with every
 * must-do from LIBRAFT-NOTES.md, bootstrapped, restarted or joined. */
#ifndef TANDEM_CONSENSUS_RAFT_NODE_H
#define TANDEM_CONSENSUS_RAFT_NODE_H

#include <limits.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "consensus/frame_check.h"
#include "consensus/member.h"
#include "consensus/raft_shield.h"
#include "consensus/tls.h"
#include "storage/error.h"

struct tandem_raft_options {
    const struct tandem_member *self; /* borrowed */
    const char *raft_dir;             /* must exist */
    const char *cluster_id;
    uint64_t epoch;
    bool join;                           /* start empty and wait to be added; never bootstrap */
    const struct tandem_member *members; /* initial configuration, bootstrap only */
    unsigned n_members;
    /* Forced failover (consensus/recover.h): when n_recover_members > 0, raft_recover forces this
     * configuration into the log before raft_start. Only ever on the one chosen survivor. */
    const struct tandem_member *recover_members;
    unsigned n_recover_members;
    /* Start with the transport's quarantine gate on: raft sends nothing until it is lifted
     * (tandem_transport_set_quarantine on n->transport). */
    bool quarantine;
    unsigned heartbeat_ms, election_timeout_ms, install_snapshot_timeout_ms;
    unsigned snapshot_threshold, snapshot_trailing, max_inflight_entries, segment_size_kib;
    struct tandem_frame_limits frame_limits; /* inbound raft frames (consensus/frame_check.h) */
    struct tandem_tls_ctx *tls; /* borrowed, outlives raft: mutual TLS on the raft transport;
                                   NULL = plaintext (--insecure) */
    const char *raft_allow;     /* borrowed: CIDR list of raft sources (consensus/allow.h); NULL or
                                   "" = every source */
    void (*log)(void *data, int level, const char *msg);
    void *log_data;
};

struct tandem_raft {
    struct raft raft;
    struct raft_io io;
    struct tandem_raft_shield shield; /* wraps io against libraft 0.22.1's snapshot bugs */
    struct raft_uv_transport transport;
    uv_loop_t *loop; /* borrowed */
    uint64_t id;
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    bool bootstrapped; /* this start created the cluster's first configuration */
    void (*close_cb)(struct tandem_raft *n);
    unsigned close_wait_ms; /* bound on the wait for a snapshot in flight before raft_close */
    char errmsg[TANDEM_ERRMSG_SIZE];
    char raft_dir[PATH_MAX]; /* a copy of the options' */
};

/* How long tandem_raft_close waits for a snapshot being taken or installed, and how often it
 * looks (see tandem_raft_close). */
#define TANDEM_RAFT_CLOSE_WAIT_MS 5000u
#define TANDEM_RAFT_CLOSE_POLL_MS 5u

int tandem_raft_role_to_raft(int role);
int tandem_raft_role_from_raft(int raft_role);
/* Builds a raft configuration from members. Returns 0, or a tandem code with errmsg filled;
 * conf is initialised either way and the caller closes it. */
int tandem_raft_configuration_build(struct raft_configuration *conf,
                                    const struct tandem_member *members, unsigned n_members,
                                    char *errmsg);

/* Initialises and starts raft. Returns 0, or a tandem error code (storage/error.h) with
 * n->errmsg filled; then nothing is left to close. */
int tandem_raft_start(struct tandem_raft *n, uv_loop_t *loop, const struct tandem_raft_options *o,
                      struct raft_fsm *fsm);
/* Closes raft, raft_uv and the transport; cb runs once all memory can be released. While raft
 * takes or installs a snapshot the close waits for it (up to n->close_wait_ms): libraft 0.22.1
 * closed meanwhile leaks an installed snapshot (legacyPersistSnapshotCb drops it while closing)
 * or the install held behind a snapshot being taken. */
void tandem_raft_close(struct tandem_raft *n, void (*cb)(struct tandem_raft *n));

/* Finds a member of the current configuration by name (member->role from the configuration).
 * Returns 0 or -1 when absent. */
int tandem_raft_member_by_name(struct tandem_raft *n, const char *name, struct tandem_member *out,
                               uint64_t *id);
/* The leader as a member; -1 when no leader is known. */
int tandem_raft_leader(struct tandem_raft *n, struct tandem_member *out);

#endif
