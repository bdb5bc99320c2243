/* The taker's side of the scheduled mutual backup: takes this node's backup (node/backup.h),
 * hashes it, ships it in chunks to each holder of the other site over the node-to-node HTTPS
 * channel, gives its manifest to the witnesses, then answers the leader with the record to
 * store. One take at a time per node. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/api/api.h"
#include "node/backup.h"
#include "node/backup_state.h"
#include "node/log.h"
#include "node/node.h"
#include "storage/assert.h"
#include "storage/background.h"
#include "storage/clock.h"
#include "storage/error.h"

struct ship_peer {
    char name[TANDEM_NAME_LEN_MAX + 1];
    char api[TANDEM_URL_LEN_MAX + 1];
    bool ok;
    char error[TANDEM_BACKUP_ERROR_LEN_MAX + 1];
};

struct tandem_backup_take {
    struct tandem_node *node;
    struct tandem_http_request *r; /* the leader's request, answered at the end */
    char id[TANDEM_BACKUP_ID_LEN_MAX + 1];
    char path[PATH_MAX];
    struct ship_peer holders[TANDEM_BACKUP_HOLDERS_MAX], witnesses[TANDEM_BACKUP_HOLDERS_MAX];
    unsigned n_holders, n_witnesses, current;
    struct tandem_backup_manifest manifest;
    char *manifest_json; /* owned */
    char sha256[2 * TANDEM_DIGEST_LEN + 1];
    uint64_t size, offset;
    size_t chunk_len, chunk_max;
    char *chunk; /* owned */
    uv_file fd;
    bool fd_open;
    uv_work_t work;
    uv_fs_t fs;
    struct tandem_httpc_request req;
    int rv;
    char errmsg[TANDEM_ERRMSG_SIZE];
};

const char *tandem_backup_take_id(const struct tandem_backup_take *t)
{
    return t->id;
}

static void take_free(struct tandem_backup_take *t)
{
    free(t->manifest_json);
    free(t->chunk);
    free(t);
}

/* ---- the end: the answer to the leader ---- */

static json_t *record_json(struct tandem_backup_take *t)
{
    char digest[2 * TANDEM_DIGEST_LEN + 1];
    json_t *holders = json_array(), *witnesses = json_array();
    const char *first = "";
    for (unsigned i = 0; i < t->n_holders; i++) {
        if (t->holders[i].ok) {
            json_array_append_new(holders, json_string(t->holders[i].name));
            first = first[0] == '\0' ? t->holders[i].name : first;
        }
    }
    for (unsigned i = 0; i < t->n_witnesses; i++) {
        if (t->witnesses[i].ok) {
            json_array_append_new(witnesses, json_string(t->witnesses[i].name));
        }
    }
    tandem_digest_hex(t->manifest.state_digest, digest);
    json_t *manifest = json_loads(t->manifest_json, 0, NULL);
    return json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s,s:I,s:o,s:o,s:i,s:s,s:o}", "id", t->id,
                     "site", t->node->self.site, "taken_by", t->node->self.name, "index",
                     (json_int_t)t->manifest.applied_index, "term", (json_int_t)t->manifest.term,
                     "size", (json_int_t)t->size, "sha256", t->sha256, "state_digest", digest,
                     "created_ms", (json_int_t)t->manifest.created_ms, "holders", holders,
                     "manifest_holders", witnesses, "verified_level", 1, "verified_by", first,
                     "manifest", manifest != NULL ? manifest : json_object());
}

static void finish_work(uv_work_t *work)
{
    struct tandem_backup_take *t = work->data;
    if (t->fd_open) {
        (void)close(t->fd);
    }
    (void)unlink(t->path); /* this site keeps no copy of its own backup */
}

static void finish_work_cb(uv_work_t *work)
{
    tandem_background_run(finish_work, work); /* storage/background.h */
}

