"""The chaos run's history: operations, faults and notes appended to RUN/history.jsonl in the
order they are recorded, in the format chaos/README.md and chaos/check.py share.

Times are milliseconds since the run started, on the monotonic clock. An operation is held in
memory from its invocation until it completes, then written as one line; operations still open
when the history is closed are written with "end_ms": null and "outcome": "info".
"""

import itertools
import json
import threading
import time

OUTCOMES = ("ok", "fail", "info")


class History:
    """Thread-safe recorder of one run's history file."""

    def __init__(self, path, echo=print):
        self.t0 = time.monotonic()
        wall = time.time()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + ".%03dZ" % (
            int(wall * 1000) % 1000)   # RFC 3339 (UTC, ms) of time 0 of the run
        self.path = path
        self._file = open(path, "w")
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._open = {}          # op id -> op dict not yet completed
        self._echo = echo
        self.counts = {"ok": 0, "fail": 0, "info": 0}
        self.fault_counts = {}
        self.last_ok_append_ms = None
        self.longest_write_gap_ms = 0

    def now_ms(self):
        return int((time.monotonic() - self.t0) * 1000)

    def _write(self, record):
        if self._file.closed:  # a client thread that outlived the run: nothing to add
            return
        self._file.write(json.dumps(record, sort_keys=False) + "\n")
        self._file.flush()

    def invoke(self, process, workload, f, node, **fields):
        """Starts an operation; returns the op to pass to complete()."""
        op = {"type": "op", "id": next(self._ids), "process": process, "workload": workload,
              "f": f, "node": node, "start_ms": self.now_ms(), "end_ms": None, "outcome": None}
        op.update(fields)
        with self._lock:
            self._open[op["id"]] = op
        return op

    def complete(self, op, outcome, **fields):
        """Ends op with outcome ok, fail or info (and more fields, e.g. result) and writes it."""
        assert outcome in OUTCOMES, outcome
        op["end_ms"] = self.now_ms()
        op["outcome"] = outcome
        op.update(fields)
        with self._lock:
            self._open.pop(op["id"], None)
            self.counts[outcome] += 1
            if op["f"] == "append" and outcome == "ok":
                self._note_write(op["end_ms"])
            self._write(op)
        return op

    def _note_write(self, end_ms):
        if self.last_ok_append_ms is not None:
            gap = end_ms - self.last_ok_append_ms
            self.longest_write_gap_ms = max(self.longest_write_gap_ms, gap)
        self.last_ok_append_ms = max(end_ms, self.last_ok_append_ms or 0)

    def fault(self, kind, target, start_ms, end_ms, detail):
        """Records a fault that ran from start_ms to end_ms (both run times)."""
        record = {"type": "fault", "kind": kind, "target": list(target), "start_ms": start_ms,
                  "end_ms": end_ms, "detail": detail}
        with self._lock:
            self.fault_counts[kind] = self.fault_counts.get(kind, 0) + 1
            self._write(record)
        self._echo("[%7.1fs] fault %s %s: %s" % (end_ms / 1000, kind, ",".join(target), detail),
                   flush=True)

    def note(self, text):
        """Records and prints the harness's own progress."""
        t = self.now_ms()
        with self._lock:
            self._write({"type": "note", "time_ms": t, "text": text})
        self._echo("[%7.1fs] %s" % (t / 1000, text), flush=True)

    def close(self):
        """Writes the operations that never completed as indeterminate and closes the file."""
        with self._lock:
            for op in sorted(self._open.values(), key=lambda o: o["id"]):
                op["outcome"] = "info"
                op["unfinished"] = True
                self.counts["info"] += 1
                self._write(op)
            self._open.clear()
            self._file.close()

    def total(self):
        return sum(self.counts.values())
