/* The scheduled mutual backup between the sites (issue 14 items 4-5), as one node runs it: the
 * leader's schedule (a caught-up node of each site takes its backup and ships it to the other
 * site's nodes; retries, then an event), retention and the periodic level-2 verification; the
 * taker's take-and-ship; the holder's receiving, verification on arrival and its check that what
 * it keeps is still there. struct tandem_node embeds struct tandem_backups; the code is in
 * node/backup_sched.c (schedule, checks, views), node/backup_ship.c (taker) and
 * node/backup_keep.c (holder). */
#ifndef TANDEM_NODE_BACKUP_STATE_H
#define TANDEM_NODE_BACKUP_STATE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include <jansson.h>

#include "consensus/member.h"
#include "node/http/server.h"
#include "replication/bcp/backups.h"
#include "storage/list.h"

struct tandem_node;

#define TANDEM_BACKUP_TICK_MS          1000 /* the schedule's and the checks' cadence */
#define TANDEM_BACKUP_UPLOADS_MAX      4    /* backups arriving at one node at once; more: 503 */
#define TANDEM_BACKUP_CHUNK_BYTES_MAX  (1024u * 1024u) /* one upload request's body at most */
#define TANDEM_BACKUP_CALL_TIMEOUT_MS  60000u /* one chunk, manifest, verification or report */
#define TANDEM_BACKUP_REPORTED_MAX     64     /* losses this node reported, not yet recorded */
#define TANDEM_BACKUP_FILE_SLACK_BYTES (64ull * 1024 * 1024) /* a file's size over the LMDB map */
#define TANDEM_BACKUP_ERROR_LEN_MAX    255
#define TANDEM_BACKUP_KEPT_DIR         "kept"     /* under backup_dir: the other sites' backups */
#define TANDEM_BACKUP_INCOMING_DIR     "incoming" /* under backup_dir: uploads in progress */
#define TANDEM_BACKUP_OUTGOING_DIR     "outgoing" /* under backup_dir: the taker's file in flight */
#define TANDEM_BACKUP_DOWNLOAD_DIR     "download" /* under backup_dir: taken to be downloaded */
#define TANDEM_BACKUP_MANIFEST_SUFFIX  ".manifest.json"
/* Downloads (node/backup_stream.c) streamed by one node at once; more: 503. Each holds one
 * read chunk and at most TANDEM_HTTP_STREAM_BUFFERED_BYTES_MAX queued for the socket. */
#define TANDEM_BACKUP_DOWNLOADS_MAX      8
#define TANDEM_BACKUP_STREAM_CHUNK_BYTES (256u * 1024u) /* one read of a file being sent */
#define TANDEM_BACKUP_DOWNLOAD_SWEEP_MAX 1024 /* leftover files removed at start, at most */

/* The leader's schedule of one site. */
struct tandem_backup_run {
    char site[TANDEM_SITE_LEN_MAX + 1];
    bool inflight;                         /* a take-and-ship, or its record, in flight */
    char id[TANDEM_BACKUP_ID_LEN_MAX + 1]; /* its id */
    char taker[TANDEM_NAME_LEN_MAX + 1];   /* and who takes it */
    unsigned attempts;                     /* failed tries of the backup now due */
    uint64_t next_ms;                      /* uv_now before which no try starts */
    uint64_t failures;                     /* failed tries, ever (this leadership) */
    uint64_t raised;                       /* failures raised as backup_failed events */
    char last_error[TANDEM_BACKUP_ERROR_LEN_MAX + 1];
    int64_t last_error_ms; /* wall clock; 0: none */
    bool verify_inflight;
    uint64_t verify_next_ms;
};

/* A backup arriving at this node (the holder side of an upload). */
struct tandem_backup_upload {
    bool used, busy; /* busy: a write or the final check in flight */
    char id[TANDEM_BACKUP_ID_LEN_MAX + 1];
    uv_file fd; /* owned while used */
    uint64_t offset;
    uint64_t last_ms; /* uv_now of the last chunk: stale uploads are dropped */
};

struct tandem_backup_take; /* node/backup_ship.c: the take-and-ship in flight at this node */

struct tandem_backup_stats {
    uint64_t taken, take_failures, shipped_bytes;       /* as taker */
    uint64_t received, received_bytes, arrival_refused; /* as holder */
    uint64_t lost_reported, removed, verifications, verification_failures;
};

