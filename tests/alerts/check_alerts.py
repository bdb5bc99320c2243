"""Checks deploy/prometheus/tandem-alerts.yml: promtool check rules and promtool test rules pass,
and promtool check config on the example configuration that loads them;
every alert has a unit test where it fires and one where it stays quiet; every alert has labels
severity, annotations summary, description and runbook_url, and its runbook_url names a file in
deploy/runbooks/ that says what the alert means, what to check and the commands; no runbook is
left without its alert. The metric names the rules use are checked against a live scrape by
tests/integration/test_metrics.py (rule_metric_names below).

With a tandemctl binary, every `tandemctl ...` command line in the runbooks must name a command
tandemctl knows (`tandemctl NOUN VERB --help` answers) and only options its usage lists: a
runbook whose commands rotted is found here, not during an incident.

Run: python3 tests/alerts/check_alerts.py [REPO_ROOT [TANDEMCTL]]; exits 1 naming every problem
found."""

import os
import re
import shlex
import subprocess
import sys

import yaml

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TANDEMCTL = sys.argv[2] if len(sys.argv) > 2 else None
# tandemctl's own options before the command, and whether each takes a value.
CTL_GLOBAL_OPTIONS = {"-e": True, "--endpoints": True, "--cacert": True, "--cert": True,
                      "--key": True, "-o": True, "--output": True, "--timeout": True}
RULES = "deploy/prometheus/tandem-alerts.yml"
TESTS = "deploy/prometheus/tandem-alerts.test.yml"
CONFIG = "deploy/prometheus/prometheus.example.yml"
RUNBOOKS = "deploy/runbooks"
RUNBOOK_SECTIONS = ("## What it means", "## What to check", "## Commands")


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def alert_rules(rules_doc):
    """[(alert name, rule dict)] of every alerting rule, in file order."""
    return [(r["alert"], r) for g in rules_doc.get("groups", []) for r in g.get("rules", [])
            if "alert" in r]


def rule_metric_names(rules_doc):
    """Metric names the rules' expressions read, as written (a histogram's as name_bucket)."""
    names = set()
    for _, rule in alert_rules(rules_doc):
        expr = re.sub(r'"[^"]*"', '""', rule["expr"])  # label values are not names
        expr = re.sub(r"\{[^}]*\}", "", expr)            # nor label names
        names.update(w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)
                     if w.startswith("tandem_"))
    return names


def test_cases(tests_doc):
    """{alert name: (cases where it fires, cases where it must not)}."""
    cases = {}
    for test in tests_doc.get("tests", []):
        for case in test.get("alert_rule_test", []):
            fires, quiet = cases.setdefault(case["alertname"], ([], []))
            (fires if case.get("exp_alerts") else quiet).append(case["eval_time"])
    return cases


def runbook_problems(root, alert, url):
    """What is wrong with alert's runbook_url (a path in the repository)."""
    expected = "%s/%s.md" % (RUNBOOKS, alert)
    if url != expected:
        return ["%s: runbook_url is %r, expected %r" % (alert, url, expected)]
    path = os.path.join(root, url)
    if not os.path.isfile(path):
        return ["%s: runbook %s does not exist" % (alert, url)]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    problems = ["%s: runbook %s has no %r part" % (alert, url, s)
                for s in RUNBOOK_SECTIONS if s not in text]
    if not re.search(r"^(tandemctl|curl) ", text, re.M):
        problems.append("%s: runbook %s shows no tandemctl or curl command" % (alert, url))
    return problems


