"""Integration test of the three-place lab (deploy/lab.sh, chaos/wan): a 2+2+1 cluster whose
sites are network namespaces joined through tandem-wan runs a planned BCP invoke and a leader
kill under load with no failed write, a cut between the last two voters' sites stops writes and
heal brings them back, slow changes a link, and `down` leaves no namespace, link, nft table or
process behind. Needs root (as test_netcut does)."""

import json
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bcp_load import Load, bcp_status, roles, site_of  # noqa: E402
from cluster import Cluster, ClusterError, run_tests, wait_until  # noqa: E402

TAKEOVER_TIMEOUT_S = 20
LOAD_SETTLE_S = 1.5
CUT_WRITE_TIMEOUT_S = 3   # a write during the cut: no quorum, so no 200 in this long
COMMAND_TIMEOUT_S = 10


def run(*argv):
    return subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S, check=True).stdout


def netns_names():
    return set(line.split()[0] for line in run("ip", "netns", "list").splitlines() if line)


def link_names():
    return set(line.split(":")[1].strip().split("@")[0]
               for line in run("ip", "-o", "link", "show").splitlines())


def nft_tables():
    return set(run("nft", "list", "tables").splitlines())


def processes_of(path):
    """PIDs of the processes whose command line names path (a lab's directory)."""
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if path.encode() in f.read():
                    found.add(int(pid))
        except OSError:
            pass
    return found


def leader_site(c, via):
    status = c.status(via)
    return status["leader"] and c.nodes[status["leader"]["name"]]["site"]


def check_namespaces(c, lab_id):
    """Every node runs in its site's namespace; tandem-wan runs in the root one, as the test runner does."""
    assert {lab_id + "-" + s for s in ("east", "west", "witness")} <= netns_names()
    for name in c.names:
        node_ns = os.stat("/proc/%d/ns/net" % c.nodes[name]["pid"]).st_ino
        site_ns = os.stat("/run/netns/%s-%s" % (lab_id, c.nodes[name]["site"])).st_ino
        assert node_ns == site_ns, name
        assert c.nodes[name]["api"].startswith("https://10.250."), c.nodes[name]
    with open(os.path.join(c.dir, "lab", "wan.pid")) as f:
        wan = int(f.read())
    assert os.stat("/proc/%d/ns/net" % wan).st_ino == os.stat("/proc/self/ns/net").st_ino


def invoke_and_kill(c):
    """A planned invoke of east then a kill of the new leader, under load; returns the load."""
    c.ctl("bcp", "prefer", "east")
    wait_until(lambda: leader_site(c, c.names[0]) == "east", TAKEOVER_TIMEOUT_S,
               "leadership on east")
    # Through the witness, the one node sure to outlive the kill (it forwards to the leader).
    load = Load([c.nodes["witness-1"]["api"]], "lab", writers_per_url=3).start()
    time.sleep(LOAD_SETTLE_S)
    out = json.loads(c.ctl("-o", "json", "bcp", "invoke", "east", "--reason", "lab").stdout)
    assert out["complete"] is True and out["site"]["state"] == "invoked", out
    assert c.nodes[out["leader"]["name"]]["site"] == "west", out
    assert set(roles(bcp_status(c, "west-1"), "east").values()) == {"standby"}
    time.sleep(LOAD_SETTLE_S)
    invoke_gap = load.max_gap_ms()
    killed = out["leader"]["name"]
    killed_at = time.monotonic()
    c.kill(killed)
    survivors = [n for n in ("west-1", "west-2") if n != killed]
    # The witness may win the election; the site controller then moves leadership off it.
    wait_until(lambda: leader_site(c, survivors[0]) == "west", TAKEOVER_TIMEOUT_S,
               "a west leader after the kill")
    time.sleep(LOAD_SETTLE_S)
    load.stop()
    summary = load.summary()
    print("MEASURED lab (8/20 ms): planned invoke gap %d ms, leader kill gap %d ms; load %s"
          % (invoke_gap, load.max_gap_ms(since=killed_at - 1), summary), flush=True)
    assert summary["failed"] == 0, (summary, load.failed[:5])
    return survivors[0]


def cut_and_heal(c, voter):
    """With voter and the witness the only voters left, a cut between their sites leaves no
    quorum: a write does not land; heal: it does."""
    c.lab_cut("west", "witness")
    status, _, _ = put_or_error(c, voter, "lab/during-cut", CUT_WRITE_TIMEOUT_S)
    assert status != 200, status
    c.lab_heal()
    wait_until(lambda: put_or_error(c, voter, "lab/after-heal", 5)[0] == 200,
               TAKEOVER_TIMEOUT_S, "a write after heal")
    assert c.kv_get(voter, "lab/after-heal") is not None
    c.lab_slow("west", "witness", 30)
    with open(os.path.join(c.dir, "lab", "links")) as f:
        assert "link west-witness 30 " in f.read()
    wait_until(lambda: put_or_error(c, voter, "lab/slow", 5)[0] == 200, TAKEOVER_TIMEOUT_S,
               "a write over the slowed link")


def put_or_error(c, name, key, timeout):
    try:
        return c.api(name, "PUT", "/v1/kv/" + key, b"1", timeout=timeout)
    except OSError as e:
        return type(e).__name__, None, b""


def test_lab_bcp_cut_heal_then_down_leaves_nothing():
    before = (netns_names(), link_names(), nft_tables())
    with Cluster(lab=True, rtt_ms="east-west=8,witness=20") as c:
        lab_id, lab_dir = c.lab_id(), c.dir
        check_namespaces(c, lab_id)
        assert any(n.startswith(lab_id) for n in link_names())
        voter = invoke_and_kill(c)
        cut_and_heal(c, voter)
        assert site_of(bcp_status(c, voter), "east")["state"] == "invoked"
    after = (netns_names(), link_names(), nft_tables())
    assert not [n for n in after[0] | after[1] if n.startswith(lab_id)], after
    assert after == before, (before, after)
    assert not processes_of(lab_dir), processes_of(lab_dir)


def test_lab_refuses_bad_input_and_changes_nothing():
    with Cluster(lab=True) as c:
        links = open(os.path.join(c.dir, "lab", "links")).read()
        for args in (("slow", c.dir, "east", "mars", "5"), ("slow", c.dir, "east", "west", "x"),
                     ("cut", c.dir, "east", "east"), ("loss", c.dir, "east", "west", "101"),
                     ("cut", c.dir, "east", "west", "--later")):
            try:
                c._lab(*args)
            except ClusterError as e:
                assert "lab: " in str(e), e
            else:
                raise AssertionError("lab.sh %s was accepted" % " ".join(args))
        assert open(os.path.join(c.dir, "lab", "links")).read() == links
        assert c.kv_put(c.leader(), "lab/still", "1") is not None


if __name__ == "__main__":
    run_tests()
