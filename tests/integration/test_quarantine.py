"""Integration tests of the start-up quarantine (issue 10 section 1) on real 2+2+1 clusters: the
old majority that returns after a forced failover elects no leader and accepts no write, and is
fenced, with or without a partition between it and the survivors; a node restarted into a
healthy cluster, and a whole cluster restarted, come up by themselves; an old majority that
cannot reach the other site waits until `tandemctl member release`, which is refused for a node
that is not quarantined and recorded in the decisions. And section 2: a partition of raft
traffic alone (APIs answering) makes the leader's side invoke the other site."""

import json
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bcp_load import bcp_status  # noqa: E402
from cluster import Cluster, ClusterError, run_tests, wait_until  # noqa: E402
from netcut import NetCut  # noqa: E402

WATCH_S = 12            # how long the returning old majority is watched for a leader
POLL_S = 0.05           # between two looks at the returning nodes
WRITES = 30
RECOVER_TIMEOUT_S = 30
FENCE_TIMEOUT_S = 20
RELEASE_TIMEOUT_S = 20
INVOKE_TIMEOUT_S = 40   # site_down_after_ms (3 s) plus the controller's steps, with slack
OLD_MAJORITY = ["west-1", "west-2", "witness-1"]
EAST = ["east-1", "east-2"]


class Watch:
    """Polls /v1/status of names from a thread until stop(): every time one of them reports
    itself leader or knows a leader, and whether each was seen quarantined."""

    def __init__(self, c, names):
        self.c, self.names = c, list(names)
        self.leaders = []         # (name, what it said)
        self.quarantined = set()  # names seen with "quarantined": true
        self.looks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        return self

    def _run(self):
        deadline = time.monotonic() + 300  # bounded even if stop() is never called
        while not self._stop.is_set() and time.monotonic() < deadline:
            for name in self.names:
                try:
                    status = self.c.status(name, timeout=1)
                except (OSError, ClusterError, ValueError):
                    continue  # not started yet, or busy starting
                node = status["node"]
                self.looks += 1
                if node.get("quarantined"):
                    self.quarantined.add(name)
                if node["state"] == "leader" or (status["leader"] is not None and
                                                 not node["fenced"]):
                    self.leaders.append((name, node["state"], status["leader"], node["term"]))
            time.sleep(POLL_S)


def write_keys(c, name, prefix, count):
    """Writes count keys through name, each its own value; returns them once all acknowledged."""
    keys = ["%s/%d" % (prefix, i) for i in range(count)]
    for key in keys:
        c.kv_put(name, key, key.encode())
    return keys


def refused_writes(c, names, attempt):
    """PUTs one key through each name; returns the answers that were not a 503."""
    accepted = []
    for name in names:
        key = "returning/%s/%d" % (name, attempt)
        status, _, body = c.api(name, "PUT", "/v1/kv/" + key.replace("/", "%2F"), body=b"x",
                                timeout=5)
        if status != 503:
            accepted.append((name, status, body[:200]))
        elif b"quarantine" not in body and b"fenced" not in body:
            accepted.append((name, status, body[:200]))  # a 503 that names neither
    return accepted


def force_west_at_east(c):
    """Kills the witness and west, force-invokes west at east-1; returns east's new leader."""
    for name in OLD_MAJORITY:
        c.kill(name)
    wait_until(lambda: c.status("east-1")["leader"] is None, 15, "east to lose its leader")
    report = json.loads(c.ctl("-o", "json", "bcp", "invoke", "west", "--force", "--reason",
                              "west and the witness lost", endpoints=[c.url("east-1")]).stdout)
    assert report["epoch"] == 2 and sorted(report["survivors"]) == EAST, report
    # It says what the operator must guarantee, and what quarantine does and does not cover.
    assert "powered off" in report["operator_must"], report
    assert "neither vote nor campaign" in report["quarantine"]["covers"], report
    assert "never stopped" in report["quarantine"]["does_not_cover"], report
    return c.leader(among=EAST, timeout=RECOVER_TIMEOUT_S)


