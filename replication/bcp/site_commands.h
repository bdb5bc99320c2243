/* Rows of the command table owned by the site table and BCP (replication/bcp/sites.c). */
#ifndef TANDEM_REPLICATION_BCP_SITE_COMMANDS_H
#define TANDEM_REPLICATION_BCP_SITE_COMMANDS_H

/* X(name, protobuf body case, apply function), appended to TANDEM_COMMANDS. */
#define TANDEM_SITE_COMMANDS(X)                                                                    \
    X(site_update, TANDEM__COMMAND__BODY_SITE_UPDATE, tandem_sites_apply_update)                   \
    X(site_decision, TANDEM__COMMAND__BODY_SITE_DECISION, tandem_sites_apply_decision)             \
    X(member_home_set, TANDEM__COMMAND__BODY_MEMBER_HOME_SET, tandem_sites_apply_member_home)      \
    X(drill_store, TANDEM__COMMAND__BODY_DRILL_STORE, tandem_sites_apply_drill)

#endif
