#!/usr/bin/env python3
"""Scheduled mutual backup between the sites (issue 14 items 4-5) on a real TLS 2+2+1 cluster
with a backup every few seconds: east's backups land on west's nodes and west's on east's, the
witness keeps only their manifests, every node lists the same backups (tandemctl backup list),
/v1/status, /v1/bcp/status and /metrics show each site's newest and newest verified backup;
sealed backups (backup_key_file) are checked at level 1 without the key and at level 2 with it;
retention keeps backup_keep of each site and removes the rest from the holders; a holder's files
deleted by hand are reported lost (event, bcp_event_command alert, the list and the metrics); a
byte flipped without changing the size is caught by level 2; a backup with nowhere to go is
retried, then raised as backup_failed; bad input to the node-to-node routes changes nothing."""

import json
import os
import re
import shutil
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, run_tests, wait_until  # noqa: E402

KEEP = 3
SETTINGS = {"backup_interval_s": 3, "backup_check_interval_s": 1, "backup_retry_s": 1,
            "backup_keep": KEEP, "backup_verify_interval_s": 2, "backup_timeout_s": 60}
ARRIVE_TIMEOUT_S = 60
WRITES = 50
SITES = ("east", "west")
OTHER = {"east": "west", "west": "east"}


def kept_dir(c, name):
    return os.path.join(c.nodes[name]["dir"], "data", "backups", "kept")


def files(c, name):
    folder = kept_dir(c, name)
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def backups(c, name, query=""):
    return c.get_json(name, "/v1/backups" + query)


def both_sites_backed_up(c):
    def ready():
        answer = backups(c, "witness-1")
        sites = {b["site"] for b in answer["backups"] if b["state"] == "kept"}
        return answer if sites >= set(SITES) else None
    return wait_until(ready, ARRIVE_TIMEOUT_S, "a kept backup of each site")


def check_placement(c, answer):
    """Each kept backup is on the other site's nodes, named in the record, and nowhere else; the
    witness has its manifest and no file."""
    for b in answer["backups"]:
        if b["state"] != "kept":
            continue
        site, other = b["site"], OTHER[b["site"]]
        assert b["holders"], b
        for holder in b["holders"]:
            assert c.nodes[holder]["site"] == other, b
        for name in c.names:
            names = files(c, name)
            has_file = b["id"] + ".tbk" in names
            if c.nodes[name]["site"] == "witness":
                assert not any(n.endswith(".tbk") for n in names), (name, names)
            elif c.nodes[name]["site"] == site:
                assert not has_file, (name, b["id"])  # a site keeps none of its own
        assert b["manifest_holders"] == ["witness-1"], b
        assert b["manifest"]["applied_index"] == b["index"], b
        assert b["verified"] is not None and b["verified"]["level"] >= 1, b


def test_backups_cross_sites_and_witness_keeps_manifests():
    with Cluster(settings=dict(SETTINGS, backup_keep=50)) as c:  # nothing retired meanwhile
        leader = c.leader()
        for i in range(WRITES):
            c.kv_put(leader, "backup/k%03d" % i, "v%d" % i)
        answer = both_sites_backed_up(c)
        # Every file arrived before its record: the record's holders have it now.
        for b in answer["backups"]:
            for holder in b["holders"]:
                assert b["id"] + ".tbk" in files(c, holder), (holder, b)
        check_placement(c, answer)
        manifests = [n for n in files(c, "witness-1") if n.endswith(".manifest.json")]
        assert manifests, files(c, "witness-1")
        with open(os.path.join(kept_dir(c, "witness-1"), manifests[0])) as f:
            manifest = json.load(f)
        assert manifest["site"] in SITES and manifest["applied_index"] > 0, manifest
        # Any node lists the same table (a follower with ?consistency=local too).
        ids = {b["id"] for b in answer["backups"]}
        listed = c.ctl("backup", "list", "--retired", "-o", "json",
                       endpoints=[c.nodes["east-2"]["api"]])
        assert ids <= {b["id"] for b in json.loads(listed.stdout)["backups"]}, listed.stdout
        table = c.ctl("backup", "list").stdout
        assert "KEPT_ON" in table and "east:" in table and "west:" in table, table
        # A level-2 verification follows within backup_verify_interval_s.
        wait_until(lambda: any(b["verified"] and b["verified"]["level"] == 2
                               for b in backups(c, "east-1")["backups"]),
                   ARRIVE_TIMEOUT_S, "a level-2 verification")
        # The visible state: /v1/status, /v1/bcp/status, /metrics, tandemctl bcp status.
        status = c.status("west-2")["backups"]
        for site in SITES:
            s = status["sites"][site]
            assert s["newest_age_ms"] is not None and s["newest_verified_age_ms"] is not None, s
        assert status["scheduled"] is True and status["interval_s"] == 3, status
        bcp = c.get_json("east-1", "/v1/bcp/status")["backups"]
        assert set(SITES) <= set(bcp["sites"]), bcp
        _, _, metrics = c.api("witness-1", "GET", "/metrics")
        text = metrics.decode() if isinstance(metrics, bytes) else metrics
        for site in SITES:
            assert re.search(r'tandem_backup_age_seconds\{site="%s",backup="newest"\} [0-9.]+'
                             % site, text), text[-2000:]
        assert "backups: scheduled" in c.ctl("bcp", "status").stdout


