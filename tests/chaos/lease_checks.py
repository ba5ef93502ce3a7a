"""The checker for many leases (issue 15): the single lease's checks, run once per lease,
and what only many leases have: holders of one lease overlapping, leases stranded.

Per lease (each check of ``checker.py`` run on the recording seen from that lease alone:
its probe writes, its samples, its events, ``project``):
- ``fence_order``, ``stale_write``: the lease's probe key (``probe.LEASE``), as the single
  lease's probe key;
- ``terms_increase``: the lease's ``leader_changed`` terms on the channel and in the history,
  and its term read from Redis, never go back;
- ``duplicate_term``: no term of the lease granted to two tenures;
- ``holder_overlap``: no two processes were leader of one lease at the same time (the
  ``state.changed`` lines of each lease's daemon, each process's wall clock put back after
  a ``clock_jump``), except a process that was SIGSTOPped when the overlap began, which
  ends it within FROZEN_END_MS of its SIGCONT (it could schedule nothing while stopped,
  and its gate reads the monotonic deadline before its timer logs the change: measured),
  and after Redis restarted empty (bounded as for the single lease's children);
- ``stranded`` (liveness, per fault): every registered lease has a live holder again
  within LEASE_TTL + RENEW_INTERVAL (never more than 1 s beyond) of the fault (of Redis
  answering again, for a Redis fault): a lease the fault's node held gets a new term, any
  other is granted or renewed; the worst lease is the fault's re-home time. At the run's
  end every lease is held;
- ``graceful``: each lease a SIGTERMed node held is granted again within GRACEFUL_GAP_MS of
  its release (Redis clock), the node exits 0 within GRACEFUL_EXIT_MS;
- ``calm``: a clock jump moves no lease (placement judges liveness on Redis's clock).

Every handover (``lease_released`` with ``handoff_to``) is measured: release to next grant.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable

from tests.chaos.checker import (
    BEYOND_MS,
    GRACEFUL_EXIT_MS,
    GRACEFUL_GAP_MS,
    Measure,
    Overlap,
    Verdict,
    Violation,
    _duplicate_terms,
    _fault_at,
    _fence_order,
    _grants,
    _nothing_lost,
    _stale_writes,
    _terms_increase,
    _watcher,
    restart_empty_bound_ms,
)
from tests.chaos.recording import REDIS_ONLY, REMOVES_LEADER, Fault, Recording, Sample, Tenure

FROZEN_END_MS = 1000  # a SIGSTOPped holder's tenure ends within this of its SIGCONT
STOPPED_KINDS = ("pause_leader", "group_stop_leader", "freeze_leader_host")
JUMP_SLACK_MS = 1000  # around a clock jump's switch, and a process's stamps going back


def check_leases(rec: Recording, verdict: Verdict) -> Verdict:
    """Every per-lease check over ``rec`` (a recording of many leases), into ``verdict``."""
    for lease in rec.settings.leases:
        one = project(rec, lease)
        found = [*_fence_order(one), *_stale_writes(one, _grants(one)), *_terms_increase(one),
                 *_duplicate_terms(one)]
        verdict.violations += [dataclasses.replace(v, detail=f"lease {lease}: {v.detail}")
                               for v in found]
    verdict.violations += _watcher(rec)  # coordinator watch follows the first lease
    verdict.violations += holder_overlaps(rec, verdict)
    grants = {lease: _grants(project(rec, lease)) for lease in rec.settings.leases}
    samples = _samples_by_lease(rec)
    for fault in rec.faults:
        measure, found = rehome(rec, fault, grants, samples)
        verdict.violations += found
        verdict.measures.append(measure)
        if fault.kind == "graceful_stop":
            verdict.violations += _graceful(rec, fault)
        if fault.kind == "clock_jump":
            verdict.violations += _calm(rec, fault)
    verdict.violations += _held_at_the_end(rec)
    verdict.handovers += handovers(rec)
    verdict.violations += _nothing_lost(rec)
    return verdict


def project(rec: Recording, lease: str) -> Recording:
    """``rec`` as the single lease ``lease`` would have recorded it."""
    def ours(events: list[dict[str, object]]) -> list[dict[str, object]]:
        return [e for e in events if e.get("lease") == lease]

    return dataclasses.replace(
        rec, writes=[w for w in rec.writes if w.lease == lease],
        samples=[s for s in rec.samples if s.lease == lease],
        channel=ours(rec.channel), history=ours(rec.history),
        tenures=[t for t in rec.tenures if t.lease == lease], children=[])


# ---- two holders of one lease at once ----------------------------------------------------

def real_stamps(rec: Recording) -> dict[int, tuple[int, int | None]]:
    """Each tenure's (start, end) on the real clock, by ``id(tenure)``: a stamp a
    ``clock_jump`` of its node moved is put back by the jump. A process logs in real-time
    order, so of the readings a stamp allows (itself, or itself less a jump's offset when
    that lands in the jump), the earliest not before the previous line's is the one."""
    jumps: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for f in rec.faults:
        if f.kind == "clock_jump" and f.target and f.params.get("offset_s"):
            jumps[f.target].append((f.started_ms - JUMP_SLACK_MS,
                                    (f.ended_ms or f.started_ms) + JUMP_SLACK_MS,
                                    round(f.params["offset_s"] * 1000)))
    started = {(i.node_id, i.number): i.started_ms for i in rec.incarnations}
    by_process: dict[tuple[str, int], list[tuple[int, int, Tenure, str]]] = defaultdict(list)
    for t in rec.tenures:
        by_process[(t.node_id, t.incarnation)].append((t.started_line, t.started_ms, t, "start"))
        if t.ended_ms is not None:
            by_process[(t.node_id, t.incarnation)].append((t.ended_line or 0, t.ended_ms, t, "end"))
    out: dict[int, list[int | None]] = {}
    for process, stamps in by_process.items():
        last = started.get(process, 0) - JUMP_SLACK_MS
        for _, at, tenure, which in sorted(stamps, key=lambda x: x[0]):
            readings = [at] + [at - offset for lo, hi, offset in jumps.get(process[0], [])
                               if lo <= at - offset <= hi]
            fitting = [r for r in readings if r >= last - JUMP_SLACK_MS]
            real = min(fitting) if fitting else max(readings)
            last = max(last, real)
            pair = out.setdefault(id(tenure), [None, None])
            pair[0 if which == "start" else 1] = real
    return {key: (int(start or 0), end) for key, (start, end) in out.items()}


