"""Load generator and site helpers for the BCP integration tests (python3 standard library only).

Writer threads PUT unique keys through chosen nodes at a fixed pace, the way a well-behaved
client does: an answer of 503 (no leader, leadership moved, forwarding failed) or a refused
connection is retried on the same node for up to RETRY_BUDGET_S; only a write that never got a
200 within that budget counts as failed. Raw 503s are counted too, so a test can report them.
"""

import http.client as httpclient
import json
import threading
import time
import urllib.parse

from cluster import http_connection

RETRY_BUDGET_S = 10.0   # a write that cannot land in this long has failed
RETRY_PAUSE_S = 0.05
REQUEST_TIMEOUT_S = 5.0
WRITE_PAUSE_S = 0.01    # between one writer's writes


class Load:
    """Writers through each URL in urls until stop(); results in the attributes below."""

    def __init__(self, urls, prefix, writers_per_url=2, limit_writes=None, limit_s=None):
        """limit_writes, limit_s: every writer also stops after that many writes of its own or
        that many seconds, whatever stop() does (bounded load)."""
        self.urls = list(urls)
        self.prefix = prefix
        self.writers_per_url = writers_per_url
        self.limit_writes = limit_writes
        self.limit_s = limit_s
        self.lock = threading.Lock()
        self.acked = []          # (key, monotonic ack time)
        self.failed = []         # (key, last status or error)
        self.raw_503 = 0
        self.raw_errors = 0
        self._stop = threading.Event()
        self._threads = []

    def start(self):
        for i, url in enumerate(self.urls):
            for w in range(self.writers_per_url):
                t = threading.Thread(target=self._writer, args=(url, "%d.%d" % (i, w)),
                                     daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self, timeout=RETRY_BUDGET_S + 10):
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        return self

    def _put(self, conn_box, url, key):
        if conn_box[0] is None:
            conn_box[0] = http_connection(url, timeout=REQUEST_TIMEOUT_S)
        conn = conn_box[0]
        try:
            conn.request("PUT", "/v1/kv/" + urllib.parse.quote(key, safe=""), body=key.encode())
            resp = conn.getresponse()
            resp.read()
            return resp.status
        except (OSError, httpclient.HTTPException) as e:
            conn.close()
            conn_box[0] = None
            return type(e).__name__

    def _writer(self, url, tag):
        conn_box = [None]
        n = 0
        ends = time.monotonic() + self.limit_s if self.limit_s is not None else None
        while not self._stop.is_set():
            if (self.limit_writes is not None and n >= self.limit_writes) or \
                    (ends is not None and time.monotonic() >= ends):
                break
            n += 1
            key = "%s/%s/%d" % (self.prefix, tag, n)
            deadline = time.monotonic() + RETRY_BUDGET_S
            while True:
                status = self._put(conn_box, url, key)
                if status == 200:
                    with self.lock:
                        self.acked.append((key, time.monotonic()))
                    break
                with self.lock:
                    if status == 503:
                        self.raw_503 += 1
                    else:
                        self.raw_errors += 1
                if time.monotonic() >= deadline:
                    with self.lock:
                        self.failed.append((key, status))
                    break
                time.sleep(RETRY_PAUSE_S)
            time.sleep(WRITE_PAUSE_S)
        if conn_box[0] is not None:
            conn_box[0].close()

    def max_gap_ms(self, since=None, until=None):
        """Longest time between consecutive acknowledgements (in the window, if given)."""
        with self.lock:
            times = sorted(t for _, t in self.acked
                           if (since is None or t >= since) and (until is None or t <= until))
        return int(max((b - a for a, b in zip(times, times[1:])), default=0) * 1000)

    def summary(self):
        return {"acked": len(self.acked), "failed": len(self.failed), "raw_503": self.raw_503,
                "raw_errors": self.raw_errors, "max_gap_ms": self.max_gap_ms()}


def bcp_status(c, name):
    return c.get_json(name, "/v1/bcp/status")


def site_of(status, site):
    for s in status["sites"]:
        if s["name"] == site:
            return s
    raise AssertionError("no site %s in %s" % (site, json.dumps(status)[:400]))


def roles(status, site):
    return {n["name"]: n["role"] for n in site_of(status, site)["nodes"]}


def site_names(c, site):
    return [n for n in c.names if c.nodes[n]["site"] == site]
