/* Parking and re-dispatching requests across a leader change. */
#include "node/http/park.h"

#include <stdlib.h>

#include "storage/assert.h"

struct tandem_parked {
    struct tandem_http_request *r; /* borrowed: answered by whoever handles it next */
    struct tandem_list link;       /* in tandem_park.parked */
};

/* Unlinks the first parked entry, frees it and returns its request. */
static struct tandem_http_request *parked_pop(struct tandem_list *list)
{
    struct tandem_parked *e =
        tandem_list_entry(tandem_list_pop_front(list), struct tandem_parked, link);
    struct tandem_http_request *r = e->r;
    free(e);
    return r;
}

static void park_retry(uv_timer_t *timer)
{
    struct tandem_park *p = timer->data;
    struct tandem_list batch;
    tandem_assert(!p->closing);
    tandem_list_init(&batch);
    tandem_list_take_all(&batch, &p->parked);
    p->count = 0;
    /* Dispatch again in arrival order; whatever still finds no leader parks itself anew. */
    while (!tandem_list_empty(&batch)) {
        p->redispatch(p->data, parked_pop(&batch));
    }
    if (tandem_list_empty(&p->parked)) {
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
    tandem_list_init(&p->parked);
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
    tandem_list_push_back(&p->parked, &e->link);
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
    while (!tandem_list_empty(&p->parked)) {
        p->answer(p->data, parked_pop(&p->parked), 503, "Retry-After: 1\r\n",
                  "{\"error\":\"node is shutting down\"}");
    }
    p->count = 0;
    p->close_cb = cb;
    uv_close((uv_handle_t *)&p->timer, park_close_done);
}