def holder_overlaps(rec: Recording, verdict: Verdict) -> list[Violation]:
    """Two processes leader of one lease at once (see the module's docstring)."""
    real = real_stamps(rec)
    ended = {(i.node_id, i.number): i.ended_ms for i in rec.incarnations}
    kinds = {f.index: f for f in rec.faults}
    found = []
    by_lease: dict[str, list[tuple[int, int, Tenure]]] = defaultdict(list)
    for t in rec.tenures:
        start, end = real.get(id(t), (t.started_ms, t.ended_ms))
        if end is None:  # the process ended leading (killed, or the run's end)
            end = ended.get((t.node_id, t.incarnation)) or rec.ended_ms
        by_lease[t.lease].append((start, end, t))
    for lease, spans in sorted(by_lease.items()):
        spans.sort(key=lambda x: x[0])
        for i, (start_a, end_a, a) in enumerate(spans):
            for start_b, end_b, b in spans[i + 1:]:
                if start_b >= end_a:
                    break
                if (a.node_id, a.incarnation) == (b.node_id, b.incarnation):
                    continue
                ms = min(end_a, end_b) - start_b
                if ms <= 0:
                    continue
                detail = (f"lease {lease}: {a.node_id}#{a.incarnation} (term {a.term}, leader "
                          f"{start_a}..{end_a}) and {b.node_id}#{b.incarnation} (term {b.term}, "
                          f"from {start_b}) were both leader for {ms} ms")
                at_fault = _fault_at(rec, start_b)
                fault = kinds.get(at_fault) if at_fault is not None else None
                allowed, bound = False, None
                stopped = _stopped_at(rec, a.node_id, start_b)
                if stopped is not None and stopped.ended_ms is not None:
                    bound = FROZEN_END_MS
                    allowed = end_a - stopped.ended_ms <= FROZEN_END_MS
                    verdict.resumed_holder_ms[stopped.index] = max(
                        verdict.resumed_holder_ms.get(stopped.index, 0), end_a - stopped.ended_ms)
                    detail += (f"; {a.node_id} was SIGSTOPped then, its tenure ended "
                               f"{end_a - stopped.ended_ms} ms after SIGCONT (bound "
                               f"{FROZEN_END_MS} ms)")
                elif fault is not None and fault.kind == "redis_restart_empty":
                    bound = restart_empty_bound_ms(rec.settings.renew_interval)
                    allowed = ms <= bound
                    detail += f" after Redis restarted empty (bound {bound} ms)"
                verdict.overlaps.append(Overlap(at_fault, start_b, ms, detail, allowed, bound,
                                                frozen=stopped is not None))
                if not allowed:
                    found.append(Violation("safety", "holder_overlap", detail, at_fault))
    return found


