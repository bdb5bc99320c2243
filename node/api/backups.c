/* The backups resource (issue 14): POST /v1/backups takes a backup at a leader-confirmed index
 * (after the read barrier, on the leader; followers forward), POST /v1/backups/download takes one
 * the same way and answers the file itself (followers redirect to the leader), GET
 * /v1/backups/<name> downloads one of this node's backup files. The taking is node/backup.c's,
 * the sending node/backup_stream.c's. */
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
#include "node/backup_state.h"
#include "node/backup_stream.h"
#include "node/node.h"
#include "storage/clock.h"
#include "storage/error.h"

/* X(id, method, pattern, flags, perm, handler): ids are metrics labels, in this order. */
#define BACKUP_ROUTES(X)                                                                           \
    X(backups_create, HTTP_POST, "/v1/backups", TANDEM_ROUTE_READ, TANDEM_PERM_BACKUP,             \
      route_backups_create)                                                                        \
    X(backups_take_download, HTTP_POST, "/v1/backups/download", TANDEM_ROUTE_LOCAL,                \
      TANDEM_PERM_BACKUP, route_backups_take_download)                                             \
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

/* Takes a backup into path (NULL: backup_dir) for r, which cb answers; or answers r with the
 * refusal (409 one is being taken, 503 stopping, 500). */
static void backup_take_for(struct tandem_node *node, struct tandem_http_request *r,
                            const char *path, tandem_node_backup_cb cb)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    int rv = tandem_node_backup_take(node, path, cb, r, errmsg);
    if (rv == TANDEM_BUSY) {
        tandem_route_error(node, r, 409, "%s", errmsg);
    } else if (rv != 0) {
        /* Stopping, or a snapshot install replacing the state (TANDEM_STATE): try again. */
        tandem_route_error(node, r, rv == TANDEM_SHUTDOWN || rv == TANDEM_STATE ? 503 : 500, "%s",
                           errmsg);
    }
}

/* Runs after this loop iteration's raft barrier on the leader: everything acknowledged before
 * the request is applied, and the copy holds at least that. */
static void backup_serve(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    (void)arg;
    backup_take_for(node, r, NULL, backup_done_cb);
}

/* The body (an empty object, or none) and the consistency of a request that takes a backup;
 * false when it was answered 400. */
static bool create_request_ok(struct tandem_node *node, struct tandem_http_request *r)
{
    static const struct tandem_route_field fields[] = {TANDEM_FIELDS_END};
    char why[TANDEM_ERRMSG_SIZE];
    json_error_t jerr;
    json_t *body = r->body_len == 0 ? json_object() : json_loadb(r->body, r->body_len, 0, &jerr);
    int bad = !json_is_object(body) || tandem_route_fields_check(body, fields, why) != 0;
    if (!json_is_object(body)) {
        snprintf(why, sizeof why, "the body must be a JSON object (or empty)");
    }
    json_decref(body);
    if (bad) {
        tandem_route_error(node, r, 400, "%s", why);
        return false;
    }
    if (tandem_route_local(r)) {
        tandem_route_error(node, r, 400,
                           "a backup is taken at a leader-confirmed index: "
                           "consistency=local is not accepted");
        return false;
    }
    return true;
}

static void route_backups_create(struct tandem_node *node, struct tandem_http_request *r,
                                 const char *p)
{
    (void)p;
    if (create_request_ok(node, r)) {
        tandem_route_read(node, r, backup_serve, NULL, NULL);
    }
}

static void route_backups_download(struct tandem_node *node, struct tandem_http_request *r,
                                   const char *name)
{
    char path[PATH_MAX];
    if (!tandem_node_backup_name_ok(name)) {
        tandem_route_error(node, r, 400, "not a backup file name: '%.100s'", name);
        return;
    }
    snprintf(path, sizeof path, "%.*s/%s", PATH_MAX - TANDEM_BACKUP_NAME_LEN_MAX - 2,
             node->backups.dir, name);
    tandem_backup_stream_start(node, r, path, false, NULL);
}

/* ---- POST /v1/backups/download: taken for the request, streamed, removed ---- */

static void taken_for_download_cb(void *data, int status,
                                  const struct tandem_backup_manifest *manifest, const char *path,
                                  const char *errmsg)
{
    struct tandem_http_request *r = data;
    struct tandem_node *node = r->server->data;
    char headers[256], digest[2 * TANDEM_DIGEST_LEN + 1];
    if (status != 0) {
        tandem_route_error(node, r, 500, "backup failed: %s", errmsg);
        return;
    }
    tandem_digest_hex(manifest->state_digest, digest);
    snprintf(headers, sizeof headers, "%s: %llu\r\n%s: %s\r\n", TANDEM_BACKUP_INDEX_HEADER,
             (unsigned long long)manifest->applied_index, TANDEM_BACKUP_DIGEST_HEADER, digest);
    tandem_backup_stream_start(node, r, path, true, headers);
}

/* After the leader's read barrier, as backup_serve: the file goes to backup_dir/download/. */
static void download_serve(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    char name[TANDEM_BACKUP_NAME_LEN_MAX + 1], path[PATH_MAX];
    (void)arg;
    tandem_node_backup_name(node->config->cluster_id, node->self.site, node->self.name,
                            node->store.applied_index, tandem_wall_ms(), name);
    snprintf(path, sizeof path, "%.*s/" TANDEM_BACKUP_DOWNLOAD_DIR "/%s",
             PATH_MAX - TANDEM_BACKUP_NAME_LEN_MAX - 32, node->backups.dir, name);
    backup_take_for(node, r, path, taken_for_download_cb);
}

/* Not the leader: 307 to the leader's POST /v1/backups/download, which the client follows (the
 * file goes straight from the leader to it; a forward would hold it whole here). */
static void download_redirect(struct tandem_node *node, struct tandem_http_request *r)
{
    struct tandem_member leader;
    char headers[TANDEM_URL_LEN_MAX + 128];
    if (node->bcp.fenced || node->bcp.quarantined) {
        tandem_route_json(node, r, 503, "Retry-After: 1\r\n",
                          "{\"error\":\"this node is fenced or quarantined: ask another node\"}");
        return;
    }
    if (tandem_raft_leader(&node->raft, &leader) != 0) {
        tandem_route_json(node, r, 503, "Retry-After: 1\r\n", "{\"error\":\"no leader now\"}");
        return;
    }
    json_t *body = json_pack("{s:s,s:s,s:s}", "error", "not the leader: take it from the leader",
                             "leader", leader.name, "api", leader.api);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    snprintf(headers, sizeof headers, "Location: %s/v1/backups/download\r\n", leader.api);
    tandem_route_json(node, r, text != NULL ? 307 : 500, text != NULL ? headers : NULL,
                      text != NULL ? text : "{\"error\":\"out of memory\"}");
    free(text);
}

static void route_backups_take_download(struct tandem_node *node, struct tandem_http_request *r,
                                        const char *p)
{
    (void)p;
    if (!create_request_ok(node, r)) {
        return;
    }
    if (raft_state(&node->raft.raft) != RAFT_LEADER) {
        download_redirect(node, r);
        return;
    }
    tandem_route_read(node, r, download_serve, NULL, NULL);
}
