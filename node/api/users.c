/* The users API (issue 13): create, list, roles, disable, delete and password change of user
 * records, and POST /v1/auth/login answering a bearer token. Passwords are checked and hashed
 * here on the leader, on libuv's threadpool (scrypt takes ~50 ms); only hashes are proposed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <uv.h>

#include "node/api/api.h"
#include "node/api/authz.h"
#include "node/api/perms.h"
#include "node/audit.h"
#include "node/node.h"
#include "replication/identity/credentials.h"
#include "replication/identity/roles.h"
#include "replication/identity/users.h"
#include "storage/background.h"
#include "storage/clock.h"

#define USERS_PREFIX    "/v1/users/"
#define MS_PER_MINUTE   60000LL
#define MS_PER_DAY      86400000LL
#define REUSE_CHECK_MAX TANDEM_USER_HISTORY_MAX

enum users_job { JOB_CREATE, JOB_PASSWORD, JOB_LOGIN };

/* One request that hashes or verifies on the threadpool before it proposes. */
struct users_req {
    struct tandem_route_write base; /* first: command, actor, body */
    uv_work_t work;
    struct tandem_node *node;      /* borrowed */
    struct tandem_http_request *r; /* borrowed until answered */
    enum users_job job;
    char name[TANDEM_USER_NAME_LEN_MAX + 1];
    char site[TANDEM_USER_SITE_LEN_MAX + 1];
    uint32_t roles;
    char *password;                              /* owned, cleansed before free */
    char *old_password;                          /* owned, cleansed before free; NULL: none given */
    char old_hash[TANDEM_USER_HASH_LEN_MAX + 1]; /* login, self-change: the stored hash */
    char history[REUSE_CHECK_MAX][TANDEM_USER_HASH_LEN_MAX + 1];
    size_t n_history;
    uint64_t generation;
    /* threadpool results */
    char hash[TANDEM_USER_HASH_LEN_MAX + 1];
    bool match, reused, old_ok;
    bool expired; /* login: the password is past password_max_age_days */
    bool unknown; /* login: no such user (the same scrypt is paid, then 401) */
    int rv;
    char errmsg[TANDEM_ERRMSG_SIZE];
    Tandem__UserCreate create;
    Tandem__UserUpdate update;
    Tandem__UserDelete del;
    Tandem__AuthAttempt attempt;
    Tandem__TokenKeySet key_set;
    struct tandem_write write;
    uint8_t key[TANDEM_TOKEN_KEY_LEN];
};

