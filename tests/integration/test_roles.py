#!/usr/bin/env python3
"""Roles and permissions on a TLS cluster (issue 13 items 2 and 4): one certificate user per role
(deploy/certs.sh --users, records made through POST /v1/users as the bootstrap admin), then for
every route of the tables in node/api/*.c (read from the sources, so a new route is covered)
each role is allowed exactly the routes its permissions cover (allowed = anything but the
router's 403; denied = 403 naming the permission); the actor of a trace event is the certificate's user even
when a forged X-Tandem-User is sent (400 from a user); a user without a record is refused; a
disabled user is refused on every node from the commit on.
"""

import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_routes import api_routes  # noqa: E402
from cluster import SOURCE_DIR, Cluster, run_tests, wait_until  # noqa: E402

PASSWORD = "role-pass1"
REQUEST_TIMEOUT_S = 20
ROUTE_TIMEOUT_S = 5  # one route's answer: refused or a 4xx on the empty body, at once
DISABLE_TIMEOUT_S = 10
# node/api/perms.h: the roles that grant each permission (node-only and public ones apart).
GRANTS = {
    "READ": {"viewer", "operator", "planner", "bcp-admin", "security-admin", "auditor"},
    "DOMAIN_WRITE": {"operator"}, "KV_WRITE": {"operator"}, "TRACE": {"auditor", "operator"},
    "PLAN": {"planner"}, "BCP": {"bcp-admin"}, "MEMBERS": {"bcp-admin"}, "BACKUP": {"bcp-admin"},
    "USERS": {"security-admin"}, "KEYS": {"security-admin"}, "RETENTION": {"security-admin"},
    "AUDIT": {"auditor"}, "PERSONAL_DATA": {"personal-data"},
    "SELF": {"viewer", "operator", "planner", "bcp-admin", "security-admin", "auditor",
             "personal-data"},
    "PUBLIC": {"viewer", "operator", "planner", "bcp-admin", "security-admin", "auditor",
               "personal-data"},
}
ROLES = ["viewer", "operator", "planner", "bcp-admin", "security-admin", "auditor",
         "personal-data"]
# Routes that would disturb the cluster under test when allowed (leadership, membership).
DISRUPTIVE = {"leader_transfer", "members_remove", "member_rejoin", "bcp_invoke", "bcp_revoke",
              "bcp_drill", "retention_purge"}


def user_name(role):
    return "u-" + role


def make_users(c, leader):
    subprocess.run(["bash", os.path.join(SOURCE_DIR, "deploy", "certs.sh"),
                    os.path.join(c.dir, "tls"), "--users", ",".join(map(user_name, ROLES))],
                   stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=60)
    for role in ROLES:
        status, _, body = c.api(leader, "POST", "/v1/users", json.dumps(
            {"name": user_name(role), "roles": role, "site": "east",
             "password": PASSWORD}).encode(), timeout=REQUEST_TIMEOUT_S)
        assert status == 201, (role, status, body)


def check_every_route(c, node):
    for role in ROLES:
        ctx = c.tls_context(user_name(role))
        for route, method, path, perm in api_routes():
            if perm == "NODE" or (route in DISRUPTIVE and role in GRANTS.get(perm, ())):
                continue  # node-only: test_authz.py; disruptive: allowed by the table above
            status, _, body = c.api(node, method, path, b"{}", context=ctx,
                                    timeout=ROUTE_TIMEOUT_S)
            allowed = role in GRANTS[perm]
            if allowed:  # the route ran: anything but the router's refusal
                assert status != 403 or b"permission" not in body, (role, route, status, body)
            else:
                assert status == 403, (role, route, status, body)
                error = json.loads(body)["error"]
                assert error.startswith("permission %s required" %
                                        perm.lower().replace("_", "-")), (role, route, error)


def check_actor(c, leader, follower):
    op = c.tls_context(user_name("operator"))
    body = json.dumps({"id": "j-actor", "site": "east", "client": "acme", "kind": "scan",
                       "effort": 1}).encode()
    status, _, answer = c.api(follower, "POST", "/v1/jobs", body, context=op,
                              headers={"X-Tandem-User": "mallory"})
    assert status == 400 and b"X-Tandem-User is not accepted" in answer, (status, answer)
    status, _, answer = c.api(follower, "POST", "/v1/jobs", body, context=op,
                              timeout=REQUEST_TIMEOUT_S)
    assert status == 201, (status, answer)
    # A node forwarding for the operator may carry the header; the actor stays the principal.
    status, _, answer = c.api(leader, "POST", "/v1/jobs/j-actor/hold", b"{}",
                              context=c.tls_context(follower),
                              headers={"X-Tandem-Forwarded-By": follower,
                                       "X-Tandem-Forwarded-User": user_name("operator"),
                                       "X-Tandem-Forwarded-Kind": "user",
                                       "X-Tandem-User": "mallory"}, timeout=REQUEST_TIMEOUT_S)
    assert status != 400, (status, answer)
    events = c.get_json(leader, "/v1/trace/job/j-actor")["events"]
    actors = {e["actor"] for e in events}
    assert actors == {user_name("operator")}, events


def check_no_record_and_disabled(c):
    status, _, body = c.api(c.names[0], "GET", "/v1/status", context=c.tls_context("operator"))
    assert status == 403 and b"no user record for certificate operator" in body, (status, body)
    viewer = c.tls_context(user_name("viewer"))
    status, _, body = c.api(c.leader(), "POST", "/v1/users/%s/disable" % user_name("viewer"),
                            b"{}", timeout=REQUEST_TIMEOUT_S)
    assert status == 200, (status, body)
    for name in c.names:
        wait_until(lambda: c.api(name, "GET", "/v1/status", context=viewer)[0] == 403,
                   DISABLE_TIMEOUT_S, "%s still answers the disabled user" % name)


def test_each_role_gets_exactly_its_routes():
    with Cluster("3") as c:
        leader = c.settled_leader()
        follower = next(n for n in c.names if n != leader)
        make_users(c, leader)
        check_every_route(c, follower)
        check_actor(c, leader, follower)
        check_no_record_and_disabled(c)


if __name__ == "__main__":
    run_tests(globals())
