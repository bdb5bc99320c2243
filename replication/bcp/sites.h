/* The replicated site table: each site's BCP state and epoch, the preferred leader site, the
 * members' home roles, the site controller's decision log and the drill history. */
#ifndef TANDEM_REPLICATION_BCP_SITES_H
#define TANDEM_REPLICATION_BCP_SITES_H

#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "consensus/member.h"
#include "replication/apply.h"
#include "storage/store.h"

#define TANDEM_SITES_MAX                 16 /* sites in the table; more are refused at register */
#define TANDEM_SITE_HOMES_MAX            64 /* member home records; more are refused */
#define TANDEM_SITE_DECISIONS_KEPT       256 /* newest decision records kept; older ones are pruned */
#define TANDEM_DRILLS_KEPT               100 /* newest drill reports kept */
#define TANDEM_FORCED_KEPT               16  /* newest forced failover histories kept */
#define TANDEM_SITE_REASON_LEN_MAX       255 /* reason text of a state change or decision */
#define TANDEM_SITE_BY_LEN_MAX           127 /* who decided: "operator", "auto:west-1", "drill:<id>" */
#define TANDEM_SITE_ACTION_LEN_MAX       31 /* decision action names */
#define TANDEM_DRILL_ID_LEN_MAX          63
#define TANDEM_DRILL_REPORT_BYTES_MAX    (256u * 1024u) /* one stored drill report (JSON) */
#define TANDEM_INCIDENTS_KEPT            100 /* newest incident reports kept (by decision order) */
#define TANDEM_INCIDENT_REPORT_BYTES_MAX (64u * 1024u) /* one stored incident report (JSON) */
#define TANDEM_INCIDENT_KIND_LEN_MAX     15
/* Sites with this label are witnesses unless registered otherwise: they hold no work. */
#define TANDEM_SITE_WITNESS_NAME "witness"

/* BCP states, numbered as the protobuf SiteState. */
enum tandem_site_state {
    TANDEM_SITE_ACTIVE = 0,
    TANDEM_SITE_INVOKED = 1,
    TANDEM_SITE_RECOVERING = 2,
    TANDEM_SITE_STATE_COUNT
};

/* What may move a site between states, numbered as the protobuf SiteUpdate.Action. */
enum tandem_site_change {
    TANDEM_SITE_REGISTER = 0,
    TANDEM_SITE_INVOKE = 1,
    TANDEM_SITE_REVOKE = 2,
    TANDEM_SITE_RECOVERED = 3,
    TANDEM_SITE_PREFER = 4,
    TANDEM_SITE_CHANGE_COUNT
};

struct tandem_site {
    char name[TANDEM_SITE_LEN_MAX + 1];
    int state; /* enum tandem_site_state */
    uint64_t epoch;
    int64_t since_ms;
    char reason[TANDEM_SITE_REASON_LEN_MAX + 1];
    char by[TANDEM_SITE_BY_LEN_MAX + 1];
    unsigned capacity;
    bool witness;
    bool forced;
};

struct tandem_member_home {
    char name[TANDEM_NAME_LEN_MAX + 1];
    char site[TANDEM_SITE_LEN_MAX + 1];
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    int role;  /* enum tandem_role */
    bool lost; /* left behind by a forced failover (until rejoined or removed) */
};

struct tandem_site_table {
    struct tandem_site sites[TANDEM_SITES_MAX];
    unsigned n_sites;
    struct tandem_member_home homes[TANDEM_SITE_HOMES_MAX];
    unsigned n_homes;
    char preferred_site[TANDEM_SITE_LEN_MAX + 1];
    bool preferred_set; /* a preference was recorded once; the config no longer seeds it */
    uint64_t decisions_next;
    uint64_t drills_next;
};

const char *tandem_site_state_name(int state);
/* The state a change leads to from `from`, or -1 when the table of allowed moves has no such
 * row (REGISTER and PREFER never move a site: always -1). */
int tandem_site_next_state(int from, int change);
/* Every name valid, no duplicates, states in range, homes' sites known. */
bool tandem_site_table_ok(const struct tandem_site_table *t);

/* The apply ops' site_invoked (see replication/apply.h): whether BCP is invoked for site. */
int tandem_sites_invoked(const struct tandem_apply_ctx *ctx, const char *site, bool *invoked);

/* Reads the whole table visible in txn. Returns 0, or an LMDB error with store->errmsg. */
int tandem_sites_load(struct tandem_store *store, MDB_txn *txn, struct tandem_site_table *out);
const struct tandem_site *tandem_site_table_find(const struct tandem_site_table *t,
                                                 const char *name);
const struct tandem_member_home *tandem_site_table_home(const struct tandem_site_table *t,
                                                        const char *name);

/* {"name","state","epoch","since","reason","by","capacity","witness","forced"} */
json_t *tandem_site_json(const struct tandem_site *site);
/* The newest `limit` decisions, oldest first; NULL with store->errmsg on an LMDB error. */
json_t *tandem_sites_decisions_json(struct tandem_store *store, MDB_txn *txn, unsigned limit);
/* The newest `limit` drill reports, newest first: summaries, or the full reports when full. */
json_t *tandem_sites_drills_json(struct tandem_store *store, MDB_txn *txn, unsigned limit,
                                 bool full);
/* The newest `limit` incident reports, newest first: summaries, or the full reports when full.
 * NULL with store->errmsg on an LMDB error. */
json_t *tandem_sites_incidents_json(struct tandem_store *store, MDB_txn *txn, unsigned limit,
                                    bool full);
/* Decisions with sequence above after, oldest first, at most limit of them: visit(arg, record)
 * for each (it must not keep record). Returns 0 or an LMDB error (store->errmsg). */
int tandem_sites_decisions_after(struct tandem_store *store, MDB_txn *txn, uint64_t after,
                                 unsigned limit,
                                 void (*visit)(void *arg, const Tandem__SiteDecisionRecord *d),
                                 void *arg);

/* The forced failovers' histories, newest first: {"epoch","seed","at","index","first_index",
 * "last_index","last_term","terms":[[term, first index], ...]}; NULL with store->errmsg. */
json_t *tandem_sites_forced_json(struct tandem_store *store, MDB_txn *txn);

/* BCP's rows of the command table, applied in sites.c. */
#define TANDEM_SITE_COMMANDS(X)                                                                    \
    X(site_update, TANDEM__COMMAND__BODY_SITE_UPDATE, tandem_sites_apply_update)                   \
    X(site_decision, TANDEM__COMMAND__BODY_SITE_DECISION, tandem_sites_apply_decision)             \
    X(member_home_set, TANDEM__COMMAND__BODY_MEMBER_HOME_SET, tandem_sites_apply_member_home)      \
    X(drill_store, TANDEM__COMMAND__BODY_DRILL_STORE, tandem_sites_apply_drill)
/* The incident reports' row, applied in sites.c too. */
#define TANDEM_INCIDENT_COMMANDS(X)                                                                \
    X(incident_store, TANDEM__COMMAND__BODY_INCIDENT_STORE, tandem_sites_apply_incident)

#endif
