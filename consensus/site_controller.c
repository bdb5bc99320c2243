/* Site controller: the planner that picks one step from the site table and the configuration,
 * and the leader-only runtime that records each step as a command and then takes it. */
#include "consensus/site_controller.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/raft_node.h"
#include "storage/assert.h"
#include "storage/error.h"
#include "storage/sm.h"

/* ---- planner ---- */

static const struct tandem_site_plan_site *plan_site(const struct tandem_site_plan_input *in,
                                                     const char *name)
{
    for (unsigned i = 0; i < in->n_sites; i++) {
        if (strcmp(in->sites[i].name, name) == 0) {
            return &in->sites[i];
        }
    }
    return NULL;
}

static int site_state(const struct tandem_site_plan_input *in, const char *name)
{
    const struct tandem_site_plan_site *s = plan_site(in, name);
    return s == NULL ? TANDEM_PLAN_SITE_ACTIVE : s->state;
}

static bool site_witness(const struct tandem_site_plan_input *in, const char *name)
{
    const struct tandem_site_plan_site *s = plan_site(in, name);
    return s != NULL && s->witness;
}

static bool any_site_not_active(const struct tandem_site_plan_input *in)
{
    for (unsigned i = 0; i < in->n_sites; i++) {
        if (in->sites[i].state != TANDEM_PLAN_SITE_ACTIVE) {
            return true;
        }
    }
    return false;
}

static const struct tandem_site_plan_member *plan_self(const struct tandem_site_plan_input *in)
{
    for (unsigned i = 0; i < in->n_members; i++) {
        if (in->members[i].self) {
            return &in->members[i];
        }
    }
    return NULL;
}

static void set_action(struct tandem_site_action *out, int kind, const char *site,
                       const char *action_name, const char *fmt, const char *arg)
{
    memset(out, 0, sizeof *out);
    out->kind = kind;
    snprintf(out->site, sizeof out->site, "%s", site == NULL ? "" : site);
    snprintf(out->action_name, sizeof out->action_name, "%s", action_name);
    snprintf(out->reason, sizeof out->reason, fmt, arg == NULL ? "" : arg);
}

static bool plan_register(const struct tandem_site_plan_input *in, struct tandem_site_action *out)
{
    for (unsigned i = 0; i < in->n_members; i++) {
        const char *site = in->members[i].site;
        if (plan_site(in, site) == NULL) {
            set_action(out, TANDEM_SITE_ACTION_REGISTER, site, "register",
                       "site %s seen in the configuration", site);
            out->witness = strcmp(site, "witness") == 0;
            return true;
        }
    }
    return false;
}

/* A member without a home record has the role an operator gave it: the controller never moves
 * such a member (tandem_site_desired_role), so its current role is its home role whatever the
 * sites' states, and recording it first keeps an early invoke from stranding its vote. */
static bool plan_homes(const struct tandem_site_plan_input *in, struct tandem_site_action *out)
{
    for (unsigned i = 0; i < in->n_members; i++) {
        /* A spare is a member whose add is still going on (raft_add makes a spare, then
         * member add assigns the role asked for): recording "spare" as its home would demote it
         * right after. Its home is recorded once it has its role. */
        if (in->members[i].home_role < 0 && in->members[i].role != TANDEM_ROLE_SPARE) {
            set_action(out, TANDEM_SITE_ACTION_RECORD_HOMES, NULL, "record-homes",
                       "home roles of members added since%s", " the last record");
            return true;
        }
    }
    return false;
}

static bool plan_prefer(const struct tandem_site_plan_input *in, struct tandem_site_action *out)
{
    const char *want = in->config_preferred_site;
    if (in->preferred_set || want[0] == '\0' || plan_site(in, want) == NULL ||
        site_witness(in, want)) {
        return false;
    }
    set_action(out, TANDEM_SITE_ACTION_PREFER, want, "prefer",
               "preferred_site %s from the configuration", want);
    return true;
}

/* The site that serves once forced_site is recorded as invoked: NULL when another non-witness
 * site is not invoked (it takes the work over), else the invoked non-witness site holding the
 * most members of the configuration, the leader's first. The forced configuration holds only
 * survivors, so those are where the survivors are: the site must serve again. */
static const struct tandem_site_plan_site *
forced_revoke_site(const struct tandem_site_plan_input *in, const char *forced_site)
{
    const struct tandem_site_plan_site *best = NULL;
    unsigned best_members = 0;
    for (unsigned i = 0; i < in->n_sites; i++) {
        const struct tandem_site_plan_site *s = &in->sites[i];
        if (s->witness || strcmp(s->name, forced_site) == 0) {
            continue;
        }
        if (s->state != TANDEM_PLAN_SITE_INVOKED) {
            return NULL;
        }
        unsigned members = 0; /* the leader's site wins: it weighs more than any count */
        for (unsigned j = 0; j < in->n_members; j++) {
            bool here = strcmp(in->members[j].site, s->name) == 0;
            members += here ? (in->members[j].self ? TANDEM_SITE_PLAN_MEMBERS_MAX : 1) : 0;
        }
        if (members > best_members) {
            best = s;
            best_members = members;
        }
    }
    return best;
}

