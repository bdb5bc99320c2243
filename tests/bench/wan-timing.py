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
import calendar
import json
import os
import shutil
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


def gap_at(load, since):
    """The longest gap since `since` (monotonic) as [ms, RFC 3339 UTC start of the gap], so that
    a slow one can be found in the nodes' logs."""
    with load.lock:
        times = sorted(t for _, t in load.acked if t >= since)
    if len(times) < 2:
        return [0, None]
    a, b = max(zip(times, times[1:]), key=lambda p: p[1] - p[0])
    wall = a - time.monotonic() + time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + ".%03dZ" % (wall % 1 * 1000)
    return [int((b - a) * 1000), stamp]


def log_times(c, text, since_wall):
    """Wall-clock times (seconds) of the nodes' log lines at or after since_wall that contain
    text; tandemd stamps its lines in RFC 3339 UTC with milliseconds."""
    times = []
    for name in c.names:
        try:
            with open(os.path.join(c.dir, name, "tandemd.log"), errors="replace") as f:
                for line in f:
                    if text in line and line[:4].isdigit():
                        t = calendar.timegm(time.strptime(line[:19], "%Y-%m-%dT%H:%M:%S"))
                        t += int(line[20:23]) / 1000
                        if t >= since_wall:
                            times.append(t)
        except (FileNotFoundError, ValueError):
            pass
    return sorted(times)


def gap_across(load, wall):
    """The gap between the last acknowledgement before wall (wall-clock) and the first after:
    the writes a leadership transfer started at wall held, as the writers saw them."""
    mono = wall - time.time() + time.monotonic()
    with load.lock:
        times = sorted(t for _, t in load.acked)
    before = [t for t in times if t <= mono]
    after = [t for t in times if t > mono]
    return int((after[0] - before[-1]) * 1000) if before and after else None


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
    victim, term0 = leader_of(c)
    started = time.monotonic()
    c.kill(victim)

    def new_leader():
        name, term = leader_of(c)
        return (name, term) if name not in (None, victim) else None
    winner, term = wait_until(new_leader, STEP_TIMEOUT_S, "a new leader")
    time.sleep(SETTLE_S)
    gap, at = gap_at(load, started - 0.5)
    # Election rounds: the term increments until the first new leader was seen (one is a clean
    # election; more is a split vote or a lost candidacy).
    print("leader-kill gap %d ms at %s (%s killed; %s won after %d election round(s))"
          % (gap, at, victim, winner, term - term0), flush=True)
    load.kill_rounds.append(term - term0)
    c.start(victim)
    # Under load the nodes never show one applied index: wait until the victim caught up.
    target = c.status("witness-1")["node"]["commit_index"]
    wait_until(lambda: c.status(victim)["node"]["applied_index"] >= target, STEP_TIMEOUT_S,
               "%s caught up" % victim)
    return gap


def planned_invoke(c, load):
    prefer_east(c)
    time.sleep(SETTLE_S)
    started, started_wall = time.monotonic(), time.time()
    c.ctl("-o", "json", "bcp", "invoke", "east", "--reason", "bench", timeout=STEP_TIMEOUT_S)
    time.sleep(SETTLE_S)
    gap, at = gap_at(load, started - 0.5)
    # The gap across the moment the site controller called raft_transfer: the invoke's own
    # share of the window's longest gap (which also holds the machine's stalls, see steady).
    transfers = log_times(c, "site controller: raft_transfer to", started_wall)
    across = gap_across(load, transfers[0]) if transfers else None
    load.transfer_gaps.append(across)
    print("invoke gap %d ms at %s; across raft_transfer %s ms" % (gap, at, across), flush=True)
    c.ctl("-o", "json", "bcp", "revoke", "east", "--failback", timeout=STEP_TIMEOUT_S)
    wait_until(lambda: leader_site(c) == "east", STEP_TIMEOUT_S, "leadership back on east")
    return gap


def window_gaps(load, since, until, window_s=3.0):
    """The longest gap in each window_s slice of [since, until): the gap a step of this bench
    would measure with no fault at all (the machine's own stalls)."""
    gaps, t = [], since
    while t + window_s <= until:
        gaps.append(load.max_gap_ms(since=t, until=t + window_s))
        t += window_s
    return sorted(gaps)


