/* tandem's one TLS stream module (consensus/tls.h): TLS 1.3 on OpenSSL 3 through two memory BIOs
 * over a caller-owned libuv TCP stream, with the cluster's certificate identities.
 *
 * Data path. Ciphertext read from tcp goes into the read BIO at once; it is decrypted only while
 * somebody reads (read_start), so bytes that arrive while nobody reads stay in the BIO, bounded
 * by what the peer sent, and tcp reading is paused (backpressure). A write encrypts its buffers
 * at once into full 16 KiB records, drains the write BIO into one malloc'd buffer and hands it
 * to uv_write. The receive buffers are per thread: a loop runs on one thread and every read
 * callback consumes its buffer before the next one is handed out.
 *
 * The caller keeps tcp->data; the module finds its session from the stream through a per-thread
 * table (tls_map). Lifetime: uv_close(tcp) runs the pending uv_write callbacks (UV_ECANCELED)
 * before the close callback, so the caller's close callback is the one safe place to free. */
#include "consensus/tls.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "storage/assert.h"
#include "storage/error.h"

#define TLS_CIPHERSUITES                                                                           \
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
#define TLS_RECORD_PLAIN_MAX 16384u /* TLS plaintext record ceiling */
#define TLS_RECORD_OVERHEAD  32u    /* header 5 + content type 1 + AEAD tag 16, with room */
#define TLS_VERIFY_DEPTH     4      /* CA chains are short: root, maybe one intermediate */
#define TLS_MAP_CAPACITY_MIN 16u

struct tandem_tls_ctx {
    struct tandem_tls_files files; /* owned copies of the paths; crl "" = none */
    SSL_CTX *server;               /* owned reference */
    SSL_CTX *client;               /* owned reference */
    struct tandem_tls_cert_info info;
};

struct tandem_tls {
    uv_tcp_t *tcp; /* borrowed: the caller owns and closes it */
    SSL *ssl;      /* owned; owns rbio and wbio */
    BIO *rbio;     /* ciphertext from tcp */
    BIO *wbio;     /* ciphertext for tcp */
    enum tandem_tls_role role;
    void *data;
    tandem_tls_handshake_cb handshake_cb;
    tandem_tls_read_cb read_cb;
    uv_idle_t *deliver;       /* owned, made on first need: hands kept bytes over from the loop */
    size_t write_queue_bytes; /* ciphertext handed to uv_write, not yet written */
    int tcp_end;              /* 0, or how tcp reading ended (UV_EOF or a libuv error) */
    int read_end;             /* 0, or the final read status (UV_EOF, UV_EPROTO, ...) */
    bool handshake_started;
    bool handshake_done;
    bool handshake_failed;
    bool verify_failed; /* the certificate checks refused the peer */
    bool reading;       /* the caller wants plaintext */
    bool tcp_reading;   /* uv_read_start is in force on tcp */
    bool read_end_delivered;
    char expect_node[TANDEM_TLS_NAME_MAX + 1]; /* CLIENT: the node the server must be; "" any */
    struct tandem_tls_peer peer;
    char error[TANDEM_ERRMSG_SIZE];
};

/* One encrypted batch on its way to tcp. */
struct tls_write {
    uv_write_t req; /* first: the uv_write_t* is the struct's address */
    struct tandem_tls *tls;
    void *write_data;
    tandem_tls_write_cb cb; /* NULL for the module's own records (handshake, alerts) */
    size_t len;
    size_t capacity;
    char bytes[];
};

/* Per-thread buffers: ciphertext as read from tcp, plaintext handed up, small writes gathered
 * into full records. */
static _Thread_local char tls_cipher_in[TANDEM_TLS_READ_BYTES];
static _Thread_local char tls_plain_out[TANDEM_TLS_READ_BYTES];
static _Thread_local char tls_staging[TLS_RECORD_PLAIN_MAX];
static _Thread_local struct tandem_tls *tls_draining; /* the session in tls_drain, if any */

/* ---- the stream -> session table (open addressing, linear probing) ---- */

struct tls_map {
    struct tandem_tls **slots; /* owned; NULL = empty slot */
    size_t capacity;           /* a power of two, or 0 */
    size_t count;
};

static _Thread_local struct tls_map tls_map;

static size_t tls_map_home(const uv_tcp_t *tcp, size_t capacity)
{
    uint64_t h = (uint64_t)(uintptr_t)tcp * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (capacity - 1);
}

static void tls_map_place(struct tandem_tls **slots, size_t capacity, struct tandem_tls *tls)
{
    size_t i = tls_map_home(tls->tcp, capacity);
    while (slots[i] != NULL) {
        tandem_assert(slots[i]->tcp != tls->tcp); /* one session per stream */
        i = (i + 1) & (capacity - 1);
    }
    slots[i] = tls;
}

static int tls_map_add(struct tandem_tls *tls)
{
    if ((tls_map.count + 1) * 2 > tls_map.capacity) {
        size_t capacity = tls_map.capacity == 0 ? TLS_MAP_CAPACITY_MIN : tls_map.capacity * 2;
        struct tandem_tls **slots = calloc(capacity, sizeof *slots);
        if (slots == NULL) {
            return TANDEM_NOMEM;
        }
        for (size_t i = 0; i < tls_map.capacity; i++) {
            if (tls_map.slots[i] != NULL) {
                tls_map_place(slots, capacity, tls_map.slots[i]);
            }
        }
        free(tls_map.slots);
        tls_map.slots = slots;
        tls_map.capacity = capacity;
    }
    tls_map_place(tls_map.slots, tls_map.capacity, tls);
    tls_map.count++;
    return TANDEM_OK;
}

