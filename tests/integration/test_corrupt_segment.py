#!/usr/bin/env python3
"""A corrupt raft log segment stops the node with a clear message instead of being renamed away
and silently rolling the log back (raft_uv auto-recovery is off), and the node's files are left
as they were for an operator to look at or re-seed."""

import glob
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, run_tests  # noqa: E402

EXIT_TIMEOUT_S = 20


def closed_segments(raft_dir):
    return sorted(p for p in glob.glob(os.path.join(raft_dir, "*-*"))
                  if os.path.basename(p).replace("-", "").isdigit())


def test_corrupt_segment_stops_the_node():
    with Cluster(topology="3") as c:
        leader = c.leader()
        victim = next(n for n in c.names if n != leader)
        for i in range(60):
            c.kv_put(leader, "seg/%d" % i, "value-%d" % i)
        c.wait_converged()
        c.stop(victim)  # SIGTERM: the open segment is closed on the way out
        raft_dir = os.path.join(c.nodes[victim]["dir"], "data", "raft")
        segments = closed_segments(raft_dir)
        assert segments, os.listdir(raft_dir)
        target = max(segments, key=os.path.getsize)
        size = os.path.getsize(target)
        with open(target, "r+b") as f:  # flip bytes inside the entries, past the headers
            f.seek(size // 2)
            data = f.read(8)
            f.seek(size // 2)
            f.write(bytes(b ^ 0xFF for b in data))
        before = sorted(os.listdir(raft_dir))
        conf = os.path.join(c.nodes[victim]["dir"], "tandem.conf")
        binary = os.path.join(c.bin_dir, "tandemd")
        run = subprocess.run([binary, "--config", conf], capture_output=True, text=True,
                             timeout=EXIT_TIMEOUT_S)
        assert run.returncode not in (0, -11), (run.returncode, run.stderr[-2000:])
        log = run.stderr
        assert "raft_start" in log and "AddressSanitizer" not in log, log[-2000:]
        print("tandemd refused to start: %s" % log.strip().splitlines()[-1], flush=True)
        after = sorted(os.listdir(raft_dir))
        assert after == before, (before, after)  # nothing renamed or truncated away
        assert os.path.getsize(target) == size
        # The rest of the cluster goes on.
        c.kv_put(leader, "after", "ok")
        time.sleep(0.1)


if __name__ == "__main__":
    run_tests()
