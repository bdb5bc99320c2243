/* Member rejoin at the leader (node/bcp/rejoin.h): remove, re-seed, wait until back, add, assign
 * standby, each move checked against the step table. */
#include "node/bcp/rejoin.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replication/bcp/sites.h"
#include "storage/assert.h"
#include "storage/error.h"

#define BIT TANDEM_SM_BIT
/* A rejoin only goes forward: every step moves on to the next one, or fails. */
#define NEXT_OR_FAILED(step) (BIT(TANDEM_REJOIN_##step) | BIT(TANDEM_REJOIN_FAILED))

const struct tandem_sm_conf tandem_rejoin_sm_conf[TANDEM_REJOIN_STEPS] = {
    [TANDEM_REJOIN_REMOVE] = {"remove", TANDEM_SM_INITIAL, NEXT_OR_FAILED(RESEED)},
    [TANDEM_REJOIN_RESEED] = {"reseed", 0, NEXT_OR_FAILED(BACK)},
    [TANDEM_REJOIN_BACK] = {"back", 0, NEXT_OR_FAILED(ADD)},
    [TANDEM_REJOIN_ADD] = {"add", 0, NEXT_OR_FAILED(ASSIGN)},
    [TANDEM_REJOIN_ASSIGN] = {"assign", 0, NEXT_OR_FAILED(DONE)},
    [TANDEM_REJOIN_DONE] = {"done", TANDEM_SM_FINAL, 0},
    [TANDEM_REJOIN_FAILED] = {"failed", TANDEM_SM_FINAL, 0},
};

struct rejoin {
    struct raft_change change;
    uv_timer_t timer; /* polls the re-seeded node until it is back, empty */
    bool timer_open;
    struct tandem_bcp *bcp;        /* borrowed */
    struct tandem_bcp_reply reply; /* answered once, on DONE or FAILED */
    struct tandem_member member;
    uint64_t id;
    uint64_t deadline_ms;
    bool in_config;      /* it was a member: raft_remove comes first */
    bool removed;        /* raft_remove succeeded */
    bool reseeded;       /* it accepted the re-seed */
    struct tandem_sm sm; /* the step: tandem_rejoin_sm_conf */
};

/* The id is the member's; the poll timer opens once the re-seed was accepted; a member leaves
 * the configuration before its re-seed, and is re-added only once it was re-seeded. */
static bool rejoin_invariant(const struct tandem_sm *sm, int prev, void *data)
{
    (void)prev;
    const struct rejoin *j = data;
    bool left = !j->in_config || j->removed;
    if (j->id != tandem_member_id(j->member.name) || (j->removed && !j->in_config)) {
        return false;
    }
    switch (tandem_sm_state(sm)) {
        case TANDEM_REJOIN_REMOVE:
            return !j->timer_open && !j->reseeded;
        case TANDEM_REJOIN_RESEED:
            return !j->timer_open && !j->reseeded && left;
        case TANDEM_REJOIN_FAILED:
            return true;
        default: /* back, add, assign, done */
            return j->timer_open && j->reseeded && left;
    }
}

static void rejoin_move(struct rejoin *j, int step)
{
    tandem_sm_move(&j->sm, step);
}

static void rejoin_closed_cb(uv_handle_t *handle)
{
    free(handle->data);
}

static void rejoin_free(struct rejoin *j)
{
    tandem_sm_fini(&j->sm);
    if (j->timer_open) {
        uv_close((uv_handle_t *)&j->timer, rejoin_closed_cb);
    } else {
        free(j);
    }
}

static void rejoin_fail(struct rejoin *j, int status, const char *what, const char *detail)
{
    rejoin_move(j, TANDEM_REJOIN_FAILED);
    tandem_bcp_reply_error(&j->reply, status, "rejoin %s: %s: %s", j->member.name, what, detail);
    rejoin_free(j);
}

static void rejoin_change_cb(struct raft_change *req, int status);

