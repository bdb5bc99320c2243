/* The low layer of backup files (storage/backup_file.h): header codec, AES-256-GCM stream, I/O. */
#include "storage/backup_file.h"

#include <endian.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "storage/assert.h"
#include "storage/error.h"

int tandem_backup_gcm_init(EVP_CIPHER_CTX **ctx, const struct tandem_backup_key *key,
                           const uint8_t nonce[TANDEM_BACKUP_NONCE_BYTES],
                           const uint8_t aad[BACKUP_AAD_BYTES], int enc, char *errmsg)
{
    int n = 0;
    *ctx = EVP_CIPHER_CTX_new();
    bool ok =
        *ctx != NULL && EVP_CipherInit_ex(*ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) == 1 &&
        EVP_CIPHER_CTX_ctrl(*ctx, EVP_CTRL_GCM_SET_IVLEN, TANDEM_BACKUP_NONCE_BYTES, NULL) == 1 &&
        EVP_CipherInit_ex(*ctx, NULL, NULL, key->key, nonce, enc) == 1 &&
        EVP_CipherUpdate(*ctx, NULL, &n, aad, (int)BACKUP_AAD_BYTES) == 1;
    if (!ok) {
        EVP_CIPHER_CTX_free(*ctx);
        *ctx = NULL;
        return tandem_error_from_ssl(errmsg, "AES-256-GCM init");
    }
    return 0;
}

int tandem_backup_gcm_update(EVP_CIPHER_CTX *ctx, const uint8_t *in, size_t len, uint8_t *out,
                             char *errmsg)
{
    int n = 0;
    tandem_assert(len <= TANDEM_BACKUP_IO_CHUNK);
    if (EVP_CipherUpdate(ctx, out, &n, in, (int)len) != 1 || (size_t)n != len) {
        return tandem_error_from_ssl(errmsg, "AES-256-GCM");
    }
    return 0;
}

int tandem_backup_gcm_final(EVP_CIPHER_CTX **ctx, uint8_t tag[TANDEM_BACKUP_TAG_BYTES], int enc,
                            char *errmsg)
{
    uint8_t rest[32];
    int n = 0, rv = 0;
    if (!enc &&
        EVP_CIPHER_CTX_ctrl(*ctx, EVP_CTRL_GCM_SET_TAG, TANDEM_BACKUP_TAG_BYTES, tag) != 1) {
        rv = tandem_error_from_ssl(errmsg, "AES-256-GCM set tag");
    } else if (EVP_CipherFinal_ex(*ctx, rest, &n) != 1) {
        rv = enc ? tandem_error_from_ssl(errmsg, "AES-256-GCM final")
                 : tandem_error_set(errmsg, TANDEM_CRYPTO,
                                    "the GCM tag does not verify: wrong key or damaged state");
    } else if (enc &&
               EVP_CIPHER_CTX_ctrl(*ctx, EVP_CTRL_GCM_GET_TAG, TANDEM_BACKUP_TAG_BYTES, tag) != 1) {
        rv = tandem_error_from_ssl(errmsg, "AES-256-GCM get tag");
    }
    EVP_CIPHER_CTX_free(*ctx);
    *ctx = NULL;
    return rv;
}

int tandem_backup_read_full(int fd, void *buf, size_t len, const char *what, char *errmsg)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, (uint8_t *)buf + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return tandem_error_from_errno(errno, errmsg, what);
        }
        if (n == 0) {
            return tandem_error_set(errmsg, TANDEM_CORRUPT, "%s: the file ends early", what);
        }
        done += (size_t)n;
    }
    return 0;
}

int tandem_backup_write_full(int fd, const void *buf, size_t len, const char *what, char *errmsg)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const uint8_t *)buf + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return tandem_error_from_errno(n < 0 ? errno : EIO, errmsg, what);
        }
        done += (size_t)n;
    }
    return 0;
}

void tandem_backup_header_encode(const struct tandem_backup_header *h,
                                 uint8_t out[TANDEM_BACKUP_HEADER_BYTES])
{
    uint32_t u32;
    uint64_t u64;
    memset(out, 0, TANDEM_BACKUP_HEADER_BYTES);
    memcpy(out, TANDEM_BACKUP_MAGIC, 8);
    u32 = htole32(TANDEM_BACKUP_FORMAT);
    memcpy(out + 8, &u32, 4);
    u32 = htole32(h->encrypted ? 1u : 0u);
    memcpy(out + 12, &u32, 4);
    u32 = htole32(h->key_id);
    memcpy(out + 16, &u32, 4);
    memcpy(out + 24, h->nonce, TANDEM_BACKUP_NONCE_BYTES);
    u64 = htole64(h->manifest_len);
    memcpy(out + BACKUP_AAD_BYTES, &u64, 8);
    u64 = htole64(h->state_len);
    memcpy(out + 48, &u64, 8);
    memcpy(out + 56, h->manifest_sha256, TANDEM_DIGEST_LEN);
    memcpy(out + BACKUP_HEADER_SHA_AT, h->header_sha256, TANDEM_DIGEST_LEN);
}

int tandem_backup_header_decode(const uint8_t in[TANDEM_BACKUP_HEADER_BYTES],
                                struct tandem_backup_header *h, char *errmsg)
{
    uint32_t u32;
    uint64_t u64;
    memset(h, 0, sizeof *h);
    if (memcmp(in, TANDEM_BACKUP_MAGIC, 8) != 0) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "header: not a tandem backup (magic)");
    }
    memcpy(&u32, in + 8, 4);
    if (le32toh(u32) != TANDEM_BACKUP_FORMAT) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "header: unknown format %u", le32toh(u32));
    }
    memcpy(&u32, in + 12, 4);
    h->encrypted = (le32toh(u32) & 1u) != 0;
    memcpy(&u32, in + 16, 4);
    h->key_id = le32toh(u32);
    memcpy(h->nonce, in + 24, TANDEM_BACKUP_NONCE_BYTES);
    memcpy(&u64, in + BACKUP_AAD_BYTES, 8);
    h->manifest_len = le64toh(u64);
    memcpy(&u64, in + 48, 8);
    h->state_len = le64toh(u64);
    memcpy(h->manifest_sha256, in + 56, TANDEM_DIGEST_LEN);
    memcpy(h->header_sha256, in + BACKUP_HEADER_SHA_AT, TANDEM_DIGEST_LEN);
    if (h->manifest_len == 0 || h->manifest_len > TANDEM_BACKUP_MANIFEST_MAX ||
        h->state_len > TANDEM_BACKUP_STATE_BYTES_MAX || h->encrypted != (h->key_id != 0)) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "header: lengths or key id out of range");
    }
    return 0;
}
