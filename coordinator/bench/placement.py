"""Placement on real nodes: N ``LeaseNode``s x M leases in this process, each node on its own
redis-py client to the real Redis, at a short TTL and renew interval. Measured on Redis:

- start: all N started at once; time until every lease is held and every node holds the
  floor or ceiling of its share, and the balance then (most and fewest per node);
- steady: a stretch of rounds with nobody coming or going: moves (expected 0), Redis CPU per
  second (``INFO cpu``) and script time (``INFO commandstats``), and each node's round trips
  per renew interval as its own client counted them (``counted_client.py``), with this
  process's CPU beside them (if it nears a core, Python, not Redis, sets the pace);
- join: one node more; moves, and how many went to it (its share is the least possible);
- leave: that node stops gracefully; time from ``stop()`` until every lease it held is held
  by another node, and moves;
- crash: a node's rounds stop and nothing is released; time until every lease it held is
  held again (bound: TTL + one renew interval), and moves.

A grant is a ``leader_changed`` event (every new tenure announces one; a lease that moved
twice counts twice), counted by one subscriber; a move is a lease whose holder in Redis
differs between the readings before and after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from coordinator.bench.events_log import EventsLog
from coordinator.bench.lease_fleet import Holders, LeaseFleet, balance, changes, read_holders, share_bounds
from coordinator.bench.loop_health import LoopHealth
from coordinator.bench.many_leases import lease_names
from coordinator.bench.redis_info import command_stats, cpu_seconds, script_calls, stats_delta
from coordinator.bench.stats import summary_ms
from coordinator.leases.registry import add_leases

Disturbance = Callable[[LeaseFleet], Awaitable[None]]


class _Phase:
    """Counts the grants and moves of one phase: ``await begin()``, act, ``await end()``."""

    def __init__(self, redis: Any, fleet: LeaseFleet, events: EventsLog, leases: int) -> None:
        self._redis, self._fleet, self._events, self._leases = redis, fleet, events, leases
        self.before = self.after = Holders({}, {})
        self._mark = 0

    async def begin(self) -> None:
        self.before = await read_holders(self._redis, self._fleet.namespace)
        self._mark = await self._events.caught_up()

    async def settle(self, timeout: float, step: float) -> float | None:
        """Seconds until the live nodes are balanced in Redis again (None: not within)."""
        async def balanced() -> bool:
            holders = await read_holders(self._redis, self._fleet.namespace)
            return bool(balance(holders, self._fleet.node_ids, self._leases)["balanced"])
        return await self._fleet.until(balanced, timeout, step)

    async def end(self) -> dict[str, Any]:
        after = await read_holders(self._redis, self._fleet.namespace)
        mark = await self._events.caught_up()
        self.after = after
        per_lease = self._events.by_lease("leader_changed", self._mark, mark)
        gaps, untargeted = _handover_gaps(self._events.events[self._mark:mark])
        return {"grants": sum(per_lease.values()),
                "leases_granted_more_than_once": sum(1 for n in per_lease.values() if n > 1),
                **changes(self.before, after),
                "handover_release_to_grant_ms": summary_ms(gaps),
                "released_without_handover": untargeted,
                "balance": balance(after, self._fleet.node_ids, self._leases)}


def _handover_gaps(events: list[dict[str, Any]]) -> tuple[list[float], int]:
    """Redis ms from each handover's release (``lease_released`` with ``handoff_to``) to the
    next grant of that lease, and how many releases named no one."""
    released: dict[str, int] = {}
    gaps: list[float] = []
    untargeted = 0
    for event in events:
        lease, kind = str(event.get("lease")), event.get("type")
        if kind == "lease_released" and event.get("handoff_to"):
            released[lease] = int(event.get("at", 0))
        elif kind == "lease_released":
            untargeted += 1
        elif kind == "leader_changed" and lease in released:
            gaps.append(float(int(event.get("at", 0)) - released.pop(lease)))
    return gaps, untargeted


async def placement(redis: Any, url: str, namespace: str, *, nodes: int, leases: int,
                    ttl: float, renew: float, steady: float,
                    disturb_steady: Disturbance | None = None,
                    progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run the phases of the module docstring; every figure in one JSON-ready dict.

    ``disturb_steady`` (for tests) runs in the middle of the steady stretch, to show its
    moves are counted."""
    await add_leases(redis, namespace, lease_names(leases))
    fleet = LeaseFleet(url, namespace, ttl=ttl, renew=renew)
    events = EventsLog(redis, namespace)
    await events.start()
    settle = max(30.0, 10 * ttl)  # longest wait for a balance, then the figure says not reached
    step = renew / 5
    out: dict[str, Any] = {
        "method": "real LeaseNode objects in one Python process, each on its own redis-py "
                  "client, against the real Redis",
        "nodes": nodes, "leases": leases, "ttl_s": ttl, "renew_interval_s": renew,
        "steady_s": steady}
    health = LoopHealth()
    health.start()
    try:
        phase = _Phase(redis, fleet, events, leases)
        await phase.begin()
        progress("placement: start")
        began = time.monotonic()
        await fleet.start(nodes)
        started = time.monotonic() - began
        to_balance = await phase.settle(settle, step)
        out["start"] = {"start_calls_s": round(started, 3), **_seconds("balanced_s", to_balance,
                                                                     started),
                        **await phase.end(), **health.take()}
        progress("placement: steady")
        out["steady"] = {**await _steady(redis, fleet, events, leases, steady, renew,
                                         disturb_steady), **health.take()}
        progress("placement: join")
        out["join"] = {**await _join(redis, fleet, events, leases, settle, step),
                       **health.take()}
        progress("placement: leave")
        out["leave"] = {**await _leave(redis, fleet, events, leases, settle, step),
                        **health.take()}
        progress("placement: crash")
        out["crash"] = {**await _crash(redis, fleet, events, leases, ttl, renew, settle, step),
                        **health.take()}
    finally:
        await health.stop()
        await fleet.close()
        await events.close()
    return out


