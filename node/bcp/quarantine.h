/* Start-up quarantine policy: whether a (re)started node may take part in raft yet, as a pure
 * function of its configuration and of what its raft transport has heard since it started. */
#ifndef TANDEM_NODE_BCP_QUARANTINE_H
#define TANDEM_NODE_BCP_QUARANTINE_H

#include <stdbool.h>
#include <stddef.h>

#include "consensus/member.h"

#define TANDEM_QUARANTINE_MEMBERS_MAX 64  /* members of the configuration judged */
#define TANDEM_QUARANTINE_WHY_MAX     512 /* the verdict's text, NUL included */

/* One member of the configuration as this node sees it. */
struct tandem_quarantine_member {
    char name[TANDEM_NAME_LEN_MAX + 1];
    char site[TANDEM_SITE_LEN_MAX + 1];
    int role;     /* enum tandem_role */
    bool self;    /* this node */
    bool witness; /* its site is a witness site (site table flag, else the name "witness") */
    bool reached; /* it has answered at our cluster and epoch for a while (the caller decides how
                     long: long enough for a newer epoch it might know of to reach us) */
    bool leading; /* a handshake at our cluster and epoch in which it said it leads completed
                     since this node started; one is enough: a leader of our epoch exists */
};

struct tandem_quarantine_input {
    struct tandem_quarantine_member members[TANDEM_QUARANTINE_MEMBERS_MAX];
    unsigned n_members;
    bool operator_release; /* tandemctl member release was run at this node */
};

/* Why a node stays or leaves; WAIT keeps it quarantined. */
enum tandem_quarantine_verdict {
    TANDEM_QUARANTINE_WAIT = 0,
    TANDEM_QUARANTINE_OPERATOR,      /* (d) an operator released it */
    TANDEM_QUARANTINE_NOT_VOTER,     /* (c) it has no vote to give or use */
    TANDEM_QUARANTINE_ONLY_VOTER,    /* (c) it is the only voter: no majority to split */
    TANDEM_QUARANTINE_LEADER,        /* (a) a leader of its epoch reached it or answered it */
    TANDEM_QUARANTINE_SITES_REACHED, /* (b) a node of every non-witness site answered */
};

/* Decides, and says why in why (TANDEM_QUARANTINE_WHY_MAX bytes): for WAIT, what is waited for
 * ("waiting for a node of site east: east-1, east-2 unreachable"); otherwise what released it.
 *
 * Sites: every non-witness site with a member of any role must have been reached through one
 * of its nodes. This node's own site counts as reached through itself only when it is the sole
 * member there: a node whose site-mates all stay silent may be the one that missed a forced
 * failover run at that site, and only another node can tell it of the newer epoch. */
enum tandem_quarantine_verdict tandem_quarantine_decide(const struct tandem_quarantine_input *in,
                                                        char *why);

#endif