struct tandem_backups {
    char dir[PATH_MAX]; /* the effective backup_dir */
    uint64_t last_tick_ms, last_check_ms;
    uint64_t leading_since_ms; /* uv_now when this node became leader; 0 while it is not */
    struct tandem_backup_run runs[TANDEM_BACKUP_SITES_MAX];
    unsigned n_runs;
    bool retire_inflight;
    struct tandem_backup_upload uploads[TANDEM_BACKUP_UPLOADS_MAX];
    struct tandem_backup_take *take; /* owned; NULL when none */
    bool check_inflight;
    char reported[TANDEM_BACKUP_REPORTED_MAX][TANDEM_BACKUP_ID_LEN_MAX + 1];
    unsigned n_reported;
    unsigned works;             /* thread-pool jobs, file requests and calls of ours in flight */
    unsigned downloads;         /* backup files being streamed to clients (node/backup_stream.c) */
    struct tandem_list streams; /* borrowed: those whose head went out, for their stall check */
    uint64_t downloads_done, downloads_cut; /* streams completed, and ended before their end */
    bool closing;
    void (*close_cb)(struct tandem_node *node);
    struct tandem_backup_stats stats;
};

/* Makes backup_dir (and its kept/, incoming/, outgoing/ and download/, emptied: what is there
 * was taken for a download a crash cut) and checks that it lies outside
 * data_dir's raft/ and state/ once resolved. Returns 0 or -1 (logged): the node does not start. */
int tandem_backups_init(struct tandem_node *node);
/* Once per loop turn (node.c): at most every TANDEM_BACKUP_TICK_MS, the holder's check (every
 * backup_check_interval_s) on every node, and on the leader the schedule, retention and the
 * level-2 verifications. */
void tandem_backups_tick(struct tandem_node *node);
/* Stops starting work; cb runs (maybe at once) when nothing of ours is in flight any more, so
 * the store is not closed under a backup being written. */
void tandem_backups_close(struct tandem_node *node, void (*cb)(struct tandem_node *node));

/* One more (or one fewer) of our requests in flight; the last one done completes a close. */
void tandem_backups_work_begin(struct tandem_node *node);
void tandem_backups_work_end(struct tandem_node *node);

/* The per-site summary of the replicated table (GET /v1/status, /v1/bcp/status): NULL on an
 * error (logged). */
json_t *tandem_backups_status_json(struct tandem_node *node);
/* The backup series of /metrics. */
void tandem_backups_metrics_write(struct tandem_node *node, FILE *out);

/* ---- the routes' work (node/api/backup_sites.c parses and answers) ---- */

/* POST /v1/node/backups/take: take site's backup here and ship it to holders (and its manifest
 * to witnesses), each a JSON array of {"name","api"}; answers r with the record to store (200),
 * or an error (409 busy or wrong site, 502 no holder took it, 500). */
void tandem_backup_take_start(struct tandem_node *node, struct tandem_http_request *r,
                              const char *id, json_t *holders, json_t *witnesses);
/* POST /v1/node/backups/upload?id=&offset=[&final=1&sha256=]: one chunk of a backup arriving,
 * or its end (then it is checked at level 1 and kept). Answers r. */
void tandem_backup_upload(struct tandem_node *node, struct tandem_http_request *r, const char *id,
                          uint64_t offset, bool final, const char *sha256);
/* POST /v1/node/backups/manifest?id=: keeps a backup's manifest (a witness's share). */
void tandem_backup_manifest_keep(struct tandem_node *node, struct tandem_http_request *r,
                                 const char *id);
/* POST /v1/node/backups/verify: verifies this node's copy of id at level; 200, 404 when it keeps
 * none, 422 with the damaged part named. */
void tandem_backup_verify_local(struct tandem_node *node, struct tandem_http_request *r,
                                const char *id, int level);

/* The holder's check (node/backup_keep.c): every backup recorded as kept here is there with its
 * size (else reported lost to the leader, with a backup_lost event); retired ones are removed;
 * files of no record older than twice backup_timeout_s are swept. */
void tandem_backups_holder_check(struct tandem_node *node);
/* The SHA-256 of the file at path in hex (2 * TANDEM_DIGEST_LEN + 1 bytes) and its size; 0 or
 * a tandem code with errmsg. Blocking: for the thread pool. */
int tandem_backup_file_sha256(const char *path, char *hex, uint64_t *size, char *errmsg);
/* The id of a take in flight (node/backup_ship.c). */
const char *tandem_backup_take_id(const struct tandem_backup_take *t);

/* The path of a kept backup's file (or manifest), dir/kept/<id>.tbk, into out (PATH_MAX bytes). */
void tandem_backup_path(const char *dir, const char *id, bool manifest, char *out);

#endif