static size_t tls_map_index(const uv_stream_t *stream)
{
    tandem_assert(tls_map.capacity > 0);
    size_t mask = tls_map.capacity - 1;
    size_t i = tls_map_home((const uv_tcp_t *)stream, tls_map.capacity);
    for (size_t probes = 0; probes < tls_map.capacity; probes++, i = (i + 1) & mask) {
        tandem_assert(tls_map.slots[i] != NULL);
        if ((const uv_stream_t *)tls_map.slots[i]->tcp == stream) {
            return i;
        }
    }
    tandem_assert(!"stream without a TLS session");
    return 0;
}

static struct tandem_tls *tls_map_find(const uv_stream_t *stream)
{
    return tls_map.slots[tls_map_index(stream)];
}

/* Removes with backward shifting, so lookups never need tombstones. */
static void tls_map_remove(struct tandem_tls *tls)
{
    size_t mask = tls_map.capacity - 1;
    size_t hole = tls_map_index((const uv_stream_t *)tls->tcp);
    tls_map.slots[hole] = NULL;
    for (size_t j = (hole + 1) & mask; tls_map.slots[j] != NULL; j = (j + 1) & mask) {
        size_t home = tls_map_home(tls_map.slots[j]->tcp, tls_map.capacity);
        bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            tls_map.slots[hole] = tls_map.slots[j];
            tls_map.slots[j] = NULL;
            hole = j;
        }
    }
    if (--tls_map.count == 0) {
        free(tls_map.slots);
        tls_map = (struct tls_map){0};
    }
}

/* ---- certificates ---- */

/* Unix milliseconds of an ASN1 time, 0 if it cannot be read. */
static int64_t tls_time_ms(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return 0;
    }
    return (int64_t)timegm(&tm) * 1000;
}

/* Whether name is a node or user name: 1..TANDEM_TLS_NAME_MAX of [A-Za-z0-9._-]. */
static bool tls_name_ok(const unsigned char *name, size_t len)
{
    if (len == 0 || len > TANDEM_TLS_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!isalnum(name[i]) && name[i] != '.' && name[i] != '_' && name[i] != '-') {
            return false;
        }
    }
    return true;
}

/* Classifies cert as a NODE or USER certificate with its CN; NULL, or why it is neither. */
static const char *tls_cert_classify(X509 *cert, struct tandem_tls_peer *out)
{
    *out = (struct tandem_tls_peer){.kind = TANDEM_TLS_PEER_NONE};
    uint32_t usage = X509_get_extended_key_usage(cert);
    if ((X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) == 0) {
        return "peer certificate has no extended key usage";
    }
    bool server = (usage & XKU_SSL_SERVER) != 0;
    bool client = (usage & XKU_SSL_CLIENT) != 0;
    if (!client) {
        return "peer certificate lacks the clientAuth extended key usage";
    }
    const X509_NAME *subject = X509_get_subject_name(cert);
    int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (at < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, at) >= 0) {
        return "peer certificate must have exactly one subject CN";
    }
    const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
    const unsigned char *bytes = ASN1_STRING_get0_data(cn);
    size_t len = (size_t)ASN1_STRING_length(cn);
    if (!tls_name_ok(bytes, len)) {
        return "peer certificate CN is not a valid name (1-63 of A-Z a-z 0-9 . _ -)";
    }
    out->kind = server ? TANDEM_TLS_PEER_NODE : TANDEM_TLS_PEER_USER;
    memcpy(out->name, bytes, len);
    out->name[len] = '\0';
    return NULL;
}

/* Whether cert has a SAN DNS entry equal to name (exactly: no wildcards, no case folding). */
static bool tls_cert_names(X509 *cert, const char *name)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    bool found = false;
    size_t len = strlen(name);
    for (int i = 0; names != NULL && !found && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *entry = sk_GENERAL_NAME_value(names, i);
        if (entry->type == GEN_DNS) {
            const ASN1_STRING *dns = entry->d.dNSName;
            found = (size_t)ASN1_STRING_length(dns) == len &&
                    memcmp(ASN1_STRING_get0_data(dns), name, len) == 0;
        }
    }
    GENERAL_NAMES_free(names);
    ERR_clear_error();
    return found;
}

static void tls_set_error(struct tandem_tls *tls, const char *fmt, const char *detail)
{
    if (tls->error[0] == '\0') {
        snprintf(tls->error, sizeof tls->error, fmt, detail);
    }
}

/* OpenSSL's chain verification callback: keeps the first reason, and at the leaf refuses what is
 * not a certificate of the kind the role accepts. */
