/* The scheduled mutual backup's pure decisions (issue 14 item 4), kept apart from the I/O so they
 * are tested alone: which node of a site takes its backup, which nodes of the other sites keep
 * it, which witnesses keep its manifest, when a site is due and which backups retention removes. */
#ifndef TANDEM_NODE_BCP_BACKUP_PLAN_H
#define TANDEM_NODE_BCP_BACKUP_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "consensus/member.h"

#define TANDEM_BACKUP_PLAN_MEMBERS_MAX 64
/* A taker must hold every entry but this many of the leader's log: "caught up". */
#define TANDEM_BACKUP_CATCHUP_ENTRIES 1000u

/* One member of the configuration as the leader sees it. */
struct tandem_backup_member {
    char name[TANDEM_NAME_LEN_MAX + 1];
    char site[TANDEM_SITE_LEN_MAX + 1];
    char api[TANDEM_URL_LEN_MAX + 1];
    bool witness;   /* of a witness site: keeps manifests only, never takes or holds */
    bool reachable; /* answered the leader's probes (raft and API) lately */
    bool leader;    /* the leader itself */
    bool voter;     /* a voter or standby (a spare is not caught up by design) */
    uint64_t match; /* the leader's match index for it (its last index for itself); 0: unknown */
};

struct tandem_backup_plan_input {
    struct tandem_backup_member members[TANDEM_BACKUP_PLAN_MEMBERS_MAX];
    unsigned n_members;
    uint64_t last_index; /* the leader's */
};

/* The member that takes site's backup: reachable, of site, not a witness, caught up (match
 * within TANDEM_BACKUP_CATCHUP_ENTRIES of last_index); a follower before the leader (the leader
 * serves the writes), then the highest match, then the name. -1 when none qualifies. */
int tandem_backup_plan_taker(const struct tandem_backup_plan_input *in, const char *site);

/* Indexes of the members that keep site's backup (reachable non-witness members of every other
 * site), at most max of them, in configuration order. Returns their count. */
unsigned tandem_backup_plan_holders(const struct tandem_backup_plan_input *in, const char *site,
                                    unsigned *out, unsigned max);
/* Indexes of the reachable witness members (they keep the manifest only). */
unsigned tandem_backup_plan_witnesses(const struct tandem_backup_plan_input *in, unsigned *out,
                                      unsigned max);

/* Whether a site whose newest backup was created at newest_ms (0: none) is due at now_ms. */
bool tandem_backup_plan_due(int64_t newest_ms, int64_t now_ms, uint64_t interval_ms);

/* The wait before try number attempt (1 = the first retry): retry_ms doubled per earlier retry,
 * at most cap_ms. */
uint64_t tandem_backup_plan_backoff(uint64_t retry_ms, unsigned attempt, uint64_t cap_ms);

/* One site's backups for retention, newest first (created_ms descending). */
struct tandem_backup_kept {
    const char *id; /* borrowed */
    int64_t created_ms;
};
/* Marks in retire[i] the backups retention removes: every one past the newest keep, and every
 * one older than keep_days at now_ms except the newest. Returns how many are marked. */
unsigned tandem_backup_plan_retire(const struct tandem_backup_kept *kept, unsigned n, unsigned keep,
                                   unsigned keep_days, int64_t now_ms, bool *retire);

#endif