static bool plan_forced(const struct tandem_site_plan_input *in, struct tandem_site_action *out)
{
    const struct tandem_site_plan_site *s = plan_site(in, in->forced_site);
    if (in->forced_site[0] == '\0' || s == NULL || s->state == TANDEM_PLAN_SITE_INVOKED ||
        s->witness) {
        return false;
    }
    const struct tandem_site_plan_site *back = forced_revoke_site(in, s->name);
    if (back != NULL) {
        set_action(out, TANDEM_SITE_ACTION_REVOKE, back->name, "revoke", "%s", "");
        snprintf(out->reason, sizeof out->reason,
                 "forced failover of %s: the survivors are in invoked site %s, which serves again",
                 s->name, back->name);
    } else {
        set_action(out, TANDEM_SITE_ACTION_INVOKE, s->name, "invoke",
                   "forced failover: quorum was lost with site %s", s->name);
    }
    out->force = true;
    return true;
}

/* True when no member of site in the configuration answered; *voters counts its voters. */
static bool site_down(const struct tandem_site_plan_input *in, const char *site, unsigned *voters)
{
    unsigned members = 0;
    *voters = 0;
    for (unsigned i = 0; i < in->n_members; i++) {
        const struct tandem_site_plan_member *m = &in->members[i];
        if (strcmp(m->site, site) != 0) {
            continue;
        }
        members++;
        *voters += m->role == TANDEM_ROLE_VOTER ? 1 : 0;
        if (m->reachable || m->self) {
            return false;
        }
    }
    return members > 0;
}

static bool have_quorum(const struct tandem_site_plan_input *in)
{
    unsigned voters = 0, reachable = 0;
    for (unsigned i = 0; i < in->n_members; i++) {
        const struct tandem_site_plan_member *m = &in->members[i];
        voters += m->role == TANDEM_ROLE_VOTER ? 1 : 0;
        reachable += m->role == TANDEM_ROLE_VOTER && (m->reachable || m->self) ? 1 : 0;
    }
    return reachable * 2 > voters;
}

static bool plan_auto_invoke(const struct tandem_site_plan_input *in,
                             struct tandem_site_action *out)
{
    unsigned voters;
    if (!in->auto_bcp || !have_quorum(in)) {
        return false;
    }
    for (unsigned i = 0; i < in->n_sites; i++) {
        const struct tandem_site_plan_site *s = &in->sites[i];
        if (s->witness || s->state == TANDEM_PLAN_SITE_INVOKED) {
            continue;
        }
        if (site_down(in, s->name, &voters) && voters > 0) {
            set_action(out, TANDEM_SITE_ACTION_INVOKE, s->name, "invoke", "site unreachable%s", "");
            return true;
        }
    }
    return false;
}

static bool plan_report(const struct tandem_site_plan_input *in, struct tandem_site_action *out)
{
    unsigned voters;
    for (unsigned i = 0; i < in->n_sites; i++) {
        const struct tandem_site_plan_site *s = &in->sites[i];
        if (s->witness && !s->down_reported && site_down(in, s->name, &voters)) {
            set_action(out, TANDEM_SITE_ACTION_REPORT, s->name, "witness-unreachable",
                       "witness site %s unreachable: it holds no work, so it is not invoked; "
                       "the cluster tolerates one failure less",
                       s->name);
            return true;
        }
    }
    return false;
}

/* A voter that may take leadership: reachable, caught up, in an active non-witness site.
 * Members of `prefer` win; otherwise the first in configuration order. */
static const struct tandem_site_plan_member *best_target(const struct tandem_site_plan_input *in,
                                                         const char *prefer)
{
    const struct tandem_site_plan_member *best = NULL;
    for (unsigned i = 0; i < in->n_members; i++) {
        const struct tandem_site_plan_member *m = &in->members[i];
        if (m->self || m->role != TANDEM_ROLE_VOTER || !m->reachable || !m->caught_up ||
            m->lost_log || site_state(in, m->site) != TANDEM_PLAN_SITE_ACTIVE ||
            site_witness(in, m->site)) {
            continue;
        }
        if (prefer != NULL && prefer[0] != '\0' && strcmp(m->site, prefer) == 0) {
            return m;
        }
        if (best == NULL) {
            best = m;
        }
    }
    return best;
}

