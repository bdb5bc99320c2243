"""report.html: one self-contained page (inline CSS and SVG, no script) with the verdict and its
anomalies, a timeline of faults and operations, latency over time, and the run's figures.

Dots are binned so a 10-minute run of 100k operations stays light: the timeline draws one dot
per row (a process, or a workload and node), COLUMN_PX-pixel column and outcome, the latency
chart one per column, latency band and workload; the page says how many operations the dots
stand for."""

import datetime
import html
import math

from checker.anomalies import KINDS

WIDTH, LEFT, RIGHT = 1200, 130, 20
PLOT = WIDTH - LEFT - RIGHT
COLUMN_PX = 2
LABEL_CHAR_PX = 6.5  # width of a character of a 10px label, generously
FAULT_ROW_PX = 16
LATENCY_PX = 180
ANOMALY_MARKS_MAX = 300
PROCESS_LANES_MAX = 60  # more client processes than this: one row per workload and node
BAND_SHARE_MAX = 0.5    # a fault longer than this share of the run is a bar only, not a band
ANOMALIES_SHOWN = 200
OUTCOME_COLOURS = {"ok": "#2e7d32", "fail": "#1565c0", "info": "#f9a825"}
WORKLOAD_COLOURS = {"append": "#37474f", "domain": "#8e24aa"}
FAULT_COLOURS = {
    "kill": "#e53935", "kill_leader": "#b71c1c", "restart_loop": "#f4511e", "pause": "#fb8c00",
    "site_loss": "#6d4c41", "partition_node": "#3949ab", "partition_sites": "#1e88e5",
    "bcp_invoke": "#00897b", "bcp_revoke": "#43a047", "bcp_drill": "#7cb342",
    "snapshot_heavy": "#8d6e63", "lost_writes": "#d81b60",
}
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#212121;max-width:1240px}
.verdict{padding:12px 16px;border-radius:6px;color:#fff;font-size:20px;font-weight:600}
.valid{background:#2e7d32}.invalid{background:#c62828}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:2px 8px;
text-align:left;vertical-align:top}th{background:#f5f5f5}td.n{text-align:right}
.small{color:#616161;font-size:12px}svg text{font:10px system-ui,sans-serif}
.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:10px;
height:10px;margin-right:4px;border-radius:2px}code{font-size:12px}
"""


def _e(text):
    return html.escape(str(text), quote=True)


def clock(ms):
    """A time since the run's start as people read it: m:ss.s (ms is relative, not an epoch)."""
    ms = max(0, ms)
    return f"{int(ms // 60000)}:{(ms % 60000) / 1000:04.1f}"


class Scale:
    """Run time (ms) to the x of the plot area, clamped to the run."""

    def __init__(self, t0, t1):
        self.t0, self.t1 = t0, max(t1, t0 + 1)

    def x(self, t):
        t = min(max(t, self.t0), self.t1)
        return LEFT + (t - self.t0) * PLOT / (self.t1 - self.t0)


def _ticks(scale, top, bottom):
    """Vertical grid lines with time labels at a round step giving about ten ticks."""
    span = scale.t1 - scale.t0
    step = next(s for s in (1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000,
                            600000, 1800000, 3600000, math.inf) if span / s <= 12)
    if step == math.inf:
        step = span / 10
    out = []
    t = math.ceil(scale.t0 / step) * step
    while t <= scale.t1:
        x = scale.x(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#eee"/>'
                   f'<text x="{x:.1f}" y="{bottom + 12}" text-anchor="middle">'
                   f'{clock(t)[:-2]}</text>')
        t += step
    return out


def _label_at(fault, scale):
    """(x, anchor, left, right) of a fault's label: after its bar's start, or ending at its
    bar's end when it would run off the right edge."""
    x0, x1 = scale.x(fault.start), scale.x(fault.end)
    width = LABEL_CHAR_PX * len(_fault_label(fault))
    if x0 + width > WIDTH:
        return x1 - 2, "end", x1 - 2 - width, max(x1, x0)
    return x0 + 2, "start", x0, max(x1, x0 + 2 + width)


def _fault_rows(faults, scale):
    """Assigns each fault a row so no bar or label overlaps another; returns [(fault, row)]."""
    rows, placed = [], []
    spans = sorted(((_label_at(f, scale)[2:], f) for f in faults), key=lambda s: s[0])
    for (left, right), fault in spans:
        row = next((i for i, end in enumerate(rows) if end + 4 < left), None)
        if row is None:
            rows.append(right)
            row = len(rows) - 1
        rows[row] = right
        placed.append((fault, row))
    return placed, len(rows)


def _fault_label(fault):
    return f"{fault.kind} {','.join(fault.target)}".strip()


def _fault_strip(faults, scale):
    placed, n_rows = _fault_rows(faults, scale)
    out = []
    for fault, row in placed:
        x0, x1 = scale.x(fault.start), scale.x(fault.end)
        y = row * FAULT_ROW_PX
        colour = FAULT_COLOURS.get(fault.kind, "#757575")
        label = _fault_label(fault)
        title = f"{label} {clock(fault.start)}-{clock(fault.end)} {fault.detail}"
        tx, anchor = _label_at(fault, scale)[:2]
        out.append(f'<g><title>{_e(title)}</title><rect x="{x0:.1f}" y="{y + 2}" '
                   f'width="{max(x1 - x0, 2):.1f}" height="{FAULT_ROW_PX - 4}" fill="{colour}" '
                   f'opacity="0.55"/><text x="{tx:.1f}" y="{y + FAULT_ROW_PX - 5}" '
                   f'text-anchor="{anchor}" fill="#000">{_e(label)}</text></g>')
    return out, n_rows * FAULT_ROW_PX


def _bands(faults, scale, top, height):
    """Background bands of the faults, except those lasting most of the run (settings such as
    snapshot_heavy), which would tint everything."""
    longest = BAND_SHARE_MAX * (scale.t1 - scale.t0)
    return [f'<rect x="{scale.x(f.start):.1f}" y="{top}" '
            f'width="{max(scale.x(f.end) - scale.x(f.start), 1):.1f}" height="{height}" '
            f'fill="{FAULT_COLOURS.get(f.kind, "#757575")}" opacity="0.10"/>' for f in faults
            if f.end - f.start <= longest]


def _lane_of(op, by_node):
    return (op.workload, str(op.node) if by_node else op.process)


def _lanes(ops):
    """Rows of the timeline: one per client process, or one per workload and node when there
    are more than PROCESS_LANES_MAX processes (a harness that gives a client a new process id
    after each indeterminate operation makes hundreds). Returns ({lane: row}, by_node)."""
    processes = {(op.workload, op.process) for op in ops}
    by_node = len(processes) > PROCESS_LANES_MAX
    lanes = {_lane_of(op, by_node) for op in ops}

    def order(lane):
        return (lane[0], len(lane[1]), lane[1])
    return {lane: i for i, lane in enumerate(sorted(lanes, key=order))}, by_node


def _op_dots(ops, scale, lanes, by_node, lane_px, top, marked):
    """One dot per (lane, column, outcome); anomalous ops as red crosses on top."""
    bins = set()
    for op in ops:
        t = op.end if op.end != math.inf else op.start
        column = int((scale.x(t) - LEFT) // COLUMN_PX)
        bins.add((lanes[_lane_of(op, by_node)], column, op.outcome))
    out = []
    for outcome in ("ok", "fail", "info"):
        colour = OUTCOME_COLOURS[outcome]
        dots = "".join(f"M{LEFT + c * COLUMN_PX + 1},{top + lane * lane_px + lane_px / 2:.1f}h0"
                       for (lane, c, o) in bins if o == outcome)
        out.append(f'<path d="{dots}" stroke="{colour}" stroke-width="3" '
                   'stroke-linecap="round"/>')
    for op in marked[:ANOMALY_MARKS_MAX]:
        t = op.end if op.end != math.inf else op.start
        x, y = scale.x(t), top + lanes[_lane_of(op, by_node)] * lane_px + lane_px / 2
        out.append(f'<path d="M{x - 4:.1f},{y - 4:.1f}l8,8m0,-8l-8,8" stroke="#d50000" '
                   f'stroke-width="2"><title>op {_e(op.id)}</title></path>')
    return out, len(bins)


def _lane_labels(lanes, lane_px, top):
    every = max(1, math.ceil(10 / lane_px))
    return [f'<text x="{LEFT - 6}" y="{top + i * lane_px + lane_px / 2 + 3:.1f}" '
            f'text-anchor="end">{_e(w)} {_e(p)}</text>'
            for (w, p), i in lanes.items() if i % every == 0]


def _latency_chart(ops, scale, top):
    done = [op for op in ops if op.outcome == "ok" and op.end != math.inf]
    high = max([op.end - op.start for op in done] + [1])
    decades = max(1, math.ceil(math.log10(max(high, 1)) + 0.01))

    def y(ms):
        return top + LATENCY_PX - LATENCY_PX * math.log10(max(ms, 1)) / decades
    bins = set()
    for op in done:
        column = int((scale.x(op.end) - LEFT) // COLUMN_PX)
        bins.add((column, int(y(op.end - op.start)) // 2, op.workload))
    out = []
    for decade in range(decades + 1):
        yy = y(10 ** decade)
        out.append(f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{LEFT + PLOT}" y2="{yy:.1f}" '
                   f'stroke="#eee"/><text x="{LEFT - 6}" y="{yy + 3:.1f}" text-anchor="end">'
                   f'{10 ** decade:,} ms</text>')
    for workload, colour in WORKLOAD_COLOURS.items():
        dots = "".join(f"M{LEFT + c * COLUMN_PX + 1},{b * 2 + 1}h0"
                       for (c, b, w) in bins if w == workload)
        out.append(f'<path d="{dots}" stroke="{colour}" stroke-width="2.5" '
                   'stroke-linecap="round" stroke-opacity="0.45"/>')
    return out, len(bins)


def timeline(run, report):
    """The SVG of faults, operations and latency, and a sentence on what the dots stand for."""
    ops = run.ops
    span = report["stats"]["span_ms"]
    scale = Scale(min([span["from"]] + [f.start for f in run.faults]),
                  max([span["to"]] + [f.end for f in run.faults]))
    lanes, by_node = _lanes(ops)
    lane_px = max(3, min(14, 420 / max(len(lanes), 1)))
    faults, fault_h = _fault_strip(run.faults, scale)
    ops_top = fault_h + 8
    ops_h = max(len(lanes), 1) * lane_px
    lat_top = ops_top + ops_h + 30
    bottom = lat_top + LATENCY_PX
    marked_ids = {i for a in report["anomalies"] for i in a["ops"]}
    marked = [op for op in ops if op.id in marked_ids]
    dots, n_dots = _op_dots(ops, scale, lanes, by_node, lane_px, ops_top, marked)
    latency, n_lat = _latency_chart(ops, scale, lat_top)
    parts = (_bands(run.faults, scale, ops_top, bottom - ops_top) +
             _ticks(scale, ops_top, bottom) + faults + _lane_labels(lanes, lane_px, ops_top) +
             [f'<rect x="{LEFT}" y="{ops_top}" width="{PLOT}" height="{ops_h}" fill="none" '
              f'stroke="#bbb"/>', f'<text x="{LEFT}" y="{lat_top - 6}">latency of ok '
              'operations (end - start), log scale</text>'] + dots + latency)
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{bottom + 20:.0f}" '
           f'viewBox="0 0 {WIDTH} {bottom + 20:.0f}">' + "".join(parts) + "</svg>")
    row = (f"workload and node (more than {PROCESS_LANES_MAX} processes)" if by_node
           else "process")
    note = (f"{len(ops):,} operations drawn as {n_dots:,} dots (one per {row}, "
            f"{COLUMN_PX}-pixel column and outcome; x is the end, or the start of an operation "
            f"that never ended) and {n_lat:,} latency dots (one per column, latency band and "
            f"workload); {min(len(marked), ANOMALY_MARKS_MAX)} operations named by anomalies "
            "are red crosses.")
    return svg, note


def _legend():
    items = [f'<span><i class="sw" style="background:{c}"></i>{o}</span>'
             for o, c in OUTCOME_COLOURS.items()]
    items += [f'<span><i class="sw" style="background:{c}"></i>latency: {w}</span>'
              for w, c in WORKLOAD_COLOURS.items()]
    items.append('<span style="color:#d50000">&#10005; anomaly</span>')
    return '<p class="legend">' + "".join(items) + "</p>"


def _anomaly_table(report):
    if not report["anomalies"]:
        return "<p>No anomaly: every check passed.</p>"
    counts = "".join(f"<tr><td>{_e(k)}</td><td class=n>{n:,}</td><td>{_e(KINDS[k])}</td></tr>"
                     for k, n in sorted(report["anomaly_counts"].items()))
    rows = "".join(f"<tr><td>{_e(a['kind'])}</td><td>{_e(a['detail'])}</td>"
                   f"<td>{_e(', '.join(str(i) for i in a['ops'][:20]))}</td></tr>"
                   for a in report["anomalies"][:ANOMALIES_SHOWN])
    more = len(report["anomalies"]) - ANOMALIES_SHOWN
    return ("<table><tr><th>kind</th><th>count</th><th>rule</th></tr>" + counts + "</table>"
            "<table><tr><th>kind</th><th>detail</th><th>ops</th></tr>" + rows + "</table>" +
            (f"<p class=small>{more} more in report.json.</p>" if more > 0 else ""))


def _stats_table(stats, snapshots):
    """The figures; snapshots is final.json's per-node snapshot counts when the harness read
    them (they show whether snapshot-heavy settings made snapshots happen)."""
    rows = [("operations", stats["operations"]), ("ok (acknowledged)", stats["ok"]),
            ("fail", stats["fail"]), ("info (indeterminate)", stats["info"]),
            ("appends", stats["appends"]), ("reads", stats["reads"]),
            ("domain operations", stats["domain_ops"]),
            ("longest write gap", f"{stats['longest_write_gap_ms']:,} ms (from "
             f"{clock(stats['longest_write_gap']['from_ms'])} to "
             f"{clock(stats['longest_write_gap']['to_ms'])})")]
    rows += [(f"faults: {k}", n) for k, n in stats["faults"].items()]
    for workload, lat in stats["latency_ms"].items():
        if lat["count"]:
            rows.append((f"latency of ok {workload} ops", f"p50 {lat['p50']} ms, p99 "
                         f"{lat['p99']} ms, max {lat['max']} ms"))
    if isinstance(snapshots, dict):
        rows += [(f"snapshots on {node}", ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
                 for node, c in sorted(snapshots.items()) if isinstance(c, dict)]
    body = "".join(f"<tr><td>{_e(k)}</td><td class=n>"
                   f"{f'{v:,}' if isinstance(v, int) else _e(v)}</td></tr>" for k, v in rows)
    by_f = "".join(f"<tr><td>{_e(f)}</td><td class=n>{c['ok']:,}</td><td class=n>"
                   f"{c['fail']:,}</td><td class=n>{c['info']:,}</td></tr>"
                   for f, c in stats["by_f"].items())
    return ("<table>" + body + "</table><table><tr><th>f</th><th>ok</th><th>fail</th>"
            "<th>info</th></tr>" + by_f + "</table>")


def wall_clock(started, ms):
    """The RFC 3339 UTC time (milliseconds) of ms since the run's start, when final.json gives
    the start as RFC 3339; "" otherwise."""
    try:
        start = datetime.datetime.fromisoformat(str(started).replace("Z", "+00:00"))
    except ValueError:
        return ""
    if start.tzinfo is None:
        return ""
    at = (start + datetime.timedelta(milliseconds=ms)).astimezone(datetime.timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _fault_list(run):
    started = run.final.get("started")
    rows = "".join(f"<tr><td>{clock(f.start)}</td><td>{clock(f.end)}</td>"
                   f"<td>{wall_clock(started, f.start)}</td><td>{_e(f.kind)}</td>"
                   f"<td>{_e(', '.join(f.target))}</td><td>{_e(f.detail)}</td></tr>"
                   for f in sorted(run.faults, key=lambda f: f.start))
    notes = "".join(f"<tr><td>{clock(t)}</td><td>{wall_clock(started, t)}</td>"
                    f"<td>{_e(text)}</td></tr>" for t, text in run.notes)
    return (f"<details><summary>{len(run.faults)} faults</summary><table><tr><th>from</th>"
            "<th>to</th><th>from (UTC)</th><th>kind</th><th>target</th><th>detail</th></tr>" +
            rows +
            f"</table></details><details><summary>{len(run.notes)} harness notes</summary>"
            "<table>" + notes + "</table></details>")


def _listed(value):
    return value if isinstance(value, list) else [] if value is None else [value]


def _unavailable(info):
    left_out = info.get("unavailable_faults")
    if not isinstance(left_out, dict):
        return ""
    return "".join(f" ({_e(kind)} never injected: {_e(why)})" for kind, why in left_out.items())


def render(run, report):
    """The whole page as text."""
    valid = report["valid"]
    info = report["run"]
    kinds = ", ".join(sorted(report["anomaly_counts"]))
    count = sum(report["anomaly_counts"].values())
    verdict = ("VALID: no anomaly" if valid else
               f"INVALID: {count:,} {'anomaly' if count == 1 else 'anomalies'} ({kinds})")
    started = f", started {_e(info['started'])}" if info.get("started") else ""
    svg, note = timeline(run, report)
    return ("<!DOCTYPE html><html><head><meta charset=utf-8><title>chaos run "
            f"{_e(info.get('seed'))}: {'valid' if valid else 'INVALID'}</title><style>{CSS}"
            "</style></head><body>"
            f"<div class='verdict {'valid' if valid else 'invalid'}'>{_e(verdict)}</div>"
            f"<p class=small>run {_e(info['path'])}: seed {_e(info.get('seed'))}, "
            f"{_e(info.get('seconds'))} s{started}, faults enabled: "
            f"{_e(', '.join(map(str, _listed(info.get('faults')))) or 'none')}"
            f"{_unavailable(info)}. Times "
            "are minutes:seconds since the run's start.</p>"
            "<h2>Anomalies</h2>" + _anomaly_table(report) +
            "<h2>Timeline</h2><p class=small>Faults are bars on top (kind and target) and bands "
            "behind the operations (not for faults lasting most of the run); each row below is "
            "a client process, or a workload and node when there are many processes.</p>" +
            _legend() +
            svg + f"<p class=small>{_e(note)}</p>" +
            "<h2>Figures</h2>" + _stats_table(report["stats"], run.final.get("snapshots")) +
            _fault_list(run) +
            "</body></html>\n")
