#!/usr/bin/env python3
"""Benchmark of the web console's load time from a node on loopback (issue 15: "a page loads in
under 300 ms"), on a local TLS 2+2+1 cluster. A figure, not a test: nothing here asserts a time.

    TANDEM_BIN_DIR=build-dbg python3 tests/bench/ui-load.py [--rounds N] [--browser]

HTTP: each round opens a new TLS connection to a follower without a client certificate (as a
browser does), fetches /ui/ and every script and style it names, one after the other on that
connection, and reads every byte; then does the same with If-None-Match (what a reload costs).
--browser: also loads the whole Overview page in headless Chromium after logging in, each round
a new document of the same site (as a reload or a link is), and prints the time from navigation
start to the load event (page, style, scripts) and until the node table is drawn (after GET
/v1/auth/session, /v1/status and /v1/bcp/status answered).
Prints each round's time and then the median, p95 and maximum.
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from cluster import Cluster, http_connection  # noqa: E402

ROUNDS_MAX = 500
PASSWORD = "bench-pass12"


def fetch_all(url, context, etags=None):
    """One cold load: (ms, bytes, etags by path)."""
    started = time.perf_counter()
    conn = http_connection(url, timeout=10, context=context)
    got = {}
    total = 0
    try:
        paths = ["/ui/"]
        i = 0
        while i < len(paths):
            headers = {}
            if etags and paths[i] in etags:
                headers["If-None-Match"] = etags[paths[i]]
            conn.request("GET", paths[i], headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status not in (200, 304):
                raise SystemExit("GET %s: %d" % (paths[i], resp.status))
            total += len(body)
            got[paths[i]] = resp.headers["ETag"]
            if i == 0 and resp.status == 200:
                paths += re.findall(r'(?:src|href)="(/ui/[^"]+)"', body.decode())
            elif i == 0:
                paths += [p for p in etags if p != "/ui/"]
            i += 1
    finally:
        conn.close()
    return (time.perf_counter() - started) * 1000, total, got


def summary(name, times):
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    print("%s: median %.1f ms, p95 %.1f ms, max %.1f ms over %d rounds"
          % (name, statistics.median(times), p95, times[-1], len(times)), flush=True)


def browser_rounds(c, url, rounds):
    from webdriver import Browser, spki_pin
    pins = [spki_pin(c.tls_path(name + ".pem")) for name in c.names]
    times = []
    with Browser(spki_pins=pins) as b:
        b.get(url + "/ui/login")
        b.wait_js("return document.getElementById('user')", 20, "the login form")
        b.find("#user").send_keys("bench")
        b.find("#password").send_keys(PASSWORD)
        b.click("#login-button")
        b.wait_js("return document.querySelectorAll('#nodes tr.node').length === 5", 20, "rows")
        loads = []
        for n in range(rounds):
            # A new document each round (the query differs), not a same-document hash change.
            b.get(url + "/ui/?round=%d#/overview" % n)
            ms = b.wait_js("if (document.querySelectorAll('#nodes tr.node').length !== 5) "
                           "return null; return performance.now();", 20, "the node table")
            load = b.wait_js("var e = performance.getEntriesByType('navigation')[0];"
                             "return e && e.loadEventEnd > 0 && e.loadEventEnd;", 20, "load")
            times.append(ms)
            loads.append(load)
            print("browser round %d: load event %.1f ms, node table drawn %.1f ms"
                  % (n + 1, load, ms), flush=True)
        summary("chromium, navigation to the load event (page, style, scripts)", loads)
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--browser", action="store_true")
    args = parser.parse_args()
    rounds = max(1, min(args.rounds, ROUNDS_MAX))
    with Cluster(topology="2+2+1") as c:
        leader = c.settled_leader()
        follower = next(n for n in c.names if n != leader and not n.startswith("witness"))
        url = c.url(follower)
        context = c.tls_context(user=None)
        cold, warm = [], []
        _, size, etags = fetch_all(url, context)
        print("/ui/ and its files: %d files, %d bytes" % (len(etags), size), flush=True)
        for n in range(rounds):
            ms, _, _ = fetch_all(url, context)
            cold.append(ms)
            ms304, _, _ = fetch_all(url, context, etags)
            warm.append(ms304)
            print("round %d: %.1f ms (all 200), %.1f ms (all 304)" % (n + 1, ms, ms304),
                  flush=True)
        summary("new TLS connection, /ui/ + files", cold)
        summary("new TLS connection, /ui/ + files revalidated (304)", warm)
        if args.browser:
            c.add_user("bench", roles="viewer", password=PASSWORD)
            summary("chromium, navigation to the drawn node table (+ session, status, bcp status)",
                    browser_rounds(c, url, min(rounds, 20)))
        print(json.dumps({"cold_median_ms": statistics.median(cold),
                          "revalidate_median_ms": statistics.median(warm)}))


if __name__ == "__main__":
    main()
