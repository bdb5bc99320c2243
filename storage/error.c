/* The tandem error table's lookups and the translations of foreign error codes. */
#include "storage/error.h"

#include <errno.h>
#include <lmdb.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "storage/assert.h"

static const char *const error_messages[] = {
#define TANDEM_ERROR_MESSAGE(name, message) message,
    TANDEM_ERRORS(TANDEM_ERROR_MESSAGE)
#undef TANDEM_ERROR_MESSAGE
};

static const char *const error_names[] = {
#define TANDEM_ERROR_NAME(name, message) "TANDEM_" #name,
    TANDEM_ERRORS(TANDEM_ERROR_NAME)
#undef TANDEM_ERROR_NAME
};

_Static_assert(sizeof error_messages / sizeof error_messages[0] == TANDEM_ERROR_COUNT,
               "one message per error code");
_Static_assert(sizeof error_names / sizeof error_names[0] == TANDEM_ERROR_COUNT,
               "one name per error code");

/* Row of a table indexed by code, with the texts for TANDEM_OK and for a code not in it. */
static const char *table_text(const char *const table[], int code, const char *ok,
                              const char *unknown)
{
    if (code == TANDEM_OK) {
        return ok;
    }
    return TANDEM_ERROR_KNOWN(code) ? table[code - TANDEM_ERROR_BASE - 1] : unknown;
}

const char *tandem_strerror(int code)
{
    return table_text(error_messages, code, "ok", "unknown error");
}

const char *tandem_error_name(int code)
{
    return table_text(error_names, code, "TANDEM_OK", "TANDEM_UNKNOWN");
}

int tandem_error_set(char *errmsg, int code, const char *fmt, ...)
{
    tandem_assert(errmsg != NULL);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, TANDEM_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
    return code;
}

void tandem_error_wrap(char *errmsg, const char *fmt, ...)
{
    tandem_assert(errmsg != NULL);
    char context[TANDEM_ERRMSG_SIZE], old[TANDEM_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
    memcpy(old, errmsg, sizeof old);
    old[sizeof old - 1] = '\0';
    snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s: %s", context, old);
}

/* One foreign code and the tandem code it becomes. */
struct error_map {
    int foreign;
    int tandem;
};

/* Looks code up in a translation table; codes the table does not name become fallback. */
static int error_map_find(const struct error_map *map, size_t n, int code, int fallback)
{
    for (size_t i = 0; i < n; i++) {
        if (map[i].foreign == code) {
            return map[i].tandem;
        }
    }
    return fallback;
}

#define ERROR_MAP_FIND(map, code, fallback)                                                        \
    error_map_find((map), sizeof(map) / sizeof((map)[0]), (code), (fallback))

static const struct error_map mdb_map[] = {
    {MDB_NOTFOUND, TANDEM_NOTFOUND},
    {MDB_KEYEXIST, TANDEM_EXISTS},
    {MDB_MAP_FULL, TANDEM_STORE_FULL},
    {MDB_TXN_FULL, TANDEM_STORE_FULL},
    {MDB_DBS_FULL, TANDEM_STORE_FULL},
    {MDB_READERS_FULL, TANDEM_STORE_FULL},
    {MDB_CORRUPTED, TANDEM_CORRUPT},
    {MDB_PAGE_NOTFOUND, TANDEM_CORRUPT},
    {MDB_INVALID, TANDEM_CORRUPT},
    {MDB_VERSION_MISMATCH, TANDEM_CORRUPT},
    {ENOMEM, TANDEM_NOMEM},
};

static const struct error_map uv_map[] = {
    {UV_ENOMEM, TANDEM_NOMEM},    {UV_EINVAL, TANDEM_INVALID}, {UV_ETIMEDOUT, TANDEM_TIMEOUT},
    {UV_ENOENT, TANDEM_NOTFOUND}, {UV_EEXIST, TANDEM_EXISTS},  {UV_EMFILE, TANDEM_LIMIT},
    {UV_ENFILE, TANDEM_LIMIT},    {UV_ENOSPC, TANDEM_LIMIT},   {UV_EIO, TANDEM_IO},
};

static const struct error_map errno_map[] = {
    {ENOMEM, TANDEM_NOMEM},  {EINVAL, TANDEM_INVALID}, {ENOENT, TANDEM_NOTFOUND},
    {EEXIST, TANDEM_EXISTS}, {ENOSPC, TANDEM_LIMIT},   {EMFILE, TANDEM_LIMIT},
    {ENFILE, TANDEM_LIMIT},
};

/* "what: <foreign text>" into errmsg. */
static void error_describe(char *errmsg, const char *what, const char *foreign_text)
{
    tandem_assert(errmsg != NULL && what != NULL && foreign_text != NULL);
    snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s: %s", what, foreign_text);
}

int tandem_error_from_mdb(int mdb_rc, char *errmsg, const char *what)
{
    if (mdb_rc == MDB_SUCCESS) {
        return TANDEM_OK;
    }
    error_describe(errmsg, what, mdb_strerror(mdb_rc));
    return ERROR_MAP_FIND(mdb_map, mdb_rc, TANDEM_STORE);
}

int tandem_error_from_uv(int uv_rc, char *errmsg, const char *what)
{
    if (uv_rc >= 0) {
        return TANDEM_OK;
    }
    error_describe(errmsg, what, uv_strerror(uv_rc));
    return ERROR_MAP_FIND(uv_map, uv_rc, TANDEM_NET);
}

int tandem_error_from_errno(int errno_value, char *errmsg, const char *what)
{
    if (errno_value == 0) {
        return TANDEM_OK;
    }
    error_describe(errmsg, what, strerror(errno_value));
    return ERROR_MAP_FIND(errno_map, errno_value, TANDEM_IO);
}

int tandem_error_from_ssl(char *errmsg, const char *what)
{
    unsigned long code = ERR_get_error();
    char reason[TANDEM_ERRMSG_SIZE] = "no detail from OpenSSL";
    if (code != 0) {
        ERR_error_string_n(code, reason, sizeof reason);
    }
    ERR_clear_error();
    error_describe(errmsg, what, reason);
    return TANDEM_CRYPTO;
}