static int tls_verify_cb(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tandem_tls *tls = SSL_get_app_data(ssl);
    int depth = X509_STORE_CTX_get_error_depth(store);
    if (!ok) {
        int error = X509_STORE_CTX_get_error(store);
        tls->verify_failed = true;
        if (depth == 0 && error == X509_V_ERR_INVALID_PURPOSE && tls->role == TANDEM_TLS_CLIENT) {
            tls_set_error(tls, "%s", "peer is not a node certificate");
        } else {
            tls_set_error(tls, "certificate verify failed: %s",
                          X509_verify_cert_error_string(error));
        }
        return 0;
    }
    if (depth != 0) {
        return 1;
    }
    struct tandem_tls_peer peer;
    X509 *cert = X509_STORE_CTX_get_current_cert(store);
    const char *why = tls_cert_classify(cert, &peer);
    if (why == NULL && tls->role == TANDEM_TLS_CLIENT && peer.kind != TANDEM_TLS_PEER_NODE) {
        why = "peer is not a node certificate";
    }
    if (why == NULL && tls->expect_node[0] != '\0' && !tls_cert_names(cert, tls->expect_node)) {
        tls_set_error(tls, "peer certificate does not name node %s", tls->expect_node);
        why = "";
    }
    if (why != NULL) {
        tls->verify_failed = true;
        tls_set_error(tls, "%s", why);
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    return 1;
}

/* Reads every CRL in path into store; returns how many, or -1 with errmsg. */
static int tls_load_crls(X509_STORE *store, const char *path, int64_t *next_update_ms, char *errmsg)
{
    BIO *in = BIO_new_file(path, "r");
    if (in == NULL) {
        tandem_error_from_ssl(errmsg, "tls_crl");
        tandem_error_wrap(errmsg, "%s", path);
        return -1;
    }
    int count = 0;
    X509_CRL *crl;
    while ((crl = PEM_read_bio_X509_CRL(in, NULL, NULL, NULL)) != NULL) {
        int64_t next = tls_time_ms(X509_CRL_get0_nextUpdate(crl));
        if (next != 0 && (*next_update_ms == 0 || next < *next_update_ms)) {
            *next_update_ms = next;
        }
        int added = X509_STORE_add_crl(store, crl);
        X509_CRL_free(crl);
        if (added != 1) {
            BIO_free(in);
            tandem_error_from_ssl(errmsg, "tls_crl");
            tandem_error_wrap(errmsg, "%s", path);
            return -1;
        }
        count++;
    }
    ERR_clear_error(); /* the end of the file reads as "no start line" */
    BIO_free(in);
    if (count == 0) {
        tandem_error_set(errmsg, TANDEM_CONFIG, "%s: tls_crl: no PEM CRL in the file", path);
        return -1;
    }
    return count;
}

/* The earliest notAfter among the CA file's certificates (0 if none could be read). */
static int64_t tls_ca_not_after_ms(X509_STORE *store)
{
    int64_t earliest = 0;
    STACK_OF(X509) *certs = X509_STORE_get1_all_certs(store);
    for (int i = 0; certs != NULL && i < sk_X509_num(certs); i++) {
        int64_t t = tls_time_ms(X509_get0_notAfter(sk_X509_value(certs, i)));
        if (t != 0 && (earliest == 0 || t < earliest)) {
            earliest = t;
        }
    }
    sk_X509_pop_free(certs, X509_free);
    return earliest;
}

/* "option path: OpenSSL's reason" into errmsg; a bad file is a configuration error. */
static int tls_file_error(char *errmsg, const char *option, const char *path)
{
    char what[TANDEM_ERRMSG_SIZE];
    snprintf(what, sizeof what, "%s %s", option, path);
    tandem_error_from_ssl(errmsg, what);
    return TANDEM_CONFIG;
}

/* A store with the CA file's certificates and the CRLs (leaf revocation checked). */
static int tls_store_new(const struct tandem_tls_files *files, struct tandem_tls_cert_info *info,
                         X509_STORE **out, char *errmsg)
{
    X509_STORE *store = X509_STORE_new();
    if (store == NULL) {
        ERR_clear_error();
        return tandem_error_set(errmsg, TANDEM_NOMEM, "X509_STORE_new: out of memory");
    }
    if (X509_STORE_load_file(store, files->ca) != 1) {
        X509_STORE_free(store);
        return tls_file_error(errmsg, "tls_ca", files->ca);
    }
    info->ca_not_after_ms = tls_ca_not_after_ms(store);
    info->crl_next_update_ms = 0;
    if (files->crl[0] != '\0') {
        if (tls_load_crls(store, files->crl, &info->crl_next_update_ms, errmsg) < 0) {
            X509_STORE_free(store);
            return TANDEM_CONFIG;
        }
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    }
    X509_STORE_set_depth(store, TLS_VERIFY_DEPTH);
    *out = store;
    return TANDEM_OK;
}

/* Protocol settings shared by both roles: TLS 1.3 only, AEAD suites, no tickets. */
static int tls_ssl_ctx_settings(SSL_CTX *ctx, X509_STORE *store, bool server, char *errmsg)
{
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, TLS_CIPHERSUITES) != 1 ||
        SSL_CTX_set_num_tickets(ctx, 0) != 1) {
        return tandem_error_from_ssl(errmsg, "TLS 1.3 settings");
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set1_cert_store(ctx, store);
    SSL_CTX_set_verify(ctx,
                       server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                       tls_verify_cb);
    SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);
    return TANDEM_OK;
}

