/* SHA-256 through OpenSSL EVP (storage/sha256.h). */
#include "storage/sha256.h"

#include "storage/assert.h"
#include "storage/error.h"

int tandem_sha256_begin(EVP_MD_CTX **ctx, char *errmsg)
{
    *ctx = EVP_MD_CTX_new();
    if (*ctx == NULL) {
        return tandem_error_set(errmsg, TANDEM_NOMEM, "EVP_MD_CTX_new: out of memory");
    }
    if (EVP_DigestInit_ex(*ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(*ctx);
        *ctx = NULL;
        return tandem_error_from_ssl(errmsg, "EVP_DigestInit_ex");
    }
    return 0;
}

int tandem_sha256_update(EVP_MD_CTX *ctx, const void *data, size_t len, char *errmsg)
{
    if (EVP_DigestUpdate(ctx, data, len) != 1) {
        return tandem_error_from_ssl(errmsg, "EVP_DigestUpdate");
    }
    return 0;
}

int tandem_sha256_end(EVP_MD_CTX **ctx, uint8_t out[TANDEM_SHA256_LEN], char *errmsg)
{
    unsigned len = 0;
    int rv = EVP_DigestFinal_ex(*ctx, out, &len) == 1
                 ? 0
                 : tandem_error_from_ssl(errmsg, "EVP_DigestFinal_ex");
    EVP_MD_CTX_free(*ctx);
    *ctx = NULL;
    tandem_assert(rv != 0 || len == TANDEM_SHA256_LEN);
    return rv;
}

int tandem_sha256(const void *data, size_t len, uint8_t out[TANDEM_SHA256_LEN], char *errmsg)
{
    EVP_MD_CTX *ctx;
    int rv = tandem_sha256_begin(&ctx, errmsg);
    if (rv != 0) {
        return rv;
    }
    if ((rv = tandem_sha256_update(ctx, data, len, errmsg)) != 0) {
        EVP_MD_CTX_free(ctx);
        return rv;
    }
    return tandem_sha256_end(&ctx, out, errmsg);
}
