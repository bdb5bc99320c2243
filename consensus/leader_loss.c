/* Shortening a follower's election timeout once its leader's process is gone
 * (consensus/leader_loss.h). */
#include "consensus/leader_loss.h"

#include <string.h>

#include "consensus/member.h"
#include "consensus/transport.h"
#include "storage/assert.h"

void tandem_leader_loss_init(struct tandem_leader_loss *l, struct raft *raft,
                             struct raft_uv_transport *transport, unsigned heartbeat_ms,
                             unsigned election_timeout_ms, unsigned fast_timeout_ms,
                             unsigned fast_fail_ms)
{
    tandem_assert(heartbeat_ms > 0 && fast_timeout_ms >= heartbeat_ms &&
                  fast_timeout_ms < election_timeout_ms && fast_fail_ms > 0);
    *l = (struct tandem_leader_loss){.raft = raft,
                                     .transport = transport,
                                     .heartbeat_ms = heartbeat_ms,
                                     .election_timeout_ms = election_timeout_ms,
                                     .fast_timeout_ms = fast_timeout_ms,
                                     .fast_fail_ms = fast_fail_ms};
}

static void restore(struct tandem_leader_loss *l)
{
    raft_set_election_timeout(l->raft, l->election_timeout_ms);
    l->shortened = false;
    l->suspect = 0;
}

/* Whether the probe of the suspect, started at probe_started_ms, is over and found nothing
 * listening: it failed, and fast (a refusal, not a handshake timeout). */
static bool probe_refused(const struct tandem_leader_loss *l, uint64_t now)
{
    struct tandem_transport_contact c;
    if (tandem_transport_contact(l->transport, l->suspect, &c) != 0 || c.probing) {
        return false;
    }
    bool answered = c.ok_since_ms != 0 && c.last_ok_ms >= l->probe_started_ms;
    return !answered && now - l->probe_started_ms <= l->fast_fail_ms;
}

void tandem_leader_loss_tick(struct tandem_leader_loss *l)
{
    struct raft *r = l->raft;
    raft_id leader = 0;
    const char *address = NULL;
    raft_leader(r, &leader, &address);
    bool following = raft_state(r) == RAFT_FOLLOWER;
    if (l->shortened) {
        /* It campaigned (a candidate now), leads, or follows someone else: one election only. */
        if (!following || (leader != 0 && leader != l->suspect)) {
            restore(l);
        }
        return;
    }
    uint64_t now = r->io->time(r->io);
    uint64_t quiet_ms = now - r->election_timer_start;
    if (!following || leader == 0 || address == NULL ||
        quiet_ms < (uint64_t)TANDEM_LEADER_LOSS_QUIET_HEARTBEATS * l->heartbeat_ms) {
        l->suspect = 0; /* heard from it again, or nothing to watch */
        return;
    }
    if (l->suspect != leader) {
        /* Our own probe, not one already in flight (RAFT_BUSY): its start is what we time. */
        if (tandem_transport_probe(l->transport, leader, address) == 0) {
            l->suspect = leader;
            l->probe_started_ms = now;
        }
        return;
    }
    if (probe_refused(l, now)) {
        raft_set_election_timeout(r, l->fast_timeout_ms);
        l->shortened = true;
        l->shortened_total++;
        if (l->log != NULL) {
            struct tandem_member m;
            char errmsg[TANDEM_ERRMSG_SIZE];
            bool named = tandem_member_address_parse(address, &m, errmsg) == 0;
            l->log(l->log_data, named ? m.name : address, l->fast_timeout_ms);
        }
    } else if (now - l->probe_started_ms > l->fast_fail_ms) {
        l->suspect = 0; /* it answered, or only timed out: look again later */
    }
}
