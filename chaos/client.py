"""One HTTP request of a chaos workload, classified the way the history needs it: did the
request definitely not take effect ("fail"), take effect ("ok") or nobody knows ("info")?

A request that could not even be sent (connection refused) cannot have taken effect: "fail".
Once sent, a timeout, a reset or any 5xx answer (503 included: the leader may have appended it
before the node answered) leaves it unknown: "info". A 4xx answer is a refusal that changes
nothing: "fail". 2xx is "ok", and the caller may refine it (a transaction whose compare failed).
"""

import http.client as httpclient
import json
import socket
import urllib.parse

from cluster import http_connection

REQUEST_TIMEOUT_S = 4.0


class Answer:
    """What one request gave: outcome, status (None without an answer), headers, body, error."""

    def __init__(self, outcome, status=None, headers=None, body=b"", error=None):
        self.outcome = outcome
        self.status = status
        self.headers = headers
        self.body = body
        self.error = error

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self):
        """A short text for the history: the status and the error message or exception."""
        if self.status is None:
            return self.error
        doc = self.json()
        if isinstance(doc, dict) and "error" in doc:
            return "%d %s" % (self.status, str(doc["error"])[:200])
        return str(self.status)


def _classify(status):
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500:
        return "fail"
    return "info"


def request(base_url, method, path, body=None, headers=None, timeout=REQUEST_TIMEOUT_S):
    """Sends one request to base_url (a node's API URL, https:// with the cluster's TLS settings);
    never raises for network trouble. A refused TLS handshake counts as not sent."""
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn = http_connection(base_url, timeout=timeout)
    try:
        try:
            conn.connect()
        except OSError as e:
            return Answer("fail", error="not sent: %s" % (e.strerror or e))
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, httpclient.HTTPException, socket.timeout) as e:
            return Answer("info", error="%s: %s" % (type(e).__name__, e))
        return Answer(_classify(resp.status), resp.status, resp.headers, data)
    finally:
        conn.close()


def quote(key):
    return urllib.parse.quote(key, safe="")
