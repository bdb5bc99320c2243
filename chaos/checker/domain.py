"""The domain checks: every job's and box's trace replays through the legal-transition tables
(replication/domain/domain.h, README "Legal transitions") to the object's final state, the
trace and the history's domain operations explain each other, and no box is picked for two
open jobs."""

OPEN = {"queued", "in_progress", "on_hold"}
RUNNABLE = {"queued", "in_progress"}
HELD_FROM, SAME = "(held from)", "(same)"

# action: (statuses it is allowed from, status it leads to), as TANDEM_JOB_TRANSITIONS.
JOB_MOVES = {
    "advance": (RUNNABLE, "in_progress"),
    "hold": (RUNNABLE, "on_hold"),
    "resume": ({"on_hold"}, HELD_FROM),
    "complete": (RUNNABLE, "done"),
    "cancel": (OPEN, "cancelled"),
    "pin": (OPEN, SAME),
    "unpin": (OPEN, SAME),
    "operator": (OPEN, SAME),
}
# As TANDEM_BOX_TRANSITIONS ("process" is written by a job's advance, never requested).
BOX_MOVES = {
    "pick": ({"stored"}, "picked"),
    "process": ({"picked"}, "in_process"),
    "return": ({"picked", "in_process"}, "returned"),
    "move": ({"received", "stored", "returned"}, "stored"),
    "dispose": ({"stored", "returned"}, "disposed"),
}
# Events the cluster writes on its own (a pick links the box on its job's trace, BCP moves and
# rebalancing move open jobs between sites): they leave the status and stage as they are.
JOB_SYSTEM = {"link_box", "bcp_move", "bcp_failback", "rebalance"}
BOX_SYSTEM = {"process"}
# Requested actions that answer 200 without an event when they change nothing (README).
MAY_BE_NOOP = {"pin", "unpin", "operator", "move"}
CREATE = {"job": "create", "box": "checkin"}


def action_of(op):
    """("job"|"box", action) of a domain op: f "box_pick" on "box/B1" is ("box", "pick")."""
    kind = op.object.split("/", 1)[0] if op.object else op.f.split("_", 1)[0]
    action = op.f[len(kind) + 1:] if op.f.startswith(kind + "_") else op.f
    return kind, action


def trace_events(traces, name):
    """The events of object name in seq order (a list, or an API page {"events": [...]}), or
    None when final.json has no trace of it."""
    events = traces.get(name)
    if isinstance(events, dict):
        events = events.get("events")
    if not isinstance(events, list):
        return None
    events = [e for e in events if isinstance(e, dict)]
    return sorted(events, key=lambda e: e.get("seq") if isinstance(e.get("seq"), int) else 0)


def _details(event):
    details = event.get("details")
    return details if isinstance(details, dict) else {}


class Replay:
    """An object's state rebuilt from its trace; problems lists the rules the trace broke."""

    def __init__(self):
        self.status = None
        self.stage = 0
        self.stages = []
        self.boxes = []
        self.held_from = None
        self.job = None
        self.open_picks = set()  # jobs a box was picked for and not returned from
        self.problems = []


def _replay_job_event(state, event, final):
    action, details = event.get("action"), _details(event)
    if state.status is None:
        if action != "create":
            state.problems.append(f"the first event is {action}, not create")
            return False
        state.status = "queued"
        stages = details.get("stages")
        state.stages = stages if isinstance(stages, list) and stages else final.get("stages", [])
        return True
    if action == "link_box":
        if state.status not in OPEN:
            state.problems.append(f"link_box while {state.status}: boxes link to open jobs only")
        if details.get("box") not in state.boxes:
            state.boxes.append(details.get("box"))
        return True
    if action in JOB_SYSTEM:
        return True
    target = _table_target(state, "job", JOB_MOVES, action)
    return target is not None and _job_move(state, action, target)


def _table_target(state, kind, table, action):
    """Where the transition table leads action from the current status; None (with the
    problem noted) when the table has no such action or does not allow it from there."""
    move = table.get(action)
    if move is None:
        state.problems.append(f"unknown {kind} action {action}")
    elif state.status not in move[0]:
        state.problems.append(f"illegal {kind} transition: {action} from {state.status}")
    else:
        return move[1]
    return None


def _job_move(state, action, target):
    last = len(state.stages) - 1
    if action == "advance" and state.stage >= last:
        state.problems.append(f"advance at the last stage {state.stages[-1:]}")
        return False
    if action == "complete" and state.stage < last:
        state.problems.append(f"complete at stage {state.stage} of {len(state.stages)}")
        return False
    if action == "advance":
        state.stage += 1
    if action == "hold":
        state.held_from = state.status
    state.status = {HELD_FROM: state.held_from, SAME: state.status}.get(target, target)
    return True


