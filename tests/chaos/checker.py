"""The checker: a pure function from a recording to the violations found and the failover times.

Safety (any violation means the fencing or the term is broken):
- ``fence_order``: accepted probe writes, ordered by Redis time, never carry a term lower than
  an earlier accepted one (writes stamped in the same millisecond are not ordered).
- ``stale_write``: no write is accepted with term T after a term above T was granted; checked
  on the writes the daemons logged and on every change of the probe record the harness saw
  (which also covers writes whose reply was lost, e.g. held by a partition and landing late).
- ``terms_increase``: ``leader_changed`` terms strictly increase, on the channel as received
  and in the history stream; the lease's term as read from Redis never goes back (a Redis
  restart must not forget a granted term).
- ``watcher``: the final picture of ``coordinator watch`` matches the lease in Redis.
- ``duplicate_term``: no term was ever granted to two tenures (holder + instance id), as the
  lease read straight from every master and every ``leader_changed`` on the channel or in
  any server's history stream show it, even across a failover or an empty restart.
- ``child_overlap``: no two nodes' leader-only children ran at the same time (their ticks,
  real wall clock), except a child resumed with its whole frozen host, which is measured;
- ``frozen_child``: such a resumed child ends within FROZEN_CHILD_END_MS of the SIGCONT.
- after Redis restarted empty (``redis_restart_empty``: no persistence) an overlap of two
  children is bounded, not forbidden, as the README's Guarantees state for Redis without
  persistence: Redis forgot the lease, a standby takes it at once, and the old leader learns
  only at its next renew (at most RENEW_INTERVAL later; sooner on hearing leader_changed),
  then stops its child (CHILD_STOP_MS to exit on SIGTERM). Within
  ``restart_empty_bound_ms`` it is measured and reported with that bound; beyond, a
  ``child_overlap`` violation.

Redis's stamps taken while its clock was stepped (``rec.redis_clock``) are first moved back
by the step: the steps are so large (30-60 min) that a stepped stamp is never a real one.
That needs every step to stamp a stretch of Redis's clock no other step stamped (the
harness picks offsets so: ``clear_offset``); two steps whose stretches overlap make a stamp
ambiguous (seed 7003 put a later step's grant 78 s early, and every later term looked
stale): such a recording gets ``harness.clock_steps`` and no verdict on Redis's stamps.

The code under test must not change during a run (``harness.code_changed``): seed 7008's
daemons started after lua/acquire.lua changed took microsecond terms, those started before
millisecond ones, and the mix looked like terms going back.

Liveness (per fault):
- a fault that removes the leader: a new term granted within LEASE_TTL + RENEW_INTERVAL of the
  fault, never more than 1 s beyond that;
- a graceful stop: the next grant at most 100 ms (Redis clock) after the release, and the
  stopped daemon exits 0 within 1 s;
- a fault on Redis alone: a grant or renewal within one renew interval of Redis returning;
- Redis's clock stepped, or a Sentinel failover: a grant or renewal within LEASE_TTL +
  RENEW_INTERVAL (+ 1 s) of the clock stepping back, or of the replica's promotion;
- a standby killed or a clock jumped: no change of leader at all;
- after every fault the cluster is whole again with a leader.

Many leases (``rec.settings.leases``): these checks once per lease, and the checks only
many leases have (holders of one lease overlapping, leases stranded): ``lease_checks.py``.

Nothing lost: no daemon exits unless the harness killed or stopped it, each restart logs
``daemon.started``, and no daemon logs at error level.
"""

from __future__ import annotations

import bisect
import copy
import json
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.recording import REDIS_ONLY, REMOVES_LEADER, Fault, Recording

GRACEFUL_GAP_MS = 100
GRACEFUL_EXIT_MS = 1000
BEYOND_MS = 1000
FROZEN_CHILD_END_MS = 1000  # a child resumed with its frozen host: ended within this
CHILD_STOP_MS = 250  # a leader-only child stopped by its daemon: exited within this


def restart_empty_bound_ms(renew_interval: float) -> int:
    """The longest overlap of two children allowed after Redis restarted empty."""
    return round(renew_interval * 1000) + CHILD_STOP_MS