def _stopped_at(rec: Recording, node: str, at: int) -> Fault | None:
    """The fault that held ``node``'s processes SIGSTOPped at ``at``, if one did."""
    for f in rec.faults:
        if f.kind in STOPPED_KINDS and f.target == node and f.started_ms <= at <= (
                f.ended_ms or f.started_ms):
            return f
    return None


# ---- nothing stranded ---------------------------------------------------------------------

def _samples_by_lease(rec: Recording) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = defaultdict(list)
    for s in sorted(rec.samples, key=lambda x: x.at):
        if s.lease is not None:
            out[s.lease].append(s)
    return out


def removed_by(fault: Fault) -> set[str]:
    """The nodes a fault takes away (killed, stopped, frozen, cut off)."""
    gone = set(fault.stopped)
    if fault.kind in REMOVES_LEADER and fault.target:
        gone.add(fault.target)
    return gone


def rehome(rec: Recording, fault: Fault, grants: dict[str, list[tuple[int, int]]],
           samples: dict[str, list[Sample]]) -> tuple[Measure, list[Violation]]:
    """The time until every lease has a live holder again after ``fault``, the worst lease."""
    s = rec.settings
    target = round((s.lease_ttl + s.renew_interval) * 1000)
    since = int(fault.params.get("lifted_ms") or fault.ended_ms or fault.started_ms) if (
        fault.kind in REDIS_ONLY) else fault.started_ms
    gone = removed_by(fault)
    worst: tuple[int, str] | None = None
    stranded = []
    for lease in s.leases:
        before = [x for x in samples.get(lease, []) if x.at <= fault.started_ms]
        holder, term = (before[-1].holder_id, before[-1].term) if before else (None, None)
        if holder is not None and holder in gone:  # its holder went: a new term elsewhere
            times = [at for at, t in grants.get(lease, []) if at >= since and t > (term or 0)]
        else:  # a grant or a renewal (of a holder Redis still hears)
            times = [at for at, _ in grants.get(lease, []) if at >= since] + [
                x.renewed_at for x in samples.get(lease, [])
                if x.renewed_at is not None and x.renewed_at >= since]
        if not times:
            stranded.append(lease)
            continue
        took = min(times) - since
        if worst is None or took > worst[0]:
            worst = (took, lease)
    found = []
    if fault.settled_ms is None:
        found.append(Violation("liveness", "settled", f"{fault.kind}: the cluster was not whole "
                               "again (every lease held, renewed, at its share)", fault.index))
    if stranded:
        found.append(Violation("liveness", "stranded", f"{fault.kind}: never held again after "
                               f"the fault: {', '.join(stranded)}", fault.index))
    elif worst is not None and worst[0] > target + BEYOND_MS:
        found.append(Violation(
            "liveness", "stranded",
            f"{fault.kind}: lease {worst[1]} had no live holder for {worst[0]} ms after the "
            f"fault, more than LEASE_TTL + RENEW_INTERVAL ({target} ms) + {BEYOND_MS} ms",
            fault.index))
    took_ms = None if stranded or worst is None else worst[0]
    return Measure(fault.index, fault.kind, took_ms, target,
                   took_ms is None or took_ms > target), found