def watch_returning(c, seconds):
    """Starts the old majority under a Watch, tries writes through it for seconds; returns the
    Watch (stopped) and the writes that were not refused."""
    watch = Watch(c, OLD_MAJORITY).start()
    accepted = []
    attempt = 0
    try:
        for name in OLD_MAJORITY:
            c.start(name)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and attempt < 1000:
            accepted += refused_writes(c, OLD_MAJORITY, attempt)
            attempt += 1
            time.sleep(0.5)
    finally:
        watch.stop()
    print("MEASURED %d status looks at the returning nodes, %d writes tried through each" %
          (watch.looks, attempt), flush=True)
    assert watch.looks > 0
    assert watch.leaders == [], watch.leaders[:5]
    assert accepted == [], accepted[:5]
    return watch


def forced_failover(c):
    """Writes, loses west and the witness, forces west out at east-1 and writes again; returns
    the acknowledged keys and east's leader."""
    leader = c.leader()
    wait_until(lambda: len(bcp_status(c, leader)["sites"]) == 3, 15, "sites registered")
    keys = write_keys(c, leader, "before", WRITES)
    east_leader = force_west_at_east(c)
    return keys + write_keys(c, east_leader, "after", WRITES), east_leader


def assert_fenced_and_kept(c, keys):
    """The old majority ends fenced, and east still has every acknowledged key."""
    for name in OLD_MAJORITY:
        wait_until(lambda n=name: c.status(n)["node"]["fenced"], FENCE_TIMEOUT_S,
                   "%s fenced" % name)
    east_leader = c.leader(among=EAST, timeout=RECOVER_TIMEOUT_S)
    for key in keys:
        assert c.kv_get(east_leader, key) == key.encode(), key
    return east_leader


def test_returning_old_majority_elects_nobody():
    """(a) The issue's split brain without a partition: west and the witness come back at epoch
    1 while east runs epoch 2. None of them may lead or take a write; they end up fenced."""
    with Cluster(topology="2+2+1") as c:
        keys, _ = forced_failover(c)
        watch = watch_returning(c, WATCH_S)
        assert watch.quarantined == set(OLD_MAJORITY), watch.quarantined
        east_leader = assert_fenced_and_kept(c, keys)
        for name in OLD_MAJORITY:
            assert c.kv_get(east_leader, "returning/%s/0" % name) is None


def test_returning_old_majority_behind_a_partition():
    """(e) The issue's reproduction: the old majority returns while east cannot reach it (nor
    it east). It waits for the whole window, saying it waits for east; once the link heals it
    learns the newer epoch and is fenced; nothing acknowledged is lost."""
    with Cluster(topology="2+2+1", isolate=True) as c, NetCut(c) as net:
        keys, east_leader = forced_failover(c)
        net.cut(EAST, OLD_MAJORITY, ports="all")
        watch_returning(c, WATCH_S + 3)
        for name in OLD_MAJORITY:
            node = c.status(name)["node"]
            assert node["quarantined"] and not node["fenced"], node
            assert "waiting for a node of site east" in node["quarantine"], node
        keys += write_keys(c, east_leader, "during-cut", WRITES)
        net.heal()
        assert_fenced_and_kept(c, keys)


