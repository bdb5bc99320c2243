#!/usr/bin/env python3
"""Self-test of the chaos checker (chaos/check.py): a small valid run passes, each kind of
anomaly planted alone in it is reported with that kind, indeterminate operations pass either
way, and a run it cannot read exits 2."""

import atexit
import contextlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHECK = os.path.join(ROOT, "chaos", "check.py")
STAGES = ["receive", "scan", "enter", "verify", "ship"]
ELF_CORE_HEADER = b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x04\x00"

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from cluster import run_tests  # noqa: E402  (the test-runner convention of every Python test)

_spec = importlib.util.spec_from_file_location("check_py", CHECK)
check_py = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_py)


def op(op_id, process, start, end, outcome, workload="append", **fields):
    record = {"type": "op", "id": op_id, "process": process, "workload": workload,
              "node": "east-1", "start_ms": start, "end_ms": end, "outcome": outcome}
    record.update(fields)
    return record


def append(op_id, process, start, end, outcome, value, key="k1"):
    return op(op_id, process, start, end, outcome, f="append", key=key, value=value)


def read(op_id, process, start, end, outcome, result=None, key="k1"):
    record = op(op_id, process, start, end, outcome, f="read", key=key)
    if result is not None:
        record["result"] = result
    return record


def domain(op_id, start, end, outcome, f, obj, **fields):
    return op(op_id, 10, start, end, outcome, workload="domain", f=f, object=obj, args={},
              **fields)


def event(seq, kind, obj_id, action, **details):
    return {"seq": seq, "kind": kind, "id": obj_id, "action": action, "actor": "chaos",
            "site": "east", "time": "2026-12-05T08:00:00.000Z", "index": seq, "details": details}


def base():
    """A valid run: every outcome, both workloads, info appends both present and absent."""
    history = [
        append(1, 0, 0, 10, "ok", 1), append(2, 1, 5, 20, "ok", 2),
        read(3, 2, 25, 30, "ok", [1, 2]),
        append(4, 0, 30, 45, "info", 3),      # took effect
        append(5, 1, 50, 60, "fail", 5),
        append(6, 0, 70, 80, "ok", 6), append(16, 1, 72, None, "info", 4),  # never ended, lost
        read(7, 2, 90, 95, "ok", [1, 2, 3, 6]), read(8, 3, 100, 110, "fail"),
        append(9, 3, 0, 15, "ok", 7, key="k2"), read(10, 3, 20, 25, "ok", [7], key="k2"),
        domain(20, 0, 10, "ok", "job_create", "job/J1"),
        domain(21, 0, 10, "ok", "box_checkin", "box/B1"),
        domain(25, 0, 10, "info", "box_checkin", "box/B2"),
        domain(22, 20, 30, "ok", "box_pick", "box/B1", job="J1"),
        domain(23, 40, 50, "ok", "job_advance", "job/J1"),
        domain(24, 60, 70, "ok", "box_return", "box/B1"),
        domain(26, 80, 90, "ok", "job_pin", "job/J1"),
        domain(27, 95, 99, "fail", "job_hold", "job/J1"),
        domain(28, 100, 110, "ok", "box_pick", "box/B2", job="J1"),
        {"type": "fault", "kind": "kill", "target": ["east-1"], "start_ms": 30, "end_ms": 60,
         "detail": "SIGKILL, restarted"},
        {"type": "fault", "kind": "pause", "target": ["west-1"], "start_ms": 50, "end_ms": 80,
         "detail": "SIGSTOP/SIGCONT"},
        {"type": "note", "time_ms": 0, "text": "cluster up"},
    ]
    traces = {
        "job/J1": [event(1, "job", "J1", "create", stages=STAGES, client="acme"),
                   event(4, "job", "J1", "link_box", box="B1"),
                   event(5, "job", "J1", "advance", **{"from": "receive", "to": "scan"}),
                   event(8, "job", "J1", "pin"),
                   event(10, "job", "J1", "link_box", box="B2")],
        "box/B1": [event(2, "box", "B1", "checkin", status="stored"),
                   event(3, "box", "B1", "pick", job="J1", **{"from": "stored"}),
                   event(6, "box", "B1", "process", job="J1", stage="scan"),
                   event(7, "box", "B1", "return", job="J1")],
        "box/B2": [event(9, "box", "B2", "checkin", status="stored"),
                   event(11, "box", "B2", "pick", job="J1")],
    }
    digest = {"applied_index": 420, "state_digest": "ab12"}
    final = {
        "seed": 7, "seconds": 1, "faults": ["kill", "pause"], "started": "2026-12-05T08:00:00.000Z",
        "keys": {"k1": [1, 2, 3, 6], "k2": [7]},
        "digests": {n: dict(digest) for n in ("east-1", "east-2", "west-1", "west-2")},
        "jobs": [{"id": "J1", "status": "in_progress", "stage": "scan", "stages": STAGES,
                  "boxes": ["B1", "B2"], "pinned": True}],
        "boxes": [{"id": "B1", "status": "returned", "job": "J1"},
                  {"id": "B2", "status": "picked", "job": "J1"}],
        "traces": traces,
        "nodes": {n: {"log": f"RUN/nodes/{n}.log", "data_dir": f"/tmp/x/{n}", "exit": None}
                  for n in ("east-1", "east-2", "west-1", "west-2", "witness-1")},
        "errors": [],
    }
    final["nodes"]["east-1"]["exit"] = -15
    logs = {n: "2026-12-05T08:00:00.000Z info  tandemd: started\n" for n in final["nodes"]}
    return {"history": history, "final": final, "logs": logs, "files": {}}


