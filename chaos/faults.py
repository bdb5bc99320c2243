"""The nemesis of a chaos run: one thread that injects seeded faults into the cluster one at a
time (so at most one of kill, pause, site loss or partition is ever active and quorum always
comes back), records each with its start and end in the history, and after each heals
everything, restarts dead nodes (a node that died without being killed is a crash, noted) and
revokes BCP for any site the cluster invoked, before the next one starts.

Only the harness's own things are touched: the cluster's tandemd PIDs, its cgroups and its
NetCut nftables table (in the lab: the lab's own links, chaos/labnet.py).
"""

import json
import os
import random
import subprocess
import threading
import time

from bcp_load import bcp_status, site_names
from cluster import ClusterError, exit_code, pid_alive, wait_until

SCHEDULED = ("kill", "kill_leader", "restart_loop", "pause", "site_loss", "partition_node",
             "partition_sites", "bcp_invoke", "bcp_revoke", "bcp_drill", "lost_writes")
FAULT_KINDS = SCHEDULED + ("snapshot_heavy",)
QUIET_S = (1.0, 4.0)        # between one fault's recovery and the next fault
FAULT_ROOM_S = 8.0          # no fault starts with less than this left of the run
DRILL_ROOM_S = 25.0         # nor a drill with less than this
HEALTHY_TIMEOUT_S = 60.0
CTL_TIMEOUT_S = 90
DRILL_TIMEOUT_S = 150
RESTARTS = (3, 5)
SITES = ("east", "west")
LOSTWRITES_LIB = "libtandem_lostwrites.so"
LOSTWRITES_TOOL = "tandem-lostwrites-rollback"