def test_fenced_site_mate_does_not_vouch_for_the_old_epoch():
    """(e2) east-2 was lost with west and the witness; east-1 alone forces west out. All four
    return while east-1 is cut off from west and the witness but not from east-2. east-2 learns
    the newer epoch from east-1 and must not count as "a node of site east at our epoch" for the
    others: it refuses them with the newer epoch, so they are fenced instead of electing."""
    returning = OLD_MAJORITY + ["east-2"]
    with Cluster(topology="2+2+1", isolate=True) as c, NetCut(c) as net:
        leader = c.leader()
        wait_until(lambda: len(bcp_status(c, leader)["sites"]) == 3, 15, "sites registered")
        keys = write_keys(c, leader, "before", WRITES)
        for name in returning:
            c.kill(name)
        wait_until(lambda: c.status("east-1")["leader"] is None, 15, "east-1 to lose its leader")
        out = c.ctl("bcp", "invoke", "west", "--force", endpoints=[c.url("east-1")]).stdout
        assert "\nsurvivors: east-1\n" in out, out
        # The table says what the operator must guarantee and what quarantine covers.
        assert "YOU MUST: keep every lost node powered off" in out, out
        assert "start-up quarantine covers: lost nodes that restart" in out, out
        assert "it does NOT cover: lost nodes that never stopped" in out, out
        c.leader(among=["east-1"], timeout=RECOVER_TIMEOUT_S)
        keys += write_keys(c, "east-1", "after", WRITES)
        net.cut(["east-1"], OLD_MAJORITY, ports="all")
        watch = Watch(c, returning).start()
        try:
            for name in returning:
                c.start(name)
            time.sleep(WATCH_S)
        finally:
            watch.stop()
        assert watch.looks > 0 and watch.leaders == [], watch.leaders[:5]
        for name in returning:
            wait_until(lambda n=name: c.status(n)["node"]["fenced"], FENCE_TIMEOUT_S,
                       "%s fenced" % name)
        net.heal()
        for key in keys:
            assert c.kv_get("east-1", key) == key.encode(), key


def node_of(status, name):
    for site in status["sites"]:
        for node in site["nodes"]:
            if node["name"] == name:
                return node
    raise AssertionError("no node %s in bcp status" % name)


def test_raft_only_partition_invokes_the_other_site():
    """(f) Issue 10 section 2: east<->west raft traffic dropped, APIs open, the witness reachable
    by both. The leader's side (east) sees west raft-unreachable though its API answers, invokes
    it, and bcp status and /metrics say which way each west node answers."""
    with Cluster(topology="2+2+1", isolate=True) as c, NetCut(c) as net:
        leader = c.leader()
        if c.nodes[leader]["site"] != "east":
            c.ctl("member", "transfer-leader", "east-1")
            leader = c.leader()
        wait_until(lambda: len(bcp_status(c, leader)["sites"]) == 3, 15, "sites registered")
        west = ["west-1", "west-2"]
        net.cut(EAST, west, ports="raft")
        cut_at = time.monotonic()

        def west_invoked():
            status = bcp_status(c, leader)
            site = next(s for s in status["sites"] if s["name"] == "west")
            return site["state"] == "invoked" and status
        status = wait_until(west_invoked, INVOKE_TIMEOUT_S, "west invoked by east's leader")
        print("MEASURED raft-only partition: west invoked %.1f s after the cut" %
              (time.monotonic() - cut_at), flush=True)
        for name in west:
            node = node_of(status, name)
            assert node["raft_reachable"] is False and node["api_reachable"] is True, node
            assert node["api_contact_age_ms"] is not None, node
        for name in EAST + ["witness-1"]:
            node = node_of(status, name)
            assert node["raft_reachable"] and node["api_reachable"], node
        out = c.ctl("bcp", "status", endpoints=[c.url(leader)]).stdout
        assert "west-1 api only, west-2 api only" in out, out
        metrics = c.api(leader, "GET", "/metrics")[2].decode()
        assert 'tandem_peer_reachable{peer="west-1",via="raft"} 0' in metrics
        assert 'tandem_peer_reachable{peer="west-1",via="api"} 1' in metrics
        assert 'tandem_peer_reachable{peer="witness-1",via="raft"} 1' in metrics
        c.kv_put(leader, "during-raft-cut", b"z")
        net.heal()


def test_restart_into_healthy_cluster_rejoins_alone():
    """(b) A follower killed and restarted while its cluster is healthy catches up and leaves
    quarantine without help."""
    with Cluster(topology="2+2+1") as c:
        leader = c.leader()
        victim = next(n for n in ["west-2", "east-2"] if n != leader)
        c.kill(victim)
        keys = write_keys(c, leader, "while-down", WRITES)
        c.start(victim)
        started = time.monotonic()
        wait_until(lambda: not c.status(victim)["node"]["quarantined"], RELEASE_TIMEOUT_S,
                   "%s out of quarantine" % victim)
        print("MEASURED restart into a healthy cluster: out of quarantine %.2f s after its API "
              "answered (%s)" % (time.monotonic() - started, c.status(victim)["node"]["quarantine"]),
              flush=True)
        c.wait_converged(timeout=RECOVER_TIMEOUT_S)
        for key in keys:
            assert c.kv_get(victim, key, local=True) == key.encode(), key
        with open(os.path.join(c.nodes[victim]["dir"], "tandemd.log"), errors="replace") as f:
            log = f.read()
        assert "start-up quarantine lifted" in log, c.log_tail(victim)
        metrics = c.api(victim, "GET", "/metrics")[2].decode()
        assert "tandem_quarantined 0" in metrics, metrics[-2000:]
        assert 'tandem_peer_reachable{peer="%s",via="raft"} 1' % leader in metrics


