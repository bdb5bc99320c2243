/* The holder's side of the scheduled mutual backup: receiving a backup in chunks, its level-1
 * check on arrival, a witness's manifests, the level-2 verification the leader asks for, and
 * the periodic check that every backup recorded as kept here still is (a missing one is
 * reported as lost; retired and forgotten ones are removed). File work runs on the thread
 * pool or as libuv file requests, never blocking the loop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/api/api.h"
#include "node/backup_state.h"
#include "node/log.h"
#include "node/node.h"
#include "replication/bcp/sites.h"
#include "replication/identity/backup_keys.h"
#include "storage/assert.h"
#include "storage/background.h"
#include "storage/backup.h"
#include "storage/clock.h"
#include "storage/error.h"

/* ---- small helpers ---- */

static void incoming_path(const char *dir, const char *id, char *out)
{
    snprintf(out, PATH_MAX, "%.*s/" TANDEM_BACKUP_INCOMING_DIR "/%s.part", PATH_MAX - 128, dir, id);
}

int tandem_backup_file_sha256(const char *path, char *hex, uint64_t *size, char *errmsg)
{
    uint8_t digest[TANDEM_DIGEST_LEN];
    char *buf = malloc(TANDEM_BACKUP_IO_CHUNK);
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    int fd = open(path, O_RDONLY | O_CLOEXEC), rv = 0;
    ssize_t n = 0;
    *size = 0;
    if (buf == NULL || sha == NULL || fd < 0 || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
        rv = fd < 0 ? tandem_error_from_errno(errno, errmsg, path)
                    : tandem_error_set(errmsg, TANDEM_NOMEM, "hashing %s: out of memory", path);
    }
    while (rv == 0 && (n = read(fd, buf, TANDEM_BACKUP_IO_CHUNK)) > 0) {
        *size += (uint64_t)n;
        rv = EVP_DigestUpdate(sha, buf, (size_t)n) == 1
                 ? 0
                 : tandem_error_set(errmsg, TANDEM_CRYPTO, "SHA-256 update");
    }
    if (rv == 0 && n < 0) {
        rv = tandem_error_from_errno(errno, errmsg, path);
    }
    if (rv == 0 && EVP_DigestFinal_ex(sha, digest, NULL) != 1) {
        rv = tandem_error_set(errmsg, TANDEM_CRYPTO, "SHA-256 final");
    }
    if (rv == 0) {
        tandem_digest_hex(digest, hex);
    }
    if (fd >= 0) {
        (void)close(fd);
    }
    EVP_MD_CTX_free(sha);
    free(buf);
    return rv;
}

/* Writes text to path through a temporary file, synced, then renamed. */
static int file_write_atomic(const char *path, const char *text, char *errmsg)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t len = strlen(text);
    if (fd < 0) {
        return tandem_error_from_errno(errno, errmsg, tmp);
    }
    bool ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    int saved = errno;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        (void)unlink(tmp);
        return tandem_error_from_errno(ok ? errno : saved, errmsg, path);
    }
    return 0;
}

static struct tandem_backup_upload *upload_find(struct tandem_backups *b, const char *id)
{
    for (unsigned i = 0; i < TANDEM_BACKUP_UPLOADS_MAX; i++) {
        if (b->uploads[i].used && strcmp(b->uploads[i].id, id) == 0) {
            return &b->uploads[i];
        }
    }
    return NULL;
}

static void upload_drop(struct tandem_node *node, struct tandem_backup_upload *u)
{
    char path[PATH_MAX];
    (void)close(u->fd); /* nothing to flush: the part is thrown away */
    incoming_path(node->backups.dir, u->id, path);
    (void)unlink(path);
    u->used = false;
}

/* ---- receiving: a chunk ---- */

struct chunk_write {
    uv_fs_t fs;
    struct tandem_node *node;
    struct tandem_http_request *r;
    struct tandem_backup_upload *u;
};