def find(run, op_id):
    return next(r for r in run["history"] if r.get("id") == op_id)


_runs_dir = None


def runs_dir():
    """One directory per process for the runs write() makes, removed when the process exits:
    check() removes each run it judged, but a script that imports write() (a mutation loop, say)
    must not leave thousands of them in /tmp."""
    global _runs_dir
    if _runs_dir is None:
        _runs_dir = tempfile.mkdtemp(prefix="chaos-check-")
        atexit.register(shutil.rmtree, _runs_dir, True)
    return _runs_dir


def write(run):
    path = tempfile.mkdtemp(prefix="run-", dir=runs_dir())
    with open(os.path.join(path, "history.jsonl"), "w") as f:
        for record in run["history"]:
            f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    with open(os.path.join(path, "final.json"), "w") as f:
        json.dump(run["final"], f)
    os.makedirs(os.path.join(path, "nodes"))
    for name, text in run["logs"].items():
        with open(os.path.join(path, "nodes", f"{name}.log"), "w") as f:
            f.write(text)
    for name, data in run["files"].items():
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
    return path


def run_checker(path, subprocess_run):
    """(exit status, stderr) of chaos/check.py on path: in this process (fast), or as the
    command line it is."""
    if subprocess_run:
        p = subprocess.run([sys.executable, CHECK, path], capture_output=True, text=True,
                           timeout=60)
        return p.returncode, p.stderr
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = check_py.main([path])
    return code, err.getvalue()


def check(run, subprocess_run=False):
    """(exit status, report or None, stderr) of the checker on run (a dict, or a path)."""
    path = write(run) if isinstance(run, dict) else run
    try:
        code, err = run_checker(path, subprocess_run)
        report = None
        if os.path.exists(os.path.join(path, "report.json")):
            with open(os.path.join(path, "report.json")) as f:
                report = json.load(f)
            with open(os.path.join(path, "report.html")) as f:
                report["html"] = f.read()
        return code, report, err
    finally:
        shutil.rmtree(path, ignore_errors=True)


