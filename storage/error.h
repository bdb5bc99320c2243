/* tandem's one error model: every error code with its message in one table, the one errmsg
 * size, and the translation of foreign codes (LMDB, libuv, OpenSSL, errno) where they enter. */
#ifndef TANDEM_STORAGE_ERROR_H
#define TANDEM_STORAGE_ERROR_H

#include <stddef.h>

/* Every errmsg buffer in tandem has this size, and every writer is handed it. */
#define TANDEM_ERRMSG_SIZE 256

/* X(name, message). TANDEM_OK (0) stands apart from the table. */
#define TANDEM_ERRORS(X)                                                                           \
    X(NOMEM, "out of memory")                                                                      \
    X(INVALID, "invalid argument")                                                                 \
    X(NOTFOUND, "not found")                                                                       \
    X(EXISTS, "already exists")                                                                    \
    X(LIMIT, "a configured limit was reached")                                                     \
    X(IO, "input/output error")                                                                    \
    X(CORRUPT, "stored data is corrupt")                                                           \
    X(STORE, "the LMDB store failed")                                                              \
    X(STORE_FULL, "the LMDB map is full")                                                          \
    X(RAFT, "raft failed")                                                                         \
    X(NOTLEADER, "this node is not the leader")                                                    \
    X(LEADERSHIP_LOST, "leadership was lost before the outcome was known")                         \
    X(BUSY, "too many requests in flight")                                                         \
    X(SHUTDOWN, "the node is shutting down")                                                       \
    X(FENCED, "this node is fenced")                                                               \
    X(NET, "network error")                                                                        \
    X(TIMEOUT, "timed out")                                                                        \
    X(PROTOCOL, "protocol violation by the peer")                                                  \
    X(CRYPTO, "a cryptographic operation failed")                                                  \
    X(STATE, "not allowed in the current state")                                                   \
    X(CONFIG, "invalid configuration")

/* Codes other than TANDEM_OK start above TANDEM_ERROR_BASE, clear of errno values, libraft's
 * small positive codes and LMDB's and libuv's negative ones, so a foreign code that slipped
 * through untranslated is never read as one of ours. */
#define TANDEM_ERROR_BASE 5000

enum tandem_error {
    TANDEM_OK = 0,
    TANDEM_ERROR_FIRST_ = TANDEM_ERROR_BASE, /* not a code: the next one is the first */
#define TANDEM_ERROR_ENUM(name, message) TANDEM_##name,
    TANDEM_ERRORS(TANDEM_ERROR_ENUM)
#undef TANDEM_ERROR_ENUM
        TANDEM_ERROR_END /* one past the last code */
};

/* How many codes the table has besides TANDEM_OK. */
#define TANDEM_ERROR_COUNT (TANDEM_ERROR_END - TANDEM_ERROR_BASE - 1)

/* Whether code is TANDEM_OK or one of the table's codes. */
#define TANDEM_ERROR_KNOWN(code)                                                                   \
    ((code) == TANDEM_OK || ((code) > TANDEM_ERROR_BASE && (code) < TANDEM_ERROR_END))

/* The table's message for code ("unknown error" for anything outside the table). */
const char *tandem_strerror(int code);
/* The table's name for code ("TANDEM_STORE"), or "TANDEM_UNKNOWN". */
const char *tandem_error_name(int code);

/* Fills errmsg (TANDEM_ERRMSG_SIZE bytes) with the formatted text and returns code, so that
 * `return tandem_error_set(errmsg, TANDEM_INVALID, "bad key %s", key);` reads as one step. */
int tandem_error_set(char *errmsg, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Puts context in front of what errmsg already says ("opening store: <old text>"). */
void tandem_error_wrap(char *errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Translations at the point a foreign code enters our code: each writes "what: <foreign text>"
 * into errmsg and returns the tandem code (TANDEM_OK when the foreign code is success). */
int tandem_error_from_mdb(int mdb_rc, char *errmsg, const char *what);
int tandem_error_from_uv(int uv_rc, char *errmsg, const char *what);
int tandem_error_from_errno(int errno_value, char *errmsg, const char *what);
/* OpenSSL keeps its errors on a thread-local queue: this reads and clears it. Always a failure. */
int tandem_error_from_ssl(char *errmsg, const char *what);

#endif
