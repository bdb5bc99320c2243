/* A backup file sent to a client as one fixed-length HTTP answer read from disk in chunks
 * (GET /v1/backups/<name>, POST /v1/backups/download): bounded memory however large the file and
 * however slow the reader. */
#ifndef TANDEM_NODE_BACKUP_STREAM_H
#define TANDEM_NODE_BACKUP_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "node/http/server.h"

struct tandem_node;

/* Header lines of the answer besides Content-Length (the file's size). */
#define TANDEM_BACKUP_NAME_HEADER   "X-Tandem-Backup-Name"
#define TANDEM_BACKUP_SHA256_HEADER "X-Tandem-Backup-Sha256" /* the trailer's hash, hex */
#define TANDEM_BACKUP_INDEX_HEADER  "X-Tandem-Backup-Index"  /* the manifest's applied index */
#define TANDEM_BACKUP_DIGEST_HEADER "X-Tandem-Backup-State-Digest" /* the manifest's, hex */

/* Answers r with the file at path (its file name in TANDEM_BACKUP_NAME_HEADER, its trailer's
 * SHA-256 in TANDEM_BACKUP_SHA256_HEADER, then extra_headers: NULL or header lines of at most
 * 512 bytes), read on the thread pool TANDEM_BACKUP_STREAM_CHUNK_BYTES at a time, the next read
 * only once the socket took the bytes before (tandem_http_stream_buffered). Or with an error:
 * 404 no such file, 503 over TANDEM_BACKUP_DOWNLOADS_MAX streams or stopping, 500 otherwise.
 * When remove_after, the file is removed once the answer ends, whether complete, cut by the
 * client or failed. Counted in node->backups.works until everything is closed and freed. */
void tandem_backup_stream_start(struct tandem_node *node, struct tandem_http_request *r,
                                const char *path, bool remove_after, const char *extra_headers);

/* The same for any regular file at path (a snapshot file, node/api/snapshots.c): no backup
 * trailer is read and no name or hash header sent; never removed. */
void tandem_file_stream_start(struct tandem_node *node, struct tandem_http_request *r,
                              const char *path, const char *extra_headers);

/* The slowest reader a download waits for, on average, in bytes per second. */
#define TANDEM_BACKUP_STREAM_RATE_MIN (64u * 1024u)

enum tandem_backup_stream_due {
    TANDEM_BACKUP_STREAM_ON_TIME,
    TANDEM_BACKUP_STREAM_STALLED,  /* no byte taken for timeout_ms */
    TANDEM_BACKUP_STREAM_TOO_SLOW, /* past timeout_ms + size at TANDEM_BACKUP_STREAM_RATE_MIN */
};
/* Whether a download of size bytes whose head went at started_ms, and whose reader last took
 * bytes at progress_ms, is still on time at now_ms (all uv_now milliseconds). */
enum tandem_backup_stream_due tandem_backup_stream_due(uint64_t now_ms, uint64_t started_ms,
                                                       uint64_t progress_ms, uint64_t size,
                                                       uint64_t timeout_ms);

/* Closes the downloads whose reader took no byte for backup_timeout_s (a live peer that stops
 * reading keeps its connection open forever: TCP keepalive does not end it), or took longer
 * than backup_timeout_s plus the file's size at TANDEM_BACKUP_STREAM_RATE_MIN (a trickle that
 * would hold a download slot and the file for ever). Called from tandem_backups_tick. */
void tandem_backup_streams_expire(struct tandem_node *node);

#endif
