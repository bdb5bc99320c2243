/* tandemctl's TLS settings and the translation of curl's TLS failures (see tls.h). */
#include "node/ctl/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define CURL_MESSAGE_MAX 200 /* curl's own words kept after our explanation */

static struct tandem_ctl_tls settings;

static const char *flag_or_env(const char *flag, const char *env)
{
    const char *value = flag != NULL ? flag : getenv(env);
    return value != NULL && value[0] != '\0' ? value : NULL;
}

static int check_readable(const char *what, const char *path, char *errmsg, size_t size)
{
    if (path == NULL) {
        return 0;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(errmsg, size, "%s: cannot read '%s': %s", what, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

int tandem_ctl_tls_set(const struct tandem_ctl_tls *flags, char *errmsg, size_t size)
{
    struct tandem_ctl_tls t = {
        .cacert = flag_or_env(flags->cacert, TANDEM_CTL_CACERT_ENV),
        .cert = flag_or_env(flags->cert, TANDEM_CTL_CERT_ENV),
        .key = flag_or_env(flags->key, TANDEM_CTL_KEY_ENV),
    };
    if ((t.cert == NULL) != (t.key == NULL)) {
        snprintf(errmsg, size, "%s without %s: give both the client certificate and its key",
                 t.cert != NULL ? "--cert (TANDEM_CERT)" : "--key (TANDEM_KEY)",
                 t.cert != NULL ? "--key (TANDEM_KEY)" : "--cert (TANDEM_CERT)");
        return -1;
    }
    if (check_readable("--cacert (TANDEM_CACERT)", t.cacert, errmsg, size) != 0 ||
        check_readable("--cert (TANDEM_CERT)", t.cert, errmsg, size) != 0 ||
        check_readable("--key (TANDEM_KEY)", t.key, errmsg, size) != 0) {
        return -1;
    }
    settings = t;
    return 0;
}

void tandem_ctl_tls_apply(void *handle)
{
    CURL *curl = handle;
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
    if (settings.cacert != NULL) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, settings.cacert);
    }
    if (settings.cert != NULL) {
        curl_easy_setopt(curl, CURLOPT_SSLCERT, settings.cert);
        curl_easy_setopt(curl, CURLOPT_SSLKEY, settings.key);
    }
}

/* Advice for a failure on an https:// endpoint, or NULL when it is not about TLS. */
static const char *advice_https(CURLcode code, const char *message)
{
    switch (code) {
        case CURLE_PEER_FAILED_VERIFICATION:
            return settings.cacert != NULL
                       ? "the server's certificate does not verify against --cacert "
                         "(TANDEM_CACERT): another cluster's CA, or a certificate for another name"
                       : "the server's certificate is not trusted: give the cluster CA with "
                         "--cacert or TANDEM_CACERT";
        case CURLE_SSL_CACERT_BADFILE:
            return "cannot load the CA file of --cacert (TANDEM_CACERT): not a PEM certificate";
        case CURLE_SSL_CERTPROBLEM:
            return "cannot use the client certificate or key of --cert/--key "
                   "(TANDEM_CERT/TANDEM_KEY): not PEM, or the key does not match";
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
            break;
        default:
            return NULL;
    }
    if (strstr(message, "wrong version number") != NULL ||
        strstr(message, "packet length too long") != NULL) {
        return "the server does not speak TLS: an --insecure node wants an http:// endpoint";
    }
    if (strstr(message, "protocol version") != NULL ||
        strstr(message, "unsupported protocol") != NULL) {
        return "the server does not speak TLS 1.3, the only version tandemctl accepts";
    }
    if (strstr(message, "alert") != NULL) {
        return settings.cert != NULL
                   ? "the server refused the TLS handshake: is the client certificate of --cert "
                     "(TANDEM_CERT) signed by the cluster CA and not revoked?"
                   : "the server refused the TLS handshake: it wants a client certificate "
                     "(--cert/--key or TANDEM_CERT/TANDEM_KEY)";
    }
    return "the connection closed during the TLS handshake or right after it: if the server "
           "wants a client certificate, check --cert/--key (TANDEM_CERT/TANDEM_KEY)";
}

/* Advice for a failure on an http:// endpoint that a TLS server would cause, or NULL. */
static const char *advice_http(CURLcode code)
{
    switch (code) {
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_WEIRD_SERVER_REPLY:
            return "no HTTP answer: if the node runs TLS (the default), use an https:// endpoint";
        default:
            return NULL;
    }
}

void tandem_ctl_tls_explain(int code, const char *url, char *errmsg, size_t size)
{
    char message[CURL_MESSAGE_MAX + 1];
    /* OpenSSL's reason is what follows "SSL routines::"; the prefixes only make it long. */
    const char *reason = strstr(errmsg, "::");
    snprintf(message, sizeof message, "%s", reason != NULL ? reason + 2 : errmsg);
    const char *text = strncmp(url, "https://", 8) == 0 ? advice_https((CURLcode)code, message)
                                                        : advice_http((CURLcode)code);
    if (text != NULL) {
        snprintf(errmsg, size, "%s (%s)", text, message);
    }
}
