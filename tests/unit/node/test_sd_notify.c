/* Tests of node/readiness.c and node/sd_notify.c: the readiness rule, the watchdog period, the
 * STATUS= text, and the datagrams sent to a NOTIFY_SOCKET the test owns (reload, stop). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "node/node.h"
#include "node/readiness.h"
#include "node/sd_notify.h"

static void test_readiness_rule(void **state)
{
    (void)state;
    struct tandem_readiness_facts f = {.leader_known = true, .applied = 7, .commit = 7};
    assert_null(tandem_readiness_reason(&f));
    f.applied = 6;
    assert_string_equal(tandem_readiness_reason(&f), "applying committed entries");
    f.applied = 8; /* applied past the commit index it last heard of: nothing left to apply */
    assert_null(tandem_readiness_reason(&f));
    f.leader_known = false;
    assert_string_equal(tandem_readiness_reason(&f), "no leader");
    f.quarantined = true;
    assert_string_equal(tandem_readiness_reason(&f), "quarantined");
    f.fenced = true; /* fenced first: it says the cluster moved on */
    assert_string_equal(tandem_readiness_reason(&f), "fenced");
}

static void test_watchdog_period(void **state)
{
    (void)state;
    assert_int_equal(tandem_sd_watchdog_period_ms(10000000), 5000); /* WatchdogSec=10s */
    assert_int_equal(tandem_sd_watchdog_period_ms(300000), 150);
    assert_int_equal(tandem_sd_watchdog_period_ms(1000), 1); /* never 0: a busy loop */
    assert_int_equal(tandem_sd_watchdog_period_ms(0), 1);
}

static void test_status_text(void **state)
{
    (void)state;
    char out[TANDEM_SD_STATUS_MAX];
    tandem_sd_status_text("no leader", false, "", out, sizeof out);
    assert_string_equal(out, "waiting: no leader");
    tandem_sd_status_text(NULL, true, "", out, sizeof out);
    assert_string_equal(out, "ready: leading");
    tandem_sd_status_text(NULL, false, "west-1", out, sizeof out);
    assert_string_equal(out, "ready: following west-1");
}

/* A datagram socket standing in for systemd's notify socket, named in NOTIFY_SOCKET. */
struct notify_socket {
    int fd;
    char path[108];
};

static void notify_socket_open(struct notify_socket *s, const char *watchdog_usec)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(s->path, sizeof s->path, "/tmp/tandem-sd-test-%d.sock", (int)getpid());
    unlink(s->path);
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", s->path);
    s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(s->fd >= 0);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&addr, sizeof addr), 0);
    setenv("NOTIFY_SOCKET", s->path, 1);
    if (watchdog_usec != NULL) {
        setenv("WATCHDOG_USEC", watchdog_usec, 1);
    } else {
        unsetenv("WATCHDOG_USEC");
    }
}

/* The next datagram as a string, "" when none is waiting. */
static void notify_socket_read(struct notify_socket *s, char *out, size_t size)
{
    ssize_t n = recv(s->fd, out, size - 1, 0);
    out[n > 0 ? n : 0] = '\0';
}

static void notify_socket_close(struct notify_socket *s)
{
    close(s->fd);
    unlink(s->path);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
}

static int reloads;
static struct tandem_node node; /* only its address is used: no timer fires in these tests */

static const char *look_never(void *data, char *status, size_t size)
{
    (void)data, (void)status, (void)size;
    fail_msg("the poll ran");
    return NULL;
}
static void count_reload(void *data)
{
    assert_ptr_equal(data, &node);
    reloads++;
}

static void closed_cb(uv_handle_t *handle)
{
    (void)handle;
    reloads += 100;
}

static void sd_close_and_run(uv_loop_t *loop, bool reexec)
{
    tandem_sd_close(&node.sd, reexec, closed_cb);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(reloads, 200); /* both timers closed */
}

static void test_reload_and_stop_notify(void **state)
{
    (void)state;
    struct notify_socket s;
    char msg[256];
    uv_loop_t loop;
    uv_loop_init(&loop);
    notify_socket_open(&s, "300000");
    assert_int_equal(tandem_sd_start(&node.sd, &loop, look_never, &node), 0);
    assert_true(node.sd.enabled);
    assert_int_equal(node.sd.watchdog_ms, 150);
    /* Not ready yet: a reload is done but not announced (systemd would see a READY=1). */
    reloads = 0;
    tandem_sd_reload(&node.sd, count_reload);
    assert_int_equal(reloads, 1);
    notify_socket_read(&s, msg, sizeof msg);
    assert_string_equal(msg, "");
    node.sd.ready_sent = true;
    tandem_sd_reload(&node.sd, count_reload);
    assert_int_equal(reloads, 2);
    notify_socket_read(&s, msg, sizeof msg);
    assert_true(strncmp(msg, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0);
    notify_socket_read(&s, msg, sizeof msg);
    assert_string_equal(msg, "READY=1");
    reloads = 0;
    sd_close_and_run(&loop, false);
    notify_socket_read(&s, msg, sizeof msg);
    assert_string_equal(msg, "STOPPING=1\nSTATUS=stopping");
    notify_socket_close(&s);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_reexec_is_not_stopping(void **state)
{
    (void)state;
    struct notify_socket s;
    char msg[256];
    uv_loop_t loop;
    uv_loop_init(&loop);
    notify_socket_open(&s, NULL);
    assert_int_equal(tandem_sd_start(&node.sd, &loop, look_never, &node), 0);
    assert_int_equal(node.sd.watchdog_ms, 0); /* no WATCHDOG_USEC: no watchdog */
    reloads = 0;
    sd_close_and_run(&loop, true);
    notify_socket_read(&s, msg, sizeof msg);
    assert_string_equal(msg, "STATUS=restarting in place (re-exec)");
    notify_socket_close(&s);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_without_systemd_nothing_is_sent(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    unsetenv("NOTIFY_SOCKET");
    setenv("WATCHDOG_USEC", "300000", 1); /* ignored without a socket */
    assert_int_equal(tandem_sd_start(&node.sd, &loop, look_never, &node), 0);
    assert_false(node.sd.enabled);
    assert_false(uv_is_active((uv_handle_t *)&node.sd.poll));
    assert_false(uv_is_active((uv_handle_t *)&node.sd.watchdog));
    reloads = 0;
    tandem_sd_reload(&node.sd, count_reload);
    assert_int_equal(reloads, 1); /* the reload itself still happens */
    reloads = 0;
    sd_close_and_run(&loop, false);
    unsetenv("WATCHDOG_USEC");
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readiness_rule),
        cmocka_unit_test(test_watchdog_period),
        cmocka_unit_test(test_status_text),
        cmocka_unit_test(test_reload_and_stop_notify),
        cmocka_unit_test(test_reexec_is_not_stopping),
        cmocka_unit_test(test_without_systemd_nothing_is_sent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
