/* systemd's service notifications (sd_notify): READY=1 once the node is ready (node/readiness.h),
 * STATUS= lines, WATCHDOG=1 from the loop, RELOADING=1 around SIGHUP and STOPPING=1. */
#include "node/sd_notify.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "node/log.h"
#include "storage/assert.h"

uint64_t tandem_sd_watchdog_period_ms(uint64_t usec)
{
    uint64_t ms = usec / 2000;
    return ms > 0 ? ms : 1;
}

void tandem_sd_status_text(const char *not_ready_reason, bool leading, const char *leader_name,
                           char *out, size_t size)
{
    if (not_ready_reason != NULL) {
        snprintf(out, size, "waiting: %s", not_ready_reason);
    } else if (leading) {
        snprintf(out, size, "ready: leading");
    } else {
        snprintf(out, size, "ready: following %s", leader_name);
    }
}

/* sd_notify's errors are logged, never fatal: a supervisor that went away must not stop us. */
static void notify(const char *state)
{
    int rv = sd_notify(0, state);
    if (rv < 0) {
        tandem_log(TANDEM_LOG_WARN, "sd_notify(%s): %s", state, strerror(-rv));
    }
}

static void poll_cb(uv_timer_t *timer)
{
    struct tandem_sd *sd =
        (struct tandem_sd *)(void *)((char *)timer - offsetof(struct tandem_sd, poll));
    char status[TANDEM_SD_STATUS_MAX];
    const char *reason = sd->look(sd->data, status, sizeof status);
    if (reason == NULL && !sd->ready_sent) {
        char line[TANDEM_SD_STATUS_MAX + 32];
        snprintf(line, sizeof line, "READY=1\nSTATUS=%s", status);
        notify(line);
        sd->ready_sent = true;
        snprintf(sd->status, sizeof sd->status, "%s", status);
        tandem_log(TANDEM_LOG_INFO, "ready (sd_notify READY=1): %s", status);
    } else if (strcmp(status, sd->status) != 0) {
        char line[TANDEM_SD_STATUS_MAX + 16];
        snprintf(line, sizeof line, "STATUS=%s", status);
        notify(line);
        snprintf(sd->status, sizeof sd->status, "%s", status);
    }
}

static void watchdog_cb(uv_timer_t *timer)
{
    (void)timer;
    notify("WATCHDOG=1");
}

int tandem_sd_start(struct tandem_sd *sd, uv_loop_t *loop, tandem_sd_look_fn look, void *data)
{
    memset(sd, 0, sizeof *sd);
    sd->look = look;
    sd->data = data;
    int rv = uv_timer_init(loop, &sd->poll);
    if (rv == 0) {
        rv = uv_timer_init(loop, &sd->watchdog);
    }
    sd->poll.data = data;
    sd->watchdog.data = data;
    const char *socket = getenv("NOTIFY_SOCKET");
    sd->enabled = socket != NULL && socket[0] != '\0';
    if (rv != 0 || !sd->enabled) {
        return rv;
    }
    rv = uv_timer_start(&sd->poll, poll_cb, 0, TANDEM_SD_POLL_MS);
    uint64_t usec = 0;
    if (rv == 0 && sd_watchdog_enabled(0, &usec) > 0) {
        sd->watchdog_ms = tandem_sd_watchdog_period_ms(usec);
        tandem_log(TANDEM_LOG_INFO, "systemd watchdog: WATCHDOG=1 every %" PRIu64 " ms",
                   sd->watchdog_ms);
        rv = uv_timer_start(&sd->watchdog, watchdog_cb, 0, sd->watchdog_ms);
    }
    return rv;
}

void tandem_sd_reload(struct tandem_sd *sd, void (*reload)(void *data))
{
    bool announce = sd->enabled && sd->ready_sent;
    if (announce) {
        /* MONOTONIC_USEC: what systemd 253's Type=notify-reload matches the reload with. */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        char line[64];
        snprintf(line, sizeof line, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
                 (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u);
        notify(line);
    }
    reload(sd->data);
    if (announce) {
        notify("READY=1");
    }
}

void tandem_sd_close(struct tandem_sd *sd, bool reexec, uv_close_cb close_cb)
{
    if (sd->enabled) {
        /* A re-executing process keeps its PID and comes back with READY=1: not stopping. */
        notify(reexec ? "STATUS=restarting in place (re-exec)" : "STOPPING=1\nSTATUS=stopping");
    }
    tandem_assert(!uv_is_closing((uv_handle_t *)&sd->poll));
    uv_close((uv_handle_t *)&sd->poll, close_cb);
    uv_close((uv_handle_t *)&sd->watchdog, close_cb);
}
