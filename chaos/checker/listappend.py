"""The list-append checks: per key, the final list against every append and read of the history,
and reads against each other and against appends in real time.

Each key's final list F is read linearizably after every fault healed, so it is the reference:
every ok read must be a prefix of F, which also makes any two ok reads prefixes of each other;
real-time rules then reduce to comparing lengths and positions in F (sweeps in O(n log n))."""

SHOWN = 8  # elements of a list quoted in an anomaly's detail


def _quote(items, around=0):
    """items as [a, b, ...] with at most SHOWN elements, from a little before index around."""
    low = max(0, around - 2)
    shown = ", ".join(str(v) for v in items[low:low + SHOWN])
    return (f"[{'..., ' if low > 0 else ''}{shown}{', ...' if low + SHOWN < len(items) else ''}]"
            f" ({len(items)} elements)")


class Key:
    """One key's final list and history, indexed for the checks."""

    def __init__(self, name, final, appends, reads):
        self.name = name
        self.final = final
        self.appends = appends
        self.reads = reads  # ok reads only
        self.by_value = {}
        self.position = {}  # value -> its first position in final


def check(run, anomalies):
    """Runs every list-append check over run's history; returns the number of keys checked."""
    keys = {}
    for op in run.ops:
        if op.workload != "append":
            continue
        entry = keys.setdefault(op.key, ([], []))
        if op.f == "append":
            entry[0].append(op)
        elif op.outcome == "ok":
            entry[1].append(op)
    finals = run.final["keys"]
    for name in sorted(set(keys) | set(finals)):
        appends, reads = keys.get(name, ([], []))
        key = Key(name, finals.get(name, []), appends, reads)
        _index(key, anomalies)
        _check_final(key, anomalies)
        _check_lost(key, anomalies, name in finals)
        _check_reads(key, anomalies)
        _check_stale(key, anomalies)
        _check_missing_acked(key, anomalies)
        _check_future(key, anomalies)
        _check_write_order(key, anomalies)
    return len(keys)


def _index(key, anomalies):
    for op in key.appends:
        earlier = key.by_value.get(op.value)
        if earlier is not None:
            anomalies.add("harness_error",
                          f"key {key.name}: value {op.value} appended by two ops "
                          f"({earlier.id}, {op.id}); values must be unique", [earlier.id, op.id])
            continue
        key.by_value[op.value] = op


def _element_anomalies(key, items, where, op_ids, anomalies):
    """Reports duplicates, phantoms and failed appends among items; returns how many."""
    seen = set()
    found = 0
    for i, value in enumerate(items):
        append = key.by_value.get(value)
        ids = op_ids + [append.id if append is not None else None]
        if value in seen:
            anomalies.add("duplicate", f"key {key.name}: {value} appears again at index {i} "
                          f"of {where}", ids)
            found += 1
            continue
        seen.add(value)
        if append is None:
            anomalies.add("phantom", f"key {key.name}: {value} at index {i} of {where} "
                          "was never appended", ids)
            found += 1
        elif append.outcome == "fail":
            anomalies.add("failed_append_visible",
                          f"key {key.name}: {value} at index {i} of {where} was appended by "
                          f"op {append.id}, which failed", ids)
            found += 1
    return found


def _check_final(key, anomalies):
    _element_anomalies(key, key.final, "the final list", [], anomalies)
    for i, value in enumerate(key.final):
        key.position.setdefault(value, i)


def _check_lost(key, anomalies, key_present):
    where = "the final list" if key_present else "the final state (the key is missing)"
    for op in key.appends:
        if op.outcome == "ok" and op.value not in key.position:
            anomalies.add("lost_append", f"key {key.name}: {op.value}, acknowledged at "
                          f"{op.end} ms by op {op.id}, is not in {where}", [op.id])


