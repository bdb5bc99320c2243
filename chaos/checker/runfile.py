"""Reads a chaos run directory (history.jsonl, final.json, nodes/*.log) into compact objects,
refusing with RunError (one line naming the file and the problem) what it cannot read.

A read's list is compared with the key's final list while the history is read, and only its
length is kept when it is a prefix of it: a 10-minute run's reads hold hundreds of millions of
elements in all."""

import json
import math
import os

OUTCOMES = ("ok", "fail", "info")
WORKLOADS = ("append", "domain")
FINAL_KEYS = ("keys", "digests", "jobs", "boxes", "traces", "nodes", "errors")


class RunError(Exception):
    """The run directory cannot be read; the message names the file and the problem."""


class Op:
    """One operation of the history. end is math.inf for an operation that never ended; a read
    keeps length, prefix (whether it is a prefix of its key's final list) and items (its list,
    only when it is not a prefix)."""

    __slots__ = ("id", "process", "workload", "f", "node", "start", "end", "outcome", "key",
                 "value", "length", "prefix", "items", "object", "job", "line")


class Fault:
    """One fault: kind, target names, start and end (ms since the run's start), detail."""

    __slots__ = ("kind", "target", "start", "end", "detail")


class Run:
    """A run directory read whole: ops, faults and notes in history order, and final.json."""

    def __init__(self, path):
        self.path = path
        self.ops = []
        self.faults = []
        self.notes = []
        self.final = {}


def _number(value, what, where, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RunError(f"{where}: {what} must be a number, not {json.dumps(value)}")
    return value


def _load_final(path):
    name = os.path.join(path, "final.json")
    try:
        with open(name, encoding="utf-8") as f:
            final = json.load(f)
    except FileNotFoundError:
        raise RunError(f"{name}: missing (the harness writes it when the run ends)") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RunError(f"{name}: unreadable: {e}") from None
    if not isinstance(final, dict):
        raise RunError(f"{name}: not a JSON object")
    for key in FINAL_KEYS:
        if key not in final:
            raise RunError(f"{name}: no \"{key}\" member")
    shapes = {"keys": dict, "digests": dict, "jobs": list, "boxes": list, "traces": dict,
              "nodes": dict, "errors": list}
    for key, shape in shapes.items():
        if not isinstance(final[key], shape):
            raise RunError(f"{name}: \"{key}\" must be a JSON {shape.__name__}")
    for key, items in final["keys"].items():
        if not isinstance(items, list) or not all(_is_int(v) for v in items):
            raise RunError(f"{name}: keys.{key} must be a list of integers")
    return final


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _read_result(op, record, final_list, where):
    result = record.get("result")
    if not isinstance(result, list) or not all(_is_int(v) for v in result):
        raise RunError(f"{where}: an ok read needs \"result\": a list of integers")
    op.length = len(result)
    op.prefix = len(result) <= len(final_list) and result == final_list[:len(result)]
    op.items = None if op.prefix else result


def _parse_op(record, where, final_keys):
    op = Op()
    op.id = record.get("id")
    if not _is_int(op.id) and not isinstance(op.id, str):
        raise RunError(f"{where}: an op needs an \"id\"")
    op.process = str(record.get("process"))
    op.workload, op.f, op.outcome = record.get("workload"), record.get("f"), record.get("outcome")
    if op.workload not in WORKLOADS or not isinstance(op.f, str) or op.outcome not in OUTCOMES:
        raise RunError(f"{where}: an op needs workload append|domain, f, and outcome ok|fail|info")
    op.node = record.get("node")
    op.start = _number(record.get("start_ms"), "start_ms", where)
    end = _number(record.get("end_ms"), "end_ms", where, allow_none=True)
    if end is None and op.outcome == "ok":
        raise RunError(f"{where}: an ok op needs end_ms")
    op.end = math.inf if end is None else end
    op.key = op.value = op.length = op.prefix = op.items = op.object = op.job = None
    op.line = where
    if op.workload == "append":
        _parse_append(op, record, where, final_keys)
    else:
        op.object = record.get("object") if isinstance(record.get("object"), str) else None
        args = record.get("args") if isinstance(record.get("args"), dict) else {}
        job = record.get("job") or args.get("job")
        op.job = job if isinstance(job, str) else None
    return op


def _parse_append(op, record, where, final_keys):
    op.key = record.get("key")
    if not isinstance(op.key, str):
        op.key = json.dumps(op.key) if op.key is not None else None
    if op.key is None or op.f not in ("append", "read"):
        raise RunError(f"{where}: an append-workload op needs f append|read and a \"key\"")
    if op.f == "append":
        if not _is_int(record.get("value")):
            raise RunError(f"{where}: an append needs an integer \"value\"")
        op.value = record["value"]
    elif op.outcome == "ok":
        _read_result(op, record, final_keys.get(op.key, []), where)


def _parse_fault(record, where):
    fault = Fault()
    fault.kind = record.get("kind")
    if not isinstance(fault.kind, str):
        raise RunError(f"{where}: a fault needs a \"kind\"")
    target = record.get("target")
    fault.target = [str(t) for t in target] if isinstance(target, list) else \
        ([] if target is None else [str(target)])
    fault.start = _number(record.get("start_ms"), "start_ms", where)
    end = _number(record.get("end_ms"), "end_ms", where, allow_none=True)
    fault.end = fault.start if end is None else end
    fault.detail = str(record.get("detail") or "")
    return fault


def _load_history(run):
    name = os.path.join(run.path, "history.jsonl")
    try:
        f = open(name, encoding="utf-8")
    except OSError as e:
        raise RunError(f"{name}: {e.strerror}") from None
    with f:
        try:
            for number, line in enumerate(f, 1):
                _history_line(run, line, f"history.jsonl:{number}")
        except UnicodeDecodeError as e:
            raise RunError(f"{name}: not UTF-8: {e}") from None


def _history_line(run, line, where):
    if not line.strip():
        return
    try:
        record = json.loads(line)
    except ValueError as e:
        raise RunError(f"{where}: not JSON: {e}") from None
    kind = record.get("type") if isinstance(record, dict) else None
    if kind == "op":
        run.ops.append(_parse_op(record, where, run.final["keys"]))
    elif kind == "fault":
        run.faults.append(_parse_fault(record, where))
    elif kind == "note":
        run.notes.append((_number(record.get("time_ms"), "time_ms", where),
                          str(record.get("text", ""))))
    else:
        raise RunError(f"{where}: \"type\" must be op, fault or note")


def load(path):
    """Reads the run directory at path; RunError when it cannot."""
    if not os.path.isdir(path):
        raise RunError(f"{path}: not a directory")
    run = Run(path)
    run.final = _load_final(path)
    _load_history(run)
    seen = set()
    for op in run.ops:
        if op.id in seen:
            raise RunError(f"{op.line}: op id {op.id} appears twice")
        seen.add(op.id)
    return run
