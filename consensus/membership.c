/* Raft membership changes driven to their end: add and assign, remove, confirmed transfer. */
#include "consensus/membership.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/site_controller.h"
#include "storage/assert.h"

enum change_kind { CHANGE_ADD, CHANGE_REMOVE, CHANGE_TRANSFER };

struct change {
    struct raft_change change;     /* add, assign, remove */
    struct raft_transfer transfer; /* never freed while raft holds it (inflight) */
    uv_timer_t timer;              /* assignment after an add, transfer polls */
    bool timer_open, inflight;
    bool raft_holds; /* a failed raft_assign left c->change as libraft's pending change */
    enum change_kind kind;
    unsigned attempts, polls_left;
    unsigned unready_polls; /* polls since the last attempt with the target not caught up */
    struct tandem_raft *n;  /* borrowed */
    uv_loop_t *loop;        /* borrowed */
    struct tandem_member member;
    uint64_t id;
    tandem_membership_cb cb;
    void *data;
    char errmsg[TANDEM_ERRMSG_SIZE];
};

static struct change *change_new(struct tandem_raft *n, uv_loop_t *loop, enum change_kind kind,
                                 char *errmsg, tandem_membership_cb cb, void *data)
{
    tandem_assert(cb != NULL);
    struct change *c = calloc(1, sizeof *c);
    if (c == NULL) {
        tandem_error_set(errmsg, TANDEM_NOMEM, "out of memory");
        return NULL;
    }
    c->n = n;
    c->loop = loop;
    c->kind = kind;
    c->cb = cb;
    c->data = data;
    c->change.data = c;
    c->transfer.data = c;
    c->timer.data = c;
    return c;
}

static void change_closed_cb(uv_handle_t *handle)
{
    struct change *c = handle->data;
    c->timer_open = false;
    if (!c->raft_holds) {
        free(c);
    }
}

/* Reports and frees c: from the loop after its timer closed, else at once. */
static void change_finish(struct change *c, int status)
{
    tandem_assert(!c->inflight); /* raft no longer holds c->transfer */
    c->cb(c->data, status, status == TANDEM_OK ? "" : c->errmsg, &c->member);
    if (c->timer_open) {
        uv_close((uv_handle_t *)&c->timer, change_closed_cb);
    } else {
        free(c);
    }
}

/* A raft failure of the change, worded for the operator. */
static int change_raft_error(struct change *c, int rv, char *errmsg)
{
    return tandem_error_set(errmsg, rv == RAFT_NOTLEADER ? TANDEM_NOTLEADER : TANDEM_RAFT,
                            "membership change for %s failed: %s", c->member.name,
                            raft_strerror(rv));
}

static void change_done_cb(struct raft_change *req, int status)
{
    struct change *c = req->data;
    tandem_assert(c->kind != CHANGE_TRANSFER);
    if (c->raft_holds) {
        /* raft lets go of a request whose failure was reported already: only freed here. */
        c->raft_holds = false;
        if (!c->timer_open) {
            free(c);
        }
        return;
    }
    change_finish(c, status == 0 ? TANDEM_OK : change_raft_error(c, status, c->errmsg));
}

/* raft_assign failed after libraft 0.22.1 made c->change its pending change (src/legacy.c,
 * raft_assign sets r->legacy.change before the submission or catch-up that failed, and leaves it
 * set): raft still holds the request and calls change_done_cb with it later (a configuration
 * change applied, leadership lost, or raft_close). Freeing c now would leave raft a dangling
 * request. The failure is reported now; c is freed when raft lets go of it. */
static void assign_failed_held(struct change *c, int rv)
{
    int status = tandem_error_set(c->errmsg, TANDEM_RAFT,
                                  "membership change for %s failed: %s (raft still holds the "
                                  "change and may yet apply it: check the members)",
                                  c->member.name, raft_strerror(rv));
    c->raft_holds = true;
    c->cb(c->data, status, c->errmsg, &c->member);
    if (c->timer_open) {
        uv_close((uv_handle_t *)&c->timer, change_closed_cb);
    }
}

static void assign_try(uv_timer_t *timer)
{
    struct change *c = timer->data;
    int rv = raft_assign(&c->n->raft, &c->change, c->id, tandem_raft_role_to_raft(c->member.role),
                         change_done_cb);
    if (rv == RAFT_CANTCHANGE && ++c->attempts < TANDEM_MEMBERSHIP_ASSIGN_ATTEMPTS_MAX) {
        rv = uv_timer_start(&c->timer, assign_try, TANDEM_MEMBERSHIP_ASSIGN_RETRY_MS, 0);
        if (rv != 0) {
            change_finish(c, tandem_error_from_uv(rv, c->errmsg, "membership: assign retry"));
        }
    } else if (rv != 0 && c->n->raft.legacy.change == &c->change) {
        assign_failed_held(c, rv);
    } else if (rv != 0) {
        change_finish(c, change_raft_error(c, rv, c->errmsg));
    }
}