def test_sealed_backups_ship_and_verify():
    """With backup_key_file on every node, the shipped backups are sealed: the holders check them
    at level 1 without the key and at level 2 with their own copy of the key file."""
    keys_dir = tempfile.mkdtemp(prefix="tandem-backup-keys-")
    key_file = os.path.join(keys_dir, "backup.keys")
    with open(key_file, "w") as f:
        f.write("7 %s\n" % ("5e" * 32))
    os.chmod(key_file, 0o600)
    try:
        with Cluster(settings=dict(SETTINGS, backup_keep=50, backup_key_file=key_file)) as c:
            answer = both_sites_backed_up(c)
            for b in answer["backups"]:
                assert b["manifest"]["encrypted"] is True and b["manifest"]["key_id"] == 7, b
            wait_until(lambda: {b["site"] for b in backups(c, "west-2")["backups"]
                                if b["verified"] and b["verified"]["level"] == 2} == set(SITES),
                       ARRIVE_TIMEOUT_S, "a level-2 verification of each site's sealed backup")
    finally:
        shutil.rmtree(keys_dir, ignore_errors=True)


def test_retention_keeps_backup_keep():
    with Cluster(settings=SETTINGS) as c:
        def enough_retired():
            answer = backups(c, "east-1", "?retired=1")
            retired = [b for b in answer["backups"] if b["state"] == "retired"]
            return answer if len({b["site"] for b in retired}) == 2 else None
        answer = wait_until(enough_retired, 3 * ARRIVE_TIMEOUT_S, "retired backups of each site")
        live = backups(c, "east-1")["backups"]
        for site in SITES:
            # At most backup_keep, plus one that may have arrived since the last retirement.
            assert len([b for b in live if b["site"] == site]) <= KEEP + 1, live
        retired = [b for b in answer["backups"] if b["state"] == "retired"]

        def removed():
            return all(b["id"] + ".tbk" not in files(c, h) for b in retired for h in b["holders"])
        wait_until(removed, ARRIVE_TIMEOUT_S, "retired backups removed from their holders")


