/* Sending a backup file as a fixed-length answer (node/backup_stream.h): opened on the thread
 * pool, then read one chunk at a time with uv_fs_read, each read started only when the stream's
 * queue has room for it, so memory stays bounded whatever the file's size and the reader's
 * speed. */
#include "node/backup_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/api/api.h"
#include "node/backup.h"
#include "node/backup_state.h"
#include "node/log.h"
#include "node/node.h"
#include "storage/assert.h"
#include "storage/background.h"
#include "storage/backup.h"
#include "storage/backup_file.h"
#include "storage/error.h"

#define EXTRA_HEADERS_BYTES_MAX 512

struct backup_stream {
    struct tandem_node *node;          /* borrowed */
    struct tandem_http_request *r;     /* borrowed: answered once, then NULL */
    struct tandem_http_stream *stream; /* borrowed: NULL before the head and after the close */
    char path[PATH_MAX];
    char extra[EXTRA_HEADERS_BYTES_MAX];
    bool remove_after;
    bool plain; /* any file (a snapshot file): no backup trailer, no hash header */
    uv_work_t work;
    uv_fs_t fs;
    uv_file fd; /* owned when >= 0 */
    uint64_t size, offset;
    char *chunk; /* owned, TANDEM_BACKUP_STREAM_CHUNK_BYTES */
    bool reading, closed;
    bool head_only;          /* a HEAD request: the head says it all, no byte follows */
    struct tandem_list link; /* in node->backups.streams while the stream is open */
    uint64_t progress_ms;    /* uv_now when the socket last took bytes (or the head went) */
    uint64_t started_ms;     /* uv_now when the head went */
    char sha256[2 * TANDEM_DIGEST_LEN + 1];
    int status; /* HTTP status of a failed open */
    char errmsg[TANDEM_ERRMSG_SIZE];
};

static void stream_free_cb(uv_fs_t *fs);

/* What a log line calls the stream: snapshot files travel the same way as backups. */
static const char *stream_what(bool plain)
{
    return plain ? "snapshot file download" : "backup download";
}

/* The end: the file closed, removed when asked, then s freed. One step per callback, each on
 * the thread pool (nothing on the loop blocks on disk). */
static void stream_release(struct backup_stream *s)
{
    s->fs.data = s;
    if (s->fd >= 0) {
        uv_file fd = s->fd;
        s->fd = -1;
        if (uv_fs_close(s->node->loop, &s->fs, fd, stream_free_cb) == 0) {
            return;
        }
    }
    if (s->remove_after) {
        s->remove_after = false;
        if (uv_fs_unlink(s->node->loop, &s->fs, s->path, stream_free_cb) == 0) {
            return;
        }
    }
    struct tandem_node *node = s->node;
    tandem_assert(node->backups.downloads > 0);
    node->backups.downloads--;
    free(s->chunk);
    free(s);
    tandem_backups_work_end(node);
}

static void stream_free_cb(uv_fs_t *fs)
{
    uv_fs_req_cleanup(fs);
    stream_release(fs->data);
}

static void stream_pump(struct backup_stream *s);

static void stream_read_cb(uv_fs_t *fs)
{
    struct backup_stream *s = fs->data;
    ssize_t n = fs->result;
    uv_fs_req_cleanup(fs);
    s->reading = false;
    if (s->closed) {
        stream_release(s); /* the client left while the chunk was read */
        return;
    }
    if (n <= 0) {
        /* The head promised size bytes: closing early is the only way to say it failed. */
        tandem_log(TANDEM_LOG_WARN, "%s %s: read at %" PRIu64 ": %s", stream_what(s->plain),
                   s->path, s->offset,
                   n < 0 ? uv_strerror((int)n) : "the file is shorter than it was");
        tandem_http_stream_close(s->stream);
        return;
    }
    if (tandem_http_stream_write(s->stream, s->chunk, (size_t)n) != 0) {
        return; /* the connection closes; the close callback follows */
    }
    s->offset += (uint64_t)n;
    stream_pump(s);
}

/* Reads the next chunk when the stream's queue has room for it; ends the stream after the
 * last. Called after the head and from every drain. */
static void stream_pump(struct backup_stream *s)
{
    if (s->closed || s->reading) {
        return;
    }
    if (s->offset == s->size || s->head_only) {
        tandem_http_stream_end(s->stream);
        return;
    }
    if (tandem_http_stream_buffered(s->stream) + TANDEM_BACKUP_STREAM_CHUNK_BYTES >
        TANDEM_HTTP_STREAM_BUFFERED_BYTES_MAX) {
        return; /* the next drain comes back here */
    }
    uint64_t left = s->size - s->offset;
    size_t len =
        left < TANDEM_BACKUP_STREAM_CHUNK_BYTES ? (size_t)left : TANDEM_BACKUP_STREAM_CHUNK_BYTES;
    uv_buf_t buf = uv_buf_init(s->chunk, (unsigned)len);
    s->fs.data = s;
    int rv = uv_fs_read(s->node->loop, &s->fs, s->fd, &buf, 1, (int64_t)s->offset, stream_read_cb);
    if (rv != 0) {
        tandem_log(TANDEM_LOG_WARN, "%s %s: %s", stream_what(s->plain), s->path, uv_strerror(rv));
        tandem_http_stream_close(s->stream);
        return;
    }
    s->reading = true;
}

