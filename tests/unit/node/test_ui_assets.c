/* Unit tests of the console's embedded files (node/ui/assets.h): every file of node/ui/ is in
 * the binary, byte for byte and NUL-terminated, typed by its extension. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "node/ui/assets.h"

static void test_types(void **state)
{
    (void)state;
    assert_string_equal(tandem_ui_content_type("index.html"), "text/html; charset=utf-8");
    assert_string_equal(tandem_ui_content_type("app.css"), "text/css; charset=utf-8");
    assert_string_equal(tandem_ui_content_type("a.b.js"), "text/javascript; charset=utf-8");
    assert_null(tandem_ui_content_type("embed.cmake"));
    assert_null(tandem_ui_content_type("js"));
    assert_null(tandem_ui_content_type("app.js.bak"));
}

/* The embedded bytes are the source tree's (TANDEM_SOURCE_DIR, as ctest sets it for the
 * integration tests; the repository otherwise). */
static void test_embedded_match_the_sources(void **state)
{
    (void)state;
    const char *names[] = {"index.html", "app.css", "i18n.js", "report.js", "app.js", "login.js"};
    const char *root = getenv("TANDEM_SOURCE_DIR");
    char path[4096];
    assert_true(tandem_ui_assets_count >= sizeof names / sizeof names[0]);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const struct tandem_ui_asset *a = tandem_ui_asset_find(names[i]);
        assert_non_null(a);
        assert_int_equal(a->bytes[a->len], '\0');
        assert_non_null(tandem_ui_content_type(a->name));
        snprintf(path, sizeof path, "%s/node/ui/%s", root != NULL ? root : TANDEM_UI_SOURCE_DIR,
                 names[i]);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        char *bytes = malloc(a->len + 1);
        assert_non_null(bytes);
        assert_int_equal(fread(bytes, 1, a->len + 1, f), a->len);
        assert_memory_equal(bytes, a->bytes, a->len);
        free(bytes);
        fclose(f);
    }
    assert_null(tandem_ui_asset_find("nope.js"));
    assert_null(tandem_ui_asset_find(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_embedded_match_the_sources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