static void chunk_written_cb(uv_fs_t *fs)
{
    struct chunk_write *w = fs->data;
    struct tandem_node *node = w->node;
    struct tandem_backup_upload *u = w->u;
    ssize_t n = fs->result;
    uv_fs_req_cleanup(fs);
    u->busy = false;
    if (n != (ssize_t)w->r->body_len) {
        char errmsg[TANDEM_ERRMSG_SIZE];
        tandem_error_from_uv(n < 0 ? (int)n : UV_EIO, errmsg, "writing the backup");
        upload_drop(node, u);
        tandem_route_error(node, w->r, 507, "%s", errmsg);
    } else {
        u->offset += (uint64_t)n;
        u->last_ms = uv_now(node->loop);
        node->backups.stats.received_bytes += (uint64_t)n;
        tandem_route_jansson(node, w->r, 200, json_pack("{s:I}", "offset", (json_int_t)u->offset));
    }
    free(w);
    tandem_backups_work_end(node);
}

/* The upload slot for id at offset: a new one at offset 0 (an earlier one restarts). Returns it,
 * or NULL after answering r. */
static struct tandem_backup_upload *upload_slot(struct tandem_node *node,
                                                struct tandem_http_request *r, const char *id,
                                                uint64_t offset)
{
    struct tandem_backups *b = &node->backups;
    struct tandem_backup_upload *u = upload_find(b, id);
    char path[PATH_MAX];
    if (u != NULL && u->busy) {
        tandem_route_error(node, r, 409, "backup %s: a chunk is being written already", id);
        return NULL;
    }
    if (offset != 0) {
        if (u == NULL || u->offset != offset) {
            tandem_route_jansson(node, r, 409,
                                 json_pack("{s:s,s:I}", "error",
                                           "offset is not where the upload stands", "expected",
                                           (json_int_t)(u != NULL ? u->offset : 0)));
            return NULL;
        }
        return u;
    }
    if (u != NULL) {
        upload_drop(node, u);
    }
    for (unsigned i = 0; u == NULL && i < TANDEM_BACKUP_UPLOADS_MAX; i++) {
        u = b->uploads[i].used ? NULL : &b->uploads[i];
    }
    if (u == NULL) {
        tandem_route_error(node, r, 503, "%d backups are arriving already",
                           TANDEM_BACKUP_UPLOADS_MAX);
        return NULL;
    }
    incoming_path(b->dir, id, path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        tandem_route_error(node, r, 507, "%s: %s", path, strerror(errno));
        return NULL;
    }
    *u = (struct tandem_backup_upload){.used = true, .fd = fd, .last_ms = uv_now(node->loop)};
    snprintf(u->id, sizeof u->id, "%s", id);
    return u;
}

static void chunk_write(struct tandem_node *node, struct tandem_http_request *r,
                        struct tandem_backup_upload *u)
{
    struct chunk_write *w = calloc(1, sizeof *w);
    uv_buf_t buf = uv_buf_init((char *)r->body, (unsigned)r->body_len);
    if (w == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        return;
    }
    *w = (struct chunk_write){.node = node, .r = r, .u = u};
    w->fs.data = w;
    int rv = uv_fs_write(node->loop, &w->fs, u->fd, &buf, 1, (int64_t)u->offset, chunk_written_cb);
    if (rv != 0) {
        free(w);
        tandem_route_error(node, r, 500, "writing the backup: %s", uv_strerror(rv));
        return;
    }
    u->busy = true;
    tandem_backups_work_begin(node);
}

/* ---- receiving: the end, checked at level 1 and kept ---- */

struct arrival {
    uv_work_t work;
    struct tandem_node *node;
    struct tandem_http_request *r;
    struct tandem_backup_upload *u;
    char id[TANDEM_BACKUP_ID_LEN_MAX + 1];
    char dir[PATH_MAX];
    char sha256[2 * TANDEM_DIGEST_LEN + 1];
    uv_file fd;
    struct tandem_backup_manifest manifest;
    enum tandem_backup_part damaged;
    int rv, status;
    char errmsg[TANDEM_ERRMSG_SIZE];
};

/* On the thread pool: sync and close the part, compare its hash with the taker's, check it at
 * level 1, then move it into kept/ with its manifest beside it. */
