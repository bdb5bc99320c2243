/* tandemctl's TLS settings for https:// endpoints (CA, client certificate and key) and the
 * translation of curl's TLS failures into one line an operator can act on. */
#ifndef TANDEM_CTL_TLS_H
#define TANDEM_CTL_TLS_H

#include <stddef.h>

#define TANDEM_CTL_CACERT_ENV "TANDEM_CACERT"
#define TANDEM_CTL_CERT_ENV   "TANDEM_CERT"
#define TANDEM_CTL_KEY_ENV    "TANDEM_KEY"

/* Paths, borrowed from argv or the environment; NULL when not given. Without cacert the
 * system's CA store verifies servers; without cert and key no client certificate is sent. */
struct tandem_ctl_tls {
    const char *cacert;
    const char *cert;
    const char *key;
};

/* Fills each path missing from flags from the environment (flags win), checks that cert and
 * key come together and that every named file can be read, and makes the result the settings
 * of every later transfer. Returns 0, or -1 with errmsg (size bytes) saying which is wrong. */
int tandem_ctl_tls_set(const struct tandem_ctl_tls *flags, char *errmsg, size_t size);

/* Applies the settings to a curl easy handle (CURL *): TLS 1.3 only, the server verified
 * against the CA, the client certificate presented when there is one. */
void tandem_ctl_tls_apply(void *curl);

/* Rewrites errmsg (size bytes), curl's message for a failed transfer to url with result code
 * (a CURLcode), into one line saying what to check when the failure is about TLS; other
 * failures are left as they are. */
void tandem_ctl_tls_explain(int code, const char *url, char *errmsg, size_t size);

#endif