def test_loss_reported():
    sink_dir = tempfile.mkdtemp(prefix="tandem-backup-alert-")
    sink = os.path.join(sink_dir, "events.jsonl")
    # No level-2 verification here: it would find the deletion first (and say so as
    # backup_verify_failed); this test is about the holders' own check.
    settings = dict(SETTINGS, backup_keep=50, backup_verify_interval_s=0,
                    bcp_event_command="/bin/sh -c 'cat >> %s'" % sink)
    try:
        with Cluster(settings=settings) as c:
            answer = both_sites_backed_up(c)
            victim = next(b for b in answer["backups"] if b["site"] == "east"
                          and b["state"] == "kept")
            for holder in victim["holders"]:
                os.remove(os.path.join(kept_dir(c, holder), victim["id"] + ".tbk"))

            def lost():
                for b in backups(c, "witness-1")["backups"]:
                    if b["id"] == victim["id"] and b["state"] == "lost":
                        return b
                return None
            record = wait_until(lost, ARRIVE_TIMEOUT_S, "the deleted backup reported lost")
            assert sorted(record["lost"]) == sorted(victim["holders"]), record
            assert "No such file" in record["lost_reason"], record
            # The event on the holder, and the alert through bcp_event_command.
            holder = victim["holders"][0]
            events = c.get_json(holder, "/v1/events?format=json")["events"]
            assert any(e["type"] == "backup_lost" and victim["id"] in e["message"]
                       for e in events), events
            wait_until(lambda: os.path.exists(sink) and victim["id"] in open(sink).read(),
                       ARRIVE_TIMEOUT_S, "the alert command ran")
            table = c.ctl("backup", "list", "--site", "east").stdout
            assert re.search(r"%s .*lost" % re.escape(victim["id"]), table), table
            _, _, metrics = c.api("east-1", "GET", "/metrics")
            text = metrics.decode() if isinstance(metrics, bytes) else metrics
            assert re.search(r'tandem_backups\{site="east",state="lost"\} [1-9]', text), text
            # The schedule goes on: a newer east backup is kept.
            wait_until(lambda: any(b["site"] == "east" and b["state"] == "kept"
                                   and b["created"] > victim["created"]
                                   for b in backups(c, "east-2")["backups"]),
                       ARRIVE_TIMEOUT_S, "a newer east backup after the loss")
    finally:
        shutil.rmtree(sink_dir, ignore_errors=True)