static void set_transfer(struct tandem_site_action *out, const struct tandem_site_plan_member *to,
                         const char *why, const char *site)
{
    set_action(out, TANDEM_SITE_ACTION_TRANSFER, to->site, "transfer", why, site);
    snprintf(out->member, sizeof out->member, "%s", to->name);
    out->member_id = to->id;
}

static bool plan_leave(const struct tandem_site_plan_input *in, struct tandem_site_action *out)
{
    const struct tandem_site_plan_member *self = plan_self(in);
    if (self == NULL) {
        return false;
    }
    bool invoked = site_state(in, self->site) == TANDEM_PLAN_SITE_INVOKED;
    bool witness = site_witness(in, self->site);
    if (!invoked && !witness && self->role == TANDEM_ROLE_VOTER) {
        return false;
    }
    const struct tandem_site_plan_member *to = best_target(in, in->preferred_site);
    if (to == NULL) {
        return false;
    }
    set_transfer(out, to,
                 invoked ? "leadership leaves invoked site %s"
                         : "witness site %s never keeps leadership",
                 self->site);
    return true;
}

/* A member that lost entries it had acknowledged stays behind for as long as this node leads
 * (consensus/raft_shield.h, 8): a new leader starts its progress afresh. Leadership goes to a
 * voter of this leader's site if one qualifies, else by the usual preference, else, when no
 * voter of a non-witness site qualifies, to a witness voter (plan_leave moves it on once another
 * voter is caught up). */
static bool plan_lost_log(const struct tandem_site_plan_input *in, struct tandem_site_action *out)
{
    const struct tandem_site_plan_member *self = plan_self(in);
    const struct tandem_site_plan_member *lost = NULL;
    for (unsigned i = 0; i < in->n_members && lost == NULL; i++) {
        if (in->members[i].lost_log && !in->members[i].self) {
            lost = &in->members[i];
        }
    }
    if (self == NULL || lost == NULL) {
        return false;
    }
    const struct tandem_site_plan_member *to = best_target(in, self->site);
    if (to == NULL) {
        to = best_target(in, in->preferred_site);
    }
    for (unsigned i = 0; i < in->n_members && to == NULL; i++) {
        const struct tandem_site_plan_member *m = &in->members[i];
        if (!m->self && m->role == TANDEM_ROLE_VOTER && m->reachable && m->caught_up &&
            !m->lost_log && site_state(in, m->site) == TANDEM_PLAN_SITE_ACTIVE) {
            to = m;
        }
    }
    if (to == NULL) {
        return false;
    }
    set_transfer(out, to,
                 "%s lost entries it had acknowledged (its data emptied?): this leader would send "
                 "it none again; a new leader starts afresh",
                 lost->name);
    out->warn = true; /* a member lost data: an operator wants to know */
    return true;
}

int tandem_site_desired_role(const struct tandem_site_plan_input *in,
                             const struct tandem_site_plan_member *m)
{
    if (m->home_role < 0) {
        return m->role;
    }
    bool promotable = m->reachable && m->caught_up;
    int want = m->home_role;
    switch (site_state(in, m->site)) {
        case TANDEM_PLAN_SITE_INVOKED:
            return m->role == TANDEM_ROLE_VOTER ? TANDEM_ROLE_STANDBY : m->role;
        case TANDEM_PLAN_SITE_RECOVERING:
            break;
        default:
            /* Stand-ins: while a site is away, standbys elsewhere vote so that the remaining
             * site and the witness keep a quorum that tolerates a failure. */
            if (want == TANDEM_ROLE_STANDBY && any_site_not_active(in) &&
                !site_witness(in, m->site)) {
                want = TANDEM_ROLE_VOTER;
            }
            break;
    }
    if (want == TANDEM_ROLE_VOTER && m->role != TANDEM_ROLE_VOTER && !promotable) {
        return m->role;
    }
    return want;
}

/* Voters after one voter leaves still include a reachable majority. */
static bool demotion_safe(const struct tandem_site_plan_input *in,
                          const struct tandem_site_plan_member *leaving)
{
    unsigned voters = 0, reachable = 0;
    for (unsigned i = 0; i < in->n_members; i++) {
        const struct tandem_site_plan_member *m = &in->members[i];
        if (m == leaving || m->role != TANDEM_ROLE_VOTER) {
            continue;
        }
        voters++;
        reachable += m->reachable || m->self ? 1 : 0;
    }
    return voters >= 1 && reachable * 2 > voters;
}

static void set_assign(struct tandem_site_action *out, const struct tandem_site_plan_member *m,
                       int to_role, const char *why)
{
    set_action(out, TANDEM_SITE_ACTION_ASSIGN, m->site,
               to_role == TANDEM_ROLE_VOTER ? "promote" : "demote", why, m->site);
    snprintf(out->member, sizeof out->member, "%s", m->name);
    out->member_id = m->id;
    out->from_role = m->role;
    out->to_role = to_role;
}

