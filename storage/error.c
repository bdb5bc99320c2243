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

const char *tandem_strerror(int code)
{
    if (code < 0 || code >= TANDEM_ERROR_COUNT) {
        return "unknown error";
    }
    return error_messages[code];
}

const char *tandem_error_name(int code)
{
    if (code < 0 || code >= TANDEM_ERROR_COUNT) {
        return "TANDEM_UNKNOWN";
    }
    return error_names[code];
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

int tandem_error_from_mdb(int mdb_rc, char *errmsg, const char *what)
{
    if (mdb_rc == MDB_SUCCESS) {
        return TANDEM_OK;
    }
    snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s: %s", what, mdb_strerror(mdb_rc));
    switch (mdb_rc) {
        case MDB_NOTFOUND:
            return TANDEM_NOTFOUND;
        case MDB_KEYEXIST:
            return TANDEM_EXISTS;
        case MDB_MAP_FULL:
        case MDB_TXN_FULL:
        case MDB_DBS_FULL:
        case MDB_READERS_FULL:
            return TANDEM_STORE_FULL;
        case MDB_CORRUPTED:
        case MDB_PAGE_NOTFOUND:
        case MDB_INVALID:
        case MDB_VERSION_MISMATCH:
            return TANDEM_CORRUPT;
        case ENOMEM:
            return TANDEM_NOMEM;
        default:
            return TANDEM_STORE;
    }
}

int tandem_error_from_uv(int uv_rc, char *errmsg, const char *what)
{
    if (uv_rc >= 0) {
        return TANDEM_OK;
    }
    snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s: %s", what, uv_strerror(uv_rc));
    switch (uv_rc) {
        case UV_ENOMEM:
            return TANDEM_NOMEM;
        case UV_EINVAL:
            return TANDEM_INVALID;
        case UV_ETIMEDOUT:
            return TANDEM_TIMEOUT;
        case UV_ENOENT:
            return TANDEM_NOTFOUND;
        case UV_EEXIST:
            return TANDEM_EXISTS;
        case UV_EMFILE:
        case UV_ENFILE:
        case UV_ENOSPC:
            return TANDEM_LIMIT;
        case UV_EIO:
            return TANDEM_IO;
        default:
            return TANDEM_NET;
    }
}

int tandem_error_from_errno(int errno_value, char *errmsg, const char *what)
{
    if (errno_value == 0) {
        return TANDEM_OK;
    }
    snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s: %s", what, strerror(errno_value));
    switch (errno_value) {
        case ENOMEM:
            return TANDEM_NOMEM;
        case EINVAL:
            return TANDEM_INVALID;
        case ENOENT:
            return TANDEM_NOTFOUND;
        case EEXIST:
            return TANDEM_EXISTS;
        case ENOSPC:
        case EMFILE:
        case ENFILE:
            return TANDEM_LIMIT;
        default:
            return TANDEM_IO;
    }
}

int tandem_error_from_ssl(char *errmsg, const char *what)
{
    unsigned long code = ERR_get_error();
    char reason[TANDEM_ERRMSG_SIZE] = "no detail from OpenSSL";
    if (code != 0) {
        ERR_error_string_n(code, reason, sizeof reason);
    }
    ERR_clear_error();
    snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s: %s", what, reason);
    return TANDEM_CRYPTO;
}
