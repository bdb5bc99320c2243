/* The node's TLS identity: loading it from the config at start, reloading it on SIGHUP, and
 * showing its certificates' expiry in /v1/status and /metrics. */
#ifndef TANDEM_NODE_TLS_IDENTITY_H
#define TANDEM_NODE_TLS_IDENTITY_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "consensus/tls.h"
#include "node/config.h"

#define TANDEM_TLS_DAY_MS (24 * 3600 * 1000LL)

/* Loads tls_ca/tls_cert/tls_key/tls_crl into *out; *out stays NULL when c->insecure (no TLS).
 * Returns 0, or a tandem code with errmsg naming the option or file and the problem. */
int tandem_tls_identity_load(const struct tandem_config *c, struct tandem_tls_ctx **out,
                             char *errmsg);
/* Logs the certificate in use, or warns, on every start, that a node without TLS (insecure) is
 * for benchmarks only. */
void tandem_tls_identity_log_start(const struct tandem_config *c, const struct tandem_tls_ctx *tls);
/* SIGHUP: re-reads the files; logs the new expiry (info) or why the old identity stays (error). */
void tandem_tls_identity_reload(struct tandem_tls_ctx *tls);
/* The "tls" object of /v1/status ({"enabled":false} without TLS). Appends to warnings (a JSON
 * array of strings) each certificate within TANDEM_TLS_EXPIRY_WARN_DAYS of its expiry and a CRL
 * past its next update. now_ms: the wall clock. */
json_t *tandem_tls_identity_status(const struct tandem_tls_ctx *tls, int64_t now_ms,
                                   json_t *warnings);
/* The TLS lines of /metrics: certificate expiry and reloads (the API's refused handshakes are
 * tandem_connections_refused_total{listener="api",reason="tls"}, with the other refusals). */
void tandem_tls_identity_metrics(const struct tandem_tls_ctx *tls, int64_t now_ms, FILE *out);

#endif