static const char *assign_reason(const struct tandem_site_plan_input *in,
                                 const struct tandem_site_plan_member *m, int to_role)
{
    int state = site_state(in, m->site);
    if (to_role != TANDEM_ROLE_VOTER) {
        return state == TANDEM_PLAN_SITE_INVOKED ? "site %s is invoked"
                                                 : "back to its home role (site %s)";
    }
    if (state == TANDEM_PLAN_SITE_RECOVERING) {
        return "caught up: returns as a voter of recovering site %s";
    }
    return m->home_role == TANDEM_ROLE_STANDBY ? "stand-in voter while another site is away (%s)"
                                               : "home role of a member of site %s";
}

static bool plan_roles(const struct tandem_site_plan_input *in, struct tandem_site_action *out)
{
    /* Demotions first (pass 0), then promotions (pass 1): one step per plan. */
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < in->n_members; i++) {
            const struct tandem_site_plan_member *m = &in->members[i];
            int want = tandem_site_desired_role(in, m);
            if (want == m->role || m->self) {
                continue;
            }
            bool demote = m->role == TANDEM_ROLE_VOTER;
            if ((pass == 0) != demote || (demote && !demotion_safe(in, m))) {
                continue;
            }
            set_assign(out, m, want, assign_reason(in, m, want));
            return true;
        }
    }
    return false;
}

static bool plan_recovered(const struct tandem_site_plan_input *in, struct tandem_site_action *out)
{
    for (unsigned i = 0; i < in->n_sites; i++) {
        const struct tandem_site_plan_site *s = &in->sites[i];
        unsigned members = 0, home = 0;
        if (s->state != TANDEM_PLAN_SITE_RECOVERING) {
            continue;
        }
        for (unsigned j = 0; j < in->n_members; j++) {
            const struct tandem_site_plan_member *m = &in->members[j];
            if (strcmp(m->site, s->name) == 0) {
                members++;
                home += m->home_role < 0 || m->role == m->home_role ? 1 : 0;
            }
        }
        if (members > 0 && home == members) {
            set_action(out, TANDEM_SITE_ACTION_RECOVERED, s->name, "recovered",
                       "every member of site %s is back in its home role", s->name);
            return true;
        }
    }
    return false;
}

static bool plan_preferred(const struct tandem_site_plan_input *in, struct tandem_site_action *out)
{
    const struct tandem_site_plan_member *self = plan_self(in);
    const char *want = in->preferred_site;
    if (self == NULL || want[0] == '\0' || strcmp(self->site, want) == 0 ||
        site_state(in, want) != TANDEM_PLAN_SITE_ACTIVE || site_witness(in, want)) {
        return false;
    }
    const struct tandem_site_plan_member *to = best_target(in, want);
    if (to == NULL || strcmp(to->site, want) != 0) {
        return false;
    }
    set_transfer(out, to, "leadership returns to preferred site %s", want);
    return true;
}

bool tandem_site_config_stuck(struct raft *r)
{
    /* Applying the entry clears the marker; an applied entry still marked is a stale one. */
    return r->configuration_uncommitted_index != 0 &&
           r->configuration_uncommitted_index <= raft_last_applied(r);
}

/* Writes libraft's internal fields, which nothing else in tandem does. Why: the alternative is a
 * leader that can never change its configuration again (stepping down does not clear a
 * follower's marker, and each new leader inherits its own), and the shield that removes the
 * cause (consensus/raft_shield.h, shield 4) stalls followers, so it is not installed. Why it is
 * safe: it does exactly what replicationApplyConfigurationChange does when the marked entry is
 * applied, and only in the state where raft would have done so: the marker names an entry at or
 * below the applied index, above the committed configuration's index, and the current
 * configuration is the one raft decoded from the newest configuration entry it received
 * (membershipUncommittedChange). The index recorded is the marker's, which may be below the
 * entry's own: a later snapshot then records a configuration index a few entries early, which
 * raft only compares with newer entries. */
int tandem_site_config_repair(struct raft *r)
{
    struct raft_configuration committed;
    int rv = 0;
    if (!tandem_site_config_stuck(r)) {
        return 0;
    }
    tandem_assert(raft_state(r) == RAFT_FOLLOWER || raft_state(r) == RAFT_LEADER ||
                  raft_state(r) == RAFT_CANDIDATE);
    tandem_assert(r->configuration_committed_index < r->configuration_uncommitted_index);
    tandem_assert(r->configuration_uncommitted_index <= raft_commit_index(r));
    tandem_assert(r->configuration.n > 0);
    raft_configuration_init(&committed);
    for (unsigned i = 0; i < r->configuration.n && rv == 0; i++) {
        const struct raft_server *server = &r->configuration.servers[i];
        rv = raft_configuration_add(&committed, server->id, server->address, server->role);
    }
    if (rv != 0) {
        raft_configuration_close(&committed);
        return RAFT_NOMEM;
    }
    raft_configuration_close(&r->configuration_committed);
    r->configuration_committed = committed;
    r->configuration_committed_index = r->configuration_uncommitted_index;
    r->configuration_uncommitted_index = 0;
    return 0;
}

