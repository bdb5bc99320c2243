/* The backups resource (issue 14): POST /v1/backups takes a backup at a leader-confirmed index
 * (after the read barrier, on the leader; followers forward), GET /v1/backups/<name> downloads
 * one of this node's backup files. The taking itself is node/backup.c's. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/api/api.h"
#include "node/backup.h"
#include "node/node.h"
#include "storage/backup_file.h"
#include "storage/error.h"

/* X(id, method, pattern, flags, perm, handler): ids are metrics labels, in this order. */
#define BACKUP_ROUTES(X)                                                                           \
    X(backups_create, HTTP_POST, "/v1/backups", TANDEM_ROUTE_READ, TANDEM_PERM_BACKUP,             \
      route_backups_create)                                                                        \
    X(backups_download, HTTP_GET, "/v1/backups/", TANDEM_ROUTE_LOCAL | TANDEM_ROUTE_PREFIX,        \
      TANDEM_PERM_BACKUP, route_backups_download)

TANDEM_ROUTE_TABLE(tandem_backups_route_table, BACKUP_ROUTES);

static const char *file_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

static void backup_done_cb(void *data, int status, const struct tandem_backup_manifest *manifest,
                           const char *path, const char *errmsg)
{
    struct tandem_http_request *r = data;
    struct tandem_node *node = r->server->data;
    struct stat st;
    if (node->stopping) {
        return; /* the server is closing with its requests */
    }
    if (status != 0) {
        tandem_route_error(node, r, 500, "backup failed: %s", errmsg);
        return;
    }
    json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:I,s:o}", "name", file_name(path), "path", path,
                             "node", node->self.name, "api", node->self.api, "bytes",
                             (json_int_t)(stat(path, &st) == 0 ? st.st_size : 0), "manifest",
                             tandem_backup_manifest_json(manifest));
    tandem_route_jansson(node, r, 201, body);
}

/* Runs after this loop iteration's raft barrier on the leader: everything acknowledged before
 * the request is applied, and the copy holds at least that. */
static void backup_serve(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    (void)arg;
    int rv = tandem_node_backup_take(node, NULL, backup_done_cb, r, errmsg);
    if (rv == TANDEM_BUSY) {
        tandem_route_error(node, r, 409, "%s", errmsg);
    } else if (rv != 0) {
        tandem_route_error(node, r, rv == TANDEM_SHUTDOWN ? 503 : 500, "%s", errmsg);
    }
}

static void route_backups_create(struct tandem_node *node, struct tandem_http_request *r,
                                 const char *p)
{
    static const struct tandem_route_field fields[] = {TANDEM_FIELDS_END};
    char why[TANDEM_ERRMSG_SIZE];
    json_error_t jerr;
    (void)p;
    json_t *body = r->body_len == 0 ? json_object() : json_loadb(r->body, r->body_len, 0, &jerr);
    int bad = !json_is_object(body) || tandem_route_fields_check(body, fields, why) != 0;
    if (!json_is_object(body)) {
        snprintf(why, sizeof why, "the body must be a JSON object (or empty)");
    }
    json_decref(body);
    if (bad) {
        tandem_route_error(node, r, 400, "%s", why);
        return;
    }
    if (tandem_route_local(r)) {
        tandem_route_error(node, r, 400,
                           "a backup is taken at a leader-confirmed index: "
                           "consistency=local is not accepted");
        return;
    }
    tandem_route_read(node, r, backup_serve, NULL, NULL);
}

/* A download: the file is read on the thread pool, never on the loop. */
struct download {
    uv_work_t work;
    struct tandem_node *node;      /* borrowed */
    struct tandem_http_request *r; /* borrowed: answered once */
    char path[PATH_MAX];
    char *bytes; /* owned */
    size_t len;
    int status; /* HTTP status */
    char errmsg[TANDEM_ERRMSG_SIZE];
};

static void download_work_cb(uv_work_t *work)
{
    struct download *d = work->data;
    struct stat st;
    int fd = open(d->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        d->status = errno == ENOENT ? 404 : 500;
        tandem_error_from_errno(errno, d->errmsg, "backup");
    } else if ((uint64_t)st.st_size > TANDEM_BACKUP_DOWNLOAD_BYTES_MAX) {
        d->status = 413;
        snprintf(d->errmsg, sizeof d->errmsg,
                 "backup is %lld bytes, over the %zu a download may hold: copy it from backup_dir",
                 (long long)st.st_size, TANDEM_BACKUP_DOWNLOAD_BYTES_MAX);
    } else if ((d->bytes = malloc((size_t)st.st_size + 1)) == NULL) {
        d->status = 503;
        snprintf(d->errmsg, sizeof d->errmsg, "out of memory");
    } else {
        d->len = (size_t)st.st_size;
        int rv = tandem_backup_read_full(fd, d->bytes, d->len, "backup", d->errmsg);
        d->status = rv == 0 ? 200 : 500;
    }
    if (fd >= 0) {
        close(fd);
    }
}

static void download_after_cb(uv_work_t *work, int status)
{
    struct download *d = work->data;
    if (!d->node->stopping) {
        if (status != 0 || d->status != 200) {
            tandem_route_error(d->node, d->r, status != 0 ? 500 : d->status, "%s", d->errmsg);
        } else {
            tandem_node_respond(d->node, d->r, 200, "application/octet-stream", NULL, d->bytes,
                                d->len);
        }
    }
    free(d->bytes);
    free(d);
}

static void route_backups_download(struct tandem_node *node, struct tandem_http_request *r,
                                   const char *name)
{
    if (!tandem_node_backup_name_ok(name)) {
        tandem_route_error(node, r, 400, "not a backup file name: '%.100s'", name);
        return;
    }
    struct download *d = calloc(1, sizeof *d);
    if (d == NULL) {
        tandem_route_error(node, r, 503, "out of memory");
        return;
    }
    d->node = node;
    d->r = r;
    d->work.data = d;
    snprintf(d->path, sizeof d->path, "%.*s/%s", PATH_MAX - TANDEM_BACKUP_NAME_LEN_MAX - 2,
             node->config->backup_dir, name);
    int rv = uv_queue_work(node->loop, &d->work, download_work_cb, download_after_cb);
    if (rv != 0) {
        free(d);
        tandem_route_error(node, r, 503, "backup download: %s", uv_strerror(rv));
    }
}
