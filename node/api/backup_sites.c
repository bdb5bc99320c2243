/* Routes of the scheduled mutual backup (issue 14 items 4-5): GET /v1/backups lists every site's
 * shipped backups from the replicated table (any node answers the same), and the node-to-node
 * routes (node certificates only) through which the leader has a backup taken, the taker ships
 * it, the witnesses keep its manifest, holders verify it and report its loss. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/api/api.h"
#include "node/api/perms.h"
#include "node/backup_state.h"
#include "node/node.h"
#include "replication/bcp/backups.h"
#include "storage/clock.h"
#include "storage/error.h"

/* X(id, method, pattern, flags, perm, handler) */
#define BACKUP_SITE_ROUTES(X)                                                                      \
    X(backups_list, HTTP_GET, "/v1/backups", TANDEM_ROUTE_READ, TANDEM_PERM_READ,                  \
      route_backups_list)                                                                          \
    X(node_backup_take, HTTP_POST, "/v1/node/backups/take", TANDEM_ROUTE_LOCAL, TANDEM_PERM_NODE,  \
      route_node_backup_take)                                                                      \
    X(node_backup_upload, HTTP_POST, "/v1/node/backups/upload", TANDEM_ROUTE_LOCAL,                \
      TANDEM_PERM_NODE, route_node_backup_upload)                                                  \
    X(node_backup_manifest, HTTP_POST, "/v1/node/backups/manifest", TANDEM_ROUTE_LOCAL,            \
      TANDEM_PERM_NODE, route_node_backup_manifest)                                                \
    X(node_backup_verify, HTTP_POST, "/v1/node/backups/verify", TANDEM_ROUTE_LOCAL,                \
      TANDEM_PERM_NODE, route_node_backup_verify)                                                  \
    X(node_backup_report, HTTP_POST, "/v1/node/backups/report", TANDEM_ROUTE_WRITE,                \
      TANDEM_PERM_NODE, route_node_backup_report)

TANDEM_ROUTE_TABLE(tandem_backup_site_route_table, BACKUP_SITE_ROUTES);

/* ---- GET /v1/backups[?site=S][&retired=1] ---- */

struct list_query {
    char site[TANDEM_SITE_LEN_MAX + 1];
    bool retired;
};

static void list_serve(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    struct list_query *q = arg;
    MDB_txn *txn;
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return;
    }
    int64_t now = tandem_wall_ms();
    json_t *body = tandem_backups_list_json(&node->store, txn, q->site, q->retired, now);
    struct tandem_backup_site_summary sums[TANDEM_BACKUP_SITES_MAX];
    unsigned n = 0;
    int rv = body == NULL
                 ? -1
                 : tandem_backups_summary(&node->store, txn, sums, TANDEM_BACKUP_SITES_MAX, &n);
    mdb_txn_abort(txn);
    if (rv != 0) {
        json_decref(body);
        tandem_route_error(node, r, 500, "%s", node->store.errmsg);
        return;
    }
    char at[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_rfc3339_format_ms(now, at);
    json_object_set_new(body, "sites", tandem_backups_summary_json(sums, n, now));
    json_object_set_new(body, "as_of", json_string(at));
    tandem_route_jansson(node, r, 200, body);
}

static void route_backups_list(struct tandem_node *node, struct tandem_http_request *r,
                               const char *param)
{
    char retired[8] = "";
    (void)param;
    struct list_query *q = calloc(1, sizeof *q);
    if (q == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        return;
    }
    int site = tandem_http_query_get(r->query, "site", q->site, sizeof q->site);
    int all = tandem_http_query_get(r->query, "retired", retired, sizeof retired);
    if (site < 0 || (site == 1 && !tandem_member_name_ok(q->site, TANDEM_SITE_LEN_MAX)) ||
        all < 0 || (all == 1 && strcmp(retired, "1") != 0 && strcmp(retired, "0") != 0)) {
        free(q);
        tandem_route_error(node, r, 400, "?site= takes a site label and ?retired= 0 or 1");
        return;
    }
    q->retired = all == 1 && strcmp(retired, "1") == 0;
    tandem_route_read(node, r, list_serve, q, free);
}

