/* AES-256-GCM sealing of personal-data values and the key_file keyring
 * (replication/identity/pdata.h). */
#include "replication/identity/pdata.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "replication/identity/roles.h"
#include "storage/error.h"

#define AD_MAX 512 /* "<record id>\0<field>" */

void tandem_keyring_clear(struct tandem_keyring *ring)
{
    OPENSSL_cleanse(ring, sizeof *ring);
}

uint32_t tandem_keyring_current(const struct tandem_keyring *ring)
{
    uint32_t best = 0;
    for (unsigned i = 0; i < ring->n_keys; i++) {
        best = ring->keys[i].id > best ? ring->keys[i].id : best;
    }
    return best;
}

static const struct tandem_pdata_key *keyring_find(const struct tandem_keyring *ring, uint32_t id)
{
    for (unsigned i = 0; i < ring->n_keys; i++) {
        if (ring->keys[i].id == id) {
            return &ring->keys[i];
        }
    }
    return NULL;
}

/* One "<id> <64 hex>" line (without its newline) into key; blank and '#' lines are skipped by
 * the caller. */
static int keyring_line(const char *line, size_t len, struct tandem_pdata_key *key)
{
    char *end = NULL;
    if (len == 0 || line[0] < '0' || line[0] > '9') {
        return -1;
    }
    errno = 0;
    unsigned long id = strtoul(line, &end, 10);
    if (errno != 0 || id == 0 || id > UINT32_MAX || end >= line + len || *end != ' ') {
        return -1;
    }
    const char *hex = end + 1;
    size_t hex_len = (size_t)(line + len - hex);
    while (hex_len > 0 && (hex[hex_len - 1] == ' ' || hex[hex_len - 1] == '\r')) {
        hex_len--;
    }
    if (hex_len != 2 * TANDEM_PDATA_KEY_BYTES) {
        return -1;
    }
    for (size_t i = 0; i < TANDEM_PDATA_KEY_BYTES; i++) {
        int hi = OPENSSL_hexchar2int((unsigned char)hex[2 * i]);
        int lo = OPENSSL_hexchar2int((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        key->key[i] = (unsigned char)(hi << 4 | lo);
    }
    key->id = (uint32_t)id;
    return 0;
}

int tandem_keyring_parse(struct tandem_keyring *ring, const char *text, size_t len, char *errmsg)
{
    struct tandem_keyring fresh = {.n_keys = 0};
    unsigned line_no = 0;
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t line_len = nl == NULL ? len - at : (size_t)(nl - (text + at));
        const char *line = text + at;
        at += line_len + 1;
        line_no++;
        if (line_len == 0 || line[0] == '#' || (line_len == 1 && line[0] == '\r')) {
            continue;
        }
        if (fresh.n_keys == TANDEM_PDATA_KEYS_MAX) {
            tandem_keyring_clear(&fresh);
            return tandem_error_set(errmsg, TANDEM_LIMIT, "key_file: more than %d keys",
                                    TANDEM_PDATA_KEYS_MAX);
        }
        struct tandem_pdata_key *key = &fresh.keys[fresh.n_keys];
        if (keyring_line(line, line_len, key) != 0 || keyring_find(&fresh, key->id) != NULL) {
            tandem_keyring_clear(&fresh);
            return tandem_error_set(errmsg, TANDEM_CONFIG,
                                    "key_file: line %u must be \"<id> <64 hex digits>\" with a "
                                    "new id above 0",
                                    line_no);
        }
        fresh.n_keys++;
    }
    if (fresh.n_keys == 0) {
        return tandem_error_set(errmsg, TANDEM_CONFIG, "key_file: no key");
    }
    *ring = fresh;
    tandem_keyring_clear(&fresh);
    return TANDEM_OK;
}

/* Opens path for reading if it is a regular file of ours that nobody else may read or write. */
static int keyring_open_checked(const char *path, struct stat *st, char *errmsg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return -tandem_error_from_errno(errno, errmsg, "key_file");
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return -tandem_error_set(errmsg, TANDEM_CONFIG, "key_file: '%s' is not a regular file",
                                 path);
    }
    mode_t mode = st->st_mode & 07777;
    if (st->st_uid != geteuid() || (mode != 0600 && mode != 0400)) {
        close(fd);
        return -tandem_error_set(errmsg, TANDEM_CONFIG,
                                 "key_file: '%s' must be owned by this user with mode 0600 or "
                                 "0400 (it is %04o)",
                                 path, (unsigned)mode);
    }
    if (st->st_size > TANDEM_PDATA_FILE_MAX) {
        close(fd);
        return -tandem_error_set(errmsg, TANDEM_LIMIT, "key_file: '%s' is over %d bytes", path,
                                 TANDEM_PDATA_FILE_MAX);
    }
    return fd;
}

int tandem_keyring_load(struct tandem_keyring *ring, const char *path, char *errmsg)
{
    struct stat st;
    char text[TANDEM_PDATA_FILE_MAX];
    int fd = keyring_open_checked(path, &st, errmsg);
    if (fd < 0) {
        return -fd;
    }
    ssize_t n = read(fd, text, sizeof text);
    int saved = errno;
    close(fd);
    if (n < 0) {
        return tandem_error_from_errno(saved, errmsg, "key_file: read");
    }
    int rv = tandem_keyring_parse(ring, text, (size_t)n, errmsg);
    OPENSSL_cleanse(text, sizeof text);
    return rv;
}