static void arrival_work(uv_work_t *work)
{
    struct arrival *a = work->data;
    char part[PATH_MAX], path[PATH_MAX], manifest_path[PATH_MAX], hex[2 * TANDEM_DIGEST_LEN + 1];
    uint64_t size = 0;
    incoming_path(a->dir, a->id, part);
    bool synced = fsync(a->fd) == 0;
    int saved = errno;
    a->status = 422;
    if (close(a->fd) != 0 || !synced) {
        a->rv = tandem_error_from_errno(synced ? errno : saved, a->errmsg, part);
        a->status = 507;
    } else if ((a->rv = tandem_backup_file_sha256(part, hex, &size, a->errmsg)) == 0 &&
               strcmp(hex, a->sha256) != 0) {
        a->rv = tandem_error_set(a->errmsg, TANDEM_CORRUPT,
                                 "the file's SHA-256 %s is not the taker's %s", hex, a->sha256);
    } else if (a->rv == 0) {
        a->rv = tandem_backup_verify(part, 1, NULL, 0, NULL, &a->manifest, &a->damaged, a->errmsg);
    }
    if (a->rv == 0) {
        json_t *m = tandem_backup_manifest_json(&a->manifest);
        char *text = m != NULL ? json_dumps(m, JSON_COMPACT) : NULL;
        json_decref(m);
        tandem_backup_path(a->dir, a->id, false, path);
        tandem_backup_path(a->dir, a->id, true, manifest_path);
        a->status = 507;
        a->rv = text == NULL ? tandem_error_set(a->errmsg, TANDEM_NOMEM, "out of memory")
                : rename(part, path) != 0 ? tandem_error_from_errno(errno, a->errmsg, path)
                                          : file_write_atomic(manifest_path, text, a->errmsg);
        free(text);
    }
    if (a->rv != 0) {
        (void)unlink(part);
    }
}

static void arrival_work_cb(uv_work_t *work)
{
    tandem_background_run(arrival_work, work); /* storage/background.h */
}

static void arrival_after_cb(uv_work_t *work, int status)
{
    struct arrival *a = work->data;
    struct tandem_node *node = a->node;
    (void)status;
    a->u->used = false;
    a->u->busy = false;
    if (a->rv != 0) {
        node->backups.stats.arrival_refused++;
        tandem_log(TANDEM_LOG_ERROR, "backup %s refused on arrival: %s%s%s", a->id, a->errmsg,
                   a->damaged != TANDEM_BACKUP_PART_NONE ? ", damaged part " : "",
                   a->damaged != TANDEM_BACKUP_PART_NONE ? tandem_backup_part_name(a->damaged)
                                                         : "");
        tandem_route_jansson(node, a->r, a->status,
                             json_pack("{s:s,s:s}", "error", a->errmsg, "part",
                                       tandem_backup_part_name(a->damaged)));
    } else {
        node->backups.stats.received++;
        tandem_log(TANDEM_LOG_INFO, "backup %s of %s kept (index %" PRIu64 ", level 1 checked)",
                   a->id, a->manifest.site, a->manifest.applied_index);
        tandem_route_jansson(node, a->r, 200,
                             json_pack("{s:s,s:i,s:o}", "id", a->id, "verified_level", 1,
                                       "manifest", tandem_backup_manifest_json(&a->manifest)));
    }
    free(a);
    tandem_backups_work_end(node);
}

static void upload_final(struct tandem_node *node, struct tandem_http_request *r,
                         struct tandem_backup_upload *u, const char *sha256)
{
    struct arrival *a = calloc(1, sizeof *a);
    if (a == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        return;
    }
    *a = (struct arrival){.node = node, .r = r, .u = u, .fd = u->fd};
    snprintf(a->id, sizeof a->id, "%s", u->id);
    snprintf(a->dir, sizeof a->dir, "%s", node->backups.dir);
    snprintf(a->sha256, sizeof a->sha256, "%s", sha256);
    a->work.data = a;
    if (uv_queue_work(node->loop, &a->work, arrival_work_cb, arrival_after_cb) != 0) {
        free(a);
        tandem_route_error(node, r, 503, "the thread pool refused the check");
        return;
    }
    u->busy = true; /* the fd belongs to the check now */
    tandem_backups_work_begin(node);
}

/* Whether this node's site is a witness (the replicated site table says; its name when the
 * table cannot be read or does not list the site yet). */
static bool self_witness(struct tandem_node *node)
{
    struct tandem_site_table *t = tandem_bcp_table_load(&node->bcp);
    const struct tandem_site *s = t == NULL ? NULL : tandem_site_table_find(t, node->self.site);
    bool witness = s != NULL ? s->witness : strcmp(node->self.site, TANDEM_SITE_WITNESS_NAME) == 0;
    free(t);
    return witness;
}

