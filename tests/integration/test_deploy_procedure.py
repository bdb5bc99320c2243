"""Follows README.md's "Deploying to three places" procedure step by step, running the README's own
marked command blocks (<!-- procedure:NAME --> before a ```sh fence), so that the documented
procedure cannot drift from what works.

Each of the five (then six) machines is a directory of its own on loopback: /etc/tandem and
/var/lib/tandem of a machine live under MACHINES/NAME/, the README's addresses 10.A.0.C become
127.K.A.C (K random per run: loopback answers all of 127/8, and the certificates must name the
mapped addresses), and the CA machine's /root/tandem-ca is a directory of the run. Stand-ins
for what loopback has not: `systemctl` (this file run with --systemctl: starts the unit file's
own ExecStart with %i and the machine's paths, stops with SIGTERM, reloads with SIGHUP),
`apt-get` (the build under test stays installed: the "upgrade" restarts the same binary) and
`chown` (tandemd runs as this user, so the files stay this user's). The copies between machines
(scp in the README) are done here.

Steps: the package, certificates and the personal-data key (deploy/certs.sh), one
configuration per node written from the README's complete example with what the README says
differs per node, the first start, adding a 6th node (join = true, tandemctl member add) and
removing it (member remove, its unit stopped, its certificate revoked and the CRL reloaded
everywhere), then a rolling upgrade of every node one at a time in the documented order
(followers, then the leader after a transfer), all under a small bounded write load. It then
checks that no acknowledged write is lost and that every node ends with the same state.
"""

import base64
import json
import os
import random
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
from cluster import (BIN_DIR, SOURCE_DIR, ClusterError, check_not_diverged, http,  # noqa: E402
                     pid_alive, run_tests, wait_until)

README = os.path.join(SOURCE_DIR, "README.md")
UNIT = os.path.join(SOURCE_DIR, "deploy", "systemd", "tandemd@.service")
SELF = os.path.abspath(__file__)

# Bounds on every wait and on the load.
BLOCK_TIMEOUT_S = 150       # one README block (its `ready` waits up to 300 s: this cuts it short)
CONVERGE_TIMEOUT_S = 30
LOAD_WRITES_MAX = 4000      # the writer stops at this many writes ...
LOAD_SECONDS_MAX = 240      # ... or after this long, whichever comes first
LOAD_PAUSE_S = 0.02         # between writes: a small load, not a benchmark
LOAD_REQUEST_TIMEOUT_S = 5
STOP_TIMEOUT_S = 30         # what the unit's TimeoutStopSec says; read from it when present

BLOCK_RE = re.compile(r"<!-- procedure:([a-z0-9-]+) -->\n```sh\n(.*?)\n```", re.S)
ADDRESS_RE = re.compile(r"\b10\.(\d+)\.(\d+)\.(\d+)\b")
MEMBER_RE = re.compile(r"^member = ([^,]+),([^,]+),([^,:]+):(\d+),([^,]+),(\w+)$", re.M)


def readme_blocks():
    """name -> text of every marked block of README.md (each name once)."""
    with open(README) as f:
        text = f.read()
    blocks = {}
    for name, body in BLOCK_RE.findall(text):
        assert name not in blocks, "README block procedure:%s is marked twice" % name
        blocks[name] = body + "\n"
    return blocks


# ---- the systemctl stand-in (run as: python3 THIS --systemctl ARGS, TANDEM_TEST_ROOT set) -----


def unit_settings():
    """The [Service]/[Unit] keys of deploy/systemd/tandemd@.service (last value of each key)."""
    settings = {}
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                settings[key] = value
    return settings


def machine_path(root, path):
    """A path of the unit or config as it is on this machine (its /etc/tandem, /var/lib/tandem)."""
    for prefix in ("/etc/tandem", "/var/lib/tandem", "/var/log"):
        if path == prefix or path.startswith(prefix + "/"):
            return root + path
    return path


def unit_instance(word):
    m = re.fullmatch(r"tandemd@([A-Za-z0-9_.-]+?)(\.service)?", word)
    if m is None:
        raise SystemExit("systemctl (test): only tandemd@NAME units exist here, not '%s'" % word)
    return m.group(1)