def test_whole_cluster_restart_comes_up():
    """(c) Every node stopped, every node started: a leader appears and writes work."""
    with Cluster(topology="2+2+1") as c:
        leader = c.leader()
        keys = write_keys(c, leader, "before", WRITES)
        for name in c.names:
            c.stop(name)
        for name in c.names:
            c.start(name)
        started = time.monotonic()
        leader = c.leader(timeout=RECOVER_TIMEOUT_S)
        print("MEASURED whole-cluster restart: a leader %.2f s after the last node's API answered"
              % (time.monotonic() - started), flush=True)
        c.kv_put(leader, "after-restart", b"y")
        for key in keys:
            assert c.kv_get(leader, key) == key.encode(), key
        wait_until(lambda: not any(c.status(n)["node"]["quarantined"] for n in c.names),
                   RELEASE_TIMEOUT_S, "every node out of quarantine")


def test_old_majority_without_east_waits_for_release():
    """(d) West and the witness start while east stays down: they wait, say for what, and only
    `tandemctl member release` lets them elect; the release is a recorded decision."""
    with Cluster(topology="2+2+1") as c:
        c.leader()
        for name in c.names:
            c.stop(name)
        watch = Watch(c, OLD_MAJORITY).start()
        try:
            for name in OLD_MAJORITY:
                c.start(name)
            time.sleep(WATCH_S / 2)
        finally:
            watch.stop()
        assert watch.looks > 0 and watch.leaders == [], watch.leaders[:5]
        for name in OLD_MAJORITY:
            node = c.status(name)["node"]
            assert node["quarantined"] is True, node
            assert "waiting for a node of site east: east-1, east-2 unreachable" in \
                node["quarantine"], node
            status, _, body = c.api(name, "GET", "/readyz")
            assert status == 503 and b"quarantined" in body, (status, body)
        status, _, body = c.api("west-1", "PUT", "/v1/kv/x", body=b"x")
        assert status == 503 and b"start-up quarantine" in body, (status, body)
        for name in OLD_MAJORITY:
            # /v1/node/release answers node certificates only: the node's own.
            out = c.ctl("member", "release", name, "--reason", "east burnt down", user=name).stdout
            assert "released from start-up quarantine" in out, out
        leader = c.leader(among=OLD_MAJORITY, timeout=RECOVER_TIMEOUT_S)
        c.kv_put(leader, "after-release", b"y")

        def releases_recorded():
            decisions = bcp_status(c, leader)["decisions"]
            return {d["member"] for d in decisions if d["action"] == "quarantine release" and
                    d["reason"] == "east burnt down"} == set(OLD_MAJORITY)
        wait_until(releases_recorded, RELEASE_TIMEOUT_S, "the releases recorded")
        p = c.ctl("member", "release", "west-1", check=False, user="west-1")
        assert p.returncode == 1 and "409" in p.stderr and "not quarantined" in p.stderr, p.stderr
        # Entering and leaving are events of each node (GET /v1/events).
        for name in OLD_MAJORITY:
            events = c.get_json(name, "/v1/events?format=json")["events"]
            types = [e["type"] for e in events]
            assert "quarantine_enter" in types and "quarantine_release" in types, types
            release = [e for e in events if e["type"] == "quarantine_release"][-1]
            assert "east burnt down" in release["message"], release
        p = c.ctl("member", "release", "nobody-9", check=False)
        assert p.returncode == 1 and "no member named 'nobody-9'" in p.stderr, p.stderr


if __name__ == "__main__":
    run_tests()
