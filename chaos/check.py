#!/usr/bin/env python3
"""Decides a chaos run: checks RUN/history.jsonl and RUN/final.json (list-append and domain
histories, digests, node logs, core files, exits) and writes RUN/report.json and RUN/report.html.

usage: chaos/check.py RUN
exit status: 0 the run is valid, 1 an anomaly was found, 2 the run cannot be read (one line on
stderr names the problem). The rules are in chaos/README.md ("Checker and report")."""

import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from checker import domain, health, listappend, page, runfile, stats, trace_order  # noqa: E402
from checker.anomalies import Anomalies  # noqa: E402


def decide(run):
    """The report of a loaded run (report.json's content)."""
    anomalies = Anomalies()
    health.check_errors(run, anomalies)
    keys = listappend.check(run, anomalies)
    objects = domain.check(run, anomalies)
    trace_order.check(domain.Domain(run), anomalies)
    health.check_digests(run, anomalies)
    logs = health.check_logs(run, anomalies)
    health.check_cores(run, anomalies)
    health.check_exits(run, anomalies)
    final = run.final
    return {
        "valid": len(anomalies) == 0,
        "anomalies": anomalies.listed,
        "anomaly_counts": dict(sorted(anomalies.counts.items())),
        "stats": stats.compute(run),
        "run": {"path": os.path.abspath(run.path), "seed": final.get("seed"),
                "seconds": final.get("seconds"), "faults": final.get("faults"),
                "started": final.get("started"),
                "unavailable_faults": final.get("unavailable_faults") or {}},
        "checked": {"keys": keys, "objects": objects, "logs": logs,
                    "nodes": sorted(final["nodes"]), "digests": sorted(final["digests"])},
    }


def _write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv):
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: chaos/check.py RUN (a chaos run directory)", file=sys.stderr)
        return 2
    try:
        run = runfile.load(argv[0])
    except runfile.RunError as e:
        print(f"check.py: cannot read the run: {e}", file=sys.stderr)
        return 2
    try:
        report = decide(run)
        html = page.render(run, report)
    except Exception as e:  # a shape the reader let through: never mistaken for a verdict
        print(f"check.py: cannot judge the run: {type(e).__name__}: {e} (a checker bug, or a "
              "run whose final.json holds values of unexpected types)", file=sys.stderr)
        return 2
    try:
        _write(os.path.join(run.path, "report.json"), json.dumps(report, indent=1) + "\n")
        _write(os.path.join(run.path, "report.html"), html)
    except OSError as e:
        print(f"check.py: cannot write the report: {e}", file=sys.stderr)
        return 2
    s = report["stats"]
    verdict = "valid" if report["valid"] else "INVALID: " + ", ".join(
        f"{k} x{n}" for k, n in report["anomaly_counts"].items())
    print(f"{verdict}; {s['operations']} ops ({s['ok']} ok, {s['fail']} fail, {s['info']} info), "
          f"{sum(s['faults'].values())} faults, longest write gap {s['longest_write_gap_ms']} ms; "
          f"{os.path.join(run.path, 'report.html')}")
    return 0 if report["valid"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
