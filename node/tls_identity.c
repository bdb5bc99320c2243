/* The node's TLS identity: load at start, reload on SIGHUP, expiry in status and metrics. */
#include "node/tls_identity.h"

#include <inttypes.h>
#include <string.h>

#include "node/log.h"
#include "node/metrics.h"
#include "storage/assert.h"
#include "storage/domain_codec.h"
#include "storage/error.h"

int tandem_tls_identity_load(const struct tandem_config *c, struct tandem_tls_ctx **out,
                             char *errmsg)
{
    *out = NULL;
    if (c->insecure) {
        return TANDEM_OK;
    }
    /* The config requires the three unless insecure; checked again so that no path starts a
     * node in plaintext without --insecure. */
    const char *missing = c->tls_ca[0] == '\0'     ? "tls_ca"
                          : c->tls_cert[0] == '\0' ? "tls_cert"
                          : c->tls_key[0] == '\0'  ? "tls_key"
                                                   : NULL;
    if (missing != NULL) {
        return tandem_error_set(errmsg, TANDEM_CONFIG,
                                "option %s is required with TLS (or start with --insecure)",
                                missing);
    }
    struct tandem_tls_files files = {
        .ca = c->tls_ca,
        .cert = c->tls_cert,
        .key = c->tls_key,
        .crl = c->tls_crl[0] != '\0' ? c->tls_crl : NULL,
    };
    return tandem_tls_ctx_new(&files, out, errmsg);
}

void tandem_tls_identity_log_start(const struct tandem_config *c, const struct tandem_tls_ctx *tls)
{
    if (tls == NULL) {
        tandem_assert(c->insecure); /* tandem_tls_identity_load gave a context otherwise */
        tandem_log(TANDEM_LOG_WARN, "insecure: TLS and authentication are off; for benchmarks "
                                    "only, never with personal data");
        return;
    }
    struct tandem_tls_cert_info info;
    char expiry[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_tls_ctx_info(tls, &info);
    tandem_rfc3339_format_ms(info.cert_not_after_ms, expiry);
    tandem_log(TANDEM_LOG_INFO, "TLS: certificate %s, valid until %s", info.name, expiry);
}

void tandem_tls_identity_reload(struct tandem_tls_ctx *tls)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (tls == NULL) {
        tandem_log(TANDEM_LOG_INFO, "SIGHUP: nothing to reload (TLS is off)");
        return;
    }
    if (tandem_tls_ctx_reload(tls, errmsg) != TANDEM_OK) {
        tandem_log(TANDEM_LOG_ERROR, "SIGHUP: certificates not reloaded, the loaded ones stay: %s",
                   errmsg);
        return;
    }
    struct tandem_tls_cert_info info;
    char expiry[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_tls_ctx_info(tls, &info);
    tandem_rfc3339_format_ms(info.cert_not_after_ms, expiry);
    tandem_log(TANDEM_LOG_INFO,
               "SIGHUP: certificates reloaded (%" PRIu64 " reloads): %s valid until %s",
               info.reloads, info.name, expiry);
}

/* RFC 3339 text of ms, or null for 0 (none). */
static json_t *time_json(int64_t ms)
{
    char text[TANDEM_RFC3339_LEN_MAX + 1];
    if (ms == 0) {
        return json_null();
    }
    tandem_rfc3339_format_ms(ms, text);
    return json_string(text);
}

/* Whole days from now until ms, rounded down (negative once past). */
static json_int_t days_left(int64_t ms, int64_t now_ms)
{
    int64_t left = ms - now_ms;
    return (json_int_t)(left >= 0 ? left / TANDEM_TLS_DAY_MS
                                  : -((-left + TANDEM_TLS_DAY_MS - 1) / TANDEM_TLS_DAY_MS));
}

static void expiry_warn(json_t *warnings, const char *what, int64_t ms, int64_t now_ms)
{
    char text[TANDEM_RFC3339_LEN_MAX + 1], line[256];
    if (ms - now_ms >= TANDEM_TLS_EXPIRY_WARN_DAYS * TANDEM_TLS_DAY_MS) {
        return;
    }
    tandem_rfc3339_format_ms(ms, text);
    if (ms <= now_ms) {
        snprintf(line, sizeof line, "%s expired at %s", what, text);
    } else {
        snprintf(line, sizeof line, "%s expires at %s, in %lld days: renew it and send SIGHUP",
                 what, text, (long long)days_left(ms, now_ms));
    }
    json_array_append_new(warnings, json_string(line));
}

json_t *tandem_tls_identity_status(const struct tandem_tls_ctx *tls, int64_t now_ms,
                                   json_t *warnings)
{
    struct tandem_tls_cert_info info;
    char what[TANDEM_TLS_NAME_MAX + 64];
    if (tls == NULL) {
        return json_pack("{s:b}", "enabled", 0);
    }
    tandem_tls_ctx_info(tls, &info);
    snprintf(what, sizeof what, "TLS certificate %s", info.name);
    expiry_warn(warnings, what, info.cert_not_after_ms, now_ms);
    expiry_warn(warnings, "TLS cluster CA certificate", info.ca_not_after_ms, now_ms);
    if (info.crl_next_update_ms != 0 && info.crl_next_update_ms <= now_ms) {
        json_array_append_new(warnings, json_string("TLS CRL is past its next update: publish a "
                                                    "fresh one and send SIGHUP"));
    }
    return json_pack("{s:b,s:{s:s,s:o,s:I},s:{s:o},s:{s:o},s:I}", "enabled", 1, "cert", "name",
                     info.name, "not_after", time_json(info.cert_not_after_ms), "days_left",
                     days_left(info.cert_not_after_ms, now_ms), "ca", "not_after",
                     time_json(info.ca_not_after_ms), "crl", "next_update",
                     time_json(info.crl_next_update_ms), "reloads", (json_int_t)info.reloads);
}

void tandem_tls_identity_metrics(const struct tandem_tls_ctx *tls, int64_t now_ms, FILE *out)
{
    if (tls == NULL) {
        return;
    }
    struct tandem_tls_cert_info info;
    tandem_tls_ctx_info(tls, &info);
    tandem_metrics_family(out, "tandem_tls_cert_expiry_seconds", "gauge",
                          "Seconds until notAfter of this node's certificate (cert=node) and of "
                          "the cluster CA's (cert=ca); negative: expired.");
    fprintf(out,
            "tandem_tls_cert_expiry_seconds{cert=\"node\"} %" PRId64 "\n"
            "tandem_tls_cert_expiry_seconds{cert=\"ca\"} %" PRId64 "\n",
            (info.cert_not_after_ms - now_ms) / 1000, (info.ca_not_after_ms - now_ms) / 1000);
    tandem_metrics_family(out, "tandem_tls_reloads_total", "counter",
                          "Certificate reloads (SIGHUP) that took effect.");
    fprintf(out, "tandem_tls_reloads_total %" PRIu64 "\n", info.reloads);
}