static void finish_after_cb(uv_work_t *work, int status)
{
    struct tandem_backup_take *t = work->data;
    struct tandem_node *node = t->node;
    char errors[TANDEM_ERRMSG_SIZE] = "";
    size_t used = 0;
    bool any = false;
    (void)status;
    for (unsigned i = 0; i < t->n_holders; i++) {
        any |= t->holders[i].ok;
        if (!t->holders[i].ok && used < sizeof errors) {
            used += (size_t)snprintf(errors + used, sizeof errors - used, "%s%s: %s",
                                     used > 0 ? "; " : "", t->holders[i].name, t->holders[i].error);
        }
    }
    if (t->rv != 0) {
        node->backups.stats.take_failures++;
        tandem_route_error(node, t->r, 500, "backup %s: %s", t->id, t->errmsg);
    } else if (!any) {
        node->backups.stats.take_failures++;
        tandem_route_error(node, t->r, 502, "backup %s reached no holder: %s", t->id, errors);
    } else {
        node->backups.stats.taken++;
        if (errors[0] != '\0') {
            tandem_log(TANDEM_LOG_WARN, "backup %s: not kept everywhere: %s", t->id, errors);
        }
        tandem_route_jansson(node, t->r, 200, record_json(t));
    }
    node->backups.take = NULL;
    take_free(t);
    tandem_backups_work_end(node);
}

/* Closes the file and removes it on the thread pool, then answers. */
static void take_finish(struct tandem_backup_take *t)
{
    t->work.data = t;
    if (uv_queue_work(t->node->loop, &t->work, finish_work_cb, finish_after_cb) != 0) {
        finish_work_cb(&t->work); /* the pool refused: do it here rather than leak the file */
        finish_after_cb(&t->work, 0);
    }
}

/* ---- witnesses: the manifest only ---- */

static void witness_next(struct tandem_backup_take *t);

static void witness_cb(void *data, int status, int http_status, const char *body, size_t body_len)
{
    struct tandem_backup_take *t = data;
    struct ship_peer *w = &t->witnesses[t->current];
    w->ok = status == 0 && http_status == 200;
    snprintf(w->error, sizeof w->error, "%s %.*s", status != 0 ? uv_strerror(status) : "HTTP",
             (int)(body_len > 120 ? 120 : body_len), body != NULL ? body : "");
    t->current++;
    witness_next(t);
}

static void witness_next(struct tandem_backup_take *t)
{
    char target[128];
    while (t->current < t->n_witnesses) {
        struct ship_peer *w = &t->witnesses[t->current];
        snprintf(target, sizeof target, "/v1/node/backups/manifest?id=%s", t->id);
        int rv = tandem_bcp_call(&t->node->bcp, w->api, "POST", target, NULL, t->manifest_json,
                                 TANDEM_BACKUP_CALL_TIMEOUT_MS, witness_cb, t);
        if (rv == 0) {
            return;
        }
        snprintf(w->error, sizeof w->error, "%s", uv_strerror(rv));
        t->current++;
    }
    take_finish(t);
}

/* ---- holders: the file in chunks ---- */

static void holder_next(struct tandem_backup_take *t);
static void chunk_read(struct tandem_backup_take *t);

static void holder_done(struct tandem_backup_take *t, bool ok, const char *error)
{
    struct ship_peer *h = &t->holders[t->current];
    h->ok = ok;
    snprintf(h->error, sizeof h->error, "%s", error);
    if (!ok) {
        tandem_log(TANDEM_LOG_WARN, "backup %s: shipping to %s failed: %s", t->id, h->name, error);
    } else {
        t->node->backups.stats.shipped_bytes += t->size;
    }
    t->current++;
    holder_next(t);
}

static void upload_cb(struct tandem_httpc_request *req, int status,
                      const struct tandem_httpc_response *resp)
{
    struct tandem_backup_take *t = req->data;
    char error[TANDEM_BACKUP_ERROR_LEN_MAX + 1];
    if (status != 0 || resp == NULL || resp->status != 200) {
        json_t *body = resp != NULL ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
        const char *why = json_string_value(json_object_get(body, "error"));
        snprintf(error, sizeof error, "%s%s%s", status != 0 ? uv_strerror(status) : "refused",
                 why != NULL ? ": " : "", why != NULL ? why : "");
        json_decref(body);
        holder_done(t, false, error);
        return;
    }
    if (t->offset == t->size && t->chunk_len == 0) {
        holder_done(t, true, ""); /* the final request: checked and kept there */
        return;
    }
    t->offset += t->chunk_len;
    chunk_read(t);
}

