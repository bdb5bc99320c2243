"""Helpers of the integration tests that read sanitizer reports from tandemd's logs: whether the
binary is an ASan build, the report in a node's log since its last start, and a SIGTERM that
waits for the exit (LeakSanitizer writes its report on the way out)."""

import os
import shutil
import signal
import subprocess

from cluster import pid_alive, wait_until

SANITIZER_MARKS = ("LeakSanitizer", "AddressSanitizer", "runtime error:")
EXIT_TIMEOUT_S = 60  # an ASan node writing its leak report on the way out


def asan_build(binary):
    """Whether binary was built with AddressSanitizer (it references __asan_init)."""
    if not os.path.exists(binary):
        return False
    if shutil.which("nm"):
        out = subprocess.run(["nm", "-D", binary], capture_output=True, text=True).stdout
        out += subprocess.run(["nm", binary], capture_output=True, text=True).stdout
        return "__asan_init" in out
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def log_since_last_start(c, name):
    """Node name's log from its last start (local-cluster.sh marks each with ====)."""
    with open(os.path.join(c.nodes[name]["dir"], "tandemd.log"), errors="replace") as f:
        text = f.read()
    return text[text.rfind("==== "):]


def sanitizer_report(c, name):
    """The first sanitizer report in node name's log since its last start, or None."""
    text = log_since_last_start(c, name)
    marks = [m for m in SANITIZER_MARKS if m in text]
    if not marks:
        return None
    at = min(text.index(m) for m in marks)
    return text[max(0, at - 200):at + 4000]


def sigterm(c, name):
    """SIGTERM node name by PID and wait for its exit (its leak report is written by then)."""
    pid = c.nodes[name]["pid"]
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not pid_alive(pid), EXIT_TIMEOUT_S, "%s (pid %d) to exit" % (name, pid))
    c.nodes[name]["pid"] = None
    try:
        os.remove(os.path.join(c.nodes[name]["dir"], "tandemd.pid"))
    except FileNotFoundError:
        pass
