/* Raft membership changes driven to their end: add (then the role assignment, retried while raft
 * is busy with another change), remove, and a leadership transfer confirmed by watching who
 * leads, because libraft may ignore a transfer silently. */
#ifndef TANDEM_CONSENSUS_MEMBERSHIP_H
#define TANDEM_CONSENSUS_MEMBERSHIP_H

#include <uv.h>

#include "consensus/member.h"
#include "consensus/raft_node.h"

/* One change at a time in raft: an assignment that meets another change (the site controller's)
 * is retried every RETRY_MS, at most ATTEMPTS_MAX times. */
#define TANDEM_MEMBERSHIP_ASSIGN_RETRY_MS       50
#define TANDEM_MEMBERSHIP_ASSIGN_ATTEMPTS_MAX   40
#define TANDEM_MEMBERSHIP_TRANSFER_ATTEMPTS_MAX 3  /* raft_transfer calls while still leader */
#define TANDEM_MEMBERSHIP_TRANSFER_POLL_MS      50 /* how often the leader is looked at */

/* Runs once when the change is over. status is TANDEM_OK, or a tandem code with errmsg saying
 * what failed: TANDEM_NOTLEADER (raft said so), TANDEM_RAFT (raft refused or failed the change),
 * TANDEM_TIMEOUT (the transfer's new leader was not seen in time). member is the member the
 * change was about (valid during the callback). */
typedef void (*tandem_membership_cb)(void *data, int status, const char *errmsg,
                                     const struct tandem_member *member);

/* Adds m (an unused name and raft address) as a spare, then assigns m->role. A spare of the
 * same name, site and addresses (an add that stopped after its first step, leadership lost) is
 * assigned m->role: running the add again finishes it. Returns 0 (cb runs later), or with errmsg
 * filled and cb never run: TANDEM_EXISTS (the name or the raft address is taken), TANDEM_NOMEM,
 * TANDEM_NOTLEADER, TANDEM_RAFT. */
int tandem_membership_add(struct tandem_raft *n, uv_loop_t *loop, const struct tandem_member *m,
                          char *errmsg, tandem_membership_cb cb, void *data);

/* Removes the member called name. Returns 0 (cb runs later), or with errmsg filled and cb never
 * run: TANDEM_NOTFOUND, TANDEM_NOMEM, TANDEM_NOTLEADER, TANDEM_RAFT. */
int tandem_membership_remove(struct tandem_raft *n, const char *name, char *errmsg,
                             tandem_membership_cb cb, void *data);

/* Moves leadership to the voter called name and confirms it within confirm_ms (raft_transfer is
 * sent again while this node still leads). Returns 0 (cb runs later), or with errmsg filled and
 * cb never run: TANDEM_NOTFOUND, TANDEM_STATE (not a voter), TANDEM_NOMEM, or libuv's failure. */
int tandem_membership_transfer(struct tandem_raft *n, uv_loop_t *loop, const char *name,
                               unsigned confirm_ms, char *errmsg, tandem_membership_cb cb,
                               void *data);

#endif