STEP_SLACK_MS = 2000
FAILOVER_KINDS = ("redis_clock_step", "lost_write_failover")
_RECORD = "the probe record"


@dataclass(frozen=True)
class Violation:
    """One failed check; ``fault`` is the index of the fault it belongs to, if any."""

    category: str  # "safety" | "liveness" | "lost"
    check: str
    detail: str
    fault: int | None = None

    def __str__(self) -> str:
        where = f" (fault #{self.fault})" if self.fault is not None else ""
        return f"{self.category}.{self.check}{where}: {self.detail}"


@dataclass(frozen=True)
class Measure:
    """How long one fault left the cluster without a leader (None: not applicable)."""

    fault: int
    kind: str
    to_leader_ms: int | None
    target_ms: int | None
    over_target: bool = False


@dataclass(frozen=True)
class Overlap:
    """Two nodes' children running at once, for ``ms`` from ``at`` (real wall clock)."""

    fault: int | None
    at: int
    ms: int
    detail: str
    allowed: bool = False  # a child resumed with its frozen host, or within bound_ms
    bound_ms: int | None = None  # the bound it was judged against (an empty restart), if any
    frozen: bool = False  # many leases: the earlier holder was SIGSTOPped when it began


@dataclass
class Verdict:
    """What the checker found in one recording."""

    violations: list[Violation] = field(default_factory=list)
    measures: list[Measure] = field(default_factory=list)
    overlaps: list[Overlap] = field(default_factory=list)
    resumed_child_ms: dict[int, int] = field(default_factory=dict)  # fault -> ran after SIGCONT
    # many leases: (fault, ms from a handover's release to the lease's next grant; None: none)
    handovers: list[tuple[int | None, int | None]] = field(default_factory=list)
    # many leases: fault -> how long after SIGCONT a SIGSTOPped holder's tenure went on
    resumed_holder_ms: dict[int, int] = field(default_factory=dict)

    def longest_overlap(self, kind: str | None = None, faults: list[Fault] | None = None) -> int:
        """The longest overlap of two children (ms), only during faults of ``kind`` if given."""
        kinds = {f.index: f.kind for f in faults or []}
        return max((o.ms for o in self.overlaps if kind is None or kinds.get(
            o.fault if o.fault is not None else -1) == kind), default=0)

    def stale_logged(self, kind: str | None = None, faults: list[Fault] | None = None) -> int:
        """Fenced writes a daemon or child logged as accepted though a newer term was granted."""
        kinds = {f.index: f.kind for f in faults or []}
        return sum(1 for v in self.violations if v.check == "stale_write"
                   and not v.detail.startswith(_RECORD)
                   and (kind is None or kinds.get(v.fault if v.fault is not None else -1) == kind))

    def count_check(self, check: str, kind: str | None = None,
                    faults: list[Fault] | None = None) -> int:
        """Violations of the check named ``check``, only those of faults of ``kind`` if given."""
        kinds = {f.index: f.kind for f in faults or []}
        return sum(1 for v in self.violations if v.check == check
                   and (kind is None or kinds.get(v.fault if v.fault is not None else -1) == kind))

    @property
    def ok(self) -> bool:
        return not self.violations

    def count(self, category: str, kind: str | None = None, faults: list[Fault] | None = None) -> int:
        """Violations of ``category``, only those of faults of ``kind`` if given."""
        kinds = {f.index: f.kind for f in faults or []}
        return sum(1 for v in self.violations if v.category == category
                   and (kind is None or kinds.get(v.fault if v.fault is not None else -1) == kind))


