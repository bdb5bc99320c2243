/* tandemctl's streamed backup download (node/ctl/backup_download.h): libcurl's write callback
 * appends to FILE.part, which is synced, checked and linked into place. */
#include "node/ctl/backup_download.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/ctl/client.h"
#include "storage/backup_file.h"
#include "storage/error.h"
#include "storage/store.h"

#define REDIRECTS_MAX 3 /* a follower names the leader; more hops only while leadership moves */

/* Set by SIGINT, SIGTERM or SIGHUP during a download: the transfer stops, FILE.part goes. */
static volatile sig_atomic_t download_interrupted;

static void interrupted_handler(int signum)
{
    (void)signum;
    download_interrupted = 1;
}

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
#define STOP_SIGNALS (sizeof stop_signals / sizeof stop_signals[0])

void tandem_ctl_download_head_init(struct tandem_ctl_download_head *h)
{
    memset(h, 0, sizeof *h);
    h->index = -1;
    h->length = -1;
}

/* The value of line when it is the header name (case-insensitive), trimmed, into out; false
 * otherwise or when it does not fit. */
static bool head_value(const char *line, size_t len, const char *name, char *out, size_t size)
{
    size_t n = strlen(name);
    if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0) {
        return false;
    }
    const char *start = line + n + 1, *end = line + len;
    while (start < end && (*start == ' ' || *start == '\t')) {
        start++;
    }
    while (end > start && isspace((unsigned char)end[-1])) {
        end--;
    }
    if ((size_t)(end - start) >= size) {
        return false;
    }
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = '\0';
    return true;
}

static int64_t head_number(const char *text)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    return errno != 0 || end == text || *end != '\0' || v < 0 ? -1 : (int64_t)v;
}

void tandem_ctl_download_head_line(struct tandem_ctl_download_head *h, const char *line, size_t len)
{
    char value[TANDEM_CTL_DOWNLOAD_NAME_SIZE];
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        tandem_ctl_download_head_init(h); /* a new answer (after a redirect or 100 Continue) */
    } else if (head_value(line, len, "X-Tandem-Backup-Name", value, sizeof value)) {
        snprintf(h->name, sizeof h->name, "%s", value);
    } else if (head_value(line, len, "X-Tandem-Backup-Sha256", value, sizeof h->sha256)) {
        snprintf(h->sha256, sizeof h->sha256, "%s", value);
    } else if (head_value(line, len, "X-Tandem-Backup-State-Digest", value,
                          sizeof h->state_digest)) {
        snprintf(h->state_digest, sizeof h->state_digest, "%s", value);
    } else if (head_value(line, len, "X-Tandem-Backup-Index", value, sizeof value)) {
        h->index = head_number(value);
    } else if (head_value(line, len, "Content-Length", value, sizeof value)) {
        h->length = head_number(value);
    }
}

int tandem_ctl_download_base(const char *location, const char *answered_by, char *out,
                             size_t out_size)
{
    size_t scheme = strncmp(location, "https://", 8) == 0  ? 8
                    : strncmp(location, "http://", 7) == 0 ? 7
                                                           : 0;
    if (scheme == 7 && strncmp(answered_by, "https://", 8) == 0) {
        return -1; /* from TLS to plaintext: a bearer token would travel in clear */
    }
    const char *path = scheme > 0 ? strchr(location + scheme, '/') : NULL;
    if (path == NULL || path == location + scheme || strcmp(path, TANDEM_CTL_DOWNLOAD_PATH) != 0) {
        return -1;
    }
    for (const char *p = location; p < path; p++) {
        if ((unsigned char)*p <= ' ' || *p == '?' || *p == '#' || *p == '@') {
            return -1; /* no user info, no blanks: a member's base URL only */
        }
    }
    size_t len = (size_t)(path - location);
    if (len >= out_size) {
        return -1;
    }
    memcpy(out, location, len);
    out[len] = '\0';
    return 0;
}

