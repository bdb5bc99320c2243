#!/usr/bin/env python3
"""tandemd under the lost-writes shim (chaos/lostwrites/): a node whose data files lose every
write made after their last fsync/fdatasync at a kill -9 (as if the power had gone at that
moment) rejoins, converges to the same digest as the others, and no acknowledged write is lost;
for a follower and for the leader killed mid-load, and for a follower killed after catching up
by a snapshot install made under the shim."""

import os
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, ClusterError, run_tests, wait_until  # noqa: E402

WRITES_MAX = 3000          # bound on the load loop, in writes
LOAD_SECONDS_MAX = 60      # and in time
WRITES_BEFORE_KILL = 200   # acknowledged writes before the kill
WRITES_AFTER_KILL = 50     # and after it, before the node comes back
CONVERGE_TIMEOUT_S = 60
TOOL_TIMEOUT_S = 60
BEHIND_WRITES = 700        # writes a stopped follower misses: past two snapshots, so an install
AFTER_INSTALL_WRITES = 50
TRANSFER_ATTEMPTS = 10     # leader transfers tried (a second each) until the victim leads
LEADER_SETTLE_S = 30       # for the site controller to move leadership off the witness
SETTINGS = {"snapshot_threshold": 128, "snapshot_trailing": 256}  # snapshots during the load