def check(rec: Recording) -> Verdict:
    """Every check over ``rec``; pure: it reads nothing but the recording."""
    verdict = Verdict()
    if len(set(rec.code_digests)) > 1:  # still judged: a finding may be real, but say so
        verdict.violations.append(Violation(
            "harness", "code_changed",
            f"the product's code changed during the run (digests {', '.join(rec.code_digests)}): "
            "daemons started before and after the change ran different code"))
    clash = ambiguous_steps(rec.redis_clock)
    if clash:  # no guess on which step took a stamp: only the checks that need none
        verdict.violations += [Violation(
            "harness", "clock_steps",
            f"Redis clock steps {i} {rec.redis_clock[i]} and {j} {rec.redis_clock[j]} stamped "
            "overlapping stretches of its clock: its stamps cannot be put back, not judged")
            for i, j in clash]
        verdict.violations += _duplicate_terms(rec)
        verdict.violations += _watcher(rec)
        verdict.violations += _children(rec, verdict)
        verdict.violations += _nothing_lost(rec)
        return verdict
    rec = unfaked(rec)
    if rec.settings.leases:  # many leases: every check once per lease (lease_checks.py)
        from tests.chaos.lease_checks import check_leases

        return check_leases(rec, verdict)
    grants = _grants(rec)
    verdict.violations += _fence_order(rec)
    verdict.violations += _stale_writes(rec, grants)
    verdict.violations += _terms_increase(rec)
    verdict.violations += _duplicate_terms(rec)
    verdict.violations += _watcher(rec)
    verdict.violations += _children(rec, verdict)
    for fault in rec.faults:
        measure, found = _liveness(rec, fault, grants)
        verdict.violations += found
        if measure is not None:
            verdict.measures.append(measure)
    verdict.violations += _nothing_lost(rec)
    return verdict


# ---- Redis's clock steps taken off --------------------------------------------------------

def real_ms(steps: list[list[int]], at: int) -> int:
    """A Redis stamp ``at`` on the real clock, given the steps [real start, real end, offset]."""
    for start, end, offset in steps:
        if offset and start + offset - STEP_SLACK_MS <= at <= end + offset + STEP_SLACK_MS:
            return at - offset
    return at


def _stretch(step: list[int]) -> tuple[int, int]:
    """The stretch of Redis's clock that ``real_ms`` reads as stamped during ``step``."""
    start, end, offset = step
    return start + offset - STEP_SLACK_MS, end + offset + STEP_SLACK_MS


def ambiguous_steps(steps: list[list[int]]) -> list[tuple[int, int]]:
    """Pairs (i, j) of steps whose stamped stretches overlap (a stamp there fits both)."""
    stretches = [(i, *_stretch(s)) for i, s in enumerate(steps) if s[2]]
    return [(i, j) for n, (i, lo, hi) in enumerate(stretches) for j, lo2, hi2 in stretches[n + 1:]
            if lo <= hi2 and lo2 <= hi]


STEP_LIMITS_MS = (1_800_000, 3_600_000)  # the drawn steps: 30-60 min, whole seconds
HOLD_OVERRUN_MS = 2000  # a step lifted this much later than its hold is still clear


