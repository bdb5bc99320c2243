#!/usr/bin/env python3
"""WAN timing benchmark (issue 16 item 4): in the three-place lab (deploy/lab.sh) with the
given RTTs, for each heartbeat/election timeout setting, the write gap an outside writer sees
after a leader kill, during a planned invoke, after the loss of the leader's whole site, and the
leader changes (elections: raft term increments) during a steady load. A figure, not a test:
nothing here asserts a time. Run through tests/bench/wan-timing.sh.

    TANDEM_BIN_DIR=build-dbg python3 tests/bench/wan-timing.py [--settings 75/750,50/400]
        [--rtt-ms east-west=8,witness=20] [--kills 3] [--invokes 2] [--steady-s 120]

Writers: one per surviving node (west-1, west-2, witness-1, never the killed ones) putting
unique keys back to back and retrying a refused write like a client (tests/integration/
bcp_load.py); a gap is the longest time between two consecutive acknowledgements within the
step's window (from the fault until the cluster settled again plus SETTLE_S).
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
from bcp_load import Load, bcp_status, site_names, site_of  # noqa: E402
from cluster import Cluster, wait_until  # noqa: E402

SETTLE_S = 1.5
STEP_TIMEOUT_S = 30
POLL_S = 0.2
WRITER_LIMIT_S = 1800  # every writer stops after this long whatever happens
WRITERS = ("west-1", "west-2", "witness-1")


def leader_of(c, via="witness-1"):
    status = c.status(via)
    return status["leader"] and status["leader"]["name"], status["node"]["term"]


def leader_site(c, via="witness-1"):
    name, _ = leader_of(c, via)
    return name and c.nodes[name]["site"]


def prefer_east(c):
    c.ctl("bcp", "prefer", "east")
    wait_until(lambda: leader_site(c) == "east", STEP_TIMEOUT_S, "leadership on east")


def leader_kill(c, load):
    prefer_east(c)
    time.sleep(SETTLE_S)
    victim, _ = leader_of(c)
    started = time.monotonic()
    c.kill(victim)
    wait_until(lambda: leader_of(c)[0] not in (None, victim), STEP_TIMEOUT_S, "a new leader")
    time.sleep(SETTLE_S)
    gap = load.max_gap_ms(since=started - 0.5)
    c.start(victim)
    # Under load the nodes never show one applied index: wait until the victim caught up.
    target = c.status("witness-1")["node"]["commit_index"]
    wait_until(lambda: c.status(victim)["node"]["applied_index"] >= target, STEP_TIMEOUT_S,
               "%s caught up" % victim)
    return gap


def planned_invoke(c, load):
    prefer_east(c)
    time.sleep(SETTLE_S)
    started = time.monotonic()
    c.ctl("-o", "json", "bcp", "invoke", "east", "--reason", "bench", timeout=STEP_TIMEOUT_S)
    time.sleep(SETTLE_S)
    gap = load.max_gap_ms(since=started - 0.5)
    c.ctl("-o", "json", "bcp", "revoke", "east", "--failback", timeout=STEP_TIMEOUT_S)
    wait_until(lambda: leader_site(c) == "east", STEP_TIMEOUT_S, "leadership back on east")
    return gap


def steady(c, seconds):
    """Elections (term increments) and leader changes seen by polling during seconds of load."""
    name, term0 = leader_of(c)
    changes, last, ends = 0, name, time.monotonic() + seconds
    while time.monotonic() < ends:
        time.sleep(POLL_S)
        try:
            name, term = leader_of(c)
        except OSError:
            continue
        if name and name != last:
            changes, last = changes + 1, name
    return changes, term - term0


def site_loss(c, load):
    prefer_east(c)
    time.sleep(SETTLE_S)
    started = time.monotonic()
    for name in site_names(c, "east"):
        c.kill(name)
    wait_until(lambda: leader_site(c) == "west", STEP_TIMEOUT_S, "a west leader")
    time.sleep(SETTLE_S)
    gap = load.max_gap_ms(since=started - 0.5)
    wait_until(lambda: site_of(bcp_status(c, "west-1"), "east")["state"] == "invoked",
               STEP_TIMEOUT_S, "east invoked")
    return gap


def run_setting(args, hb, et):
    settings = {"heartbeat_ms": hb, "election_timeout_ms": et}
    row = {"heartbeat_ms": hb, "election_timeout_ms": et, "rtt_ms": args.rtt_ms}
    with Cluster(lab=True, rtt_ms=args.rtt_ms, settings=settings) as c:
        load = Load([c.nodes[n]["api"] for n in WRITERS], "wan", writers_per_url=1,
                    limit_s=WRITER_LIMIT_S).start()
        try:
            row["leader_kill_gaps_ms"] = [leader_kill(c, load) for _ in range(args.kills)]
            row["invoke_gaps_ms"] = [planned_invoke(c, load) for _ in range(args.invokes)]
            row["steady_s"] = args.steady_s
            row["steady_leader_changes"], row["steady_elections"] = steady(c, args.steady_s)
            row["site_loss_gap_ms"] = site_loss(c, load)
        finally:
            load.stop()
        row["load"] = load.summary()
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", default="75/750", help="HB/ET[,HB/ET...] in ms")
    p.add_argument("--rtt-ms", default="east-west=8,witness=20")
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--invokes", type=int, default=2)
    p.add_argument("--steady-s", type=int, default=120)
    args = p.parse_args()
    rows = []
    for item in args.settings.split(","):
        hb, et = (int(x) for x in item.split("/"))
        row = run_setting(args, hb, et)
        rows.append(row)
        print("RESULT " + json.dumps(row), flush=True)
    print("\nheartbeat/election  leader-kill gap ms (max, median)  invoke gap ms (max)  "
          "site-loss gap ms  steady: leader changes / elections in s  failed writes")
    for r in rows:
        kills = r["leader_kill_gaps_ms"]
        print("%4d/%-5d           %5d %5d (%s)          %5d (%s)        %5d             "
              "%d / %d in %d s            %d"
              % (r["heartbeat_ms"], r["election_timeout_ms"], max(kills),
                 statistics.median(kills), " ".join(map(str, kills)), max(r["invoke_gaps_ms"]),
                 " ".join(map(str, r["invoke_gaps_ms"])), r["site_loss_gap_ms"],
                 r["steady_leader_changes"], r["steady_elections"], r["steady_s"],
                 r["load"]["failed"]))


if __name__ == "__main__":
    main()
