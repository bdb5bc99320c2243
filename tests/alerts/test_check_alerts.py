"""Self-test of tests/alerts/check_alerts.py on small made-up repositories: it reports a missing
runbook, a runbook without its parts or commands, an alert tested only firing or only quiet, a
missing annotation, an orphan runbook and a test of an unknown alert, a tandemctl command or option
a runbook names that tandemctl does not know (a stand-in tandemctl), and finds the metric names
an expression reads; then the real rules pass every check but promtool's (run by the alerts test
itself)."""

import os
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_alerts  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
GOOD_RUNBOOK = ("# A\n\n## What it means\n\nx\n\n## What to check\n\ny\n\n## Commands\n\n"
                "```sh\ntandemctl status\n```\n")


def rule(name, expr="tandem_x == 1", annotations=None, severity="warning"):
    a = {"summary": "s", "description": "d", "runbook_url": "deploy/runbooks/%s.md" % name}
    a.update(annotations or {})
    return {"alert": name, "expr": expr, "labels": {"severity": severity}, "annotations": a}


def case(name, fires):
    return {"eval_time": "1m", "alertname": name,
            "exp_alerts": [{"exp_labels": {"severity": "warning"}}] if fires else []}


def problems_of(rules, cases, runbooks):
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "deploy", "runbooks"))
        for name, text in runbooks.items():
            with open(os.path.join(root, "deploy", "runbooks", name), "w") as f:
                f.write(text)
        return check_alerts.structure_problems(
            root, {"groups": [{"name": "g", "rules": rules}]},
            {"tests": [{"alert_rule_test": cases}]})


def test_a_complete_alert_passes():
    p = problems_of([rule("A")], [case("A", True), case("A", False)], {"A.md": GOOD_RUNBOOK})
    assert p == [], p


def test_each_flaw_is_named():
    p = problems_of([rule("A"), rule("B", annotations={"summary": ""}), rule("C"),
                     rule("D", severity="page")],
                    [case("A", True), case("B", False), case("B", True), case("C", False),
                     case("D", True), case("D", False), case("E", True)],
                    {"B.md": GOOD_RUNBOOK, "C.md": "# C\n\n## What it means\n",
                     "D.md": GOOD_RUNBOOK, "Z.md": GOOD_RUNBOOK})
    expected = [
        "A: runbook deploy/runbooks/A.md does not exist",
        "A: no unit test where it stays quiet",
        "B: no summary annotation",
        "C: runbook deploy/runbooks/C.md has no '## What to check' part",
        "C: runbook deploy/runbooks/C.md has no '## Commands' part",
        "C: runbook deploy/runbooks/C.md shows no tandemctl or curl command",
        "C: no unit test where it fires",
        "D: severity label must be critical, warning or info",
        "E: tested but no such rule",
        "deploy/runbooks/Z.md: no alert links this runbook",
    ]
    assert p == expected, "\n".join(p)


def test_a_runbook_url_elsewhere_is_refused():
    p = problems_of([rule("A", annotations={"runbook_url": "https://wiki/A"})],
                    [case("A", True), case("A", False)], {"A.md": GOOD_RUNBOOK})
    assert p == ["A: runbook_url is 'https://wiki/A', expected 'deploy/runbooks/A.md'"], p


FAKE_CTL = """#!/bin/sh
case "$1 $2" in
  "bcp status") echo "usage: tandemctl [options] bcp status [--local]"; exit 0;;
  "status --help") echo "usage: tandemctl [options] status"; exit 0;;
esac
echo "tandemctl: unknown command '$1 $2'" >&2
exit 2
"""


def test_runbook_commands_tandemctl_does_not_know():
    runbook = GOOD_RUNBOOK + ("```sh\ntandemctl -e https://east-1:7443 bcp status --local\n"
                              "tandemctl bcp status --bogus\ntandemctl job nosuch\n```\n")
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "deploy", "runbooks"))
        with open(os.path.join(root, "deploy", "runbooks", "A.md"), "w") as f:
            f.write(runbook)
        ctl = os.path.join(root, "tandemctl")
        with open(ctl, "w") as f:
            f.write(FAKE_CTL)
        os.chmod(ctl, 0o755)
        p = check_alerts.ctl_command_problems(root, ctl)
    assert p == ["A.md: tandemctl bcp status has no option --bogus",
                 "A.md: tandemctl does not know 'job nosuch' "
                 "([\"tandemctl: unknown command 'job nosuch'\"])"], p


def test_metric_names_of_expressions():
    doc = {"groups": [{"rules": [
        rule("A", expr='max by (job, site) (tandem_site_state{state="invoked"}) == 1'),
        rule("B", expr="histogram_quantile(0.99, sum by (le) "
                       "(rate(tandem_raft_log_append_duration_seconds_bucket[5m]))) > 0.5"),
        rule("C", expr="tandem_failure_tolerance <= 0 and on (job, instance) "
                       "tandem_raft_leader == 1"),
    ]}]}
    assert check_alerts.rule_metric_names(doc) == {
        "tandem_site_state", "tandem_raft_log_append_duration_seconds_bucket",
        "tandem_failure_tolerance", "tandem_raft_leader"}


def test_the_real_rules_pass_the_structure_checks():
    rules = check_alerts.load(os.path.join(ROOT, check_alerts.RULES))
    tests = check_alerts.load(os.path.join(ROOT, check_alerts.TESTS))
    p = check_alerts.structure_problems(ROOT, rules, tests)
    assert p == [], p
    assert len(check_alerts.alert_rules(rules)) >= 10


if __name__ == "__main__":
    failed = 0
    for name, fn in [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_")]:
        try:
            fn()
            print("ok   %s" % name)
        except AssertionError as e:
            failed += 1
            print("FAIL %s: %s" % (name, e))
    print("%d failed" % failed)
    sys.exit(1 if failed else 0)
