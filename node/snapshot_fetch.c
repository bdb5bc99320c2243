/* Snapshot files fetched from another member with libcurl (node/snapshot_fetch.h). */
#include "node/snapshot_fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "consensus/member.h"
#include "storage/backup_file.h"
#include "storage/error.h"
#include "storage/writeback.h"

int tandem_snapshot_fetcher_init(struct tandem_snapshot_fetcher *f, const struct tandem_config *c,
                                 char *errmsg)
{
    memset(f, 0, sizeof *f);
    f->tls = !c->insecure;
    snprintf(f->ca, sizeof f->ca, "%s", c->tls_ca);
    snprintf(f->cert, sizeof f->cert, "%s", c->tls_cert);
    snprintf(f->key, sizeof f->key, "%s", c->tls_key);
    snprintf(f->crl, sizeof f->crl, "%s", c->tls_crl);
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        (void)tandem_error_set(errmsg, TANDEM_NOMEM, "libcurl: %s", curl_easy_strerror(rc));
        return -1;
    }
    return 0;
}

struct sink {
    int fd;
    uint64_t got, len;
    const atomic_bool *cancel;
    int rv; /* a tandem code once the sink refused bytes */
    struct tandem_writeback pace;
    char *errmsg;
};

static size_t sink_write(char *ptr, size_t size, size_t nmemb, void *data)
{
    struct sink *k = data;
    size_t n = size * nmemb;
    if (n > k->len - k->got) {
        k->rv = tandem_error_set(k->errmsg, TANDEM_PROTOCOL,
                                 "the file is longer than the %" PRIu64 " bytes named", k->len);
        return 0;
    }
    if ((k->rv = tandem_backup_write_full(k->fd, ptr, n, "snapshot file write", k->errmsg)) != 0) {
        return 0;
    }
    k->got += n;
    tandem_writeback_note(&k->pace, k->got);
    return n;
}

static int sink_progress(void *data, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                         curl_off_t ulnow)
{
    struct sink *k = data;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return atomic_load(k->cancel) ? 1 : 0; /* non-zero aborts the transfer */
}

/* One GET into fd; returns 0 or a tandem code with errmsg filled. */
static int fetch_get(const struct tandem_snapshot_fetcher *f, const char *url, struct sink *k)
{
    char curl_err[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURL *h = curl_easy_init();
    if (h == NULL) {
        return tandem_error_set(k->errmsg, TANDEM_NOMEM, "libcurl: no handle");
    }
    CURLcode rc = CURLE_OK;
#define SET(opt, value)                                                                            \
    if (rc == CURLE_OK) {                                                                          \
        rc = curl_easy_setopt(h, opt, value);                                                      \
    }
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, f->tls ? "https" : "http");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, curl_err);
    SET(CURLOPT_FAILONERROR, 1L);
    SET(CURLOPT_CONNECTTIMEOUT, TANDEM_SNAPSHOT_FETCH_CONNECT_S);
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, TANDEM_SNAPSHOT_FETCH_STALL_S);
    SET(CURLOPT_WRITEFUNCTION, sink_write);
    SET(CURLOPT_WRITEDATA, k);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_XFERINFOFUNCTION, sink_progress);
    SET(CURLOPT_XFERINFODATA, k);
    if (f->tls) {
        /* Any node certificate of the cluster CA: only node certificates are servers
         * (serverAuth), and the route answers node certificates only. Node certificates name
         * nodes, not the addresses a URL may use: no host name check. */
        SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
        SET(CURLOPT_CAINFO, f->ca);
        SET(CURLOPT_SSLCERT, f->cert);
        SET(CURLOPT_SSLKEY, f->key);
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
        if (f->crl[0] != '\0') {
            SET(CURLOPT_CRLFILE, f->crl);
        }
    }
#undef SET
    if (rc == CURLE_OK) {
        rc = curl_easy_perform(h);
    }
    (void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (k->rv != 0) {
        return k->rv;
    }
    if (rc != CURLE_OK) {
        return tandem_error_set(
            k->errmsg, rc == CURLE_ABORTED_BY_CALLBACK ? TANDEM_SHUTDOWN : TANDEM_NET,
            "GET %.200s: %s", url, curl_err[0] != '\0' ? curl_err : curl_easy_strerror(rc));
    }
    if (status != 200 || k->got != k->len) {
        return tandem_error_set(k->errmsg, TANDEM_PROTOCOL,
                                "GET %.200s: HTTP %ld with %" PRIu64 " of %" PRIu64 " bytes", url,
                                status, k->got, k->len);
    }
    return 0;
}

int tandem_snapshot_fetch(void *data, const char *address, const char *name, uint64_t len,
                          const char *dest, const atomic_bool *cancel, char *errmsg)
{
    const struct tandem_snapshot_fetcher *f = data;
    struct tandem_member m;
    char url[TANDEM_URL_LEN_MAX + 128];
    if (tandem_member_address_parse(address, &m, errmsg) != 0) {
        return TANDEM_INVALID;
    }
    snprintf(url, sizeof url, "%s/v1/node/snapshots/%s", m.api, name);
    int fd = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return tandem_error_from_errno(errno, errmsg, "snapshot file");
    }
    struct sink k = {.fd = fd, .len = len, .cancel = cancel, .errmsg = errmsg};
    tandem_writeback_init(&k.pace, fd);
    int rv = fetch_get(f, url, &k);
    if (rv == 0 && fdatasync(fd) != 0) {
        rv = tandem_error_from_errno(errno, errmsg, "snapshot file fdatasync");
    }
    if (close(fd) != 0 && rv == 0) {
        rv = tandem_error_from_errno(errno, errmsg, "snapshot file close");
    }
    if (rv != 0) {
        (void)unlink(dest);
    }
    return rv;
}