def steady(c, seconds, load):
    """Elections (term increments) and leader changes seen by polling during seconds of load,
    and the write gaps of that quiet time (the noise floor of the other steps' gaps)."""
    name, term0 = leader_of(c)
    started = time.monotonic()
    changes, last, ends = 0, name, started + seconds
    while time.monotonic() < ends:
        time.sleep(POLL_S)
        try:
            name, term = leader_of(c)
        except OSError:
            continue
        if name and name != last:
            changes, last = changes + 1, name
    gaps = window_gaps(load, started, time.monotonic())
    floor = {"max_gap_ms": load.max_gap_ms(since=started),
             "window_gap_p50_ms": gaps[len(gaps) // 2] if gaps else None,
             "window_gap_p90_ms": gaps[len(gaps) * 9 // 10] if gaps else None}
    print("steady: %d leader changes, %d elections in %d s; gaps per 3 s: p50 %s ms, p90 %s ms, "
          "max %d ms" % (changes, term - term0, seconds, floor["window_gap_p50_ms"],
                         floor["window_gap_p90_ms"], floor["max_gap_ms"]), flush=True)
    return changes, term - term0, floor


def site_loss(c, load):
    prefer_east(c)
    time.sleep(SETTLE_S)
    _, term0 = leader_of(c)
    started = time.monotonic()
    for name in site_names(c, "east"):
        c.kill(name)

    def west_leader():
        name, term = leader_of(c)
        return (name, term) if name and c.nodes[name]["site"] == "west" else None
    winner, term = wait_until(west_leader, STEP_TIMEOUT_S, "a west leader")
    time.sleep(SETTLE_S)
    gap, at = gap_at(load, started - 0.5)
    # The term rises once per election round, and once more when the witness won and the
    # site controller then moved leadership to west.
    print("site-loss gap %d ms at %s (%s leads; term +%d)" % (gap, at, winner, term - term0),
          flush=True)
    wait_until(lambda: site_of(bcp_status(c, "west-1"), "east")["state"] == "invoked",
               STEP_TIMEOUT_S, "east invoked")
    return gap


def keep_logs(c, into, tag):
    """Copies every node's tandemd.log to INTO/TAG/NAME.log before the lab is taken down."""
    os.makedirs(os.path.join(into, tag), exist_ok=True)
    for name in c.names:
        src = os.path.join(c.dir, name, "tandemd.log")
        if os.path.exists(src):
            shutil.copy(src, os.path.join(into, tag, name + ".log"))


def log_count(c, text):
    """Lines of every node's tandemd.log that contain text."""
    n = 0
    for name in c.names:
        try:
            with open(os.path.join(c.dir, name, "tandemd.log"), errors="replace") as f:
                n += sum(1 for line in f if text in line)
        except FileNotFoundError:
            pass
    return n


def run_setting(args, hb, et):
    settings = {"heartbeat_ms": hb, "election_timeout_ms": et}
    row = {"heartbeat_ms": hb, "election_timeout_ms": et, "rtt_ms": args.rtt_ms}
    with Cluster(lab=True, rtt_ms=args.rtt_ms, settings=settings) as c:
        load = Load([c.nodes[n]["api"] for n in WRITERS], "wan", writers_per_url=1,
                    limit_s=WRITER_LIMIT_S).start()
        load.kill_rounds, load.transfer_gaps = [], []
        try:
            row["leader_kill_gaps_ms"] = [leader_kill(c, load) for _ in range(args.kills)]
            row["leader_kill_election_rounds"] = load.kill_rounds
            row["invoke_gaps_ms"] = [planned_invoke(c, load) for _ in range(args.invokes)]
            row["invoke_transfer_gaps_ms"] = load.transfer_gaps
            row["steady_s"] = args.steady_s
            (row["steady_leader_changes"], row["steady_elections"],
             row["steady_gaps"]) = steady(c, args.steady_s, load)
            row["site_loss_gap_ms"] = site_loss(c, load)
        finally:
            load.stop()
            # The site controller's transfers (node/bcp: consensus/site_controller.c): started
            # before the target held the last entry, and TimeoutNows it sent again for those.
            row["transfers"] = log_count(c, "site controller: leadership moved to")
            row["transfers_early"] = log_count(c, "started before it held the last entry")
            row["timeout_now_resent"] = log_count(c, "TimeoutNow sent again")
            if args.keep_logs:
                keep_logs(c, args.keep_logs, "%d-%d" % (hb, et))
        row["load"] = load.summary()
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", default="75/750", help="HB/ET[,HB/ET...] in ms")
    p.add_argument("--rtt-ms", default="east-west=8,witness=20")
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--invokes", type=int, default=2)
    p.add_argument("--steady-s", type=int, default=120)
    p.add_argument("--keep-logs", metavar="DIR", help="copy the nodes' logs to DIR/HB-ET/")
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
