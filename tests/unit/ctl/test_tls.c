/* Unit tests for tandemctl's TLS settings (flags over environment, files checked) and the
 * one-line explanations of curl's TLS failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "node/ctl/tls.h"

#define MSG_SIZE 256

static char readable[64];

static int make_file(void **state)
{
    (void)state;
    snprintf(readable, sizeof readable, "/tmp/tandem-ctl-tls-XXXXXX");
    int fd = mkstemp(readable);
    if (fd < 0) {
        return -1;
    }
    close(fd);
    unsetenv(TANDEM_CTL_CACERT_ENV);
    unsetenv(TANDEM_CTL_CERT_ENV);
    unsetenv(TANDEM_CTL_KEY_ENV);
    return 0;
}

static int remove_file(void **state)
{
    (void)state;
    unlink(readable);
    return 0;
}

static void test_flags_win_over_environment(void **state)
{
    (void)state;
    char errmsg[MSG_SIZE] = "";
    struct tandem_ctl_tls flags = {.cacert = readable, .cert = NULL, .key = NULL};
    setenv(TANDEM_CTL_CACERT_ENV, "/nonexistent/ca.pem", 1);
    assert_int_equal(tandem_ctl_tls_set(&flags, errmsg, sizeof errmsg), 0);
    /* Without the flag the environment's path is used, and checked. */
    flags.cacert = NULL;
    assert_int_equal(tandem_ctl_tls_set(&flags, errmsg, sizeof errmsg), -1);
    assert_string_equal(errmsg, "--cacert (TANDEM_CACERT): cannot read '/nonexistent/ca.pem': "
                                "No such file or directory");
    /* An empty variable counts as not set. */
    setenv(TANDEM_CTL_CACERT_ENV, "", 1);
    assert_int_equal(tandem_ctl_tls_set(&flags, errmsg, sizeof errmsg), 0);
    unsetenv(TANDEM_CTL_CACERT_ENV);
}

static void test_cert_and_key_come_together(void **state)
{
    (void)state;
    char errmsg[MSG_SIZE] = "";
    struct tandem_ctl_tls flags = {.cacert = NULL, .cert = readable, .key = NULL};
    assert_int_equal(tandem_ctl_tls_set(&flags, errmsg, sizeof errmsg), -1);
    assert_string_equal(errmsg, "--cert (TANDEM_CERT) without --key (TANDEM_KEY): give both the "
                                "client certificate and its key");
    setenv(TANDEM_CTL_KEY_ENV, readable, 1);
    assert_int_equal(tandem_ctl_tls_set(&flags, errmsg, sizeof errmsg), 0);
    unsetenv(TANDEM_CTL_KEY_ENV);
    flags.cert = NULL;
    flags.key = readable;
    assert_int_equal(tandem_ctl_tls_set(&flags, errmsg, sizeof errmsg), -1);
    assert_non_null(strstr(errmsg, "--key (TANDEM_KEY) without --cert (TANDEM_CERT)"));
}

/* Runs explain on curl's message msg for code on url; returns the rewritten text. */
static const char *explain(CURLcode code, const char *url, const char *msg)
{
    static char errmsg[MSG_SIZE];
    snprintf(errmsg, sizeof errmsg, "%s", msg);
    tandem_ctl_tls_explain(code, url, errmsg, sizeof errmsg);
    return errmsg;
}

static void test_explanations(void **state)
{
    (void)state;
    struct tandem_ctl_tls none = {NULL, NULL, NULL};
    char errmsg[MSG_SIZE];
    assert_int_equal(tandem_ctl_tls_set(&none, errmsg, sizeof errmsg), 0);
    const char *https = "https://127.0.0.1:1";
    assert_string_equal(explain(CURLE_PEER_FAILED_VERIFICATION, https, "SSL certificate problem"),
                        "the server's certificate is not trusted: give the cluster CA with "
                        "--cacert or TANDEM_CACERT (SSL certificate problem)");
    assert_string_equal(
        explain(CURLE_RECV_ERROR, https,
                "OpenSSL SSL_read: error:0A00045C:SSL routines::tlsv13 alert certificate required"),
        "the server refused the TLS handshake: it wants a client certificate (--cert/--key or "
        "TANDEM_CERT/TANDEM_KEY) (tlsv13 alert certificate required)");
    assert_non_null(strstr(explain(CURLE_SSL_CONNECT_ERROR, https,
                                   "error:0A00010B:SSL routines::wrong version number"),
                           "does not speak TLS: an --insecure node wants an http:// endpoint"));
    assert_non_null(strstr(explain(CURLE_SSL_CONNECT_ERROR, https,
                                   "error:0A00042E:SSL routines::tlsv1 alert protocol version"),
                           "does not speak TLS 1.3"));
    assert_non_null(strstr(explain(CURLE_SEND_ERROR, https, "getpeername() failed"),
                           "closed during the TLS handshake"));
    assert_non_null(strstr(explain(CURLE_GOT_NOTHING, "http://127.0.0.1:1", "Empty reply"),
                           "use an https:// endpoint"));
    /* Failures that are not about TLS keep curl's words. */
    assert_string_equal(explain(CURLE_COULDNT_CONNECT, https, "Connection refused"),
                        "Connection refused");
    assert_string_equal(explain(CURLE_RECV_ERROR, "http://127.0.0.1:1", "Connection reset"),
                        "no HTTP answer: if the node runs TLS (the default), use an https:// "
                        "endpoint (Connection reset)");
    assert_string_equal(explain(CURLE_OPERATION_TIMEDOUT, https, "Operation timed out"),
                        "Operation timed out");
}

int main(void)
{
    if (make_file(NULL) != 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags_win_over_environment),
        cmocka_unit_test(test_cert_and_key_come_together),
        cmocka_unit_test(test_explanations),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    remove_file(NULL);
    return failed;
}