/* Sends the chunk read (or, at the end of the file, the final request with the hash). */
static void chunk_send(struct tandem_backup_take *t)
{
    struct ship_peer *h = &t->holders[t->current];
    char target[256];
    if (t->chunk_len == 0) {
        snprintf(target, sizeof target,
                 "/v1/node/backups/upload?id=%s&offset=%" PRIu64 "&final=1&sha256=%s", t->id,
                 t->offset, t->sha256);
    } else {
        snprintf(target, sizeof target, "/v1/node/backups/upload?id=%s&offset=%" PRIu64, t->id,
                 t->offset);
    }
    t->req = (struct tandem_httpc_request){.data = t, .timeout_ms = TANDEM_BACKUP_CALL_TIMEOUT_MS};
    int rv = tandem_http_pool_send_node(&t->node->bcp.clients, h->api, h->name, &t->req, "POST",
                                        target, "Content-Type: application/octet-stream\r\n",
                                        t->chunk, t->chunk_len, upload_cb);
    if (rv != 0) {
        holder_done(t, false, uv_strerror(rv));
    }
}

static void read_cb(uv_fs_t *fs)
{
    struct tandem_backup_take *t = fs->data;
    ssize_t n = fs->result;
    uv_fs_req_cleanup(fs);
    if (n < 0) {
        holder_done(t, false, uv_strerror((int)n));
        return;
    }
    if (n == 0 && t->offset != t->size) {
        holder_done(t, false, "the backup file is shorter than when it was hashed");
        return;
    }
    t->chunk_len = (size_t)n;
    chunk_send(t);
}

static void chunk_read(struct tandem_backup_take *t)
{
    uv_buf_t buf = uv_buf_init(t->chunk, (unsigned)t->chunk_max);
    t->fs.data = t;
    int rv = uv_fs_read(t->node->loop, &t->fs, t->fd, &buf, 1, (int64_t)t->offset, read_cb);
    if (rv != 0) {
        holder_done(t, false, uv_strerror(rv));
    }
}

static void holder_next(struct tandem_backup_take *t)
{
    if (t->current < t->n_holders && !t->node->stopping) {
        t->offset = 0;
        chunk_read(t);
        return;
    }
    t->current = 0;
    witness_next(t);
}

/* ---- taking and hashing ---- */

/* On the thread pool: the file's size and SHA-256 (what the holders check), then it is opened
 * for the chunks. */
static void hash_work(uv_work_t *work)
{
    struct tandem_backup_take *t = work->data;
    t->rv = tandem_backup_file_sha256(t->path, t->sha256, &t->size, t->errmsg);
    if (t->rv == 0) {
        t->fd = open(t->path, O_RDONLY | O_CLOEXEC);
        t->rv = t->fd < 0 ? tandem_error_from_errno(errno, t->errmsg, t->path) : 0;
        t->fd_open = t->fd >= 0;
    }
}

static void hash_work_cb(uv_work_t *work)
{
    tandem_background_run(hash_work, work); /* storage/background.h */
}

static void hash_after_cb(uv_work_t *work, int status)
{
    struct tandem_backup_take *t = work->data;
    if (status != 0 && t->rv == 0) {
        t->rv = tandem_error_from_uv(status, t->errmsg, "hashing the backup");
    }
    if (t->rv != 0) {
        take_finish(t);
        return;
    }
    t->current = 0;
    holder_next(t);
}

