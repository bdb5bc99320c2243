/* The site controller: on the leader only, reconciles raft roles and leadership with the site
 * table, one step at a time, each step recorded as a command before it is taken. The planner is
 * a pure function (the simulation tests drive it on raft_fixture); the runtime executes its
 * actions with raft_assign and confirmed raft_transfer. */
#ifndef TANDEM_CONSENSUS_SITE_CONTROLLER_H
#define TANDEM_CONSENSUS_SITE_CONTROLLER_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "consensus/member.h"
#include "storage/error.h"
#include "storage/sm.h"

#define TANDEM_SITE_PLAN_SITES_MAX   16  /* sites the planner looks at */
#define TANDEM_SITE_PLAN_MEMBERS_MAX 64  /* members the planner looks at */
#define TANDEM_SITE_TICK_MS          100 /* how often the leader re-plans */
/* A member is caught up (may be promoted, may receive leadership) within this many entries of
 * the leader's last index. */
#define TANDEM_SITE_CATCH_UP_ENTRIES_MAX  64
#define TANDEM_SITE_TRANSFER_ATTEMPTS_MAX 3 /* raft_transfer calls per confirmed transfer */
/* While a transfer waits for its target to hold the leader's last entry, the executor looks
 * this often, and after this long it calls raft_transfer anyway (see tandem_site_transfer_ready).
 */
#define TANDEM_SITE_TRANSFER_POLL_MS     5
#define TANDEM_SITE_TRANSFER_CATCH_UP_MS 500
/* A raft_transfer started before its target held the last entry has its TimeoutNow sent again
 * (tandem_site_transfer_resend) at most this many times, this far apart. */
#define TANDEM_SITE_TRANSFER_RESENDS_MAX   2
#define TANDEM_SITE_TRANSFER_RESEND_GAP_MS 50
#define TANDEM_SITE_BACKOFF_MS             2000 /* pause after a failed step before re-planning */
#define TANDEM_SITE_REASON_TEXT_MAX        160

/* Site states as in replication/bcp/sites.h (the planner must not depend on replication/). */
enum { TANDEM_PLAN_SITE_ACTIVE = 0, TANDEM_PLAN_SITE_INVOKED = 1, TANDEM_PLAN_SITE_RECOVERING = 2 };

enum tandem_site_action_kind {
    TANDEM_SITE_ACTION_NONE = 0,
    TANDEM_SITE_ACTION_REGISTER,     /* command: register `site` (witness flag) */
    TANDEM_SITE_ACTION_RECORD_HOMES, /* command: record current roles of members without a home */
    TANDEM_SITE_ACTION_PREFER,       /* command: seed the preferred site from the config */
    TANDEM_SITE_ACTION_INVOKE,       /* command: invoke `site` (automatic, or a forced note) */
    TANDEM_SITE_ACTION_RECOVERED,    /* command: `site` recovering -> active */
    TANDEM_SITE_ACTION_REPORT,       /* command: a decision record only */
    TANDEM_SITE_ACTION_TRANSFER,     /* decision record, then a confirmed raft_transfer */
    TANDEM_SITE_ACTION_ASSIGN,       /* decision record, then raft_assign */
    TANDEM_SITE_ACTION_REVOKE,       /* command: revoke invoked `site` (forced failover) */
};

struct tandem_site_plan_site {
    char name[TANDEM_SITE_LEN_MAX + 1];
    int state; /* TANDEM_PLAN_SITE_* */
    bool witness;
    bool down_reported; /* a REPORT about this site being unreachable was already written */
};

struct tandem_site_plan_member {
    char name[TANDEM_NAME_LEN_MAX + 1];
    char site[TANDEM_SITE_LEN_MAX + 1];
    uint64_t id;
    int role;       /* enum tandem_role: the current role in the configuration */
    int home_role;  /* enum tandem_role, or -1 when no home record exists */
    bool reachable; /* answered within site_down_after_ms (self always) */
    bool caught_up; /* within TANDEM_SITE_CATCH_UP_ENTRIES_MAX of the leader (self always) */
    /* It lost entries it had acknowledged to this leader (consensus/raft_shield.h, 8): the
     * leader's progress for it is stale and libraft sends it no more entries. Never caught up. */
    bool lost_log;
    bool self; /* the leader running the planner */
};