int tandem_ctl_download_matches(const struct tandem_ctl_download_head *h,
                                const struct tandem_backup_manifest *m, const char *sha256_hex,
                                uint64_t size, char *why)
{
    char digest[2 * TANDEM_DIGEST_LEN + 1];
    tandem_digest_hex(m->state_digest, digest);
    if (h->length < 0 || (uint64_t)h->length != size) {
        snprintf(why, TANDEM_CTL_ERRMSG_SIZE, "%" PRIu64 " bytes received, %" PRId64 " announced",
                 size, h->length);
    } else if (strcasecmp(h->sha256, sha256_hex) != 0) {
        snprintf(why, TANDEM_CTL_ERRMSG_SIZE, "its SHA-256 is %s, the node announced '%.64s'",
                 sha256_hex, h->sha256);
    } else if (h->index >= 0 && (uint64_t)h->index != m->applied_index) {
        snprintf(why, TANDEM_CTL_ERRMSG_SIZE,
                 "its index is %" PRIu64 ", the node announced %" PRId64, m->applied_index,
                 h->index);
    } else if (h->state_digest[0] != '\0' && strcasecmp(h->state_digest, digest) != 0) {
        snprintf(why, TANDEM_CTL_ERRMSG_SIZE, "its state digest is %s, the node announced %.64s",
                 digest, h->state_digest);
    } else {
        return 0;
    }
    return -1;
}

/* ---- the transfer ---- */

struct part_file {
    int fd;
    uint64_t written;
    struct tandem_ctl_download_head head;
};

static int part_write(void *data, const char *bytes, size_t len)
{
    struct part_file *p = data;
    while (len > 0) {
        ssize_t n = write(p->fd, bytes, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? errno : EIO;
        }
        bytes += n;
        len -= (size_t)n;
        p->written += (uint64_t)n;
    }
    return 0;
}

static void part_header(void *data, const char *line, size_t len)
{
    struct part_file *p = data;
    tandem_ctl_download_head_line(&p->head, line, len);
}

/* POSTs the download, following one redirect to the leader. Returns a TANDEM_CTL_* code; on
 * TANDEM_CTL_OK the body is in p. */
static int transfer(struct tandem_ctl_context *ctx, struct part_file *p, const char *part)
{
    struct tandem_ctl_sink sink = {.write = part_write, .header = part_header, .data = p};
    struct tandem_ctl_request req = {"POST", TANDEM_CTL_DOWNLOAD_PATH, "{}", 2, "application/json"};
    struct tandem_ctl_response resp;
    char base[TANDEM_CTL_URL_MAX], reason[TANDEM_CTL_ERRMSG_SIZE];
    int rc = TANDEM_CTL_OK;
    tandem_ctl_response_init(&resp);
    resp.sink = &sink;
    for (int hop = 0; rc == TANDEM_CTL_OK; hop++) {
        rc = tandem_ctl_client_send(ctx->client, &req, &resp);
        if (download_interrupted) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "interrupted; nothing saved");
        } else if (sink.error != 0) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "writing %s: %s; nothing saved", part,
                                 strerror(sink.error));
        } else if (rc != TANDEM_CTL_OK) {
            rc = tandem_ctl_fail(ctx, rc, "%s%s", ctx->client->errmsg,
                                 p->written > 0 ? "; the transfer was cut, nothing saved" : "");
        } else if (resp.status == 307 && hop < REDIRECTS_MAX &&
                   tandem_ctl_download_base(resp.location, resp.endpoint, base, sizeof base) == 0) {
            if (tandem_ctl_client_prefer_add(ctx->client, base) != 0) {
                rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s", ctx->client->errmsg);
            }
            continue; /* the leader, first */
        } else if (resp.status < 200 || resp.status > 299) {
            tandem_ctl_response_reason(&resp, reason, sizeof reason);
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s (HTTP %ld)", reason, resp.status);
        }
        break;
    }
    tandem_ctl_response_free(&resp);
    return rc;
}

