/* The audit chain's latest verdict and its series (node/audit_check.h). */
#include "node/audit_check.h"

#include <inttypes.h>

#include "node/metrics.h"
#include "replication/domain/audit.h"

void tandem_audit_check_record(struct tandem_audit_check *check,
                               const struct tandem_audit_verdict *verdict, int64_t now_ms,
                               uint64_t duration_ns)
{
    check->known = true;
    check->ok = verdict->ok;
    check->error = 0;
    check->records = verdict->records;
    check->broken_at = verdict->ok ? 0 : verdict->broken_at;
    check->verified_at_ms = now_ms;
    check->duration_ns = duration_ns;
    check->walks++;
}

void tandem_audit_check_metrics_write(const struct tandem_audit_check *check, int64_t now_ms,
                                      FILE *out)
{
    tandem_metrics_family(out, "tandem_audit_chain_ok", "gauge",
                          "1 when the last walk of the audit chain found every link intact, 0 "
                          "when it found a broken one; absent until the first walk ends.");
    if (check->known) {
        fprintf(out, "tandem_audit_chain_ok %d\n", check->ok ? 1 : 0);
    }
    const struct tandem_metrics_scalar counts[] = {
        {"tandem_audit_chain_broken_at", "gauge",
         "Sequence number of the first broken audit record (0: none).", check->broken_at},
        {"tandem_audit_chain_records", "gauge", "Audit records the last walk checked.",
         check->records},
        {"tandem_audit_chain_walk_failures_total", "counter",
         "Walks of the audit chain that could not read the store.", check->failures},
    };
    tandem_metrics_scalars_write(out, counts, sizeof counts / sizeof counts[0]);
    tandem_metrics_family(out, "tandem_audit_chain_verified_age_seconds", "gauge",
                          "Seconds since the last finished walk of the audit chain (-1: none "
                          "since start).");
    fprintf(out, "tandem_audit_chain_verified_age_seconds %.3f\n",
            check->verified_at_ms == 0
                ? -1.0
                : (double)(now_ms > check->verified_at_ms ? now_ms - check->verified_at_ms : 0) /
                      1000.0);
    tandem_metrics_family(out, "tandem_audit_chain_verify_duration_seconds", "gauge",
                          "How long the last walk of the audit chain took (on the thread pool).");
    fprintf(out, "tandem_audit_chain_verify_duration_seconds %.6f\n",
            (double)check->duration_ns / 1e9);
}
