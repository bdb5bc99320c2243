/* The API's route tables and the helpers every route module uses to answer, propose commands and
 * serve linearizable reads. The router lives in router.c; each resource file adds its own table. */
#ifndef TANDEM_NODE_API_API_H
#define TANDEM_NODE_API_API_H

#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>

#include "consensus/member.h"
#include "node/api/perms.h"
#include "node/http/server.h"
#include "replication/domain/domain.h"
#include "tandem.pb-c.h"

struct tandem_node;

enum tandem_route_flags {
    TANDEM_ROUTE_LOCAL = 0,  /* any node answers */
    TANDEM_ROUTE_WRITE = 1,  /* the leader answers; followers forward */
    TANDEM_ROUTE_READ = 2,   /* linearizable unless ?consistency=local; followers forward */
    TANDEM_ROUTE_PREFIX = 4, /* pattern is a prefix; the decoded rest is the handler's param */
    /* A write that changes who may call (users, passwords, the token key): a follower that
     * forwarded it answers only once it has applied it itself, so that the caller's next
     * request to that node (a bearer token it was just given, a disabled user) is judged by
     * the state the answer spoke of (node/http/forward.h, tandem_forwarder_send_held). */
    TANDEM_ROUTE_SESSION = 8,
};

/* param: the percent-decoded rest of the path for prefix routes ("" otherwise). */
typedef void (*tandem_route_fn)(struct tandem_node *node, struct tandem_http_request *r,
                                const char *param);

struct tandem_route {
    const char *name; /* metrics label */
    int method;       /* enum http_method */
    const char *pattern;
    int flags;
    tandem_route_fn fn;
    int perm; /* enum tandem_perm (node/api/perms.h) the caller must hold; UNDECLARED = refused */
};

/* A module's table; the dispatcher tries tables in order, the first match wins. */
struct tandem_route_table {
    const struct tandem_route *routes;
    unsigned count;
};

/* Defines the route table `name` from an X-macro list of routes, each
 * X(id, method, pattern, flags, perm, handler) (perm: a TANDEM_PERM_ of node/api/perms.h), and
 * declares the (static) handlers. The ids are the metrics labels, counted in table order. */
#define TANDEM_ROUTE_HANDLER_(id, method, pattern, flags, perm, fn)                                \
    static void fn(struct tandem_node *node, struct tandem_http_request *r, const char *param);
