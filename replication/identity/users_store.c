/* Reading user records and the token signing key from the users database: the lookups the
 * principal resolution, the login and the listing share. */
#include <stdio.h>
#include <string.h>

#include "replication/identity/roles.h"
#include "replication/identity/users.h"
#include "storage/domain_codec.h"
#include "storage/error.h"
#include "storage/token.h"

#define USER_KEY_LEN_MAX (sizeof TANDEM_USER_KEY_PREFIX + TANDEM_USER_NAME_LEN_MAX)

bool tandem_user_name_ok(const char *name)
{
    return tandem_token_ok(name, TANDEM_USER_NAME_LEN_MAX, TANDEM_USER_NAME_PUNCTUATION) &&
           strcmp(name, TANDEM_USER_BOOTSTRAP_NAME) != 0;
}

static int users_get(MDB_txn *txn, struct tandem_store *store, const char *key, MDB_val *value)
{
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key};
    int rv = mdb_get(txn, store->dbi[TANDEM_DB_USERS], &k, value);
    if (rv == MDB_NOTFOUND) {
        return TANDEM_NOTFOUND;
    }
    return tandem_error_from_mdb(rv, store->errmsg, "users get");
}

int tandem_user_record_get(MDB_txn *txn, struct tandem_store *store, const char *name,
                           Tandem__UserRecord **out)
{
    char key[USER_KEY_LEN_MAX];
    MDB_val v;
    *out = NULL;
    if (!tandem_user_name_ok(name)) {
        return 0;
    }
    snprintf(key, sizeof key, TANDEM_USER_KEY_PREFIX "%s", name);
    int rv = users_get(txn, store, key, &v);
    if (rv == TANDEM_NOTFOUND) {
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    *out = tandem__user_record__unpack(NULL, v.mv_size, v.mv_data);
    if (*out == NULL) {
        return tandem_error_set(store->errmsg, TANDEM_CORRUPT, "corrupt user record %s", name);
    }
    return 0;
}

static void user_from_record(const Tandem__UserRecord *r, struct tandem_user *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", r->name);
    out->roles = r->roles;
    snprintf(out->site, sizeof out->site, "%s", r->site);
    out->disabled = r->disabled;
    out->locked_until_ms = r->locked_until_ms;
    out->password_changed_ms = r->password_changed_ms;
    out->generation = r->generation;
    out->failed_attempts = r->failed_attempts;
    out->created_ms = r->created_ms;
}

int tandem_user_get(MDB_txn *txn, struct tandem_store *store, const char *name,
                    struct tandem_user *out)
{
    Tandem__UserRecord *record = NULL;
    int rv = tandem_user_record_get(txn, store, name, &record);
    if (rv != 0) {
        return rv;
    }
    if (record == NULL) {
        return TANDEM_NOTFOUND;
    }
    user_from_record(record, out);
    tandem__user_record__free_unpacked(record, NULL);
    return TANDEM_OK;
}

int tandem_token_key_get(MDB_txn *txn, struct tandem_store *store,
                         uint8_t key[TANDEM_TOKEN_KEY_LEN])
{
    MDB_val v;
    int rv = users_get(txn, store, TANDEM_TOKEN_KEY_KEY, &v);
    if (rv != 0) {
        return rv;
    }
    Tandem__TokenKey *record = tandem__token_key__unpack(NULL, v.mv_size, v.mv_data);
    if (record == NULL || record->key.len != TANDEM_TOKEN_KEY_LEN) {
        tandem__token_key__free_unpacked(record, NULL);
        return tandem_error_set(store->errmsg, TANDEM_CORRUPT, "corrupt token key record");
    }
    memcpy(key, record->key.data, TANDEM_TOKEN_KEY_LEN);
    tandem__token_key__free_unpacked(record, NULL);
    return TANDEM_OK;
}

static int users_each_row(MDB_cursor *cursor, struct tandem_store *store,
                          int (*visit)(void *arg, const Tandem__UserRecord *record), void *arg)
{
    const size_t prefix_len = strlen(TANDEM_USER_KEY_PREFIX);
    MDB_val k = {.mv_size = prefix_len, .mv_data = (void *)TANDEM_USER_KEY_PREFIX}, v;
    int rv = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    for (unsigned n = 0; rv == 0 && n < TANDEM_USERS_LIST_MAX; n++) {
        if (k.mv_size < prefix_len || memcmp(k.mv_data, TANDEM_USER_KEY_PREFIX, prefix_len) != 0) {
            return 0;
        }
        Tandem__UserRecord *record = tandem__user_record__unpack(NULL, v.mv_size, v.mv_data);
        if (record == NULL) {
            return tandem_error_set(store->errmsg, TANDEM_CORRUPT, "corrupt user record");
        }
        int stop = visit(arg, record);
        tandem__user_record__free_unpacked(record, NULL);
        if (stop != 0) {
            return stop;
        }
        rv = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
    }
    return rv == MDB_NOTFOUND ? 0 : tandem_error_from_mdb(rv, store->errmsg, "users scan");
}

int tandem_users_each(MDB_txn *txn, struct tandem_store *store,
                      int (*visit)(void *arg, const Tandem__UserRecord *record), void *arg)
{
    MDB_cursor *cursor;
    int rv = mdb_cursor_open(txn, store->dbi[TANDEM_DB_USERS], &cursor);
    if (rv != 0) {
        return tandem_error_from_mdb(rv, store->errmsg, "users cursor");
    }
    rv = users_each_row(cursor, store, visit, arg);
    mdb_cursor_close(cursor);
    return rv;
}

bool tandem_user_roles_ok(uint32_t roles)
{
    return roles != 0 && (roles & ~TANDEM_ROLES_ALL) == 0;
}

json_t *tandem_user_json(const Tandem__UserRecord *r)
{
    char created[TANDEM_RFC3339_LEN_MAX + 1], changed[TANDEM_RFC3339_LEN_MAX + 1];
    json_t *roles = json_array();
    for (unsigned bit = 0; bit < TANDEM_ROLE_COUNT; bit++) {
        if (r->roles & (1u << bit)) {
            json_array_append_new(roles, json_string(tandem_role_name_of(1u << bit)));
        }
    }
    tandem_rfc3339_format_ms(r->created_ms, created);
    tandem_rfc3339_format_ms(r->password_changed_ms, changed);
    json_t *out =
        json_pack("{s:s,s:o,s:s,s:b,s:s,s:s,s:i}", "name", r->name, "roles", roles, "site", r->site,
                  "disabled", r->disabled, "created", created, "password_changed", changed,
                  "failed_attempts", (json_int_t)r->failed_attempts);
    if (out != NULL && r->locked_until_ms > 0) {
        char locked[TANDEM_RFC3339_LEN_MAX + 1];
        tandem_rfc3339_format_ms(r->locked_until_ms, locked);
        json_object_set_new(out, "locked_until", json_string(locked));
    }
    return out;
}
