/* Unit tests for tandem_error_from_raft: each libraft code the node acts on maps to its tandem
 * code, raft's own text is kept, and errmsg never overflows. */
#include <raft.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "consensus/raft_error.h"

#define LONG_TEXT 1000

static void test_codes(void **state)
{
    (void)state;
    static const struct {
        int raft_rc, tandem;
    } cases[] = {
        {RAFT_NOTLEADER, TANDEM_NOTLEADER}, {RAFT_LEADERSHIPLOST, TANDEM_LEADERSHIP_LOST},
        {RAFT_BUSY, TANDEM_BUSY},           {RAFT_TOOMANY, TANDEM_BUSY},
        {RAFT_NOMEM, TANDEM_NOMEM},         {RAFT_SHUTDOWN, TANDEM_SHUTDOWN},
        {RAFT_CORRUPT, TANDEM_CORRUPT},     {RAFT_IOERR, TANDEM_RAFT},
        {RAFT_CANTCHANGE, TANDEM_RAFT},     {RAFT_NOCONNECTION, TANDEM_RAFT},
    };
    char errmsg[TANDEM_ERRMSG_SIZE];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(tandem_error_from_raft(cases[i].raft_rc, NULL, errmsg, "apply"),
                         cases[i].tandem);
        assert_true(strncmp(errmsg, "apply: ", 7) == 0);
        assert_string_equal(errmsg + 7, raft_strerror(cases[i].raft_rc));
    }
}

static void test_success_leaves_errmsg(void **state)
{
    (void)state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "untouched";
    assert_int_equal(tandem_error_from_raft(0, "stale text", errmsg, "start"), TANDEM_OK);
    assert_string_equal(errmsg, "untouched");
}

static void test_detail_kept(void **state)
{
    (void)state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    tandem_error_from_raft(RAFT_IOERR, "segment 12 is corrupt", errmsg, "raft_start");
    assert_string_equal(errmsg, "raft_start: I/O error: segment 12 is corrupt");
    /* Text equal to the code's own is not repeated; empty text adds nothing. */
    tandem_error_from_raft(RAFT_NOMEM, raft_strerror(RAFT_NOMEM), errmsg, "init");
    assert_string_equal(errmsg, "init: out of memory");
    tandem_error_from_raft(RAFT_NOMEM, "", errmsg, "init");
    assert_string_equal(errmsg, "init: out of memory");
    /* The detail may be the errmsg being written (n->errmsg wrapped in place). */
    strcpy(errmsg, "listen failed");
    tandem_error_from_raft(RAFT_IOERR, errmsg, errmsg, "transport");
    assert_string_equal(errmsg, "transport: I/O error: listen failed");
}

static void test_no_overflow(void **state)
{
    (void)state;
    struct {
        char errmsg[TANDEM_ERRMSG_SIZE];
        char canary[16];
    } g;
    char text[LONG_TEXT + 1];
    memset(text, 'z', LONG_TEXT);
    text[LONG_TEXT] = '\0';
    memset(g.canary, 0x5a, sizeof g.canary);
    tandem_error_from_raft(RAFT_IOERR, text, g.errmsg, text);
    assert_int_equal(strlen(g.errmsg), TANDEM_ERRMSG_SIZE - 1);
    for (size_t i = 0; i < sizeof g.canary; i++) {
        assert_int_equal(g.canary[i], 0x5a);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes),
        cmocka_unit_test(test_success_leaves_errmsg),
        cmocka_unit_test(test_detail_kept),
        cmocka_unit_test(test_no_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
