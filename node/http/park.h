/* Requests that wait out a leader change: a write or read that finds no leader, or that raft
 * turned away before proposing it, waits here and is dispatched again, so clients see no error
 * while leadership moves (a planned BCP invoke, a transfer, an election). */
#ifndef TANDEM_NODE_HTTP_PARK_H
#define TANDEM_NODE_HTTP_PARK_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "node/http/server.h"
#include "storage/list.h"

#define TANDEM_PARK_RETRY_MS 20    /* how often parked requests are dispatched again */
#define TANDEM_PARKED_MAX    65536 /* requests waiting at once; more are answered 503 */

/* Routes r again (it may park itself anew); the owner's dispatcher. */
typedef void (*tandem_park_redispatch_fn)(void *data, struct tandem_http_request *r);
/* Answers r with status, extra header lines and a JSON text, through the owner. */
typedef void (*tandem_park_answer_fn)(void *data, struct tandem_http_request *r, int status,
                                      const char *extra_headers, const char *json);

struct tandem_park {
    uv_timer_t timer;
    tandem_park_redispatch_fn redispatch;
    tandem_park_answer_fn answer; /* at shutdown: 503 to every parked request */
    void *data;                   /* borrowed: given to both callbacks */
    struct tandem_list parked;    /* owned tandem_parked, in arrival order */
    unsigned count;               /* at most limit */
    unsigned limit;               /* TANDEM_PARKED_MAX unless a test lowers it */
    uint64_t wait_ns;             /* how long a request may wait, counted from its arrival */
    uint64_t parked_total, expired_total;
    bool closing;
    void (*close_cb)(struct tandem_park *p);
};

/* Returns 0 or a UV_* code (then nothing needs closing). */
int tandem_park_init(struct tandem_park *p, uv_loop_t *loop, uint64_t wait_ns,
                     tandem_park_redispatch_fn redispatch, tandem_park_answer_fn answer,
                     void *data);
/* Parks r if it is young enough and there is room; returns false (r untouched: the caller
 * answers it, 503 with Retry-After) otherwise. */
bool tandem_park(struct tandem_park *p, struct tandem_http_request *r);
/* Answers every parked request 503 and closes the timer; cb runs from the loop when closed. */
void tandem_park_close(struct tandem_park *p, void (*cb)(struct tandem_park *p));

#endif
