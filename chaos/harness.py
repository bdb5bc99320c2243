"""The chaos run (chaos/run.sh): a local 2+2+1 cluster of real tandemd processes, the list-append
and domain workloads, seeded faults from chaos/faults.py, then the healed cluster's final state,
the history and the node logs in a run directory, judged by chaos/check.py. With --lab the
cluster runs in the three-place lab (deploy/lab.sh: a network namespace per site, the sites
joined through emulated WAN links) instead of on loopback.

    chaos/run.sh --seconds 60 --seed 7 [--faults kill,pause,...] [--out DIR] [--bin-dir DIR]
                 [--set KEY=VALUE ...] [--keep] [--force]
                 [--lab [--rtt-ms east-west=8,witness=20] [--loss PCT]]

Exit status: the checker's (0 valid, 1 anomaly, 2 unreadable run); 3 when chaos/check.py is
missing; 4 when the harness itself failed (the cluster did not start, say); 2 for bad arguments.
See chaos/README.md.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
CHAOS_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(CHAOS_DIR)
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))

from append import AppendWorker, Values, keys  # noqa: E402
from client import REQUEST_TIMEOUT_S  # noqa: E402
from cluster import Cluster, ClusterError, exit_code  # noqa: E402
from domain import DomainWorker, SiteModel  # noqa: E402
from faults import FAULT_KINDS, Nemesis  # noqa: E402
from final import collect  # noqa: E402
from history import History  # noqa: E402
from labnet import LabNet  # noqa: E402
from netcut import NetCut  # noqa: E402

APPEND_WORKERS = 4
APPEND_PAUSE_S = 0.05
DOMAIN_WORKERS_PER_SITE = 2
DOMAIN_PAUSE_S = 0.1
# A snapshot every 64 entries and only 128 kept after it (the least LIBRAFT-NOTES.md advises: 2x),
# so snapshots are taken all the time and a node down for a second catches up by InstallSnapshot.
SNAPSHOT_HEAVY = {"snapshot_threshold": 64, "snapshot_trailing": 128}
NEMESIS_JOIN_S = 200        # a drill running at the end may take this long
NEMESIS_ABORT_JOIN_S = 30   # a fault step under way when the run is cut short
RECOVER_END_S = 90
SECONDS_MAX = 24 * 3600
CHECKER_MISSING = 3
HARNESS_FAILED = 4
# Fault kinds a lab run leaves out, and why (chaos/labnet.py): printed at the start of the run and
# listed under "unavailable faults" in its summary and final.json.
LAB_UNAVAILABLE = {
    "partition_node": "the lab cuts the WAN links between sites, so one node cannot be cut from "
                      "the other node of its own site: run it on loopback (without --lab)",
}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="chaos/run.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, required=True, help="workload time, 1..%d" % SECONDS_MAX)
    p.add_argument("--seed", type=int, required=True, help="seed of every random choice")
    p.add_argument("--faults", default="all",
                   help="comma-separated fault kinds, 'all' (default) or 'none': %s"
                   % ",".join(FAULT_KINDS))
    p.add_argument("--out", help="run directory (default: a new one under the temp dir)")
    p.add_argument("--bin-dir", help="tandemd/tandemctl (default: TANDEM_BIN_DIR or build/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a tandem.conf setting for every node (repeatable; after snapshot_heavy's)")
    p.add_argument("--keep", action="store_true", help="keep the cluster's data in RUN/cluster")
    p.add_argument("--force", action="store_true", help="replace a run already in --out")
    p.add_argument("--lab", action="store_true",
                   help="run the cluster in the three-place lab (deploy/lab.sh; needs root)")
    p.add_argument("--rtt-ms", help="with --lab: the links' round-trip times, lab.sh's --rtt-ms "
                   "(default east-west=8,witness=20)")
    p.add_argument("--loss", help="with --lab: lab.sh's --loss PCT on every link")
    args = p.parse_args(argv)
    if not args.lab and (args.rtt_ms is not None or args.loss is not None):
        p.error("--rtt-ms and --loss are lab settings: add --lab")
    if args.lab and os.geteuid() != 0:
        p.error("--lab needs root (network namespaces, veth links, nftables)")
    if not 1 <= args.seconds <= SECONDS_MAX:
        p.error("--seconds must be 1..%d, not %d" % (SECONDS_MAX, args.seconds))
    if args.faults == "all":
        args.faults = list(FAULT_KINDS)
    elif args.faults == "none":
        args.faults = []
    else:
        args.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
        unknown = [f for f in args.faults if f not in FAULT_KINDS]
        if unknown or not args.faults:
            p.error("unknown fault kind(s) %s; known: %s"
                    % (",".join(unknown) or "(none given)", ",".join(FAULT_KINDS)))
    args.settings = dict(SNAPSHOT_HEAVY) if "snapshot_heavy" in args.faults else {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error("--set needs KEY=VALUE, not %r" % item)
        args.settings[key] = value
    args.bin_dir = os.path.abspath(args.bin_dir or os.environ.get("TANDEM_BIN_DIR")
                                   or os.path.join(SOURCE_DIR, "build"))
    if not os.access(os.path.join(args.bin_dir, "tandemd"), os.X_OK):
        p.error("no tandemd in %s: build first or pass --bin-dir" % args.bin_dir)
    return args


def make_run_dir(args):
    if args.out is None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return tempfile.mkdtemp(prefix="tandem-chaos-%d-%s-" % (args.seed, stamp))
    run = os.path.abspath(args.out)
    if os.path.exists(os.path.join(run, "history.jsonl")):
        if not args.force:
            sys.exit("chaos/run.sh: %s already holds a run (pass --force to replace it)" % run)
        shutil.rmtree(run)
    os.makedirs(run, exist_ok=True)
    return run


def start_workers(cluster, history, seed, stop, deadline):
    """The append and domain client threads, started; returns (workers, site models)."""
    AppendWorker.values = Values()
    models = {site: SiteModel(site) for site in ("east", "west")}
    total = APPEND_WORKERS + DOMAIN_WORKERS_PER_SITE * len(models)
    common = dict(processes=total, history=history, cluster=cluster, seed=seed, stop=stop,
                  deadline=deadline)
    workers = [AppendWorker("append-%d" % i, i, pause_s=APPEND_PAUSE_S, **common)
               for i in range(APPEND_WORKERS)]
    for site, model in models.items():
        for i in range(DOMAIN_WORKERS_PER_SITE):
            w = DomainWorker("domain-%s-%d" % (site, i), len(workers), pause_s=DOMAIN_PAUSE_S,
                             **common)
            w.model = model
            workers.append(w)
    for w in workers:
        w.start()
    return workers, models


def run_phase(args, c, net, history, run, work_dir, unavailable):
    """Workloads and faults for args.seconds, then the heal; returns (nemesis, models, errors).
    unavailable: fault kind -> why it cannot run on this cluster (left out, and reported)."""
    stop = threading.Event()
    deadline = time.monotonic() + args.seconds
    workers, models = start_workers(c, history, args.seed, stop, deadline)
    nemesis = Nemesis(c, net, history, args.seed, args.faults, deadline, stop, work_dir,
                      unavailable)
    nemesis.start()
    try:
        stop.wait(max(0, deadline - time.monotonic()))
    except BaseException:  # SIGTERM or ^C: the nemesis must not restart nodes during teardown
        nemesis.abort.set()
        stop.set()
        nemesis.join(NEMESIS_ABORT_JOIN_S)
        raise
    stop.set()
    history.note("workload time over: stopping the clients and the nemesis")
    errors = []
    for w in workers:
        w.join(REQUEST_TIMEOUT_S * 3)
        if w.is_alive() or w.error:
            errors.append(w.error or "worker %s did not stop" % w.name)
    nemesis.join(NEMESIS_JOIN_S)
    if nemesis.is_alive():
        errors.append("the nemesis did not stop within %ds" % NEMESIS_JOIN_S)
    if "snapshot_heavy" in args.faults:
        history.fault("snapshot_heavy", c.names, 0, history.now_ms(),
                      " ".join("%s=%s" % (k, args.settings[k]) for k in SNAPSHOT_HEAVY))
    history.note("healing: every fault ended, dead nodes restarted, sites revoked")
    if not nemesis.recover(timeout=RECOVER_END_S):
        errors.append("the cluster did not recover within %ds of the end" % RECOVER_END_S)
    return nemesis, models, errors


def exit_text(code):
    """"exit 3", "signal 11 (Segmentation fault)" or "unknown" for an exit status."""
    if code is None:
        return "unknown"
    if code < 0:
        return "signal %d (%s)" % (-code, signal.strsignal(-code))
    return "exit %d" % code


def note_crashes(run, crashes):
    """Appends to RUN/nodes/NAME.log one line per death no fault caused: a node killed by a
    signal (SIGSEGV without a sanitizer) leaves nothing in its own log otherwise."""
    for name, codes in crashes.items():
        with open(os.path.join(run, "nodes", name + ".log"), "a") as f:
            for code in codes:
                f.write("chaos harness: %s died without a fault: %s\n" % (name, exit_text(code)))


def stop_cluster(c, run, keep):
    """Stops every node gracefully (SIGTERM), copies the logs to RUN/nodes/; returns the nodes
    part of final.json."""
    pids = {n: c.nodes[n]["pid"] for n in c.names}
    c.script("down", c.dir)
    os.makedirs(os.path.join(run, "nodes"), exist_ok=True)
    data_root = os.path.join(run, "cluster") if keep else c.dir
    nodes = {}
    for name in c.names:
        log = os.path.join(run, "nodes", name + ".log")
        try:
            shutil.copyfile(os.path.join(c.nodes[name]["dir"], "tandemd.log"), log)
        except OSError as e:
            with open(log, "w") as f:
                f.write("(harness: no log: %s)\n" % e)
        nodes[name] = {"log": log, "data_dir": os.path.join(data_root, name, "data"),
                       "exit": exit_code(pids[name]) if pids[name] else None}
    if keep:
        shutil.copytree(c.dir, data_root, symlinks=True)
    return nodes


def run_cluster(args, run, history):
    """Everything that needs the cluster; returns the final.json document."""
    settings = args.settings
    work_dir = tempfile.mkdtemp(prefix="tandem-chaos-work-")
    unavailable = {}
    if args.lab:
        cluster = Cluster(topology="2+2+1", lab=True, rtt_ms=args.rtt_ms, loss_pct=args.loss,
                          settings=settings, bin_dir=args.bin_dir)
        unavailable = {k: v for k, v in LAB_UNAVAILABLE.items() if k in args.faults}
        for kind, why in unavailable.items():
            print("chaos: fault %s is not run in the lab: %s" % (kind, why), flush=True)
    else:
        cluster = Cluster(topology="2+2+1", isolate=True, settings=settings,
                          bin_dir=args.bin_dir)
    try:
        with cluster as c, (LabNet(c) if args.lab else NetCut(c)) as net:
            history.note("cluster up in %s%s (settings %s); seed %d, faults %s"
                         % (c.dir, " (lab: rtt %s, loss %s)" % (args.rtt_ms or "default",
                                                               args.loss or "0")
                            if args.lab else "", settings or "default", args.seed,
                            ",".join(args.faults)))
            nemesis, models, errors = run_phase(args, c, net, history, run, work_dir,
                                                unavailable)
            refs = set().union(*(m.touched for m in models.values()))
            history.note("reading the final state of %d keys and %d objects"
                         % (len(keys()), len(refs)))
            final = collect(c, refs, errors)
            final["nodes"] = stop_cluster(c, run, args.keep)
            for name, codes in nemesis.crashes.items():
                final["nodes"][name]["crashes"] = codes
            note_crashes(run, nemesis.crashes)
            final["errors"] = errors + nemesis.errors
            final["unavailable_faults"] = nemesis.unavailable
            return final
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def run_checker(run):
    checker = os.path.join(CHAOS_DIR, "check.py")
    if not os.path.exists(checker):
        print("chaos: the checker chaos/check.py is missing: the run is not judged", flush=True)
        return CHECKER_MISSING, None
    rc = subprocess.run([sys.executable, checker, run]).returncode
    try:
        with open(os.path.join(run, "report.json")) as f:
            return rc, json.load(f)
    except (OSError, ValueError):
        return rc, None


def summary(args, run, history, final, rc, report):
    faults = ", ".join("%s %d" % kv for kv in sorted(history.fault_counts.items())) or "none"
    if report is not None:
        verdict = "valid" if report.get("valid") else "INVALID: %d anomalies" % len(
            report.get("anomalies", []))
    else:
        verdict = "not judged" if rc == CHECKER_MISSING else "checker exit %d" % rc
    crashes = {n: v["crashes"] for n, v in final.get("nodes", {}).items() if v.get("crashes")}
    place = "lab (rtt %s, loss %s%%)" % (args.rtt_ms or "east-west=8,witness=20",
                                         args.loss or "0") if args.lab else "loopback"
    lines = ["chaos run: seed %d, %d s, %s, faults enabled: %s" % (
                 args.seed, args.seconds, place, ",".join(args.faults) or "none"),
             "operations %d: ok %d, fail %d, info %d" % (
                 history.total(), history.counts["ok"], history.counts["fail"],
                 history.counts["info"]),
             "faults: %s" % faults,
             "unavailable faults: %s" % (final.get("unavailable_faults") or "none"),
             "longest gap between acknowledged appends: %d ms" % history.longest_write_gap_ms,
             "crashes: %s" % (crashes or "none"),
             "harness errors: %s" % (final.get("errors") or "none"),
             "verdict: %s (exit %d)" % (verdict, rc),
             "run directory: %s (report: %s)" % (run, os.path.join(run, "report.html"))]
    print("\n".join(lines), flush=True)


def terminated(signum, frame):
    """SIGTERM (ctest's timeout, say) ends the run through the normal teardown: the cluster's
    processes, cgroups and nftables table are removed however the run stops."""
    raise SystemExit(128 + signum)


def main(argv):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, terminated)
    run = make_run_dir(args)
    history = History(os.path.join(run, "history.jsonl"))
    try:
        final = run_cluster(args, run, history)
    except (ClusterError, OSError, subprocess.SubprocessError) as e:
        print("chaos: the harness failed, the run is not judged: %s: %s"
              % (type(e).__name__, e), file=sys.stderr, flush=True)
        return HARNESS_FAILED
    finally:
        history.close()
    final = dict({"seed": args.seed, "seconds": args.seconds, "faults": args.faults,
                  "started": history.started}, **final)
    with open(os.path.join(run, "final.json"), "w") as f:
        json.dump(final, f, indent=1)
        f.write("\n")
    rc, report = run_checker(run)
    summary(args, run, history, final, rc, report)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