def expect(run, kind, also=(), subprocess_run=False):
    """The checker finds kind in run, and no kind outside also."""
    code, report, err = check(run, subprocess_run)
    assert code == 1, f"exit {code}: {err}"
    kinds = set(report["anomaly_counts"])
    assert kind in kinds, f"{kind} not reported: {report['anomalies']}"
    assert kinds <= {kind, *also}, f"more than {kind}: {report['anomalies']}"
    assert report["valid"] is False and "INVALID" in report["html"] and kind in report["html"]
    return [a for a in report["anomalies"] if a["kind"] == kind]


# ---- the valid run, and indeterminate operations either way ----

def test_valid_run_passes():
    code, report, err = check(base(), subprocess_run=True)
    assert code == 0, f"exit {code}: {err} {report and report['anomalies']}"
    assert report["valid"] is True and report["anomalies"] == []
    stats = report["stats"]
    assert (stats["operations"], stats["ok"], stats["fail"], stats["info"]) == (20, 14, 3, 3)
    assert (stats["appends"], stats["reads"], stats["domain_ops"]) == (7, 4, 9)
    assert stats["faults"] == {"kill": 1, "pause": 1}
    assert stats["by_f"]["append"] == {"ok": 4, "fail": 1, "info": 2}
    # ok appends end at 10, 15, 20, 80 within ops spanning 0..110: the longest gap is 20..80.
    assert stats["longest_write_gap_ms"] == 60, stats["longest_write_gap"]
    assert report["checked"]["keys"] == 2 and report["checked"]["objects"] == 3
    assert len(report["checked"]["logs"]) == 5
    page = report["html"]
    assert "VALID: no anomaly" in page and "<svg" in page and "<script" not in page
    assert "kill east-1" in page and "pause west-1" in page
    assert "2026-12-05T08:00:00.030Z" in page  # the kill at 30 ms, with final.json's "started"


def test_info_append_absent_everywhere_passes():
    run = base()
    find(run, 4)["outcome"] = "info"
    find(run, 4)["end_ms"] = None
    run["final"]["keys"]["k1"] = [1, 2, 6]
    find(run, 7)["result"] = [1, 2, 6]
    code, report, err = check(run)
    assert code == 0, f"{err} {report and report['anomalies']}"


def test_info_append_seen_by_a_read_and_the_end_passes():
    run = base()
    run["history"].append(read(11, 3, 41, 44, "ok", [1, 2, 3]))  # while op 4 is in flight
    code, report, err = check(run)
    assert code == 0, f"{err} {report and report['anomalies']}"


def test_info_domain_op_either_way_passes():
    run = base()
    run["history"].append(domain(29, 120, None, "info", "job_cancel", "job/J1"))  # no event
    run["history"].append(domain(30, 120, None, "info", "box_checkin", "box/B9"))  # no object
    code, report, err = check(run)
    assert code == 0, f"{err} {report and report['anomalies']}"


# ---- list-append anomalies, each planted alone ----

def test_lost_append():
    run = base()
    run["final"]["keys"]["k1"] = [1, 2, 3]
    find(run, 7)["result"] = [1, 2, 3]
    found = expect(run, "lost_append", subprocess_run=True)  # exit 1 from the command line
    assert found[0]["ops"] == [6] and "6" in found[0]["detail"]


def test_duplicate_in_final():
    run = base()
    run["final"]["keys"]["k1"] = [1, 2, 3, 6, 2]
    assert expect(run, "duplicate")[0]["ops"] == [2]


def test_duplicate_in_read():
    run = base()
    find(run, 7)["result"] = [1, 2, 2, 3, 6]
    assert expect(run, "duplicate")[0]["ops"] == [7, 2]


def test_phantom_in_final():
    run = base()
    run["final"]["keys"]["k1"] = [1, 2, 3, 6, 99]
    assert "99" in expect(run, "phantom")[0]["detail"]


def test_phantom_in_read():
    run = base()
    find(run, 7)["result"] = [1, 2, 3, 6, 99]
    assert expect(run, "phantom")[0]["ops"] == [7]