static void plan_step(const struct tandem_site_plan_input *in, struct tandem_site_action *out);

/* What every planned step promises the executor: a known kind, and for the raft steps a real
 * member that is not the leader itself (best_target and plan_roles skip self). */
static bool plan_action_ok(const struct tandem_site_plan_input *in,
                           const struct tandem_site_action *a)
{
    const struct tandem_site_plan_member *self = plan_self(in);
    bool to_self = self != NULL && self->id == a->member_id;
    switch (a->kind) {
        case TANDEM_SITE_ACTION_NONE:
        case TANDEM_SITE_ACTION_REGISTER:
        case TANDEM_SITE_ACTION_RECORD_HOMES:
        case TANDEM_SITE_ACTION_PREFER:
        case TANDEM_SITE_ACTION_INVOKE:
        case TANDEM_SITE_ACTION_RECOVERED:
        case TANDEM_SITE_ACTION_REPORT:
        case TANDEM_SITE_ACTION_REVOKE:
            return true;
        case TANDEM_SITE_ACTION_TRANSFER:
            return a->member_id != 0 && a->member[0] != '\0' && !to_self;
        case TANDEM_SITE_ACTION_ASSIGN:
            return a->member_id != 0 && !to_self && a->from_role != a->to_role &&
                   a->to_role >= TANDEM_ROLE_VOTER && a->to_role <= TANDEM_ROLE_SPARE;
        default:
            return false;
    }
}

void tandem_site_plan(const struct tandem_site_plan_input *in, struct tandem_site_action *out)
{
    /* gather fills fixed arrays: counts past them mean it wrote past them too. */
    tandem_assert(in->n_sites <= TANDEM_SITE_PLAN_SITES_MAX);
    tandem_assert(in->n_members <= TANDEM_SITE_PLAN_MEMBERS_MAX);
    plan_step(in, out);
    tandem_assert(plan_action_ok(in, out));
}

static void plan_step(const struct tandem_site_plan_input *in, struct tandem_site_action *out)
{
    memset(out, 0, sizeof *out);
    if (plan_register(in, out) || plan_homes(in, out) || plan_prefer(in, out) ||
        plan_forced(in, out) || plan_auto_invoke(in, out) || plan_report(in, out) ||
        plan_leave(in, out) || plan_lost_log(in, out) || plan_roles(in, out) ||
        plan_recovered(in, out) || plan_preferred(in, out)) {
        return;
    }
    out->kind = TANDEM_SITE_ACTION_NONE;
}

/* ---- runtime ---- */

int tandem_site_action_log_level(const struct tandem_site_action *a)
{
    if (a->warn) {
        return TANDEM_SITE_LOG_WARN;
    }
    switch (a->kind) {
        case TANDEM_SITE_ACTION_INVOKE: /* a failover, automatic or forced */
        case TANDEM_SITE_ACTION_REPORT: /* a site lost: one failure less is tolerated */
            return TANDEM_SITE_LOG_WARN;
        default:
            return TANDEM_SITE_LOG_INFO;
    }
}

static void controller_log(struct tandem_site_controller *c, int level, const char *fmt,
                           const char *a, const char *b)
{
    snprintf(c->last, sizeof c->last, fmt, a, b);
    if (c->log != NULL) {
        c->log(c, level, c->last);
    }
}

static uint64_t now_ms(struct tandem_site_controller *c)
{
    return uv_now(c->loop);
}

/* The executor: one step at a time, idle -> proposing its command -> (assigning | transferring)
 * -> idle. Every state may be where close finds it. */
static const struct tandem_sm_conf executor_states[] = {
    [TANDEM_SITE_IDLE] = {"idle", TANDEM_SM_INITIAL | TANDEM_SM_FINAL,
                          TANDEM_SM_BIT(TANDEM_SITE_PROPOSING)},
    [TANDEM_SITE_PROPOSING] = {"proposing", TANDEM_SM_FINAL,
                               TANDEM_SM_BIT(TANDEM_SITE_IDLE) |
                                   TANDEM_SM_BIT(TANDEM_SITE_ASSIGNING) |
                                   TANDEM_SM_BIT(TANDEM_SITE_TRANSFERRING)},
    [TANDEM_SITE_ASSIGNING] = {"assigning", TANDEM_SM_FINAL, TANDEM_SM_BIT(TANDEM_SITE_IDLE)},
    [TANDEM_SITE_TRANSFERRING] = {"transferring", TANDEM_SM_FINAL, TANDEM_SM_BIT(TANDEM_SITE_IDLE)},
};
#define EXECUTOR_STATES ((int)(sizeof executor_states / sizeof executor_states[0]))