void tandem_backup_upload(struct tandem_node *node, struct tandem_http_request *r, const char *id,
                          uint64_t offset, bool final, const char *sha256)
{
    uint64_t size_max =
        ((uint64_t)node->config->map_size_mib << 20) + TANDEM_BACKUP_FILE_SLACK_BYTES;
    if (offset == 0 && self_witness(node)) {
        tandem_route_error(node, r, 409, "%s is a witness: it keeps manifests only",
                           node->self.name);
        return;
    }
    if (final && (r->body_len != 0 || sha256 == NULL || strlen(sha256) != 2 * TANDEM_DIGEST_LEN)) {
        tandem_route_error(node, r, 400, "the final request has no body and a 64-digit sha256");
        return;
    }
    if (offset + r->body_len > size_max) {
        tandem_route_error(node, r, 413,
                           "a backup is at most %" PRIu64 " bytes here (map_size_mib)", size_max);
        return;
    }
    if (node->backups.closing) {
        tandem_route_error(node, r, 503, "%s is stopping", node->self.name);
        return;
    }
    struct tandem_backup_upload *u = upload_slot(node, r, id, offset);
    if (u == NULL) {
        return; /* answered */
    }
    if (final) {
        upload_final(node, r, u, sha256);
    } else {
        chunk_write(node, r, u);
    }
}

/* ---- a witness's manifest, and the level-2 verification ---- */

struct keep_job {
    uv_work_t work;
    struct tandem_node *node;
    struct tandem_http_request *r;
    char id[TANDEM_BACKUP_ID_LEN_MAX + 1];
    char dir[PATH_MAX];
    char key_file[PATH_MAX];
    char *text; /* owned: the manifest to keep */
    int level;
    bool absent; /* no file of the backup here */
    struct tandem_backup_manifest manifest;
    enum tandem_backup_part damaged;
    int rv;
    char errmsg[TANDEM_ERRMSG_SIZE];
};

static struct keep_job *keep_job_new(struct tandem_node *node, struct tandem_http_request *r,
                                     const char *id)
{
    struct keep_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        return NULL;
    }
    j->node = node;
    j->r = r;
    j->work.data = j;
    snprintf(j->id, sizeof j->id, "%s", id);
    snprintf(j->dir, sizeof j->dir, "%s", node->backups.dir);
    snprintf(j->key_file, sizeof j->key_file, "%s", node->config->backup_key_file);
    return j;
}

static void keep_job_queue(struct keep_job *j, uv_work_cb work_cb, uv_after_work_cb after_cb)
{
    if (uv_queue_work(j->node->loop, &j->work, work_cb, after_cb) != 0) {
        tandem_route_error(j->node, j->r, 503, "the thread pool refused the work");
        free(j->text);
        free(j);
        return;
    }
    tandem_backups_work_begin(j->node);
}

static void manifest_work(uv_work_t *work)
{
    struct keep_job *j = work->data;
    char path[PATH_MAX];
    tandem_backup_path(j->dir, j->id, true, path);
    j->rv = file_write_atomic(path, j->text, j->errmsg);
}

static void manifest_work_cb(uv_work_t *work)
{
    tandem_background_run(manifest_work, work); /* storage/background.h */
}

static void keep_after_cb(uv_work_t *work, int status)
{
    struct keep_job *j = work->data;
    struct tandem_node *node = j->node;
    (void)status;
    if (j->rv == 0) {
        json_t *m = tandem_backup_manifest_json(&j->manifest);
        tandem_route_jansson(node, j->r, 200,
                             json_pack("{s:s,s:i,s:o}", "id", j->id, "level", j->level, "manifest",
                                       m != NULL ? m : json_null()));
    } else {
        /* 404 and 422 say the copy is gone or damaged; anything else (no key, I/O) is not. */
        int code = j->absent ? 404 : j->rv == TANDEM_CORRUPT ? 422 : 500;
        tandem_route_jansson(node, j->r, code,
                             json_pack("{s:s,s:s}", "error", j->errmsg, "part",
                                       tandem_backup_part_name(j->damaged)));
    }
    free(j->text);
    free(j);
    tandem_backups_work_end(node);
}