struct tandem_site_plan_input {
    struct tandem_site_plan_site sites[TANDEM_SITE_PLAN_SITES_MAX]; /* registered sites */
    unsigned n_sites;
    struct tandem_site_plan_member members[TANDEM_SITE_PLAN_MEMBERS_MAX]; /* the configuration */
    unsigned n_members;
    char preferred_site[TANDEM_SITE_LEN_MAX + 1];        /* from the table; "" = none */
    char config_preferred_site[TANDEM_SITE_LEN_MAX + 1]; /* seeds the preference once */
    bool preferred_set; /* the table already recorded a preference (maybe cleared since) */
    char forced_site[TANDEM_SITE_LEN_MAX + 1]; /* forced failover note to record; "" = none */
    bool auto_bcp;
};

struct tandem_site_action {
    int kind; /* enum tandem_site_action_kind */
    char site[TANDEM_SITE_LEN_MAX + 1];
    char member[TANDEM_NAME_LEN_MAX + 1];
    uint64_t member_id;
    int from_role, to_role; /* ASSIGN */
    bool witness;           /* REGISTER */
    bool force;             /* INVOKE */
    char action_name[24];   /* the decision's action, e.g. "demote", "transfer" */
    bool warn;              /* logged as a warning whatever its kind */
    char reason[TANDEM_SITE_REASON_TEXT_MAX];
};

/* Chooses the next single step, or TANDEM_SITE_ACTION_NONE when everything matches. Order:
 * register sites, record home roles, seed the preference, record a forced invoke (revoking
 * first the invoked site whose members survived when no other site serves), automatic
 * invoke, report an unreachable witness, move leadership off an invoked or witness site, move
 * leadership away from a leader whose view of a member is stale (lost_log), demotions,
 * promotions, finish recoveries, move leadership to the preferred site. */
void tandem_site_plan(const struct tandem_site_plan_input *in, struct tandem_site_action *out);

/* libraft 0.22.1 can leave a server with configuration_uncommitted_index pointing at an entry it
 * has already applied. On a leader every raft_assign then fails with RAFT_CANTCHANGE for good; on
 * any server the committed configuration (which snapshots record) stays an old one. The cause is
 * a follower marking a configuration entry with the index of its AppendEntries' first new entry
 * (consensus/raft_shield.h, shield 4, which is not installed: it stalls followers). The repair
 * below clears it, writing raft's fields only in exactly that state. True in that state, on any
 * server. */
bool tandem_site_config_stuck(struct raft *r);
/* Clears that stale marker the way raft does when it applies the entry (the current
 * configuration becomes the committed one). Only when tandem_site_config_stuck. Returns 0, or
 * RAFT_NOMEM. */
int tandem_site_config_repair(struct raft *r);

/* True when r leads and server id has acknowledged r's last entry. libraft 0.22.1 sends the
 * TimeoutNow of a raft_transfer at once only to such a target; to any other it sends it on the
 * target's next AppendEntries result whether or not that result reaches the last index
 * (replicationUpdate compares the match index with the index the result reported, not with the
 * leader's last index), so a lagging target gets a TimeoutNow for an index it does not hold,
 * ignores it, and the transfer holds every write until libraft gives up after an election
 * timeout. Call raft_transfer when this is true. */
bool tandem_site_transfer_ready(struct raft *r, raft_id id);

/* When the wait for tandem_site_transfer_ready runs out (a target that never holds the last
 * entry under steady load), raft_transfer goes ahead and its one TimeoutNow is ignored as above.
 * But raft_transfer refuses new writes, so the target catches up within a round trip, and
 * libraft never sends TimeoutNow again: it does so only on an AppendEntries result that
 * advances the target's match index, and with writes held none does. Every write then waits
 * until libraft aborts the transfer an election timeout later. This sends the TimeoutNow
 * libraft would send (r's term, last index and term; r leads and has appended in its term since
 * the transfer's decision record), through r's own raft_io, only while r leads, transfers to id,
 * has sent its own TimeoutNow and id holds r's last entry. A TimeoutNow only makes a voter stand
 * for election, so a second one is harmless: a target that already stood is a candidate, or leads
 * at a higher term, and ignores it. Returns true when it sent it (cb then runs once, req must
 * stay valid until then), false when the conditions do not hold or the send failed. */
bool tandem_site_transfer_resend(struct raft *r, raft_id id, struct raft_io_send *req,
                                 raft_io_send_cb cb);

