"""Integration test of deploy/local-cluster.sh: two clusters side by side, the files it writes,
stop --kill / start of single nodes, and down leaving no tandemd process behind."""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.parse

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
from cluster import (BIN_DIR, SCRIPT, SUBREAPER, Cluster, ClusterError, exit_code,  # noqa: E402
                     pid_alive, run_tests, wait_until)

TOPOLOGY_SITES = {
    "2+2+1": {"east-1": "east", "east-2": "east", "west-1": "west", "west-2": "west",
              "witness-1": "witness"},
    "3": {"east-1": "east", "west-1": "west", "witness-1": "witness"},
}


def read(path):
    with open(path) as f:
        return f.read()


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def refuses_connections(api):
    parts = urllib.parse.urlsplit(api)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
    except OSError:
        return True
    return False


def check_layout(c, topology):
    """The node table, endpoints and env files match what was asked for and what runs."""
    assert c.names == list(TOPOLOGY_SITES[topology]), c.names
    for name, node in c.nodes.items():
        assert node["site"] == TOPOLOGY_SITES[topology][name], node
        assert node["role"] == "voter", node
        assert pid_alive(node["pid"]), node
        conf = read(os.path.join(node["dir"], "tandem.conf"))
        assert "name = %s\n" % name in conf, conf
        assert "data_dir = %s\n" % os.path.join(node["dir"], "data") in conf, conf
        assert conf.count("member = ") == len(c.names), conf
    apis = [c.nodes[n]["api"] for n in c.names]
    assert c.endpoints == apis, (c.endpoints, apis)
    assert read(os.path.join(c.dir, "endpoints")).strip() == ",".join(apis)
    env_lines = read(os.path.join(c.dir, "env")).splitlines()
    assert "export TANDEM_ENDPOINTS=%s" % ",".join(apis) in env_lines, env_lines
    check_tls_layout(c, env_lines)
    ports = {}
    for line in read(os.path.join(c.dir, "ports")).splitlines():
        name, raft_port, api_port = line.split()
        ports[name] = (int(raft_port), int(api_port))
    assert ports == {n: (port_of(c.nodes[n]["raft"]), port_of(c.nodes[n]["api"]))
                     for n in c.names}, ports


def check_tls_layout(c, env_lines):
    """TLS clusters: https:// URLs, each node's certificate in its config, DIR/env exporting
    admin's; insecure ones: http:// URLs, insecure = true, nothing exported."""
    exported = [line for line in env_lines if line.startswith("export TANDEM_C")
                or line.startswith("export TANDEM_KEY")]
    for name, node in c.nodes.items():
        conf = read(os.path.join(node["dir"], "tandem.conf"))
        assert node["api"].startswith(c.scheme + "://"), node
        assert conf.count("member = ") == conf.count(",%s://" % c.scheme), conf
        if c.insecure:
            assert "insecure = true\n" in conf and "tls_" not in conf, conf
            continue
        assert "insecure" not in conf, conf
        for key, file in (("tls_ca", "ca.pem"), ("tls_cert", name + ".pem"),
                          ("tls_key", name + ".key"), ("tls_crl", "crl.pem")):
            assert "%s = %s\n" % (key, c.tls_path(file)) in conf, (key, conf)
            assert os.path.isfile(c.tls_path(file)), file
        assert os.stat(c.tls_path(name + ".key")).st_mode & 0o077 == 0, name
    if c.insecure:
        assert exported == [], env_lines
        return
    assert exported == ["export TANDEM_CACERT=%s" % c.tls_path("ca.pem"),
                        "export TANDEM_CERT=%s" % c.tls_path("admin.pem"),
                        "export TANDEM_KEY=%s" % c.tls_path("admin.key")], env_lines
    assert os.path.isfile(c.tls_path("operator.pem")), "no certificate for user operator"
    # tandemctl honours what DIR/env exports.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    p = subprocess.run(["bash", "-c", 'source "$1/env" && "$2" status', "-",
                        c.dir, os.path.join(c.bin_dir, "tandemctl")], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "leader" in p.stdout, (p.returncode, p.stdout, p.stderr)


