"""Integration test of the drill's figures against an outside client: while a bounded writer
(one thread per east and west node) runs, several drills run back to back, and each drill's
rto_ms must agree with the longest write gap the writer saw during it. The drill pauses its own
probe writer for the digest check; that pause must never show up as a gap (it did: 1,460 ms
reported while the writer's longest gap was 18 ms; the digest pause lasts 0.5-5 s). The
tolerance comes from the two writers' own pace, not from a timing threshold: the probe interval
twice (an outage can begin and end just after a probe was sent), the outside writer's longest
gap while nothing happened (twice, likewise) and its retry pause."""

import json
import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bcp_load  # noqa: E402
from bcp_load import Load, bcp_status  # noqa: E402
from cluster import Cluster, run_tests, wait_until  # noqa: E402

DRILL_SITES = ("west", "east", "west")
PROBE_RATE = 200          # probe writes per second: many in flight when the digest pause begins
BASELINE_S = 2.0          # the writer alone before the first drill
WRITER_LIMIT_WRITES = 50000
WRITER_LIMIT_S = 300


def test_drill_rto_agrees_with_an_outside_writer():
    with Cluster(topology="2+2+1") as c:
        leader = c.leader()
        wait_until(lambda: all(n["home_role"] == "voter" for s in bcp_status(c, leader)["sites"]
                               for n in s["nodes"]), 15, "home roles recorded")
        urls = [c.nodes[n]["api"] for n in c.names if c.nodes[n]["site"] != "witness"]
        load = Load(urls, "outside", writers_per_url=1, limit_writes=WRITER_LIMIT_WRITES,
                    limit_s=WRITER_LIMIT_S).start()
        try:
            started = time.monotonic()
            time.sleep(BASELINE_S)
            baseline_ms = load.max_gap_ms(since=started)
            # Both sides sample the same outages at their own pace: the probe writer every
            # 1000/rate ms, the outside writer at its own longest quiet gap (twice: before and
            # after an outage) and, for a refused write, after its retry pause.
            tolerance_ms = (2 * (1000 // PROBE_RATE) + 2 * baseline_ms +
                            int(bcp_load.RETRY_PAUSE_S * 1000))
            results = []
            for site in DRILL_SITES:
                begin = time.monotonic()
                report = json.loads(c.ctl("-o", "json", "bcp", "drill", site, "--rate",
                                          PROBE_RATE, timeout=180).stdout)
                end = time.monotonic()
                gap = load.max_gap_ms(since=begin, until=end)
                results.append((site, report["rto_ms"], gap))
                print("MEASURED drill of %s: rto_ms %d, outside writer's longest gap %d ms "
                      "(tolerance %d ms), timeline %s" % (site, report["rto_ms"], gap,
                                                          tolerance_ms, report["timeline"]),
                      flush=True)
                assert report["ok"] is True, report
                assert report["rto_ms"] == max(report["takeover_gap_ms"],
                                               report["failback_gap_ms"]), report
                assert report["probe"]["acked"] > 100, report
        finally:
            load.stop()
        summary = load.summary()
        assert summary["failed"] == 0, (summary, load.failed[:5])
        for site, rto_ms, gap in results:
            assert rto_ms <= gap + tolerance_ms, (site, rto_ms, gap, tolerance_ms, results)


if __name__ == "__main__":
    run_tests()
