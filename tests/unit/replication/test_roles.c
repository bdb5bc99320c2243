/* Unit tests for the role names: parsing, formatting and the refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "replication/identity/roles.h"
#include "storage/error.h"

static void test_parse_and_format(void **state)
{
    (void)state;
    char errmsg[TANDEM_ERRMSG_SIZE], text[TANDEM_ROLES_TEXT_MAX];
    uint32_t roles = 0;
    assert_int_equal(tandem_roles_parse("operator,viewer", &roles, errmsg), 0);
    assert_int_equal(roles, TANDEM_ROLE_OPERATOR | TANDEM_ROLE_VIEWER);
    tandem_roles_format(roles, text, sizeof text);
    assert_string_equal(text, "viewer,operator");
    tandem_roles_format(TANDEM_ROLES_ALL, text, sizeof text);
    assert_string_equal(text, "viewer,operator,planner,bcp-admin,security-admin,auditor,"
                              "personal-data");
    assert_int_equal(tandem_roles_parse(text, &roles, errmsg), 0);
    assert_int_equal(roles, TANDEM_ROLES_ALL);
    tandem_roles_format(0, text, sizeof text);
    assert_string_equal(text, "");
}

static void test_refusals(void **state)
{
    (void)state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    uint32_t roles = 77;
    assert_int_equal(tandem_roles_parse("viewer,root", &roles, errmsg), -1);
    assert_non_null(strstr(errmsg, "unknown role 'root'"));
    assert_int_equal(tandem_roles_parse("viewer,viewer", &roles, errmsg), -1);
    assert_non_null(strstr(errmsg, "given twice"));
    assert_int_equal(tandem_roles_parse("", &roles, errmsg), -1);
    assert_int_equal(tandem_roles_parse("viewer,", &roles, errmsg), -1);
    assert_int_equal(tandem_roles_parse("Viewer", &roles, errmsg), -1);
    assert_int_equal(tandem_roles_parse("viewer ,operator", &roles, errmsg), -1);
    assert_int_equal(roles, 77); /* untouched on failure */
    assert_null(tandem_role_name_of(TANDEM_ROLE_VIEWER | TANDEM_ROLE_AUDITOR));
    assert_string_equal(tandem_role_name_of(TANDEM_ROLE_PERSONAL_DATA), "personal-data");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_format),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
