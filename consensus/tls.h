/* tandem's one TLS stream module: TLS 1.3 (AEAD suites only, no renegotiation, no compression)
 * on OpenSSL 3 over a libuv TCP stream through memory BIOs, so handshakes and records never
 * block the loop. Used by the raft transport, the HTTP server and the node-to-node HTTP client.
 *
 * Identities. Every certificate chains to the cluster CA (tls_ca). A NODE certificate has the
 * extended key usages serverAuth and clientAuth, its subject CN is the node name and a SAN
 * DNS entry repeats it (more SANs give its addresses); a USER certificate has clientAuth only
 * and its CN names the person. deploy/certs.sh makes both kinds. */
#ifndef TANDEM_CONSENSUS_TLS_H
#define TANDEM_CONSENSUS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define TANDEM_TLS_NAME_MAX         63   /* node and user names, like TANDEM_NAME_LEN_MAX */
#define TANDEM_TLS_PATH_MAX         4096 /* file names in the config */
#define TANDEM_TLS_READ_BYTES       (64u * 1024u) /* ciphertext read at once, plaintext handed up */
#define TANDEM_TLS_EXPIRY_WARN_DAYS 30

/* The files of one TLS identity, borrowed (copied by tandem_tls_ctx_new). crl may be NULL. */
struct tandem_tls_files {
    const char *ca;   /* PEM, the cluster CA (one or more certificates) */
    const char *cert; /* PEM, our certificate (chain) */
    const char *key;  /* PEM, its private key, unencrypted */
    const char *crl;  /* PEM, revoked certificates of the CA; NULL or "" = none. Past its
                       * nextUpdate it still applies (crl_next_update_ms shows it) */
};

/* Expiry and subject of the loaded certificates, for /v1/status and /metrics. Times are Unix
 * milliseconds (show them as RFC 3339). */
struct tandem_tls_cert_info {
    char name[TANDEM_TLS_NAME_MAX + 1]; /* our certificate's CN */
    int64_t cert_not_after_ms;
    int64_t ca_not_after_ms;    /* earliest expiry among the CA certificates */
    int64_t crl_next_update_ms; /* 0 = no CRL or none given */
    uint64_t reloads;           /* successful tandem_tls_ctx_reload calls */
};

/* One loaded identity: a server SSL_CTX and a client SSL_CTX sharing the files. Connections
 * made after a reload use the new certificates; open ones keep theirs. */
struct tandem_tls_ctx;

/* Loads and checks the files (key matches cert, cert chains to the CA and is not revoked by the
 * CRL, TLS 1.3 only). Returns TANDEM_OK or TANDEM_CONFIG / TANDEM_CRYPTO / TANDEM_NOMEM with
 * errmsg (TANDEM_ERRMSG_SIZE) naming the file and the problem. */
int tandem_tls_ctx_new(const struct tandem_tls_files *files, struct tandem_tls_ctx **out,
                       char *errmsg);
/* Re-reads the same files (SIGHUP). On failure the loaded identity stays in use and errmsg says
 * why. */
int tandem_tls_ctx_reload(struct tandem_tls_ctx *ctx, char *errmsg);
void tandem_tls_ctx_info(const struct tandem_tls_ctx *ctx, struct tandem_tls_cert_info *out);
/* Frees ctx; connections still open keep what they use until they end. */
void tandem_tls_ctx_free(struct tandem_tls_ctx *ctx);

enum tandem_tls_peer_kind {
    TANDEM_TLS_PEER_NONE = 0, /* no certificate (plaintext, or handshake not done) */
    TANDEM_TLS_PEER_USER,     /* a verified user certificate */
    TANDEM_TLS_PEER_NODE,     /* a verified node certificate */
};

/* Who the other end proved to be in the handshake. */
struct tandem_tls_peer {
    enum tandem_tls_peer_kind kind;
    char name[TANDEM_TLS_NAME_MAX + 1]; /* CN; "" for NONE */
};

