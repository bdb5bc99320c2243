/* Unit tests for the pure parts of tandemctl's streamed backup download: the head's
 * X-Tandem-Backup-* lines, the redirect's base URL and the check of the file against the head. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "node/ctl/backup_download.h"
#include "storage/store.h"

static void line(struct tandem_ctl_download_head *h, const char *text)
{
    tandem_ctl_download_head_line(h, text, strlen(text));
}

static void test_head_lines(void **state)
{
    struct tandem_ctl_download_head h;
    (void)state;
    tandem_ctl_download_head_init(&h);
    assert_int_equal(h.index, -1);
    assert_int_equal(h.length, -1);
    line(&h, "HTTP/1.1 200 OK\r\n");
    line(&h, "content-length: 4096\r\n");
    line(&h, "X-Tandem-Backup-Name:  c-east-east-1-9-20261205T000000.000Z.tbk \r\n");
    line(&h, "X-Tandem-Backup-Index: 9\r\n");
    line(&h, "X-Tandem-Backup-Sha256: ab12\r\n");
    line(&h, "X-Tandem-Backup-State-Digest: cd34\r\n");
    line(&h, "X-Tandem-Node: east-1\r\n");
    assert_int_equal(h.length, 4096);
    assert_int_equal(h.index, 9);
    assert_string_equal(h.name, "c-east-east-1-9-20261205T000000.000Z.tbk");
    assert_string_equal(h.sha256, "ab12");
    assert_string_equal(h.state_digest, "cd34");
    line(&h, "X-Tandem-Backup-Index: -3\r\n"); /* not a number: absent */
    assert_int_equal(h.index, -1);
    /* a new status line (the leader's answer after a redirect) starts afresh */
    line(&h, "HTTP/1.1 307 Temporary Redirect\r\n");
    assert_int_equal(h.length, -1);
    assert_string_equal(h.sha256, "");
    /* a value longer than its field is not taken (never cut) */
    char longer[200];
    snprintf(longer, sizeof longer, "X-Tandem-Backup-Sha256: %0100d\r\n", 7);
    line(&h, longer);
    assert_string_equal(h.sha256, "");
}

#define HTTPS_ENDPOINT "https://127.0.0.1:9443"

static void test_redirect_base(void **state)
{
    char base[128];
    (void)state;
    assert_int_equal(tandem_ctl_download_base("https://127.0.0.1:8443/v1/backups/download",
                                              HTTPS_ENDPOINT, base, sizeof base),
                     0);
    assert_string_equal(base, "https://127.0.0.1:8443");
    assert_int_equal(tandem_ctl_download_base("http://[::1]:80/v1/backups/download",
                                              "http://[::1]:81", base, sizeof base),
                     0);
    assert_string_equal(base, "http://[::1]:80");
    static const char *const bad[] = {
        "",
        "/v1/backups/download",
        "ftp://h/v1/backups/download",
        "https:///v1/backups/download",
        "https://h:1/v1/backups",
        "https://h:1/v1/backups/download?x=1",
        "https://user@h:1/v1/backups/download",
        "https://h 1/v1/backups/download",
        "https://h:1/v1/kv/download",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(tandem_ctl_download_base(bad[i], HTTPS_ENDPOINT, base, sizeof base), -1);
    }
    assert_int_equal(tandem_ctl_download_base("https://127.0.0.1:8443/v1/backups/download",
                                              HTTPS_ENDPOINT, base, 8),
                     -1);
    /* An https endpoint never sends tandemctl (and its token) to plaintext. */
    assert_int_equal(tandem_ctl_download_base("http://127.0.0.1:8443/v1/backups/download",
                                              HTTPS_ENDPOINT, base, sizeof base),
                     -1);
}

static void test_matches(void **state)
{
    struct tandem_ctl_download_head h;
    struct tandem_backup_manifest m;
    char why[TANDEM_CTL_ERRMSG_SIZE], digest[2 * TANDEM_DIGEST_LEN + 1];
    const char *sha = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    (void)state;
    memset(&m, 0, sizeof m);
    m.applied_index = 42;
    memset(m.state_digest, 0x5a, sizeof m.state_digest);
    tandem_digest_hex(m.state_digest, digest);
    tandem_ctl_download_head_init(&h);
    h.length = 1000;
    snprintf(h.sha256, sizeof h.sha256, "%s", sha);
    assert_int_equal(tandem_ctl_download_matches(&h, &m, sha, 1000, why), 0);
    h.index = 42;
    snprintf(h.state_digest, sizeof h.state_digest, "%s", digest);
    assert_int_equal(tandem_ctl_download_matches(&h, &m, sha, 1000, why), 0);
    assert_int_equal(tandem_ctl_download_matches(&h, &m, sha, 999, why), -1);
    assert_non_null(strstr(why, "999 bytes received, 1000 announced"));
    assert_int_equal(tandem_ctl_download_matches(&h, &m, digest, 1000, why), -1);
    assert_non_null(strstr(why, "SHA-256"));
    h.index = 41;
    assert_int_equal(tandem_ctl_download_matches(&h, &m, sha, 1000, why), -1);
    assert_non_null(strstr(why, "index is 42"));
    h.index = 42;
    h.state_digest[0] = h.state_digest[0] == '0' ? '1' : '0';
    assert_int_equal(tandem_ctl_download_matches(&h, &m, sha, 1000, why), -1);
    assert_non_null(strstr(why, "state digest"));
    tandem_ctl_download_head_init(&h); /* no Content-Length: never taken as matching */
    snprintf(h.sha256, sizeof h.sha256, "%s", sha);
    assert_int_equal(tandem_ctl_download_matches(&h, &m, sha, 1000, why), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_lines),
        cmocka_unit_test(test_redirect_base),
        cmocka_unit_test(test_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