/* What each state promises about the step in hand. */
static bool executor_invariant(const struct tandem_sm *sm, int prev, void *data)
{
    const struct tandem_site_controller *c = data;
    const struct tandem_site_action *a = &c->current;
    (void)prev;
    if (c->busy != tandem_sm_state(sm)) {
        return false; /* busy is the public mirror of the machine's state */
    }
    switch (c->busy) {
        case TANDEM_SITE_PROPOSING:
            return a->kind != TANDEM_SITE_ACTION_NONE;
        case TANDEM_SITE_ASSIGNING:
            return a->kind == TANDEM_SITE_ACTION_ASSIGN && a->member_id != 0 &&
                   a->to_role != a->from_role;
        case TANDEM_SITE_TRANSFERRING:
            return a->kind == TANDEM_SITE_ACTION_TRANSFER && a->member_id != 0 &&
                   c->transfer_attempts == 0 && c->transfer_deadline_ms > 0;
        default:
            return true;
    }
}

static void tick_cb(uv_timer_t *timer);

static void executor_move(struct tandem_site_controller *c, int next)
{
    bool was_transferring = c->busy == TANDEM_SITE_TRANSFERRING;
    c->busy = next;
    tandem_sm_move(&c->executor, next);
    /* A transfer is watched closely: its target is caught up for a few milliseconds at a time
     * under load, and every write waits while libraft transfers. */
    if (!c->closing && was_transferring != (next == TANDEM_SITE_TRANSFERRING)) {
        uint64_t pace =
            next == TANDEM_SITE_TRANSFERRING ? TANDEM_SITE_TRANSFER_POLL_MS : TANDEM_SITE_TICK_MS;
        /* uv_timer_start fails only for a closing handle or a NULL callback. */
        int rv = uv_timer_start(&c->timer, tick_cb, pace, pace);
        tandem_assert(rv == 0);
    }
}

static void step_failed(struct tandem_site_controller *c, const char *what)
{
    executor_move(c, TANDEM_SITE_IDLE);
    c->backoff_until_ms = now_ms(c) + TANDEM_SITE_BACKOFF_MS;
    controller_log(c, TANDEM_SITE_LOG_WARN, "site controller: %s: %s", c->current.reason, what);
}

static void assign_cb(struct raft_change *req, int status)
{
    struct tandem_site_controller *c = req->data;
    c->change_cb_pending = false;
    if (c->closing) {
        return;
    }
    if (status != 0) {
        c->assigns_failed++;
        step_failed(c, raft_strerror(status));
        return;
    }
    c->assigns_ok++;
    executor_move(c, TANDEM_SITE_IDLE);
    controller_log(c, TANDEM_SITE_LOG_INFO, "site controller: %s %s done", c->current.action_name,
                   c->current.member);
}

static void transfer_cb(struct raft_transfer *req)
{
    struct tandem_site_controller *c = req->data;
    c->transfer_cb_pending = false; /* the struct is ours again; never freed here */
}

bool tandem_site_transfer_ready(struct raft *r, raft_id id)
{
    raft_index match = 0;
    return raft_state(r) == RAFT_LEADER && raft_match_index(r, id, &match) == 0 &&
           match == raft_last_index(r);
}

bool tandem_site_transfer_resend(struct raft *r, raft_id id, struct raft_io_send *req,
                                 raft_io_send_cb cb)
{
    /* leader_state is the live member of raft's union only while r leads */
    if (id == 0 || raft_state(r) != RAFT_LEADER || raft_transferee(r) != id ||
        !r->leader_state.transferring || !tandem_site_transfer_ready(r, id)) {
        return false;
    }
    const char *address = NULL;
    for (unsigned i = 0; i < r->configuration.n; i++) {
        if (r->configuration.servers[i].id == id) {
            address = r->configuration.servers[i].address;
        }
    }
    if (address == NULL) {
        return false;
    }
    struct raft_message message = {.type = RAFT_TIMEOUT_NOW,
                                   .server_id = id,
                                   .server_address = address,
                                   .timeout_now = {.version = 0,
                                                   .term = raft_current_term(r),
                                                   .last_log_index = raft_last_index(r),
                                                   .last_log_term = raft_current_term(r)}};
    return r->io->send(r->io, req, &message, cb) == 0;
}

