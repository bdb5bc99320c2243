"""The client thread every chaos workload runs in: a seeded random source, a bounded loop (an
operation count and a time limit, besides the run's stop event) and the Jepsen rule that a
client whose operation ended indeterminate ("info") continues as a new process, since the old
operation may still take effect at any later time."""

import random
import threading
import time

MAX_OPS_PER_WORKER = 200000


class Worker(threading.Thread):
    """Subclasses implement step(), one operation (or a few) per call."""

    def __init__(self, name, process, processes, history, cluster, seed, stop, deadline,
                 pause_s):
        super().__init__(name=name, daemon=True)
        self.process = process
        self.processes = processes        # process ids advance by this (the number of workers)
        self.history = history
        self.cluster = cluster
        self.rng = random.Random("%s/%s" % (seed, name))
        self.stop_event = stop
        self.deadline = deadline          # monotonic time after which no operation starts
        self.pause_s = pause_s
        self.ops = 0
        self.error = None

    def run(self):
        try:
            while (not self.stop_event.is_set() and self.ops < MAX_OPS_PER_WORKER
                   and time.monotonic() < self.deadline):
                self.step()
                self.stop_event.wait(self.rng.uniform(0, self.pause_s))
        except Exception as e:  # a harness bug: recorded, the run goes on without this worker
            self.error = "%s: %s: %s" % (self.name, type(e).__name__, e)
            self.history.note("worker stopped by an error: %s" % self.error)

    def node(self, among=None):
        """A random node name (among the given names, default every node)."""
        return self.rng.choice(list(among or self.cluster.names))

    def url(self, node):
        return self.cluster.nodes[node]["api"]

    def invoke(self, workload, f, node, **fields):
        self.ops += 1
        return self.history.invoke(self.process, workload, f, node, **fields)

    def complete(self, op, outcome, **fields):
        """Completes op; after "info" this client goes on as a new process."""
        self.history.complete(op, outcome, **fields)
        if outcome == "info":
            self.process += self.processes
