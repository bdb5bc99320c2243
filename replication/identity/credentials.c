/* scrypt password hashes (OpenSSL 3 EVP_KDF "SCRYPT"), the password text rule, and HMAC-SHA256
 * bearer tokens checked against the replicated key and the user record's generation. */
#include "replication/identity/credentials.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "storage/error.h"

#define B64_LEN(n)        (4 * (((n) + 2) / 3))
#define HASH_FIELDS       6 /* scrypt, N, r, p, salt, hash */
#define TOKEN_PAYLOAD_MAX 160
#define TOKEN_SIG_LEN     32

int tandem_password_rule_check(const char *password, char *why)
{
    size_t len = strlen(password);
    bool letter = false, digit = false;
    for (size_t i = 0; i < len; i++) {
        letter = letter || isalpha((unsigned char)password[i]);
        digit = digit || isdigit((unsigned char)password[i]);
    }
    if (len < TANDEM_PASSWORD_LEN_MIN || len > TANDEM_PASSWORD_LEN_MAX) {
        return tandem_error_set(why, -1, "password rule: %d to %d characters",
                                TANDEM_PASSWORD_LEN_MIN, TANDEM_PASSWORD_LEN_MAX);
    }
    if (!letter || !digit) {
        return tandem_error_set(why, -1, "password rule: at least one letter and one digit");
    }
    return 0;
}

static atomic_uint_fast64_t kdf_runs; /* threadpool threads derive: atomic */

uint64_t tandem_password_kdf_runs(void)
{
    return (uint64_t)atomic_load(&kdf_runs);
}

static int scrypt(const char *password, const uint8_t *salt, size_t salt_len, uint64_t n,
                  uint32_t r, uint32_t p, uint8_t *out, size_t out_len, char *errmsg)
{
    atomic_fetch_add(&kdf_runs, 1);
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    if (kdf == NULL) {
        return tandem_error_from_ssl(errmsg, "scrypt fetch");
    }
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (ctx == NULL) {
        return tandem_error_from_ssl(errmsg, "scrypt context");
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)password,
                                          strlen(password)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_KDF_derive(ctx, out, out_len, params);
    EVP_KDF_CTX_free(ctx);
    return ok == 1 ? 0 : tandem_error_from_ssl(errmsg, "scrypt derive");
}

/* Standard base64 without line breaks; out holds B64_LEN(len) + 1 bytes. */
static void b64(const uint8_t *in, size_t len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* Decodes exactly want bytes of standard base64 text; -1 when it is not that. */
static int unb64(const char *in, size_t in_len, uint8_t *out, size_t want)
{
    uint8_t buf[TANDEM_TOKEN_LEN_MAX];
    if (in_len != B64_LEN(want) || in_len > sizeof buf) {
        return -1;
    }
    int n = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)in_len);
    size_t pad = (in_len > 0 && in[in_len - 1] == '=') + (in_len > 1 && in[in_len - 2] == '=');
    if (n < 0 || (size_t)n - pad != want) {
        return -1;
    }
    memcpy(out, buf, want);
    return 0;
}

int tandem_password_hash(const char *password, unsigned log2_n, char *out, char *errmsg)
{
    uint8_t salt[TANDEM_SCRYPT_SALT_LEN], hash[TANDEM_SCRYPT_HASH_LEN];
    char salt64[B64_LEN(TANDEM_SCRYPT_SALT_LEN) + 1], hash64[B64_LEN(TANDEM_SCRYPT_HASH_LEN) + 1];
    if (log2_n < 1 || log2_n > TANDEM_SCRYPT_LOG2_N_MAX) {
        return tandem_error_set(errmsg, TANDEM_INVALID, "scrypt log2(N) %u out of range", log2_n);
    }
    if (RAND_bytes(salt, sizeof salt) != 1) {
        return tandem_error_from_ssl(errmsg, "scrypt salt");
    }
    uint64_t n = (uint64_t)1 << log2_n;
    int rv = scrypt(password, salt, sizeof salt, n, TANDEM_SCRYPT_R, TANDEM_SCRYPT_P, hash,
                    sizeof hash, errmsg);
    if (rv != 0) {
        return rv;
    }
    b64(salt, sizeof salt, salt64);
    b64(hash, sizeof hash, hash64);
    OPENSSL_cleanse(hash, sizeof hash);
    snprintf(out, TANDEM_USER_HASH_LEN_MAX + 1, "scrypt$%" PRIu64 "$%d$%d$%s$%s", n,
             TANDEM_SCRYPT_R, TANDEM_SCRYPT_P, salt64, hash64);
    return 0;
}

struct hash_parts {
    uint64_t n, r, p;
    uint8_t salt[TANDEM_SCRYPT_SALT_LEN], hash[TANDEM_SCRYPT_HASH_LEN];
};