static void rejoin_add(struct rejoin *j)
{
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    tandem_member_address_format(&j->member, address, sizeof address);
    rejoin_move(j, TANDEM_REJOIN_ADD);
    j->change.data = j;
    int rv = raft_add(&j->bcp->env.raft->raft, &j->change, j->id, address, rejoin_change_cb);
    if (rv != 0) {
        rejoin_fail(j, 503, "re-adding it failed (it was re-seeded; retry rejoin)",
                    raft_strerror(rv));
    }
}

static void rejoin_poll(uv_timer_t *timer);

static void rejoin_poll_later(struct rejoin *j)
{
    int rv = uv_timer_start(&j->timer, rejoin_poll, TANDEM_REJOIN_POLL_MS, 0);
    if (rv != 0) {
        rejoin_fail(j, 500, "cannot wait for it", uv_strerror(rv));
    }
}

/* Back: a raft log of nothing (join mode, wiped), at our epoch, not fenced. */
static void rejoin_back_cb(void *data, int status, int http_status, const char *body, size_t len)
{
    struct rejoin *j = data;
    tandem_assert(tandem_sm_state(&j->sm) == TANDEM_REJOIN_BACK);
    json_t *root = status == 0 && http_status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *n = json_object_get(root, "node");
    json_t *last = json_object_get(n, "last_index"), *epoch = json_object_get(n, "epoch");
    bool back = json_is_integer(last) && json_integer_value(last) == 0 && json_is_integer(epoch) &&
                (uint64_t)json_integer_value(epoch) == j->bcp->epoch &&
                json_is_false(json_object_get(n, "fenced"));
    json_decref(root);
    if (back) {
        rejoin_add(j);
    } else if (uv_now(j->bcp->env.loop) >= j->deadline_ms) {
        rejoin_fail(j, 504, "it was re-seeded but did not come back empty in time",
                    "check its log; retry rejoin");
    } else {
        rejoin_poll_later(j);
    }
}

static void rejoin_poll(uv_timer_t *timer)
{
    struct rejoin *j = timer->data;
    if (tandem_bcp_call(j->bcp, j->member.api, "GET", "/v1/status", NULL, NULL,
                        TANDEM_REJOIN_POLL_MS * 5, rejoin_back_cb, j) != 0) {
        rejoin_fail(j, 502, "cannot poll its status", "no client");
    }
}

static void rejoin_reseed_cb(void *data, int status, int http_status, const char *body,
                             size_t body_len)
{
    struct rejoin *j = data;
    char detail[300];
    if (status != 0 || (http_status != 200 && http_status != 202)) {
        snprintf(detail, sizeof detail, "%s %.*s", status != 0 ? uv_strerror(status) : "refused:",
                 (int)(body_len > 200 ? 200 : body_len), body == NULL ? "" : body);
        rejoin_fail(j, 502,
                    "its re-seed failed (it is no longer a member if it was one; fix it and retry "
                    "rejoin)",
                    detail);
        return;
    }
    /* Re-adding it before its old process stopped would let that process acknowledge entries
     * the wiped one no longer has: wait until it answers again with an empty log. */
    j->reseeded = true;
    j->deadline_ms = uv_now(j->bcp->env.loop) + TANDEM_REJOIN_BACK_TIMEOUT_MS;
    int rv = uv_timer_init(j->bcp->env.loop, &j->timer);
    if (rv != 0) {
        rejoin_fail(j, 500, "cannot wait for it", uv_strerror(rv));
        return;
    }
    j->timer.data = j;
    j->timer_open = true;
    rejoin_move(j, TANDEM_REJOIN_BACK);
    rejoin_poll_later(j);
}

static void rejoin_reseed(struct rejoin *j)
{
    char body[256];
    snprintf(body, sizeof body, "{\"epoch\":%" PRIu64 ",\"cluster_id\":\"%s\",\"force\":true}",
             j->bcp->epoch, j->bcp->env.config->cluster_id);
    rejoin_move(j, TANDEM_REJOIN_RESEED);
    int rv = tandem_bcp_call(j->bcp, j->member.api, "POST", "/v1/node/reseed", NULL, body,
                             TANDEM_REJOIN_RESEED_TIMEOUT_MS, rejoin_reseed_cb, j);
    if (rv != 0) {
        rejoin_fail(j, 502, "cannot call its API", uv_strerror(rv));
    }
}