def test_failed_append_visible():
    run = base()
    run["final"]["keys"]["k1"] = [1, 2, 3, 6, 5]
    assert expect(run, "failed_append_visible")[0]["ops"] == [5]


def test_read_not_prefix():
    run = base()
    find(run, 7)["result"] = [1, 3, 2, 6]
    assert expect(run, "read_not_prefix")[0]["ops"] == [4, 7]  # 3's append, the read
    run["history"].append(read(11, 3, 96, 99, "ok", [1, 3, 2, 6]))  # the same difference
    found = expect(run, "read_not_prefix")
    assert len(found) == 1 and found[0]["ops"] == [4, 7, 11], found
    assert "and 1 more ops in the same conflict with op 4" in found[0]["detail"]


def test_stale_read():
    run = base()
    run["history"].append(read(11, 2, 41, 44, "ok", [1, 2, 3]))
    run["history"].append(read(12, 3, 46, 48, "ok", [1, 2]))
    run["history"].append(read(13, 1, 46, 49, "ok", [1, 2]))  # stale after op 11 as well
    found = expect(run, "stale_read")
    assert len(found) == 1 and found[0]["ops"] == [11, 12, 13], found


def test_read_missing_acked():
    run = base()
    run["history"].append(read(11, 3, 85, 88, "ok", [1, 2, 3]))  # op 6 acked at 80
    assert expect(run, "read_missing_acked")[0]["ops"] == [6, 11]


def test_write_order():
    run = base()
    run["history"] = [r for r in run["history"] if r.get("id") != 10]
    run["history"].append(append(14, 3, 30, 40, "ok", 8, key="k2"))  # after op 9 was acked
    run["final"]["keys"]["k2"] = [8, 7]
    assert expect(run, "write_order")[0]["ops"] == [9, 14]


def test_future_read():
    run = base()
    run["history"].append(read(15, 3, 1, 4, "ok", [1, 2]))  # op 2 began at 5
    assert expect(run, "future_read")[0]["ops"] == [2, 15]


# ---- domain anomalies ----

def test_box_double_pick():
    run = base()
    # A second acknowledged pick of B2 with no return between: its event is missing too.
    run["history"].append(domain(29, 120, 130, "ok", "box_pick", "box/B2", job="J1"))
    assert expect(run, "box_double_pick", also={"trace_missing_op"})[0]["ops"] == [28, 29]


def test_box_double_pick_in_final_state():
    run = base()
    final = run["final"]
    final["jobs"].append({"id": "J2", "status": "queued", "stage": "receive", "stages": STAGES,
                          "boxes": ["B2"]})
    final["traces"]["job/J2"] = [event(12, "job", "J2", "create", stages=STAGES),
                                 event(14, "job", "J2", "link_box", box="B2")]
    final["traces"]["box/B2"].append(event(13, "box", "B2", "pick", job="J2"))
    final["boxes"][1]["job"] = "J2"
    run["history"].append(domain(31, 120, 130, "ok", "job_create", "job/J2"))
    run["history"].append(domain(32, 140, 150, "info", "box_pick", "box/B2", job="J2"))
    found = expect(run, "box_double_pick", also={"trace_replay"})
    assert "J1" in found[0]["detail"] and "J2" in found[0]["detail"]


def test_box_unlinked():
    run = base()
    run["final"]["jobs"][0]["boxes"] = ["B1"]
    run["final"]["traces"]["job/J1"].pop()  # no link_box B2 either
    assert "B2" in expect(run, "box_unlinked")[0]["detail"]


def test_trace_replay_final_state_differs():
    run = base()
    run["final"]["jobs"][0]["status"] = "done"
    assert "status" in expect(run, "trace_replay")[0]["detail"]


def test_trace_replay_illegal_transition():
    run = base()
    run["final"]["traces"]["box/B1"].append(event(12, "box", "B1", "process", job="J1"))
    assert "illegal box transition: process from returned" in expect(run, "trace_replay")[0][
        "detail"]


