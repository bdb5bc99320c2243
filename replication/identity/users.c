/* Applying the user commands: create, roles, disable/enable, password, delete, the outcome of a
 * login (failure count and lockout) and the token signing key, all on the batch's leader clock
 * and with the policy figures the proposing node put into the command, so every node agrees. */
#include <stdio.h>
#include <string.h>

#include "replication/bcp/sites.h"
#include "replication/identity/users.h"
#include "storage/domain_codec.h"
#include "storage/error.h"

/* (roles.h is not included here: its enum tandem_role clashes with consensus/member.h's, which
 * bcp/sites.h brings in; users_store.c holds what needs the role names.) */

#define USER_KEY_LEN_MAX  (sizeof TANDEM_USER_KEY_PREFIX + TANDEM_USER_NAME_LEN_MAX)
#define HASH_SCHEME       "scrypt$"
#define ACTOR_FALLBACK    "unknown"
#define MS_PER_MINUTE     60000LL
#define LOCKOUT_MS_MAX    (366LL * 24 * 60 * MS_PER_MINUTE)
#define LOCKOUT_FAILS_MAX 1000u

static int user_put(const struct tandem_apply_ctx *ctx, const Tandem__UserRecord *record)
{
    char key[USER_KEY_LEN_MAX];
    snprintf(key, sizeof key, TANDEM_USER_KEY_PREFIX "%s", record->name);
    MDB_val k = {.mv_size = strlen(key), .mv_data = key};
    MDB_val v = {.mv_size = tandem__user_record__get_packed_size(record)};
    int rv = mdb_put(ctx->txn, ctx->store->dbi[TANDEM_DB_USERS], &k, &v, MDB_RESERVE);
    if (rv != 0) {
        return tandem_error_from_mdb(rv, ctx->store->errmsg, "users put");
    }
    tandem__user_record__pack(record, v.mv_data);
    return 0;
}

static bool hash_ok(const char *hash)
{
    return hash != NULL && strncmp(hash, HASH_SCHEME, strlen(HASH_SCHEME)) == 0 &&
           strlen(hash) <= TANDEM_USER_HASH_LEN_MAX;
}

static const char *actor_name(const Tandem__Actor *actor)
{
    return actor != NULL && actor->user != NULL && actor->user[0] != '\0' ? actor->user
                                                                          : ACTOR_FALLBACK;
}

static int site_registered(const struct tandem_apply_ctx *ctx, const char *site, bool *registered)
{
    static struct tandem_site_table table; /* apply runs on the loop thread only */
    int rv = tandem_sites_load(ctx->store, ctx->txn, &table);
    *registered = rv == 0 && tandem_site_table_find(&table, site) != NULL;
    return rv;
}

/* false when the create may go ahead; true when result says why not, or *store_rv holds a store
 * error. */
static bool create_refused(const struct tandem_apply_ctx *ctx, const Tandem__UserCreate *in,
                           struct tandem_result *result, int *store_rv)
{
    bool registered = false;
    *store_rv = 0;
    if (in->name != NULL && strcmp(in->name, TANDEM_USER_BOOTSTRAP_NAME) == 0) {
        tandem_result_error(result, 400,
                            "\"%s\" is the bootstrap certificate identity and cannot be a user",
                            TANDEM_USER_BOOTSTRAP_NAME);
    } else if (in->name == NULL || !tandem_user_name_ok(in->name)) {
        tandem_result_error(result, 400, "a user name is 1 to %d of A-Z a-z 0-9 . _ -",
                            TANDEM_USER_NAME_LEN_MAX);
    } else if (!tandem_user_roles_ok(in->roles)) {
        tandem_result_error(result, 400, "a user needs at least one known role");
    } else if (!hash_ok(in->password_hash)) {
        tandem_result_error(result, 400, "the password hash is not an scrypt hash");
    } else if (in->site == NULL || in->site[0] == '\0') {
        tandem_result_error(result, 400, "a user needs a home site");
    } else if ((*store_rv = site_registered(ctx, in->site, &registered)) != 0) {
        return true;
    } else if (!registered) {
        tandem_result_error(result, 400, "no such site: %s (a user's home site is registered)",
                            in->site);
    } else {
        return false;
    }
    return true;
}