def clear_offset(offset_ms: int, begun_ms: int, hold_ms: int, steps: list[list[int]]) -> int:
    """The step nearest ``offset_ms`` (same sign, whole seconds, 30-60 min) whose stretch,
    begun at ``begun_ms`` and held ``hold_ms`` (+ HOLD_OVERRUN_MS), overlaps no earlier
    step's; ``offset_ms`` itself if none is left."""
    sign, size = (1 if offset_ms > 0 else -1), abs(offset_ms)
    low, high = STEP_LIMITS_MS
    for k in range(2 * (high - low) // 1000 + 1):
        candidate = size + (k + 1) // 2 * 1000 * (1 if k % 2 else -1)
        if not low <= candidate <= high:
            continue
        lo, hi = _stretch([begun_ms, begun_ms + hold_ms + HOLD_OVERRUN_MS, sign * candidate])
        if all(hi < s_lo or s_hi < lo for s_lo, s_hi in (_stretch(s) for s in steps if s[2])):
            return sign * candidate
    return offset_ms


def unfaked(rec: Recording) -> Recording:
    """``rec`` with every Redis stamp on the real clock (``rec`` itself when Redis's clock
    was never stepped)."""
    steps = rec.redis_clock
    if not any(offset for _, _, offset in steps):
        return rec
    out = copy.deepcopy(rec)

    def fix(value: int | None) -> int | None:
        return None if value is None else real_ms(steps, value)

    for w in out.writes:
        w.redis_now = real_ms(steps, w.redis_now)
    for s in out.samples:
        s.at = real_ms(steps, s.at)
        s.prev_at, s.renewed_at = fix(s.prev_at), fix(s.renewed_at)
    out.samples.sort(key=lambda x: x.at)
    for e in {id(e): e for e in [*out.channel, *out.history]}.values():  # each event once
        if isinstance(e.get("at"), int) and e.get("type") != "state_changed":
            e["at"] = real_ms(steps, e["at"])
    return out


# ---- what the recording says about grants ------------------------------------------------

def _grants(rec: Recording) -> list[tuple[int, int]]:
    """(Redis ms, term) of every new tenure, from the channel and the history, sorted by time."""
    seen = {(e["at"], e["term"]) for e in [*rec.channel, *rec.history]
            if e.get("type") == "leader_changed" and isinstance(e.get("term"), int)}
    return sorted(seen)


class _HighestTermBefore:
    """The highest term granted strictly before a given Redis time."""

    def __init__(self, grants: list[tuple[int, int]]) -> None:
        self._times = [at for at, _ in grants]
        self._highest: list[int] = []
        top = 0
        for _, term in grants:
            top = max(top, term)
            self._highest.append(top)

    def __call__(self, at: int) -> tuple[int, int | None]:
        i = bisect.bisect_left(self._times, at)
        if i == 0:
            return 0, None
        best = self._highest[i - 1]
        when = next(t for t, h in zip(self._times, self._highest, strict=True) if h == best)
        return best, when


# ---- safety ------------------------------------------------------------------------------

def _fence_order(rec: Recording) -> list[Violation]:
    found = []
    accepted = sorted((w for w in rec.writes if w.accepted), key=lambda w: w.redis_now)
    highest, highest_by, ms, pending = 0, "", None, 0
    for w in accepted:
        if w.redis_now != ms:  # a new millisecond: writes before it now count as earlier
            ms, highest = w.redis_now, max(highest, pending)
        if w.term < highest:
            found.append(Violation(
                "safety", "fence_order",
                f"{w.node_id} had term {w.term} accepted at {w.redis_now} after {highest_by} "
                f"had term {highest} accepted earlier", _fault_at(rec, w.redis_now)))
        if w.term > pending:
            pending, highest_by = w.term, f"{w.node_id}#{w.incarnation}"
    return found


def _stale_writes(rec: Recording, grants: list[tuple[int, int]]) -> list[Violation]:
    found = []
    highest_before = _HighestTermBefore(grants)
    for w in rec.writes:
        if not w.accepted:
            continue
        newer, granted_at = highest_before(w.redis_now)
        if newer > w.term:
            found.append(Violation(
                "safety", "stale_write",
                f"{w.node_id}#{w.incarnation} ({w.source}) had a write with term {w.term} accepted at "
                f"{w.redis_now}, after term {newer} was granted at {granted_at}",
                _fault_at(rec, w.redis_now)))
    previous_by_server: dict[int | None, str | None] = {}
    for s in rec.samples:
        previous = previous_by_server.get(s.server)
        if s.probe is not None and s.probe != previous and s.prev_at is not None:
            term = _probe_term(s.probe)
            # the write landed after prev_at: a grant before prev_at came before it
            newer, granted_at = highest_before(s.prev_at)
            if term is not None and newer > term:
                found.append(Violation(
                    "safety", "stale_write",
                    f"{_RECORD} became {s.probe} (term {term}) between {s.prev_at} and "
                    f"{s.at}, after term {newer} was granted at {granted_at}",
                    _fault_at(rec, s.at)))
        previous_by_server[s.server] = s.probe
    return found


def _probe_term(raw: str) -> int | None:
    try:
        term = json.loads(raw).get("term")
    except (ValueError, AttributeError):
        return None
    return term if isinstance(term, int) else None


def _terms_increase(rec: Recording) -> list[Violation]:
    found = []
    for source, events in (("channel", rec.channel), ("history", rec.history)):
        last: dict[str, Any] | None = None
        for e in events:
            if e.get("type") != "leader_changed":
                continue
            if last is not None and e["term"] <= last["term"]:
                found.append(Violation(
                    "safety", "terms_increase",
                    f"{source}: leader_changed term {e['term']} ({e.get('holder_id')}, at "
                    f"{e.get('at')}) after term {last['term']} ({last.get('holder_id')})",
                    _fault_at(rec, int(e.get("at") or 0))))
            last = e
    highest: dict[int | None, tuple[int, int]] = {}  # per server (a failover moves the master)
    for s in rec.samples:
        if s.term is None:
            continue
        top = highest.get(s.server)
        if top is not None and s.term < top[0]:
            found.append(Violation(
                "safety", "terms_increase",
                f"the lease's term went back from {top[0]} (read at {top[1]}) to "
                f"{s.term} (read at {s.at})" + (f" on the server at :{s.server}" if s.server else ""),
                _fault_at(rec, s.at)))
        if top is None or s.term > top[0]:
            highest[s.server] = (s.term, s.at)
    return found


def _duplicate_terms(rec: Recording) -> list[Violation]:
    """A term with two holders, or two instance ids, anywhere on the record."""
    holders: dict[int, dict[str, int]] = defaultdict(dict)  # term -> holder -> first seen
    instances: dict[int, dict[str, int]] = defaultdict(dict)
    for s in rec.samples:
        if s.term is not None and s.holder_id is not None:
            holders[s.term].setdefault(s.holder_id, s.at)
            if s.instance_id:
                instances[s.term].setdefault(s.instance_id, s.at)
    for e in [*rec.channel, *rec.history]:
        if e.get("type") == "leader_changed" and isinstance(e.get("term"), int):
            holders[e["term"]].setdefault(str(e.get("holder_id")), int(e.get("at") or 0))
    found = []
    for term in sorted(set(holders) | set(instances)):
        for what, seen in (("holders", holders[term]), ("instances", instances[term])):
            if len(seen) > 1:
                second = sorted(seen.values())[1]
                found.append(Violation(
                    "safety", "duplicate_term",
                    f"term {term} was granted to two tenures: {what} "
                    + ", ".join(f"{k} (first seen {v})" for k, v in sorted(seen.items(),
                                                                          key=lambda kv: kv[1])),
                    _fault_at(rec, second)))
                break
    return found


def _children(rec: Recording, verdict: Verdict) -> list[Violation]:
    """Two nodes' children running at once; a child resumed with its frozen host that runs on."""
    resumed: dict[tuple[int, int], Fault] = {}  # (pid, segment start) -> the freeze it follows
    for f in rec.faults:
        if f.kind != "freeze_leader_host" or f.ended_ms is None or not f.params.get("child_pid"):
            continue
        for c in rec.children:
            if c.pid == f.params["child_pid"]:
                later = [seg for seg in c.segments if seg[1] >= f.ended_ms - 50]
                if later:
                    seg = later[0]
                    resumed[(c.pid, seg[0])] = f
                    verdict.resumed_child_ms[f.index] = max(0, seg[1] - f.ended_ms)
    found = []
    for f_index, ran in verdict.resumed_child_ms.items():
        if ran > FROZEN_CHILD_END_MS:
            found.append(Violation(
                "safety", "frozen_child",
                f"the frozen leader's child ran {ran} ms after SIGCONT (more than "
                f"{FROZEN_CHILD_END_MS} ms)", f_index))
    kinds = {f.index: f.kind for f in rec.faults}
    segments = sorted((seg[0], seg[1], c) for c in rec.children for seg in c.segments)
    for i, (start_a, end_a, a) in enumerate(segments):
        for start_b, end_b, b in segments[i + 1:]:
            if start_b >= end_a:
                break
            if a.node_id == b.node_id:
                continue
            ms = min(end_a, end_b) - start_b
            if ms <= 0:
                continue
            allowed = (a.pid, start_a) in resumed or (b.pid, start_b) in resumed
            detail = (f"{a.node_id}'s child (pid {a.pid}, term {a.term}) and {b.node_id}'s "
                      f"(pid {b.pid}, term {b.term}) ran at once for {ms} ms from {start_b}")
            at_fault = _fault_at(rec, start_b)
            bound = None
            if at_fault is not None and kinds.get(at_fault) == "redis_restart_empty":
                bound = restart_empty_bound_ms(rec.settings.renew_interval)
                detail += (f" after Redis restarted empty (bound: renew interval + "
                           f"{CHILD_STOP_MS} ms = {bound} ms)")
                allowed = allowed or ms <= bound
            overlap = Overlap(at_fault, start_b, ms, detail, allowed, bound)
            verdict.overlaps.append(overlap)
            if not allowed:
                found.append(Violation("safety", "child_overlap", detail, overlap.fault))
    return found


def _watcher(rec: Recording) -> list[Violation]:
    if rec.redis_final is None:
        return [Violation("safety", "watcher", "no final read of the lease was recorded")]
    if rec.watcher_final != rec.redis_final:
        return [Violation("safety", "watcher",
                          f"the watcher's final picture {rec.watcher_final} differs from "
                          f"Redis's lease {rec.redis_final}")]
    return []


# ---- liveness ----------------------------------------------------------------------------

def _liveness(rec: Recording, fault: Fault, grants: list[tuple[int, int]]) -> tuple[
        Measure | None, list[Violation]]:
    s = rec.settings
    ttl_ms, renew_ms = round(s.lease_ttl * 1000), round(s.renew_interval * 1000)
    found: list[Violation] = []
    if fault.settled_ms is None:
        found.append(Violation("liveness", "settled",
                               f"{fault.kind}: the cluster was not whole again with a leader",
                               fault.index))
    removes = fault.kind in REMOVES_LEADER or (
        fault.kind == "kill_all_but_one" and fault.target != fault.leader_before)
    if removes:
        target = ttl_ms + renew_ms
        took = _first_grant_after(grants, fault.term_before or 0, fault.started_ms)
        if took is None:
            found.append(Violation("liveness", "new_leader",
                                   f"{fault.kind}: no new term granted after the fault", fault.index))
            return Measure(fault.index, fault.kind, None, target), found
        if fault.kind == "process_crash":  # the guardian releases at once: no TTL wait
            target = renew_ms
            if took > target:
                found.append(Violation(
                    "liveness", "new_leader",
                    f"process_crash: new leader {took} ms after the daemon was killed, more than "
                    f"RENEW_INTERVAL ({target} ms): its guardian did not release it", fault.index))
            return Measure(fault.index, fault.kind, took, target, took > target), found
        if took > target + BEYOND_MS:
            found.append(Violation(
                "liveness", "new_leader",
                f"{fault.kind}: new leader {took} ms after the fault, more than "
                f"LEASE_TTL + RENEW_INTERVAL ({target} ms) + {BEYOND_MS} ms", fault.index))
        return Measure(fault.index, fault.kind, took, target, took > target), found
    if fault.kind == "graceful_stop":
        return _graceful(rec, fault, found)
    if fault.kind in FAILOVER_KINDS:
        target = ttl_ms + renew_ms
        since = int(fault.params.get("lifted_ms") or fault.ended_ms or fault.started_ms)
        activity = [at for at, _ in grants if at >= since] + [
            x.renewed_at for x in rec.samples if x.renewed_at is not None and x.renewed_at >= since]
        took = min(activity) - since if activity else None
        if took is None or took > target + BEYOND_MS:
            found.append(Violation(
                "liveness", "leader_back",
                f"{fault.kind}: no lease granted or renewed within LEASE_TTL + RENEW_INTERVAL "
                f"({target} ms) + {BEYOND_MS} ms of the fault being lifted (first after {took} ms)",
                fault.index))
        return Measure(fault.index, fault.kind, took, target, took is None or took > target), found
    if fault.kind in REDIS_ONLY:
        back = fault.ended_ms
        if back is None:
            found.append(Violation("liveness", "redis_back", f"{fault.kind}: Redis never came back",
                                   fault.index))
            return None, found
        # Redis may serve a daemon a moment before it answers the harness's PING: count
        # activity from when it was restarted (or the delay removed), measure from ``back``
        since = int(fault.params.get("lifted_ms", back))
        activity = [at for at, _ in grants if at >= since] + [
            x.renewed_at for x in rec.samples if x.renewed_at is not None and x.renewed_at >= since]
        took = max(0, min(activity) - back) if activity else None
        late = took is None or took > renew_ms
        if late:
            found.append(Violation(
                "liveness", "redis_back",
                f"{fault.kind}: no lease granted or renewed within RENEW_INTERVAL ({renew_ms} ms) "
                f"of Redis returning (first after {took} ms)", fault.index))
        return Measure(fault.index, fault.kind, took, renew_ms, late), found
    # a standby killed, a clock jumped, or all but the leader killed: the leader must stay
    until = fault.settled_ms or rec.ended_ms
    changed = [(at, term) for at, term in grants if fault.started_ms <= at <= until]
    if changed:
        found.append(Violation(
            "liveness", "leader_kept",
            f"{fault.kind} on {fault.target}: the leader changed (term {changed[0][1]} granted "
            f"at {changed[0][0]}) though the leader was not hit", fault.index))
    return Measure(fault.index, fault.kind, None, None), found


def _first_grant_after(grants: list[tuple[int, int]], term: int, since: int) -> int | None:
    for at, t in grants:
        if t > term and at >= since:
            return at - since
    return None


def _graceful(rec: Recording, fault: Fault, found: list[Violation]) -> tuple[Measure, list[Violation]]:
    released = next((e for e in [*rec.history, *rec.channel] if e.get("type") == "lease_released"
                     and e.get("holder_id") == fault.target and e.get("term") == fault.term_before),
                    None)
    gap = None
    if released is None:
        found.append(Violation("liveness", "graceful",
                               f"{fault.target} was stopped but never released term {fault.term_before}",
                               fault.index))
    else:
        after = [e["at"] for e in rec.history + rec.channel if e.get("type") == "leader_changed"
                 and e.get("term", 0) > (fault.term_before or 0)]
        gap = min(after) - released["at"] if after else None
        if gap is None or gap > GRACEFUL_GAP_MS:
            found.append(Violation(
                "liveness", "graceful",
                f"next leader {gap} ms after {fault.target} released (more than {GRACEFUL_GAP_MS} ms)",
                fault.index))
    for inc in rec.incarnations:
        if inc.node_id == fault.target and inc.stopped_by == "term" and inc.ended_ms is not None \
                and fault.started_ms <= inc.ended_ms:
            if inc.exit_code != 0 or inc.ended_ms - fault.started_ms > GRACEFUL_EXIT_MS:
                found.append(Violation(
                    "liveness", "graceful",
                    f"{fault.target} exited {inc.exit_code} {inc.ended_ms - fault.started_ms} ms "
                    f"after SIGTERM (must be 0 within {GRACEFUL_EXIT_MS} ms)", fault.index))
            break
    return Measure(fault.index, fault.kind, gap, GRACEFUL_GAP_MS,
                   gap is None or gap > GRACEFUL_GAP_MS), found


# ---- nothing lost ------------------------------------------------------------------------

def _nothing_lost(rec: Recording) -> list[Violation]:
    found = []
    for inc in rec.incarnations:
        name = f"{inc.node_id}#{inc.number}"
        fault = _fault_at(rec, inc.ended_ms) if inc.ended_ms is not None else None
        if inc.exit_code is not None and inc.stopped_by is None:
            found.append(Violation("lost", "exited", f"{name} exited by itself with {inc.exit_code}",
                                   fault))
        if inc.stopped_by == "term" and inc.exit_code not in (None, 0):
            found.append(Violation("lost", "stop", f"{name} exited {inc.exit_code} on SIGTERM, not 0",
                                   fault))
        if inc.ready_ms is None:
            found.append(Violation("lost", "restart", f"{name} never logged daemon.started",
                                   _fault_at(rec, inc.started_ms)))
        for error in inc.errors:
            found.append(Violation("lost", "error_logged", f"{name} logged {error}",
                                   _fault_at(rec, inc.started_ms)))
    return found


def _fault_at(rec: Recording, at: int) -> int | None:
    """The fault in progress (or last begun) at Redis time ``at``."""
    current = None
    for f in rec.faults:
        if f.started_ms <= at:
            current = f.index
    return current


# ---- summaries for the report ------------------------------------------------------------

def median(values: Iterable[int]) -> float | None:
    """The median, or None for no values."""
    data = list(values)
    return statistics.median(data) if data else None