def _replay_box_event(state, event):
    action, details = event.get("action"), _details(event)
    if state.status is None:
        if action != "checkin":
            state.problems.append(f"the first event is {action}, not checkin")
            return False
        state.status = details.get("status", "stored")
        return True
    target = _table_target(state, "box", BOX_MOVES, action)
    if target is None:
        return False
    state.status = target
    if action == "pick":
        state.job = details.get("job")
        state.open_picks.add(state.job)
    elif action in ("return", "dispose"):
        state.open_picks.clear()
    return True


def _replay(kind, events, final):
    state = Replay()
    for event in events:
        ok = (_replay_job_event(state, event, final) if kind == "job"
              else _replay_box_event(state, event))
        if not ok:
            state.problems[-1] += f" (event seq {event.get('seq')})"
            break
    return state


def _compare(kind, state, final):
    """What differs between the replayed state and the final object."""
    if kind == "job":
        stage = state.stages[state.stage] if state.stage < len(state.stages) else ""
        pairs = [("status", state.status), ("stage", stage), ("boxes", state.boxes)]
        if state.status == "on_hold" and "held_from" in final:
            pairs.append(("held_from", state.held_from))
    else:
        pairs = [("status", state.status), ("job", state.job)]
    return [f"{field} replays to {want!r} but is {final.get(field)!r}"
            for field, want in pairs if final.get(field) != want]


class Domain:
    """The final objects, their traces and the history's domain ops, indexed by object name."""

    def __init__(self, run):
        final = run.final
        self.objects = {}
        for kind, items in (("job", final["jobs"]), ("box", final["boxes"])):
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    self.objects[f"{kind}/{item['id']}"] = item
        self.traces = final["traces"]
        self.ops = {}          # object name -> its domain ops
        self.unattributed = {}  # (kind, action) -> attempted ops that name no object
        for op in run.ops:
            if op.workload != "domain":
                continue
            if op.object:
                self.ops.setdefault(op.object, []).append(op)
            elif op.outcome != "fail":
                key = action_of(op)
                self.unattributed[key] = self.unattributed.get(key, 0) + 1
        self.replays = {}

    def job(self, job_id):
        return self.objects.get(f"job/{job_id}")


def check(run, anomalies):
    """Runs every domain check; returns the number of objects checked."""
    domain = Domain(run)
    names = sorted(set(domain.objects) | set(domain.traces) | set(domain.ops))
    for name in names:
        _check_object(domain, name, anomalies)
    for name in names:
        if name.startswith("box/"):
            _check_box_claims(domain, name, anomalies)
            _check_history_picks(domain, name, anomalies)
    return len(names)


def _check_object(domain, name, anomalies):
    kind = name.split("/", 1)[0]
    if kind not in CREATE:
        return
    final, events = domain.objects.get(name), trace_events(domain.traces, name)
    ops = domain.ops.get(name, [])
    if final is None:
        created = [op.id for op in ops if action_of(op)[1] == CREATE[kind] and op.outcome == "ok"]
        if created:
            anomalies.add("domain_object_missing",
                          f"{name}: {CREATE[kind]} acknowledged but the object is not in the "
                          "final state", created)
        elif events:
            anomalies.add("trace_phantom", f"{name}: has a trace but no object and no "
                          f"acknowledged {CREATE[kind]}", [op.id for op in ops])
        return
    if not events:
        anomalies.add("trace_replay", f"{name}: no trace recorded for an object of the final "
                      "state", [op.id for op in ops])
        return
    state = _replay(kind, events, final)
    domain.replays[name] = state
    problems = state.problems or _compare(kind, state, final)
    if problems:
        anomalies.add("trace_replay", f"{name}: " + "; ".join(problems), [op.id for op in ops])
    _match_ops(domain, name, kind, events, ops, anomalies)