/* One SSL_CTX for a role with our certificate and key loaded and matched. */
static int tls_ssl_ctx_new(const struct tandem_tls_files *files, X509_STORE *store, bool server,
                           SSL_CTX **out, char *errmsg)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL) {
        return tandem_error_from_ssl(errmsg, "SSL_CTX_new");
    }
    int rc = tls_ssl_ctx_settings(ctx, store, server, errmsg);
    if (rc != TANDEM_OK) {
        goto err_after_ctx;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, files->cert) != 1) {
        rc = tls_file_error(errmsg, "tls_cert", files->cert);
        goto err_after_ctx;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, files->key, SSL_FILETYPE_PEM) != 1) {
        rc = tls_file_error(errmsg, "tls_key", files->key);
        goto err_after_ctx;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        rc = tandem_error_set(errmsg, TANDEM_CONFIG, "tls_key %s does not match tls_cert %s",
                              files->key, files->cert);
        goto err_after_ctx;
    }
    if (server) {
        /* Names the CA to clients, so one holding several certificates picks the right one. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(files->ca);
        if (names != NULL) {
            SSL_CTX_set_client_CA_list(ctx, names);
        }
        ERR_clear_error();
    }
    *out = ctx;
    return TANDEM_OK;
err_after_ctx:
    SSL_CTX_free(ctx);
    return rc;
}

/* Our own certificate must verify against the CA (and CRL): a revoked or expired one is a
 * configuration error found at load time, not at the first handshake. */
static int tls_check_own_cert(SSL_CTX *ctx, X509_STORE *store, const struct tandem_tls_files *files,
                              struct tandem_tls_cert_info *info, char *errmsg)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    STACK_OF(X509) *chain = NULL;
    X509_STORE_CTX *verify = X509_STORE_CTX_new();
    if (cert == NULL || verify == NULL || SSL_CTX_get0_chain_certs(ctx, &chain) != 1 ||
        X509_STORE_CTX_init(verify, store, cert, chain) != 1) {
        X509_STORE_CTX_free(verify);
        return tandem_error_from_ssl(errmsg, "checking tls_cert");
    }
    int verified = X509_verify_cert(verify);
    int error = X509_STORE_CTX_get_error(verify);
    X509_STORE_CTX_free(verify);
    ERR_clear_error();
    if (verified != 1) {
        return tandem_error_set(errmsg, TANDEM_CONFIG, "tls_cert %s does not verify against %s: %s",
                                files->cert,
                                files->crl[0] != '\0' ? "tls_ca and tls_crl" : "tls_ca",
                                X509_verify_cert_error_string(error));
    }
    info->name[0] = '\0';
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, info->name,
                              (int)sizeof info->name);
    ERR_clear_error();
    info->cert_not_after_ms = tls_time_ms(X509_get0_notAfter(cert));
    return TANDEM_OK;
}

/* Loads files into a fresh server and client SSL_CTX; nothing is kept on failure. */
static int tls_ctx_load(const struct tandem_tls_files *files, SSL_CTX **server, SSL_CTX **client,
                        struct tandem_tls_cert_info *info, char *errmsg)
{
    X509_STORE *store = NULL;
    int rc = tls_store_new(files, info, &store, errmsg);
    if (rc != TANDEM_OK) {
        return rc;
    }
    rc = tls_ssl_ctx_new(files, store, true, server, errmsg);
    if (rc != TANDEM_OK) {
        goto err_after_store;
    }
    rc = tls_check_own_cert(*server, store, files, info, errmsg);
    if (rc != TANDEM_OK) {
        goto err_after_server;
    }
    rc = tls_ssl_ctx_new(files, store, false, client, errmsg);
    if (rc != TANDEM_OK) {
        goto err_after_server;
    }
    X509_STORE_free(store); /* each SSL_CTX holds its own reference */
    return TANDEM_OK;
err_after_server:
    SSL_CTX_free(*server);
    *server = NULL;
err_after_store:
    X509_STORE_free(store);
    return rc;
}

static char *tls_strdup(const char *s)
{
    return strdup(s == NULL ? "" : s);
}

int tandem_tls_ctx_new(const struct tandem_tls_files *files, struct tandem_tls_ctx **out,
                       char *errmsg)
{
    tandem_assert(files != NULL && out != NULL && errmsg != NULL);
    if (files->ca == NULL || files->cert == NULL || files->key == NULL || files->ca[0] == '\0' ||
        files->cert[0] == '\0' || files->key[0] == '\0') {
        return tandem_error_set(errmsg, TANDEM_CONFIG, "tls_ca, tls_cert and tls_key are needed");
    }
    struct tandem_tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        return tandem_error_set(errmsg, TANDEM_NOMEM, "tls context: out of memory");
    }
    ctx->files.ca = tls_strdup(files->ca);
    ctx->files.cert = tls_strdup(files->cert);
    ctx->files.key = tls_strdup(files->key);
    ctx->files.crl = tls_strdup(files->crl);
    int rc = TANDEM_NOMEM;
    if (ctx->files.ca == NULL || ctx->files.cert == NULL || ctx->files.key == NULL ||
        ctx->files.crl == NULL) {
        tandem_error_set(errmsg, rc, "tls context: out of memory");
        goto err_after_ctx;
    }
    rc = tls_ctx_load(&ctx->files, &ctx->server, &ctx->client, &ctx->info, errmsg);
    if (rc != TANDEM_OK) {
        goto err_after_ctx;
    }
    *out = ctx;
    return TANDEM_OK;
err_after_ctx:
    tandem_tls_ctx_free(ctx);
    return rc;
}

int tandem_tls_ctx_reload(struct tandem_tls_ctx *ctx, char *errmsg)
{
    tandem_assert(ctx != NULL && errmsg != NULL);
    SSL_CTX *server = NULL;
    SSL_CTX *client = NULL;
    struct tandem_tls_cert_info info = ctx->info;
    int rc = tls_ctx_load(&ctx->files, &server, &client, &info, errmsg);
    if (rc != TANDEM_OK) {
        return rc;
    }
    /* Open sessions hold their own references to the old contexts. */
    SSL_CTX_free(ctx->server);
    SSL_CTX_free(ctx->client);
    ctx->server = server;
    ctx->client = client;
    ctx->info = info;
    ctx->info.reloads++;
    return TANDEM_OK;
}