/* ---- node-to-node ---- */

/* A backup id from the query or a body: the record id rule, at most TANDEM_BACKUP_ID_LEN_MAX. */
static bool id_ok(const char *id)
{
    return id != NULL && strlen(id) <= TANDEM_BACKUP_ID_LEN_MAX && tandem_route_id_ok(id);
}

/* ?id= into id; answers 400 and returns -1 when absent or malformed. */
static int query_id(struct tandem_node *node, struct tandem_http_request *r, char *id)
{
    if (tandem_http_query_get(r->query, "id", id, TANDEM_BACKUP_ID_LEN_MAX + 1) != 1 ||
        !id_ok(id)) {
        tandem_route_error(node, r, 400, "?id= must name a backup (1 to %d of [A-Za-z0-9._:-])",
                           TANDEM_BACKUP_ID_LEN_MAX);
        return -1;
    }
    return 0;
}

/* The JSON object body of r checked against fields; NULL after answering 400. */
static json_t *body_object(struct tandem_node *node, struct tandem_http_request *r,
                           const struct tandem_route_field *fields)
{
    char why[TANDEM_ERRMSG_SIZE];
    json_error_t error;
    json_t *body = json_loadb(r->body, r->body_len, 0, &error);
    if (!json_is_object(body) || tandem_route_fields_check(body, fields, why) != 0) {
        tandem_route_error(node, r, 400, "%s",
                           json_is_object(body) ? why : "the body must be a JSON object");
        json_decref(body);
        return NULL;
    }
    return body;
}

static void route_node_backup_take(struct tandem_node *node, struct tandem_http_request *r,
                                   const char *param)
{
    static const struct tandem_route_field fields[] = {
        TANDEM_REQUIRED("id", STRING), TANDEM_REQUIRED("site", STRING),
        TANDEM_REQUIRED("holders", ARRAY), TANDEM_REQUIRED("witnesses", ARRAY), TANDEM_FIELDS_END};
    (void)param;
    json_t *body = body_object(node, r, fields);
    if (body == NULL) {
        return;
    }
    const char *id = json_string_value(json_object_get(body, "id"));
    const char *site = json_string_value(json_object_get(body, "site"));
    if (!id_ok(id)) {
        tandem_route_error(node, r, 400, "\"id\" must be 1 to %d of [A-Za-z0-9._:-]",
                           TANDEM_BACKUP_ID_LEN_MAX);
    } else if (strcmp(site, node->self.site) != 0) {
        tandem_route_error(node, r, 409, "%s is of site %s, not %s", node->self.name,
                           node->self.site, site);
    } else {
        tandem_backup_take_start(node, r, id, json_object_get(body, "holders"),
                                 json_object_get(body, "witnesses"));
    }
    json_decref(body);
}

static void route_node_backup_upload(struct tandem_node *node, struct tandem_http_request *r,
                                     const char *param)
{
    char id[TANDEM_BACKUP_ID_LEN_MAX + 1], final[8] = "", sha256[2 * TANDEM_DIGEST_LEN + 1] = "";
    uint64_t offset = 0;
    (void)param;
    if (query_id(node, r, id) != 0) {
        return;
    }
    int has_final = tandem_http_query_get(r->query, "final", final, sizeof final);
    int has_sha = tandem_http_query_get(r->query, "sha256", sha256, sizeof sha256);
    if (tandem_route_query_number(r, "offset", 0, UINT64_MAX / 2, &offset) != 1 || has_final < 0 ||
        has_sha < 0 || (has_final == 1 && strcmp(final, "1") != 0)) {
        tandem_route_error(node, r, 400,
                           "?offset= (a byte count) is required; ?final= is 1 with ?sha256=");
        return;
    }
    tandem_backup_upload(node, r, id, offset, has_final == 1, has_sha == 1 ? sha256 : NULL);
}

