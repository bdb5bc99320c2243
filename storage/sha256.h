/* SHA-256 through OpenSSL EVP, the one way storage hashes: the state digests and snapshots
 * (store.c) and backup files (backup*.c). Every failure is translated (storage/error.h). */
#ifndef TANDEM_STORAGE_SHA256_H
#define TANDEM_STORAGE_SHA256_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#define TANDEM_SHA256_LEN 32

/* A fresh context in *ctx. Returns 0 or TANDEM_CRYPTO/TANDEM_NOMEM with errmsg filled. */
int tandem_sha256_begin(EVP_MD_CTX **ctx, char *errmsg);
/* Feeds len bytes. OpenSSL failures are rare (an engine or memory failure), but these hashes are
 * the proof that replicas and backups match: none may pass unnoticed. */
int tandem_sha256_update(EVP_MD_CTX *ctx, const void *data, size_t len, char *errmsg);
/* Finishes *ctx into out and frees it (*ctx = NULL) whatever happens. */
int tandem_sha256_end(EVP_MD_CTX **ctx, uint8_t out[TANDEM_SHA256_LEN], char *errmsg);
/* SHA-256 of one buffer. */
int tandem_sha256(const void *data, size_t len, uint8_t out[TANDEM_SHA256_LEN], char *errmsg);

#endif
