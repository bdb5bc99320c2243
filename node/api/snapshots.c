/* GET /v1/node/snapshots/NAME (node certificates only): one of this node's snapshot files
 * (replication/snapshot_file.h), streamed from disk in chunks to the member that installs the
 * raft snapshot reference naming it (node/snapshot_fetch.c is the other end). */
#include <limits.h>
#include <stdio.h>

#include "node/api/api.h"
#include "node/api/perms.h"
#include "node/backup_stream.h"
#include "node/node.h"
#include "replication/snapshot_file.h"

static void route_node_snapshot_file(struct tandem_node *node, struct tandem_http_request *r,
                                     const char *name)
{
    char path[PATH_MAX];
    if (!tandem_snapshot_file_name_ok(name)) {
        tandem_route_error(node, r, 400, "not a snapshot file name: '%.100s'", name);
        return;
    }
    if (node->fsm.files_dir[0] == '\0') {
        tandem_route_error(node, r, 404, "this node keeps no snapshot files");
        return;
    }
    snprintf(path, sizeof path, "%.*s/%s", PATH_MAX - TANDEM_SNAPSHOT_FILE_NAME_SIZE - 2,
             node->fsm.files_dir, name);
    tandem_file_stream_start(node, r, path, NULL);
}

/* X(id, method, pattern, flags, perm, handler) */
#define SNAPSHOT_ROUTES(X)                                                                         \
    X(node_snapshot, HTTP_GET, "/v1/node/snapshots/", TANDEM_ROUTE_LOCAL | TANDEM_ROUTE_PREFIX,    \
      TANDEM_PERM_NODE, route_node_snapshot_file)

TANDEM_ROUTE_TABLE(tandem_snapshot_route_table, SNAPSHOT_ROUTES);