static int transfer_start(struct tandem_site_controller *c)
{
    tandem_assert(c->busy == TANDEM_SITE_TRANSFERRING && !c->transfer_cb_pending);
    bool early = !tandem_site_transfer_ready(c->raft, c->current.member_id);
    c->transfer.data = c;
    int rv = raft_transfer(c->raft, &c->transfer, c->current.member_id, transfer_cb);
    if (rv == 0) {
        c->transfer_cb_pending = true;
        c->transfer_attempts++;
        c->transfer_resends_left = early ? TANDEM_SITE_TRANSFER_RESENDS_MAX : 0;
        c->transfer_resend_not_before_ms = 0;
        c->transfers_early += early ? 1 : 0;
        controller_log(c, TANDEM_SITE_LOG_INFO, "site controller: raft_transfer to %s%s",
                       c->current.member,
                       early ? " started before it held the last entry (no catch-up within the "
                               "wait)"
                             : " (it holds the last entry)");
    }
    return rv;
}

static void timeout_now_sent_cb(struct raft_io_send *req, int status)
{
    struct tandem_site_controller *c = req->data;
    (void)status; /* a lost TimeoutNow is libraft's lost transfer: it aborts it in time */
    c->timeout_now_pending = false;
}

/* While libraft holds a transfer started early, sends its TimeoutNow again once the target
 * caught up (tandem_site_transfer_resend). */
static void transfer_resend(struct tandem_site_controller *c)
{
    if (c->transfer_resends_left == 0 || c->timeout_now_pending ||
        now_ms(c) < c->transfer_resend_not_before_ms) {
        return;
    }
    c->timeout_now.data = c;
    if (!tandem_site_transfer_resend(c->raft, c->current.member_id, &c->timeout_now,
                                     timeout_now_sent_cb)) {
        return;
    }
    c->timeout_now_pending = true;
    c->transfer_resends_left--;
    c->transfer_resend_not_before_ms = now_ms(c) + TANDEM_SITE_TRANSFER_RESEND_GAP_MS;
    c->transfer_resends++;
    controller_log(c, TANDEM_SITE_LOG_INFO,
                   "site controller: %s caught up during the transfer: TimeoutNow sent again%s",
                   c->current.member, "");
}

/* Starts the next raft_transfer once the target holds our last entry (or it had its time to
 * catch up): returns 0 when it started or still waits, else raft's error. */
static int transfer_try(struct tandem_site_controller *c)
{
    if (!tandem_site_transfer_ready(c->raft, c->current.member_id) &&
        now_ms(c) < c->transfer_catch_up_until_ms) {
        return 0;
    }
    int rv = transfer_start(c);
    /* A transfer libraft dropped (its callback while we still lead) waits again for a
     * caught-up target before the next attempt. */
    c->transfer_catch_up_until_ms = now_ms(c) + TANDEM_SITE_TRANSFER_CATCH_UP_MS;
    return rv;
}

/* Confirms the transfer by watching the leader; retries while we still lead. */
static void transfer_poll(struct tandem_site_controller *c)
{
    raft_id leader_id;
    const char *address;
    raft_leader(c->raft, &leader_id, &address);
    if (leader_id == c->current.member_id) {
        c->transfers_confirmed++;
        executor_move(c, TANDEM_SITE_IDLE);
        controller_log(c, TANDEM_SITE_LOG_INFO, "site controller: leadership moved to %s%s",
                       c->current.member, "");
        return;
    }
    bool leading = raft_state(c->raft) == RAFT_LEADER;
    if (!leading && leader_id != 0) {
        /* someone else leads now: their controller carries on */
        executor_move(c, TANDEM_SITE_IDLE);
        return;
    }
    if (now_ms(c) >= c->transfer_deadline_ms) {
        c->transfers_failed++;
        step_failed(c, "new leader not confirmed in time");
        return;
    }
    if (leading && c->transfer_cb_pending) {
        transfer_resend(c);
    }
    if (leading && !c->transfer_cb_pending &&
        c->transfer_attempts < TANDEM_SITE_TRANSFER_ATTEMPTS_MAX && transfer_try(c) != 0) {
        c->transfers_failed++;
        step_failed(c, "raft_transfer refused");
    }
}