void tandem_backup_manifest_keep(struct tandem_node *node, struct tandem_http_request *r,
                                 const char *id)
{
    struct tandem_backup_manifest m;
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (tandem_backup_manifest_parse(r->body, r->body_len, &m, errmsg) != 0) {
        tandem_route_error(node, r, 400, "not a backup manifest: %s", errmsg);
        return;
    }
    struct keep_job *j = keep_job_new(node, r, id);
    if (j == NULL) {
        return;
    }
    j->manifest = m;
    j->text = strndup(r->body, r->body_len);
    if (j->text == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        free(j);
        return;
    }
    keep_job_queue(j, manifest_work_cb, keep_after_cb);
}

/* On the thread pool: the file kept here, checked at level (2: unpacked into a scratch
 * directory beside it, opened and its digests recomputed). */
static void verify_work(uv_work_t *work)
{
    struct keep_job *j = work->data;
    struct tandem_backup_key keys[TANDEM_BACKUP_KEYS_MAX];
    unsigned n_keys = 0;
    char path[PATH_MAX], scratch[PATH_MAX];
    struct stat st;
    tandem_backup_path(j->dir, j->id, false, path);
    if (stat(path, &st) != 0) {
        j->absent = true;
        j->rv = tandem_error_set(j->errmsg, TANDEM_NOTFOUND, "%s keeps no file of backup %s",
                                 j->node->self.name, j->id);
        return;
    }
    snprintf(scratch, sizeof scratch, "%.*s/" TANDEM_BACKUP_INCOMING_DIR "/verify-%s",
             PATH_MAX - 128, j->dir, j->id);
    j->rv = tandem_backup_keys_load(j->key_file, keys, &n_keys, j->errmsg);
    if (j->rv == 0 && mkdir(scratch, 0700) != 0 && errno != EEXIST) {
        j->rv = tandem_error_from_errno(errno, j->errmsg, scratch);
    }
    if (j->rv == 0) {
        j->rv = tandem_backup_verify(path, j->level, keys, n_keys, scratch, &j->manifest,
                                     &j->damaged, j->errmsg);
        (void)rmdir(scratch);
    }
    OPENSSL_cleanse(keys, sizeof keys);
}

static void verify_work_cb(uv_work_t *work)
{
    tandem_background_run(verify_work, work); /* storage/background.h */
}

void tandem_backup_verify_local(struct tandem_node *node, struct tandem_http_request *r,
                                const char *id, int level)
{
    struct keep_job *j = keep_job_new(node, r, id);
    if (j != NULL) {
        j->level = level;
        keep_job_queue(j, verify_work_cb, keep_after_cb);
    }
}

/* ---- the holder's periodic check ---- */

enum check_what { CHECK_KEEP, CHECK_REMOVE };

struct check_item {
    char id[TANDEM_BACKUP_ID_LEN_MAX + 1];
    char site[TANDEM_SITE_LEN_MAX + 1];
    enum check_what what;
    uint64_t size;
    bool problem;
    char reason[TANDEM_BACKUP_REASON_LEN_MAX + 1];
};

struct check_job {
    uv_work_t work;
    struct tandem_node *node;
    char dir[PATH_MAX];
    struct check_item items[TANDEM_BACKUP_RECORDS_MAX];
    unsigned n;
    /* every recorded id (tombstones too) and the uploads in flight: the sweep spares them */
    char known[TANDEM_BACKUP_RECORDS_MAX + TANDEM_BACKUP_UPLOADS_MAX + 1]
              [TANDEM_BACKUP_ID_LEN_MAX + 1];
    unsigned n_known;
    int64_t grace_ms, now_ms;
    unsigned removed;
};

struct check_gather {
    struct check_job *job;
    const char *self;
};

static int check_visit(void *arg, const Tandem__BackupRecord *r)
{
    struct check_gather *g = arg;
    struct check_job *j = g->job;
    bool holder = tandem_backup_holds(r, g->self), witness = false;
    for (size_t i = 0; i < r->n_manifest_holders; i++) {
        witness |= strcmp(r->manifest_holders[i], g->self) == 0;
    }
    if (j->n_known < TANDEM_BACKUP_RECORDS_MAX) {
        snprintf(j->known[j->n_known++], TANDEM_BACKUP_ID_LEN_MAX + 1, "%s", r->id);
    }
    if ((!holder && !witness) || j->n == TANDEM_BACKUP_RECORDS_MAX ||
        (r->retired_ms == 0 && (!holder || tandem_backup_lost_at(r, g->self)))) {
        return 0; /* not ours, or a loss recorded already */
    }
    struct check_item *item = &j->items[j->n++];
    memset(item, 0, sizeof *item);
    snprintf(item->id, sizeof item->id, "%s", r->id);
    snprintf(item->site, sizeof item->site, "%s", r->site);
    item->what = r->retired_ms != 0 ? CHECK_REMOVE : CHECK_KEEP;
    item->size = r->size;
    return 0;
}

