#!/usr/bin/env python3
"""Which part of a snapshot slows the writes beside it (issue 17: write p99 during a snapshot).
A 2+2+1 cluster (insecure: a benchmark) at its default thresholds is preloaded with --keys keys,
then, round after round, each kind of background work runs beside one 2 s window of the small
open-loop load scale.py measures (500 writes/s, 8 connections) against the leader:

  quiet      nothing
  cpu        a busy loop at nice 10 (the CPU a snapshot takes, at pool_nice's priority)
  disk       a file written at the disk's pace, 8 MiB steps started and waited for as
             storage/writeback.c does
  disk-64    the same, capped at 64 MiB/s
  snap-mem   micro_snapshot of the leader's state into memory (another process: a read
             transaction held, the walk and its hashing, no file)
  snap-file  micro_snapshot of it into a file (the walk, the hashing, the file paced as tandemd
             writes one)

The order of the kinds is shuffled in every round (a fixed seed), a kind's work starts 1 s before
its window and is stopped after it, and a window at whose start or end a node of the cluster was
itself taking a snapshot (tandem_snapshot_taking) is dropped. Prints each kind's p99: median and worst of its
windows, and the median against quiet's. A figure, not a test: nothing here asserts a time.

    TANDEM_BIN_DIR=build-rel python3 tests/bench/contention.py [--keys N] [--rounds N]
"""

import argparse
import os
import random
import subprocess
import sys
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from cluster import Cluster  # noqa: E402
import scale  # noqa: E402

WORK_S = 4          # each kind's work runs this long: 1 s before the window, 2 s of it, 1 s spare
SETTLE_S = 1.0
SEED = 17

# A paced sequential writer in the manner of storage/writeback.c: argv: path, seconds, MiB/s cap
# (0: none). Rewrites its file from the start past 1 GiB so that the disk, not its size, bounds it.
WRITER = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL("libc.so.6", use_errno=True)
sfr = libc.sync_file_range
sfr.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
WRITE, WAIT_ALL, STEP = 2, 7, 8 << 20
path, seconds, cap = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]) * 1048576
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
chunk = b"x" * (1 << 20)
begin = time.monotonic()
end = begin + seconds
done = started = total = 0
while time.monotonic() < end:
    os.write(fd, chunk)
    done += len(chunk)
    total += len(chunk)
    if done - started >= STEP:
        sfr(fd, started, STEP, WRITE)
        if started >= STEP:
            sfr(fd, started - STEP, STEP, WAIT_ALL)
        started += STEP
        if cap > 0:
            ahead = total / cap - (time.monotonic() - begin)
            if ahead > 0:
                time.sleep(ahead)
    if done >= 1 << 30:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, 0)
        done = started = 0
os.close(fd)
os.unlink(path)
"""


def start_work(kind, bin_dir, state_dir, scratch):
    """The background work of kind as a process (None for quiet)."""
    nice = ["nice", "-n", "10"]
    if kind == "quiet":
        return None
    if kind == "cpu":
        return subprocess.Popen(["timeout", str(WORK_S)] + nice + ["sh", "-c", "while :; do :; done"])
    if kind in ("disk", "disk-64"):
        cap = "64" if kind == "disk-64" else "0"
        return subprocess.Popen(nice + [sys.executable, "-c", WRITER, scratch, str(WORK_S), cap])
    micro = os.path.join(bin_dir, "micro_snapshot")
    if kind == "snap-mem":
        loop = "while :; do %s %s >/dev/null; done" % (micro, state_dir)
    else:
        loop = "while :; do rm -f %s; %s %s %s >/dev/null; done; " % (scratch, micro, state_dir,
                                                                      scratch)
    return subprocess.Popen(["timeout", str(WORK_S)] + nice + ["sh", "-c", loop])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=600000)
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    bin_dir = os.environ.get("TANDEM_BIN_DIR")
    kinds = ["quiet", "cpu", "disk", "disk-64", "snap-mem", "snap-file"]
    results = {k: [] for k in kinds}
    dropped = 0
    rng = random.Random(SEED)
    with Cluster("2+2+1", insecure=True, bin_dir=bin_dir) as c:
        leader = c.settled_leader()
        endpoint = c.nodes[leader]["api"]
        nodes = [scale.Node(c, n) for n in c.names]
        scale.bench(bin_dir, endpoint, "--connections", 128, "--ops", args.keys, "--keys",
                    args.keys, "--key-order", "sequential", "--value-size", 256, timeout=1800)
        state_dir = os.path.join(c.nodes[leader]["dir"], "data", "state")
        scratch = os.path.join(c.dir, "contention.tmp")

        watch = scale.SnapshotWatch(nodes, leader)  # look(): the nodes taking one now

        for rnd in range(args.rounds):
            order = list(kinds)
            rng.shuffle(order)
            line = []
            for kind in order:
                before = watch.look()
                work = start_work(kind, bin_dir, state_dir, scratch)
                time.sleep(1.0)
                p99 = scale.window_p99(bin_dir, endpoint)
                if work is not None:
                    work.wait(timeout=WORK_S + 120)
                if os.path.exists(scratch):
                    os.unlink(scratch)
                if before or watch.look() or p99 is None:
                    dropped += 1
                    line.append("%s dropped" % kind)
                else:
                    results[kind].append(p99)
                    line.append("%s %.1f" % (kind, p99))
                time.sleep(SETTLE_S)
            print("round %d: %s" % (rnd + 1, ", ".join(line)), flush=True)
    quiet = sorted(results["quiet"])
    base = scale.median(quiet) if quiet else None
    print("write p99 (%d/s, %d s windows) beside each kind of work, %d windows dropped (a node "
          "was taking a snapshot):" % (scale.WINDOW_RATE, scale.WINDOW_S, dropped))
    for kind in kinds:
        values = sorted(results[kind])
        if not values:
            print("  %-9s n/a (no window)" % kind)
            continue
        mid = scale.median(values)
        print("  %-9s median %6.1f ms, worst %6.1f ms of %d windows%s" % (
            kind, mid, values[-1], len(values),
            "" if base is None or kind == "quiet" else ", %.1fx quiet's median" % (mid / base)))
    print("command: TANDEM_BIN_DIR=%s python3 tests/bench/contention.py --keys %d --rounds %d"
          % (bin_dir, args.keys, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
