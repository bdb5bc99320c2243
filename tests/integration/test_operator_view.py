"""Integration tests of what the operator sees (issue 10 section 5) on real clusters:
`bcp status` without a leader answers from one node's own view, marked local and dated; the
per-site /metrics series follow an invoke; nodes lost in a forced failover stay in `status`
and `bcp status`, marked lost; log levels of failovers."""

import json
import os
import re
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bcp_load import bcp_status, site_names  # noqa: E402
from cluster import Cluster, run_tests, wait_until  # noqa: E402

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RECOVER_TIMEOUT_S = 30
WRITES = 30


def test_bcp_status_without_a_leader_answers_from_a_local_view():
    with Cluster(topology="2+2+1") as c:
        leader = c.leader()
        for i in range(WRITES):
            c.kv_put(leader, "before/%d" % i, b"x")
        east = site_names(c, "east")
        old_leader = leader
        # Three of five voters gone: no quorum, no leader anywhere.
        for name in c.names:
            if name not in east:
                c.kill(name)
        wait_until(lambda: all(c.status(n)["leader"] is None for n in east), 15,
                   "the east nodes to lose their leader")
        # Every endpoint listed, the dead ones included, as an operator would.
        started = time.monotonic()
        p = c.ctl("--timeout", "3", "bcp", "status", check=False)
        took = time.monotonic() - started
        print("MEASURED bcp status --timeout 3 without a leader: %.1f s, exit %d" %
              (took, p.returncode), flush=True)
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        lines = p.stdout.splitlines()
        head = re.match(r"LOCAL VIEW of (\S+), not the leader's: as of (\S+), ", lines[0])
        assert head and head.group(1) in east, p.stdout
        assert RFC3339_MS.match(head.group(2)), p.stdout
        assert any(l.startswith("why local: ") for l in lines), p.stdout
        assert "leader none" in p.stdout and "SITE" in p.stdout, p.stdout

        # --local asks the given node only, without trying for a leader first.
        p = c.ctl("-o", "json", "bcp", "status", "--local", endpoints=[c.url(east[1])])
        view = json.loads(p.stdout)
        assert view["local"] is True and view["node"] == east[1], view
        assert RFC3339_MS.match(view["as_of"]), view
        assert view["leader_known"] is False and view["leader"] is None, view
        assert view["applied_index"] > WRITES and "fallback_reason" not in view, view
        if old_leader in east:
            assert view["last_leader"]["name"] == old_leader, view
        if view["last_leader"] is not None:
            assert RFC3339_MS.match(view["last_leader"]["seen"]), view
            assert view["last_leader"]["age_ms"] >= 0, view
        assert {s["name"] for s in view["sites"]} >= {"east", "west"}, view

        # The API's local variant never forwards and says it is local; the default one does not.
        status, _, body = c.api(east[0], "GET", "/v1/bcp/status?consistency=local")
        assert status == 200 and json.loads(body)["local"] is True, (status, body)


def metrics(c, name):
    """/metrics of node name: (samples "name{labels}" -> float, the text)."""
    status, _, body = c.api(name, "GET", "/metrics")
    assert status == 200, (status, body[:200])
    text = body.decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples, text


SITE_FAMILIES = ("tandem_site_state", "tandem_site_epoch", "tandem_site_lag_entries",
                 "tandem_site_lag_seconds", "tandem_failure_tolerance",
                 "tandem_site_loss_tolerated", "tandem_fenced")


def test_site_metrics_and_the_invoke_and_revoke_outputs():
    with Cluster(topology="2+2+1") as c:
        leader = c.settled_leader()  # lag is known on the leader only: not one about to hand over
        wait_until(lambda: len(bcp_status(c, leader)["sites"]) == 3 and
                   all(n["home_role"] == "voter" for s in bcp_status(c, leader)["sites"]
                       for n in s["nodes"]), 15, "sites and home roles recorded")
        # Two queued jobs at west, for the invoke to move.
        c.ctl("job", "create", "acme", "scan", "west", "--id", "MW1")
        c.ctl("job", "create", "acme", "scan", "west", "--id", "MW2")
        m, text = metrics(c, leader)
        for family in SITE_FAMILIES:
            assert text.count("# TYPE %s gauge\n" % family) == 1, family
            assert text.count("# HELP %s " % family) == 1, family  # every family has one
        assert m['tandem_site_state{site="west",state="active"}'] == 1, m
        assert m['tandem_site_state{site="west",state="invoked"}'] == 0, m
        assert m['tandem_site_epoch{site="west"}'] == 1, m
        assert m['tandem_site_lag_entries{site="west"}'] >= 0, m
        assert 'tandem_site_lag_seconds{site="west"}' in m, m
        assert m["tandem_failure_tolerance"] == 2, m  # 5 voters reached, 3 make a quorum
        assert m['tandem_site_loss_tolerated{site="west"}'] == 1, m
        assert m["tandem_fenced"] == 0, m

        # Invoke's table says how many jobs moved.
        p = c.ctl("bcp", "invoke", "west", "--reason", "metrics test")
        print(p.stdout, end="", flush=True)
        assert re.search(r"; jobs moved 2$", p.stdout.splitlines()[0]), p.stdout

        def invoked():
            m, _ = metrics(c, c.leader(timeout=10))
            return (m['tandem_site_state{site="west",state="invoked"}'] == 1 and
                    m['tandem_site_state{site="west",state="active"}'] == 0 and
                    m['tandem_site_epoch{site="west"}'] == 2 and
                    m["tandem_failure_tolerance"] == 1 and m) or None
        m = wait_until(invoked, RECOVER_TIMEOUT_S, "the metrics to show west invoked and the "
                       "voters moved (3 voters: one more failure tolerated)")
        assert m['tandem_site_loss_tolerated{site="west"}'] == 1, m
        assert m['tandem_site_loss_tolerated{site="east"}'] == 0, m

        # Revoke's JSON calls the jobs it brought back jobs_returned.
        out = json.loads(c.ctl("-o", "json", "bcp", "revoke", "west", "--failback").stdout)
        assert out["jobs_returned"] == 2 and "jobs_moved" not in out, out
        # Times beside the milliseconds are RFC 3339, for people reading the JSON.
        assert RFC3339_MS.match(out["site"]["since_time"]), out
        status = bcp_status(c, c.leader())
        assert status["decisions"] and all(RFC3339_MS.match(d["at_time"])
                                           for d in status["decisions"]), status["decisions"]
        assert all(RFC3339_MS.match(s["since_time"]) for s in status["sites"]), status["sites"]


