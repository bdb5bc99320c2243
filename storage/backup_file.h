/* The low layer of storage/backup.h's file format, shared by its writer (backup.c) and its
 * checker (backup_check.c): sizes, the key, the header's fields and codec, the AES-256-GCM
 * stream and file I/O with errno translated. */
#ifndef TANDEM_STORAGE_BACKUP_FILE_H
#define TANDEM_STORAGE_BACKUP_FILE_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/sha256.h"
#include "storage/store.h"

#define TANDEM_BACKUP_MAGIC           "TANDEMBK"
#define TANDEM_BACKUP_FORMAT          1u
#define TANDEM_BACKUP_MANIFEST_MAX    (64u * 1024u)       /* bytes of manifest JSON */
#define TANDEM_BACKUP_STATE_BYTES_MAX ((uint64_t)1 << 40) /* 1 TiB: a larger length is damage */
#define TANDEM_BACKUP_HEADER_BYTES    120u
#define TANDEM_BACKUP_KEY_BYTES       32u             /* AES-256 */
#define TANDEM_BACKUP_NONCE_BYTES     12u             /* GCM's standard nonce */
#define TANDEM_BACKUP_TAG_BYTES       16u             /* GCM's full tag */
#define TANDEM_BACKUP_IO_CHUNK        (1024u * 1024u) /* bytes read or written at once */

/* A backup key, read from backup_key_file (the format of key_file: "<id> <64 hex>" lines, loaded
 * by replication/identity/backup_keys.h with key_file's checks; the highest id seals, any listed
 * id opens). Zero it after use. */
struct tandem_backup_key {
    uint32_t id;
    uint8_t key[TANDEM_BACKUP_KEY_BYTES];
};

#define BACKUP_AAD_BYTES     40u /* magic .. nonce and padding: the GCM's associated data */
#define BACKUP_HEADER_SHA_AT 88u /* the header's own SHA-256 covers the bytes before it */

struct tandem_backup_header {
    bool encrypted;
    uint32_t key_id;
    uint8_t nonce[TANDEM_BACKUP_NONCE_BYTES];
    uint64_t manifest_len, state_len;
    uint8_t manifest_sha256[TANDEM_DIGEST_LEN];
    uint8_t header_sha256[TANDEM_DIGEST_LEN];
};

void tandem_backup_header_encode(const struct tandem_backup_header *h,
                                 uint8_t out[TANDEM_BACKUP_HEADER_BYTES]);
/* Checks magic, format and ranges (not the header's SHA-256). TANDEM_CORRUPT with errmsg. */
int tandem_backup_header_decode(const uint8_t in[TANDEM_BACKUP_HEADER_BYTES],
                                struct tandem_backup_header *h, char *errmsg);

/* AES-256-GCM over a stream, in chunks: init (enc 1 seals, 0 opens) with the header's first
 * BACKUP_AAD_BYTES as associated data, update, final (writes the tag when sealing, checks it
 * when opening: TANDEM_CRYPTO when it does not verify). */
int tandem_backup_gcm_init(EVP_CIPHER_CTX **ctx, const struct tandem_backup_key *key,
                           const uint8_t nonce[TANDEM_BACKUP_NONCE_BYTES],
                           const uint8_t aad[BACKUP_AAD_BYTES], int enc, char *errmsg);
int tandem_backup_gcm_update(EVP_CIPHER_CTX *ctx, const uint8_t *in, size_t len, uint8_t *out,
                             char *errmsg);
int tandem_backup_gcm_final(EVP_CIPHER_CTX **ctx, uint8_t tag[TANDEM_BACKUP_TAG_BYTES], int enc,
                            char *errmsg);

/* Reads exactly len bytes (a short file is TANDEM_CORRUPT "what: file ends early"). */
int tandem_backup_read_full(int fd, void *buf, size_t len, const char *what, char *errmsg);
/* Writes all of len bytes. */
int tandem_backup_write_full(int fd, const void *buf, size_t len, const char *what, char *errmsg);

#endif
