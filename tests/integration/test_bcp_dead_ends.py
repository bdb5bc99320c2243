"""Integration tests of the forced-failover dead ends an operator could not get out of: a forced
invoke of a site while the other site is already invoked (it must leave a quorum that tolerates a
failure and a site table that matches the configuration), and a 2+2 cluster that lost one node
at each site (`bcp invoke SITE --force --confirm-lost NAME,...` gets out, and refuses a named
node that still answers). Every acknowledged write survives."""

import json
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bcp_load import bcp_status, roles, site_names, site_of  # noqa: E402
from cluster import Cluster, run_tests, wait_until  # noqa: E402

RECOVER_TIMEOUT_S = 40
WRITES = 30


def write_keys(c, name, prefix, count=WRITES):
    keys = ["%s/%d" % (prefix, i) for i in range(count)]
    for key in keys:
        c.kv_put(name, key, key.encode())
    return keys


def no_leader(c, names):
    return all(c.status(n)["leader"] is None for n in names)


def voters(status):
    return sorted(n["name"] for s in status["sites"] for n in s["nodes"] if n["role"] == "voter")


def table_matches_configuration(status):
    """Every site that is not invoked serves with members in the configuration; an invoked site
    has no voter."""
    for s in status["sites"]:
        in_config = [n for n in s["nodes"] if n["role"] != "none"]
        if s["state"] == "invoked":
            if any(n["role"] == "voter" for n in s["nodes"]):
                return False
        elif not in_config:
            return False
    return True


def test_forced_invoke_while_the_other_site_is_invoked():
    with Cluster(topology="2+2+1") as c:
        leader = c.leader()
        east, west = site_names(c, "east"), site_names(c, "west")
        wait_until(lambda: all(n["home_role"] == "voter" for s in bcp_status(c, leader)["sites"]
                               for n in s["nodes"]), 15, "home roles recorded")
        out = json.loads(c.ctl("-o", "json", "bcp", "invoke", "west", "--reason", "test").stdout)
        assert out["site"]["state"] == "invoked", out
        wait_until(lambda: set(roles(bcp_status(c, east[0]), "west").values()) == {"standby"},
                   RECOVER_TIMEOUT_S, "west demoted")
        keys = write_keys(c, west[0], "before")
        # The standbys hold every acknowledged write before the voters' site is lost.
        c.wait_applied(west, c.status(east[0])["node"]["commit_index"])
        for name in east:
            c.kill(name)
        survivors = west + ["witness-1"]
        # The standbys never campaign: the witness, the one surviving voter, shows the loss.
        wait_until(lambda: no_leader(c, ["witness-1"]), 15, "no leader without east")
        p = c.ctl("bcp", "invoke", "witness", "--force", check=False, endpoints=[c.url(west[0])])
        assert p.returncode == 1 and "is a witness" in p.stderr, p.stderr
        p = c.ctl("bcp", "invoke", "west", "--force", check=False, endpoints=[c.url(west[0])])
        assert p.returncode == 1 and "already invoked" in p.stderr, p.stderr
        report = json.loads(c.ctl("-o", "json", "bcp", "invoke", "east", "--force",
                                  endpoints=[c.url(west[0])]).stdout)
        print("MEASURED forced invoke report: %s" % report, flush=True)
        assert sorted(report["survivors"]) == sorted(survivors), report
        assert "revokes the survivors' site (west)" in report["revoke_note"], report
        # east held two of the three voters: what they committed later is unknown, and said.
        assert report["no_committed_loss"] is False and report["lost_entries_max"] is None, report

        def settled():
            status = bcp_status(c, c.leader(among=survivors, timeout=5))
            return (site_of(status, "east")["state"] == "invoked" and
                    site_of(status, "west")["state"] == "active" and
                    voters(status) == sorted(survivors) and status)
        status = wait_until(settled, RECOVER_TIMEOUT_S, "east invoked, west serving, 3 voters")
        assert table_matches_configuration(status), status
        assert site_of(status, "east")["forced"] is True, status
        actions = [(d["action"], d["site"]) for d in status["decisions"]]
        assert ("revoke", "west") in actions and ("invoke", "east") in actions, actions
        leader = c.leader(among=survivors)
        assert c.nodes[leader]["site"] == "west", leader
        for key in keys:
            assert c.kv_get(leader, key) == key.encode(), key
        # Three voters: the cluster takes one more failure and still writes.
        victim = [n for n in survivors if n != leader][0]
        c.kill(victim)
        rest = [n for n in survivors if n != victim]
        leader = c.leader(among=rest, timeout=RECOVER_TIMEOUT_S)
        c.kv_put(leader, "after-one-more-failure", b"ok", timeout=15)
        assert c.kv_get(leader, "after-one-more-failure") == b"ok"


