/* Rows of the command table owned by the process-management and warehouse domain. */
#ifndef TANDEM_REPLICATION_DOMAIN_DOMAIN_COMMANDS_H
#define TANDEM_REPLICATION_DOMAIN_DOMAIN_COMMANDS_H

/* X(name, protobuf body case, apply function), appended to TANDEM_COMMANDS. The apply functions
 * live in replication/domain/ (jobs.c, boxes.c, trace.c); capacity planning's in
 * replication/rebalance/capacity.c. */
#define TANDEM_DOMAIN_COMMANDS(X)                                                                  \
    X(job_create, TANDEM__COMMAND__BODY_JOB_CREATE, tandem_job_apply_create)                       \
    X(job_action, TANDEM__COMMAND__BODY_JOB_ACTION, tandem_job_apply_action)                       \
    X(box_checkin, TANDEM__COMMAND__BODY_BOX_CHECKIN, tandem_box_apply_checkin)                    \
    X(box_action, TANDEM__COMMAND__BODY_BOX_ACTION, tandem_box_apply_action)                       \
    X(retention_purge, TANDEM__COMMAND__BODY_RETENTION_PURGE, tandem_trace_apply_purge)            \
    X(capacity_set, TANDEM__COMMAND__BODY_CAPACITY_SET, tandem_capacity_apply_set)                 \
    X(rebalance_apply, TANDEM__COMMAND__BODY_REBALANCE_APPLY, tandem_rebalance_apply)

#endif