void tandem_tls_ctx_info(const struct tandem_tls_ctx *ctx, struct tandem_tls_cert_info *out)
{
    tandem_assert(ctx != NULL && out != NULL);
    *out = ctx->info;
}

void tandem_tls_ctx_free(struct tandem_tls_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    SSL_CTX_free(ctx->server);
    SSL_CTX_free(ctx->client);
    free((char *)ctx->files.ca);
    free((char *)ctx->files.cert);
    free((char *)ctx->files.key);
    free((char *)ctx->files.crl);
    free(ctx);
}

/* ---- one connection ---- */

static bool tls_closing(const struct tandem_tls *tls)
{
    return uv_is_closing((const uv_handle_t *)tls->tcp) != 0;
}

static void tls_tcp_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(tls_cipher_in, (unsigned)sizeof tls_cipher_in);
}

static void tls_tcp_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* Reads tcp exactly when there is a reason to: a handshake under way, or a reader. */
static void tls_tcp_reading_update(struct tandem_tls *tls)
{
    bool want = !tls_closing(tls) && tls->tcp_end == 0 && !tls->handshake_failed &&
                tls->read_end == 0 && (!tls->handshake_done || tls->reading);
    if (want && !tls->tcp_reading) {
        int rc = uv_read_start((uv_stream_t *)tls->tcp, tls_tcp_alloc_cb, tls_tcp_read_cb);
        if (rc != 0) {
            tls->tcp_end = rc;
            return;
        }
        tls->tcp_reading = true;
    } else if (!want && tls->tcp_reading) {
        if (!tls_closing(tls)) {
            uv_read_stop((uv_stream_t *)tls->tcp);
        }
        tls->tcp_reading = false;
    }
}

static void tls_write_done_cb(uv_write_t *req, int status)
{
    struct tls_write *w = (struct tls_write *)req;
    struct tandem_tls *tls = w->tls;
    tandem_assert(tls->write_queue_bytes >= w->len);
    tls->write_queue_bytes -= w->len;
    if (status != 0 && status != UV_ECANCELED) {
        tls_set_error(tls, "write: %s", uv_strerror(status));
    }
    if (w->cb != NULL) {
        w->cb(tls->data, w->write_data, status == 0 ? TANDEM_OK : TANDEM_NET);
    }
    free(w);
}

/* A write batch with room for capacity ciphertext bytes. */
static struct tls_write *tls_write_new(struct tandem_tls *tls, size_t capacity)
{
    struct tls_write *w = malloc(sizeof *w + capacity);
    if (w != NULL) {
        *w = (struct tls_write){.tls = tls, .capacity = capacity};
    }
    return w;
}

/* Moves what the write BIO holds to the end of *w, growing it if the estimate was short. */
static int tls_write_collect(struct tandem_tls *tls, struct tls_write **w)
{
    size_t pending = BIO_ctrl_pending(tls->wbio);
    if ((*w)->len + pending > (*w)->capacity) {
        size_t capacity = ((*w)->len + pending) * 2;
        struct tls_write *grown = realloc(*w, sizeof **w + capacity);
        if (grown == NULL) {
            return TANDEM_NOMEM;
        }
        grown->capacity = capacity;
        *w = grown;
    }
    if (pending > 0) {
        int n = BIO_read(tls->wbio, (*w)->bytes + (*w)->len, (int)pending);
        tandem_assert(n == (int)pending); /* a memory BIO hands over all it holds */
        (*w)->len += pending;
    }
    return TANDEM_OK;
}

/* Hands the batch to uv_write; on failure frees it and no callback runs. */
static int tls_write_submit(struct tandem_tls *tls, struct tls_write *w)
{
    if (tls_closing(tls)) {
        free(w);
        return tandem_error_set(tls->error, TANDEM_NET, "write: the connection is closing");
    }
    uv_buf_t buf = uv_buf_init(w->bytes, (unsigned)w->len);
    int rc = uv_write(&w->req, (uv_stream_t *)tls->tcp, &buf, 1, tls_write_done_cb);
    if (rc != 0) {
        free(w);
        return tandem_error_from_uv(rc, tls->error, "write");
    }
    tls->write_queue_bytes += w->len;
    return TANDEM_OK;
}

/* Sends the module's own records (handshake, alerts, key updates), if any. */
static int tls_flush(struct tandem_tls *tls)
{
    size_t pending = BIO_ctrl_pending(tls->wbio);
    if (pending == 0) {
        return TANDEM_OK;
    }
    struct tls_write *w = tls_write_new(tls, pending);
    if (w == NULL || tls_write_collect(tls, &w) != TANDEM_OK) {
        free(w);
        return tandem_error_set(tls->error, TANDEM_NOMEM, "write: out of memory");
    }
    return tls_write_submit(tls, w);
}

/* The OpenSSL reason for a failed call into tls->error (unless the certificate checks already
 * said why), clearing the thread's error queue. */
static void tls_ssl_error(struct tandem_tls *tls, const char *what)
{
    unsigned long code = ERR_get_error();
    char reason[128] = "the connection failed (no detail from OpenSSL)";
    if (code != 0 && ERR_GET_LIB(code) == ERR_LIB_SSL &&
        ERR_GET_REASON(code) == SSL_R_UNSUPPORTED_PROTOCOL) {
        snprintf(reason, sizeof reason, "unsupported protocol: only TLS 1.3 is spoken");
    } else if (code != 0 && ERR_reason_error_string(code) != NULL) {
        snprintf(reason, sizeof reason, "%s", ERR_reason_error_string(code));
    } else if (code != 0) {
        ERR_error_string_n(code, reason, sizeof reason);
    }
    ERR_clear_error();
    if (tls->error[0] == '\0') {
        snprintf(tls->error, sizeof tls->error, "%s: %s", what, reason);
    }
}