def test_drill_refusal_comes_alone():
    """A drill that would be refused never announces itself first."""
    with Cluster(topology="2+2+1") as c:
        leader = c.leader()
        wait_until(lambda: len(bcp_status(c, leader)["sites"]) == 3, 15, "sites registered")
        c.ctl("bcp", "invoke", "west")
        p = c.ctl("bcp", "drill", "east", check=False, endpoints=[c.url(c.leader())])
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert "drilling" not in p.stdout, p.stdout
        assert "site west is invoked: drills need every site active" in p.stderr, p.stderr
        assert p.stderr.count("\n") == 1, p.stderr
        # Once it would be taken, the drill is announced, then run.
        c.ctl("bcp", "revoke", "west", "--failback")
        wait_until(lambda: all(s["state"] == "active" for s in bcp_status(c, c.leader())["sites"]),
                   RECOVER_TIMEOUT_S, "every site active again")
        p = c.ctl("bcp", "drill", "east", endpoints=[c.url(c.leader())], timeout=180)
        lines = p.stdout.splitlines()
        assert lines[0].startswith("drilling site east ") and ": OK" in lines[1], p.stdout


def log_text(c, name):
    with open(os.path.join(c.nodes[name]["dir"], "tandemd.log"), errors="replace") as f:
        return f.read()


def test_lost_nodes_stay_listed_after_a_forced_invoke():
    with Cluster(topology="2+2") as c:
        c.leader()
        east = site_names(c, "east")
        west = site_names(c, "west")
        west_urls = [c.url(w) for w in west]
        wait_until(lambda: all(n["home_role"] != "unknown"
                               for s in bcp_status(c, west[0])["sites"] for n in s["nodes"]),
                   10, "home roles recorded")
        for name in east:
            c.kill(name)
        wait_until(lambda: all(c.status(w)["leader"] is None for w in west), 10,
                   "the leader to step down")
        c.ctl("bcp", "invoke", "east", "--force", endpoints=[c.url(west[0])])
        leader = c.leader(among=west, timeout=RECOVER_TIMEOUT_S)

        def lost_in_bcp_status():
            nodes = {n["name"]: n for s in bcp_status(c, leader)["sites"] for n in s["nodes"]}
            return all(nodes.get(n, {}).get("role") == "lost" and nodes[n]["lost"] is True
                       for n in east) and nodes
        nodes = wait_until(lost_in_bcp_status, RECOVER_TIMEOUT_S, "east marked lost")
        assert all(nodes[w]["role"] in ("voter", "standby") and nodes[w]["lost"] is False
                   for w in west), nodes
        assert "east-1:lost!" in c.ctl("bcp", "status", endpoints=west_urls).stdout

        p = c.ctl("status", endpoints=west_urls)
        rows = {l.lstrip("* ").split()[0]: l.lstrip("* ").split() for l in p.stdout.splitlines()[2:]}
        for name in east:
            assert rows[name][2:] == ["lost", "lost", "-", "-"], (name, p.stdout)
        doc = json.loads(c.ctl("-o", "json", "status", endpoints=west_urls).stdout)
        by = {m["name"]: m for m in doc["members"]}
        assert by[east[0]]["role"] == "lost" and by[east[0]]["state"] == "lost", by[east[0]]
        assert by[east[0]]["lag"] is None, by[east[0]]

        # A failover is logged at warn, by the seed's controller that records it.
        warned = re.compile(r"^\S+ warn .*site controller: invoke \(forced failover", re.M)
        assert any(warned.search(log_text(c, w)) for w in west), [c.log_tail(w) for w in west]

        # Removing a lost member forgets it; the other stays lost.
        p = c.ctl("member", "remove", east[1], endpoints=west_urls)
        assert p.stdout == "removed %s\n" % east[1], p.stdout
        wait_until(lambda: [m["name"] for m in c.status(leader)["members"]
                            if m["role"] == "lost"] == [east[0]], 10, "%s forgotten" % east[1])
        nodes = {n["name"] for s in bcp_status(c, leader)["sites"] for n in s["nodes"]}
        assert east[1] not in nodes and east[0] in nodes, nodes

        # A rejoined member is a member again, no longer lost.
        c.start(east[0])
        wait_until(lambda: c.status(east[0])["node"]["fenced"], 15, "%s fenced" % east[0])
        c.ctl("member", "rejoin", east[0], endpoints=west_urls)
        wait_until(lambda: [m["role"] for m in c.status(leader)["members"]
                            if m["name"] == east[0]] == ["standby"], RECOVER_TIMEOUT_S,
                   "%s back as a standby" % east[0])
        nodes = {n["name"]: n for s in bcp_status(c, leader)["sites"] for n in s["nodes"]}
        assert nodes[east[0]]["role"] != "lost" and nodes[east[0]]["lost"] is False, nodes


if __name__ == "__main__":
    run_tests()
