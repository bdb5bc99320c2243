#!/usr/bin/env python3
"""The web console in headless Chromium against a live TLS 2+2+1 cluster (issue 15, "done
when"): a bcp-admin logs in at a follower, sees five node rows with the leader marked, invokes
a site from the Sites page and sees its state change through the event stream without the page
reloading, revokes it and runs a drill from the same page, and opens the drill's report whose
latency chart is drawn (an SVG path with points); the Capacity page shows the bars and the plan
(planner), Backups and audit the audit chain intact (auditor); the language switch turns the
page Japanese; a viewer sees the sites but no invoke, revoke or drill button, and no plan. Screenshots of each step go to
TANDEM_ARTEFACTS (default BUILD/test-artefacts/ui), kept whatever the outcome.

Chromium trusts exactly the cluster's node keys (SPKI pins, tests/integration/webdriver.py):
every other certificate error would still stop it.
"""

import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import BIN_DIR, Cluster, run_tests  # noqa: E402
from webdriver import Browser, spki_pin  # noqa: E402

PASSWORD = "console-pass1"
ARTEFACTS = os.environ.get("TANDEM_ARTEFACTS", os.path.join(BIN_DIR, "test-artefacts", "ui"))
WAIT_S = 20


class Steps:
    """Screenshots named by step, in ARTEFACTS."""

    def __init__(self, browser):
        self.browser = browser
        os.makedirs(ARTEFACTS, exist_ok=True)
        for name in os.listdir(ARTEFACTS):
            if name.endswith(".png"):
                os.unlink(os.path.join(ARTEFACTS, name))

    def shot(self, name):
        path = self.browser.screenshot(os.path.join(ARTEFACTS, name + ".png"))
        print("screenshot %s" % path, flush=True)


def log_in(b, url, user):
    b.get(url + "/ui/login")
    b.wait_js("return document.readyState === 'complete' && document.getElementById('user')",
              WAIT_S, "the login form")
    b.find("#user").send_keys(user)
    b.find("#password").send_keys(PASSWORD)
    b.click("#login-button")
    b.wait_js("return window.tandemConsole && window.tandemConsole.state.stream === 'open'",
              WAIT_S, "the console with its event stream open")


def site_state(b, site):
    return b.js("var r = document.querySelector('tr.site[data-site=\"' + arguments[0] + '\"]');"
                "return r && r.getAttribute('data-state');", site)


def change_site(b, steps, kind, site, reason, want_state):
    """Clicks kind's button of site, checks the dialog (the dry run for invoke), confirms, and
    waits for the row's new state without a reload."""
    loaded = b.js("return window.tandemConsole.loadedAt")
    events = b.js("return window.tandemConsole.state.events")
    b.click("button.%s[data-site='%s']" % (kind, site))
    if kind == "invoke":
        text = b.wait_js("var d = document.getElementById('dry-run'); return d && d.innerText",
                         WAIT_S, "the invoke's dry run")
        assert site + "-1 voter → standby" in text, text
    b.find("#reason").send_keys(reason)
    steps.shot("%s-dialog" % kind)
    b.click("#confirm")
    b.wait_js("return document.querySelector('tr.site[data-site=\"' + arguments[0] + "
              "'\"][data-state=\"' + arguments[1] + '\"]')", WAIT_S,
              "%s %s through the event stream" % (site, want_state), site, want_state)
    assert b.js("return window.tandemConsole.loadedAt") == loaded, "the page reloaded"
    assert b.js("return window.tandemConsole.state.events") > events, "no event arrived"


