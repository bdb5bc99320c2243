"""The end-of-run health checks: equal digests on every node, no crash or sanitizer report in a
node log, no core file in the run directory, no exit the harness did not cause, and no error the
harness reported about itself."""

import glob
import json
import os
import re
import signal

# A line of a node's log that means the process crashed or a sanitizer fired. tandem_assert
# prints "tandem: assertion failed: EXPR (file:line, function)" (storage/assert.c); libraft's
# and glibc's assert() print "...: Assertion `EXPR' failed."; glibc's heap checks abort with
# "double free or corruption", "free(): ..." and "malloc(): ...".
PATTERNS = [
    ("sanitizer", re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|"
                             r"LeakSanitizer|runtime error:|SUMMARY: \w+Sanitizer")),
    ("crash", re.compile(r"assertion failed: |Assertion `.*' failed|Segmentation fault|"
                         r"double free or corruption|free\(\): invalid|malloc\(\): |"
                         r"\*\*\* stack smashing detected|corrupted size vs\. prev_size")),
]
FINDINGS_PER_LOG = 20  # lines of one kind quoted per log; the rest are counted
CORE_NAME = re.compile(r"^core(\.\d+)?$|\.core$")
ELF_CORE = b"\x7fELF"
# Faults whose action is a SIGKILL of their targets (lost_writes kills before dropping writes).
KILLING_FAULTS = {"kill", "kill_leader", "restart_loop", "site_loss", "lost_writes"}
# The harness stops nodes with these at the end of a run.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def check_errors(run, anomalies):
    for error in run.final["errors"]:
        anomalies.add("harness_error", f"the harness reported: {error}", [])
    if not any(op.outcome == "ok" for op in run.ops):
        anomalies.add("harness_error", f"none of the history's {len(run.ops)} operations was "
                      "acknowledged: the run shows nothing", [])


def check_digests(run, anomalies):
    digests = run.final["digests"]
    if not digests:
        anomalies.add("digest_mismatch", "final.json holds no digest: nothing shows the replicas "
                      "agree", [])
        return
    seen = {}
    for node, digest in sorted(digests.items()):
        if not isinstance(digest, dict) or "state_digest" not in digest:
            anomalies.add("digest_mismatch", f"{node}: no digest ({digest!r})", [])
            continue
        pair = (json.dumps(digest.get("applied_index")), json.dumps(digest.get("state_digest")))
        seen.setdefault(pair, []).append(node)
    if len(seen) > 1:
        groups = "; ".join(f"{', '.join(nodes)}: applied_index {index}, digest {value}"
                           for (index, value), nodes in sorted(seen.items(), key=str))
        anomalies.add("digest_mismatch", f"the nodes disagree: {groups}", [])


def _log_paths(run):
    """nodes/*.log, RUN/*.log (the harness's own output, where bash reports a child's
    "Segmentation fault"), and every log final.json names (absolute, or relative to the run or
    to its parent directory, as "RUN/nodes/NAME.log" is)."""
    paths = set(glob.glob(os.path.join(run.path, "nodes", "*.log")))
    paths |= set(glob.glob(os.path.join(run.path, "*.log")))
    for info in run.final["nodes"].values():
        log = info.get("log") if isinstance(info, dict) else None
        if not isinstance(log, str):
            continue
        for candidate in (log, os.path.join(run.path, log),
                          os.path.join(os.path.dirname(os.path.abspath(run.path)), log),
                          os.path.join(run.path, log.split("/", 1)[-1])):
            if os.path.isfile(candidate):
                paths.add(candidate)
                break
    unique = {}
    for path in paths:
        unique.setdefault(os.path.realpath(path), path)
    return sorted(unique.values())


def _scan_log(path, name, anomalies):
    counts = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            for kind, pattern in PATTERNS:
                if pattern.search(line):
                    counts[kind] = counts.get(kind, 0) + 1
                    if counts[kind] <= FINDINGS_PER_LOG:
                        anomalies.add(kind, f"{name}:{number}: {line.strip()[:300]}", [])
                    break
    for kind, count in sorted(counts.items()):
        if count > FINDINGS_PER_LOG:
            anomalies.add(kind, f"{name}: {count - FINDINGS_PER_LOG} more such lines", [])


def check_logs(run, anomalies):
    """Returns the logs scanned (paths relative to the run)."""
    scanned = []
    for path in _log_paths(run):
        name = os.path.relpath(path, run.path)
        scanned.append(name)
        _scan_log(path, name, anomalies)
    return scanned


def _is_core(path):
    """An ELF file of type ET_CORE (e_type 4, little endian on every platform we build)."""
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return False
    return head[:4] == ELF_CORE and head[16] == 4


def check_cores(run, anomalies):
    for root, _dirs, files in os.walk(run.path):
        for name in files:
            path = os.path.join(root, name)
            if CORE_NAME.search(name) or _is_core(path):
                anomalies.add("core_file", os.path.relpath(path, run.path), [])


def _signal_of(code):
    """The signal an exit stands for (-9, "SIGKILL", "signal 9"), or None for an exit code."""
    if isinstance(code, int) and not isinstance(code, bool):
        return signal.Signals(-code) if code < 0 and -code in signal.valid_signals() else None
    if isinstance(code, str):
        match = re.search(r"(SIG[A-Z0-9]+)|(\d+)", code.upper())
        try:
            if match and match.group(1):
                return signal.Signals[match.group(1)]
            if match:
                return signal.Signals(int(match.group(2)))
        except (KeyError, ValueError):
            return None
    return None


def _exit_text(code):
    sig = _signal_of(code)
    if sig is not None:
        return sig.name
    return "exit status unknown" if code is None else f"exit {code}"


def check_exits(run, anomalies):
    killed = set()
    for fault in run.faults:
        if fault.kind in KILLING_FAULTS:
            killed.update(fault.target)
    for node, info in sorted(run.final["nodes"].items()):
        crashes = info.get("crashes") if isinstance(info, dict) else None
        if crashes:
            exits = ", ".join(_exit_text(code) for code in crashes)
            anomalies.add("unexpected_exit", f"{node} died during the run without the harness "
                          f"killing it: {exits}", [])
        code = info.get("exit") if isinstance(info, dict) else None
        if code is None or code == 0:
            continue
        sig = _signal_of(code)
        if sig is None:
            anomalies.add("unexpected_exit", f"{node} exited with code {code}", [])
        elif sig == signal.SIGKILL and node not in killed:
            anomalies.add("unexpected_exit", f"{node} was killed by SIGKILL but no kill fault "
                          "targeted it", [])
        elif sig not in STOP_SIGNALS and sig != signal.SIGKILL:
            anomalies.add("unexpected_exit", f"{node} was killed by {sig.name}, which the "
                          "harness does not send", [])