def test_damaged_copy_caught_by_level_2():
    """One backup per site (an hour apart), level 2 every 2 s: a byte flipped in every copy of
    east's backup keeps its size (the holders' check cannot see it) and is caught by the next
    level-2 verification at each holder: recorded lost, with a backup_verify_failed event."""
    settings = dict(SETTINGS, backup_interval_s=3600, backup_verify_interval_s=2)
    with Cluster(settings=settings) as c:
        answer = both_sites_backed_up(c)
        victim = next(b for b in answer["backups"] if b["site"] == "east")
        wait_until(lambda: any(b["id"] == victim["id"] and b["verified"]["level"] == 2
                               for b in backups(c, "east-1")["backups"]),
                   ARRIVE_TIMEOUT_S, "a first level-2 verification that passes")
        for holder in victim["holders"]:
            path = os.path.join(kept_dir(c, holder), victim["id"] + ".tbk")
            with open(path, "r+b") as f:
                f.seek(victim["size"] // 2)
                byte = f.read(1)
                f.seek(victim["size"] // 2)
                f.write(bytes([byte[0] ^ 0x5a]))

        def lost():
            b = next(b for b in backups(c, "witness-1")["backups"] if b["id"] == victim["id"])
            return b if b["state"] == "lost" else None
        record = wait_until(lost, ARRIVE_TIMEOUT_S, "both damaged copies recorded lost")
        assert sorted(record["lost"]) == sorted(victim["holders"]), record
        assert os.path.getsize(path) == victim["size"]  # the size alone did not tell
        events = c.get_json(c.leader(), "/v1/events?format=json")["events"]
        assert any(e["type"] == "backup_verify_failed" and victim["id"] in e["message"]
                   for e in events), events
        west = next(b for b in answer["backups"] if b["site"] == "west")
        assert next(b for b in backups(c, "east-2")["backups"]
                    if b["id"] == west["id"])["state"] == "kept"  # west's backup is untouched
        # The counters TandemBackupVerificationFailed reads: on the leader(s) that ran the checks.
        def counter(name):
            total = 0.0
            for node in c.names:
                status, _, body = c.api(node, "GET", "/metrics")
                assert status == 200, (node, status)
                m = re.search(r"^%s (\S+)$" % name, body.decode(), re.M)
                assert m, (node, name)
                total += float(m.group(1))
            return total
        assert counter("tandem_backup_verifications_total") >= 1
        assert counter("tandem_backup_verification_failures_total") >= 1


def test_failure_retried_then_raised():
    """With west's nodes stopped, east's backup has nowhere to go: the leader tries
    backup_attempts times (backing off) and then raises backup_failed, which /v1/status shows
    as the site's last failure; west's nodes back, east's backups land again."""
    with Cluster(settings=dict(SETTINGS, backup_keep=50, backup_verify_interval_s=0)) as c:
        both_sites_backed_up(c)
        for name in ("west-1", "west-2"):
            c.stop(name)
        leader = c.leader(among=["east-1", "east-2", "witness-1"])

        def raised():
            events = c.get_json(leader, "/v1/events?format=json")["events"]
            return [e for e in events if e["type"] == "backup_failed" and e.get("site") == "east"]
        failed = wait_until(raised, ARRIVE_TIMEOUT_S, "backup_failed for east")
        assert "3 times" in failed[0]["message"] and "another site" in failed[0]["message"], failed
        site = c.status(leader)["backups"]["sites"]["east"]
        assert "another site" in site["last_failure"]["error"], site
        assert site["last_failure"]["failures"] >= 3, site
        _, _, metrics = c.api(leader, "GET", "/metrics")
        assert re.search(rb'tandem_backup_failures_total\{site="east"\} [3-9]', metrics), metrics
        before = max(b["created"] for b in backups(c, leader)["backups"] if b["site"] == "east")
        for name in ("west-1", "west-2"):
            c.start(name)
        wait_until(lambda: any(b["site"] == "east" and b["created"] > before
                               for b in backups(c, leader)["backups"]),
                   3 * ARRIVE_TIMEOUT_S, "an east backup after west came back")


def test_bad_input_changes_nothing():
    with Cluster(settings={"backup_interval_s": 0}) as c:
        node = c.tls_context("east-1")  # the node-to-node routes answer node certificates only

        def call(name, path, body=None):
            status, _, answer = c.api(name, "POST", path, body=body, context=node)
            return status, json.loads(answer or b"{}")
        assert call("west-1", "/v1/node/backups/upload?id=../x&offset=0", b"x")[0] == 400
        assert call("west-1", "/v1/node/backups/upload?id=a1", b"x")[0] == 400  # no offset
        status, answer = call("west-1", "/v1/node/backups/upload?id=a1&offset=5", b"x")
        assert status == 409 and answer["expected"] == 0, answer
        assert call("witness-1", "/v1/node/backups/upload?id=a1&offset=0", b"x")[0] == 409
        # A complete upload whose hash is not the taker's is refused and not kept.
        assert call("west-1", "/v1/node/backups/upload?id=a2&offset=0", b"not a backup")[0] == 200
        status, answer = call("west-1", "/v1/node/backups/upload?id=a2&offset=12&final=1&sha256="
                              + "0" * 64)
        assert status == 422 and "SHA-256" in answer["error"], answer
        assert "a2.tbk" not in files(c, "west-1")
        assert call("east-1", "/v1/node/backups/take",
                    {"id": "b1", "site": "west", "holders": [], "witnesses": []})[0] == 409
        assert call("east-1", "/v1/node/backups/take",
                    {"id": "b1", "site": "east", "holders": [], "witnesses": []})[0] == 400
        assert call("east-1", "/v1/node/backups/take", {"id": "b1"})[0] == 400
        assert call("west-1", "/v1/node/backups/verify", {"id": "nope", "level": 2})[0] == 404
        assert call("west-1", "/v1/node/backups/verify", {"id": "nope", "level": 7})[0] == 400
        leader = c.leader()
        status, answer = call(leader, "/v1/node/backups/report",
                              {"id": "x1", "node": "west-1", "reason": "r"})
        assert status == 403, answer  # east-1 reports only its own copies
        status, answer = call(leader, "/v1/node/backups/report",
                              {"id": "x1", "node": "east-1", "reason": "r"})
        assert status == 404, answer  # no such backup
        status, _, _ = c.api("east-2", "GET", "/v1/backups?site=a%20b")
        assert status == 400
        assert backups(c, "east-2")["backups"] == []
        p = c.ctl("backup", "list", "--site", "a b", check=False)
        assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, p


if __name__ == "__main__":
    run_tests()