int tandem_apply_user_create(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                             struct tandem_result *result)
{
    const Tandem__UserCreate *in = command->user_create;
    int rv = 0;
    if (in == NULL) {
        tandem_result_error(result, 400, "empty user create");
        return 0;
    }
    if (create_refused(ctx, in, result, &rv)) {
        return rv;
    }
    Tandem__UserRecord *old = NULL;
    if ((rv = tandem_user_record_get(ctx->txn, ctx->store, in->name, &old)) != 0) {
        return rv;
    }
    if (old != NULL) {
        tandem__user_record__free_unpacked(old, NULL);
        tandem_result_error(result, 409, "user %s already exists", in->name);
        return 0;
    }
    Tandem__UserRecord r = TANDEM__USER_RECORD__INIT;
    r.name = in->name;
    r.roles = in->roles;
    r.site = in->site;
    r.password_hash = in->password_hash;
    r.password_changed_ms = r.created_ms = r.updated_ms = ctx->now_ms;
    /* The raft index, not a counter from 1: a token of a deleted user can never match a user
     * created again under the same name. */
    r.generation = ctx->index;
    r.create_index = r.mod_index = ctx->index;
    r.created_by = (char *)actor_name(in->actor);
    if ((rv = user_put(ctx, &r)) != 0) {
        return rv;
    }
    tandem_result_jansson(result, 201, tandem_user_json(&r));
    return 0;
}

/* The new password's hash goes first; earlier ones follow, newest first, so that the record
 * holds history_kept hashes in all (the current one included). */
static int password_set(const struct tandem_apply_ctx *ctx, Tandem__UserRecord *r,
                        const Tandem__UserUpdate *in, char **history, struct tandem_result *result)
{
    if (!hash_ok(in->password_hash)) {
        tandem_result_error(result, 400, "the password hash is not an scrypt hash");
        return -1;
    }
    if (in->expect_generation != 0 && in->expect_generation != r->generation) {
        tandem_result_error(result, 409, "user %s changed meanwhile: try again", r->name);
        return -1;
    }
    size_t kept =
        in->history_kept > TANDEM_USER_HISTORY_MAX ? TANDEM_USER_HISTORY_MAX : in->history_kept;
    size_t n = 0;
    if (kept > 1) {
        history[n++] = r->password_hash;
        for (size_t i = 0; i < r->n_password_history && n < kept - 1; i++) {
            history[n++] = r->password_history[i];
        }
    }
    r->password_history = history;
    r->n_password_history = n;
    r->password_hash = in->password_hash;
    r->password_changed_ms = ctx->now_ms;
    r->failed_attempts = 0;
    r->locked_until_ms = 0;
    return 0;
}

/* Applies in's action to r (a copy of the stored record); -1 when result says it is refused. */
static int update_record(const struct tandem_apply_ctx *ctx, Tandem__UserRecord *r,
                         const Tandem__UserUpdate *in, char **history, struct tandem_result *result)
{
    switch (in->action) {
        case TANDEM__USER_UPDATE__ACTION__ROLES:
            if (!tandem_user_roles_ok(in->roles)) {
                tandem_result_error(result, 400, "a user needs at least one known role");
                return -1;
            }
            r->roles = in->roles;
            break;
        case TANDEM__USER_UPDATE__ACTION__DISABLE:
            r->disabled = true;
            break;
        case TANDEM__USER_UPDATE__ACTION__ENABLE:
            r->disabled = false;
            return 0; /* no session to end: the generation stays */
        case TANDEM__USER_UPDATE__ACTION__PASSWORD:
            if (password_set(ctx, r, in, history, result) != 0) {
                return -1;
            }
            break;
        default:
            tandem_result_error(result, 400, "unknown user action %d", (int)in->action);
            return -1;
    }
    r->generation = ctx->index; /* ends every token issued before */
    return 0;
}

int tandem_apply_user_update(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                             struct tandem_result *result)
{
    const Tandem__UserUpdate *in = command->user_update;
    Tandem__UserRecord *old = NULL;
    char *history[TANDEM_USER_HISTORY_MAX];
    int rv = 0;
    if (in == NULL || in->name == NULL) {
        tandem_result_error(result, 400, "empty user update");
        return 0;
    }
    if ((rv = tandem_user_record_get(ctx->txn, ctx->store, in->name, &old)) != 0) {
        return rv;
    }
    if (old == NULL) {
        tandem_result_error(result, 404, "no such user: %s", in->name);
        return 0;
    }
    Tandem__UserRecord next = *old; /* shallow: borrows old's and the command's strings */
    if (update_record(ctx, &next, in, history, result) == 0) {
        next.updated_ms = ctx->now_ms;
        next.mod_index = ctx->index;
        if ((rv = user_put(ctx, &next)) == 0) {
            tandem_result_jansson(result, 200, tandem_user_json(&next));
        }
    }
    tandem__user_record__free_unpacked(old, NULL);
    return rv;
}