static void stream_drain_cb(struct tandem_http_stream *stream, void *data)
{
    struct backup_stream *s = data;
    (void)stream;
    s->progress_ms = uv_now(s->node->loop);
    stream_pump(s);
}

enum tandem_backup_stream_due tandem_backup_stream_due(uint64_t now_ms, uint64_t started_ms,
                                                       uint64_t progress_ms, uint64_t size,
                                                       uint64_t timeout_ms)
{
    if (now_ms - progress_ms > timeout_ms) {
        return TANDEM_BACKUP_STREAM_STALLED;
    }
    /* A trickle keeps progress_ms fresh, so the whole answer has a deadline too. */
    uint64_t deadline = started_ms + timeout_ms + size * 1000u / TANDEM_BACKUP_STREAM_RATE_MIN;
    return now_ms > deadline ? TANDEM_BACKUP_STREAM_TOO_SLOW : TANDEM_BACKUP_STREAM_ON_TIME;
}

void tandem_backup_streams_expire(struct tandem_node *node)
{
    uint64_t now = uv_now(node->loop), timeout = (uint64_t)node->config->backup_timeout_s * 1000u;
    struct tandem_list *link = node->backups.streams.next;
    for (unsigned n = 0; link != &node->backups.streams && n < TANDEM_BACKUP_DOWNLOADS_MAX; n++) {
        struct backup_stream *s = tandem_list_entry(link, struct backup_stream, link);
        link = link->next;
        enum tandem_backup_stream_due due =
            tandem_backup_stream_due(now, s->started_ms, s->progress_ms, s->size, timeout);
        if (due != TANDEM_BACKUP_STREAM_ON_TIME) {
            tandem_log(TANDEM_LOG_WARN,
                       due == TANDEM_BACKUP_STREAM_STALLED
                           ? "%s %s: the reader took nothing for %u s"
                           : "%s %s: the reader is slower than %u KiB/s (after %u s of grace)",
                       stream_what(s->plain), s->path,
                       due == TANDEM_BACKUP_STREAM_STALLED ? node->config->backup_timeout_s
                                                           : TANDEM_BACKUP_STREAM_RATE_MIN / 1024u,
                       node->config->backup_timeout_s);
            s->progress_ms = now; /* closed once: the close callback follows */
            s->started_ms = now;
            tandem_http_stream_close(s->stream);
        }
    }
}

static void stream_closed_cb(struct tandem_http_stream *stream, void *data)
{
    struct backup_stream *s = data;
    s->closed = true;
    s->stream = NULL;
    tandem_list_remove(&s->link);
    /* Read to the end is not sent: the last MiB may still have been queued at a cut. */
    bool complete = s->offset == s->size && tandem_http_stream_delivered(stream);
    if (!s->head_only) {
        if (complete) {
            s->node->backups.downloads_done++;
        } else {
            s->node->backups.downloads_cut++;
        }
        tandem_log(complete ? TANDEM_LOG_INFO : TANDEM_LOG_WARN,
                   "%s %s: %s%" PRIu64 " of %" PRIu64 " bytes sent%s", stream_what(s->plain),
                   s->path, complete ? "" : "cut, ", s->offset, s->size,
                   s->remove_after ? "; the file is removed" : "");
    }
    if (!s->reading) {
        stream_release(s); /* else the read's callback does */
    }
}

/* On the thread pool: the file opened, its size, and the SHA-256 its trailer holds (the hash of
 * everything before it, which level 1 checks), for the head. */
static void stream_open_work(uv_work_t *work)
{
    struct backup_stream *s = work->data;
    uint8_t trailer[TANDEM_DIGEST_LEN];
    struct stat st;
    s->fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0 || fstat(s->fd, &st) != 0) {
        s->status = errno == ENOENT ? 404 : 500;
        tandem_error_from_errno(errno, s->errmsg, "backup");
        return;
    }
    s->size = (uint64_t)st.st_size;
    if (s->plain && S_ISREG(st.st_mode)) {
        return;
    }
    if (!S_ISREG(st.st_mode) || s->size < TANDEM_BACKUP_HEADER_BYTES + TANDEM_DIGEST_LEN) {
        s->status = 500;
        snprintf(s->errmsg, sizeof s->errmsg, "backup: not a backup file (%" PRIu64 " bytes)",
                 s->size);
        return;
    }
    if (lseek(s->fd, (off_t)(s->size - TANDEM_DIGEST_LEN), SEEK_SET) < 0 ||
        tandem_backup_read_full(s->fd, trailer, sizeof trailer, "backup trailer", s->errmsg) != 0) {
        s->status = 500;
        if (s->errmsg[0] == '\0') {
            tandem_error_from_errno(errno, s->errmsg, "backup");
        }
        return;
    }
    tandem_digest_hex(trailer, s->sha256);
}