/* Assigns c->member.role from the loop (never inside raft's own callback for a request). */
static void assign_start(struct change *c)
{
    tandem_assert(c->kind == CHANGE_ADD && !c->timer_open);
    int rv = uv_timer_init(c->loop, &c->timer);
    c->timer_open = rv == 0;
    if (rv == 0) {
        rv = uv_timer_start(&c->timer, assign_try, 0, 0);
    }
    if (rv != 0) {
        change_finish(c, tandem_error_from_uv(rv, c->errmsg, "membership: assign timer"));
    }
}

static void add_cb(struct raft_change *req, int status)
{
    struct change *c = req->data;
    if (status != 0 || c->member.role == TANDEM_ROLE_SPARE) {
        change_done_cb(req, status);
        return;
    }
    assign_start(c);
}

/* raft_add and raft_remove encode the new configuration before libraft 0.22.1 checks that this
 * node may change it, and leak the encoding when it may not (clientChangeConfiguration returns
 * the submission's refusal without freeing the entry). So the checks libraft makes come first:
 * ClientSubmit's and membershipCanChangeConfiguration's, on raft's fields (read only). Returns 0,
 * RAFT_NOTLEADER or RAFT_CANTCHANGE. */
static int change_allowed(const struct raft *r)
{
    if (r->state != RAFT_LEADER || raft_transferee(r) != 0) {
        return RAFT_NOTLEADER;
    }
    if (r->configuration_uncommitted_index != 0 || r->leader_state.promotee_id != 0) {
        return RAFT_CANTCHANGE;
    }
    return 0;
}

/* TANDEM_EXISTS when m's name or raft address is in the configuration. */
static int add_check(struct tandem_raft *n, const struct tandem_member *m, char *errmsg)
{
    struct tandem_member existing;
    char parse_errmsg[TANDEM_ERRMSG_SIZE];
    if (tandem_raft_member_by_name(n, m->name, &existing, NULL) == 0) {
        return tandem_error_set(errmsg, TANDEM_EXISTS, "member %s already exists", m->name);
    }
    const struct raft_configuration *conf = &n->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++) {
        if (tandem_member_address_parse(conf->servers[i].address, &existing, parse_errmsg) == 0 &&
            strcmp(existing.raft, m->raft) == 0) {
            return tandem_error_set(errmsg, TANDEM_EXISTS, "raft address %s is already used by %s",
                                    m->raft, existing.name);
        }
    }
    return TANDEM_OK;
}

/* Whether m is already a spare under its name, site and addresses: an add that stopped half
 * way (raft_add made it a spare, and leadership was lost before the role was assigned), or a
 * spare added on purpose, which the add then gives m->role. */
static bool add_half_done(struct tandem_raft *n, const struct tandem_member *m, uint64_t *id)
{
    struct tandem_member existing;
    return m->role != TANDEM_ROLE_SPARE &&
           tandem_raft_member_by_name(n, m->name, &existing, id) == 0 &&
           existing.role == TANDEM_ROLE_SPARE && strcmp(existing.site, m->site) == 0 &&
           strcmp(existing.raft, m->raft) == 0 && strcmp(existing.api, m->api) == 0;
}

int tandem_membership_add(struct tandem_raft *n, uv_loop_t *loop, const struct tandem_member *m,
                          char *errmsg, tandem_membership_cb cb, void *data)
{
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    uint64_t spare_id;
    bool half_done = add_half_done(n, m, &spare_id);
    int rv = half_done ? TANDEM_OK : add_check(n, m, errmsg);
    if (rv != TANDEM_OK) {
        return rv;
    }
    struct change *c = change_new(n, loop, CHANGE_ADD, errmsg, cb, data);
    if (c == NULL) {
        return TANDEM_NOMEM;
    }
    c->member = *m;
    c->id = half_done ? spare_id : tandem_member_id(m->name);
    if ((rv = change_allowed(&n->raft)) == 0 && half_done) {
        assign_start(c); /* the spare is in already: only its role is left */
        return TANDEM_OK;
    }
    if (rv == 0) {
        tandem_member_address_format(m, address, sizeof address);
        rv = raft_add(&n->raft, &c->change, c->id, address, add_cb);
    }
    if (rv != 0) {
        rv = change_raft_error(c, rv, errmsg);
        free(c);
        return rv;
    }
    return TANDEM_OK;
}