def unit_pid(root, instance):
    try:
        with open(os.path.join(root, "run", "tandemd@%s.pid" % instance)) as f:
            pid = int(f.read())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def unit_start(root, instance, unit):
    if unit_pid(root, instance) is not None:
        return 0
    condition = machine_path(root, unit["ConditionPathExists"].replace("%i", instance))
    if not os.path.exists(condition):
        print("tandemd@%s: condition failed: %s is missing" % (instance, condition))
        return 0
    state = os.path.join(root, "var", "lib", unit["StateDirectory"].replace("%i", instance))
    os.makedirs(state, mode=int(unit["StateDirectoryMode"], 8), exist_ok=True)
    argv = unit["ExecStart"].replace("%i", instance).split()
    assert argv[0] == "/usr/bin/tandemd", argv
    argv = [os.path.join(BIN_DIR, "tandemd")] + [machine_path(root, a) for a in argv[1:]]
    os.makedirs(os.path.join(root, "run"), exist_ok=True)
    os.makedirs(os.path.join(root, "var", "log"), exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TANDEM_") and k != "NOTIFY_SOCKET"}
    with open(os.path.join(root, "var", "log", "tandemd@%s.log" % instance), "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    with open(os.path.join(root, "run", "tandemd@%s.pid" % instance), "w") as f:
        f.write("%d\n" % proc.pid)
    print("started tandemd@%s (pid %d): %s" % (instance, proc.pid, " ".join(argv)))
    return 0


def unit_stop(root, instance, unit):
    pid = unit_pid(root, instance)
    if pid is None:
        return 0
    os.kill(pid, signal.SIGTERM)
    timeout = int(unit.get("TimeoutStopSec", "%ds" % STOP_TIMEOUT_S).rstrip("s"))
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)  # what systemd does after TimeoutStopSec
        print("tandemd@%s (pid %d) did not stop in %d s: killed" % (instance, pid, timeout))
        return 1
    print("stopped tandemd@%s (pid %d)" % (instance, pid))
    return 0


def systemctl(argv):
    """The systemctl verbs the README uses, on this machine (TANDEM_TEST_ROOT)."""
    root = os.environ["TANDEM_TEST_ROOT"]
    unit = unit_settings()
    flags = {a for a in argv if a.startswith("-")}
    words = [a for a in argv if not a.startswith("-")]
    if len(words) != 2:
        raise SystemExit("systemctl (test): one verb and one unit, got %s" % argv)
    verb, instance = words[0], unit_instance(words[1])
    starting = verb in ("start", "restart") or (verb == "enable" and "--now" in flags)
    if starting and "--no-block" not in flags:
        # The unit is Type=notify with TimeoutStartSec=infinity: a first start without
        # --no-block would wait for the quorum. The README starts with --no-block throughout.
        raise SystemExit("systemctl (test): start tandemd@ units with --no-block")
    if verb == "restart":
        unit_stop(root, instance, unit)
    if starting:
        return unit_start(root, instance, unit)
    if verb == "stop" or (verb == "disable" and "--now" in flags):
        return unit_stop(root, instance, unit)
    if verb == "reload":
        assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID", unit["ExecReload"]
        pid = unit_pid(root, instance)
        if pid is None:
            raise SystemExit("tandemd@%s is not active, cannot reload" % instance)
        os.kill(pid, signal.SIGHUP)
        return 0
    if verb in ("status", "is-active"):
        pid = unit_pid(root, instance)
        print("active (pid %d)" % pid if pid else "inactive")
        return 0 if pid else 3
    raise SystemExit("systemctl (test): verb '%s' is not known here" % verb)


# ---- the run: machines, blocks, nodes --------------------------------------------------------


PRELUDE = """set -euo pipefail
systemctl() { "$TANDEM_TEST_PYTHON" "$TANDEM_TEST_SELF" --systemctl "$@"; }
apt-get() { echo "apt-get $* (test: the build under test stays installed)"; }
chown() { :; }
"""


class Procedure:
    """One run of the README procedure: the CA machine, the node machines and their nodes."""

    def __init__(self):
        self.blocks = readme_blocks()
        self.dir = tempfile.mkdtemp(prefix="tandem-it-deploy-")
        self.k = random.randint(100, 250)
        self.operator_dir = os.path.join(self.dir, "operator")
        os.makedirs(self.operator_dir)
        self.nodes = {}   # name -> {"site", "address" (README's), "raft", "api", "root"}
        self.order = []   # node names as the README's member lines list them
        self.ca = re.search(r"^CA=(\S+)", self.blocks["operator-env"], re.M).group(1)
        for name, site, host, raft_port, api, role in MEMBER_RE.findall(self.blocks["config"]):
            self.add_node(name, site, host)
            assert role == "voter", "the README's first members are voters: %s" % role
        conf = self.blocks["config"]
        self.example = re.search(r"^name = (\S+)$", conf, re.M).group(1)
        self.example_site = re.search(r"^site = (\S+)$", conf, re.M).group(1)
        self.example_address = self.nodes[self.example]["address"]
        self.ctx = None
        self.started_pids = set()

    def add_node(self, name, site, address):
        root = os.path.join(self.dir, "machines", name)
        os.makedirs(os.path.join(root, "home"))
        self.nodes[name] = {"site": site, "address": address, "root": root,
                            "api": "https://%s:7443" % self.local(address)}
        self.order.append(name)

    def local(self, text):
        """The README's addresses and the CA machine's paths, as they are in this run."""
        def address(m):
            assert m.group(2) == "0", "the README's addresses are 10.A.0.C: %s" % m.group(0)
            return "127.%d.%s.%s" % (self.k, m.group(1), m.group(3))
        text = ADDRESS_RE.sub(address, text)
        return text.replace(self.ca.rsplit("/", 1)[0], os.path.join(self.operator_dir,
                                                                   "tandem-ca"))

    def for_node(self, text, name):
        """A block written for the README's example node, as the README says to run it for name."""
        return (text.replace(self.example, name)
                .replace(self.example_address, self.nodes[name]["address"]))

    def run(self, block, text=None, node=None, cwd=None):
        """Runs a README block (or text made from it) on the operator's machine or on node's
        machine; returns its stdout. AssertionError (with its output) when it fails."""
        text = text if text is not None else self.blocks[block]
        env = dict(os.environ, TANDEM_TEST_PYTHON=sys.executable, TANDEM_TEST_SELF=SELF,
                   PATH=BIN_DIR + os.pathsep + os.environ.get("PATH", ""))
        for key in ("TANDEM_ENDPOINTS", "TANDEM_CACERT", "TANDEM_CERT", "TANDEM_KEY"):
            env.pop(key, None)
        if node is None:
            script = PRELUDE + self.local(self.blocks["operator-env"]) + self.local(text)
            cwd = cwd or SOURCE_DIR  # deploy/certs.sh, as the README runs it
        else:
            root = self.nodes[node]["root"]
            env["TANDEM_TEST_ROOT"] = root
            script = PRELUDE + machine_text(self.local(text), root)
            cwd = cwd or os.path.join(root, "home")
        started = time.monotonic()
        p = subprocess.Popen(["bash", "-c", script], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        try:
            out, _ = p.communicate(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            raise AssertionError("README block %s ran over %d s:\n%s" % (block, BLOCK_TIMEOUT_S,
                                                                         out))
        print("---- %s%s (%.1f s)\n%s" % (block, " on %s" % node if node else "",
                                         time.monotonic() - started, out), end="", flush=True)
        assert p.returncode == 0, "README block %s exited %d:\n%s" % (block, p.returncode, out)
        self.note_pids()
        return out

    def note_pids(self):
        for name in self.nodes:
            pid = self.pid(name)
            if pid is not None:
                self.started_pids.add(pid)

    def pid(self, name):
        return unit_pid(self.nodes[name]["root"], "acme")

    # -- steps of the README, per node --

    def ship_and_install(self, name, join=False):
        """Step 1's per-node part and step 2: the files gathered on the CA machine, copied to
        the node (scp in the README), installed there; then its configuration."""
        self.run("ship", self.for_node(self.blocks["ship"], name))
        ship = os.path.join(self.operator_dir, "tandem-ca", "acme", "ship", name)
        shutil.copytree(ship, os.path.join(self.nodes[name]["root"], "home", name))
        self.run("install", self.for_node(self.blocks["install"], name), node=name)
        self.run("config", self.config_for(name, join), node=name)

    def config_for(self, name, join):
        """The README's complete example with what it says differs per node changed: name, site,
        addresses and TLS file names (every line but the member lines); join = true for a node
        that is added later."""
        lines = []
        for line in self.blocks["config"].splitlines(keepends=True):
            if not line.startswith("member = "):
                line = self.for_node(line, name)
                if line.startswith("site = "):
                    line = "site = %s\n" % self.nodes[name]["site"]
            lines.append(line)
        text = "".join(lines)
        if join:
            assert "\njoin = false\n" in text, "the README's example says join = false"
            text = text.replace("\njoin = false\n", "\njoin = true\n")
        return text

    def start(self, name):
        self.run("start", node=name)

    # -- what the test checks itself --

    def register_tls(self):
        ca = os.path.join(self.operator_dir, "tandem-ca", "acme")
        self.ctx = ssl.create_default_context(cafile=os.path.join(ca, "ca.pem"))
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.load_cert_chain(os.path.join(ca, "admin.pem"), os.path.join(ca, "admin.key"))
        for node in self.nodes.values():
            cluster._tls_contexts[urllib.parse.urlsplit(node["api"]).netloc] = self.ctx

    def get(self, name, path, timeout=3):
        status, _, body = http("GET", self.nodes[name]["api"] + path, timeout=timeout)
        if status != 200:
            raise ClusterError("%s GET %s: %d %s" % (name, path, status, body[:200]))
        return json.loads(body)

    def leader(self, names, timeout=CONVERGE_TIMEOUT_S):
        def agreed():
            seen = {(self.get(n, "/v1/status")["leader"] or {}).get("name") for n in names}
            return len(seen) == 1 and None not in seen and seen.pop()
        return wait_until(agreed, timeout, "one leader agreed by %s" % ",".join(names))

    def members(self, name):
        return sorted(m["name"] for m in self.get(name, "/v1/status")["members"])

    def caught_up(self, name, names):
        """name has applied everything the leader had committed once name was ready."""
        leader = self.leader(names)
        commit = self.get(leader, "/v1/status")["node"]["commit_index"]
        wait_until(lambda: self.get(name, "/v1/status")["node"]["applied_index"] >= commit,
                   CONVERGE_TIMEOUT_S, "%s to apply the leader's commit index %d" % (name, commit))

    def converged_digests(self, names):
        seen = {}

        def same_index():
            seen.clear()
            for n in names:
                seen[n] = self.get(n, "/v1/digest")
            check_not_diverged(seen)
            return len({d["applied_index"] for d in seen.values()}) == 1 and dict(seen)
        return wait_until(same_index, CONVERGE_TIMEOUT_S, "one applied_index on %s" % names)

    def kv_all(self, name, prefix):
        """key -> value of every key under prefix in name's own state (consistency=local)."""
        out, after = {}, ""
        for _ in range(LOAD_WRITES_MAX // 1000 + 2):
            query = urllib.parse.urlencode({"prefix": prefix, "after": after, "limit": 1000,
                                            "consistency": "local"})
            page = self.get(name, "/v1/kv?" + query)
            for kv in page["kvs"]:
                out[kv["key"]] = base64.b64decode(kv["value"])
                after = kv["key"]
            if not page["more"]:
                return out
        raise AssertionError("more than %d keys under %s" % (LOAD_WRITES_MAX, prefix))

    def log_tail(self, name, lines=30):
        path = os.path.join(self.nodes[name]["root"], "var", "log", "tandemd@acme.log")
        try:
            with open(path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as e:
            return "(no log: %s)\n" % e

    def teardown(self, failed):
        """Stops every tandemd this run started, by PID (SIGKILL after a bounded wait)."""
        if failed:
            for name in self.order:
                print("---- %s: last lines of its log ----\n%s" % (name, self.log_tail(name)),
                      end="")
        for pid in self.started_pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for pid in self.started_pids:
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
            cluster.exit_code(pid)
        for netloc in [k for k, v in cluster._tls_contexts.items() if v is self.ctx]:
            del cluster._tls_contexts[netloc]
        if failed:
            print("run files kept in %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def machine_text(text, root):
    """A block as it runs on a machine whose /etc/tandem and /var/lib/tandem are under root."""
    return (text.replace("/etc/tandem", root + "/etc/tandem")
            .replace("/var/lib/tandem", root + "/var/lib/tandem"))


class Writer(threading.Thread):
    """PUTs deploy/NNNNN (a distinct value each) round-robin through the given API URLs until
    stopped, LOAD_WRITES_MAX writes or LOAD_SECONDS_MAX; keeps what was acknowledged (200)."""

    def __init__(self, urls):
        super().__init__(daemon=True)
        self.urls = list(urls)
        self.stop_event = threading.Event()
        self.acked, self.failed, self.sent = {}, 0, 0

    def run(self):
        deadline = time.monotonic() + LOAD_SECONDS_MAX
        while (not self.stop_event.is_set() and self.sent < LOAD_WRITES_MAX
               and time.monotonic() < deadline):
            key = "deploy/%05d" % self.sent
            value = b"v%d-%d" % (self.sent, random.getrandbits(32))
            url = self.urls[self.sent % len(self.urls)]
            self.sent += 1
            try:
                status, _, _ = http("PUT", url + "/v1/kv/" + urllib.parse.quote(key, safe=""),
                                    body=value, timeout=LOAD_REQUEST_TIMEOUT_S)
            except OSError:
                status = None
            if status == 200:
                self.acked[key] = value
            else:
                self.failed += 1
            time.sleep(LOAD_PAUSE_S)

    def finish(self):
        self.stop_event.set()
        self.join(LOAD_REQUEST_TIMEOUT_S * 2 + 5)
        assert not self.is_alive(), "the writer did not stop"


# ---- the test ----------------------------------------------------------------------------------


def first_start(p):
    for name in p.order:
        p.run("package", node=name)
    p.run("certs")
    for name in p.order:
        p.ship_and_install(name)
    p.register_tls()
    for name in p.order:
        p.start(name)
    out = p.run("first-check")
    for name in p.order:
        assert name in out, "tandemctl status does not list %s:\n%s" % (name, out)
    for name in p.order:
        assert p.members(name) == sorted(p.order), (name, p.members(name))
    # preferred_site: the site controller keeps leadership there (the first leader may be
    # elsewhere for a moment).
    wait_until(lambda: p.nodes[p.leader(p.order)]["site"] == p.example_site, CONVERGE_TIMEOUT_S,
               "the leader in the preferred site %s" % p.example_site)


def add_and_remove(p):
    """Step 4 and 5 with the README's node (east-3): returns its name."""
    add = p.blocks["add"]
    m = re.search(r"tandemctl member add (\S+) (\S+) (\S+):7400 ", add)
    name, site, address = m.groups()
    p.add_node(name, site, address)
    cluster._tls_contexts[urllib.parse.urlsplit(p.nodes[name]["api"]).netloc] = p.ctx
    p.run("add-certs")
    p.run("package", node=name)
    p.ship_and_install(name, join=True)
    p.start(name)
    wait_until(lambda: http("GET", p.nodes[name]["api"] + "/healthz", timeout=1)[0] == 200,
               CONVERGE_TIMEOUT_S, "%s to answer /healthz" % name)
    assert p.get(name, "/v1/status")["leader"] is None, "a joining node knows no leader yet"
    out = p.run("add")
    assert name in out, out
    everyone = p.order
    for n in everyone:
        wait_until(lambda: p.members(n) == sorted(everyone), CONVERGE_TIMEOUT_S,
                   "%s to list %s" % (n, everyone))
    p.caught_up(name, everyone)  # the writer runs: "caught up", not one index everywhere
    pid = p.pid(name)

    out = p.run("remove")
    assert out.startswith("removed %s\n" % name), out
    p.order.remove(name)
    for n in p.order:
        wait_until(lambda: p.members(n) == sorted(p.order), CONVERGE_TIMEOUT_S,
                   "%s to drop %s" % (n, name))
    p.run("remove-stop", node=name)
    assert not pid_alive(pid) and cluster.exit_code(pid) == 0, (
        "%s did not stop cleanly (exit %s):\n%s" % (name, cluster.exit_code(pid), p.log_tail(name)))
    p.run("revoke")
    for n in p.order:
        crl = os.path.join(p.operator_dir, "tandem-ca", "acme", "crl.pem")
        shutil.copy(crl, os.path.join(p.nodes[n]["root"], "home", "crl.pem"))
        p.run("crl-install", node=n)
    # The removed node's certificate no longer opens a connection to any node.
    ca = os.path.join(p.operator_dir, "tandem-ca", "acme")
    ctx = ssl.create_default_context(cafile=os.path.join(ca, "ca.pem"))
    ctx.load_cert_chain(os.path.join(ca, name + ".pem"), os.path.join(ca, name + ".key"))

    def refused(n):
        try:
            status, _, _ = http("GET", p.nodes[n]["api"] + "/v1/status", timeout=3, context=ctx)
        except OSError:
            return True
        return status == 401
    for n in p.order:
        wait_until(lambda: refused(n), CONVERGE_TIMEOUT_S, "%s to refuse %s's certificate" % (
            n, name))
    return name


def upgrade(p):
    """Step 6: every node in turn, followers first, the leader last after a transfer to the other
    node of its site. Returns the order the nodes were upgraded in."""
    boot = {n: p.get(n, "/v1/status")["node"]["boot_id"] for n in p.order}
    done = []
    while len(done) < len(p.order):
        leader = p.leader(p.order)
        left = [n for n in p.order if n not in done and n != leader]
        name = left[0] if left else leader
        if name == leader:
            target = next(n for n in done if n != leader
                          and p.nodes[n]["site"] == p.nodes[leader]["site"])
            transfer = p.blocks["upgrade-transfer"]
            example_target = re.search(r"transfer-leader (\S+)", transfer).group(1)
            out = p.run("upgrade-transfer", transfer.replace(example_target, target))
            assert p.leader(p.order) == target, out
        p.run("upgrade-node", p.for_node(p.blocks["upgrade-node"], name), node=name)
        out = p.run("upgrade-check", p.for_node(p.blocks["upgrade-check"], name))
        for n in p.order:
            assert n in out, "tandemctl status does not list %s:\n%s" % (n, out)
        p.caught_up(name, p.order)
        assert p.get(name, "/v1/status")["node"]["boot_id"] != boot[name], "%s not restarted" % name
        done.append(name)
    return done


def test_readme_procedure():
    started = time.monotonic()
    p = Procedure()
    failed = True
    writer = None
    try:
        first_start(p)
        writer = Writer([p.nodes[n]["api"] for n in p.order])
        writer.start()
        removed = add_and_remove(p)
        order = upgrade(p)
        writer.finish()
        digests = p.converged_digests(p.order)
        print("upgraded in this order: %s; %s added and removed" % (", ".join(order), removed))
        print("writes: %d sent, %d acknowledged, %d failed or unknown" % (
            writer.sent, len(writer.acked), writer.failed))
        assert len(writer.acked) > 0, "no write was acknowledged"
        for name in p.order:
            kept = p.kv_all(name, "deploy/")
            lost = [k for k, v in writer.acked.items() if kept.get(k) != v]
            assert not lost, "%s lost %d acknowledged writes: %s" % (name, len(lost), lost[:5])
        assert len({d["state_digest"] for d in digests.values()}) == 1, digests
        print("every node at applied_index %d with one state digest; %.1f s in all" % (
            next(iter(digests.values()))["applied_index"], time.monotonic() - started))
        failed = False
    finally:
        if writer is not None and writer.is_alive():
            writer.finish()
        p.teardown(failed)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--systemctl":
        sys.exit(systemctl(sys.argv[2:]))
    run_tests()
