#!/usr/bin/env python3
"""Benchmark of the write gap an outside client sees when leadership fails back: N planned
invoke + revoke --failback cycles of the leader's site and N drills of it, on a local 2+2+1
cluster, with one bounded outside writer running the whole time. Prints the longest write gap
of each cycle and drill, then the median and the maximum. A figure, not a test: nothing here
asserts a time.

    TANDEM_BIN_DIR=build-dbg python3 tests/bench/failback-gap.py [--cycles N] [--drills N]

Each gap is the longest time between two consecutive acknowledged writes of the outside writer
within the window of the step (from the command being sent until it answered plus a settle
time). The writer retries a refused write (503, connection refused) like a client would; only
acknowledgements count. The drill lines also print the drill's own rto_ms for comparison.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from bcp_load import Load, bcp_status  # noqa: E402
from cluster import Cluster, wait_until  # noqa: E402

SITE = "east"
SETTLE_S = 1.0              # writer keeps going after a step answered, so a late stall is seen
STEP_TIMEOUT_S = 30
WRITER_LIMIT_WRITES = 200000  # the outside writer stops here whatever happens
WRITER_LIMIT_S = 900          # ... or after this long


def leader_site(c):
    status = c.status(c.names[-1])
    return status["leader"] and c.nodes[status["leader"]["name"]]["site"]


def cycle(c, load):
    """One planned invoke of SITE then revoke --failback; returns (invoke gap, failback gap)."""
    started = time.monotonic()
    c.ctl("-o", "json", "bcp", "invoke", SITE, "--reason", "bench", timeout=STEP_TIMEOUT_S)
    time.sleep(SETTLE_S)
    invoke_gap = load.max_gap_ms(since=started)
    started = time.monotonic()
    out = json.loads(c.ctl("-o", "json", "bcp", "revoke", SITE, "--failback",
                           timeout=STEP_TIMEOUT_S).stdout)
    wait_until(lambda: leader_site(c) == SITE, STEP_TIMEOUT_S, "leadership back on %s" % SITE)
    time.sleep(SETTLE_S)
    return invoke_gap, load.max_gap_ms(since=started), out.get("elapsed_ms")


def longest_gap_at(load, since):
    """(longest gap in ms, ms after since when it began) of the writer's acknowledgements."""
    with load.lock:
        times = sorted(t for _, t in load.acked if t >= since)
    pairs = list(zip(times, times[1:]))
    if not pairs:
        return 0, 0
    a, b = max(pairs, key=lambda p: p[1] - p[0])
    return int((b - a) * 1000), int((a - since) * 1000)


def drill(c, load, verbose):
    """One drill of SITE; returns (writer gap over the drill, the drill's rto_ms)."""
    started = time.monotonic()
    report = json.loads(c.ctl("-o", "json", "bcp", "drill", SITE, timeout=180).stdout)
    wait_until(lambda: leader_site(c) == SITE, STEP_TIMEOUT_S, "leadership back on %s" % SITE)
    time.sleep(SETTLE_S)
    if verbose:
        gap, at = longest_gap_at(load, started)
        print("  longest writer gap %d ms from %d ms; drill timeline %s" %
              (gap, at, [(e["t_ms"], e["event"]) for e in report["timeline"]]), flush=True)
    return load.max_gap_ms(since=started), report["rto_ms"], report["ok"]


def summary(label, gaps):
    if gaps:
        print("%-22s median %5d ms  max %5d ms  (n=%d)" %
              (label, statistics.median(gaps), max(gaps), len(gaps)), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--drills", type=int, default=4)
    parser.add_argument("--verbose", action="store_true",
                        help="also print where each drill's longest gap fell in its timeline")
    args = parser.parse_args()
    with Cluster(topology="2+2+1", settings={"preferred_site": SITE}) as c:
        c.leader()
        wait_until(lambda: leader_site(c) == SITE, STEP_TIMEOUT_S, "leadership on %s" % SITE)
        wait_until(lambda: all(n["home_role"] != "unknown" for s in bcp_status(c, c.names[0])
                               ["sites"] for n in s["nodes"]), 10, "home roles recorded")
        writer_urls = [c.nodes[n]["api"] for n in c.names if c.nodes[n]["site"] == "west"]
        load = Load(writer_urls, "bench", writers_per_url=1, limit_writes=WRITER_LIMIT_WRITES,
                    limit_s=WRITER_LIMIT_S).start()
        time.sleep(SETTLE_S)
        invoke_gaps, failback_gaps, drill_gaps, rtos = [], [], [], []
        try:
            for i in range(args.cycles):
                inv, fb, elapsed = cycle(c, load)
                invoke_gaps.append(inv)
                failback_gaps.append(fb)
                print("cycle %d: invoke gap %5d ms, failback gap %5d ms (revoke answered after "
                      "%s ms)" % (i + 1, inv, fb, elapsed), flush=True)
            for i in range(args.drills):
                gap, rto, ok = drill(c, load, args.verbose)
                drill_gaps.append(gap)
                rtos.append(rto)
                print("drill %d: writer gap %5d ms, drill rto_ms %5d, ok %s" % (i + 1, gap, rto, ok),
                      flush=True)
        finally:
            load.stop()
        print("writer: %s" % load.summary())
        summary("planned invoke gap", invoke_gaps)
        summary("planned failback gap", failback_gaps)
        summary("drill writer gap", drill_gaps)
        summary("drill rto_ms", rtos)


if __name__ == "__main__":
    main()
