/* The translation of libraft's return codes into tandem's error table, at the point a raft_*
 * call's result enters our code. */
#ifndef TANDEM_CONSENSUS_RAFT_ERROR_H
#define TANDEM_CONSENSUS_RAFT_ERROR_H

#include "storage/error.h"

/* Writes "what: <raft_strerror(raft_rc)>[: raft_errmsg]" into errmsg (TANDEM_ERRMSG_SIZE bytes)
 * and returns the tandem code: RAFT_NOTLEADER -> TANDEM_NOTLEADER, RAFT_LEADERSHIPLOST ->
 * TANDEM_LEADERSHIP_LOST, RAFT_BUSY and RAFT_TOOMANY -> TANDEM_BUSY, RAFT_NOMEM -> TANDEM_NOMEM,
 * RAFT_SHUTDOWN -> TANDEM_SHUTDOWN, RAFT_CORRUPT -> TANDEM_CORRUPT, anything else TANDEM_RAFT.
 * raft_rc 0 returns TANDEM_OK and leaves errmsg alone. raft_errmsg is the instance's detail
 * (raft_errmsg(r), or a transport's errmsg); NULL or "" adds nothing. */
int tandem_error_from_raft(int raft_rc, const char *raft_errmsg, char *errmsg, const char *what);

#endif