def structure_problems(root, rules_doc, tests_doc):
    """Problems other than promtool's: the alerts' labels, annotations, runbooks and tests."""
    problems = []
    rules = alert_rules(rules_doc)
    if not rules:
        return ["no alerting rule in %s" % RULES]
    cases = test_cases(tests_doc)
    for alert, rule in rules:
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not annotations.get(key):
                problems.append("%s: no %s annotation" % (alert, key))
        if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problems.append("%s: severity label must be critical, warning or info" % alert)
        problems += runbook_problems(root, alert, annotations.get("runbook_url"))
        fires, quiet = cases.get(alert, ([], []))
        if not fires:
            problems.append("%s: no unit test where it fires" % alert)
        if not quiet:
            problems.append("%s: no unit test where it stays quiet" % alert)
    names = {a for a, _ in rules}
    for alert in sorted(set(cases) - names):
        problems.append("%s: tested but no such rule" % alert)
    runbooks_dir = os.path.join(root, RUNBOOKS)
    for f in sorted(os.listdir(runbooks_dir)) if os.path.isdir(runbooks_dir) else []:
        if f.endswith(".md") and f != "README.md" and f[:-3] not in names:
            problems.append("%s/%s: no alert links this runbook" % (RUNBOOKS, f))
    return problems


def runbook_commands(root):
    """[(runbook file, command line)] of every line of a runbook that runs tandemctl."""
    out = []
    runbooks_dir = os.path.join(root, RUNBOOKS)
    for f in sorted(os.listdir(runbooks_dir)):
        if f.endswith(".md"):
            with open(os.path.join(runbooks_dir, f), encoding="utf-8") as text:
                out += [(f, line.strip()) for line in text
                        if line.startswith("tandemctl ")]
    return out


def ctl_command_problems(root, tandemctl):
    """Runbook lines whose tandemctl command or options tandemctl does not know."""
    problems = []
    for runbook, line in runbook_commands(root):
        words = shlex.split(line.split(" #")[0])[1:]
        while words and words[0] in CTL_GLOBAL_OPTIONS:
            words = words[2:] if CTL_GLOBAL_OPTIONS[words[0]] else words[1:]
        command = words[:1] if words[:1] == ["status"] else words[:2]
        p = subprocess.run([tandemctl] + command + ["--help"], capture_output=True, text=True,
                           timeout=30)
        usage = p.stdout + p.stderr
        if p.returncode != 0 or not command:
            problems.append("%s: tandemctl does not know %r (%s)" %
                            (runbook, " ".join(command), usage.strip().splitlines()[:1]))
            continue
        for word in words[len(command):]:
            option = word.split("=")[0]
            if option.startswith("--") and option not in usage:
                problems.append("%s: tandemctl %s has no option %s" %
                                (runbook, " ".join(command), option))
    return problems


def promtool_problems(root):
    problems = []
    for args in (["check", "rules", RULES], ["test", "rules", TESTS], ["check", "config", CONFIG]):
        try:
            p = subprocess.run(["promtool"] + args, cwd=root, capture_output=True, text=True,
                               timeout=120)
        except FileNotFoundError:
            return ["promtool not found: install Debian's prometheus package "
                    "(deploy/install-deps.sh)"]
        print(p.stdout + p.stderr, end="", flush=True)
        if p.returncode != 0:
            problems.append("promtool %s failed (exit %d)" % (" ".join(args), p.returncode))
    return problems


def main():
    rules_doc = load(os.path.join(ROOT, RULES))
    tests_doc = load(os.path.join(ROOT, TESTS))
    problems = promtool_problems(ROOT) + structure_problems(ROOT, rules_doc, tests_doc)
    if TANDEMCTL is not None:
        problems += ctl_command_problems(ROOT, TANDEMCTL)
        print("check_alerts: %d tandemctl command lines in the runbooks checked against %s" %
              (len(runbook_commands(ROOT)), TANDEMCTL))
    for p in problems:
        print("check_alerts: %s" % p, file=sys.stderr)
    alerts = alert_rules(rules_doc)
    print("check_alerts: %d alerts, %d unit test cases, metrics read: %s" %
          (len(alerts), sum(len(f) + len(q) for f, q in test_cases(tests_doc).values()),
           " ".join(sorted(rule_metric_names(rules_doc)))))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