int tandem_apply_user_delete(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                             struct tandem_result *result)
{
    const Tandem__UserDelete *in = command->user_delete;
    char key[USER_KEY_LEN_MAX];
    if (in == NULL || in->name == NULL || !tandem_user_name_ok(in->name)) {
        tandem_result_error(result, 404, "no such user: %s",
                            in != NULL && in->name ? in->name : "");
        return 0;
    }
    snprintf(key, sizeof key, TANDEM_USER_KEY_PREFIX "%s", in->name);
    MDB_val k = {.mv_size = strlen(key), .mv_data = key};
    int rv = mdb_del(ctx->txn, ctx->store->dbi[TANDEM_DB_USERS], &k, NULL);
    if (rv == MDB_NOTFOUND) {
        tandem_result_error(result, 404, "no such user: %s", in->name);
        return 0;
    }
    if (rv != 0) {
        return tandem_error_from_mdb(rv, ctx->store->errmsg, "users delete");
    }
    tandem_result_set(result, 200, "{\"deleted\":\"%s\"}", in->name);
    return 0;
}

/* A success clears the failure count; a failure counts, and the lockout_failures-th in a row
 * locks the user for lockout_ms from the batch's time (the count starts again afterwards). */
static void attempt_count(const struct tandem_apply_ctx *ctx, Tandem__UserRecord *r,
                          const Tandem__AuthAttempt *in)
{
    if (in->success) {
        r->failed_attempts = 0;
        r->locked_until_ms = 0;
        return;
    }
    r->failed_attempts++;
    uint32_t fails =
        in->lockout_failures > LOCKOUT_FAILS_MAX ? LOCKOUT_FAILS_MAX : in->lockout_failures;
    int64_t lock_ms = in->lockout_ms < 0                ? 0
                      : in->lockout_ms > LOCKOUT_MS_MAX ? LOCKOUT_MS_MAX
                                                        : in->lockout_ms;
    if (fails > 0 && r->failed_attempts >= fails) {
        r->locked_until_ms = ctx->now_ms + lock_ms;
        r->failed_attempts = 0;
    }
}

int tandem_apply_auth_attempt(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                              struct tandem_result *result)
{
    const Tandem__AuthAttempt *in = command->auth_attempt;
    Tandem__UserRecord *old = NULL;
    if (in == NULL || in->name == NULL) {
        tandem_result_error(result, 400, "empty login outcome");
        return 0;
    }
    int rv = tandem_user_record_get(ctx->txn, ctx->store, in->name, &old);
    if (rv != 0 || old == NULL) {
        tandem_result_error(result, 404, "no such user: %s", in->name);
        return rv;
    }
    Tandem__UserRecord next = *old;
    attempt_count(ctx, &next, in);
    next.mod_index = ctx->index;
    if ((rv = user_put(ctx, &next)) == 0) {
        tandem_result_jansson(result, 200, tandem_user_json(&next));
    }
    tandem__user_record__free_unpacked(old, NULL);
    return rv;
}

int tandem_apply_token_key_set(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                               struct tandem_result *result)
{
    const Tandem__TokenKeySet *in = command->token_key_set;
    uint8_t existing[TANDEM_TOKEN_KEY_LEN];
    if (in == NULL || in->key.len != TANDEM_TOKEN_KEY_LEN) {
        tandem_result_error(result, 400, "a token key is %d bytes", TANDEM_TOKEN_KEY_LEN);
        return 0;
    }
    int rv = tandem_token_key_get(ctx->txn, ctx->store, existing);
    if (rv == TANDEM_OK) {
        /* Two leaders' first logins may race: the first key committed is everybody's. */
        tandem_result_set(result, 200, "{\"key_set\":false}");
        return 0;
    }
    if (rv != TANDEM_NOTFOUND) {
        return rv;
    }
    Tandem__TokenKey record = TANDEM__TOKEN_KEY__INIT;
    record.key = in->key;
    record.created_ms = ctx->now_ms;
    record.index = ctx->index;
    MDB_val k = {.mv_size = strlen(TANDEM_TOKEN_KEY_KEY), .mv_data = (void *)TANDEM_TOKEN_KEY_KEY};
    MDB_val v = {.mv_size = tandem__token_key__get_packed_size(&record)};
    if ((rv = mdb_put(ctx->txn, ctx->store->dbi[TANDEM_DB_USERS], &k, &v, MDB_RESERVE)) != 0) {
        return tandem_error_from_mdb(rv, ctx->store->errmsg, "token key put");
    }
    tandem__token_key__pack(&record, v.mv_data);
    tandem_result_set(result, 200, "{\"key_set\":true}");
    return 0;
}