static void taken_cb(void *data, int status, const struct tandem_backup_manifest *manifest,
                     const char *path, const char *errmsg)
{
    struct tandem_backup_take *t = data;
    (void)path;
    if (status != 0) {
        t->rv = status;
        snprintf(t->errmsg, sizeof t->errmsg, "%s", errmsg);
        take_finish(t);
        return;
    }
    t->manifest = *manifest;
    json_t *m = tandem_backup_manifest_json(manifest);
    t->manifest_json = m != NULL ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    t->work.data = t;
    int rv = t->manifest_json == NULL
                 ? UV_ENOMEM
                 : uv_queue_work(t->node->loop, &t->work, hash_work_cb, hash_after_cb);
    if (rv != 0) {
        t->rv = tandem_error_from_uv(rv, t->errmsg, "hashing the backup");
        take_finish(t);
    }
}

/* [{"name","api"}, ...] into peers. Returns 0 or -1. */
static int peers_parse(json_t *list, struct ship_peer *peers, unsigned *n)
{
    *n = 0;
    if (!json_is_array(list) || json_array_size(list) > TANDEM_BACKUP_HOLDERS_MAX) {
        return -1;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *name = json_string_value(json_object_get(json_array_get(list, i), "name"));
        const char *api = json_string_value(json_object_get(json_array_get(list, i), "api"));
        if (name == NULL || api == NULL || !tandem_member_name_ok(name, TANDEM_NAME_LEN_MAX) ||
            strlen(api) > TANDEM_URL_LEN_MAX) {
            return -1;
        }
        snprintf(peers[*n].name, sizeof peers[*n].name, "%s", name);
        snprintf(peers[*n].api, sizeof peers[*n].api, "%s", api);
        (*n)++;
    }
    return 0;
}

void tandem_backup_take_start(struct tandem_node *node, struct tandem_http_request *r,
                              const char *id, json_t *holders, json_t *witnesses)
{
    struct tandem_backup_take *t = calloc(1, sizeof *t);
    size_t chunk = (size_t)node->config->body_bytes_max_kib * 1024u;
    if (t == NULL || (t->chunk = malloc(TANDEM_BACKUP_CHUNK_BYTES_MAX)) == NULL) {
        free(t);
        tandem_route_error(node, r, 500, "out of memory");
        return;
    }
    t->chunk_max = chunk < TANDEM_BACKUP_CHUNK_BYTES_MAX ? chunk : TANDEM_BACKUP_CHUNK_BYTES_MAX;
    if (peers_parse(holders, t->holders, &t->n_holders) != 0 || t->n_holders == 0 ||
        peers_parse(witnesses, t->witnesses, &t->n_witnesses) != 0) {
        take_free(t);
        tandem_route_error(node, r, 400,
                           "\"holders\" (1 to %d) and \"witnesses\" must be lists of "
                           "{\"name\",\"api\"}",
                           TANDEM_BACKUP_HOLDERS_MAX);
        return;
    }
    if (node->backups.take != NULL || node->backups.closing) {
        take_free(t);
        tandem_route_error(node, r, 409, "%s is taking backup %s already", node->self.name,
                           node->backups.take != NULL ? node->backups.take->id : "");
        return;
    }
    t->node = node;
    t->r = r;
    snprintf(t->id, sizeof t->id, "%s", id);
    snprintf(t->path, sizeof t->path, "%.*s/" TANDEM_BACKUP_OUTGOING_DIR "/%s%s", PATH_MAX - 128,
             node->backups.dir, id, TANDEM_BACKUP_SUFFIX);
    char errmsg[TANDEM_ERRMSG_SIZE];
    int rv = tandem_node_backup_take(node, t->path, taken_cb, t, errmsg);
    if (rv != 0) {
        take_free(t);
        /* 503: a snapshot install is replacing the state (TANDEM_STATE), or the node stops. */
        tandem_route_error(node, r,
                           rv == TANDEM_BUSY                             ? 409
                           : rv == TANDEM_STATE || rv == TANDEM_SHUTDOWN ? 503
                                                                         : 500,
                           "%s", errmsg);
        return;
    }
    node->backups.take = t;
    tandem_backups_work_begin(node);
}