def test_trace_missing_op():
    run = base()
    run["history"].append(domain(29, 200, 210, "ok", "box_checkin", "box/B1"))
    assert expect(run, "trace_missing_op")[0]["ops"] == [21, 29]


def test_trace_phantom():
    run = base()
    find(run, 26)["outcome"] = "fail"  # the pin failed, yet its event is in the trace
    assert "pin" in expect(run, "trace_phantom")[0]["detail"]


def test_trace_order_against_real_time():
    run = base()
    find(run, 26).update(start_ms=1, end_ms=2)  # the pin was acknowledged before the advance
    assert expect(run, "trace_order")[0]["ops"][0] == 26


def test_trace_order_seq_twice_or_index_back():
    run = base()
    run["final"]["traces"]["box/B2"][0]["seq"] = 8  # the seq of J1's pin
    assert "seq 8 appears twice" in expect(run, "trace_order")[0]["detail"]
    run = base()
    run["final"]["traces"]["box/B2"][1]["index"] = 3  # seq 11 written below seq 10's index
    assert "raft index 3" in expect(run, "trace_order")[0]["detail"]


def test_domain_object_missing():
    run = base()
    run["history"].append(domain(29, 120, 130, "ok", "box_checkin", "box/B3"))
    assert expect(run, "domain_object_missing")[0]["ops"] == [29]


# ---- end-of-run health ----

def test_digest_mismatch():
    run = base()
    run["final"]["digests"]["west-2"]["state_digest"] = "ff00"
    assert "west-2" in expect(run, "digest_mismatch")[0]["detail"]


# A line of a node's log, and the kind it must be reported as.
CRASH_LINES = [
    ("==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x6020", "sanitizer"),
    ("==4242==ERROR: LeakSanitizer: detected memory leaks", "sanitizer"),
    ("replication/fsm.c:10:5: runtime error: signed integer overflow", "sanitizer"),
    ("tandem: assertion failed: rv == 0 (replication/fsm.c:10, tandem_fsm_apply)", "crash"),
    ("tandemd: src/replication.c:1011: replicationApply: Assertion `r->last_applied <= index' "
     "failed.", "crash"),
    ("double free or corruption (!prev)", "crash"),
    ("*** stack smashing detected ***: terminated", "crash"),
]


def test_crash_and_sanitizer_lines_in_node_logs():
    for line, kind in CRASH_LINES:
        run = base()
        run["logs"]["west-1"] += line + "\n"
        found = expect(run, kind)
        assert found[0]["detail"].startswith("nodes/west-1.log:2: "), (line, found)


def test_segfault_reported_by_the_harness_shell():
    run = base()
    run["files"]["harness.log"] = (b"deploy/local-cluster.sh: line 350: 30520 Segmentation fault"
                                   b"      ( exec setsid tandemd --config x )\n")
    assert "harness.log:1" in expect(run, "crash")[0]["detail"]


def test_core_file():
    run = base()
    run["files"]["nodes/east-1/data/core.1234"] = ELF_CORE_HEADER + bytes(64)
    assert "core.1234" in expect(run, "core_file")[0]["detail"]


def test_unexpected_exit_signal():
    run = base()
    run["final"]["nodes"]["west-1"]["exit"] = -6  # SIGABRT
    assert "SIGABRT" in expect(run, "unexpected_exit")[0]["detail"]


def test_sigkill_without_a_kill_fault():
    run = base()
    run["final"]["nodes"]["west-2"]["exit"] = -9
    expect(run, "unexpected_exit")
    run["final"]["nodes"]["west-2"]["exit"] = 0
    run["final"]["nodes"]["east-1"]["exit"] = -9  # the kill fault's target: expected
    code, report, err = check(run)
    assert code == 0, f"{err} {report and report['anomalies']}"


