/* The members' reports of a full raft log, kept by the leader (node/log_reports.h). */
#include "node/log_reports.h"

#include <stdio.h>
#include <string.h>

#include "storage/assert.h"

static bool fresh(const struct tandem_log_report *r, uint64_t now_ms)
{
    return r->until_ms != 0 && now_ms < r->until_ms;
}

void tandem_log_reports_note(struct tandem_log_reports *rs, const char *name, uint64_t held_bytes,
                             uint64_t budget_bytes, bool full, uint64_t now_ms)
{
    tandem_assert(name != NULL && strlen(name) <= TANDEM_NAME_LEN_MAX);
    struct tandem_log_report *mine = NULL, *spare = NULL;
    for (unsigned i = 0; i < TANDEM_LOG_REPORTS_MAX; i++) {
        struct tandem_log_report *r = &rs->slot[i];
        if (r->until_ms != 0 && strcmp(r->name, name) == 0) {
            mine = r;
            break;
        }
        if (spare == NULL || (fresh(spare, now_ms) && r->until_ms < spare->until_ms)) {
            spare = r; /* a free or stale slot, else the fresh one that ends soonest */
        }
    }
    if (!full) {
        if (mine != NULL) {
            memset(mine, 0, sizeof *mine);
        }
        return;
    }
    struct tandem_log_report *r = mine != NULL ? mine : spare;
    tandem_assert(r != NULL);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->held_bytes = held_bytes;
    r->budget_bytes = budget_bytes;
    r->until_ms = now_ms + TANDEM_LOG_REPORT_FRESH_MS;
    rs->received++;
}

const struct tandem_log_report *tandem_log_reports_full(const struct tandem_log_reports *rs,
                                                        uint64_t now_ms)
{
    const struct tandem_log_report *fullest = NULL;
    for (unsigned i = 0; i < TANDEM_LOG_REPORTS_MAX; i++) {
        const struct tandem_log_report *r = &rs->slot[i];
        if (!fresh(r, now_ms)) {
            continue;
        }
        /* held / budget compared without division: held_a * budget_b > held_b * budget_a, in
         * MiB so that the products stay far from overflowing. */
        if (fullest == NULL || (r->held_bytes >> 20) * ((fullest->budget_bytes >> 20) + 1) >
                                   (fullest->held_bytes >> 20) * ((r->budget_bytes >> 20) + 1)) {
            fullest = r;
        }
    }
    return fullest;
}

unsigned tandem_log_reports_count(const struct tandem_log_reports *rs, uint64_t now_ms)
{
    unsigned n = 0;
    for (unsigned i = 0; i < TANDEM_LOG_REPORTS_MAX; i++) {
        n += fresh(&rs->slot[i], now_ms) ? 1u : 0u;
    }
    return n;
}
