"""Helper library for tandem's integration tests: real tandemd clusters on 127.0.0.1, run through
deploy/local-cluster.sh, plus the small test-runner convention every tests/integration/test_*.py
follows (python3 standard library only).

    import os, sys
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from cluster import Cluster, run_tests

    def test_something():
        with Cluster(topology="2+2+1", settings={"snapshot_threshold": 64}) as c:
            leader = c.leader()
            status, headers, body = c.api(leader, "PUT", "/v1/kv/a", b"1")
            assert status == 200, body

    if __name__ == "__main__":
        run_tests()

Clusters run with TLS (mutual, the default of tandemd) unless Cluster(insecure=True): the
cluster's CA and client certificates are in <dir>/tls (deploy/certs.sh, users admin and
operator). http(), http_connection() and tls_socket() pick the TLS settings of the cluster that
owns an https:// URL's address (client certificate: admin), so tests call them as they did over
plain HTTP; pass context=Cluster.tls_context(user) to act as another user or as nobody.

Certificates: a cluster's <dir>/tls is a copy of a set made once per set of node names and
kept in CERT_CACHE (local-cluster.sh's TANDEM_CERT_CACHE; making one costs a second or more of
openssl runs, and the tests start about a hundred clusters). Copies are independent: renewing or
revoking in one changes no other. Clusters with the same node names share a CA, except two open
at once in one process (the second makes its own). Tests of the certificates themselves, or that
change the tls directory, pass Cluster(cert_cache=False): their set is made in place.

Environment: TANDEM_BIN_DIR (tandemd/tandemctl, default <source>/build) and TANDEM_SOURCE_DIR
(default: two levels above this file); ctest sets both. TANDEM_CERT_CACHE: the certificate cache
directory (default <bin dir>/cert-cache; empty: no cache). local-cluster.sh runs its Python
helpers with this process's interpreter (TANDEM_PYTHON), not through a pyenv shim.
TANDEM_IT_LAB=1: new plain 2+2+1 clusters run in the three-place lab (Cluster(lab=True)).
"""

import ctypes
import http.client as httpclient
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

