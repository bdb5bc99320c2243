#!/usr/bin/env python3
"""A second tandemd started on a live node's data directory refuses before touching it: it
exits non-zero with one line naming the directory and the holder's pid, the live node's raft
files are left exactly as they were, and the node later restarts and catches up as usual.
(Without the lock the second process's raft_start closed the live node's open segments and a
later restart found the log corrupt.)"""

import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, run_tests  # noqa: E402

EXIT_TIMEOUT_S = 20


def raft_files(raft_dir):
    return sorted((name, os.path.getsize(os.path.join(raft_dir, name)))
                  for name in os.listdir(raft_dir))


def test_second_process_on_a_live_data_directory_refuses():
    with Cluster(topology="3") as c:
        leader = c.leader()
        victim = next(n for n in c.names if n != leader)
        for i in range(200):
            c.kv_put(leader, "lock/%d" % i, "value-%d" % i)
        c.wait_converged()
        data_dir = os.path.join(c.nodes[victim]["dir"], "data")
        raft_dir = os.path.join(data_dir, "raft")
        before = raft_files(raft_dir)
        conf = os.path.join(c.nodes[victim]["dir"], "tandem.conf")
        binary = os.path.join(c.bin_dir, "tandemd")
        run = subprocess.run([binary, "--config", conf], capture_output=True, text=True,
                             timeout=EXIT_TIMEOUT_S)
        assert run.returncode not in (0, -6, -11), (run.returncode, run.stderr[-2000:])
        assert "in use by another process" in run.stderr, run.stderr[-2000:]
        assert data_dir in run.stderr, run.stderr[-2000:]
        assert "pid %d" % c.nodes[victim]["pid"] in run.stderr, run.stderr[-2000:]
        assert "raft_start" not in run.stderr, run.stderr[-2000:]
        print("second tandemd refused: %s" % run.stderr.strip().splitlines()[-1], flush=True)
        assert raft_files(raft_dir) == before  # nothing closed, renamed or truncated
        # The live node goes on, and restarts cleanly with its log intact.
        for i in range(200, 300):
            c.kv_put(leader, "lock/%d" % i, "value-%d" % i)
        c.wait_converged()
        c.stop(victim)
        c.start(victim)
        c.wait_converged()
        assert c.kv_get(victim, "lock/299", local=True) == b"value-299"
        digests = c.converged_digests()
        assert len({d["state_digest"] for d in digests.values()}) == 1, digests


if __name__ == "__main__":
    run_tests()