static void secret_free(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void users_req_free(void *arg)
{
    struct users_req *q = arg;
    secret_free(q->password);
    secret_free(q->old_password);
    OPENSSL_cleanse(q->key, sizeof q->key);
    tandem_route_write_release(&q->base);
    free(q);
}

static struct users_req *users_req_new(struct tandem_node *node, struct tandem_http_request *r,
                                       const struct tandem_route_field *fields, const char *shape)
{
    char why[TANDEM_ERRMSG_SIZE];
    struct users_req *q = tandem_route_write_new(node, r, sizeof *q, 503);
    if (q == NULL) {
        return NULL;
    }
    q->node = node;
    q->r = r;
    if (tandem_route_fields_check(q->base.json, fields, why) != 0) {
        tandem_route_error(node, r, 400, "%s: the body must be %s", why, shape);
        users_req_free(q);
        return NULL;
    }
    return q;
}

static char *body_string(struct users_req *q, const char *field)
{
    json_t *v = json_object_get(q->base.json, field);
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

/* The name in "/v1/users/NAME" + suffix; false when param is not that. */
static bool param_name(const char *param, const char *suffix, char *name)
{
    size_t len = strlen(param), suffix_len = strlen(suffix);
    if (len <= suffix_len || strcmp(param + len - suffix_len, suffix) != 0 ||
        len - suffix_len > TANDEM_USER_NAME_LEN_MAX) {
        return false;
    }
    memcpy(name, param, len - suffix_len);
    name[len - suffix_len] = '\0';
    return strchr(name, '/') == NULL && tandem_user_name_ok(name);
}

/* ---- the threadpool part: hashing and verifying ---- */

static void users_work(uv_work_t *work)
{
    struct users_req *q = work->data;
    const unsigned log2_n = TANDEM_SCRYPT_LOG2_N;
    if (q->job == JOB_LOGIN) {
        q->rv = q->unknown ? tandem_password_verify_unknown(q->password, &q->match, q->errmsg)
                           : tandem_password_verify(q->password, q->old_hash, &q->match, q->errmsg);
        return;
    }
    if (q->job == JOB_PASSWORD) {
        q->old_ok = q->old_password == NULL;
        if (q->old_password != NULL &&
            (q->rv = tandem_password_verify(q->old_password, q->old_hash, &q->old_ok, q->errmsg)) !=
                0) {
            return;
        }
        for (size_t i = 0; i < q->n_history && !q->reused; i++) {
            bool same = false;
            if (tandem_password_verify(q->password, q->history[i], &same, q->errmsg) == 0) {
                q->reused = same;
            }
        }
    }
    q->rv = tandem_password_hash(q->password, log2_n, q->hash, q->errmsg);
}

static void users_work_cb(uv_work_t *work)
{
    tandem_background_run(users_work, work); /* storage/background.h */
}

static void users_after_cb(uv_work_t *work, int status);

/* Runs the hashing of q on the threadpool, then users_after_cb on the loop. */
static void users_queue(struct users_req *q)
{
    q->work.data = q;
    int rv = uv_queue_work(q->node->loop, &q->work, users_work_cb, users_after_cb);
    if (rv != 0) {
        char errmsg[TANDEM_ERRMSG_SIZE];
        tandem_error_from_uv(rv, errmsg, "password hashing");
        tandem_route_error(q->node, q->r, 503, "%s", errmsg);
        users_req_free(q);
    }
}

/* ---- POST /v1/users ---- */

static void create_propose(struct users_req *q)
{
    tandem__user_create__init(&q->create);
    q->create.actor = &q->base.actor;
    q->create.name = q->name;
    q->create.roles = q->roles;
    q->create.site = q->site;
    q->create.password_hash = q->hash;
    q->base.command.body_case = TANDEM__COMMAND__BODY_USER_CREATE;
    q->base.command.user_create = &q->create;
    tandem_route_submit(q->node, q->r, &q->base.command, users_req_free, q);
}

static void route_user_create(struct tandem_node *node, struct tandem_http_request *r,
                              const char *param)
{
    (void)param;
    static const struct tandem_route_field fields[] = {
        TANDEM_REQUIRED("name", STRING), TANDEM_REQUIRED("roles", STRING),
        TANDEM_REQUIRED("site", STRING), TANDEM_REQUIRED("password", STRING), TANDEM_FIELDS_END};
    char why[TANDEM_ERRMSG_SIZE];
    struct users_req *q = users_req_new(
        node, r, fields, "{\"name\", \"roles\": \"viewer,...\", \"site\", \"password\"}");
    if (q == NULL) {
        return;
    }
    const char *name = json_string_value(json_object_get(q->base.json, "name"));
    const char *site = json_string_value(json_object_get(q->base.json, "site"));
    q->job = JOB_CREATE;
    q->password = body_string(q, "password");
    if (strcmp(name, TANDEM_USER_BOOTSTRAP_NAME) == 0 || !tandem_user_name_ok(name)) {
        tandem_route_error(node, r, 400,
                           "a user name is 1 to %d of A-Z a-z 0-9 . _ - and not \"%s\" (the "
                           "bootstrap certificate identity)",
                           TANDEM_USER_NAME_LEN_MAX, TANDEM_USER_BOOTSTRAP_NAME);
    } else if (strlen(site) > TANDEM_USER_SITE_LEN_MAX) {
        tandem_route_error(node, r, 400, "no such site: %s", site);
    } else if (tandem_roles_parse(json_string_value(json_object_get(q->base.json, "roles")),
                                  &q->roles, why) != 0) {
        tandem_route_error(node, r, 400, "%s", why);
    } else if (q->password == NULL || tandem_password_rule_check(q->password, why) != 0) {
        tandem_route_error(node, r, 400, "%s", q->password == NULL ? "out of memory" : why);
    } else {
        snprintf(q->name, sizeof q->name, "%s", name);
        snprintf(q->site, sizeof q->site, "%s", site);
        users_queue(q);
        return;
    }
    users_req_free(q);
}

static bool holds_users(const struct tandem_http_request *r)
{
    const struct tandem_principal *p = &r->principal;
    return p->bootstrap || p->insecure || (p->roles & TANDEM_ROLE_SECURITY_ADMIN) != 0;
}

/* ---- simple updates: roles, disable, delete ---- */

static void update_propose(struct users_req *q, Tandem__UserUpdate__Action action)
{
    tandem__user_update__init(&q->update);
    q->update.actor = &q->base.actor;
    q->update.name = q->name;
    q->update.action = action;
    q->update.roles = q->roles;
    q->update.password_hash = q->hash;
    q->update.history_kept = q->node->config->password_history;
    q->update.expect_generation = q->generation;
    q->base.command.body_case = TANDEM__COMMAND__BODY_USER_UPDATE;
    q->base.command.user_update = &q->update;
    tandem_route_submit(q->node, q->r, &q->base.command, users_req_free, q);
}

static void route_user_roles(struct tandem_node *node, struct tandem_http_request *r,
                             const char *name)
{
    static const struct tandem_route_field fields[] = {TANDEM_REQUIRED("roles", STRING),
                                                       TANDEM_FIELDS_END};
    char why[TANDEM_ERRMSG_SIZE];
    struct users_req *q = users_req_new(node, r, fields, "{\"roles\": \"viewer,...\"}");
    if (q == NULL) {
        return;
    }
    if (tandem_roles_parse(json_string_value(json_object_get(q->base.json, "roles")), &q->roles,
                           why) != 0) {
        tandem_route_error(node, r, 400, "%s", why);
        users_req_free(q);
        return;
    }
    snprintf(q->name, sizeof q->name, "%s", name);
    update_propose(q, TANDEM__USER_UPDATE__ACTION__ROLES);
}

static void route_user_disable(struct tandem_node *node, struct tandem_http_request *r,
                               const char *name)
{
    static const struct tandem_route_field fields[] = {TANDEM_FIELDS_END};
    struct users_req *q = users_req_new(node, r, fields, "{} or empty");
    if (q != NULL) {
        snprintf(q->name, sizeof q->name, "%s", name);
        update_propose(q, TANDEM__USER_UPDATE__ACTION__DISABLE);
    }
}

static void route_user_delete(struct tandem_node *node, struct tandem_http_request *r,
                              const char *param)
{
    static const struct tandem_route_field fields[] = {TANDEM_FIELDS_END};
    if (strchr(param, '/') != NULL || !tandem_user_name_ok(param)) {
        tandem_route_error(node, r, 404, "no such user: %s", param);
        return;
    }
    struct users_req *q = users_req_new(node, r, fields, "empty");
    if (q == NULL) {
        return;
    }
    snprintf(q->name, sizeof q->name, "%s", param);
    tandem__user_delete__init(&q->del);
    q->del.actor = &q->base.actor;
    q->del.name = q->name;
    q->base.command.body_case = TANDEM__COMMAND__BODY_USER_DELETE;
    q->base.command.user_delete = &q->del;
    tandem_route_submit(node, r, &q->base.command, users_req_free, q);
}

/* Reads name's record into q (hash, history, generation). Returns 0, or -1 after answering. */
static int record_load(struct users_req *q, const char *name, Tandem__UserRecord **out)
{
    MDB_txn *txn;
    *out = NULL;
    if (tandem_route_read_txn(q->node, q->r, &txn) != 0) {
        return -1;
    }
    int rv = tandem_user_record_get(txn, &q->node->store, name, out);
    mdb_txn_abort(txn);
    if (rv != 0) {
        tandem_route_error(q->node, q->r, 500, "%s", q->node->store.errmsg);
        return -1;
    }
    return 0;
}

/* ---- POST /v1/users/NAME/password ---- */

static void password_load(struct users_req *q, const Tandem__UserRecord *u)
{
    snprintf(q->old_hash, sizeof q->old_hash, "%s", u->password_hash);
    size_t kept = q->node->config->password_history;
    q->n_history = 0;
    snprintf(q->history[q->n_history++], sizeof q->history[0], "%s", u->password_hash);
    for (size_t i = 0;
         i < u->n_password_history && q->n_history < kept && q->n_history < REUSE_CHECK_MAX; i++) {
        snprintf(q->history[q->n_history++], sizeof q->history[0], "%s", u->password_history[i]);
    }
    q->generation = u->generation;
}

static void route_user_password(struct tandem_node *node, struct tandem_http_request *r,
                                const char *name)
{
    static const struct tandem_route_field fields[] = {TANDEM_OPTIONAL("old_password", STRING),
                                                       TANDEM_REQUIRED("new_password", STRING),
                                                       TANDEM_FIELDS_END};
    char why[TANDEM_ERRMSG_SIZE];
    Tandem__UserRecord *u = NULL;
    struct users_req *q = users_req_new(node, r, fields, "{\"old_password\", \"new_password\"}");
    if (q == NULL) {
        return;
    }
    bool self = r->principal.kind == TANDEM_PRINCIPAL_USER && strcmp(r->principal.name, name) == 0;
    q->job = JOB_PASSWORD;
    q->password = body_string(q, "new_password");
    q->old_password = body_string(q, "old_password");
    snprintf(q->name, sizeof q->name, "%s", name);
    if (self && q->old_password == NULL) {
        tandem_route_error(node, r, 400, "changing one's own password needs \"old_password\"");
    } else if (!self && !holds_users(r)) {
        tandem_route_error(node, r, 403,
                           "permission \"users\" needed to reset another user's password");
    } else if (q->password == NULL || tandem_password_rule_check(q->password, why) != 0) {
        tandem_route_error(node, r, 400, "%s", q->password == NULL ? "out of memory" : why);
    } else if (record_load(q, name, &u) != 0) {
        users_req_free(q);
        return;
    } else if (u == NULL) {
        tandem_route_error(node, r, 404, "no such user: %s", name);
    } else {
        password_load(q, u);
        tandem__user_record__free_unpacked(u, NULL);
        users_queue(q);
        return;
    }
    users_req_free(q);
}

static void password_after(struct users_req *q)
{
    if (!q->old_ok) {
        tandem_route_error(q->node, q->r, 403, "old_password does not match");
    } else if (q->reused) {
        tandem_route_error(q->node, q->r, 400,
                           "password rule: may not repeat any of the last %u passwords",
                           q->node->config->password_history);
    } else {
        update_propose(q, TANDEM__USER_UPDATE__ACTION__PASSWORD);
        return;
    }
    users_req_free(q);
}

/* ---- POST /v1/auth/login ---- */

/* Every login outcome is audited: success, failure, lockout and refusal (never the password). */
static void login_audit(struct users_req *q, const char *name, int status, const char *detail)
{
    tandem_audit(q->node, q->r, status == 200 ? "login" : "login_failed", name, status, detail);
}

/* ?cookie=1 (the web console, issue 15): the token goes into an HttpOnly cookie instead of the
 * body, so no script of the page can read it. */
static void login_respond(struct users_req *q, const char *token, const char *expires)
{
    char value[8], cookie[TANDEM_AUTHZ_COOKIE_HEADER_MAX] = "";
    bool as_cookie = tandem_http_query_get(q->r->query, "cookie", value, sizeof value) == 1 &&
                     strcmp(value, "1") == 0;
    long long max_age_s = (long long)q->node->config->token_ttl_minutes * 60;
    if (!as_cookie) {
        tandem_route_jansson(q->node, q->r, 200,
                             json_pack("{s:s,s:s}", "token", token, "expires", expires));
    } else if (tandem_authz_cookie_header(token, max_age_s, cookie, sizeof cookie) != 0) {
        tandem_route_error(q->node, q->r, 500, "the token does not fit a cookie");
    } else {
        json_t *body = json_pack("{s:s,s:s}", "user", q->name, "expires", expires);
        char *text = body == NULL ? NULL : json_dumps(body, JSON_COMPACT);
        tandem_route_json(q->node, q->r, text == NULL ? 500 : 200, cookie,
                          text == NULL ? "{\"error\":\"out of memory\"}" : text);
        free(text);
        json_decref(body);
    }
    OPENSSL_cleanse(cookie, sizeof cookie);
}

static void login_answer(struct users_req *q)
{
    char token[TANDEM_TOKEN_LEN_MAX + 1], expires[TANDEM_RFC3339_LEN_MAX + 1];
    int64_t expires_ms =
        tandem_wall_ms() + (int64_t)q->node->config->token_ttl_minutes * MS_PER_MINUTE;
    if (tandem_token_sign(q->key, q->name, q->generation, expires_ms, token, q->errmsg) != 0) {
        tandem_route_error(q->node, q->r, 500, "%s", q->errmsg);
    } else {
        tandem_rfc3339_format_ms(expires_ms, expires);
        login_audit(q, q->name, 200, "token issued");
        login_respond(q, token, expires);
        OPENSSL_cleanse(token, sizeof token);
    }
    users_req_free(q);
}

/* Reads the replicated key into q->key: 0, TANDEM_NOTFOUND, or -1 after answering. */
static int login_key(struct users_req *q)
{
    MDB_txn *txn;
    if (tandem_route_read_txn(q->node, q->r, &txn) != 0) {
        return -1;
    }
    int rv = tandem_token_key_get(txn, &q->node->store, q->key);
    mdb_txn_abort(txn);
    if (rv != 0 && rv != TANDEM_NOTFOUND) {
        tandem_route_error(q->node, q->r, 500, "%s", q->node->store.errmsg);
        return -1;
    }
    return rv;
}

static void login_key_set_cb(struct tandem_write *w, int status, struct tandem_result *result)
{
    struct users_req *q = w->data;
    (void)result;
    if (status != 0) {
        tandem_route_raft_error(q->node, q->r, status);
        users_req_free(q);
        return;
    }
    int rv = login_key(q);
    if (rv == 0) {
        login_answer(q);
        return;
    }
    if (rv == TANDEM_NOTFOUND) {
        tandem_route_error(q->node, q->r, 500, "the token key did not commit");
    }
    users_req_free(q);
}

/* The first login ever: the leader makes the key and proposes it; every node uses it after. */
static void login_key_propose(struct users_req *q)
{
    uint8_t key[TANDEM_TOKEN_KEY_LEN];
    if (RAND_bytes(key, sizeof key) != 1) {
        tandem_error_from_ssl(q->errmsg, "token key");
        tandem_route_error(q->node, q->r, 500, "%s", q->errmsg);
        users_req_free(q);
        return;
    }
    memcpy(q->key, key, sizeof key); /* the command borrows it until the callback */
    OPENSSL_cleanse(key, sizeof key);
    tandem__token_key_set__init(&q->key_set);
    q->key_set.key.data = q->key;
    q->key_set.key.len = sizeof q->key;
    q->base.command.body_case = TANDEM__COMMAND__BODY_TOKEN_KEY_SET;
    q->base.command.token_key_set = &q->key_set;
    q->write =
        (struct tandem_write){.command = &q->base.command, .data = q, .cb = login_key_set_cb};
    int rv = tandem_proposer_write(&q->node->proposer, &q->write);
    if (rv != 0) {
        tandem_route_raft_error(q->node, q->r, rv);
        users_req_free(q);
    }
}

static void login_attempt_cb(struct tandem_write *w, int status, struct tandem_result *result)
{
    struct users_req *q = w->data;
    if (status != 0) {
        tandem_route_raft_error(q->node, q->r, status);
        users_req_free(q);
        return;
    }
    if (!q->match) {
        bool locked = result != NULL && result->body != NULL &&
                      strstr(result->body, "\"locked_until\"") != NULL;
        login_audit(q, q->name, 401, locked ? "wrong password: user locked" : "wrong password");
        tandem_route_error(q->node, q->r, 401, "wrong user or password");
        users_req_free(q);
        return;
    }
    if (q->expired) {
        login_audit(q, q->name, 403, "password expired");
        tandem_route_error(q->node, q->r, 403,
                           "password expired: change it with POST /v1/users/%s/password", q->name);
        users_req_free(q);
        return;
    }
    int rv = login_key(q);
    if (rv == 0) {
        login_answer(q);
    } else if (rv == TANDEM_NOTFOUND) {
        login_key_propose(q);
    } else {
        users_req_free(q);
    }
}

static void login_after(struct users_req *q)
{
    if (q->unknown) { /* the answer of a wrong password, after as much work */
        login_audit(q, q->name, 401, "unknown user");
        tandem_route_error(q->node, q->r, 401, "wrong user or password");
        users_req_free(q);
        return;
    }
    tandem__auth_attempt__init(&q->attempt);
    q->attempt.name = q->name;
    q->attempt.success = q->match;
    q->attempt.lockout_failures = q->node->config->lockout_failures;
    q->attempt.lockout_ms = (int64_t)q->node->config->lockout_minutes * MS_PER_MINUTE;
    q->base.command.body_case = TANDEM__COMMAND__BODY_AUTH_ATTEMPT;
    q->base.command.auth_attempt = &q->attempt;
    q->write =
        (struct tandem_write){.command = &q->base.command, .data = q, .cb = login_attempt_cb};
    int rv = tandem_proposer_write(&q->node->proposer, &q->write);
    if (rv != 0) {
        tandem_route_raft_error(q->node, q->r, rv);
        users_req_free(q);
    }
}

/* Refuses a login before any hashing: disabled or locked (an unknown user is answered after the
 * same scrypt, not here). -1 after answering. */
static int login_refused(struct users_req *q, const Tandem__UserRecord *u, int64_t now_ms)
{
    char until[TANDEM_RFC3339_LEN_MAX + 1];
    if (u == NULL) {
        return 0; /* answered after the same scrypt as a wrong password (login_after) */
    }
    if (u->disabled) {
        login_audit(q, u->name, 403, "user disabled");
        tandem_route_error(q->node, q->r, 403, "user %s is disabled", u->name);
    } else if (u->locked_until_ms > now_ms) {
        tandem_rfc3339_format_ms(u->locked_until_ms, until);
        login_audit(q, u->name, 403, "user locked");
        tandem_route_error(q->node, q->r, 403, "locked until %s", until);
    } else {
        return 0;
    }
    return -1;
}

static void route_login(struct tandem_node *node, struct tandem_http_request *r, const char *param)
{
    (void)param;
    static const struct tandem_route_field fields[] = {
        TANDEM_REQUIRED("user", STRING), TANDEM_REQUIRED("password", STRING), TANDEM_FIELDS_END};
    Tandem__UserRecord *u = NULL;
    struct users_req *q = users_req_new(node, r, fields, "{\"user\", \"password\"}");
    if (q == NULL) {
        return;
    }
    const char *name = json_string_value(json_object_get(q->base.json, "user"));
    q->job = JOB_LOGIN;
    q->password = body_string(q, "password");
    int64_t now_ms = tandem_wall_ms();
    if (q->password == NULL || record_load(q, name, &u) != 0 || login_refused(q, u, now_ms) != 0) {
        tandem__user_record__free_unpacked(u, NULL);
        users_req_free(q);
        return;
    }
    if (u == NULL) { /* unknown: the same scrypt as a known user's check, then 401 */
        q->unknown = true;
        snprintf(q->name, sizeof q->name, "%s", name);
        users_queue(q);
        return;
    }
    snprintf(q->name, sizeof q->name, "%s", u->name);
    snprintf(q->old_hash, sizeof q->old_hash, "%s", u->password_hash);
    q->generation = u->generation;
    q->expired =
        u->password_changed_ms + (int64_t)node->config->password_max_age_days * MS_PER_DAY <=
        now_ms;
    tandem__user_record__free_unpacked(u, NULL);
    users_queue(q);
}

static void users_after_cb(uv_work_t *work, int status)
{
    struct users_req *q = work->data;
    if (status != 0 || q->rv != 0) {
        tandem_route_error(q->node, q->r, status != 0 ? 503 : 500, "%s",
                           status != 0 ? "password hashing cancelled" : q->errmsg);
        users_req_free(q);
    } else if (q->job == JOB_CREATE) {
        create_propose(q);
    } else if (q->job == JOB_PASSWORD) {
        password_after(q);
    } else {
        login_after(q);
    }
}

/* ---- GET /v1/users ---- */

static int list_visit(void *arg, const Tandem__UserRecord *record)
{
    json_t *user = tandem_user_json(record);
    return user == NULL || json_array_append_new(arg, user) != 0 ? TANDEM_NOMEM : 0;
}

static void serve_users(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    (void)arg;
    MDB_txn *txn;
    json_t *users = json_array();
    if (users == NULL || tandem_route_read_txn(node, r, &txn) != 0) {
        json_decref(users);
        return;
    }
    int rv = tandem_users_each(txn, &node->store, list_visit, users);
    mdb_txn_abort(txn);
    if (rv != 0) {
        json_decref(users);
        tandem_route_error(node, r, 500, "%s",
                           rv == TANDEM_NOMEM ? "out of memory" : node->store.errmsg);
        return;
    }
    tandem_route_jansson(node, r, 200, json_pack("{s:o}", "users", users));
}

static void route_users_list(struct tandem_node *node, struct tandem_http_request *r,
                             const char *param)
{
    (void)param;
    tandem_route_read(node, r, serve_users, NULL, NULL);
}

/* POST /v1/users/NAME/{roles,disable,password} */
static void route_user_post(struct tandem_node *node, struct tandem_http_request *r,
                            const char *param)
{
    char name[TANDEM_USER_NAME_LEN_MAX + 1];
    bool admin_route = param_name(param, "/roles", name) || param_name(param, "/disable", name);
    if (admin_route && !holds_users(r)) {
        tandem_route_error(node, r, 403, "permission \"users\" needed");
    } else if (param_name(param, "/roles", name)) {
        route_user_roles(node, r, name);
    } else if (param_name(param, "/disable", name)) {
        route_user_disable(node, r, name);
    } else if (param_name(param, "/password", name)) {
        route_user_password(node, r, name);
    } else {
        tandem_route_error(node, r, 404,
                           "no such route: %s (POST /v1/users/NAME/roles|disable|password)",
                           r->path);
    }
}

static const struct tandem_route users_rows[] = {
    {"users_create", HTTP_POST, "/v1/users", TANDEM_ROUTE_WRITE | TANDEM_ROUTE_SESSION,
     route_user_create, TANDEM_PERM_USERS},
    {"users_list", HTTP_GET, "/v1/users", TANDEM_ROUTE_READ, route_users_list, TANDEM_PERM_USERS},
    /* roles and disable need USERS; password is SELF (one's own, with old_password) and checks
     * the USERS part for a reset itself. */
    {"users_post", HTTP_POST, USERS_PREFIX,
     TANDEM_ROUTE_WRITE | TANDEM_ROUTE_PREFIX | TANDEM_ROUTE_SESSION, route_user_post,
     TANDEM_PERM_SELF},
    {"users_delete", HTTP_DELETE, USERS_PREFIX,
     TANDEM_ROUTE_WRITE | TANDEM_ROUTE_PREFIX | TANDEM_ROUTE_SESSION, route_user_delete,
     TANDEM_PERM_USERS},
    {"auth_login", HTTP_POST, "/v1/auth/login", TANDEM_ROUTE_WRITE | TANDEM_ROUTE_SESSION,
     route_login, TANDEM_PERM_PUBLIC},
};

const struct tandem_route_table tandem_users_route_table = {
    users_rows, (unsigned)(sizeof users_rows / sizeof users_rows[0])};