static void rejoin_answer(struct rejoin *j)
{
    const struct tandem_member *m = &j->member;
    json_t *member = json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", m->name, "site", m->site, "role",
                               "standby", "raft", m->raft, "api", m->api);
    rejoin_move(j, TANDEM_REJOIN_DONE);
    tandem_bcp_reply_json(
        &j->reply, 200,
        json_pack("{s:o,s:I}", "member", member, "epoch", (json_int_t)j->bcp->epoch));
    rejoin_free(j);
}

static void rejoin_change_cb(struct raft_change *req, int status)
{
    struct rejoin *j = req->data;
    if (status != 0) {
        rejoin_fail(j, 503,
                    tandem_sm_state(&j->sm) == TANDEM_REJOIN_REMOVE ? "removing it failed"
                                                                    : "re-adding it failed",
                    raft_strerror(status));
        return;
    }
    if (tandem_sm_state(&j->sm) == TANDEM_REJOIN_REMOVE) {
        j->removed = true;
        rejoin_reseed(j);
    } else if (tandem_sm_state(&j->sm) == TANDEM_REJOIN_ADD) {
        rejoin_move(j, TANDEM_REJOIN_ASSIGN);
        int rv =
            raft_assign(&j->bcp->env.raft->raft, &j->change, j->id, RAFT_STANDBY, rejoin_change_cb);
        if (rv != 0) {
            rejoin_fail(j, 503, "making it a standby failed", raft_strerror(rv));
        }
    } else {
        tandem_assert(tandem_sm_state(&j->sm) == TANDEM_REJOIN_ASSIGN);
        rejoin_answer(j);
    }
}

/* The member from the configuration, or from its home record when it is no longer in it. */
static int rejoin_lookup(struct tandem_bcp *b, const char *name, struct tandem_member *m,
                         bool *in_config)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    *in_config = tandem_raft_member_by_name(b->env.raft, name, m, NULL) == 0;
    if (*in_config) {
        return 0;
    }
    struct tandem_site_table *t = tandem_bcp_table_load(b);
    int rv = -1;
    if (t != NULL) {
        const struct tandem_member_home *home = tandem_site_table_home(t, name);
        rv = home == NULL ? -1 : tandem_member_address_parse(home->address, m, errmsg);
    }
    free(t);
    return rv;
}

void tandem_bcp_rejoin_start(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                             const char *name)
{
    struct rejoin *j = calloc(1, sizeof *j);
    bool in_config = false;
    if (j == NULL) {
        tandem_bcp_reply_error(reply, 500, "out of memory");
        return;
    }
    if (rejoin_lookup(b, name, &j->member, &in_config) != 0) {
        tandem_bcp_reply_error(
            reply, 404, "no member named %s (not in the configuration, no home record)", name);
        free(j);
        return;
    }
    if (strcmp(name, b->env.self->name) == 0) {
        tandem_bcp_reply_error(reply, 409, "%s is the leader: transfer leadership first", name);
        free(j);
        return;
    }
    j->bcp = b;
    j->reply = *reply;
    j->id = tandem_member_id(name);
    j->in_config = in_config;
    j->change.data = j;
    tandem_sm_init(&j->sm, "rejoin", tandem_rejoin_sm_conf, TANDEM_REJOIN_STEPS,
                   TANDEM_REJOIN_REMOVE, rejoin_invariant, j);
    if (!in_config) {
        rejoin_reseed(j);
        return;
    }
    int rv = raft_remove(&b->env.raft->raft, &j->change, j->id, rejoin_change_cb);
    if (rv != 0) {
        rejoin_fail(j, 503, "removing it failed", raft_strerror(rv));
    }
}