def _check_reads(key, anomalies):
    """A read that is not a prefix of the final list: the most specific kind is reported (a
    duplicate, phantom or failed element in it), else read_not_prefix with the first difference,
    grouped by the append of the element the read has there (one element the final list lost
    makes every read that saw it differ)."""
    conflicts = []
    for op in key.reads:
        if op.prefix:
            continue
        where = f"read op {op.id}"
        if _element_anomalies(key, op.items, where, [op.id], anomalies) > 0:
            continue
        i = next((i for i, (a, b) in enumerate(zip(op.items, key.final)) if a != b),
                 min(len(op.items), len(key.final)))
        got = op.items[i] if i < len(op.items) else "(end)"
        want = key.final[i] if i < len(key.final) else "(end)"
        append = key.by_value.get(got)
        conflicts.append((append.id if append is not None else op.id, op.id,
                          f"key {key.name}: read op {op.id} {_quote(op.items, i)} is not a "
                          f"prefix of the final list {_quote(key.final, i)}: index {i} is {got}, "
                          f"final has {want}"))
    anomalies.add_grouped("read_not_prefix", conflicts)


def sweep(earlier, later, size):
    """For each op of later (by start), the op of earlier with the largest size() among those
    that ended before it began. Yields (best earlier op or None, later op)."""
    by_end = sorted(earlier, key=lambda op: op.end)
    best, i = None, 0
    for op in sorted(later, key=lambda op: op.start):
        while i < len(by_end) and by_end[i].end < op.start:
            if best is None or size(by_end[i]) > size(best):
                best = by_end[i]
            i += 1
        yield best, op


def _monotonic(ops, size, kind, describe, anomalies):
    """The rule stale reads and write order share: an op that ended before another began is
    not larger (a read's length, an append's position in the final list)."""
    anomalies.add_grouped(kind, [(best.id, op.id, describe(best, op))
                                 for best, op in sweep(ops, ops, size)
                                 if best is not None and size(best) > size(op)])


def _check_stale(key, anomalies):
    def describe(best, op):
        return (f"key {key.name}: read op {op.id} (began {op.start} ms) saw {op.length} "
                f"elements, read op {best.id} (ended {best.end} ms) had already seen "
                f"{best.length}")
    _monotonic([op for op in key.reads if op.prefix], lambda r: r.length, "stale_read",
               describe, anomalies)


def _check_missing_acked(key, anomalies):
    acked = [op for op in key.appends if op.outcome == "ok" and op.value in key.position]
    position = key.position
    conflicts = []
    for best, op in sweep(acked, key.reads, lambda a: position[a.value]):
        if best is None:
            continue
        seen = (position[best.value] < op.length if op.prefix else best.value in set(op.items))
        if not seen:
            conflicts.append((best.id, op.id,
                              f"key {key.name}: read op {op.id} (began {op.start} ms, "
                              f"{op.length} elements) misses {best.value}, acknowledged at "
                              f"{best.end} ms by op {best.id}"))
    anomalies.add_grouped("read_missing_acked", conflicts)


def _check_future(key, anomalies):
    """latest[i]: the append among final[0..i] that began last."""
    latest, best = [], None
    for value in key.final:
        append = key.by_value.get(value)
        if append is not None and (best is None or append.start > best.start):
            best = append
        latest.append(best)
    for op in key.reads:
        if not op.prefix or op.length == 0 or latest[op.length - 1] is None:
            continue
        append = latest[op.length - 1]
        if append.start > op.end:
            anomalies.add("future_read",
                          f"key {key.name}: read op {op.id} (ended {op.end} ms) holds "
                          f"{append.value}, whose append op {append.id} began at "
                          f"{append.start} ms", [append.id, op.id])


def _check_write_order(key, anomalies):
    position = key.position

    def describe(best, op):
        return (f"key {key.name}: append op {best.id} ({best.value}, acknowledged at "
                f"{best.end} ms) is at index {position[best.value]}, after append op {op.id} "
                f"({op.value}, began {op.start} ms) at index {position[op.value]}")
    _monotonic([op for op in key.appends if op.outcome == "ok" and op.value in position],
               lambda a: position[a.value], "write_order", describe, anomalies)