/* The verified peer certificate's identity, after the handshake. */
static int tls_peer_load(struct tandem_tls *tls)
{
    X509 *cert = SSL_get0_peer_certificate(tls->ssl);
    if (cert == NULL || SSL_get_verify_result(tls->ssl) != X509_V_OK) {
        tls_set_error(tls, "%s", "the peer presented no verified certificate");
        return TANDEM_CRYPTO;
    }
    const char *why = tls_cert_classify(cert, &tls->peer);
    if (why == NULL && tls->role == TANDEM_TLS_CLIENT && tls->peer.kind != TANDEM_TLS_PEER_NODE) {
        why = "peer is not a node certificate";
    }
    if (why != NULL) {
        tls->peer = (struct tandem_tls_peer){.kind = TANDEM_TLS_PEER_NONE};
        tls_set_error(tls, "%s", why);
        return TANDEM_CRYPTO;
    }
    return TANDEM_OK;
}

static void tls_handshake_end(struct tandem_tls *tls, int status)
{
    if (status == TANDEM_OK) {
        tls->handshake_done = true;
    } else {
        tls->handshake_failed = true;
        tls_tcp_reading_update(tls);
    }
    tls->handshake_cb(tls->data, status);
}

/* One handshake move on what tcp brought; ends the handshake on success or failure. */
static void tls_handshake_step(struct tandem_tls *tls)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(tls->ssl);
    int error = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(tls->ssl, rc);
    int status = TANDEM_OK;
    if (rc != 1 && error != SSL_ERROR_WANT_READ) {
        tls_ssl_error(tls, "TLS handshake");
        bool certificate = tls->verify_failed || SSL_get_verify_result(tls->ssl) != X509_V_OK;
        status = certificate ? TANDEM_CRYPTO : TANDEM_PROTOCOL;
    }
    int flushed = tls_flush(tls); /* our next flight, or the alert that tells the peer why */
    if (status == TANDEM_OK && flushed != TANDEM_OK) {
        status = flushed;
    } else if (status == TANDEM_OK && rc == 1) {
        status = tls_peer_load(tls);
    } else if (status == TANDEM_OK && tls->tcp_end != 0) {
        status = TANDEM_NET;
        tls_set_error(tls, "TLS handshake: the connection ended: %s", uv_strerror(tls->tcp_end));
    } else if (status == TANDEM_OK) {
        return; /* more to read */
    }
    tls_handshake_end(tls, status);
}

/* Decrypts into tls_plain_out up to its size; sets read_end when the stream is over. */
static size_t tls_decrypt(struct tandem_tls *tls)
{
    size_t len = 0;
    ERR_clear_error();
    while (len < sizeof tls_plain_out) {
        int n = SSL_read(tls->ssl, tls_plain_out + len, (int)(sizeof tls_plain_out - len));
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        int error = SSL_get_error(tls->ssl, n);
        if (error == SSL_ERROR_WANT_READ) {
            tls->read_end = tls->tcp_end; /* 0 while tcp may bring more */
        } else if (error == SSL_ERROR_ZERO_RETURN) {
            tls->read_end = UV_EOF; /* close_notify */
        } else {
            tls_ssl_error(tls, "TLS read");
            tls->read_end = UV_EPROTO;
        }
        break;
    }
    return len;
}

/* Hands the caller what the read BIO holds while it reads, then the end if it came. */
static void tls_drain(struct tandem_tls *tls)
{
    tandem_assert(tls_draining == NULL);
    tls_draining = tls;
    while (tls->reading && !tls_closing(tls) && !tls->read_end_delivered) {
        size_t len = tls->read_end == 0 ? tls_decrypt(tls) : 0;
        if (len > 0) {
            tls->read_cb(tls->data, (ssize_t)len, tls_plain_out);
            continue;
        }
        if (tls->read_end != 0) {
            tls->read_end_delivered = true;
            tls->read_cb(tls->data, tls->read_end, NULL);
        }
        break;
    }
    tls_draining = NULL;
    if (!tls_closing(tls)) {
        tls_flush(tls); /* answers to key updates; a failure shows on the next write */
        tls_tcp_reading_update(tls);
    }
}

static void tls_tcp_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tandem_tls *tls = tls_map_find(stream);
    if (nread == 0) {
        return;
    }
    if (nread > 0 && BIO_write(tls->rbio, buf->base, (int)nread) != (int)nread) {
        ERR_clear_error();
        tls_set_error(tls, "%s", "read: out of memory");
        nread = UV_ENOMEM;
    }
    if (nread < 0) {
        tls->tcp_end = (int)nread;
        tls_tcp_reading_update(tls);
    }
    if (!tls->handshake_done) {
        if (tls->handshake_failed) {
            return;
        }
        tls_handshake_step(tls);
        if (!tls->handshake_done) {
            return;
        }
    }
    tls_drain(tls);
}

static void tls_deliver_cb(uv_idle_t *idle)
{
    struct tandem_tls *tls = idle->data;
    uv_idle_stop(idle);
    if (tls != NULL && tls->reading && !tls_closing(tls)) {
        tls_drain(tls);
    }
}