class Nemesis(threading.Thread):

    def __init__(self, cluster, net, history, seed, kinds, deadline, stop, work_dir,
                 unavailable=None):
        super().__init__(name="nemesis", daemon=True)
        self.c = cluster
        self.net = net
        self.history = history
        self.rng = random.Random("%s/nemesis" % seed)
        self.kinds = [k for k in SCHEDULED if k in kinds]
        self.deadline = deadline
        self.stop_event = stop
        self.work_dir = work_dir
        self.abort = threading.Event()   # the run is being torn down: start nothing again
        self.bag = []
        self.down = set()            # nodes the nemesis stopped on purpose and not yet restarted
        self.crashes = {}            # name -> exit codes of deaths nobody caused
        self.errors = []
        self.lost_writes_runs = 0
        self.unavailable = {}        # kind -> why it cannot run here (left out of the schedule)
        for kind, why in (unavailable or {}).items():
            self.leave_out(kind, why)
        if "lost_writes" in self.kinds and self.lostwrites_tools() is None:
            self.leave_out("lost_writes", "%s or %s not built in %s (chaos/lostwrites/)"
                           % (LOSTWRITES_LIB, LOSTWRITES_TOOL, self.c.bin_dir))

    def leave_out(self, kind, why):
        """Takes kind out of the schedule, noting why in the history and the run's summary."""
        if kind in self.kinds:
            self.kinds.remove(kind)
            self.unavailable[kind] = why
            self.history.note("fault %s unavailable, never injected: %s" % (kind, why))

    # ---- the loop --------------------------------------------------------------------------

    def run(self):
        try:
            while self.kinds and not self.stop_event.is_set():
                self.stop_event.wait(self.rng.uniform(*QUIET_S))
                kind = self.next_kind()
                if kind is None:
                    break
                self.inject(kind)
        except Exception as e:  # a harness bug: recorded; the end phase still heals
            self.errors.append("nemesis: %s: %s" % (type(e).__name__, e))
            self.history.note("nemesis stopped by an error: %s: %s" % (type(e).__name__, e))

    def left_s(self):
        return self.deadline - time.monotonic()

    def next_kind(self):
        """The next kind from a seeded shuffled bag of the enabled kinds (every kind once before
        any repeats); None when too little of the run is left for any fault."""
        if self.stop_event.is_set() or self.left_s() < FAULT_ROOM_S:
            return None
        if not self.bag:
            self.bag = list(self.kinds)
            self.rng.shuffle(self.bag)
        kind = self.bag.pop()
        if kind == "bcp_drill" and self.left_s() < DRILL_ROOM_S:
            kind = self.bag.pop() if self.bag else None
        return kind

    def inject(self, kind):
        self.restart_dead()  # a node that died since the last recovery is a crash: noted
        start = self.history.now_ms()
        self.history.note("fault %s starting" % kind)
        try:
            targets, detail = getattr(self, "fault_" + kind)()
        except (ClusterError, OSError, subprocess.SubprocessError, ValueError) as e:
            targets, detail = [], "step failed: %s: %s" % (type(e).__name__, str(e)[-400:])
            self.errors.append("fault %s: %s" % (kind, detail))
        self.heal()
        self.history.fault(kind, targets, start, self.history.now_ms(), detail)
        self.recover()

    def hold(self, low, high):
        """Keeps a fault active for a seeded time, cut short when the run ends."""
        wanted = self.rng.uniform(low, high)
        self.stop_event.wait(max(0.5, min(wanted, self.left_s())))

    # ---- processes -------------------------------------------------------------------------

    def kill_node(self, name):
        self.c.kill(name)   # raises when name is not running: restart_dead() then notes why
        self.down.add(name)

    def start_node(self, name, env=None):
        if self.abort.is_set():
            raise ClusterError("not starting %s: the run is being torn down" % name)
        self.c.start(name, env=env)
        self.down.discard(name)

    def running(self):
        return [n for n in self.c.names if n not in self.down]

    def fault_kill(self):
        name = self.rng.choice(self.running())
        self.kill_node(name)
        self.hold(1, 6)
        self.start_node(name)
        return [name], "kill -9, restarted"

    def fault_kill_leader(self):
        leader = self.c.leader(timeout=10)
        self.kill_node(leader)
        self.hold(1, 6)
        self.start_node(leader)
        return [leader], "kill -9 of the leader, restarted"

    def fault_restart_loop(self):
        name = self.rng.choice(self.running())
        times = self.rng.randint(*RESTARTS)
        for _ in range(times):
            self.kill_node(name)
            self.start_node(name)
        return [name], "kill -9 and immediate restart, %d times" % times

    def fault_pause(self):
        name = self.rng.choice(self.running())
        self.c.pause(name)
        self.hold(1, 6)
        self.c.resume(name)
        return [name], "SIGSTOP, then SIGCONT"

    def fault_site_loss(self):
        site = self.rng.choice(SITES)
        names = site_names(self.c, site)
        for name in names:
            self.kill_node(name)
        self.hold(4, 10)
        state = self.site_state(site)
        for name in names:
            self.start_node(name)
        return names, "kill -9 of site %s, restarted (site %s before the restart)" % (site, state)

    # ---- network ---------------------------------------------------------------------------

    def fault_partition_node(self):
        name = self.rng.choice(self.running())
        self.net.cut([name], [n for n in self.c.names if n != name], ports="all")
        self.hold(2, 8)
        return [name], "cut from every other node (raft and API), then healed"

    def fault_partition_sites(self):
        east, west = site_names(self.c, "east"), site_names(self.c, "west")
        self.net.cut(east, west, ports="all")
        self.hold(4, 10)
        states = "east %s, west %s" % (self.site_state("east"), self.site_state("west"))
        return east + west, "east cut from west, witness reaching both (%s at the heal)" % states

    def heal(self):
        """Ends whatever is active: network cuts, pauses. Dead nodes restart in recover()."""
        if self.net.cuts:
            self.net.heal()
        for name in list(self.c.paused):
            self.c.resume(name)

    # ---- BCP -------------------------------------------------------------------------------

    def ctl_json(self, *args, timeout=CTL_TIMEOUT_S):
        """tandemctl -o json ARGS: (exit code, decoded answer or the error text)."""
        p = self.c.ctl("-o", "json", *args, check=False, timeout=timeout)
        try:
            return p.returncode, json.loads(p.stdout)
        except ValueError:
            return p.returncode, (p.stderr or p.stdout).strip()[:300]

    def invoke(self, site):
        code, out = self.ctl_json("bcp", "invoke", site, "--reason", "chaos")
        state = out["site"]["state"] if code == 0 and isinstance(out, dict) else out
        return "invoke %s: exit %d, %s" % (site, code, state)

    def fault_bcp_invoke(self):
        site = self.rng.choice(SITES)
        detail = self.invoke(site)
        self.hold(2, 6)
        return site_names(self.c, site), detail + " (revoked by the recovery)"

    def fault_bcp_revoke(self):
        site = self.rng.choice(SITES)
        start = self.history.now_ms()
        detail = self.invoke(site)
        self.history.fault("bcp_invoke", site_names(self.c, site), start, self.history.now_ms(),
                           detail + " (before a bcp_revoke)")
        self.hold(1, 4)
        args = ["bcp", "revoke", site] + (["--failback"] if self.rng.random() < 0.5 else [])
        code, out = self.ctl_json(*args)
        state = out["site"]["state"] if code == 0 and isinstance(out, dict) else out
        return site_names(self.c, site), "%s: exit %d, %s" % (" ".join(args[1:]), code, state)

    def fault_bcp_drill(self):
        site = self.rng.choice(SITES)
        code, out = self.ctl_json("bcp", "drill", site, timeout=DRILL_TIMEOUT_S)
        if code == 0 and isinstance(out, dict):
            detail = "drill %s: ok %s, rto_ms %s, rpo_writes %s, digests_equal %s" % (
                site, out.get("ok"), out.get("rto_ms"), out.get("rpo_writes"),
                out.get("digests_equal"))
        else:
            detail = "drill %s: exit %d, %s" % (site, code, out)
        return site_names(self.c, site), detail

    def site_state(self, site):
        """The site's BCP state in the local view of a node that says it leads, or "unknown"
        (local: during a partition a forwarded read would wait for an unreachable leader)."""
        for name in self.running():
            try:
                if self.c.status(name, timeout=2)["node"]["state"] != "leader":
                    continue
                view = self.c.get_json(name, "/v1/bcp/status?consistency=local", timeout=2)
                return next(s["state"] for s in view["sites"] if s["name"] == site)
            except (ClusterError, OSError, ValueError, KeyError, StopIteration):
                continue
        return "unknown"

    # ---- lost writes -----------------------------------------------------------------------

    def lostwrites_tools(self):
        """(shim library, rollback command) when chaos/lostwrites/ is built, else None."""
        lib = os.path.join(self.c.bin_dir, LOSTWRITES_LIB)
        tool = os.path.join(self.c.bin_dir, LOSTWRITES_TOOL)
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lostwrites",
                              "rollback")
        rollback = next((t for t in (tool, script) if os.access(t, os.X_OK)), None)
        if not os.path.exists(lib) or rollback is None:
            return None
        return lib, rollback

    def fault_lost_writes(self):
        """Restarts a node under the shim, lets it write, kills it, rolls its files back to
        their last fsync and starts it again under the shim, which answers the boot id the
        rollback's simulated reboot made (tandemd then rebuilds a store with unsynced commits)."""
        lib, rollback = self.lostwrites_tools()
        name = self.rng.choice(self.running())
        self.lost_writes_runs += 1
        journal = os.path.join(self.work_dir, "lostwrites-%s-%d" % (name, self.lost_writes_runs))
        os.makedirs(journal)
        asan = os.environ.get("ASAN_OPTIONS", "")
        env = {"LD_PRELOAD": lib, "TANDEM_LOSTWRITES_DIR": journal,
               "TANDEM_LOSTWRITES_ROOT": os.path.join(self.c.nodes[name]["dir"], "data"),
               "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}
        self.kill_node(name)
        self.start_node(name, env=env)
        self.hold(2, 6)
        self.kill_node(name)
        p = subprocess.run([rollback, journal], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=CTL_TIMEOUT_S)
        if p.returncode != 0:
            self.errors.append("lost_writes: %s exited %d, %s restarted without a rollback"
                               % (rollback, p.returncode, name))
        self.start_node(name, env=env)
        return [name], "under the shim, kill -9, rollback exit %d: %s" % (
            p.returncode, p.stdout.strip().replace("\n", " | ")[:300])

    # ---- recovery --------------------------------------------------------------------------

    def recover(self, timeout=HEALTHY_TIMEOUT_S):
        """Heals, restarts every dead node (noting crashes), revokes invoked sites and waits,
        bounded, until every node is up, out of quarantine, and every site active with its
        members back in their home roles. Returns True when all of that was reached."""
        self.heal()
        if self.abort.is_set():
            return False
        self.restart_dead()
        try:
            wait_until(self.all_serving, timeout, "every node serving with a leader",
                       interval=0.25)
            wait_until(self.sites_home, timeout, "every site active, members in home roles",
                       interval=0.5)
            return True
        except ClusterError as e:
            self.history.note("recovery incomplete: %s" % e)
            self.errors.append("recovery incomplete at %.1fs: %s"
                               % (self.history.now_ms() / 1000, e))
            return False

    def restart_dead(self):
        for name in self.c.names:
            if self.abort.is_set():
                return
            pid = self.c.nodes[name]["pid"]
            if pid is not None and pid_alive(pid):
                continue
            if name not in self.down:
                code = exit_code(pid) if pid is not None else None
                self.crashes.setdefault(name, []).append(code)
                self.history.note("node %s (pid %s) died without a fault: exit status %s"
                                  % (name, pid, code))
            try:
                self.start_node(name)
            except ClusterError as e:
                self.history.note("restart of %s failed: %s" % (name, str(e)[-300:]))
                self.errors.append("restart of %s failed" % name)

    def all_serving(self):
        leaders = set()
        for name in self.c.names:
            node = self.c.status(name, timeout=2)
            if node["node"].get("quarantined") or node["leader"] is None:
                return False
            leaders.add(node["leader"]["name"])
        return len(leaders) == 1

    def sites_home(self):
        """True when every site is active and home; revokes a site left invoked."""
        leader = self.c.leader(timeout=5)
        status = bcp_status(self.c, leader)
        home = True
        for site in status["sites"]:
            if site["state"] == "invoked":
                code, out = self.ctl_json("bcp", "revoke", site["name"])
                self.history.note("recovery: bcp revoke %s: exit %d" % (site["name"], code))
            home = home and site["state"] == "active" and all(
                n["role"] == n["home_role"] for n in site["nodes"])
        return home