static void stream_open_work_cb(uv_work_t *work)
{
    tandem_background_run(stream_open_work, work); /* storage/background.h */
}

static void stream_open_after_cb(uv_work_t *work, int status)
{
    struct backup_stream *s = work->data;
    struct tandem_node *node = s->node;
    char headers[EXTRA_HEADERS_BYTES_MAX + TANDEM_BACKUP_NAME_LEN_MAX + 256];
    const char *slash = strrchr(s->path, '/');
    if (status != 0 && s->status == 0) {
        s->status = 500;
        tandem_error_from_uv(status, s->errmsg, "backup open");
    }
    if (s->status == 0 && node->stopping) {
        s->status = 503;
        snprintf(s->errmsg, sizeof s->errmsg, "the node is stopping");
    }
    int rv = 0;
    if (s->status == 0) {
        if (s->plain) {
            snprintf(headers, sizeof headers, "%s", s->extra);
        } else {
            snprintf(headers, sizeof headers, "%s: %s\r\n%s: %s\r\n%s", TANDEM_BACKUP_NAME_HEADER,
                     slash != NULL ? slash + 1 : s->path, TANDEM_BACKUP_SHA256_HEADER, s->sha256,
                     s->extra);
        }
        rv = tandem_node_stream_sized(node, s->r, "application/octet-stream", headers, s->size,
                                      stream_drain_cb, stream_closed_cb, s, &s->stream);
        if (rv != 0) {
            s->status = rv == UV_ENOTCONN ? 503 : 500;
            snprintf(s->errmsg, sizeof s->errmsg, "%s: %s", stream_what(s->plain), uv_strerror(rv));
        }
    }
    if (s->status != 0) {
        tandem_route_error(node, s->r, s->status, "%s", s->errmsg);
        s->r = NULL;
        s->closed = true;
        stream_release(s);
        return;
    }
    s->r = NULL; /* answered by the stream's head */
    s->progress_ms = uv_now(node->loop);
    s->started_ms = s->progress_ms;
    tandem_list_push_back(&node->backups.streams, &s->link);
    stream_pump(s);
}

static void file_removed_cb(uv_fs_t *fs)
{
    struct tandem_node *node = fs->data;
    uv_fs_req_cleanup(fs);
    free(fs);
    tandem_backups_work_end(node);
}

/* Removes a file taken for a download that will not be sent, on the thread pool (on the loop
 * only when even that cannot start). */
static void file_remove(struct tandem_node *node, const char *path)
{
    uv_fs_t *fs = malloc(sizeof *fs);
    if (fs != NULL) {
        fs->data = node;
        tandem_backups_work_begin(node);
        if (uv_fs_unlink(node->loop, fs, path, file_removed_cb) == 0) {
            return;
        }
        free(fs);
        tandem_backups_work_end(node);
    }
    (void)unlink(path);
}

static void stream_start(struct tandem_node *node, struct tandem_http_request *r, const char *path,
                         bool remove_after, const char *extra_headers, bool plain);

void tandem_backup_stream_start(struct tandem_node *node, struct tandem_http_request *r,
                                const char *path, bool remove_after, const char *extra_headers)
{
    stream_start(node, r, path, remove_after, extra_headers, false);
}

void tandem_file_stream_start(struct tandem_node *node, struct tandem_http_request *r,
                              const char *path, const char *extra_headers)
{
    stream_start(node, r, path, false, extra_headers, true);
}

static void stream_start(struct tandem_node *node, struct tandem_http_request *r, const char *path,
                         bool remove_after, const char *extra_headers, bool plain)
{
    struct backup_stream *s = NULL;
    if (node->backups.downloads >= TANDEM_BACKUP_DOWNLOADS_MAX || node->backups.closing) {
        tandem_route_json(
            node, r, 503, "Retry-After: 5\r\n",
            plain ? "{\"error\":\"this node sends as many files as it may at once\"}"
                  : "{\"error\":\"this node sends as many backups as it may at once\"}");
        goto err_remove;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL || (s->chunk = malloc(TANDEM_BACKUP_STREAM_CHUNK_BYTES)) == NULL) {
        free(s);
        tandem_route_error(node, r, 503, "%s: out of memory", stream_what(plain));
        goto err_remove;
    }
    s->node = node;
    s->r = r;
    s->fd = -1;
    s->remove_after = remove_after;
    s->plain = plain;
    s->head_only = r->method == HTTP_HEAD;
    snprintf(s->path, sizeof s->path, "%s", path);
    snprintf(s->extra, sizeof s->extra, "%s", extra_headers != NULL ? extra_headers : "");
    s->work.data = s;
    node->backups.downloads++;
    tandem_backups_work_begin(node);
    int rv = uv_queue_work(node->loop, &s->work, stream_open_work_cb, stream_open_after_cb);
    if (rv != 0) {
        tandem_route_error(node, r, 503, "%s: %s", stream_what(s->plain), uv_strerror(rv));
        s->closed = true;
        stream_release(s);
    }
    return;

err_remove:
    if (remove_after) {
        file_remove(node, path);
    }
}