def admin_session(c, b, steps, url, leader, site):
    log_in(b, url, "bea")
    # The serving node's view of the leader is marked; on a loaded machine leadership may have
    # moved since the cluster settled, so the mark is compared with the leader of the moment.
    deadline = time.monotonic() + WAIT_S
    while True:
        rows = b.wait_js("var rows = document.querySelectorAll('#nodes tr.node');"
                         "return rows.length === 5 && Array.prototype.map.call(rows,"
                         " function (r) {"
                         "return [r.getAttribute('data-node'), r.getAttribute('data-leader')]; });",
                         WAIT_S, "five node rows")
        marked = [name for name, is_leader in rows if is_leader == "1"]
        assert sorted(n for n, _ in rows) == sorted(c.names), rows
        if marked == [leader]:
            break
        assert time.monotonic() < deadline, "rows %s, leader %s" % (rows, leader)
        time.sleep(0.2)
        leader = c.settled_leader()
    fsync = b.wait_js("var cell = document.querySelector('#nodes tr.leader').cells[9];"
                      "return cell && /ms$/.test(cell.textContent) && cell.textContent;",
                      WAIT_S, "the leader's fsync p99")
    assert fsync.startswith("≤ "), fsync
    assert "★" in b.text("tr.node[data-leader='1']")
    # Each row's term, commit and applied index come from what that node says of itself.
    b.wait_js("return Array.prototype.every.call(document.querySelectorAll('#nodes tr.node'),"
              "function (r) { return /^[0-9]+$/.test(r.cells[4].textContent) &&"
              " /^[0-9]+$/.test(r.cells[6].textContent); })", WAIT_S, "every node's term")
    steps.shot("overview")

    b.click("#nav-sites")
    b.wait_js("return document.querySelector('button.invoke')", WAIT_S, "the invoke buttons")
    change_site(b, steps, "invoke", site, "console test: planned invoke", "invoked")
    decisions = b.text("#decisions")
    assert "console test: planned invoke" in decisions, decisions
    steps.shot("sites-invoked")
    change_site(b, steps, "revoke", site, "console test: revoke", "active")

    b.click("button.drill[data-site='%s']" % site)
    b.wait_js("return document.getElementById('dry-run')", WAIT_S, "the drill's dry run")
    b.find("#reason").send_keys("console test: quarterly drill")
    b.click("#confirm")
    points = b.wait_js("var p = document.querySelector('#drill-report svg.chart path.latency');"
                       "return p && p.getAttribute('d').split('L').length", 60,
                       "the drill report's latency chart")
    assert points > 10, points
    assert "#/drill/d" in b.url, b.url
    assert "console test: quarterly drill" in b.text("#drill-reason")
    steps.shot("drill-report")

    # Capacity (a planner sees the plan) and backups and audit (an auditor sees the chain).
    b.click("#nav-capacity")
    b.wait_js("return document.querySelectorAll('#capacity tbody tr').length === 2 &&"
              " document.querySelector('#plan h3')", WAIT_S, "the capacity bars and the plan")
    steps.shot("capacity")
    b.click("#nav-backups")
    chain = b.wait_js("var p = document.getElementById('audit-chain'); return p && p.innerText",
                      WAIT_S, "the audit chain's state")
    assert "intact" in chain, chain
    b.wait_js("return document.getElementById('failures')", WAIT_S, "the failed logins table")
    steps.shot("backups-audit")
    b.js("var s = document.getElementById('lang'); s.value = 'ja';"
         "s.dispatchEvent(new Event('change'));")
    b.wait_js("return document.getElementById('nav-overview').textContent === '概要' &&"
              " document.getElementById('audit-chain')", WAIT_S, "the page in Japanese")
    assert "監査チェーン" in b.text("#audit-chain")
    steps.shot("backups-audit-ja")
    b.js("var s = document.getElementById('lang'); s.value = 'en';"
         "s.dispatchEvent(new Event('change'));")
    b.click("#logout")
    b.wait_js("return location.pathname === '/ui/login'", WAIT_S, "the login page after logout")


def test_console_in_chromium():
    with Cluster(topology="2+2+1") as c:
        leader = c.settled_leader()
        c.add_user("bea", roles="bcp-admin,planner,auditor", site="east", password=PASSWORD)
        c.add_user("vera", roles="viewer", site="west", password=PASSWORD)
        # The cluster's first login creates its token key (a follower verifies tokens once it
        # has applied that entry): one login through the leader, then every node has the key.
        status, _, body = c.api(leader, "POST", "/v1/auth/login",
                                body={"user": "vera", "password": PASSWORD}, timeout=20)
        assert status == 200, body
        c.wait_converged()
        follower = next(n for n in c.names if n != leader and not n.startswith("witness"))
        site = next(c.nodes[n]["site"] for n in c.names
                    if c.nodes[n]["site"] not in ("witness", c.nodes[leader]["site"]))
        url = c.url(follower)
        pins = [spki_pin(c.tls_path(name + ".pem")) for name in c.names]
        with Browser(spki_pins=pins) as b:
            steps = Steps(b)
            try:
                admin_session(c, b, steps, url, leader, site)
                log_in(b, url, "vera")
                b.click("#nav-sites")
                b.wait_js("return document.querySelectorAll('tr.site').length === 3", WAIT_S,
                          "the viewer's site rows")
                buttons = b.js("return document.querySelectorAll('button.invoke, button.revoke, "
                               "button.drill').length")
                assert buttons == 0, buttons
                assert "viewer" in b.text("#who")
                steps.shot("viewer-sites")
                b.click("#nav-capacity")
                b.wait_js("return document.querySelector('#capacity') &&"
                          " document.querySelector('#view .muted')", WAIT_S,
                          "the viewer's capacity page without the plan")
                assert b.js("return document.getElementById('apply-plan')") is None
            except BaseException:
                steps.shot("failure")
                raise


if __name__ == "__main__":
    run_tests()
