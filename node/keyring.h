/* The node's personal-data keyring loaded from key_file at start and on SIGHUP (issue 13). */
#ifndef TANDEM_NODE_KEYRING_H
#define TANDEM_NODE_KEYRING_H

#include <stdbool.h>

#include "replication/identity/pdata.h"

/* Reads path into ring (nothing when path is empty). At start a failure is returned (the node
 * refuses to start, one line logged); on SIGHUP it is logged and the old keys stay. Never logs a
 * key byte. */
int tandem_node_keyring_load(struct tandem_keyring *ring, const char *path, bool insecure,
                             bool at_start);

#endif
