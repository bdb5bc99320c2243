"""The figures of a run: operations by outcome and by f, faults by kind, the longest stretch
without an acknowledged append, and latency percentiles of acknowledged operations."""

import math


def _span(ops):
    """(first start, last end or start) of the ops, in ms since the run's start."""
    if not ops:
        return 0, 0
    first = min(op.start for op in ops)
    last = max(op.end if op.end != math.inf else op.start for op in ops)
    return first, last


def write_gap(ops):
    """(length, from, to) of the longest interval within the ops' span in which no ok append
    completed."""
    first, last = _span(ops)
    ends = sorted(op.end for op in ops
                  if op.workload == "append" and op.f == "append" and op.outcome == "ok")
    points = [first] + [t for t in ends if first <= t <= last] + [last]
    best = (0, first, first)
    for a, b in zip(points, points[1:]):
        if b - a > best[0]:
            best = (b - a, a, b)
    return best


def _percentile(values, fraction):
    if not values:
        return None
    return values[min(len(values) - 1, int(fraction * len(values)))]


def latency(ops, workload):
    values = sorted(op.end - op.start for op in ops
                    if op.outcome == "ok" and op.workload == workload)
    return {"count": len(values), "p50": _percentile(values, 0.5),
            "p99": _percentile(values, 0.99), "max": values[-1] if values else None}


def compute(run):
    ops = run.ops
    stats = {"operations": len(ops)}
    for outcome in ("ok", "fail", "info"):
        stats[outcome] = sum(1 for op in ops if op.outcome == outcome)
    faults = {}
    for fault in run.faults:
        faults[fault.kind] = faults.get(fault.kind, 0) + 1
    stats["faults"] = dict(sorted(faults.items()))
    gap, gap_from, gap_to = write_gap(ops)
    stats["longest_write_gap_ms"] = gap
    stats["longest_write_gap"] = {"from_ms": gap_from, "to_ms": gap_to}
    stats["reads"] = sum(1 for op in ops if op.workload == "append" and op.f == "read")
    stats["appends"] = sum(1 for op in ops if op.workload == "append" and op.f == "append")
    stats["domain_ops"] = sum(1 for op in ops if op.workload == "domain")
    by_f = {}
    for op in ops:
        counts = by_f.setdefault(op.f, {"ok": 0, "fail": 0, "info": 0})
        counts[op.outcome] += 1
    stats["by_f"] = dict(sorted(by_f.items()))
    first, last = _span(ops)
    stats["span_ms"] = {"from": first, "to": last}
    stats["latency_ms"] = {w: latency(ops, w) for w in ("append", "domain")}
    return stats