static bool number(const char *text, size_t len, uint64_t max, uint64_t *out)
{
    char buf[24];
    char *end;
    if (len == 0 || len >= sizeof buf || !isdigit((unsigned char)text[0])) {
        return false;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    errno = 0;
    *out = strtoull(buf, &end, 10);
    return errno == 0 && *end == '\0' && *out >= 1 && *out <= max;
}

static int hash_parse(const char *hash, struct hash_parts *h)
{
    const char *field[HASH_FIELDS];
    size_t len[HASH_FIELDS];
    const char *at = hash;
    for (int i = 0; i < HASH_FIELDS; i++) {
        const char *dollar = strchr(at, '$');
        field[i] = at;
        len[i] = dollar != NULL && i < HASH_FIELDS - 1 ? (size_t)(dollar - at) : strlen(at);
        at += len[i] + 1;
        if (i < HASH_FIELDS - 1 && dollar == NULL) {
            return -1;
        }
    }
    if (len[0] != 6 || memcmp(field[0], "scrypt", 6) != 0 ||
        !number(field[1], len[1], (uint64_t)1 << TANDEM_SCRYPT_LOG2_N_MAX, &h->n) ||
        (h->n & (h->n - 1)) != 0 || h->n < 2 || !number(field[2], len[2], 32, &h->r) ||
        !number(field[3], len[3], 16, &h->p) ||
        unb64(field[4], len[4], h->salt, sizeof h->salt) != 0 ||
        unb64(field[5], len[5], h->hash, sizeof h->hash) != 0) {
        return -1;
    }
    return 0;
}

int tandem_password_verify(const char *password, const char *hash, bool *match, char *errmsg)
{
    struct hash_parts h;
    uint8_t computed[TANDEM_SCRYPT_HASH_LEN];
    *match = false;
    if (hash == NULL || hash_parse(hash, &h) != 0) {
        return tandem_error_set(errmsg, TANDEM_INVALID, "malformed password hash");
    }
    int rv = scrypt(password, h.salt, sizeof h.salt, h.n, (uint32_t)h.r, (uint32_t)h.p, computed,
                    sizeof computed, errmsg);
    if (rv != 0) {
        return rv;
    }
    *match = CRYPTO_memcmp(computed, h.hash, sizeof computed) == 0;
    OPENSSL_cleanse(computed, sizeof computed);
    return 0;
}

int tandem_password_verify_unknown(const char *password, bool *match, char *errmsg)
{
    static const uint8_t salt[TANDEM_SCRYPT_SALT_LEN]; /* no secret: nothing is compared */
    uint8_t computed[TANDEM_SCRYPT_HASH_LEN];
    *match = false;
    int rv = scrypt(password, salt, sizeof salt, (uint64_t)1 << TANDEM_SCRYPT_LOG2_N,
                    TANDEM_SCRYPT_R, TANDEM_SCRYPT_P, computed, sizeof computed, errmsg);
    OPENSSL_cleanse(computed, sizeof computed);
    return rv;
}

/* base64url without padding. */
static void b64url(const uint8_t *in, size_t len, char *out)
{
    b64(in, len, out);
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '=') {
        out[--n] = '\0';
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
}

/* Decodes base64url without padding into out (at most max bytes); -1 when malformed. */
static int unb64url(const char *in, size_t len, uint8_t *out, size_t max, size_t *out_len)
{
    char buf[TANDEM_TOKEN_LEN_MAX + 4];
    uint8_t bytes[TANDEM_TOKEN_LEN_MAX];
    if (len % 4 == 1 || len + 3 > TANDEM_TOKEN_LEN_MAX) {
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '+' || c == '/' || c == '=') {
            return -1;
        }
        buf[n++] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    size_t pad = (4 - len % 4) % 4;
    memset(buf + n, '=', pad);
    int decoded = EVP_DecodeBlock(bytes, (const unsigned char *)buf, (int)(n + pad));
    if (decoded < 0 || (size_t)decoded < pad || (size_t)decoded - pad > max) {
        return -1;
    }
    *out_len = (size_t)decoded - pad;
    memcpy(out, bytes, *out_len);
    return 0;
}

static int token_mac(const uint8_t key[TANDEM_TOKEN_KEY_LEN], const char *part, size_t len,
                     uint8_t sig[TOKEN_SIG_LEN], char *errmsg)
{
    unsigned sig_len = 0;
    if (HMAC(EVP_sha256(), key, TANDEM_TOKEN_KEY_LEN, (const unsigned char *)part, len, sig,
             &sig_len) == NULL ||
        sig_len != TOKEN_SIG_LEN) {
        return tandem_error_from_ssl(errmsg, "token signature");
    }
    return 0;
}

int tandem_token_sign(const uint8_t key[TANDEM_TOKEN_KEY_LEN], const char *user,
                      uint64_t generation, int64_t expires_ms, char *out, char *errmsg)
{
    uint8_t random[TANDEM_TOKEN_RANDOM_LEN], sig[TOKEN_SIG_LEN];
    char payload[TOKEN_PAYLOAD_MAX], hex[2 * TANDEM_TOKEN_RANDOM_LEN + 1];
    char part[B64_LEN(TOKEN_PAYLOAD_MAX) + 1], sig64[B64_LEN(TOKEN_SIG_LEN) + 1];
    if (RAND_bytes(random, sizeof random) != 1) {
        return tandem_error_from_ssl(errmsg, "token id");
    }
    for (size_t i = 0; i < sizeof random; i++) {
        snprintf(hex + 2 * i, 3, "%02x", random[i]);
    }
    /* The user comes last: a name may hold dots. */
    int n = snprintf(payload, sizeof payload, "%" PRIu64 ".%" PRId64 ".%s.%s", generation,
                     expires_ms, hex, user);
    if (n < 0 || (size_t)n >= sizeof payload) {
        return tandem_error_set(errmsg, TANDEM_INVALID, "token payload too long");
    }
    b64url((const uint8_t *)payload, (size_t)n, part);
    int rv = token_mac(key, part, strlen(part), sig, errmsg);
    if (rv != 0) {
        return rv;
    }
    b64url(sig, sizeof sig, sig64);
    snprintf(out, TANDEM_TOKEN_LEN_MAX + 1, "%s.%s", part, sig64);
    return 0;
}

struct token_claims {
    uint64_t generation;
    int64_t expires_ms;
    char user[TANDEM_USER_NAME_LEN_MAX + 1];
};

static int claims_parse(const char *payload, struct token_claims *c)
{
    char *end;
    errno = 0;
    c->generation = strtoull(payload, &end, 10);
    if (errno != 0 || *end != '.') {
        return -1;
    }
    long long expires = strtoll(end + 1, &end, 10);
    if (errno != 0 || *end != '.' || expires <= 0) {
        return -1;
    }
    c->expires_ms = expires;
    const char *user = strchr(end + 1, '.');
    if (user == NULL || (size_t)(user - end - 1) != 2 * TANDEM_TOKEN_RANDOM_LEN ||
        strlen(user + 1) > TANDEM_USER_NAME_LEN_MAX) {
        return -1;
    }
    snprintf(c->user, sizeof c->user, "%s", user + 1);
    return 0;
}

/* Verifies the signature and decodes the claims; -1 with why when the token is no token of
 * ours, a crypto error otherwise. */
static int token_open(const uint8_t key[TANDEM_TOKEN_KEY_LEN], const char *token,
                      struct token_claims *c, char *why)
{
    uint8_t sig[TOKEN_SIG_LEN], payload[TOKEN_PAYLOAD_MAX + 1];
    char expected[B64_LEN(TOKEN_SIG_LEN) + 1];
    size_t payload_len = 0;
    const char *dot = strchr(token, '.');
    if (strlen(token) > TANDEM_TOKEN_LEN_MAX || dot == NULL) {
        return tandem_error_set(why, -1, "malformed token");
    }
    int rv = token_mac(key, token, (size_t)(dot - token), sig, why);
    if (rv != 0) {
        return rv;
    }
    /* The signature's text is compared, not its decoding: base64 leaves spare bits that
     * another text would decode alike. */
    b64url(sig, sizeof sig, expected);
    if (strlen(dot + 1) != strlen(expected) ||
        CRYPTO_memcmp(expected, dot + 1, strlen(expected)) != 0) {
        return tandem_error_set(why, -1, "token signature does not match");
    }
    if (unb64url(token, (size_t)(dot - token), payload, TOKEN_PAYLOAD_MAX, &payload_len) != 0) {
        return tandem_error_set(why, -1, "malformed token");
    }
    payload[payload_len] = '\0';
    if (strlen((const char *)payload) != payload_len ||
        claims_parse((const char *)payload, c) != 0) {
        return tandem_error_set(why, -1, "malformed token");
    }
    return 0;
}

int tandem_token_check(MDB_txn *txn, struct tandem_store *store, const char *token, int64_t now_ms,
                       struct tandem_user *out, char *why)
{
    uint8_t key[TANDEM_TOKEN_KEY_LEN];
    struct token_claims c;
    int rv = tandem_token_key_get(txn, store, key);
    if (rv == TANDEM_NOTFOUND) {
        return tandem_error_set(why, TANDEM_NOTFOUND, "no token was ever issued");
    }
    if (rv != 0) {
        return rv;
    }
    rv = token_open(key, token, &c, why);
    OPENSSL_cleanse(key, sizeof key);
    if (rv != 0) {
        return rv == -1 ? TANDEM_NOTFOUND : rv;
    }
    if (c.expires_ms <= now_ms) {
        return tandem_error_set(why, TANDEM_NOTFOUND, "token expired");
    }
    rv = tandem_user_get(txn, store, c.user, out);
    if (rv == TANDEM_NOTFOUND) {
        return tandem_error_set(why, TANDEM_NOTFOUND, "token of an unknown user");
    }
    if (rv != 0) {
        return rv;
    }
    if (out->disabled) {
        return tandem_error_set(why, TANDEM_NOTFOUND, "user %s is disabled", c.user);
    }
    if (out->generation != c.generation) {
        return tandem_error_set(why, TANDEM_NOTFOUND, "token revoked: log in again");
    }
    return TANDEM_OK;
}