static void tls_deliver_close_cb(uv_handle_t *handle)
{
    free(handle);
}

/* Hands kept bytes over from the loop, not from inside the caller's read_start. */
static int tls_deliver_later(struct tandem_tls *tls)
{
    if (tls->deliver == NULL) {
        tls->deliver = malloc(sizeof *tls->deliver);
        if (tls->deliver == NULL) {
            return tandem_error_set(tls->error, TANDEM_NOMEM, "read: out of memory");
        }
        int rc = uv_idle_init(tls->tcp->loop, tls->deliver);
        tandem_assert(rc == 0); /* uv_idle_init cannot fail */
        tls->deliver->data = tls;
    }
    return tandem_error_from_uv(uv_idle_start(tls->deliver, tls_deliver_cb), tls->error, "read");
}

int tandem_tls_new(struct tandem_tls_ctx *ctx, uv_tcp_t *tcp, enum tandem_tls_role role,
                   const char *expect_node, void *data, struct tandem_tls **out, char *errmsg)
{
    tandem_assert(ctx != NULL && tcp != NULL && out != NULL && errmsg != NULL);
    if (expect_node != NULL &&
        (role != TANDEM_TLS_CLIENT ||
         !tls_name_ok((const unsigned char *)expect_node, strlen(expect_node)))) {
        return tandem_error_set(errmsg, TANDEM_INVALID, "expected node name \"%s\" is not valid",
                                expect_node);
    }
    struct tandem_tls *tls = calloc(1, sizeof *tls);
    if (tls == NULL) {
        return tandem_error_set(errmsg, TANDEM_NOMEM, "TLS session: out of memory");
    }
    *tls = (struct tandem_tls){.tcp = tcp, .role = role, .data = data};
    if (expect_node != NULL) {
        snprintf(tls->expect_node, sizeof tls->expect_node, "%s", expect_node);
    }
    int rc = TANDEM_CRYPTO;
    tls->ssl = SSL_new(role == TANDEM_TLS_SERVER ? ctx->server : ctx->client);
    tls->rbio = BIO_new(BIO_s_mem());
    tls->wbio = BIO_new(BIO_s_mem());
    if (tls->ssl == NULL || tls->rbio == NULL || tls->wbio == NULL) {
        BIO_free(tls->rbio);
        BIO_free(tls->wbio);
        tandem_error_from_ssl(errmsg, "TLS session");
        goto err_after_tls;
    }
    /* An empty memory BIO means "more to come", not end of file. */
    BIO_set_mem_eof_return(tls->rbio, -1);
    BIO_set_mem_eof_return(tls->wbio, -1);
    SSL_set_bio(tls->ssl, tls->rbio, tls->wbio);
    SSL_set_app_data(tls->ssl, tls);
    if (role == TANDEM_TLS_CLIENT) {
        SSL_set_connect_state(tls->ssl);
    } else {
        SSL_set_accept_state(tls->ssl);
    }
    rc = tls_map_add(tls);
    if (rc != TANDEM_OK) {
        tandem_error_set(errmsg, rc, "TLS session: out of memory");
        goto err_after_tls;
    }
    *out = tls;
    return TANDEM_OK;
err_after_tls:
    SSL_free(tls->ssl);
    free(tls);
    return rc;
}

int tandem_tls_handshake(struct tandem_tls *tls, tandem_tls_handshake_cb cb)
{
    tandem_assert(tls != NULL && cb != NULL && !tls->handshake_started);
    tls->handshake_cb = cb;
    tls->handshake_started = true;
    if (tls->role == TANDEM_TLS_CLIENT) {
        ERR_clear_error();
        int rc = SSL_do_handshake(tls->ssl); /* writes the ClientHello */
        if (rc == 1 || SSL_get_error(tls->ssl, rc) != SSL_ERROR_WANT_READ) {
            tls_ssl_error(tls, "TLS handshake");
            return TANDEM_CRYPTO;
        }
        rc = tls_flush(tls);
        if (rc != TANDEM_OK) {
            return rc;
        }
    }
    tls_tcp_reading_update(tls);
    if (!tls->tcp_reading) {
        return tandem_error_from_uv(tls->tcp_end != 0 ? tls->tcp_end : UV_EPIPE, tls->error,
                                    "TLS handshake: reading");
    }
    return TANDEM_OK;
}

int tandem_tls_read_start(struct tandem_tls *tls, tandem_tls_read_cb cb)
{
    tandem_assert(tls != NULL && cb != NULL);
    if (!tls->handshake_done) {
        return tandem_error_set(tls->error, TANDEM_STATE, "read: the handshake is not done");
    }
    if (tls_closing(tls)) {
        return tandem_error_set(tls->error, TANDEM_NET, "read: the connection is closing");
    }
    tls->read_cb = cb;
    tls->reading = true;
    if (tls_draining == tls) {
        return TANDEM_OK; /* the drain under way goes on with it */
    }
    bool kept = BIO_ctrl_pending(tls->rbio) > 0 || SSL_pending(tls->ssl) > 0 ||
                (tls->read_end != 0 && !tls->read_end_delivered);
    if (kept) {
        int rc = tls_deliver_later(tls);
        if (rc != TANDEM_OK) {
            tls->reading = false;
            return rc;
        }
    }
    tls_tcp_reading_update(tls);
    return TANDEM_OK;
}

int tandem_tls_read_stop(struct tandem_tls *tls)
{
    tandem_assert(tls != NULL);
    tls->reading = false;
    if (tls->deliver != NULL) {
        uv_idle_stop(tls->deliver);
    }
    if (tls_draining != tls) {
        tls_tcp_reading_update(tls);
    }
    return TANDEM_OK;
}