bool tandem_pdata_roles_allow(uint32_t roles)
{
    return (roles & TANDEM_ROLE_PERSONAL_DATA) != 0;
}

bool tandem_pdata_is_sealed(const uint8_t *value, size_t len, uint32_t *key_id)
{
    if (len < TANDEM_PDATA_OVERHEAD || value[0] != TANDEM_PDATA_VERSION) {
        return false;
    }
    *key_id = (uint32_t)value[1] << 24 | (uint32_t)value[2] << 16 | (uint32_t)value[3] << 8 |
              (uint32_t)value[4];
    return true;
}

static size_t pdata_ad(const char *record_id, const char *field, unsigned char *ad)
{
    size_t id_len = strnlen(record_id, AD_MAX / 2), field_len = strnlen(field, AD_MAX / 2 - 1);
    memcpy(ad, record_id, id_len);
    ad[id_len] = '\0';
    memcpy(ad + id_len + 1, field, field_len);
    return id_len + 1 + field_len;
}

/* One GCM pass: encrypt (enc = 1) or decrypt (0) in into out, with the tag written or checked. */
static int pdata_gcm(const unsigned char *key, const unsigned char *nonce, const unsigned char *ad,
                     size_t ad_len, const uint8_t *in, size_t len, uint8_t *out, unsigned char *tag,
                     int enc)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0,
        ok = ctx != NULL && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, TANDEM_PDATA_NONCE, NULL) == 1 &&
             EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) == 1 &&
             EVP_CipherUpdate(ctx, NULL, &n, ad, (int)ad_len) == 1 &&
             EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1;
    if (ok && !enc) {
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TANDEM_PDATA_TAG, tag) == 1;
    }
    ok = ok && EVP_CipherFinal_ex(ctx, out + n, &n) == 1;
    if (ok && enc) {
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TANDEM_PDATA_TAG, tag) == 1;
    }
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

int tandem_pdata_seal(const struct tandem_keyring *ring, const char *record_id, const char *field,
                      const uint8_t *clear, size_t clear_len, uint8_t *out, size_t *out_len,
                      char *errmsg)
{
    unsigned char ad[AD_MAX];
    uint32_t id = tandem_keyring_current(ring);
    const struct tandem_pdata_key *key = keyring_find(ring, id);
    if (key == NULL) {
        return tandem_error_set(errmsg, TANDEM_STATE,
                                "no key_file: personal data cannot be "
                                "stored");
    }
    if (clear_len > TANDEM_PDATA_CLEAR_MAX) {
        return tandem_error_set(errmsg, TANDEM_INVALID, "%s is longer than %d bytes", field,
                                TANDEM_PDATA_CLEAR_MAX);
    }
    out[0] = TANDEM_PDATA_VERSION;
    out[1] = (uint8_t)(id >> 24), out[2] = (uint8_t)(id >> 16);
    out[3] = (uint8_t)(id >> 8), out[4] = (uint8_t)id;
    if (RAND_bytes(out + 5, TANDEM_PDATA_NONCE) != 1) {
        return tandem_error_from_ssl(errmsg, "personal data: nonce");
    }
    size_t ad_len = pdata_ad(record_id, field, ad);
    if (pdata_gcm(key->key, out + 5, ad, ad_len, clear, clear_len, out + TANDEM_PDATA_HEADER,
                  out + TANDEM_PDATA_HEADER + clear_len, 1) != 0) {
        return tandem_error_from_ssl(errmsg, "personal data: seal");
    }
    *out_len = clear_len + TANDEM_PDATA_OVERHEAD;
    return TANDEM_OK;
}

int tandem_pdata_open(const struct tandem_keyring *ring, const char *record_id, const char *field,
                      const uint8_t *sealed, size_t len, uint8_t *out, size_t *out_len,
                      char *errmsg)
{
    unsigned char ad[AD_MAX], tag[TANDEM_PDATA_TAG];
    uint32_t id = 0;
    if (!tandem_pdata_is_sealed(sealed, len, &id)) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "%s of %s is not a sealed value", field,
                                record_id);
    }
    const struct tandem_pdata_key *key = keyring_find(ring, id);
    if (key == NULL) {
        return tandem_error_set(errmsg, TANDEM_NOTFOUND,
                                "%s of %s is sealed under key %u, which key_file does not hold",
                                field, record_id, id);
    }
    size_t clear_len = len - TANDEM_PDATA_OVERHEAD;
    memcpy(tag, sealed + len - TANDEM_PDATA_TAG, sizeof tag);
    size_t ad_len = pdata_ad(record_id, field, ad);
    if (pdata_gcm(key->key, sealed + 5, ad, ad_len, sealed + TANDEM_PDATA_HEADER, clear_len, out,
                  tag, 0) != 0) {
        OPENSSL_cleanse(out, clear_len);
        ERR_clear_error();
        return tandem_error_set(errmsg, TANDEM_CRYPTO,
                                "%s of %s does not verify under key %u (tampered or wrong key)",
                                field, record_id, id);
    }
    *out_len = clear_len;
    return TANDEM_OK;
}