#define TANDEM_ROUTE_ROW_(id, method, pattern, flags, perm, fn)                                    \
    {#id, method, pattern, flags, fn, perm},
#define TANDEM_ROUTE_TABLE(name, ROUTES)                                                           \
    ROUTES(TANDEM_ROUTE_HANDLER_)                                                                  \
    static const struct tandem_route name##_rows[] = {ROUTES(TANDEM_ROUTE_ROW_)};                  \
    const struct tandem_route_table name = {                                                       \
        name##_rows, (unsigned)(sizeof name##_rows / sizeof name##_rows[0])}

/* Wires the node's park and forwarder to the router: parked requests are routed again, and both
 * answer through tandem_route_json. Call once before the API listens. */
void tandem_router_init(struct tandem_node *node);

extern const struct tandem_route_table tandem_cluster_route_table; /* node/api/cluster.c */
extern const struct tandem_route_table tandem_kv_route_table;      /* node/api/kv.c */
extern const struct tandem_route_table tandem_domain_route_table;
extern const struct tandem_route_table tandem_bcp_route_table; /* node/api/bcp.c */
extern const struct tandem_route_table tandem_rebalance_route_table;
extern const struct tandem_route_table tandem_quarantine_route_table;  /* node/api/quarantine.c */
extern const struct tandem_route_table tandem_events_route_table;      /* node/api/events.c */
extern const struct tandem_route_table tandem_audit_route_table;       /* node/api/audit.c */
extern const struct tandem_route_table tandem_users_route_table;       /* node/api/users.c */
extern const struct tandem_route_table tandem_pdata_route_table;       /* node/api/keys.c */
extern const struct tandem_route_table tandem_backups_route_table;     /* node/api/backups.c */
extern const struct tandem_route_table tandem_backup_site_route_table; /* node/api/backup_sites.c */
extern const struct tandem_route_table tandem_snapshot_route_table;    /* node/api/snapshots.c */
extern const struct tandem_route_table tandem_ui_route_table;          /* node/api/ui.c */

/* The metrics labels of every route, by route id, then "unmatched"; returns their count. */
unsigned tandem_route_names(const char *const **names);

/* Answers r 200 with the head of a fixed-length stream (node/http/server.h's
 * tandem_http_stream_open_sized), counted and audited as tandem_route_json's answers are, with
 * X-Tandem-Node and X-Tandem-Applied-Index before extra_headers. Returns its code; on an error r
 * is not answered (and was counted: the caller's error answer counts again). */
int tandem_node_stream_sized(struct tandem_node *node, struct tandem_http_request *r,
                             const char *content_type, const char *extra_headers, uint64_t length,
                             tandem_http_stream_drain_fn drain_cb,
                             tandem_http_stream_close_fn close_cb, void *data,
                             struct tandem_http_stream **out);

/* Answers r (counted in the metrics, X-Tandem-Node and X-Tandem-Applied-Index added). */
void tandem_route_json(struct tandem_node *node, struct tandem_http_request *r, int status,
                       const char *extra_headers, const char *text);
/* Takes ownership of body. */
void tandem_route_jansson(struct tandem_node *node, struct tandem_http_request *r, int status,
                          json_t *body);
void tandem_route_error(struct tandem_node *node, struct tandem_http_request *r, int status,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* 503 with Retry-After: 1 and {"error": the message}: busy or stopping, ask again. */
void tandem_route_retry_later(struct tandem_node *node, struct tandem_http_request *r,
                              const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* RAFT_BUSY -> 429, RAFT_NOTLEADER -> 503 no leader, lost leadership -> 503 outcome unknown. */
void tandem_route_raft_error(struct tandem_node *node, struct tandem_http_request *r, int rv);
bool tandem_route_local(const struct tandem_http_request *r);
/* Returns 0 when every field of object is named in known (NULL-terminated), else -1 with why
 * (TANDEM_ERRMSG_SIZE bytes) naming the first unknown field. A NULL object has no fields. */
int tandem_route_fields_only(json_t *object, const char *const *known, char *why);
/* One field of a request body: its name, its JSON type and whether it must be there. */
enum tandem_route_field_type {
    TANDEM_FIELD_ANY = 0, /* any value, null included (the handler checks it) */
    TANDEM_FIELD_STRING,
    TANDEM_FIELD_BOOL,
    TANDEM_FIELD_INT,
    TANDEM_FIELD_ARRAY,
    TANDEM_FIELD_OBJECT,
};
struct tandem_route_field {
    const char *name; /* NULL ends a list */
    enum tandem_route_field_type type;
    bool required;
};
/* Entries of a field list: TANDEM_REQUIRED("site", STRING), TANDEM_OPTIONAL("by", STRING), ...,
 * TANDEM_FIELDS_END. */
#define TANDEM_REQUIRED(name, type)                                                                \
    {                                                                                              \
        name, TANDEM_FIELD_##type, true                                                            \
    }
#define TANDEM_OPTIONAL(name, type)                                                                \
    {                                                                                              \
        name, TANDEM_FIELD_##type, false                                                           \
    }
#define TANDEM_FIELDS_END                                                                          \
    {                                                                                              \
        NULL, TANDEM_FIELD_ANY, false                                                              \
    }
/* Returns 0 when every field of object is in fields (NULL-name terminated) with its type and
 * every required one is there; else -1 with why (TANDEM_ERRMSG_SIZE bytes) naming the first
 * field at fault: unknown field "x", missing field "x", field "x" must be a boolean. */
int tandem_route_fields_check(json_t *object, const struct tandem_route_field *fields, char *why);
/* An id a client may name in a path or a body: the record id rule, without "." and "..", which
 * would read as path segments. */
bool tandem_route_id_ok(const char *id);
/* The query parameter name as a decimal number in [min, max]: 1 (*out set), 0 when absent (*out
 * untouched), -1 when malformed, negative or out of range. */
int tandem_route_query_number(const struct tandem_http_request *r, const char *name, uint64_t min,
                              uint64_t max, uint64_t *out);
/* A replicated history's listing: the newest `limit` records, full reports when full. */
typedef json_t *(*tandem_route_history_fn)(struct tandem_store *store, MDB_txn *txn, unsigned limit,
                                           bool full);
struct tandem_route_history {
    const char *name; /* the answer's array */
    unsigned limit_default, limit_max;
    tandem_route_history_fn list;
};
/* A read route (tandem_route_read) answering {name: list(...)} for ?limit= (1..limit_max,
 * default limit_default) and ?full=1; 400 on a bad limit, 500 on a store error. */
void tandem_route_history(struct tandem_node *node, struct tandem_http_request *r,
                          const struct tandem_route_history *history);

/* A read transaction on everything applied so far (grouped writes are committed first). The
 * caller aborts it. Returns 0, or -1 after answering r with 500. */
int tandem_route_read_txn(struct tandem_node *node, struct tandem_http_request *r, MDB_txn **txn);

/* Proposes command (which must stay valid until done runs) and answers r with its applied result
 * (status and JSON body from the apply function). done(owner) runs exactly once, after r is
 * answered, whatever happened. */
void tandem_route_submit(struct tandem_node *node, struct tandem_http_request *r,
                         Tandem__Command *command, void (*done)(void *owner), void *owner);

/* The part every domain write request starts with: the command it proposes, who acts and its
 * parsed JSON body, which the command's strings may point into. */
struct tandem_route_write {
    Tandem__Command command;
    Tandem__Actor actor;                       /* user and site point below */
    char user[TANDEM_DOMAIN_TEXT_LEN_MAX + 1]; /* r->principal.name; "anonymous" when none */
    char site[TANDEM_SITE_LEN_MAX + 1]; /* of the node that took the request (the forwarder's) */
    json_t *json;                       /* owned: the body, an object ({} when empty) */
};

/* Allocates a zeroed request of size bytes whose first member is a struct tandem_route_write and
 * fills that part from r (the actor is r->principal, the authenticated identity). Returns it, or
 * NULL after answering r: oom_status when out of memory, 400 for a bad actor or body. The caller
 * frees it after tandem_route_write_release. */
void *tandem_route_write_new(struct tandem_node *node, struct tandem_http_request *r, size_t size,
                             int oom_status);
void tandem_route_write_release(struct tandem_route_write *w);

typedef void (*tandem_route_serve_fn)(struct tandem_node *node, struct tandem_http_request *r,
                                      void *arg);
/* Runs serve(node, r, arg) on applied state: at once with ?consistency=local, else after this
 * loop iteration's shared raft barrier. serve must answer r. done(arg), if not NULL, runs
 * exactly once afterwards (also when r was answered with an error instead). */
void tandem_route_read(struct tandem_node *node, struct tandem_http_request *r,
                       tandem_route_serve_fn serve, void *arg, void (*done)(void *arg));

/* GET /v1/digest?at=N (node/api/cluster.c): requests wait at most wait_ms (default, max) for
 * entry N; at most WAITS_MAX wait on a node. tandem_digest_waits_applied after every apply
 * serves those whose entry it reached; tandem_digest_waits_tick (every 10 ms, and at stop)
 * answers those past their time, or all once the node stops, with 503. */
#define TANDEM_DIGEST_WAIT_MS_DEFAULT 2000u
#define TANDEM_DIGEST_WAIT_MS_MAX     30000u
#define TANDEM_DIGEST_WAITS_MAX       64u
void tandem_digest_waits_applied(struct tandem_node *node);
void tandem_digest_waits_tick(struct tandem_node *node);

/* A read that grows with the state (node/pool_read.h), answered from the thread pool. */
struct tandem_route_pooled;
/* Runs on a pool thread: txn and store as node/pool_read.h gives them; it must touch nothing of
 * the node. Returns 0 or a tandem code with store->errmsg filled. */
typedef int (*tandem_route_pool_fn)(struct tandem_store *store, MDB_txn *txn, void *arg);
/* Runs on the loop after it and must answer r: rv and errmsg are the work's (or a commit's or the
 * pool's failure, rv TANDEM_STORE or a uv code turned into one). */
typedef void (*tandem_route_pool_answer_fn)(struct tandem_node *node, struct tandem_http_request *r,
                                            void *arg, int rv, const char *errmsg);
/* As tandem_route_read (the same barrier, ?consistency=local at once), but work runs on the
 * thread pool from a read transaction of its own, then answer on the loop. When
 * TANDEM_POOL_READS_WAITING_MAX reads already wait, r is answered 503 with Retry-After and a
 * JSON body, and answer never runs. done(arg), if not NULL, runs exactly once after r is
 * answered. The request stays valid until answered even when its client leaves meanwhile. */
void tandem_route_read_pooled(struct tandem_node *node, struct tandem_http_request *r,
                              tandem_route_pool_fn work, tandem_route_pool_answer_fn answer,
                              void *arg, void (*done)(void *arg));
/* The same on this node's state as it is, without the barrier, for a TANDEM_ROUTE_LOCAL route. */
void tandem_route_local_pooled(struct tandem_node *node, struct tandem_http_request *r,
                               tandem_route_pool_fn work, tandem_route_pool_answer_fn answer,
                               void *arg, void (*done)(void *arg));

#endif
