/* Parking and re-dispatching requests across a leader change. */
#include "node/http/park.h"

#include <stdlib.h>

#include "node/http/list.h"
#include "storage/assert.h"

struct tandem_parked {
    struct tandem_http_request *r; /* borrowed: answered by whoever handles it next */
    struct tandem_parked *next;
};

static void park_retry(uv_timer_t *timer)
{
    struct tandem_park *p = timer->data;
    struct tandem_parked *list = p->head;
    tandem_assert(!p->closing);
    p->head = p->tail = NULL;
    p->count = 0;
    /* Dispatch again in arrival order; whatever still finds no leader parks itself anew. */
    while (list != NULL) {
        struct tandem_parked *next = list->next;
        struct tandem_http_request *r = list->r;
        free(list);
        p->redispatch(p->data, r);
        list = next;
    }
    if (p->head == NULL) {
        uv_timer_stop(timer); /* cannot fail */
    }
}

int tandem_park_init(struct tandem_park *p, uv_loop_t *loop, uint64_t wait_ns,
                     tandem_park_redispatch_fn redispatch, tandem_park_answer_fn answer, void *data)
{
    tandem_assert(redispatch != NULL && answer != NULL);
    *p = (struct tandem_park){.redispatch = redispatch,
                              .answer = answer,
                              .data = data,
                              .limit = TANDEM_PARKED_MAX,
                              .wait_ns = wait_ns};
    int rv = uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    return rv;
}

bool tandem_park(struct tandem_park *p, struct tandem_http_request *r)
{
    tandem_assert(p->count <= p->limit);
    tandem_assert(r->handed && !r->responded); /* only a request still waiting for its answer */
    if (p->closing || p->count >= p->limit || uv_hrtime() - r->start_ns > p->wait_ns) {
        p->expired_total += p->closing ? 0 : 1;
        return false;
    }
    struct tandem_parked *e = malloc(sizeof *e);
    if (e == NULL) {
        return false;
    }
    e->r = r;
    TANDEM_QUEUE_APPEND(p->head, p->tail, e, next);
    p->count++;
    p->parked_total++;
    if (!uv_is_active((uv_handle_t *)&p->timer)) {
        int rv = uv_timer_start(&p->timer, park_retry, TANDEM_PARK_RETRY_MS, TANDEM_PARK_RETRY_MS);
        tandem_assert(rv == 0); /* fails only without a callback or on a closing handle */
    }
    return true;
}

static void park_close_done(uv_handle_t *handle)
{
    struct tandem_park *p = handle->data;
    if (p->close_cb != NULL) {
        p->close_cb(p);
    }
}

void tandem_park_close(struct tandem_park *p, void (*cb)(struct tandem_park *p))
{
    tandem_assert(!p->closing); /* closed once */
    p->closing = true;
    while (p->head != NULL) {
        struct tandem_parked *e = p->head;
        p->head = e->next;
        p->answer(p->data, e->r, 503, "Retry-After: 1\r\n",
                  "{\"error\":\"node is shutting down\"}");
        free(e);
    }
    p->tail = NULL;
    p->count = 0;
    p->close_cb = cb;
    uv_close((uv_handle_t *)&p->timer, park_close_done);
}