def refused(c, name, context):
    """True when a request to node name with the ssl context fails or is turned away."""
    try:
        status, _, _ = c.api(name, "GET", "/v1/status", context=context)
    except OSError:
        return True
    return status in (401, 403)


def check_nodes_answer(c):
    """Every node answers as itself, in one cluster, with the full member list."""
    cluster_ids = set()
    for name in c.names:
        status, headers, _ = c.api(name, "GET", "/healthz")
        assert status == 200 and headers["X-Tandem-Node"] == name, (name, status, dict(headers))
        st = c.status(name)
        assert st["node"]["name"] == name and st["node"]["site"] == c.nodes[name]["site"], st
        assert sorted(m["name"] for m in st["members"]) == sorted(c.names), st["members"]
        cluster_ids.add(st["node"]["cluster_id"])
    assert len(cluster_ids) == 1, cluster_ids
    return cluster_ids.pop()


def gone(pid, what):
    """The script returned once the process was a zombie; it is reaped a moment later at most."""
    wait_until(lambda: not pid_alive(pid), 5, "pid %d (%s) to exit" % (pid, what))


def all_ports(c):
    return [port_of(n[k]) for n in c.nodes.values() for k in ("raft", "api")]


def test_missing_tandemd_is_reported():
    with tempfile.TemporaryDirectory() as empty:
        target = os.path.join(empty, "cluster")
        p = subprocess.run(["bash", SCRIPT, "up", target], env=dict(os.environ, TANDEM_BIN_DIR=empty),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
        assert p.returncode != 0, p.stdout
        assert "tandemd not found in %s: build first" % empty in p.stdout, p.stdout
        assert not os.path.exists(target), "up created the cluster dir without tandemd"


def test_two_clusters_side_by_side():
    with Cluster("2+2+1", settings={"snapshot_threshold": 64}, cert_cache=False) as a, \
            Cluster("3", cert_cache=False) as b:
        check_layout(a, "2+2+1")
        check_layout(b, "3")
        assert "snapshot_threshold = 64\n" in read(os.path.join(a.dir, "east-1", "tandem.conf"))
        ports_a, ports_b = all_ports(a), all_ports(b)
        assert len(set(ports_a)) == len(ports_a) and len(set(ports_b)) == len(ports_b)
        assert not set(ports_a) & set(ports_b), (ports_a, ports_b)
        assert a.leader() in a.names and b.leader() in b.names
        id_a, id_b = check_nodes_answer(a), check_nodes_answer(b)
        assert id_a != id_b, id_a
        # Each cluster has its own CA: a's admin is nobody to b, and b's nodes are unknown to a.
        stranger = b.tls_context(user=None)
        stranger.load_cert_chain(a.tls_path("admin.pem"), a.tls_path("admin.key"))
        assert refused(b, b.names[0], stranger), "b accepted a certificate of a's CA"
        try:
            b.api(b.names[0], "GET", "/healthz", context=a.tls_context())
            raise AssertionError("a's CA verified a node of b")
        except ssl.SSLCertVerificationError:
            pass
        # The clusters are separate: a write to one never shows in the other.
        a.kv_put(a.leader(), "side-by-side", b"only-in-a")
        assert a.kv_get(a.leader(), "side-by-side") == b"only-in-a"
        assert b.kv_get(b.leader(), "side-by-side") is None


def test_certificate_cache():
    """With TANDEM_CERT_CACHE (what cluster.py gives up), DIR/tls is a copy of one set made for
    the node names: a real directory of the cluster's own, keys private, the CA that of the
    cached set; renewing in it leaves the cache alone, and a second cluster of the same names
    open at the same time in this process makes its own CA (so the two do not trust each other)."""
    saved = cluster.CERT_CACHE
    with tempfile.TemporaryDirectory() as cache:
        cluster.CERT_CACHE = cache
        try:
            with Cluster("3") as a, Cluster("3") as b:
                check_layout(a, "3")
                check_layout(b, "3")
                entries = [e for e in os.listdir(cache) if not e.startswith(".")]
                assert len(entries) == 1, os.listdir(cache)
                entry = os.path.join(cache, entries[0])
                assert sorted(os.listdir(cache)) == entries, os.listdir(cache)  # no leftovers
                tls = os.path.join(a.dir, "tls")
                assert os.path.isdir(tls) and not os.path.islink(tls), tls
                for f in os.listdir(entry):
                    if f.endswith(".pem"):
                        assert read(os.path.join(tls, f)) == read(os.path.join(entry, f)), f
                assert read(b.tls_path("ca.pem")) != read(a.tls_path("ca.pem")), "b shares a's CA"
                assert refused(b, b.names[0], a.tls_context()), "b accepted a's admin"
                cached = read(os.path.join(entry, "east-1.pem"))
                subprocess.run(["bash", os.path.join(os.path.dirname(SCRIPT), "certs.sh"),
                                "renew", a.tls_path(""), "east-1"], check=True,
                               capture_output=True, timeout=60)
                assert read(a.tls_path("east-1.pem")) != cached
                assert read(os.path.join(entry, "east-1.pem")) == cached
        finally:
            cluster.CERT_CACHE = saved


def test_insecure_cluster():
    """--insecure (benchmarks only): plaintext http:// everywhere, no certificates."""
    with Cluster("3", insecure=True) as c:
        check_layout(c, "3")
        check_nodes_answer(c)
        assert not os.path.exists(os.path.join(c.dir, "tls"))
        c.kv_put(c.leader(), "plain", b"text")
        assert c.ctl("kv", "get", "plain").stdout == "text"
        # The mode belongs to the cluster: up again keeps it.
        c.script("down", c.dir)
        c.script("up", c.dir)
        c.reload()
        assert all(n["api"].startswith("http://") for n in c.nodes.values())


def test_stop_kill_and_start():
    with Cluster("2+2+1", cert_cache=False) as c:
        leader = c.leader()
        follower = next(n for n in c.names if n != leader)
        c.kv_put(leader, "before", b"1")
        old_pid = c.nodes[follower]["pid"]
        out = c.script("stop", c.dir, follower, "--kill")
        assert "SIGKILL" in out, out
        gone(old_pid, "%s after stop --kill" % follower)
        assert not SUBREAPER or exit_code(old_pid) == -9, exit_code(old_pid)
        assert not os.path.exists(os.path.join(c.nodes[follower]["dir"], "tandemd.pid"))
        c.reload()
        assert c.nodes[follower]["pid"] is None and follower not in c.live()
        c.kv_put(c.leader(), "while-down", b"2")
        c.start(follower)
        new_pid = c.nodes[follower]["pid"]
        assert pid_alive(new_pid) and new_pid != old_pid
        c.wait_converged()
        assert c.kv_get(follower, "before", local=True) == b"1"
        assert c.kv_get(follower, "while-down", local=True) == b"2"

        # Killing the leader moves leadership to a survivor; it comes back as a follower.
        c.script("stop", c.dir, leader, "--kill")
        c.reload()
        new_leader = c.leader()
        assert new_leader != leader, new_leader
        c.kv_put(new_leader, "after-failover", b"3")
        c.start(leader)
        c.wait_converged()
        assert c.kv_get(leader, "after-failover", local=True) == b"3"

        # A graceful stop ends the process too, and `status` still reports the cluster.
        pid = c.nodes[follower]["pid"]
        c.stop(follower)
        gone(pid, "%s after stop" % follower)
        assert not SUBREAPER or exit_code(pid) == 0, "SIGTERM: exit code %s" % exit_code(pid)
        out = c.script("status", c.dir)
        assert c.leader() in out, out


def tandemd_pids_of(conf):
    """PIDs of live tandemd processes running conf, from /proc."""
    return [pid for pid, running in cluster.tandemd_configs().items() if running == conf]


def test_concurrent_starts_start_one_node():
    """Two `start` of one stopped node at once: one starts it, the other says it is running;
    the pid file names the one tandemd that runs, and no stray /proc error is printed."""
    with Cluster("3", cert_cache=False) as c:
        follower = next(n for n in c.names if n != c.leader())
        c.stop(follower)
        env = dict(os.environ, TANDEM_BIN_DIR=c.bin_dir)
        runs = [subprocess.Popen(["bash", SCRIPT, "start", c.dir, follower], env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for _ in range(2)]
        outputs = []
        for p in runs:
            out, _ = p.communicate(timeout=120)
            outputs.append((p.returncode, out))
        codes = sorted(code for code, _ in outputs)
        assert codes[0] == 0 and codes[1] != 0, outputs
        refused = next(out for code, out in outputs if code != 0)
        assert "is already running" in refused, outputs
        assert all("/proc/" not in out for _, out in outputs), outputs
        conf = os.path.join(c.nodes[follower]["dir"], "tandem.conf")
        pids = tandemd_pids_of(conf)
        assert len(pids) == 1, pids
        c.reload()
        assert c.nodes[follower]["pid"] == pids[0], (c.nodes[follower]["pid"], pids)
        c.wait_converged()


def test_down_leaves_nothing_and_up_restarts():
    with Cluster("3", cert_cache=False) as c:
        c.kv_put(c.leader(), "survives-restart", b"yes")
        pids = {n: c.nodes[n]["pid"] for n in c.names}
        endpoints = list(c.endpoints)
        out = c.script("down", c.dir)
        for name, pid in pids.items():
            assert "stopped %s (pid %d" % (name, pid) in out, out
            gone(pid, "%s after down" % name)
            # tandemd's contract: a clean shutdown on SIGTERM exits 0.
            assert not SUBREAPER or exit_code(pid) == 0, (name, exit_code(pid))
            assert not os.path.exists(os.path.join(c.nodes[name]["dir"], "tandemd.pid"))
            assert refuses_connections(c.nodes[name]["api"]), name
        c.script("down", c.dir)  # nothing running: still succeeds
        try:
            c.script("up", c.dir, "--insecure")
            raise AssertionError("up --insecure switched TLS off on a TLS cluster")
        except ClusterError as e:
            assert "holds a TLS cluster: --insecure applies to new ones" in str(e), e

        # up on the same directory restarts the nodes from their data on the same ports.
        c.script("up", c.dir)
        c.reload()
        assert c.endpoints == endpoints, (c.endpoints, endpoints)
        assert all(pid_alive(c.nodes[n]["pid"]) and c.nodes[n]["pid"] != pids[n]
                   for n in c.names), c.nodes
        assert c.kv_get(c.leader(), "survives-restart") == b"yes"
        wait_until(lambda: all(c.kv_get(n, "survives-restart", local=True) == b"yes"
                               for n in c.names), 30, "the key on every node")


def test_teardown_kills_and_reports_a_node_down_missed():
    """A node local-cluster.sh down does not recognise (here: its pid file gone) is killed by the
    test cluster's teardown, and the test fails saying so, instead of running on."""
    c = Cluster(topology="3")
    c.__enter__()
    pid, kept = c.nodes["east-1"]["pid"], c.dir
    os.remove(os.path.join(c.dir, "east-1", "tandemd.pid"))
    try:
        c.__exit__(None, None, None)
        raise AssertionError("teardown did not report the node left running")
    except ClusterError as e:
        assert str(pid) in str(e), e
    shutil.rmtree(kept, ignore_errors=True)  # kept for a failed test: this one is not
    assert not pid_alive(pid), pid  # the teardown waited for the SIGKILLed node to be gone


if __name__ == "__main__":
    print("tandemd from %s" % BIN_DIR, flush=True)
    run_tests()