static void decision_done(struct tandem_site_controller *c, int status)
{
    if (c->closing) {
        return;
    }
    if (status != 0) {
        step_failed(c, "its command was not applied");
        return;
    }
    c->actions++;
    int kind = c->current.kind;
    tandem_assert(c->busy == TANDEM_SITE_PROPOSING);
    if ((kind != TANDEM_SITE_ACTION_TRANSFER && kind != TANDEM_SITE_ACTION_ASSIGN) ||
        raft_state(c->raft) != RAFT_LEADER) {
        executor_move(c, TANDEM_SITE_IDLE);
        return;
    }
    if (kind == TANDEM_SITE_ACTION_TRANSFER) {
        c->transfer_attempts = 0;
        c->transfer_deadline_ms = now_ms(c) + 4u * c->election_timeout_ms;
        c->transfer_catch_up_until_ms = now_ms(c) + TANDEM_SITE_TRANSFER_CATCH_UP_MS;
        executor_move(c, TANDEM_SITE_TRANSFERRING);
        if (c->transfer_cb_pending || transfer_try(c) != 0) {
            c->transfers_failed++;
            step_failed(c, "raft_transfer refused");
        }
        return;
    }
    executor_move(c, TANDEM_SITE_ASSIGNING);
    c->change.data = c;
    int rv = c->change_cb_pending
                 ? RAFT_BUSY
                 : raft_assign(c->raft, &c->change, c->current.member_id,
                               tandem_raft_role_to_raft(c->current.to_role), assign_cb);
    if (rv == RAFT_CANTCHANGE && tandem_site_config_stuck(c->raft)) {
        char what[96];
        snprintf(what, sizeof what, "configuration entry %llu",
                 (unsigned long long)c->raft->configuration_uncommitted_index);
        if (tandem_site_config_repair(c->raft) == 0) {
            c->config_repairs++;
            controller_log(c, TANDEM_SITE_LOG_DEBUG,
                           "site controller: libraft still marked %s uncommitted although "
                           "committed; cleared the stale marker%s",
                           what, "");
        }
    }
    if (rv != 0) {
        c->assigns_failed++;
        step_failed(c, raft_strerror(rv));
        return;
    }
    c->change_cb_pending = true;
}

static void tick_cb(uv_timer_t *timer)
{
    struct tandem_site_controller *c = timer->data;
    if (c->busy == TANDEM_SITE_TRANSFERRING) {
        transfer_poll(c);
        return;
    }
    if (c->busy != TANDEM_SITE_IDLE || raft_state(c->raft) != RAFT_LEADER ||
        now_ms(c) < c->backoff_until_ms) {
        return;
    }
    if (c->gather(c, c->input) != 0) {
        return;
    }
    tandem_site_plan(c->input, &c->current);
    if (c->current.kind == TANDEM_SITE_ACTION_NONE) {
        return;
    }
    controller_log(c, tandem_site_action_log_level(&c->current), "site controller: %s (%s)",
                   c->current.action_name, c->current.reason);
    executor_move(c, TANDEM_SITE_PROPOSING);
    if (c->propose(c, &c->current, decision_done) != 0) {
        step_failed(c, "could not propose its command");
    }
}

int tandem_site_controller_init(struct tandem_site_controller *c, uv_loop_t *loop,
                                struct raft *raft, unsigned election_timeout_ms,
                                tandem_site_gather_fn gather, tandem_site_propose_fn propose,
                                tandem_site_log_fn log, void *data)
{
    tandem_assert(loop != NULL && raft != NULL && gather != NULL && propose != NULL);
    *c = (struct tandem_site_controller){.data = data,
                                         .raft = raft,
                                         .loop = loop,
                                         .election_timeout_ms = election_timeout_ms,
                                         .gather = gather,
                                         .propose = propose,
                                         .log = log};
    tandem_sm_init(&c->executor, "site controller", executor_states, EXECUTOR_STATES,
                   TANDEM_SITE_IDLE, executor_invariant, c);
    c->input = calloc(1, sizeof *c->input);
    if (c->input == NULL) {
        return tandem_error_set(c->last, TANDEM_NOMEM, "site controller: out of memory");
    }
    int rv = uv_timer_init(loop, &c->timer);
    if (rv != 0) {
        free(c->input);
        c->input = NULL;
        return tandem_error_from_uv(rv, c->last, "site controller: timer");
    }
    c->timer.data = c;
    /* uv_timer_start fails only for a closing handle or a NULL callback: neither can be here. */
    rv = uv_timer_start(&c->timer, tick_cb, TANDEM_SITE_TICK_MS, TANDEM_SITE_TICK_MS);
    tandem_assert(rv == 0);
    return 0;
}

static void timer_closed_cb(uv_handle_t *handle)
{
    struct tandem_site_controller *c = handle->data;
    tandem_sm_fini(&c->executor);
    free(c->input);
    c->input = NULL;
    if (c->close_cb != NULL) {
        c->close_cb(c);
    }
}

void tandem_site_controller_close(struct tandem_site_controller *c,
                                  void (*cb)(struct tandem_site_controller *c))
{
    c->closing = true;
    c->close_cb = cb;
    uv_close((uv_handle_t *)&c->timer, timer_closed_cb);
}