def _seconds(name: str, value: float | None, plus: float = 0.0) -> dict[str, Any]:
    return {name: None if value is None else round(value + plus, 3)}


async def _steady(redis: Any, fleet: LeaseFleet, events: EventsLog, leases: int, seconds: float,
                  renew: float, disturb: Disturbance | None) -> dict[str, Any]:
    phase = _Phase(redis, fleet, events, leases)
    await phase.begin()
    cpu_before, stats_before = await cpu_seconds(redis), await command_stats(redis)
    fleet.reset_counters()
    python_before, began = time.process_time(), time.monotonic()
    if disturb is None:
        await asyncio.sleep(seconds)
    else:
        await asyncio.sleep(seconds / 2)
        await disturb(fleet)
        await asyncio.sleep(seconds / 2)
    wall = time.monotonic() - began
    python = time.process_time() - python_before
    counts = [fleet.counters[node_id] for node_id in fleet.node_ids]
    cpu = await cpu_seconds(redis) - cpu_before
    delta = stats_delta(stats_before, await command_stats(redis))
    scripts = script_calls(delta)
    moves = await phase.end()
    intervals = wall / renew
    per_node = len(counts) * intervals
    kinds: dict[str, int] = {}
    for counter in counts:
        for kind, n in counter.calls.items():
            kinds[kind] = kinds.get(kind, 0) + n
    top = sorted(delta.items(), key=lambda kv: -kv[1].usec)[:6]
    return {
        "window_s": round(wall, 2), "intervals": round(intervals, 1), **moves,
        "redis_cpu_percent": round(100 * cpu / wall, 2),
        "redis_cpu_ms_per_interval": round(1000 * cpu / intervals, 2),
        "script_ms_per_s": round((scripts.usec if scripts else 0) / 1000 / wall, 2),
        "redis_commands_by_usec_per_s": {
            name: {"calls": round(stat.calls / wall), "usec": round(stat.usec / wall)}
            for name, stat in top},
        "round_trips_per_node_per_interval": round(sum(kinds.values()) / per_node, 3),
        "round_trips_by_kind_per_node_per_interval": {
            kind: round(n / per_node, 3) for kind, n in sorted(kinds.items())},
        "pipelined_commands_per_node_per_interval": round(
            sum(c.pipelined_commands for c in counts) / per_node, 1),
        "renew_many_client_ms": summary_ms([ms for c in counts for ms in c.renew_many_ms]),
        "python_cpu_percent": round(100 * python / wall, 1),
    }


async def _join(redis: Any, fleet: LeaseFleet, events: EventsLog, leases: int, settle: float,
                step: float) -> dict[str, Any]:
    phase = _Phase(redis, fleet, events, leases)
    await phase.begin()
    began = time.monotonic()
    (joined,) = await fleet.start(1)
    to_balance = await phase.settle(settle, step)
    took = time.monotonic() - began if to_balance is not None else None
    moves = await phase.end()
    floor, ceiling = share_bounds(leases, len(fleet.nodes))
    node_id = joined.settings.node_id
    to_it = sum(1 for holder in phase.after.holder.values() if holder == node_id)
    return {"node": node_id, **_seconds("balanced_s", took), **moves,
            "moved_to_joiner": to_it, "joiner_share": [floor, ceiling],
            "moves_beyond_its_share": moves["leases_moved"] - to_it}


async def _leave(redis: Any, fleet: LeaseFleet, events: EventsLog, leases: int, settle: float,
                 step: float) -> dict[str, Any]:
    phase = _Phase(redis, fleet, events, leases)
    await phase.begin()
    leaving = fleet.nodes[-1]  # the one that joined
    held, stop_s, rehomed = await fleet.leave(leaving)
    to_balance = await phase.settle(settle, step)
    return {"node": leaving.settings.node_id, "leases_it_held": held,
            "stop_call_ms": round(stop_s * 1000, 1),
            "rehomed_ms": None if rehomed is None else round(max(rehomed, default=0) * 1000, 1),
            "each_lease_rehomed_ms": summary_ms([s * 1000 for s in rehomed or []]),
            **_seconds("balanced_after_rehome_s", to_balance), **await phase.end()}


async def _crash(redis: Any, fleet: LeaseFleet, events: EventsLog, leases: int, ttl: float,
                 renew: float, settle: float, step: float) -> dict[str, Any]:
    phase = _Phase(redis, fleet, events, leases)
    await phase.begin()
    crashed = fleet.nodes[0]
    bound = ttl + renew
    after_crash = fleet.counters[crashed.settings.node_id]
    after_crash.reset()
    gone, each = await fleet.crash(crashed, bound=max(settle, 3 * bound))
    to_balance = await phase.settle(settle, step)
    # a crashed node sends nothing more; what it did send says what kept running in it
    sent_after = dict(after_crash.calls)
    rehomed = None if each is None else max(each, default=0.0)
    return {"node": crashed.settings.node_id, "leases_it_held": len(gone),
            **_seconds("rehomed_s", rehomed), "bound_s": bound,
            "within_bound": rehomed is not None and rehomed <= bound,
            "each_lease_rehomed_ms": summary_ms([s * 1000 for s in each or []]),
            "crashed_node_calls_after_crash": sent_after,
            **_seconds("balanced_after_rehome_s", to_balance), **await phase.end()}