/* One connection's TLS session. */
struct tandem_tls;

enum tandem_tls_role {
    TANDEM_TLS_SERVER, /* we accepted: the peer must present a certificate of the CA */
    TANDEM_TLS_CLIENT, /* we connected: the peer must present a NODE certificate */
    /* we accepted, and the peer may present no certificate (peer kind NONE): the API server,
     * which answers such a client 401 except for health checks; a certificate presented must
     * still chain to the CA (added for issue 12's 401, after the interface was settled) */
    TANDEM_TLS_SERVER_CERT_OPTIONAL,
};

/* Callbacks. data is the one given to tandem_tls_new. status is 0 or a TANDEM_* code with a
 * message the module logged into tandem_tls_error(). */
typedef void (*tandem_tls_handshake_cb)(void *data, int status);
/* Plaintext read: n > 0 bytes at buf (valid during the call only); n < 0 is a libuv code
 * (UV_EOF for a clean close_notify or TCP EOF, UV_EPROTO for a TLS error). */
typedef void (*tandem_tls_read_cb)(void *data, ssize_t n, const char *buf);
typedef void (*tandem_tls_write_cb)(void *data, void *write_data, int status);

/* Wraps tcp (connected, owned by the caller, not reading) in a TLS session of ctx; tcp->data
 * stays the caller's (the module finds its session by the handle). For
 * TANDEM_TLS_CLIENT, expect_node (may be NULL = any node) is the node name the server's
 * certificate must carry. Returns TANDEM_OK or TANDEM_NOMEM / TANDEM_CRYPTO with errmsg. The
 * caller still owns and closes tcp; free the tls object in tcp's close callback (pending
 * writes are cancelled by uv_close and their callbacks run first with status TANDEM_NET). */
int tandem_tls_new(struct tandem_tls_ctx *ctx, uv_tcp_t *tcp, enum tandem_tls_role role,
                   const char *expect_node, void *data, struct tandem_tls **out, char *errmsg);
/* Runs the handshake (starts reading tcp); cb runs once, from the loop. Time limits are the
 * caller's (close tcp from its timer). */
int tandem_tls_handshake(struct tandem_tls *tls, tandem_tls_handshake_cb cb);
/* After a successful handshake: hands decrypted bytes to cb until stop. Bytes decrypted during
 * the handshake or while stopped are kept and handed over first. */
int tandem_tls_read_start(struct tandem_tls *tls, tandem_tls_read_cb cb);
int tandem_tls_read_stop(struct tandem_tls *tls);
/* Encrypts bufs now (they may be reused when this returns) and writes the records; cb runs once
 * with write_data when they are written or failed. Returns TANDEM_OK, or an error and then cb
 * does not run. */
int tandem_tls_write(struct tandem_tls *tls, const uv_buf_t bufs[], unsigned nbufs,
                     void *write_data, tandem_tls_write_cb cb);
/* Bytes encrypted and not yet written to tcp (backpressure). */
size_t tandem_tls_write_queue_bytes(const struct tandem_tls *tls);
/* Sends close_notify (best effort); the caller then shuts down / closes tcp. */
void tandem_tls_close_notify(struct tandem_tls *tls);
void tandem_tls_peer(const struct tandem_tls *tls, struct tandem_tls_peer *out);
/* Whether the peer proved, with a verified NODE certificate, to be node (a SAN DNS entry equal
 * to it); false for a user certificate or none. */
bool tandem_tls_peer_is_node(const struct tandem_tls *tls, const char *node);
/* The last failure's text ("" if none): "certificate verify failed: ...", "peer is a user
 * certificate", "TLS 1.2 refused" ... */
const char *tandem_tls_error(const struct tandem_tls *tls);
/* Frees tls; call only from tcp's close callback (or before any tandem_tls_* I/O call). */
void tandem_tls_free(struct tandem_tls *tls);

#endif