/* Desired role of one member given the input (exposed for tests and status). */
int tandem_site_desired_role(const struct tandem_site_plan_input *in,
                             const struct tandem_site_plan_member *m);

/* ---- runtime ---- */

struct tandem_site_controller;
typedef void (*tandem_site_done_fn)(struct tandem_site_controller *c, int status);
/* Fills in for the current leader state. Returns 0, or -1 to skip this tick. */
typedef int (*tandem_site_gather_fn)(struct tandem_site_controller *c,
                                     struct tandem_site_plan_input *in);
/* Proposes the command of a command action, or the decision record of a TRANSFER/ASSIGN/REPORT.
 * Returns 0 and later calls done(c, status) exactly once (status 0: applied), or non-zero and
 * never calls done. */
typedef int (*tandem_site_propose_fn)(struct tandem_site_controller *c,
                                      const struct tandem_site_action *a, tandem_site_done_fn done);
/* How much a controller message matters; the node maps it onto its log levels. Failovers
 * (invoke, forced or automatic), a site reported down and failed steps warn; routine steps
 * inform; routine repairs are debug. */
enum tandem_site_log_level { TANDEM_SITE_LOG_DEBUG, TANDEM_SITE_LOG_INFO, TANDEM_SITE_LOG_WARN };
typedef void (*tandem_site_log_fn)(struct tandem_site_controller *c, int level, const char *msg);
/* The level the controller logs action a at when it starts it (enum tandem_site_log_level). */
int tandem_site_action_log_level(const struct tandem_site_action *a);

enum tandem_site_busy {
    TANDEM_SITE_IDLE = 0,
    TANDEM_SITE_PROPOSING,
    TANDEM_SITE_ASSIGNING,
    TANDEM_SITE_TRANSFERRING,
};

struct tandem_site_controller {
    void *data;        /* free for the owner */
    struct raft *raft; /* borrowed */
    uv_loop_t *loop;   /* borrowed */
    uv_timer_t timer;
    struct raft_change change;     /* the one raft_assign in flight */
    struct raft_transfer transfer; /* the one raft_transfer in flight */
    int busy;                      /* enum tandem_site_busy: executor's state, for readers */
    struct tandem_sm executor;     /* the checked moves between tandem_site_busy states */
    struct tandem_site_action current;
    struct tandem_site_plan_input *input; /* owned scratch for gather */
    unsigned election_timeout_ms;
    uint64_t transfer_deadline_ms;
    uint64_t transfer_catch_up_until_ms; /* raft_transfer waits for a caught-up target till then */
    unsigned transfer_attempts;
    unsigned transfer_resends_left; /* for the raft_transfer in flight */
    uint64_t transfer_resend_not_before_ms;
    struct raft_io_send timeout_now; /* a resent TimeoutNow; raft_io's until its callback */
    bool timeout_now_pending;
    bool transfer_cb_pending; /* c->transfer is raft's until its callback */
    bool change_cb_pending;   /* c->change likewise */
    uint64_t backoff_until_ms;
    uint64_t config_repairs; /* tandem_site_config_repair calls */
    tandem_site_gather_fn gather;
    tandem_site_propose_fn propose;
    tandem_site_log_fn log;
    uint64_t actions, transfers_confirmed, transfers_failed, assigns_ok, assigns_failed;
    /* raft_transfer calls made before the target held the last entry, and TimeoutNows resent */
    uint64_t transfers_early, transfer_resends;
    char last[TANDEM_ERRMSG_SIZE]; /* the last step and its outcome, for status */
    bool closing;
    void (*close_cb)(struct tandem_site_controller *c);
};

/* Returns 0, or a tandem error code (TANDEM_NOMEM) with c->last saying why. The timer starts
 * at once; steps run only on the leader. */
int tandem_site_controller_init(struct tandem_site_controller *c, uv_loop_t *loop,
                                struct raft *raft, unsigned election_timeout_ms,
                                tandem_site_gather_fn gather, tandem_site_propose_fn propose,
                                tandem_site_log_fn log, void *data);
/* cb runs from the loop once the timer is closed; raft callbacks still pending later are
 * ignored (the struct must stay valid until raft is closed too). */
void tandem_site_controller_close(struct tandem_site_controller *c,
                                  void (*cb)(struct tandem_site_controller *c));

#endif