def links_asan(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    return "libasan" in out.stdout


def shim_env(c, name, journal):
    """The environment that starts node name under the shim (journal: its journal directory)."""
    env = {"LD_PRELOAD": os.path.join(c.bin_dir, "libtandem_lostwrites.so"),
           "TANDEM_LOSTWRITES_DIR": journal,
           "TANDEM_LOSTWRITES_ROOT": os.path.join(c.nodes[name]["dir"], "data")}
    if links_asan(os.path.join(c.bin_dir, "tandemd")):
        # The shim is preloaded ahead of the program's ASan runtime, which would refuse that.
        asan = os.environ.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "verify_asan_link_order=0"
    return env


class Load:
    """Writes lw/N keys through the current leader from a thread until stopped (bounded);
    acked holds the keys whose PUT was answered 200."""

    def __init__(self, c, prefix):
        self.c, self.prefix = c, prefix
        self.acked, self.down = [], set()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        leader, deadline = None, time.monotonic() + LOAD_SECONDS_MAX
        for i in range(WRITES_MAX):
            if self.stop_event.is_set() or time.monotonic() > deadline:
                return
            key = "%s/%d" % (self.prefix, i)
            try:
                if leader is None or leader in self.down:
                    alive = [n for n in self.c.names if n not in self.down]
                    leader = self.c.leader(timeout=10, among=alive)
                self.c.kv_put(leader, key, ("value-%d" % i).encode(), timeout=5)
                self.acked.append(key)
            except (ClusterError, OSError):
                leader = None  # indeterminate: not checked either way
                time.sleep(0.05)

    def wait_acked(self, count):
        wait_until(lambda: len(self.acked) >= count or not self.thread.is_alive(),
                   LOAD_SECONDS_MAX, "%d acknowledged writes" % count)
        assert len(self.acked) >= count, "the load stopped at %d writes" % len(self.acked)


def rollback(c, journal):
    tool = os.path.join(c.bin_dir, "tandem-lostwrites-rollback")
    p = subprocess.run([tool, journal], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    print(p.stdout, end="", flush=True)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    undone = sum(int(line.split("undid ")[1].split()[0]) for line in p.stdout.splitlines()
                 if " undid " in line)
    # LMDB commits without syncing (MDB_NOSYNC) and syncs about once a second: there is some.
    assert undone > 0, "the shim journaled nothing to lose:\n" + p.stdout
    return p.stdout


def check_converged(c, acked):
    c.wait_converged(timeout=CONVERGE_TIMEOUT_S)
    digests = c.converged_digests()
    assert len({d["state_digest"] for d in digests.values()}) == 1, digests
    for name in c.names:
        missing = [k for k in acked if c.kv_get(name, k, local=True) is None]
        assert not missing, "%s lost %d acknowledged writes, first %s" % (
            name, len(missing), missing[:5])
    print("converged at %s; %d acknowledged writes on every node"
          % ({n: d["applied_index"] for n, d in digests.items()}, len(acked)), flush=True)


def check_rebuilt(c, victim):
    """The victim, restarted in the boot the rollback simulated, did not trust a state store
    with commits that never reached the disk: it discarded it and raft rebuilt it."""
    assert c.metric(victim, "tandem_state_rebuilt") == 1, "the victim kept its unsynced store"
    log = c.log_tail(victim, lines=100000)
    assert "discarding it: raft's snapshot and log rebuild the state" in log, log[-3000:]


def kill_under_load(c, victim, journal, prefix):
    """Restarts victim under the shim, kills it mid-load, rolls its files back, restarts it."""
    load = Load(c, prefix)
    load.thread.start()
    try:
        load.wait_acked(WRITES_BEFORE_KILL)
        load.down.add(victim)
        c.kill(victim)
        before = len(load.acked)
        load.wait_acked(before + WRITES_AFTER_KILL)
    finally:
        load.stop_event.set()
        load.thread.join(LOAD_SECONDS_MAX)
    print("%d writes acknowledged, %s killed after %d" % (len(load.acked), victim, before),
          flush=True)
    rollback(c, journal)
    assert os.listdir(journal) == ["boot_id"]  # the rollback's new boot
    c.start(victim, env=shim_env(c, victim, journal))  # in the boot the rollback made
    check_converged(c, load.acked)
    check_rebuilt(c, victim)


def test_follower_losing_its_unsynced_writes_rejoins_with_nothing_acknowledged_lost():
    with Cluster(topology="3", settings=SETTINGS) as c:
        leader = c.leader()
        victim = next(n for n in c.names if n != leader)
        journal = os.path.join(c.dir, "lostwrites-" + victim)
        c.stop(victim)
        c.start(victim, env=shim_env(c, victim, journal))
        kill_under_load(c, victim, journal, "follower")


def test_leader_losing_its_unsynced_writes_rejoins_with_nothing_acknowledged_lost():
    with Cluster(topology="3", settings=SETTINGS) as c:
        victim = c.settled_leader(LEADER_SETTLE_S)
        journal = os.path.join(c.dir, "lostwrites-" + victim)
        c.stop(victim)
        c.start(victim, env=shim_env(c, victim, journal))
        # The site controller may move leadership too (off the witness) while we ask: retry,
        # bounded, until the victim leads.
        answers = []
        for _ in range(TRANSFER_ATTEMPTS):
            leader = c.leader()
            if leader == victim:
                break
            status, _, body = c.api(leader, "POST", "/v1/leader/transfer",
                                    body=('{"name": "%s"}' % victim).encode(), timeout=30)
            answers.append((leader, status, body))
            time.sleep(1)
        assert c.leader() == victim, answers
        kill_under_load(c, victim, journal, "leader")


def test_a_snapshot_installed_under_the_shim_survives_the_kill_and_rollback():
    """A follower far behind catches up by an InstallSnapshot (LMDB rebuilt beside the old one
    and swapped in) while under the shim; whatever of that the kill loses, it rejoins intact."""
    with Cluster(topology="3", settings=SETTINGS) as c:
        leader = c.leader()
        victim = next(n for n in c.names if n != leader)
        journal = os.path.join(c.dir, "lostwrites-" + victim)
        c.stop(victim)
        acked = []
        for i in range(BEHIND_WRITES):
            c.kv_put(leader, "behind/%d" % i, b"v%d" % i)
            acked.append("behind/%d" % i)
        c.start(victim, env=shim_env(c, victim, journal))
        c.wait_converged(timeout=CONVERGE_TIMEOUT_S)
        restored = c.metric(victim, "tandem_snapshots_restored_total")
        assert restored >= 1, "%s caught up without a snapshot install" % victim
        for i in range(AFTER_INSTALL_WRITES):
            c.kv_put(leader, "after/%d" % i, b"a%d" % i)
            acked.append("after/%d" % i)
        c.kill(victim)
        print("%s installed %d snapshot(s) under the shim, then was killed" % (victim, restored),
              flush=True)
        rollback(c, journal)
        c.start(victim, env=shim_env(c, victim, journal))  # in the boot the rollback made
        check_converged(c, acked)
        check_rebuilt(c, victim)

if __name__ == "__main__":
    run_tests()
