/* Planned invoke and revoke as their requester sees them: whether the takeover (or failback) an
 * applied change started is complete, the wait for it before answering, and the relay of an
 * invoke or revoke to the leader over a client that a leader change does not cancel. */
#ifndef TANDEM_NODE_BCP_TAKEOVER_H
#define TANDEM_NODE_BCP_TAKEOVER_H

#include <jansson.h>
#include <stdbool.h>

#include "node/bcp/reply.h"
#include "node/bcp/runtime.h"

#define TANDEM_BCP_WAIT_POLL_MS 50

enum tandem_bcp_wait_kind { TANDEM_BCP_WAIT_INVOKE, TANDEM_BCP_WAIT_REVOKE };

/* Invoke complete: leadership is outside site and none of its members votes. */
bool tandem_bcp_invoke_done(struct tandem_bcp *b, const char *site);
/* Revoke complete (t: the applied site table): site is active again and, with failback,
 * leadership is back in it. */
bool tandem_bcp_revoke_done(struct tandem_bcp *b, const struct tandem_site_table *t,
                            const char *site, bool failback);

/* Refuses an invoke of site that could not complete or would leave no safe quorum (t: the
 * applied site table): answers reply with 404 or 409 and returns -1; 0 when it may go ahead. */
int tandem_bcp_invoke_precheck(struct tandem_bcp *b, const struct tandem_site_table *t,
                               const char *site, const struct tandem_bcp_reply *reply);

/* Polls until the change of kind on site is complete (200), or wait_ms passed or the node
 * stops (202), and answers reply with the site, the leader and jobs_moved. */
void tandem_bcp_wait_start(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                           enum tandem_bcp_wait_kind kind, const char *site, bool failback,
                           unsigned wait_ms, json_int_t jobs_moved);

/* Relays a POST (url and body of the request) to the leader with the forwarded header naming
 * this node, and answers reply with the leader's answer as it is. forwarded: the request came
 * from another node already (answered 503, like no leader: relays do not chain). */
void tandem_bcp_relay_to_leader(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                                const char *url, const char *body, bool forwarded);

#endif
