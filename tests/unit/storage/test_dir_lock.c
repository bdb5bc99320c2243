/* Unit tests for the data directory lock: one holder at a time, a clear refusal naming the
 * holder, release on unlock, and a directory that cannot hold the lock file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage/dir_lock.h"
#include "storage/error.h"

static int setup(void **state)
{
    static char dir[] = "/tmp/tandem-dirlock-XXXXXX";
    strcpy(dir, "/tmp/tandem-dirlock-XXXXXX");
    assert_non_null(mkdtemp(dir));
    *state = dir;
    return 0;
}

static int teardown(void **state)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", (char *)*state, TANDEM_DIR_LOCK_FILE);
    unlink(path);
    rmdir(*state);
    return 0;
}

/* A second lock (another open file, as another process would have) is refused at once, naming
 * the directory and this process as the holder; after unlock it is granted. */
static void test_one_holder(void **state)
{
    const char *dir = *state;
    char errmsg[TANDEM_ERRMSG_SIZE], pid[32];
    int first = -1, second = -1;
    assert_int_equal(tandem_dir_lock(dir, &first, errmsg), TANDEM_OK);
    assert_true(first >= 0);
    assert_int_equal(tandem_dir_lock(dir, &second, errmsg), TANDEM_STATE);
    assert_int_equal(second, -1);
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    assert_non_null(strstr(errmsg, dir));
    assert_non_null(strstr(errmsg, pid));
    assert_non_null(strstr(errmsg, "in use"));
    tandem_dir_unlock(first);
    assert_int_equal(tandem_dir_lock(dir, &second, errmsg), TANDEM_OK);
    tandem_dir_unlock(second);
}

/* A child process cannot take the lock the parent holds, and can once the parent releases it. */
static void test_other_process(void **state)
{
    const char *dir = *state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    int fd = -1;
    assert_int_equal(tandem_dir_lock(dir, &fd, errmsg), TANDEM_OK);
    for (int round = 0; round < 2; round++) {
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            int child_fd = -1;
            _exit(tandem_dir_lock(dir, &child_fd, errmsg) == TANDEM_OK ? 0 : 3);
        }
        int status = 0;
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), round == 0 ? 3 : 0);
        tandem_dir_unlock(fd); /* second round: nobody holds it */
        fd = -1;
    }
}

static void test_missing_directory(void **state)
{
    (void)state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    int fd = 7;
    assert_int_equal(tandem_dir_lock("/nonexistent/tandem/dir", &fd, errmsg), TANDEM_NOTFOUND);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(errmsg, "/nonexistent/tandem/dir/lock"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_holder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_process, setup, teardown),
        cmocka_unit_test(test_missing_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
