/* The scheduled mutual backup's pure decisions: taker, holders, witnesses, due, backoff and
 * retention (node/bcp/backup_plan.h). */
#include "node/bcp/backup_plan.h"

#include <string.h>

#include "storage/assert.h"

#define MS_PER_DAY 86400000LL

static bool caught_up(const struct tandem_backup_plan_input *in,
                      const struct tandem_backup_member *m)
{
    return m->match != 0 && m->match + TANDEM_BACKUP_CATCHUP_ENTRIES >= in->last_index;
}

/* Whether a is the better taker than b. */
static bool taker_better(const struct tandem_backup_member *a, const struct tandem_backup_member *b)
{
    if (a->leader != b->leader) {
        return !a->leader;
    }
    if (a->match != b->match) {
        return a->match > b->match;
    }
    return strcmp(a->name, b->name) < 0;
}

int tandem_backup_plan_taker(const struct tandem_backup_plan_input *in, const char *site)
{
    int best = -1;
    tandem_assert(in->n_members <= TANDEM_BACKUP_PLAN_MEMBERS_MAX);
    for (unsigned i = 0; i < in->n_members; i++) {
        const struct tandem_backup_member *m = &in->members[i];
        if (strcmp(m->site, site) != 0 || m->witness || !m->reachable || !m->voter ||
            !caught_up(in, m)) {
            continue;
        }
        if (best < 0 || taker_better(m, &in->members[best])) {
            best = (int)i;
        }
    }
    return best;
}

unsigned tandem_backup_plan_holders(const struct tandem_backup_plan_input *in, const char *site,
                                    unsigned *out, unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < in->n_members && n < max; i++) {
        const struct tandem_backup_member *m = &in->members[i];
        if (strcmp(m->site, site) != 0 && !m->witness && m->reachable) {
            out[n++] = i;
        }
    }
    return n;
}

unsigned tandem_backup_plan_witnesses(const struct tandem_backup_plan_input *in, unsigned *out,
                                      unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < in->n_members && n < max; i++) {
        if (in->members[i].witness && in->members[i].reachable) {
            out[n++] = i;
        }
    }
    return n;
}

bool tandem_backup_plan_due(int64_t newest_ms, int64_t now_ms, uint64_t interval_ms)
{
    if (interval_ms == 0) {
        return false;
    }
    /* A clock behind the newest backup (another node's clock ahead) waits, never floods. */
    return newest_ms <= 0 || (now_ms > newest_ms && (uint64_t)(now_ms - newest_ms) >= interval_ms);
}

uint64_t tandem_backup_plan_backoff(uint64_t retry_ms, unsigned attempt, uint64_t cap_ms)
{
    uint64_t wait = retry_ms;
    for (unsigned i = 1; i < attempt && wait < cap_ms; i++) {
        wait *= 2;
    }
    return wait < cap_ms || cap_ms == 0 ? wait : cap_ms;
}

unsigned tandem_backup_plan_retire(const struct tandem_backup_kept *kept, unsigned n, unsigned keep,
                                   unsigned keep_days, int64_t now_ms, bool *retire)
{
    unsigned marked = 0;
    tandem_assert(keep >= 1);
    for (unsigned i = 0; i < n; i++) {
        tandem_assert(i == 0 || kept[i - 1].created_ms >= kept[i].created_ms);
        bool old = now_ms - kept[i].created_ms > (int64_t)keep_days * MS_PER_DAY;
        retire[i] = i >= keep || (i > 0 && old);
        marked += retire[i] ? 1 : 0;
    }
    return marked;
}
