#!/usr/bin/env python3
"""A corrupt raft log segment stops the node with a clear message instead of being renamed away
and silently rolling the log back (raft_uv auto-recovery is off), and the node's files are left
as they were for an operator to look at or re-seed. A segment libraft 0.22.1 failed to close
while it closed later ones stops the node too, and its restart closes it into its gap
(consensus/log_repair.h)."""

import glob
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, pid_alive, run_tests, wait_until  # noqa: E402
from sanitizers import log_since_last_start  # noqa: E402

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


LEFT_OPEN_SETTINGS = {"segment_size_kib": 64, "batch_bytes_max_kib": 16, "body_bytes_max_kib": 16}
LEFT_OPEN_VALUE = "z" * 4000
GAP_STOP_TIMEOUT_S = 30  # two looks 5 s apart (consensus/log_repair.h), with room


def test_segment_left_open_stops_the_node_and_is_closed_at_start():
    """libraft 0.22.1, when closing a full segment fails (EMFILE, a disk error), goes on closing
    the next ones, and its next start refuses the log ("unexpected closed segment"). A segment
    of the middle of a running follower's log is put back that way (renamed open, its whole
    length): tandemd's watch sees the gap stay and stops the node (before a snapshot's trailing
    could remove the segments around the gap), its restart closes the segment into its gap and
    says so, and the node rejoins with the cluster's digest."""
    with Cluster(topology="3", settings=LEFT_OPEN_SETTINGS) as c:
        leader = c.leader()
        victim = next(n for n in c.names if n != leader)
        for i in range(150):  # 600 KB of values: about ten segments of 64 KiB
            c.kv_put(leader, "open/%d" % i, LEFT_OPEN_VALUE)
        c.wait_converged()
        raft_dir = os.path.join(c.nodes[victim]["dir"], "data", "raft")
        segments = closed_segments(raft_dir)
        assert len(segments) >= 4, os.listdir(raft_dir)
        # raft_uv numbers a start's open segments from 1: segment 1 was closed long ago, as
        # the one left behind would have been the oldest open one.
        left_open = os.path.join(raft_dir, "open-1")
        assert not os.path.exists(left_open), os.listdir(raft_dir)
        middle = segments[len(segments) // 2]
        os.rename(middle, left_open)
        os.truncate(left_open, LEFT_OPEN_SETTINGS["segment_size_kib"] * 1024)
        pid = c.nodes[victim]["pid"]
        wait_until(lambda: not pid_alive(pid), GAP_STOP_TIMEOUT_S,
                   "%s stopping on the gap in its raft log" % victim)
        log = log_since_last_start(c, victim)
        assert "fatal: raft log: entries" in log and "failed to close" in log, log[-3000:]
        c.kv_put(leader, "while-stopped", "x")
        c.start(victim)
        log = log_since_last_start(c, victim)
        assert "raft log: closed 1 open segment" in log, log[-3000:]
        assert os.path.basename(middle) in log, log[-3000:]
        print(next(line for line in log.splitlines() if "raft log: closed" in line), flush=True)
        # Back under its closed name, cut where its entries end (raft_uv's own open-1 may be
        # there again: its counters start at 1 on every start).
        assert os.path.getsize(middle) < LEFT_OPEN_SETTINGS["segment_size_kib"] * 1024
        c.kv_put(leader, "after", "ok")
        c.wait_converged(timeout=60)
        digests = c.converged_digests()
        assert len({d["state_digest"] for d in digests.values()}) == 1, digests
        body = c.kv_get(victim, "open/75", local=True)
        assert body is not None and LEFT_OPEN_VALUE.encode() in body, body

if __name__ == "__main__":
    run_tests()
