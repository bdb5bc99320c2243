/* Credentials of users (issue 13): scrypt password hashes with their parameters, the password
 * text rule, and bearer tokens signed with HMAC-SHA256 under the replicated token key and
 * checked against the user record's generation. Pure functions: the hashing ones take ~50 ms
 * and belong on a threadpool, never the loop thread. */
#ifndef TANDEM_REPLICATION_IDENTITY_CREDENTIALS_H
#define TANDEM_REPLICATION_IDENTITY_CREDENTIALS_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication/identity/users.h"
#include "storage/store.h"

#define TANDEM_SCRYPT_LOG2_N     15 /* N = 2^15, r = 8, p = 1: about 50 ms per hash */
#define TANDEM_SCRYPT_R          8
#define TANDEM_SCRYPT_P          1
#define TANDEM_SCRYPT_SALT_LEN   16
#define TANDEM_SCRYPT_HASH_LEN   32
#define TANDEM_SCRYPT_LOG2_N_MAX 20 /* a stored hash asking for more is refused (memory) */
#define TANDEM_PASSWORD_LEN_MIN  8
#define TANDEM_PASSWORD_LEN_MAX  1024
#define TANDEM_TOKEN_LEN_MAX     256
#define TANDEM_TOKEN_RANDOM_LEN  16

/* Checks the password text rule: TANDEM_PASSWORD_LEN_MIN..MAX bytes with at least one letter and
 * one digit. Returns 0, or -1 with why (TANDEM_ERRMSG_SIZE bytes) naming the rule broken. */
int tandem_password_rule_check(const char *password, char *why);

/* Hashes password with a fresh random salt at log2_n (r, p as above) into out
 * ("scrypt$N$r$p$<salt b64>$<hash b64>", TANDEM_USER_HASH_LEN_MAX + 1 bytes). Returns 0 or
 * TANDEM_CRYPTO with errmsg. */
int tandem_password_hash(const char *password, unsigned log2_n, char *out, char *errmsg);

/* Whether password matches hash (compared in constant time), with the parameters stored in the
 * hash. Returns 0 with *match set, TANDEM_INVALID for a malformed hash, TANDEM_CRYPTO. */
int tandem_password_verify(const char *password, const char *hash, bool *match, char *errmsg);

/* For a login whose user does not exist: the same scrypt at the default parameters as a check
 * against a stored hash, so that the time of the answer does not tell which names exist. *match
 * is always false. Returns 0 or TANDEM_CRYPTO with errmsg. */
int tandem_password_verify_unknown(const char *password, bool *match, char *errmsg);
/* The scrypt derivations this process ran (hashes and checks): tests count the KDF calls. */
uint64_t tandem_password_kdf_runs(void);

/* Signs a token for user at generation, valid until expires_ms, into out
 * (TANDEM_TOKEN_LEN_MAX + 1 bytes): base64url("user.generation.expires_ms.random") "."
 * base64url(HMAC-SHA256(key, first part)). Returns 0 or TANDEM_CRYPTO with errmsg. */
int tandem_token_sign(const uint8_t key[TANDEM_TOKEN_KEY_LEN], const char *user,
                      uint64_t generation, int64_t expires_ms, char *out, char *errmsg);

/* Checks token on any node: its signature under the stored key, its expiry against now_ms, and
 * that its user exists, is not disabled and is still at the token's generation (disable, delete,
 * roles and password changes end every earlier token). Returns TANDEM_OK with *out filled,
 * TANDEM_NOTFOUND with why (TANDEM_ERRMSG_SIZE bytes) when the token is refused (a 401: why says
 * which check failed, never the key), or another error with store->errmsg. */
int tandem_token_check(MDB_txn *txn, struct tandem_store *store, const char *token, int64_t now_ms,
                       struct tandem_user *out, char *why);

#endif
