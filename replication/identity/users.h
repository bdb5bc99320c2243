/* Per-person user records (issue 13): their layout in the users database, the lookup the
 * principal resolution and the login use, the replicated commands that change them (create,
 * roles, disable, delete, password, login outcome) and the token signing key. */
#ifndef TANDEM_REPLICATION_IDENTITY_USERS_H
#define TANDEM_REPLICATION_IDENTITY_USERS_H

#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication/apply.h"
#include "storage/store.h"
#include "tandem.pb-c.h"

/* ---- limits ---- */
#define TANDEM_USER_NAME_LEN_MAX     63 /* [A-Za-z0-9._-], like node names and certificate CNs */
#define TANDEM_USER_NAME_PUNCTUATION "._-"
#define TANDEM_USER_SITE_LEN_MAX     31      /* TANDEM_SITE_LEN_MAX */
#define TANDEM_USER_HASH_LEN_MAX     255     /* "scrypt$N$r$p$salt$hash" text */
#define TANDEM_USER_HISTORY_MAX      24      /* earlier hashes one record may keep */
#define TANDEM_USER_BOOTSTRAP_NAME   "admin" /* certs.sh's bootstrap certificate: never a user */
#define TANDEM_USERS_LIST_MAX        10000   /* users one listing returns */
#define TANDEM_TOKEN_KEY_LEN         32      /* bytes of the HMAC-SHA256 signing key */

/* Key layout in TANDEM_DB_USERS: "u/<name>" -> UserRecord, "token_key" -> TokenKey. */
#define TANDEM_USER_KEY_PREFIX "u/"
#define TANDEM_TOKEN_KEY_KEY   "token_key"

/* What the rest of the node needs to know of a user (never the hash). */
struct tandem_user {
    char name[TANDEM_USER_NAME_LEN_MAX + 1];
    uint32_t roles; /* replication/identity/roles.h bits */
    char site[TANDEM_USER_SITE_LEN_MAX + 1];
    bool disabled;
    int64_t locked_until_ms;     /* 0: never locked; compare with the caller's now */
    int64_t password_changed_ms; /* leader clock of the last password change */
    uint64_t generation;         /* bumped by every change that must end sessions: disable, delete,
                                    roles, password */
    uint32_t failed_attempts;    /* consecutive failed logins */
    int64_t created_ms;
};

/* Reads user name as committed in txn (any transaction of store). Returns TANDEM_OK,
 * TANDEM_NOTFOUND (also for a name that is no valid user name), or another tandem error with
 * store->errmsg. */
int tandem_user_get(MDB_txn *txn, struct tandem_store *store, const char *name,
                    struct tandem_user *out);

/* The whole record, hash and history included (for the password checks on the leader's API).
 * *out is NULL when absent; the caller frees it with tandem__user_record__free_unpacked.
 * Returns 0 or a tandem error with store->errmsg. */
int tandem_user_record_get(MDB_txn *txn, struct tandem_store *store, const char *name,
                           Tandem__UserRecord **out);

/* The token signing key into key (TANDEM_TOKEN_KEY_LEN bytes). Returns TANDEM_OK,
 * TANDEM_NOTFOUND when none was set yet, or another error with store->errmsg. */
int tandem_token_key_get(MDB_txn *txn, struct tandem_store *store,
                         uint8_t key[TANDEM_TOKEN_KEY_LEN]);

/* A user name: 1..63 of [A-Za-z0-9._-], and not the bootstrap name. */
bool tandem_user_name_ok(const char *name);

/* Visits every user in name order (at most TANDEM_USERS_LIST_MAX); visit returns non-zero to
 * stop with that value. Returns 0, the visitor's value, or a store error. */
int tandem_users_each(MDB_txn *txn, struct tandem_store *store,
                      int (*visit)(void *arg, const Tandem__UserRecord *record), void *arg);

/* A non-empty set of known roles. */
bool tandem_user_roles_ok(uint32_t roles);

/* A record as people see it, never with a hash: {"name","roles":[..],"site","disabled","created",
 * "password_changed","failed_attempts","locked_until"?} (times RFC 3339). NULL when out of
 * memory. */
json_t *tandem_user_json(const Tandem__UserRecord *record);

/* The commands this folder applies (a row group of replication/commands.h's table). */
#define TANDEM_USER_COMMANDS(X)                                                                    \
    X(user_create, TANDEM__COMMAND__BODY_USER_CREATE, tandem_apply_user_create)                    \
    X(user_update, TANDEM__COMMAND__BODY_USER_UPDATE, tandem_apply_user_update)                    \
    X(user_delete, TANDEM__COMMAND__BODY_USER_DELETE, tandem_apply_user_delete)                    \
    X(auth_attempt, TANDEM__COMMAND__BODY_AUTH_ATTEMPT, tandem_apply_auth_attempt)                 \
    X(token_key_set, TANDEM__COMMAND__BODY_TOKEN_KEY_SET, tandem_apply_token_key_set)

#endif
