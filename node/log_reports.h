/* What the other members say of their raft logs: the leader refuses client writes while a
 * member's log holds its whole byte budget, as it does for its own (node/api/router.c).
 *
 * A follower cannot refuse the entries the leader sends, and its own snapshot of a large state
 * can last longer than the leader's (a slower disk, a busier CPU, its share of the stagger), so
 * without this its log outgrows the budget while the leader's stays within it (at 10M keys on
 * two cores by 23 MiB of entries). Its leader watch therefore reports, every
 * TANDEM_LEADER_WATCH_INTERVAL_MS while its log is full and once when it no longer is
 * (POST /v1/node/log-budget, node certificates only, each node for itself). A report counts for
 * TANDEM_LOG_REPORT_FRESH_MS: a member that stops reporting (it stopped, was cut off, or its
 * snapshot trimmed the log and its "no longer full" was lost) stops holding writes back within
 * that time. */
#ifndef TANDEM_NODE_LOG_REPORTS_H
#define TANDEM_NODE_LOG_REPORTS_H

#include <stdbool.h>
#include <stdint.h>

#include "consensus/member.h"

#define TANDEM_LOG_REPORTS_MAX     64u   /* members whose reports are kept at once */
#define TANDEM_LOG_REPORT_FRESH_MS 1500u /* three of a follower's looks at the leader */

struct tandem_log_report {
    char name[TANDEM_NAME_LEN_MAX + 1];
    uint64_t held_bytes;   /* the member's log by its budget's count */
    uint64_t budget_bytes; /* what its budget allows the entries */
    uint64_t until_ms;     /* the report counts before this (uv_now); 0: the slot is free */
};

struct tandem_log_reports {
    struct tandem_log_report slot[TANDEM_LOG_REPORTS_MAX];
    uint64_t received; /* reports of a full log */
};

/* Notes member name's report at now_ms: full keeps it (replacing the member's last one) until
 * now_ms + TANDEM_LOG_REPORT_FRESH_MS, not full forgets it. With every slot taken by a fresh
 * report, the one that ends soonest gives way. */
void tandem_log_reports_note(struct tandem_log_reports *rs, const char *name, uint64_t held_bytes,
                             uint64_t budget_bytes, bool full, uint64_t now_ms);

/* A fresh report of a full log at now_ms (the fullest, by its share of the budget), or NULL. */
const struct tandem_log_report *tandem_log_reports_full(const struct tandem_log_reports *rs,
                                                        uint64_t now_ms);

/* How many members' fresh reports say their log is full at now_ms. */
unsigned tandem_log_reports_count(const struct tandem_log_reports *rs, uint64_t now_ms);

#endif