/* Encrypts len <= TLS_RECORD_PLAIN_MAX bytes as one record at the end of *w. */
static int tls_encrypt(struct tandem_tls *tls, struct tls_write **w, const char *bytes, size_t len)
{
    int n = SSL_write(tls->ssl, bytes, (int)len);
    if (n != (int)len) {
        tls_ssl_error(tls, "TLS write");
        return TANDEM_PROTOCOL;
    }
    if (tls_write_collect(tls, w) != TANDEM_OK) {
        return tandem_error_set(tls->error, TANDEM_NOMEM, "write: out of memory");
    }
    return TANDEM_OK;
}

/* Encrypts bufs into *w in full records: small buffers are gathered, large ones go straight. */
static int tls_encrypt_bufs(struct tandem_tls *tls, struct tls_write **w, const uv_buf_t bufs[],
                            unsigned nbufs)
{
    size_t staged = 0;
    int rc = TANDEM_OK;
    for (unsigned i = 0; i < nbufs && rc == TANDEM_OK; i++) {
        const char *at = bufs[i].base;
        size_t left = bufs[i].len;
        while (left > 0 && rc == TANDEM_OK) {
            size_t n = TLS_RECORD_PLAIN_MAX - staged;
            if (staged == 0 && left >= TLS_RECORD_PLAIN_MAX) {
                rc = tls_encrypt(tls, w, at, TLS_RECORD_PLAIN_MAX);
            } else {
                n = left < n ? left : n;
                memcpy(tls_staging + staged, at, n);
                staged += n;
                if (staged == TLS_RECORD_PLAIN_MAX) {
                    rc = tls_encrypt(tls, w, tls_staging, staged);
                    staged = 0;
                }
            }
            at += n;
            left -= n;
        }
    }
    if (rc == TANDEM_OK && staged > 0) {
        rc = tls_encrypt(tls, w, tls_staging, staged);
    }
    return rc;
}

int tandem_tls_write(struct tandem_tls *tls, const uv_buf_t bufs[], unsigned nbufs,
                     void *write_data, tandem_tls_write_cb cb)
{
    tandem_assert(tls != NULL && (bufs != NULL || nbufs == 0) && cb != NULL);
    if (!tls->handshake_done) {
        return tandem_error_set(tls->error, TANDEM_STATE, "write: the handshake is not done");
    }
    if (tls_closing(tls)) {
        return tandem_error_set(tls->error, TANDEM_NET, "write: the connection is closing");
    }
    size_t total = 0;
    for (unsigned i = 0; i < nbufs; i++) {
        total += bufs[i].len;
    }
    size_t records = total / TLS_RECORD_PLAIN_MAX + 1;
    struct tls_write *w =
        tls_write_new(tls, BIO_ctrl_pending(tls->wbio) + total + records * TLS_RECORD_OVERHEAD);
    if (w == NULL) {
        return tandem_error_set(tls->error, TANDEM_NOMEM, "write: out of memory");
    }
    w->write_data = write_data;
    w->cb = cb;
    ERR_clear_error();
    int rc = tls_write_collect(tls, &w); /* records of ours still waiting go first */
    if (rc == TANDEM_OK) {
        rc = tls_encrypt_bufs(tls, &w, bufs, nbufs);
    }
    if (rc != TANDEM_OK) {
        free(w);
        return rc;
    }
    return tls_write_submit(tls, w);
}

size_t tandem_tls_write_queue_bytes(const struct tandem_tls *tls)
{
    return tls->write_queue_bytes;
}

void tandem_tls_close_notify(struct tandem_tls *tls)
{
    tandem_assert(tls != NULL);
    if (!tls->handshake_done || tls_closing(tls)) {
        return;
    }
    ERR_clear_error();
    SSL_shutdown(tls->ssl); /* 0: sent, the peer's answer is not awaited */
    ERR_clear_error();
    tls_flush(tls);
}

void tandem_tls_peer(const struct tandem_tls *tls, struct tandem_tls_peer *out)
{
    tandem_assert(tls != NULL && out != NULL);
    if (tls->handshake_done) {
        *out = tls->peer;
    } else {
        *out = (struct tandem_tls_peer){.kind = TANDEM_TLS_PEER_NONE};
    }
}

bool tandem_tls_peer_is_node(const struct tandem_tls *tls, const char *node)
{
    tandem_assert(tls != NULL);
    if (!tls->handshake_done || tls->peer.kind != TANDEM_TLS_PEER_NODE || node == NULL ||
        node[0] == '\0') {
        return false;
    }
    X509 *cert = SSL_get0_peer_certificate(tls->ssl);
    return cert != NULL && tls_cert_names(cert, node);
}

const char *tandem_tls_error(const struct tandem_tls *tls)
{
    return tls->error;
}

void tandem_tls_free(struct tandem_tls *tls)
{
    if (tls == NULL) {
        return;
    }
    /* From the close callback: uv_close already ran the write callbacks, nothing reads. */
    tandem_assert(tls->write_queue_bytes == 0);
    tandem_assert(!tls->tcp_reading || tls_closing(tls));
    if (tls->deliver != NULL) {
        tls->deliver->data = NULL;
        uv_close((uv_handle_t *)tls->deliver, tls_deliver_close_cb);
    }
    tls_map_remove(tls);
    SSL_free(tls->ssl);
    free(tls);
}