static void route_node_backup_manifest(struct tandem_node *node, struct tandem_http_request *r,
                                       const char *param)
{
    char id[TANDEM_BACKUP_ID_LEN_MAX + 1];
    (void)param;
    if (query_id(node, r, id) == 0) {
        tandem_backup_manifest_keep(node, r, id);
    }
}

static void route_node_backup_verify(struct tandem_node *node, struct tandem_http_request *r,
                                     const char *param)
{
    static const struct tandem_route_field fields[] = {
        TANDEM_REQUIRED("id", STRING), TANDEM_REQUIRED("level", INT), TANDEM_FIELDS_END};
    (void)param;
    json_t *body = body_object(node, r, fields);
    if (body == NULL) {
        return;
    }
    const char *id = json_string_value(json_object_get(body, "id"));
    json_int_t level = json_integer_value(json_object_get(body, "level"));
    if (!id_ok(id) || level < 1 || level > 2) {
        tandem_route_error(node, r, 400, "\"id\" must name a backup and \"level\" be 1 or 2");
    } else {
        tandem_backup_verify_local(node, r, id, (int)level);
    }
    json_decref(body);
}

/* ---- a holder's report of a lost copy, proposed by the leader ---- */

struct report_write {
    struct tandem_route_write base; /* first: command, actor, body */
    Tandem__BackupUpdate update;
};

static void report_write_free(void *arg)
{
    struct report_write *w = arg;
    tandem_route_write_release(&w->base);
    free(w);
}

static void route_node_backup_report(struct tandem_node *node, struct tandem_http_request *r,
                                     const char *param)
{
    static const struct tandem_route_field fields[] = {
        TANDEM_REQUIRED("id", STRING), TANDEM_REQUIRED("node", STRING),
        TANDEM_REQUIRED("reason", STRING), TANDEM_FIELDS_END};
    char why[TANDEM_ERRMSG_SIZE];
    (void)param;
    struct report_write *w = tandem_route_write_new(node, r, sizeof *w, 500);
    if (w == NULL) {
        return;
    }
    json_t *b = w->base.json;
    const char *id = json_string_value(json_object_get(b, "id"));
    const char *holder = json_string_value(json_object_get(b, "node"));
    const char *reason = json_string_value(json_object_get(b, "reason"));
    int status = tandem_route_fields_check(b, fields, why) != 0 ? 400 : 0;
    if (status == 0 && (!id_ok(id) || !tandem_member_name_ok(holder, TANDEM_NAME_LEN_MAX) ||
                        strlen(reason) > TANDEM_BACKUP_REASON_LEN_MAX)) {
        status = 400;
        snprintf(why, sizeof why,
                 "\"id\", \"node\" (a member name) and \"reason\" (at most %d "
                 "bytes) are required",
                 TANDEM_BACKUP_REASON_LEN_MAX);
    }
    /* A node reports only its own copies. */
    if (status == 0 && !r->principal.insecure && strcmp(r->principal.name, holder) != 0) {
        status = 403;
        snprintf(why, sizeof why, "%s may report only its own copies, not %s's", r->principal.name,
                 holder);
    }
    if (status != 0) {
        tandem_route_error(node, r, status, "%s", why);
        report_write_free(w);
        return;
    }
    tandem__backup_update__init(&w->update);
    w->update.id = (char *)id;
    w->update.kind = TANDEM__BACKUP_UPDATE__KIND__LOST;
    w->update.node = (char *)holder;
    w->update.reason = (char *)reason;
    w->base.command.body_case = TANDEM__COMMAND__BODY_BACKUP_UPDATE;
    w->base.command.backup_update = &w->update;
    tandem_route_submit(node, r, &w->base.command, report_write_free, w);
}
