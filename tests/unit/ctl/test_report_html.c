/* Unit tests of the standalone drill report file (node/ctl/report_html.h): one HTML file with
 * the style and scripts inlined, the record embedded so that no value can close its script
 * element, written through a temporary file; an unwritable path is an error with the reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "node/ctl/report_html.h"

static void test_page(void **state)
{
    (void)state;
    json_t *report = json_pack("{s:s,s:s,s:b}", "id", "d1", "error",
                               "</script><script>alert(1)</script><!--", "ok", false);
    char *html = tandem_ctl_report_html(report, 1796492771990);
    assert_non_null(html);
    assert_non_null(strstr(html, "data-generated=\"1796492771990\""));
    assert_non_null(strstr(html, "TandemReport.standalone();"));
    assert_non_null(strstr(html, "var TandemI18n"));
    assert_non_null(strstr(html, "svg.chart")); /* the style sheet */
    assert_null(strstr(html, "<script src="));
    assert_null(strstr(html, "<link"));
    assert_null(strstr(html, "alert(1)</script>"));
    const char *data = strstr(html, "id=\"drill-data\"");
    assert_non_null(data);
    const char *start = strchr(data, '>') + 1, *end = strstr(start, "</script>");
    json_error_t error;
    json_t *back = json_loadb(start, (size_t)(end - start), 0, &error);
    assert_non_null(back);
    assert_true(json_equal(back, report));
    json_decref(back);
    json_decref(report);
    free(html);
}

static void test_write(void **state)
{
    (void)state;
    char dir[] = "/tmp/tandem-report-XXXXXX", path[256], why[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/report.html", dir);
    json_t *report = json_pack("{s:s}", "id", "d2");
    assert_int_equal(tandem_ctl_report_write(report, 1, path, why, sizeof why), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 1000);
    assert_int_equal(st.st_mode & 0777, 0644);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_not_equal(access(tmp, F_OK), 0);
    snprintf(path, sizeof path, "%s/missing/report.html", dir);
    assert_int_equal(tandem_ctl_report_write(report, 1, path, why, sizeof why), -1);
    assert_non_null(strstr(why, "No such file or directory"));
    json_decref(report);
    snprintf(path, sizeof path, "%s/report.html", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page),
        cmocka_unit_test(test_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
