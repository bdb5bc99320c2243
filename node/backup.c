/* Taking a backup on a running node (node/backup.h): the committed state copied on the thread
 * pool while the loop goes on applying, one backup at a time, sealed under backup_key_file. */
#include "node/backup.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "node/log.h"
#include "node/node.h"
#include "replication/identity/backup_keys.h"
#include "storage/assert.h"
#include "storage/background.h"
#include "storage/clock.h"
#include "storage/error.h"

struct tandem_node_backup {
    uv_work_t work;
    struct tandem_node *node; /* borrowed */
    struct tandem_backup_source source;
    struct tandem_backup_key key; /* the sealing key (wiped when done) */
    bool sealed;
    bool copy_released; /* store.copies given back by the work itself */
    char path[PATH_MAX];
    struct tandem_backup_manifest manifest;
    int status;
    char errmsg[TANDEM_ERRMSG_SIZE];
    tandem_node_backup_cb cb;
    void *data;
};

void tandem_node_backup_name(const char *cluster_id, const char *site, const char *node,
                             uint64_t applied_index, int64_t now_ms, char *out)
{
    struct tm tm;
    time_t seconds = (time_t)(now_ms / 1000);
    char when[32];
    if (gmtime_r(&seconds, &tm) == NULL || strftime(when, sizeof when, "%Y%m%dT%H%M%S", &tm) == 0) {
        snprintf(when, sizeof when, "0");
    }
    snprintf(out, TANDEM_BACKUP_NAME_LEN_MAX + 1, "%s-%s-%s-%" PRIu64 "-%s.%03dZ%s", cluster_id,
             site, node, applied_index, when, (int)(now_ms % 1000), TANDEM_BACKUP_SUFFIX);
}

bool tandem_node_backup_name_ok(const char *name)
{
    size_t len = strlen(name), suffix = strlen(TANDEM_BACKUP_SUFFIX);
    if (len <= suffix || len > TANDEM_BACKUP_NAME_LEN_MAX || name[0] == '.' ||
        strcmp(name + len - suffix, TANDEM_BACKUP_SUFFIX) != 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              c == '-' || c == '_' || c == '.')) {
            return false;
        }
    }
    return strstr(name, "..") == NULL;
}

bool tandem_node_backup_running(const struct tandem_node *node)
{
    return node->backup != NULL;
}

/* Wipes the key and frees b. */
static void backup_free(struct tandem_node_backup *b)
{
    OPENSSL_cleanse(&b->key, sizeof b->key);
    free(b);
}

static void backup_work(uv_work_t *work)
{
    struct tandem_node_backup *b = work->data;
    b->status = tandem_backup_write(&b->node->store, b->path, &b->source,
                                    b->sealed ? &b->key : NULL, &b->manifest, b->errmsg);
    /* Released here, on the pool: a snapshot install waits on the loop for copies to reach 0,
     * so the loop's after-work callback would never run to release it (a deadlock). */
    tandem_store_copy_end(&b->node->store);
    b->copy_released = true;
}

static void backup_work_cb(uv_work_t *work)
{
    tandem_background_run(backup_work, work); /* storage/background.h */
}

static void backup_after_work_cb(uv_work_t *work, int status)
{
    struct tandem_node_backup *b = work->data;
    struct tandem_node *node = b->node;
    tandem_assert(node->backup == b);
    if (!b->copy_released) {
        tandem_store_copy_end(&node->store); /* cancelled before it ran */
    }
    node->backup = NULL;
    if (status != 0 && b->status == 0) {
        b->status = tandem_error_from_uv(status, b->errmsg, "backup work");
    }
    if (b->status == 0) {
        tandem_log(TANDEM_LOG_INFO, "backup %s at index %llu: %llu bytes of state", b->path,
                   (unsigned long long)b->manifest.applied_index,
                   (unsigned long long)b->manifest.state_bytes);
    } else {
        tandem_log(TANDEM_LOG_WARN, "backup %s failed: %s", b->path, b->errmsg);
    }
    b->cb(b->data, b->status, b->status == 0 ? &b->manifest : NULL, b->path, b->errmsg);
    backup_free(b);
    if (node->stopping && node->closed != NULL) {
        node->closed(node); /* tandem_node_stop counted this backup */
    }
}