def _match_ops(domain, name, kind, events, ops, anomalies):
    """Every ok op left its event; every requested event has an ok or info op behind it."""
    counted = {}
    for event in events:
        action = event.get("action")
        if action in JOB_SYSTEM or action in BOX_SYSTEM:
            _check_system_event(domain, name, event, anomalies)
        else:
            counted.setdefault(action, []).append(event)
    by_action = {}
    for op in ops:
        by_action.setdefault(action_of(op)[1], []).append(op)
    for action in sorted(set(counted) | set(by_action), key=str):
        seen = counted.get(action, [])
        ok = [op for op in by_action.get(action, []) if op.outcome == "ok"]
        info = [op for op in by_action.get(action, []) if op.outcome == "info"]
        if len(seen) < len(ok) and action not in MAY_BE_NOOP:
            anomalies.add("trace_missing_op",
                          f"{name}: {len(ok)} acknowledged {action} ops but {len(seen)} "
                          f"{action} events in its trace", [op.id for op in ok])
        excess = len(seen) - len(ok) - len(info)
        pool = domain.unattributed.get((kind, action), 0)
        domain.unattributed[(kind, action)] = max(0, pool - max(0, excess))
        if excess > pool:
            seqs = [e.get("seq") for e in seen[len(ok) + len(info):]]
            anomalies.add("trace_phantom",
                          f"{name}: {len(seen)} {action} events (seq {seqs}) but only {len(ok)} "
                          f"acknowledged and {len(info)} indeterminate {action} ops",
                          [op.id for op in by_action.get(action, [])])
        if action == "pick":
            _check_pick_jobs(name, seen, by_action.get("pick", []), anomalies)


def _check_pick_jobs(name, events, ops, anomalies):
    """A pick event's job is the job of an attempted pick of that box."""
    attempted = [op for op in ops if op.outcome != "fail"]
    jobs = {op.job for op in attempted}
    if None in jobs:
        return  # an op without its job could explain any pick
    for event in events:
        job = _details(event).get("job")
        if job not in jobs:
            anomalies.add("trace_phantom", f"{name}: pick for job {job} (seq {event.get('seq')}) "
                          f"but the box's attempted picks were for {sorted(jobs)}",
                          [op.id for op in attempted])


def _check_system_event(domain, name, event, anomalies):
    """link_box on a job needs an attempted pick of that box; process on a box needs an
    attempted advance of its job. BCP moves and rebalancing come from faults, not ops."""
    action, details = event.get("action"), _details(event)
    if action == "link_box":
        cause, want = f"box/{details.get('box')}", "pick"
    elif action == "process":
        cause, want = f"job/{details.get('job')}", "advance"
    else:
        return
    tried = [op for op in domain.ops.get(cause, [])
             if action_of(op)[1] == want and op.outcome != "fail"]
    if not tried and domain.unattributed.get((cause.split("/")[0], want), 0) == 0:
        anomalies.add("trace_phantom", f"{name}: {action} event (seq {event.get('seq')}) but "
                      f"no attempted {want} of {cause}", [])


def _check_box_claims(domain, name, anomalies):
    box = domain.objects.get(name)
    if box is None or box.get("status") not in ("picked", "in_process"):
        return
    box_id = name.split("/", 1)[1]
    replay = domain.replays.get(name)
    candidates = {box.get("job")} | (replay.open_picks if replay else set())
    claims = sorted(j for j in candidates if j is not None and domain.job(j) is not None
                    and domain.job(j).get("status") in OPEN
                    and box_id in (domain.job(j).get("boxes") or []))
    if len(claims) > 1:
        anomalies.add("box_double_pick", f"{name} ({box.get('status')}) is claimed by open "
                      f"jobs {claims}", [])
    job = domain.job(box.get("job")) if isinstance(box.get("job"), str) else None
    if job is None or box_id not in (job.get("boxes") or []):
        anomalies.add("box_unlinked", f"{name} is {box.get('status')} for job "
                      f"{box.get('job')!r}, which " +
                      ("does not exist" if job is None else "does not list it"), [])


def _check_history_picks(domain, name, anomalies):
    """Two acknowledged picks of one box need a return and a move of it that could have
    happened between them (pick is allowed from stored only)."""
    ops = domain.ops.get(name, [])
    picks = sorted((op for op in ops if action_of(op)[1] == "pick" and op.outcome == "ok"),
                   key=lambda op: op.start)
    for first, second in zip(picks, picks[1:]):
        low, high = first.start, max(first.end, second.end)
        # An info op may take effect after its answer: it could come between until the end.
        between = {action_of(op)[1] for op in ops if op.outcome != "fail" and op.start < high
                   and (op.end > low or op.outcome == "info")}
        if not {"return", "move"} <= between:
            anomalies.add("box_double_pick",
                          f"{name}: picked for job {first.job} by op {first.id} and for job "
                          f"{second.job} by op {second.id}, with no return and move of the box "
                          "that could come between them", [first.id, second.id])