def test_death_nobody_caused():
    run = base()
    run["final"]["nodes"]["east-2"]["crashes"] = [-11, None]  # found dead twice, restarted
    found = expect(run, "unexpected_exit")[0]["detail"]
    assert "east-2 died" in found and "SIGSEGV, exit status unknown" in found, found


def test_harness_error():
    run = base()
    run["final"]["errors"] = ["partition east|west could not be healed"]
    assert "could not be healed" in expect(run, "harness_error")[0]["detail"]


# ---- report.html ----

def test_page_marks_anomalous_ops_and_faults():
    run = base()
    run["final"]["keys"]["k1"] = [1, 2, 3]
    find(run, 7)["result"] = [1, 2, 3]
    code, report, err = check(run)
    page = report["html"]
    assert code == 1 and "INVALID: 1 anomaly (lost_append)" in page, err
    assert "<title>op 6</title>" in page  # the lost append's red cross
    assert "1 operations named by anomalies are red crosses" in page
    assert "an acknowledged append is missing from the final list" in page  # the rule


def test_page_rows_by_node_when_processes_are_many():
    run = base()
    for i in range(100):  # clients that get a new process id after each indeterminate op
        run["history"].append(read(1000 + i, 100 + i, 200 + i, 201 + i, "ok", [1, 2, 3, 6]))
    code, report, err = check(run)
    assert code == 0, f"{err} {report and report['anomalies']}"
    assert "one per workload and node (more than 60 processes)" in report["html"]
    assert ">append east-1</text>" in report["html"]


def test_same_value_appended_twice_is_a_harness_error():
    run = base()
    run["history"].append(append(17, 3, 120, 130, "fail", 6))  # values must be unique
    assert expect(run, "harness_error")[0]["ops"] == [6, 17]


def test_run_without_an_acknowledged_op_is_a_harness_error():
    run = base()
    run["history"] = [r for r in run["history"] if r["type"] != "op"]
    run["final"].update(keys={}, jobs=[], boxes=[], traces={})
    code, report, err = check(run)  # the page copes with a run without operations
    assert code == 1 and set(report["anomaly_counts"]) == {"harness_error"}, err
    assert "none of the history's 0 operations" in report["anomalies"][0]["detail"]


# ---- runs that cannot be read ----

def unreadable(run_or_path, words, subprocess_run=False):
    code, report, err = check(run_or_path, subprocess_run)
    assert code == 2, f"exit {code}: {err}"
    assert report is None and err.count("\n") == 1 and words in err, err


def test_unreadable_runs_exit_2():
    path = write(base())
    os.remove(os.path.join(path, "final.json"))
    unreadable(path, "final.json: missing", subprocess_run=True)
    run = base()
    run["history"].append("{not json")
    unreadable(run, "history.jsonl:24: not JSON")
    run = base()
    del run["final"]["digests"]
    unreadable(run, "no \"digests\" member")
    run = base()
    find(run, 7)["result"] = "1,2"
    unreadable(run, "result")
    unreadable(os.path.join(tempfile.gettempdir(), "no-such-chaos-run"), "not a directory")


def test_checker_failure_is_exit_2_not_a_verdict():
    """An exception inside the checker must not exit 1, which reads as "anomaly found"."""
    decide = check_py.decide

    def broken(run):
        raise KeyError("boom")
    check_py.decide = broken
    try:
        unreadable(base(), "cannot judge the run: KeyError")
    finally:
        check_py.decide = decide


def test_odd_values_in_final_json_still_judged():
    run = base()
    run["final"].update(faults=5, unavailable_faults="none", snapshots=[1])
    run["final"]["digests"]["west-2"]["applied_index"] = {"odd": 1}
    run["final"]["traces"]["job/J1"].append({"seq": 20, "index": 20, "action": None})
    code, report, err = check(run)
    assert code == 1 and report is not None, err
    assert set(report["anomaly_counts"]) <= {"digest_mismatch", "trace_replay", "trace_phantom"}


if __name__ == "__main__":
    run_tests()