int tandem_membership_remove(struct tandem_raft *n, const char *name, char *errmsg,
                             tandem_membership_cb cb, void *data)
{
    struct change *c = change_new(n, NULL, CHANGE_REMOVE, errmsg, cb, data);
    if (c == NULL) {
        return TANDEM_NOMEM;
    }
    if (tandem_raft_member_by_name(n, name, &c->member, &c->id) != 0) {
        free(c);
        return tandem_error_set(errmsg, TANDEM_NOTFOUND, "no member named %s", name);
    }
    int rv = change_allowed(&n->raft);
    if (rv == 0) {
        rv = raft_remove(&n->raft, &c->change, c->id, change_done_cb);
    }
    if (rv != 0) {
        rv = change_raft_error(c, rv, errmsg);
        free(c);
        return rv;
    }
    return TANDEM_OK;
}

static void transfer_cb(struct raft_transfer *req)
{
    struct change *c = req->data;
    c->inflight = false; /* c is freed only from the next poll, never in here */
}

static void transfer_poll(uv_timer_t *timer)
{
    struct change *c = timer->data;
    raft_id leader_id;
    const char *address;
    tandem_assert(c->kind == CHANGE_TRANSFER && c->timer_open);
    if (c->inflight) {
        return;
    }
    raft_leader(&c->n->raft, &leader_id, &address);
    if (leader_id == c->id) {
        uv_timer_stop(timer); /* cannot fail */
        change_finish(c, TANDEM_OK);
        return;
    }
    bool leader = raft_state(&c->n->raft) == RAFT_LEADER;
    /* A target that lacks our last entry would ignore the transfer and hold writes for an
     * election timeout (tandem_site_transfer_ready): wait a little for it to catch up. */
    bool ready =
        tandem_site_transfer_ready(&c->n->raft, c->id) ||
        ++c->unready_polls * TANDEM_MEMBERSHIP_TRANSFER_POLL_MS >= TANDEM_SITE_TRANSFER_CATCH_UP_MS;
    if (leader && ready && c->attempts < TANDEM_MEMBERSHIP_TRANSFER_ATTEMPTS_MAX &&
        raft_transfer(&c->n->raft, &c->transfer, c->id, transfer_cb) == 0) {
        c->attempts++;
        c->unready_polls = 0;
        c->inflight = true;
        return;
    }
    if (c->polls_left-- == 0 ||
        (leader && c->attempts >= TANDEM_MEMBERSHIP_TRANSFER_ATTEMPTS_MAX)) {
        uv_timer_stop(timer);
        change_finish(c, tandem_error_set(c->errmsg, TANDEM_TIMEOUT,
                                          "leadership transfer to %s: the new leader was not "
                                          "confirmed in time",
                                          c->member.name));
    }
}

int tandem_membership_transfer(struct tandem_raft *n, uv_loop_t *loop, const char *name,
                               unsigned confirm_ms, char *errmsg, tandem_membership_cb cb,
                               void *data)
{
    struct change *c = change_new(n, loop, CHANGE_TRANSFER, errmsg, cb, data);
    if (c == NULL) {
        return TANDEM_NOMEM;
    }
    int rv = TANDEM_OK;
    if (tandem_raft_member_by_name(n, name, &c->member, &c->id) != 0) {
        rv = tandem_error_set(errmsg, TANDEM_NOTFOUND, "no member named %s", name);
    } else if (c->member.role != TANDEM_ROLE_VOTER) {
        rv = tandem_error_set(errmsg, TANDEM_STATE, "%s is a %s, not a voter", name,
                              tandem_role_name(c->member.role));
    } else if ((rv = uv_timer_init(loop, &c->timer)) != 0) {
        rv = tandem_error_from_uv(rv, errmsg, "membership: transfer timer");
    }
    if (rv != TANDEM_OK) {
        free(c);
        return rv;
    }
    c->timer_open = true;
    c->polls_left = confirm_ms / TANDEM_MEMBERSHIP_TRANSFER_POLL_MS + 1;
    rv = uv_timer_start(&c->timer, transfer_poll, 0, TANDEM_MEMBERSHIP_TRANSFER_POLL_MS);
    if (rv != 0) {
        rv = tandem_error_from_uv(rv, errmsg, "membership: transfer timer");
        uv_close((uv_handle_t *)&c->timer, change_closed_cb); /* cb never runs */
        return rv;
    }
    return TANDEM_OK;
}
