"""``docs/reliability.md``: one row per fault, from the recordings and the checker's verdicts."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from tests.chaos.checker import (
    FAILOVER_KINDS,
    FROZEN_CHILD_END_MS,
    GRACEFUL_GAP_MS,
    Verdict,
    median,
    restart_empty_bound_ms,
)
from tests.chaos.faults import DESCRIPTIONS
from tests.chaos.recording import ALL_KINDS, REDIS_ONLY, REMOVES_LEADER, Recording
from tests.chaos.setups import setup_of

Result = tuple[Recording, Verdict]


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1000:.3f} s"


def _bound(kind: str, ttl: float, renew: float) -> str:
    if kind == "process_crash":
        return (f"≤ renew = {renew:g} s (the guardian releases the moment the daemon dies; "
                f"TTL + renew = {ttl + renew:g} s would mean it did not)")
    if kind in REMOVES_LEADER or kind == "kill_all_but_one":
        extra = " (if the leader was killed)" if kind == "kill_all_but_one" else ""
        return f"≤ TTL + renew = {ttl + renew:g} s, never > {ttl + renew + 1:g} s{extra}"
    if kind == "graceful_stop":
        return "≤ 100 ms from the release (Redis clock); exit 0 within 1 s"
    if kind == "redis_restart_empty":
        return (f"a grant or renewal ≤ renew = {renew:g} s after Redis answers again; "
                f"children overlap ≤ renew + child stop = "
                f"{restart_empty_bound_ms(renew) / 1000:g} s (Redis forgot the lease)")
    if kind in REDIS_ONLY:
        return f"a grant or renewal ≤ renew = {renew:g} s after Redis answers again"
    if kind in FAILOVER_KINDS:
        return (f"a grant or renewal ≤ TTL + renew = {ttl + renew:g} s after the clock steps back "
                f"or the replica is promoted, never > {ttl + renew + 1:g} s")
    return "the leader does not change"


def _group_title(r: Recording) -> str:
    s = r.settings
    known = setup_of(s.setup, s.min_replicas_ack, s.redis_faketime, bool(s.leases))
    if known is not None:
        return f"`{known.name}`: {known.title}"
    return f"`{s.setup}`, `COORDINATOR_MIN_REPLICAS_ACK={s.min_replicas_ack}`"


def _rows(results: Sequence[Result]) -> list[str]:
    s = results[0][0].settings
    planned = {k for r, _ in results for k in r.settings.kinds}
    lines = [
        "| fault | what is done | runs | injected | safety violations | liveness violations "
        "| lost | duplicate terms | stale fenced writes accepted | longest overlap of two "
        "children | worst time to a leader | median | bound |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in ALL_KINDS:
        injected = sum(1 for r, _ in results for f in r.faults if f.kind == kind)
        if kind not in planned and not injected:
            continue
        in_runs = [(r, v) for r, v in results if any(f.kind == kind for f in r.faults)]
        counts = [sum(v.count(cat, kind, r.faults) for r, v in results)
                  for cat in ("safety", "liveness", "lost")]
        dup = sum(v.count_check("duplicate_term", kind, r.faults) for r, v in results)
        stale = sum(v.stale_logged(kind, r.faults) for r, v in results)
        overlap = max((v.longest_overlap(kind, r.faults) for r, v in results), default=0)
        times = [m.to_leader_ms for _, v in results for m in v.measures
                 if m.kind == kind and m.to_leader_ms is not None]
        bound = _bound(kind, s.lease_ttl, s.renew_interval)
        if kind == "freeze_leader_host":
            ran = [ms for r, v in results for i, ms in v.resumed_child_ms.items()]
            bound += (f"; the frozen child ends ≤ {FROZEN_CHILD_END_MS / 1000:g} s after SIGCONT "
                      f"(worst measured: {_ms(max(ran) if ran else None)}), no fenced write of "
                      "its term accepted")
        lines.append(
            f"| `{kind}` | {DESCRIPTIONS[kind]} | {len(in_runs)} | {injected} | {counts[0]} | "
            f"{counts[1]} | {counts[2]} | {dup} | {stale} | {_ms(overlap) if overlap else '0'} | "
            f"{_ms(max(times) if times else None)} | {_ms(median(times))} | {bound} |")
    return lines


def _lease_bound(kind: str, ttl: float, renew: float) -> str:
    if kind == "graceful_stop":
        return (f"every lease held again ≤ TTL + renew = {ttl + renew:g} s; each of the stopped "
                "node's leases granted ≤ 100 ms after its release; exit 0 within 1 s")
    if kind == "clock_jump":
        return f"no lease moves; every lease renewed ≤ TTL + renew = {ttl + renew:g} s"
    extra = (f"; holders of a lease overlap ≤ renew + {restart_empty_bound_ms(renew) - renew * 1000:g}"
             f" ms = {restart_empty_bound_ms(renew) / 1000:g} s (Redis forgot the leases)"
             if kind == "redis_restart_empty" else "")
    if kind in REDIS_ONLY:
        return (f"every lease granted or renewed ≤ TTL + renew = {ttl + renew:g} s after Redis "
                f"answers again, never > {ttl + renew + 1:g} s{extra}")
    return (f"every lease of the node(s) hit granted again (a new term), every other renewed, "
            f"≤ TTL + renew = {ttl + renew:g} s after the fault, never > {ttl + renew + 1:g} s")


def _lease_rows(results: Sequence[Result]) -> list[str]:
    """Many leases: one row per fault kind, every check per lease."""
    s = results[0][0].settings
    planned = {k for r, _ in results for k in r.settings.kinds}
    lines = [
        "| fault | what is done | runs | injected | safety violations | liveness violations "
        "| lost | duplicate terms | stale fenced writes accepted | longest overlap of two "
        "holders of one lease | worst time until every lease is held again (re-home) | median "
        "| bound |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in ALL_KINDS:
        injected = sum(1 for r, _ in results for f in r.faults if f.kind == kind)
        if kind not in planned and not injected:
            continue
        in_runs = [r for r, _ in results if any(f.kind == kind for f in r.faults)]
        counts = [sum(v.count(cat, kind, r.faults) for r, v in results)
                  for cat in ("safety", "liveness", "lost")]
        dup = sum(v.count_check("duplicate_term", kind, r.faults) for r, v in results)
        stale = sum(v.stale_logged(kind, r.faults) for r, v in results)
        kinds_of = [({f.index: f.kind for f in r.faults}, v) for r, v in results]
        overlap = max((o.ms for k, v in kinds_of for o in v.overlaps if not o.frozen
                       and k.get(o.fault if o.fault is not None else -1) == kind), default=0)
        times = [m.to_leader_ms for _, v in results for m in v.measures
                 if m.kind == kind and m.to_leader_ms is not None]
        bound = _lease_bound(kind, s.lease_ttl, s.renew_interval)
        resumed = [ms for k, v in kinds_of for i, ms in v.resumed_holder_ms.items()
                   if k.get(i) == kind]
        if resumed or kind == "pause_leader":
            bound += (f"; a SIGSTOPped holder's tenure of a lease re-homed meanwhile ends ≤ 1 s "
                      f"after SIGCONT (worst measured: {_ms(max(resumed) if resumed else None)})")
        lines.append(
            f"| `{kind}` | {DESCRIPTIONS[kind]} | {len(in_runs)} | {injected} | {counts[0]} | "
            f"{counts[1]} | {counts[2]} | {dup} | {stale} | {_ms(overlap) if overlap else '0'} | "
            f"{_ms(max(times) if times else None)} | {_ms(median(times))} | {bound} |")
    gaps = [ms for _, v in results for _, ms in v.handovers if ms is not None]
    unanswered = sum(1 for _, v in results for _, ms in v.handovers if ms is None)
    late = sum(1 for ms in gaps if ms > GRACEFUL_GAP_MS)
    leases = len(s.leases)
    lines += [
        "",
        f"{s.daemons} `coordinator run` daemons (no leader-only child: a node of many leases "
        f"runs one per held lease, {leases} children and their watchdogs would be too many "
        f"processes here; no guardian either, a node of many leases has none), {leases} leases; "
        "\"the leader\" a fault hits is the node holding the most leases. Handovers (a release "
        f"reserved for a node: a stop, or a rebalance after a node came back): "
        f"{len(gaps) + unanswered}, release to the lease's next grant "
        f"median {_ms(median(gaps))}, worst {_ms(max(gaps) if gaps else None)}; {late} took "
        f"more than {GRACEFUL_GAP_MS} ms, {unanswered} were followed by no grant of a newer "
        "term. Overlap: two processes in the leader state of one lease at once (each lease's "
        "`state.changed` lines, every process's clock put back after a `clock_jump`); a process "
        "SIGSTOPped when it began may end it ≤ 1 s after SIGCONT (it can schedule nothing while "
        "stopped, and its gate reads the monotonic deadline first). Re-home: the worst lease's "
        "time to a new term (a lease the fault's node held) or a grant or renewal (any other). "
        "Checks: `tests/chaos/lease_checks.py`.",
    ]
    return lines


def render(results: Sequence[Result], command: str) -> str:
    """The whole report as Markdown: one table per setup."""
    first = results[0][0]
    s = first.settings
    total_s = sum((r.ended_ms - r.started_ms) / 1000 for r, _ in results)
    faults = sum(len(r.faults) for r, _ in results)
    lines = [
        "# Reliability under faults",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()}: "
        f"{len(results)} run(s), seeds {', '.join(str(r.seed) for r, _ in results)}, "
        f"{total_s / 60:.1f} minutes, {faults} faults. Do not edit by hand: rerun the command.",
        "",
        f"Settings: {s.daemons} `coordinator run -- python -m tests.chaos.child` daemons on "
        f"loopback; `COORDINATOR_LEASE_TTL={s.lease_ttl:g}`, `COORDINATOR_RENEW_INTERVAL="
        f"{s.renew_interval:g}`, `COORDINATOR_HEARTBEAT_INTERVAL={s.heartbeat_interval:g}`, "
        f"`COORDINATOR_RENEW_FAILURE_THRESHOLD={s.renew_failure_threshold}`, "
        "`COORDINATOR_FENCE_PROBE_KEY=probe`, `COORDINATOR_CHILD_PASS_REDIS_URL=true` (the "
        "child ticks every 20 ms and does a fenced write of its term every 200 ms); Redis with "
        "`--appendonly yes --appendfsync always`; daemons' wall clocks "
        f"{'faked per daemon with libfaketime' if s.faketime else 'not faked (no libfaketime)'}.",
    ]
    groups: dict[str, list[Result]] = {}
    for r, v in results:
        groups.setdefault(_group_title(r), []).append((r, v))
    for title, group in groups.items():
        versions = sorted({r.settings.redis for r, _ in group if r.settings.redis})
        lines += ["", f"## {title}", "",
                  f"redis-server {', '.join(versions) or '?'}; "
                  + ("daemons behind a TCP proxy each."
                     if group[0][0].settings.setup == "single"
                     else "the daemons, the children and `coordinator watch` follow the master "
                          "through Sentinel (`COORDINATOR_REDIS_SENTINELS`)."), ""]
        lines += _lease_rows(group) if group[0][0].settings.leases else _rows(group)
    whole = [x for _, v in results for x in v.violations if x.fault is None]
    writes = [w for r, _ in results for w in r.writes]
    probe = [w for w in writes if w.source == "probe"]
    child = [w for w in writes if w.source == "child"]
    lines += [
        "",
        f"Fenced writes logged: {len(probe)} by the probes ({sum(w.accepted for w in probe)} "
        f"accepted), {len(child)} by the children ({sum(w.accepted for w in child)} accepted); "
        f"violations not tied to one fault: {len(whole)}; the watcher's final picture "
        f"{'matched' if not any(x.check == 'watcher' for x in whole) else 'did NOT match'} Redis.",
        "",
        "Times to a leader: for a fault that removes the leader, from the fault to the next "
        "`leader_changed` (Redis's clock); for a graceful stop, from `lease_released` to the next "
        "`leader_changed`; for a Redis fault, from Redis answering again to the first grant or "
        "renewal it stamped (0 when one landed before the harness's own PING got through); for a "
        "clock step or a failover, from the clock stepping back or the replica's promotion. "
        "Duplicate terms: a term seen with two holders or instance ids (the lease read from every "
        "master, `leader_changed` on the channel and in every server's history). Stale fenced "
        "writes: accepted after a higher term was granted. Overlap: two nodes' leader-only "
        "children ticking at the same time (real wall clock), the concrete form of two nodes "
        "allowed to schedule at once. What each check means: `tests/chaos/checker.py`.",
    ]
    notes = sorted({n for r, _ in results for n in r.notes})
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    bad = [(r.seed, x) for r, v in results for x in v.violations]
    if bad:
        lines += ["", "## Violations", ""]
        lines += [f"- seed {seed}: {x}" for seed, x in bad[:200]]
        if len(bad) > 200:
            lines.append(f"- … and {len(bad) - 200} more")
    return "\n".join(lines) + "\n"