def test_confirm_lost_gets_a_two_plus_two_out_of_a_dead_end():
    with Cluster(topology="2+2") as c:
        c.leader()
        east, west = site_names(c, "east"), site_names(c, "west")
        wait_until(lambda: all(n["home_role"] == "voter" for s in bcp_status(c, west[0])["sites"]
                               for n in s["nodes"]), 15, "home roles recorded")
        keys = write_keys(c, west[0], "before")
        c.kill(east[1])
        c.kill(west[1])
        alive = [east[0], west[0]]
        wait_until(lambda: no_leader(c, alive), 15, "no leader with 2 of 4")
        ends = [c.url(west[0])]
        # Without --confirm-lost: refused, and the refusal names the way out.
        p = c.ctl("bcp", "invoke", "east", "--force", check=False, endpoints=ends)
        assert p.returncode == 1 and "not lost" in p.stderr, p.stderr
        assert "--confirm-lost" in p.stderr and east[1] in p.stderr, p.stderr
        # A named node that answers is never confirmed lost.
        p = c.ctl("bcp", "invoke", "east", "--force", "--confirm-lost",
                  "%s,%s" % (east[0], west[1]), check=False, endpoints=ends)
        assert p.returncode == 1 and "answers its API now" in p.stderr, p.stderr
        # Every member that does not answer must be named.
        p = c.ctl("bcp", "invoke", "east", "--force", "--confirm-lost", east[1], check=False,
                  endpoints=ends)
        assert p.returncode == 1 and west[1] in p.stderr and "not named" in p.stderr, p.stderr
        p = c.ctl("bcp", "invoke", "east", "--force", "--confirm-lost", "nobody", check=False,
                  endpoints=ends)
        assert p.returncode == 1 and "not a member" in p.stderr, p.stderr
        p = c.ctl("bcp", "invoke", "east", "--confirm-lost", east[1], check=False, endpoints=ends)
        assert p.returncode == 2, (p.returncode, p.stderr)
        for body in ({"site": "east", "force": True, "confirm_lost": east[1]},
                     {"site": "east", "confirm_lost": [east[1]]},
                     {"site": "east", "force": True, "confirm_lost": [east[1], east[1]]},
                     {"site": "east", "force": True, "confirm_lost": ["bad name!"]}):
            status, _, answer = c.api(west[0], "POST", "/v1/bcp/invoke", body)
            assert status == 400 and b"confirm_lost" in answer, (body, status, answer)
        assert all(c.status(n)["node"]["epoch"] == 1 for n in alive)  # nothing changed
        report = json.loads(c.ctl("-o", "json", "bcp", "invoke", "east", "--force",
                                  "--confirm-lost", "%s,%s" % (east[1], west[1]),
                                  endpoints=ends).stdout)
        print("MEASURED confirm-lost report: %s" % report, flush=True)
        assert sorted(report["survivors"]) == sorted(alive), report
        assert sorted(report["confirmed_lost"]) == sorted([east[1], west[1]]), report
        assert report["epoch"] == 2, report

        def serving():
            status = bcp_status(c, c.leader(among=alive, timeout=5))
            return (site_of(status, "east")["state"] == "invoked" and
                    table_matches_configuration(status) and status)
        status = wait_until(serving, RECOVER_TIMEOUT_S, "east invoked, west voting")
        assert voters(status) == [west[0]], status
        assert roles(status, "east")[east[0]] == "standby", status
        leader = c.leader(among=alive)
        assert leader == west[0], leader
        c.kv_put(leader, "after-confirm-lost", b"ok", timeout=15)
        for key in keys:
            assert c.kv_get(leader, key) == key.encode(), key


if __name__ == "__main__":
    run_tests()