SOURCE_DIR = os.environ.get("TANDEM_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN_DIR = os.environ.get("TANDEM_BIN_DIR") or os.path.join(SOURCE_DIR, "build")
SCRIPT = os.path.join(SOURCE_DIR, "deploy", "local-cluster.sh")
LAB_SCRIPT = os.path.join(SOURCE_DIR, "deploy", "lab.sh")
CERT_CACHE = os.environ.get("TANDEM_CERT_CACHE", os.path.join(BIN_DIR, "cert-cache"))

# Bounds on every wait this module does; callers pass shorter ones where they know better.
UP_TIMEOUT_S = 30            # leader election after `up`, as local-cluster.sh waits
SCRIPT_TIMEOUT_S = 180       # any single local-cluster.sh invocation, start-up of 5 nodes included
EXIT_TIMEOUT_S = 10          # a SIGKILLed process disappearing
POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 40


PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def _become_subreaper():
    """Makes this process the reaper of the tandemd processes local-cluster.sh leaves behind, so
    their exit status can be checked and they do not linger as zombies where init never reaps
    (some container inits don't)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


SUBREAPER = _become_subreaper()
_exit_codes = {}  # pid -> exit code (negative: killed by that signal) of reaped nodes


def _reap(pid):
    """Collects pid's exit status if it is our exited child; only that pid, so the status of any
    other child (subprocess.Popen's) is never taken from its owner."""
    if pid is None or pid in _exit_codes:
        return
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return
    if got == pid:
        _exit_codes[pid] = os.waitstatus_to_exitcode(status)


def exit_code(pid):
    """Exit code of an exited node process (negative: the signal that killed it), or None while
    it runs or when this process could not reap it (SUBREAPER is False)."""
    _reap(pid)
    return _exit_codes.get(pid)


def cgroup2_mount():
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a
    hybrid host); ClusterError when there is none."""
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return fields[1]
    raise ClusterError("no cgroup2 file system is mounted: isolated clusters need one")


def _rmdir(path):
    """rmdir that answers whether path is gone (a cgroup is busy while processes remain)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


class ClusterError(Exception):
    """A cluster operation failed or a bounded wait ran out; the message says which and why."""


def wait_until(predicate, timeout, what, interval=POLL_INTERVAL_S):
    """Polls predicate() until it returns something truthy (returned) or timeout seconds pass.

    Exceptions of type OSError or ClusterError inside predicate count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ClusterError, httpclient.HTTPException) as e:
            last_error = e
        if time.monotonic() >= deadline:
            detail = " (last error: %s)" % last_error if last_error else ""
            raise ClusterError("timed out after %.1fs waiting for %s%s" % (timeout, what, detail))
        time.sleep(interval)


class Diverged(AssertionError):
    """Nodes at the same applied index hold different states (never a "not yet" of wait_until)."""


def check_not_diverged(digests):
    """Raises Diverged when two /v1/digest answers (name -> {"applied_index", "state_digest"})
    name the same applied_index with different state digests."""
    by_index = {}
    for name, d in digests.items():
        by_index.setdefault(d["applied_index"], {}).setdefault(d["state_digest"], []).append(name)
    for index, states in by_index.items():
        if len(states) > 1:
            raise Diverged("different state digests at applied_index %d: %s" % (
                index, "; ".join("%s: %s" % (",".join(sorted(ns)), digest[:16])
                                 for digest, ns in sorted(states.items()))))


# Topologies of the open clusters whose certificates came from CERT_CACHE (one CA per topology).
_cached_sets_open = set()

# "host:port" -> ssl.SSLContext of the TLS cluster that serves there (registered by Cluster).
_tls_contexts = {}


def tls_context_for(url):
    """The client ssl.SSLContext for an https:// URL: that of the cluster serving its address
    (admin's certificate), else one that trusts the system's CAs; None for http:// URLs."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https":
        return None
    return _tls_contexts.get(parts.netloc) or ssl.create_default_context()


def http_connection(url, timeout=5, context=None):
    """An http.client connection (HTTPSConnection for https://) to the host and port of url;
    context replaces the cluster's TLS settings (see Cluster.tls_context)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return httpclient.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                          context=context or tls_context_for(url))
    return httpclient.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def tls_socket(url, timeout=5, context=None):
    """A connected socket to url's host and port for raw HTTP exchanges: TLS-wrapped (handshake
    done) for https://, plain for http://."""
    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    if parts.scheme != "https":
        return sock
    try:
        return (context or tls_context_for(url)).wrap_socket(sock, server_hostname=parts.hostname)
    except BaseException:
        sock.close()
        raise


def http(method, url, body=None, headers=None, timeout=5, context=None):
    """One HTTP request; returns (status, headers, body bytes) for every status code.

    body may be bytes, str (sent as UTF-8) or a dict/list (sent as JSON). headers in the answer
    is an http.client.HTTPMessage: case-insensitive, headers["X-Tandem-Node"] or None.
    Raises OSError when the node cannot be reached. https:// URLs use the TLS settings of the
    cluster serving them unless context is given.
    """
    parts = urllib.parse.urlsplit(url)
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn = http_connection(url, timeout=timeout, context=context)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def pid_state(pid):
    """The /proc state letter of pid (R, S, T, Z, ...), or None when there is no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            # The command name is in parentheses and may contain spaces: split after it.
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid):
    """True when pid is a process that has not exited.

    Our own child (see SUBREAPER) is alive until it can be reaped: a multi-threaded process shows
    its main thread as a zombie while the other threads are still exiting. For anything else a
    zombie counts as exited (init may never reap it)."""
    if pid is None or pid in _exit_codes:
        return False
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return pid_state(pid) not in (None, "Z", "X")
    if got == pid:
        _exit_codes[pid] = os.waitstatus_to_exitcode(status)
        return False
    return True


def tandemd_configs():
    """{pid: config path} of every tandemd running (argv[0] a tandemd, or /proc/self/exe's "exe"
    after a re-execution) with --config, from /proc; zombies have no cmdline and are left out."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv[0].endswith(("tandemd", "/exe")) and "--config" in argv[1:-1]:
            found[int(entry)] = argv[argv.index("--config", 1) + 1]
    return found


def pid_is_tandemd(pid, conf):
    """True when pid is alive and runs tandemd with the given config file."""
    if not pid_alive(pid):
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    return any(a.endswith("tandemd") for a in argv) and conf in argv


class Cluster:
    """A local tandem cluster for one test, torn down (local-cluster.sh down) however the test ends.

    Attributes once entered: dir (cluster directory), nodes (name -> {"name", "api", "site",
    "raft", "role", "pid", "dir"}; pid is None while the node is stopped), endpoints (list of API
    base URLs, in node order), names (node names in order).
    """

    def __init__(self, topology="2+2+1", settings=None, insecure=False, bin_dir=None,
                 up_timeout=UP_TIMEOUT_S, isolate=False, cert_cache=True, restore=None,
                 cluster_id=None, tls_from=None, lab=False, rtt_ms=None, loss_pct=None):
        """isolate: run each node in a cgroup v2 of its own (cgroup_dir(name)), so that
        netcut.NetCut can cut the traffic between nodes; needs root and a cgroup2 mount.
        insecure: no TLS (benchmarks only; tandemd logs it at warn). cert_cache=False: the
        cluster's certificates are made for it alone (see the module's Certificates).
        A cluster restored from a backup (local-cluster.sh up --restore): restore is the backup
        file every node's data directory is seeded from before its first start, cluster_id the
        new cluster's id (default: a random one), tls_from a directory whose certificates and
        personal-data key file (data.key) the cluster takes instead of new ones (another
        cluster's tls_path(""): the key that sealed the backup's personal data).
        lab: a 2+2+1 cluster in the three-place lab (deploy/lab.sh, needs root): each site in a
        network namespace, the site pairs joined through tandem-wan with rtt_ms (lab.sh's
        --rtt-ms, e.g. "east-west=8,witness=20", its default) and loss_pct; lab_cut(),
        lab_heal() and lab_slow() change the links, and the test runner reaches every node
        directly. Every other method works as on loopback."""
        self.topology = topology
        self.isolate = isolate
        self.cgroup_root = None
        self.settings = dict(settings or {})
        self.insecure = insecure
        self.bin_dir = bin_dir or BIN_DIR
        self.up_timeout = up_timeout
        self.dir = None
        self.nodes = {}
        self.names = []
        self.endpoints = []
        self.paused = set()
        self._tls = None
        self.cert_cache = cert_cache
        self._cache_key = None  # the topology while this cluster holds a cached set
        self.restore, self.cluster_id, self.tls_from = restore, cluster_id, tls_from
        # TANDEM_IT_LAB=1: every plain new 2+2+1 cluster runs in the lab (to run the BCP tests
        # over emulated WAN links: TANDEM_IT_LAB=1 python3 test_bcp.py).
        if (os.environ.get("TANDEM_IT_LAB") == "1" and topology == "2+2+1" and not isolate
                and restore is None and tls_from is None and cluster_id is None):
            lab = True
        self.lab, self.rtt_ms, self.loss_pct = lab, rtt_ms, loss_pct
        if lab and (topology != "2+2+1" or isolate or restore is not None):
            raise ValueError("a lab cluster is a new 2+2+1 cluster (no isolate, no restore)")

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self):
        for binary in ("tandemd",):
            path = os.path.join(self.bin_dir, binary)
            if not os.access(path, os.X_OK):
                raise ClusterError("%s not found in %s: build first" % (binary, self.bin_dir))
        self.dir = tempfile.mkdtemp(prefix="tandem-it-")
        if self.isolate:
            self.cgroup_root = tempfile.mkdtemp(prefix="tandem-it-", dir=cgroup2_mount())
        args = ["up", self.dir, "--topology", self.topology]
        if self.insecure:
            args.append("--insecure")
        for key, value in self.settings.items():
            args += ["--set", "%s=%s" % (key, value)]
        for option, value in (("--restore", self.restore), ("--cluster-id", self.cluster_id),
                              ("--tls-from", self.tls_from)):
            if value is not None:
                args += [option, value]
        env = {}
        if (self.cert_cache and CERT_CACHE and not self.insecure and self.tls_from is None
                and self.topology not in _cached_sets_open):
            self._cache_key = self.topology
            _cached_sets_open.add(self.topology)
            env["TANDEM_CERT_CACHE"] = CERT_CACHE
        if self.lab:
            env = {}  # a lab's certificates name its addresses: made for it alone
            args = ["up", self.dir] + args[4:]
            if self.rtt_ms is not None:
                args += ["--rtt-ms", self.rtt_ms]
            if self.loss_pct is not None:
                args += ["--loss", str(self.loss_pct)]
        try:
            out = self.script(*args, env=env, script=LAB_SCRIPT if self.lab else SCRIPT)
            print(out, end="", flush=True)
            self.reload()
        except BaseException:
            self._teardown(failed=True)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            # Named before the node logs: a CI excerpt that keeps only the first part of the
            # output still says what failed.
            print("FAILING: %s: %s" % (exc_type.__name__, str(exc)[:500]), flush=True)
        leaked = self._teardown(failed=exc_type is not None)
        if leaked and exc_type is None:
            raise ClusterError("tandemd still running after down (killed): pids %s" % leaked)
        return False

    def _teardown(self, failed):
        """Stops the cluster; returns the pids of nodes `down` left running (killed)."""
        if self.dir is None:
            return []
        if failed:
            self.print_logs()
        for name in list(self.paused):
            self.resume(name)
        try:
            if self.lab and os.path.exists(os.path.join(self.dir, "lab", "lab.conf")):
                self.script("down", self.dir, script=LAB_SCRIPT)
            elif os.path.exists(os.path.join(self.dir, "nodes")):
                self.script("down", self.dir)
        except ClusterError as e:
            print("cluster teardown: %s" % e, flush=True)
            failed = True
        leaked = self._kill_leftovers()
        if leaked:
            failed = True
        if failed:
            print("cluster files kept in %s" % self.dir, flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        self._unregister_tls()
        self.dir = None
        _cached_sets_open.discard(self._cache_key)
        self._cache_key = None
        self._remove_cgroups()
        return leaked

    def _kill_leftovers(self):
        """SIGKILLs any tandemd still running on this cluster's configs after `down` (a node
        local-cluster.sh no longer recognised: once, a node that had re-executed itself) and
        says so; returns their pids. The test then fails: a node left behind loads the machine
        for every later test and keeps its ports."""
        prefix = os.path.join(self.dir, "")
        leaked = [pid for pid, conf in tandemd_configs().items() if conf.startswith(prefix)]
        for pid in leaked:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if leaked:
            print("cluster teardown: tandemd still running after down, killed: %s" % leaked,
                  flush=True)
            try:  # gone before the next test wants the machine and the ports
                wait_until(lambda: not any(pid_alive(p) for p in leaked), EXIT_TIMEOUT_S,
                           "killed tandemd %s gone" % leaked)
            except ClusterError as e:
                print("cluster teardown: %s" % e, flush=True)
        return leaked

    def _remove_cgroups(self):
        """Removes the nodes' cgroups (empty once their processes are gone) and their root."""
        if self.cgroup_root is None:
            return
        for name in os.listdir(self.cgroup_root):
            path = os.path.join(self.cgroup_root, name)
            if os.path.isdir(path):
                try:
                    wait_until(lambda: _rmdir(path), EXIT_TIMEOUT_S, "cgroup %s empty" % path)
                except ClusterError as e:
                    print("cluster teardown: %s" % e, flush=True)
        _rmdir(self.cgroup_root)
        self.cgroup_root = None

    def cgroup_dir(self, name):
        """The cgroup node name runs in (Cluster(isolate=True) only)."""
        if self.cgroup_root is None:
            raise ClusterError("cgroup_dir: the cluster was not created with isolate=True")
        return os.path.join(self.cgroup_root, name)

    def reload(self):
        """Re-reads nodes, PIDs and endpoints from the cluster directory (after running
        script("up", ...) on it again, say)."""
        with open(os.path.join(self.dir, "nodes")) as f:
            rows = [line.split() for line in f if line.strip() and not line.startswith("#")]
        self.nodes, self.names = {}, []
        for name, site, raft, api, role in rows:
            node_dir = os.path.join(self.dir, name)
            self.nodes[name] = {"name": name, "site": site, "raft": raft, "api": api,
                                "role": role, "dir": node_dir, "pid": None}
            self.names.append(name)
            self._reload_pid(name)
        with open(os.path.join(self.dir, "endpoints")) as f:
            self.endpoints = f.read().strip().split(",")
        self._register_tls()

    # ---- TLS -------------------------------------------------------------------------------

    def tls_path(self, name):
        """Path of a file in the cluster's certificate directory: tls_path("admin.pem")."""
        return os.path.join(self.dir, "tls", name)

    def tls_context(self, user="admin", ca=None):
        """A client ssl.SSLContext trusting the cluster CA (or the CA file ca) and presenting
        user's certificate (user=None: no client certificate, an anonymous client)."""
        ctx = ssl.create_default_context(cafile=ca or self.tls_path("ca.pem"))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if user is not None:
            ctx.load_cert_chain(self.tls_path(user + ".pem"), self.tls_path(user + ".key"))
        return ctx

    def ctl_env(self, user="admin"):
        """Environment variables that give tandemctl this cluster's TLS settings (empty for an
        insecure cluster)."""
        if self.insecure:
            return {}
        return {"TANDEM_CACERT": self.tls_path("ca.pem"),
                "TANDEM_CERT": self.tls_path(user + ".pem"),
                "TANDEM_KEY": self.tls_path(user + ".key")}

    def add_user(self, name, roles="viewer", site="east", password="user-pass1"):
        """Creates user record name (as the bootstrap admin) and waits until every live node
        applied it: each node resolves a user certificate on its own records (issue 13)."""
        leader = self.leader()
        status, _, body = self.api(leader, "POST", "/v1/users", json.dumps(
            {"name": name, "roles": roles, "site": site, "password": password}).encode(),
            timeout=20)
        if status != 201:
            raise ClusterError("creating user %s: %s %s" % (name, status, body[:200]))
        quoted = ('"%s"' % name).encode()
        for n in self.live():
            wait_until(lambda: quoted in self.api(n, "GET", "/v1/users?consistency=local")[2],
                       10, "the user record %s on %s" % (name, n))

    @property
    def scheme(self):
        """URL scheme of the cluster's APIs: "https", or "http" when insecure."""
        return "http" if self.insecure else "https"

    def node_tls_settings(self, name):
        """For a node started outside local-cluster.sh: makes its node certificate in the
        cluster's tls directory (deploy/certs.sh) and returns the config settings naming it
        ({} when insecure). Call trust(url) once its API URL is known."""
        if self.insecure:
            return {}
        certs = os.path.join(SOURCE_DIR, "deploy", "certs.sh")
        p = subprocess.run(["bash", certs, os.path.join(self.dir, "tls"), "--nodes", name],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=SCRIPT_TIMEOUT_S)
        if p.returncode != 0:
            raise ClusterError("certs.sh for %s failed: %s" % (name, p.stderr.strip()))
        return {"tls_cert": self.tls_path(name + ".pem"), "tls_key": self.tls_path(name + ".key"),
                "key_file": self.tls_path("data.key")}

    def trust(self, url):
        """Makes http() use this cluster's TLS settings for url's address too."""
        if self._tls is not None:
            _tls_contexts[urllib.parse.urlsplit(url).netloc] = self._tls

    def _register_tls(self):
        self._unregister_tls()
        if self.insecure:
            return
        self._tls = self.tls_context()
        for node in self.nodes.values():
            netloc = urllib.parse.urlsplit(node["api"]).netloc
            _tls_contexts[netloc] = self._tls

    def _unregister_tls(self):
        ctx = getattr(self, "_tls", None)
        for netloc in [k for k, v in _tls_contexts.items() if v is ctx]:
            del _tls_contexts[netloc]
        self._tls = None

    def _conf(self, name):
        return os.path.join(self.nodes[name]["dir"], "tandem.conf")

    def _reload_pid(self, name):
        pid = None
        try:
            with open(os.path.join(self.nodes[name]["dir"], "tandemd.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            pass
        # A PID in a pid file may be a reused number of a process reaped earlier: forget that.
        _exit_codes.pop(pid, None)
        self.nodes[name]["pid"] = pid if pid_is_tandemd(pid, self._conf(name)) else None

    def script(self, *args, timeout=SCRIPT_TIMEOUT_S, env=None, script=SCRIPT):
        """Runs deploy/local-cluster.sh (or script: LAB_SCRIPT) with args; returns its output,
        raises ClusterError if it fails (its output in the message). env: extra environment
        variables for the script and the nodes it starts (chaos/ starts a node under an
        LD_PRELOAD shim this way)."""
        inherited = {k: v for k, v in os.environ.items()
                     if k != "TANDEM_CERT_CACHE"}  # only for up, when __enter__ passes it
        env = dict(inherited, **(env or {}), TANDEM_BIN_DIR=self.bin_dir,
                   TANDEM_UP_TIMEOUT=str(self.up_timeout), TANDEM_PYTHON=sys.executable)
        env.pop("TANDEM_CGROUP_ROOT", None)
        if self.cgroup_root is not None:
            env["TANDEM_CGROUP_ROOT"] = self.cgroup_root
        try:
            p = subprocess.run(["bash", script] + list(args), env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ClusterError("%s %s: no answer in %ds:\n%s"
                               % (os.path.basename(script), " ".join(args), timeout,
                                  e.output or ""))
        if p.returncode != 0:
            raise ClusterError("%s %s exited %d:\n%s"
                               % (os.path.basename(script), " ".join(args), p.returncode,
                                  p.stdout))
        return p.stdout

    # ---- the three-place lab (Cluster(lab=True)) ---------------------------------------------

    def _lab(self, *args):
        if not self.lab:
            raise ClusterError("not a lab cluster: Cluster(lab=True)")
        return self.script(*args, script=LAB_SCRIPT, timeout=30)

    def lab_cut(self, site_a, site_b, reset=False):
        """Blackholes the link between two sites (reset: connections reset instead)."""
        self._lab("cut", self.dir, site_a, site_b, *(["--reset"] if reset else []))

    def lab_heal(self):
        """Puts every link of the lab back up."""
        self._lab("heal", self.dir)

    def lab_slow(self, site_a, site_b, rtt_ms):
        """Sets the round-trip time between two sites."""
        self._lab("slow", self.dir, site_a, site_b, str(rtt_ms))

    def lab_id(self):
        """The lab's name prefix (tl + 6 hex digits) of its namespaces and links."""
        with open(os.path.join(self.dir, "lab", "lab.conf")) as f:
            return dict(line.strip().split("=", 1) for line in f if "=" in line)["LAB_ID"]

    # ---- HTTP ------------------------------------------------------------------------------

    def http(self, method, url, body=None, headers=None, timeout=5, context=None):
        """See the module-level http(): (status, headers, body bytes)."""
        return http(method, url, body=body, headers=headers, timeout=timeout, context=context)

    def url(self, name, path=""):
        return self.nodes[name]["api"] + path

    def api(self, name, method, path, body=None, headers=None, timeout=5, context=None):
        """HTTP request to node name's API: api("east-1", "GET", "/v1/status"); context: see
        tls_context (another user, or none)."""
        return http(method, self.url(name, path), body=body, headers=headers, timeout=timeout,
                    context=context)

    def get_json(self, name, path, timeout=5):
        """GET path from node name; returns the decoded JSON, raises ClusterError unless 200."""
        status, _, body = self.api(name, "GET", path, timeout=timeout)
        if status != 200:
            raise ClusterError("%s GET %s: %d %s" % (name, path, status, body[:200]))
        return json.loads(body)

    def metric(self, name, series):
        """The value of one series of node name's /metrics, named as printed (with its labels,
        if any): metric("east-1", "tandem_raft_term")."""
        status, _, body = self.api(name, "GET", "/metrics")
        if status != 200:
            raise ClusterError("%s GET /metrics: %d %s" % (name, status, body[:200]))
        for line in body.decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        raise ClusterError("%s: no %s in /metrics" % (name, series))

    def status(self, name, timeout=5):
        """GET /v1/status of node name as a dict (ClusterError unless 200, OSError if down)."""
        return self.get_json(name, "/v1/status", timeout=timeout)

    def kv_put(self, name, key, value, timeout=10):
        """PUT a key through node name; returns the mod_index (ClusterError unless 200)."""
        status, _, body = self.api(name, "PUT", "/v1/kv/" + urllib.parse.quote(key, safe=""),
                                   body=value, timeout=timeout)
        if status != 200:
            raise ClusterError("%s PUT %s: %d %s" % (name, key, status, body[:200]))
        return json.loads(body)["mod_index"]

    def kv_get(self, name, key, local=False, timeout=10):
        """Value bytes of key read through node name, None when absent (404)."""
        path = "/v1/kv/" + urllib.parse.quote(key, safe="")
        if local:
            path += "?consistency=local"
        status, _, body = self.api(name, "GET", path, timeout=timeout)
        if status == 404:
            return None
        if status != 200:
            raise ClusterError("%s GET %s: %d %s" % (name, key, status, body[:200]))
        return body

    # ---- cluster state ---------------------------------------------------------------------

    def live(self):
        """Names of nodes whose process runs and is not paused, in node order."""
        return [n for n in self.names
                if n not in self.paused and pid_is_tandemd(self.nodes[n]["pid"], self._conf(n))]

    def settled_leader(self, timeout=30):
        """The agreed leader once it is outside the witness site. A cluster may come up led by
        the witness; its site controller moves leadership off at once (a witness never keeps it,
        and a transfer to it is refused), so what only a leader knows must be asked after."""
        def outside_witness():
            leader = self.leader()
            return leader if self.nodes[leader]["site"] != "witness" else None
        return wait_until(outside_witness, timeout, "a leader outside the witness site")

    def leader(self, timeout=UP_TIMEOUT_S, among=None):
        """Name of the leader once every node in among (default: live nodes) answers, names the
        same leader, and that leader says it leads. Raises ClusterError after timeout seconds."""
        def agreed():
            names = list(among) if among is not None else self.live()
            leaders = set()
            for n in names:
                leader = self.status(n, timeout=2)["leader"]
                leaders.add(leader["name"] if leader else None)
            if len(leaders) != 1 or None in leaders:
                return None
            name = leaders.pop()
            if name not in self.nodes or self.status(name, timeout=2)["node"]["state"] != "leader":
                return None
            return name
        return wait_until(agreed, timeout, "one agreed leader")

    def wait_applied(self, names, index, timeout=30):
        """Waits until every node in names has applied_index >= index; returns name -> index."""
        seen = {}

        def reached():
            for n in names:
                seen[n] = self.status(n, timeout=2)["node"]["applied_index"]
            return all(seen[n] >= index for n in names) and dict(seen)
        try:
            return wait_until(reached, timeout, "applied_index >= %d" % index)
        except ClusterError as e:
            raise ClusterError("%s; last seen %s" % (e, seen))

    def wait_converged(self, names=None, timeout=30):
        """Waits until the nodes in names (default: live ones) and the leader report the same
        applied_index and apply_digest; returns (applied_index, apply_digest)."""
        seen = {}

        def same():
            leader = self.leader(timeout=min(5, timeout))
            for n in set(names if names is not None else self.live()) | {leader}:
                node = self.status(n, timeout=2)["node"]
                seen[n] = (node["applied_index"], node["apply_digest"])
            values = set(seen.values())
            return len(values) == 1 and values.pop()
        try:
            return wait_until(same, timeout, "same applied_index and apply_digest")
        except ClusterError as e:
            raise ClusterError("%s; last seen %s" % (e, seen))

    def digests(self, names=None):
        """GET /v1/digest from each live node (or names): name -> {"applied_index", "state_digest"}.

        One request after the other: a write applied in between (a site-controller decision, say)
        leaves the answers at different applied indexes, whose digests differ without any
        divergence. To compare nodes, use converged_digests()."""
        return {n: self.get_json(n, "/v1/digest") for n in (names or self.live())}

    def converged_digests(self, names=None, timeout=30):
        """/v1/digest of the live nodes (or names), taken again until every answer names the same
        applied_index; returns name -> {"applied_index", "state_digest"}, all equal.

        Each answer is one node's state at one index (the node commits, then digests one read
        transaction), so two answers at the same applied_index with different state digests
        mean the nodes diverged: Diverged at once, never retried. ClusterError when no round of
        answers shares one index within timeout seconds."""
        seen = {}

        def same_index():
            seen.clear()
            for n in names or self.live():
                seen[n] = self.get_json(n, "/v1/digest", timeout=2)
            check_not_diverged(seen)
            return len({d["applied_index"] for d in seen.values()}) == 1 and dict(seen)
        try:
            return wait_until(same_index, timeout, "one applied_index in every /v1/digest")
        except ClusterError as e:
            raise ClusterError("%s; last seen %s" % (e, seen))

    # ---- processes -------------------------------------------------------------------------

    def _signal(self, name, sig):
        pid = self.nodes[name]["pid"]
        if not pid_is_tandemd(pid, self._conf(name)):
            raise ClusterError("%s is not running" % name)
        os.kill(pid, sig)
        return pid

    def kill(self, name):
        """SIGKILL node name by PID and wait until it is gone."""
        pid = self._signal(name, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), EXIT_TIMEOUT_S, "%s (pid %d) to die" % (name, pid))
        self.paused.discard(name)
        self.nodes[name]["pid"] = None
        try:
            os.remove(os.path.join(self.nodes[name]["dir"], "tandemd.pid"))
        except FileNotFoundError:
            pass

    def stop(self, name):
        """Graceful stop (SIGTERM, bounded wait) through local-cluster.sh stop."""
        if name in self.paused:
            self.resume(name)
        self.script("stop", self.dir, name)
        self.nodes[name]["pid"] = None

    def start(self, name, env=None):
        """Starts node name again from its data through local-cluster.sh start (env: extra
        environment variables for that process, see script())."""
        self.script("start", self.dir, name, env=env)
        self._reload_pid(name)
        if self.nodes[name]["pid"] is None:
            raise ClusterError("%s did not stay up after start" % name)

    def pause(self, name):
        """SIGSTOP: the node stays in the cluster but answers nothing until resume()."""
        self._signal(name, signal.SIGSTOP)
        self.paused.add(name)

    def resume(self, name):
        """SIGCONT a paused node."""
        pid = self.nodes[name]["pid"]
        if pid_alive(pid):
            os.kill(pid, signal.SIGCONT)
        self.paused.discard(name)

    # ---- tools and diagnostics -------------------------------------------------------------

    def ctl(self, *args, check=True, timeout=60, endpoints=None, stdin=None, user="admin"):
        """Runs tandemctl with TANDEM_ENDPOINTS set to the cluster (or endpoints, a list or a
        comma-separated string) and the cluster's TLS settings for user; returns the
        CompletedProcess (text). check: ClusterError on a non-zero exit."""
        if endpoints is None:
            endpoints = self.endpoints
        if not isinstance(endpoints, str):
            endpoints = ",".join(endpoints)
        env = {k: v for k, v in os.environ.items()
               if k not in ("TANDEM_CACERT", "TANDEM_CERT", "TANDEM_KEY")}
        env.update(self.ctl_env(user), TANDEM_ENDPOINTS=endpoints)
        argv = [os.path.join(self.bin_dir, "tandemctl")] + [str(a) for a in args]
        p = subprocess.run(argv, env=env, input=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise ClusterError("tandemctl %s exited %d:\nstdout: %s\nstderr: %s"
                               % (" ".join(argv[1:]), p.returncode, p.stdout, p.stderr))
        return p

    def log_tail(self, name, lines=LOG_TAIL_LINES):
        try:
            with open(os.path.join(self.nodes[name]["dir"], "tandemd.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as e:
            return "(no log: %s)\n" % e

    def print_logs(self, lines=LOG_TAIL_LINES):
        for name in self.names:
            print("---- %s: last %d lines of tandemd.log ----" % (name, lines))
            print(self.log_tail(name, lines), end="")
        sys.stdout.flush()


def run_tests(namespace=None, argv=None):
    """Runs every test_* function of the calling module in definition order (or only those named
    on the command line), prints `N passed, M failed` as the last line and exits non-zero if any
    failed. SIGTERM becomes SystemExit so open clusters are still torn down."""
    if namespace is None:
        namespace = sys._getframe(1).f_globals
    selected = (argv if argv is not None else sys.argv)[1:]
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    if selected:
        unknown = set(selected) - {n for n, _ in tests}
        if unknown:
            print("unknown tests: %s" % " ".join(sorted(unknown)))
            print("0 passed, %d failed" % len(unknown))
            sys.exit(1)
        tests = [(n, f) for n, f in tests if n in selected]

    def terminated(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, terminated)

    passed = failed = 0
    for name, fn in tests:
        print("=== %s" % name, flush=True)
        started = time.monotonic()
        try:
            fn()
        except (Exception, SystemExit, KeyboardInterrupt) as e:
            failed += 1
            sys.stderr.flush()
            traceback.print_exc(file=sys.stdout)
            print("FAIL %s (%.1fs)" % (name, time.monotonic() - started), flush=True)
            if not isinstance(e, Exception):
                break
        else:
            passed += 1
            print("PASS %s (%.1fs)" % (name, time.monotonic() - started), flush=True)
    sys.stderr.flush()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)
