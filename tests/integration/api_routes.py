"""The API routes as the route tables in node/api/*.c declare them (read from the sources, so a
new route is covered by the tests that walk them without touching those tests): shared by
test_authz.py (anonymous and node-only refusals) and test_roles.py (each role's routes)."""

import os
import re

from cluster import SOURCE_DIR

ROUTES_MIN = 40  # the tables hold more than this: fewer means the parsing broke
# Rows of the route tables: X(id, HTTP_METHOD, "pattern", FLAGS, [handler,] TANDEM_PERM_x, ...)
# in the X-macro tables and {"id", HTTP_METHOD, "pattern", FLAGS, ...} in the plain ones.
ROUTE_ROW = re.compile(r'(?:X\(\s*(\w+)|\{\s*"(\w+)")\s*,\s*HTTP_(\w+)\s*,\s*"([^"]+)"\s*,'
                       r'\s*([A-Z_| ]+)(?:,[\s\\]*(?:\w+,\s*)?TANDEM_PERM_(\w+))?')


def api_routes():
    """(name, method, path, permission) of every route in node/api/*.c: a prefix route's path
    gets a parameter, GET /v1/events asks for JSON (not the stream); permission is the
    TANDEM_PERM_ suffix ("DOMAIN_WRITE"), None when the row names none."""
    routes = []
    folder = os.path.join(SOURCE_DIR, "node", "api")
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".c"):
            continue
        with open(os.path.join(folder, name)) as f:
            text = f.read()
        for m in ROUTE_ROW.finditer(text):
            path = m.group(4) + ("x/advance" if "PREFIX" in m.group(5) else "")
            path += "?format=json" if path == "/v1/events" else ""
            routes.append((m.group(1) or m.group(2), m.group(3), path, m.group(6)))
    assert len(routes) >= ROUTES_MIN, routes
    return routes
