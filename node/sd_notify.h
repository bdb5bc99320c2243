/* systemd's service notifications (sd_notify): READY=1 once the node is ready (node/readiness.h),
 * STATUS= lines, WATCHDOG=1 from the loop, RELOADING=1 around SIGHUP and STOPPING=1. */
#ifndef TANDEM_NODE_SD_NOTIFY_H
#define TANDEM_NODE_SD_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The node's answer to the poll: NULL when ready, else why not; status gets the STATUS= text. */
typedef const char *(*tandem_sd_look_fn)(void *data, char *status, size_t size);

/* How often readiness and the status line are looked at while NOTIFY_SOCKET is set. */
#define TANDEM_SD_POLL_MS    100
#define TANDEM_SD_STATUS_MAX 160

struct tandem_sd {
    uv_timer_t poll;     /* readiness and STATUS=; started only under a notify socket */
    uv_timer_t watchdog; /* WATCHDOG=1 at half of WATCHDOG_USEC; started only when asked for */
    tandem_sd_look_fn look;
    void *data;      /* look's and reload's argument, and both timers' handle data */
    bool enabled;    /* NOTIFY_SOCKET was set at start */
    bool ready_sent; /* READY=1 has been sent (once per process, again after a reload) */
    uint64_t watchdog_ms;
    char status[TANDEM_SD_STATUS_MAX]; /* the last STATUS= sent */
};

/* The watchdog period for WATCHDOG_USEC usec: half of it, in ms, at least 1. */
uint64_t tandem_sd_watchdog_period_ms(uint64_t usec);

/* The STATUS= text: "ready: leading" / "ready: following NAME" or "waiting: REASON". */
void tandem_sd_status_text(const char *not_ready_reason, bool leading, const char *leader_name,
                           char *out, size_t size);

/* Initialises both timers (closed by tandem_sd_close; data in their handles' data) and starts
 * what the environment asks for: nothing when NOTIFY_SOCKET is unset. look is asked every
 * TANDEM_SD_POLL_MS. Returns 0 or a libuv error. */
int tandem_sd_start(struct tandem_sd *sd, uv_loop_t *loop, tandem_sd_look_fn look, void *data);

/* SIGHUP: RELOADING=1 before the reload, reload(data), READY=1 after it (once ready before). */
void tandem_sd_reload(struct tandem_sd *sd, void (*reload)(void *data));

/* STOPPING=1 (or only a STATUS= line when the process re-executes itself), then closes both
 * timers: close_cb is called once per timer (twice). */
void tandem_sd_close(struct tandem_sd *sd, bool reexec, uv_close_cb close_cb);

#endif
