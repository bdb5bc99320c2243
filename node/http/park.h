/* Requests that wait out a leader change: a write or read that finds no leader, or that raft
 * turned away before proposing it, waits here and is dispatched again, so clients see no error
 * while leadership moves (a planned BCP invoke, a transfer, an election). */
#ifndef TANDEM_NODE_HTTP_PARK_H
#define TANDEM_NODE_HTTP_PARK_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "node/http/server.h"

#define TANDEM_PARK_RETRY_MS 20    /* how often parked requests are dispatched again */
#define TANDEM_PARKED_MAX    65536 /* requests waiting at once; more are answered 503 */

struct tandem_node;
struct tandem_parked;

struct tandem_park {
    struct tandem_node *node; /* borrowed */
    uv_timer_t timer;
    struct tandem_parked *head, *tail; /* owned */
    unsigned count;
    uint64_t wait_ns; /* how long a request may wait, counted from its arrival */
    uint64_t parked_total, expired_total;
    bool closing;
    void (*close_cb)(struct tandem_park *p);
};

void tandem_park_init(struct tandem_park *p, struct tandem_node *node, uint64_t wait_ns);
/* Parks r if it is young enough and there is room; returns false (r untouched) otherwise. */
bool tandem_park(struct tandem_park *p, struct tandem_http_request *r);
/* Answers every parked request 503 and closes the timer; cb runs when closed. */
void tandem_park_close(struct tandem_park *p, void (*cb)(struct tandem_park *p));

#endif
