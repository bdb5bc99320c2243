"""The list-append workload: each key's value is a comma-separated list of unique ints; an append
reads the key (value and mod_index, linearizably), then sends POST /v1/txn comparing mod_index
and putting the list with one new int at its end. Reads and transactions go to random nodes
(followers forward them to the leader), so a checker can find lost, duplicated or phantom
elements and stale reads."""

import base64
import itertools
import threading

from client import quote, request
from worker import Worker

KEY_COUNT = 8
KEY_PREFIX = "chaos/list-"
READ_SHARE = 0.3        # of the steps that only read; the others read, then append


def keys():
    return ["%s%d" % (KEY_PREFIX, i) for i in range(KEY_COUNT)]


def parse_list(body):
    """The ints of a stored list ("" is the empty list); ValueError when it is not one."""
    text = body.decode()
    return [int(x) for x in text.split(",")] if text else []


class Values:
    """Unique ints for appends, shared by every append worker."""

    def __init__(self):
        self._next = itertools.count(1)
        self._lock = threading.Lock()

    def take(self):
        with self._lock:
            return next(self._next)


class AppendWorker(Worker):
    values = None  # set by the harness: one Values for the run

    def step(self):
        key = self.rng.choice(keys())
        got = self.read(key, self.node())
        if got is not None and self.rng.random() >= READ_SHARE:
            self.append(key, self.node(), *got)

    def read(self, key, node):
        """One linearizable read, recorded; returns (list, mod_index) when it succeeded."""
        op = self.invoke("append", "read", node, key=key)
        answer = request(self.url(node), "GET", "/v1/kv/" + quote(key))
        if answer.status == 404:
            self.complete(op, "ok", result=[])
            return [], 0
        if answer.outcome != "ok":
            # A read changes nothing, so an unanswered one is simply unknown.
            self.complete(op, answer.outcome, error=answer.describe())
            return None
        try:
            values = parse_list(answer.body)
            mod_index = int(answer.headers["X-Tandem-Mod-Index"])
        except (ValueError, TypeError, UnicodeDecodeError) as e:
            self.complete(op, "info", error="unreadable answer: %s: %r" % (e, answer.body[:100]))
            return None
        self.complete(op, "ok", result=values)
        return values, mod_index

    def append(self, key, node, values, mod_index):
        value = self.values.take()
        text = ",".join(str(v) for v in values + [value]).encode()
        txn = {"compare": [{"key": key, "target": "mod_index", "op": "==",
                            "mod_index": mod_index}],
               "success": [{"op": "put", "key": key, "value": base64.b64encode(text).decode()}],
               "failure": []}
        op = self.invoke("append", "append", node, key=key, value=value)
        answer = request(self.url(node), "POST", "/v1/txn", body=txn)
        doc = answer.json() if answer.outcome == "ok" else None
        if answer.outcome != "ok":
            self.complete(op, answer.outcome, error=answer.describe())
        elif not isinstance(doc, dict) or not isinstance(doc.get("succeeded"), bool):
            self.complete(op, "info", error="unreadable answer: %r" % answer.body[:100])
        elif doc["succeeded"]:
            self.complete(op, "ok", mod_index=doc.get("mod_index"))
        else:
            self.complete(op, "fail", error="compare failed: mod_index moved on")
