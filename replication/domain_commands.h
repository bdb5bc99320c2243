/* Rows of the command table owned by the process-management and warehouse domain. */
#ifndef TANDEM_REPLICATION_DOMAIN_COMMANDS_H
#define TANDEM_REPLICATION_DOMAIN_COMMANDS_H

/* X(name, protobuf body case, apply function), appended to TANDEM_COMMANDS. */
#define TANDEM_DOMAIN_COMMANDS(X)

#endif