/* The SHA-256 in the last TANDEM_DIGEST_LEN bytes of the file (hex) and its size. */
static int trailer_read(int fd, char *hex, uint64_t *size, char *errmsg)
{
    uint8_t trailer[TANDEM_DIGEST_LEN];
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return tandem_error_from_errno(errno, errmsg, "stat");
    }
    *size = (uint64_t)st.st_size;
    if (*size < TANDEM_DIGEST_LEN ||
        pread(fd, trailer, sizeof trailer, st.st_size - TANDEM_DIGEST_LEN) != TANDEM_DIGEST_LEN) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "no trailer");
    }
    tandem_digest_hex(trailer, hex);
    return 0;
}

/* Syncs p, checks it at level 1 and against the head, then links it to out. */
static int part_keep(struct tandem_ctl_context *ctx, struct part_file *p, const char *part,
                     const char *out, struct tandem_backup_manifest *m)
{
    char errmsg[TANDEM_ERRMSG_SIZE], why[TANDEM_CTL_ERRMSG_SIZE], sha256[2 * TANDEM_DIGEST_LEN + 1];
    uint64_t size = 0;
    if (fsync(p->fd) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "fsync %s: %s", part, strerror(errno));
    }
    if (tandem_backup_verify(part, 1, NULL, 0, NULL, m, NULL, errmsg) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "the file received fails level 1: %s",
                               errmsg);
    }
    if (trailer_read(p->fd, sha256, &size, errmsg) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s: %s", part, errmsg);
    }
    if (tandem_ctl_download_matches(&p->head, m, sha256, size, why) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED,
                               "the file received is not the one sent: %s", why);
    }
    /* link refuses to replace a file that appeared meanwhile, as the check before did. */
    if (link(part, out) != 0) {
        return tandem_ctl_fail(ctx, errno == EEXIST ? TANDEM_CTL_EUSAGE : TANDEM_CTL_EREFUSED,
                               "--out %s: %s", out, strerror(errno));
    }
    tandem_store_fsync_parent(out);
    return TANDEM_CTL_OK;
}

int tandem_ctl_backup_download(struct tandem_ctl_context *ctx, const char *out, json_t **answer)
{
    char part[PATH_MAX];
    struct tandem_backup_manifest m;
    struct part_file p = {.fd = -1};
    tandem_ctl_download_head_init(&p.head);
    if ((size_t)snprintf(part, sizeof part, "%s" TANDEM_CTL_PART_SUFFIX, out) >= sizeof part) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--out %s: path too long", out);
    }
    p.fd = open(part, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (p.fd < 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s: %s%s", part, strerror(errno),
                               errno == EEXIST ? " (left by an earlier download? remove it)" : "");
    }
    struct sigaction stop = {.sa_handler = interrupted_handler}, before[STOP_SIGNALS];
    sigemptyset(&stop.sa_mask);
    download_interrupted = 0;
    for (size_t i = 0; i < STOP_SIGNALS; i++) {
        (void)sigaction(stop_signals[i], &stop, &before[i]);
    }
    long stall_s = ctx->client->stall_s;
    ctx->client->stall_s = TANDEM_CTL_DOWNLOAD_STALL_S;
    ctx->client->interrupted = &download_interrupted;
    int rc = transfer(ctx, &p, part);
    ctx->client->stall_s = stall_s;
    ctx->client->interrupted = NULL;
    rc = rc == TANDEM_CTL_OK && download_interrupted
             ? tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "interrupted; nothing saved")
             : rc;
    rc = rc == TANDEM_CTL_OK ? part_keep(ctx, &p, part, out, &m) : rc;
    if (close(p.fd) != 0 && rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "close %s: %s", part, strerror(errno));
        (void)unlink(out);
    }
    (void)unlink(part); /* kept as out, or nothing to keep */
    for (size_t i = 0; i < STOP_SIGNALS; i++) {
        (void)sigaction(stop_signals[i], &before[i], NULL);
    }
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    *answer =
        json_pack("{s:s,s:s,s:I,s:s,s:o}", "name", p.head.name, "node", m.node, "bytes",
                  (json_int_t)p.written, "out", out, "manifest", tandem_backup_manifest_json(&m));
    return *answer != NULL ? TANDEM_CTL_OK
                           : tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
}
