/* Start-up quarantine policy: a pure function from the configuration and the raft transport's
 * contacts to "stay quarantined, waiting for ..." or "released because ...". */
#include "node/bcp/quarantine.h"

#include <stdio.h>
#include <string.h>

#include "storage/assert.h"

/* Appends to why (TANDEM_QUARANTINE_WHY_MAX bytes); a text too long is cut, never overrun. */
static void why_append(char *why, const char *text)
{
    size_t len = strlen(why);
    if (len + 1 < TANDEM_QUARANTINE_WHY_MAX) {
        snprintf(why + len, TANDEM_QUARANTINE_WHY_MAX - len, "%s", text);
    }
}

static bool site_seen_before(const struct tandem_quarantine_input *in, unsigned i)
{
    for (unsigned j = 0; j < i; j++) {
        if (strcmp(in->members[j].site, in->members[i].site) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether a node of site answered; self counts only as the site's sole member. Names the ones
 * that did not in missing. */
static bool site_reached(const struct tandem_quarantine_input *in, const char *site, char *missing,
                         size_t missing_size)
{
    unsigned others = 0;
    bool self_here = false, reached = false;
    missing[0] = '\0';
    for (unsigned i = 0; i < in->n_members; i++) {
        const struct tandem_quarantine_member *m = &in->members[i];
        if (strcmp(m->site, site) != 0) {
            continue;
        }
        if (m->self) {
            self_here = true;
            continue;
        }
        others++;
        reached |= m->reached;
        size_t len = strlen(missing);
        snprintf(missing + len, missing_size - len, "%s%s", len > 0 ? ", " : "", m->name);
    }
    return reached || (self_here && others == 0);
}

/* (b): every non-witness site reached. Fills why with the sites still waited for. */
static bool sites_reached(const struct tandem_quarantine_input *in, char *why)
{
    char missing[TANDEM_QUARANTINE_WHY_MAX], line[TANDEM_QUARANTINE_WHY_MAX];
    unsigned waiting = 0;
    why[0] = '\0';
    for (unsigned i = 0; i < in->n_members; i++) {
        const struct tandem_quarantine_member *m = &in->members[i];
        if (m->witness || site_seen_before(in, i) ||
            site_reached(in, m->site, missing, sizeof missing)) {
            continue;
        }
        snprintf(line, sizeof line, "%sa node of site %s: %s unreachable",
                 waiting == 0 ? "waiting for " : "; and for ", m->site, missing);
        why_append(why, line);
        waiting++;
    }
    if (waiting == 0) {
        snprintf(why, TANDEM_QUARANTINE_WHY_MAX,
                 "reached a node of every non-witness site of the configuration");
    } else {
        why_append(why, ", or a leader of this epoch, or tandemctl member release");
    }
    return waiting == 0;
}

enum tandem_quarantine_verdict tandem_quarantine_decide(const struct tandem_quarantine_input *in,
                                                        char *why)
{
    const struct tandem_quarantine_member *self = NULL;
    unsigned voters = 0;
    tandem_assert(in->n_members <= TANDEM_QUARANTINE_MEMBERS_MAX);
    if (in->operator_release) {
        snprintf(why, TANDEM_QUARANTINE_WHY_MAX, "released by an operator");
        return TANDEM_QUARANTINE_OPERATOR;
    }
    for (unsigned i = 0; i < in->n_members; i++) {
        voters += in->members[i].role == TANDEM_ROLE_VOTER;
        self = in->members[i].self ? &in->members[i] : self;
    }
    if (self == NULL || self->role != TANDEM_ROLE_VOTER) {
        snprintf(why, TANDEM_QUARANTINE_WHY_MAX, "not a voter: nothing to protect");
        return TANDEM_QUARANTINE_NOT_VOTER;
    }
    if (voters == 1) {
        snprintf(why, TANDEM_QUARANTINE_WHY_MAX, "the only voter: no majority to split");
        return TANDEM_QUARANTINE_ONLY_VOTER;
    }
    for (unsigned i = 0; i < in->n_members; i++) {
        const struct tandem_quarantine_member *m = &in->members[i];
        if (!m->self && m->leading) {
            snprintf(why, TANDEM_QUARANTINE_WHY_MAX, "reached %s, leader of this epoch", m->name);
            return TANDEM_QUARANTINE_LEADER;
        }
    }
    return sites_reached(in, why) ? TANDEM_QUARANTINE_SITES_REACHED : TANDEM_QUARANTINE_WAIT;
}
