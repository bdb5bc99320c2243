"""The domain's order check: trace events carry one global sequence (and the raft index that
wrote them), so an ok domain operation that ended before another began must have the smaller
seq, and seq and index must agree across every object's trace.

An operation is paired with its event only where the pairing is certain: for one object and
one action, as many events as attempted (ok or info) operations, and those operations one after
the other in real time (the i-th operation is then the i-th event). An info operation may take
effect after its answer, so only ok operations count as having ended."""

import math

from checker.domain import BOX_SYSTEM, JOB_SYSTEM, action_of, trace_events
from checker.listappend import sweep


class Paired:
    """An operation with the seq of its event (what listappend.sweep needs: start, end)."""

    __slots__ = ("op", "seq", "start", "end")

    def __init__(self, op, seq):
        self.op, self.seq, self.start, self.end = op, seq, op.start, op.end


def _pairs(domain):
    """[Paired] for every operation whose event is certain."""
    pairs = []
    for name, ops in domain.ops.items():
        events = trace_events(domain.traces, name) or []
        by_action = {}
        for event in events:
            action = event.get("action")
            if action not in JOB_SYSTEM and action not in BOX_SYSTEM:
                by_action.setdefault(action, []).append(event.get("seq"))
        attempted = {}
        for op in ops:
            if op.outcome != "fail":
                attempted.setdefault(action_of(op)[1], []).append(op)
        for action, tried in attempted.items():
            seqs = by_action.get(action, [])
            tried.sort(key=lambda op: op.start)
            ordered = all(a.outcome == "ok" and a.end < b.start for a, b in zip(tried, tried[1:]))
            if len(seqs) == len(tried) and ordered:
                pairs += [Paired(op, seq) for op, seq in zip(tried, seqs) if isinstance(seq, int)]
    return pairs


def _check_real_time(pairs, anomalies):
    """For each op, the largest seq among ok ops that ended before it began is smaller."""
    done = [p for p in pairs if p.op.outcome == "ok"]
    conflicts = []
    for best, later in sweep(done, pairs, lambda p: p.seq):
        if best is not None and best.seq > later.seq:
            before, op = best.op, later.op
            conflicts.append((before.id, op.id,
                              f"{before.f} of {before.object} (op {before.id}, acknowledged "
                              f"at {before.end} ms) has event seq {best.seq}, after seq "
                              f"{later.seq} of {op.f} of {op.object} (op {op.id}, began "
                              f"{op.start} ms)"))
    anomalies.add_grouped("trace_order", conflicts)


def _check_sequence(domain, anomalies):
    """No seq in two places; index never goes down as seq goes up."""
    owner, events = {}, []
    for name in domain.traces:
        for event in trace_events(domain.traces, name) or []:
            seq = event.get("seq")
            if not isinstance(seq, int):
                continue
            if seq in owner and owner[seq] != (name, event.get("action")):
                anomalies.add("trace_order", f"seq {seq} appears twice: {owner[seq][1]} of "
                              f"{owner[seq][0]} and {event.get('action')} of {name}", [])
            owner[seq] = (name, event.get("action"))
            events.append((seq, event.get("index"), name))
    events.sort(key=lambda e: e[0])
    high = (-math.inf, None, None)
    for seq, index, name in events:
        if not isinstance(index, int):
            continue
        if index < high[0]:
            anomalies.add("trace_order", f"seq {seq} of {name} was written at raft index "
                          f"{index}, below index {high[0]} of seq {high[1]} ({high[2]})", [])
        if index >= high[0]:
            high = (index, seq, name)


def check(domain, anomalies):
    _check_real_time(_pairs(domain), anomalies)
    _check_sequence(domain, anomalies)