def _held_at_the_end(rec: Recording) -> list[Violation]:
    if not rec.leases_final:
        return [Violation("liveness", "stranded", "no final read of the leases was recorded")]
    free = sorted(lease for lease in rec.settings.leases if rec.leases_final.get(lease) is None)
    return [Violation("liveness", "stranded", f"held by nobody at the run's end: {', '.join(free)}")
            ] if free else []


# ---- handovers ------------------------------------------------------------------------------

def _next_grant(rec: Recording) -> Callable[[str, int, int], int | None]:
    grants: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for e in {(e.get("lease"), e.get("at"), e.get("term")) for e in [*rec.channel, *rec.history]
              if e.get("type") == "leader_changed"}:
        lease, at, term = e
        if isinstance(lease, str) and isinstance(at, int) and isinstance(term, int):
            grants[lease].append((at, term))

    def after(lease: str, term: int, at: int) -> int | None:
        later = [g for g, t in grants.get(lease, []) if t > term and g >= at]
        return min(later) - at if later else None
    return after


def _releases(rec: Recording) -> list[dict[str, object]]:
    seen: dict[tuple[object, object, object], dict[str, object]] = {}
    for e in [*rec.history, *rec.channel]:
        if e.get("type") == "lease_released":
            seen.setdefault((e.get("lease"), e.get("term"), e.get("holder_id")), e)
    return sorted(seen.values(), key=lambda e: int(e.get("at") or 0))  # type: ignore[call-overload]


def handovers(rec: Recording) -> list[tuple[int | None, int | None]]:
    """(fault, ms from the release to the lease's next grant; None: none) of every
    handover (a release reserved for a node)."""
    after = _next_grant(rec)
    out = []
    for e in _releases(rec):
        if e.get("handoff_to") and isinstance(e.get("at"), int) and isinstance(e.get("term"), int):
            at, term = int(e["at"]), int(e["term"])  # type: ignore[call-overload]
            out.append((_fault_at(rec, at), after(str(e.get("lease")), term, at)))
    return out


def _graceful(rec: Recording, fault: Fault) -> list[Violation]:
    after = _next_grant(rec)
    found = []
    until = window_end(rec, fault)
    for e in _releases(rec):
        at = e.get("at")
        if e.get("holder_id") != fault.target or not isinstance(at, int) or not (
                fault.started_ms <= at <= until):
            continue
        gap = after(str(e.get("lease")), int(e.get("term") or 0), at)  # type: ignore[call-overload]
        if gap is None or gap > GRACEFUL_GAP_MS:
            found.append(Violation(
                "liveness", "graceful",
                f"lease {e.get('lease')}: next grant {gap} ms after {fault.target} released term "
                f"{e.get('term')} (more than {GRACEFUL_GAP_MS} ms)", fault.index))
    for inc in rec.incarnations:
        if inc.node_id == fault.target and inc.stopped_by == "term" and inc.ended_ms is not None \
                and fault.started_ms <= inc.ended_ms:
            if inc.exit_code != 0 or inc.ended_ms - fault.started_ms > GRACEFUL_EXIT_MS:
                found.append(Violation(
                    "liveness", "graceful",
                    f"{fault.target} exited {inc.exit_code} {inc.ended_ms - fault.started_ms} ms "
                    f"after SIGTERM (must be 0 within {GRACEFUL_EXIT_MS} ms)", fault.index))
            break
    return found


def window_end(rec: Recording, fault: Fault) -> int:
    """Until when ``fault`` is judged: it settled, or else the next fault began."""
    later = [f.started_ms for f in rec.faults if f.index > fault.index]
    return fault.settled_ms or (min(later) if later else rec.ended_ms)


def _calm(rec: Recording, fault: Fault) -> list[Violation]:
    until = window_end(rec, fault)
    moved = sorted({(e["at"], e.get("lease"), e["term"]) for e in [*rec.channel, *rec.history]
                    if e.get("type") == "leader_changed" and isinstance(e.get("at"), int)
                    and fault.started_ms <= e["at"] <= until})
    if not moved:
        return []
    at, lease, term = moved[0]
    return [Violation("liveness", "calm",
                      f"clock_jump on {fault.target}: {len(moved)} lease grant(s) while nothing "
                      f"else changed, the first lease {lease} term {term} at {at}", fault.index)]