/* backup_dir (made when absent) and the file's path in b->path. */
static int backup_path(struct tandem_node *node, struct tandem_node_backup *b, const char *path,
                       char *errmsg)
{
    const struct tandem_config *c = node->config;
    char name[TANDEM_BACKUP_NAME_LEN_MAX + 1];
    if (path != NULL) {
        if (strlen(path) >= sizeof b->path - 16) {
            return tandem_error_set(errmsg, TANDEM_INVALID, "backup path too long");
        }
        snprintf(b->path, sizeof b->path, "%s", path);
        return 0;
    }
    if (mkdir(c->backup_dir, 0700) != 0 && errno != EEXIST) {
        return tandem_error_from_errno(errno, errmsg, "backup_dir");
    }
    tandem_node_backup_name(c->cluster_id, node->self.site, node->self.name,
                            node->store.applied_index, b->source.created_ms, name);
    if (strlen(c->backup_dir) + strlen(name) + 2 >= sizeof b->path - 16) {
        return tandem_error_set(errmsg, TANDEM_INVALID, "backup_dir path too long");
    }
    snprintf(b->path, sizeof b->path, "%s/%s", c->backup_dir, name);
    return 0;
}

/* The sealing key (the highest id of backup_key_file), read afresh for every backup so a new key
 * takes effect without a restart. */
static int backup_key(struct tandem_node *node, struct tandem_node_backup *b, char *errmsg)
{
    struct tandem_backup_key keys[TANDEM_BACKUP_KEYS_MAX];
    unsigned n = 0;
    int rv = tandem_backup_keys_load(node->config->backup_key_file, keys, &n, errmsg);
    if (rv == 0 && n > 0) {
        b->key = keys[n - 1];
        b->sealed = true;
    }
    OPENSSL_cleanse(keys, sizeof keys);
    return rv;
}

int tandem_node_backup_take(struct tandem_node *node, const char *path, tandem_node_backup_cb cb,
                            void *data, char *errmsg)
{
    if (node->backup != NULL) {
        return tandem_error_set(errmsg, TANDEM_BUSY, "a backup is being taken on this node");
    }
    if (node->stopping) {
        return tandem_error_set(errmsg, TANDEM_SHUTDOWN, "the node is stopping");
    }
    /* Everything applied so far goes into the committed state the copy reads. */
    if (tandem_store_commit(&node->store) != 0) {
        return tandem_error_set(errmsg, TANDEM_STORE, "%s", node->store.errmsg);
    }
    struct tandem_node_backup *b = calloc(1, sizeof *b);
    if (b == NULL) {
        return tandem_error_set(errmsg, TANDEM_NOMEM, "backup: out of memory");
    }
    const struct tandem_config *c = node->config;
    *b = (struct tandem_node_backup){
        .node = node,
        .cb = cb,
        .data = data,
        .source = {.cluster_id = c->cluster_id,
                   .node = node->self.name,
                   .site = node->self.site,
                   .tandem_version = TANDEM_VERSION,
                   .epoch = node->bcp.epoch,
                   .term = raft_current_term(&node->raft.raft),
                   .created_ms = tandem_wall_ms()},
    };
    b->work.data = b;
    int rv = backup_path(node, b, path, errmsg);
    rv = rv != 0 ? rv : backup_key(node, b, errmsg);
    if (rv != 0) {
        backup_free(b);
        return rv;
    }
    /* A snapshot install waits for the copy before it swaps the environment, and no copy starts
     * once one is about to (storage/store.h). */
    if (!tandem_store_copy_begin(&node->store)) {
        backup_free(b);
        return tandem_error_set(errmsg, TANDEM_STATE,
                                "a snapshot install is replacing this node's state; retry");
    }
    rv = uv_queue_work(node->loop, &b->work, backup_work_cb, backup_after_work_cb);
    if (rv != 0) {
        tandem_store_copy_end(&node->store);
        backup_free(b);
        return tandem_error_from_uv(rv, errmsg, "uv_queue_work");
    }
    node->backup = b;
    return 0;
}