static bool known_id(const struct check_job *j, const char *name, size_t id_len)
{
    for (unsigned i = 0; i < j->n_known; i++) {
        if (strlen(j->known[i]) == id_len && strncmp(j->known[i], name, id_len) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether name is "<id>.<anything>" of a known id (ids may hold dots themselves). */
static bool file_of_known(const struct check_job *j, const char *name)
{
    for (const char *dot = strchr(name, '.'); dot != NULL; dot = strchr(dot + 1, '.')) {
        if (known_id(j, name, (size_t)(dot - name))) {
            return true;
        }
    }
    return false;
}

/* Removes files of sub (kept/, incoming/ or outgoing/) that belong to no record and no upload
 * and are older than the grace period: shipped but never recorded, or left by a crash. */
static void sweep(struct check_job *j, const char *sub)
{
    char folder[PATH_MAX], path[PATH_MAX + 256];
    snprintf(folder, sizeof folder, "%.*s/%s", PATH_MAX - 64, j->dir, sub);
    DIR *d = opendir(folder);
    struct dirent *e;
    for (unsigned n = 0; d != NULL && (e = readdir(d)) != NULL && n < 4 * TANDEM_BACKUP_RECORDS_MAX;
         n++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", folder, e->d_name);
        if (e->d_name[0] == '.' || file_of_known(j, e->d_name) || lstat(path, &st) != 0 ||
            !S_ISREG(st.st_mode) || j->now_ms - (int64_t)st.st_mtime * 1000 < j->grace_ms) {
            continue;
        }
        if (unlink(path) == 0) {
            j->removed++;
        }
    }
    if (d != NULL) {
        closedir(d);
    }
}

static void check_work(uv_work_t *work)
{
    struct check_job *j = work->data;
    char path[PATH_MAX];
    for (unsigned i = 0; i < j->n; i++) {
        struct check_item *item = &j->items[i];
        struct stat st;
        tandem_backup_path(j->dir, item->id, false, path);
        if (item->what == CHECK_REMOVE) {
            j->removed += unlink(path) == 0 ? 1 : 0;
            tandem_backup_path(j->dir, item->id, true, path);
            (void)unlink(path);
        } else if (stat(path, &st) != 0) {
            item->problem = true;
            snprintf(item->reason, sizeof item->reason, "%s: %s", path, strerror(errno));
        } else if ((uint64_t)st.st_size != item->size) {
            item->problem = true;
            snprintf(item->reason, sizeof item->reason, "%s holds %lld bytes, %" PRIu64 " recorded",
                     path, (long long)st.st_size, item->size);
        }
    }
    sweep(j, TANDEM_BACKUP_KEPT_DIR);
    sweep(j, TANDEM_BACKUP_INCOMING_DIR);
    sweep(j, TANDEM_BACKUP_OUTGOING_DIR);
}

static void check_work_cb(uv_work_t *work)
{
    tandem_background_run(check_work, work); /* storage/background.h */
}

static bool reported(struct tandem_backups *b, const char *id)
{
    for (unsigned i = 0; i < b->n_reported; i++) {
        if (strcmp(b->reported[i], id) == 0) {
            return true;
        }
    }
    return false;
}

static void report_cb(void *data, int status, int http_status, const char *body, size_t body_len)
{
    struct tandem_node *node = data;
    tandem_backups_work_end(node);
    if (status != 0 || http_status != 200) {
        tandem_log(TANDEM_LOG_WARN, "reporting a lost backup: %s %.*s",
                   status != 0 ? uv_strerror(status) : "refused",
                   (int)(body_len > 200 ? 200 : body_len), body != NULL ? body : "");
    }
}

/* Tells the leader (retried at every check until the record shows it); the event and the
 * error line come once per loss. */
static void loss_report(struct tandem_node *node, const struct check_item *item)
{
    struct tandem_backups *b = &node->backups;
    struct tandem_member leader;
    if (!reported(b, item->id)) {
        tandem_log(TANDEM_LOG_ERROR, "backup %s of %s kept here is lost: %s", item->id, item->site,
                   item->reason);
        tandem_events_emit(&node->events, "backup_lost", item->site,
                           "backup %s of %s kept at %s is lost: %s", item->id, item->site,
                           node->self.name, item->reason);
        b->stats.lost_reported++;
        if (b->n_reported < TANDEM_BACKUP_REPORTED_MAX) {
            snprintf(b->reported[b->n_reported++], TANDEM_BACKUP_ID_LEN_MAX + 1, "%s", item->id);
        }
    }
    json_t *body =
        json_pack("{s:s,s:s,s:s}", "id", item->id, "node", node->self.name, "reason", item->reason);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text != NULL && tandem_raft_leader(&node->raft, &leader) == 0 &&
        tandem_bcp_call(&node->bcp, leader.api, "POST", "/v1/node/backups/report", NULL, text,
                        TANDEM_BACKUP_CALL_TIMEOUT_MS, report_cb, node) == 0) {
        tandem_backups_work_begin(node);
    }
    free(text);
}

static void check_after_cb(uv_work_t *work, int status)
{
    struct check_job *j = work->data;
    struct tandem_node *node = j->node;
    struct tandem_backups *b = &node->backups;
    (void)status;
    b->check_inflight = false;
    b->stats.removed += j->removed;
    /* A loss stays in the reported list while this check still finds it. */
    unsigned kept = 0;
    for (unsigned i = 0; i < b->n_reported; i++) {
        bool still = false;
        for (unsigned k = 0; k < j->n && !still; k++) {
            still = j->items[k].problem && strcmp(j->items[k].id, b->reported[i]) == 0;
        }
        if (still) {
            memmove(b->reported[kept++], b->reported[i], TANDEM_BACKUP_ID_LEN_MAX + 1);
        }
    }
    b->n_reported = kept;
    for (unsigned i = 0; !node->stopping && i < j->n; i++) {
        if (j->items[i].problem) {
            loss_report(node, &j->items[i]);
        }
    }
    free(j);
    tandem_backups_work_end(node);
}

/* Uploads silent for backup_timeout_s are dropped (the taker gave up on them). */
static void uploads_expire(struct tandem_node *node, struct check_job *j)
{
    uint64_t now = uv_now(node->loop), timeout = (uint64_t)node->config->backup_timeout_s * 1000u;
    for (unsigned i = 0; i < TANDEM_BACKUP_UPLOADS_MAX; i++) {
        struct tandem_backup_upload *u = &node->backups.uploads[i];
        if (u->used && !u->busy && now - u->last_ms > timeout) {
            tandem_log(TANDEM_LOG_WARN, "backup %s: upload silent for %u s, dropped", u->id,
                       node->config->backup_timeout_s);
            upload_drop(node, u);
        } else if (u->used) {
            snprintf(j->known[j->n_known++], TANDEM_BACKUP_ID_LEN_MAX + 1, "%s", u->id);
        }
    }
    if (node->backups.take != NULL) {
        snprintf(j->known[j->n_known++], TANDEM_BACKUP_ID_LEN_MAX + 1, "%s",
                 tandem_backup_take_id(node->backups.take));
    }
}

void tandem_backups_holder_check(struct tandem_node *node)
{
    struct tandem_backups *b = &node->backups;
    MDB_txn *txn;
    if (b->check_inflight || b->closing) {
        return;
    }
    struct check_job *j = calloc(1, sizeof *j);
    if (j == NULL || tandem_store_read_txn(&node->store, &txn) != 0) {
        free(j);
        return;
    }
    struct check_gather g = {j, node->self.name};
    int rv = tandem_backups_walk(&node->store, txn, check_visit, &g);
    mdb_txn_abort(txn);
    if (rv != 0) {
        tandem_log(TANDEM_LOG_WARN, "backup check: %s", node->store.errmsg);
        free(j);
        return;
    }
    j->node = node;
    j->work.data = j;
    j->now_ms = tandem_wall_ms();
    j->grace_ms = 2 * (int64_t)node->config->backup_timeout_s * 1000;
    snprintf(j->dir, sizeof j->dir, "%s", b->dir);
    uploads_expire(node, j);
    if (uv_queue_work(node->loop, &j->work, check_work_cb, check_after_cb) != 0) {
        free(j);
        return;
    }
    b->check_inflight = true;
    tandem_backups_work_begin(node);
}
