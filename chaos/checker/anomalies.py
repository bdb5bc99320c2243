"""The list of anomalies one check run finds: each kind counted in full, the first few of each
kind kept with their details and operation ids."""

LISTED_PER_KIND = 100  # anomalies of one kind kept in report.json; the rest are only counted
OPS_PER_GROUP = 10     # op ids a grouped anomaly names besides its culprit

# Every kind the checker reports, with the one-line rule it stands for (report.html and
# chaos/README.md show these).
KINDS = {
    "lost_append": "an acknowledged append is missing from the final list",
    "duplicate": "an element appears twice in the final list or in a read",
    "phantom": "an element nobody appended appears in the final list or in a read",
    "failed_append_visible": "an element whose append definitely failed is visible",
    "read_not_prefix": "an acknowledged read is not a prefix of the final list",
    "stale_read": "a read is shorter than a read that ended before it began",
    "read_missing_acked": "a read misses an append acknowledged before the read began",
    "write_order": "an append acknowledged before another began comes after it",
    "future_read": "a read holds an element whose append began after the read ended",
    "box_double_pick": "a box is picked for two open jobs at once",
    "box_unlinked": "a picked box names a job that does not list it",
    "trace_replay": "an object's trace breaks the transition rules or does not replay to its state",
    "trace_missing_op": "an acknowledged domain operation left no event in its object's trace",
    "trace_phantom": "a trace event that no attempted operation explains",
    "trace_order": "trace events are in an order real time or the raft index rules out",
    "domain_object_missing": "an acknowledged create or check-in has no object at the end",
    "digest_mismatch": "nodes ended with different applied indexes or state digests",
    "sanitizer": "a node log holds a sanitizer report",
    "crash": "a node log shows an assertion failure, a segfault or a libc abort",
    "core_file": "the run directory holds a core file",
    "unexpected_exit": "a node exited with an error or a signal the harness did not send",
    "harness_error": "the harness reported its own problem: the run proves nothing",
}


class Anomalies:
    """Collects anomalies; add() keeps LISTED_PER_KIND of each kind and counts them all."""

    def __init__(self):
        self.listed = []
        self.counts = {}

    def add(self, kind, detail, ops=()):
        assert kind in KINDS, kind
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        if n < LISTED_PER_KIND:
            self.listed.append({"kind": kind, "detail": detail,
                                "ops": [op_id for op_id in ops if op_id is not None]})

    def add_grouped(self, kind, conflicts):
        """conflicts: [(culprit op id, other op id, detail)] in the order found. One anomaly per
        culprit, with its first conflict's detail and the count of the others: one misplaced
        op can conflict with thousands that came after it."""
        groups = {}
        for culprit, other, detail in conflicts:
            groups.setdefault(culprit, (detail, []))[1].append(other)
        for culprit, (detail, others) in groups.items():
            more = f" (and {len(others) - 1} more ops in the same conflict with op {culprit})" \
                if len(others) > 1 else ""
            self.add(kind, detail + more, [culprit] + others[:OPS_PER_GROUP])

    def kinds(self):
        return set(self.counts)

    def __len__(self):
        return sum(self.counts.values())
