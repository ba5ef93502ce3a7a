"""Many leases: N nodes x M leases renewed by one ``renew_many`` call per node per renew
interval (the heartbeat riding along), beside M independent single-lease daemons (a renew and
a heartbeat each per interval).

A faithful simulation of their Redis traffic, not real daemons: the daemon does not hold many
leases yet. Each simulated node or daemon sends exactly the scripts, keys and arguments the
product's clients send (``ManyLeaseRenewer``, ``Lease``, ``Heartbeat``), from this process,
CONCURRENCY calls in flight. One round is one renew interval's traffic sent back to back; Redis
CPU (``INFO cpu``, the whole process: network included) and script time (``INFO
commandstats``) per round, divided by the interval, give the cost per second at that cadence.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from coordinator.bench.redis_info import command_stats, cpu_seconds, script_calls, stats_delta
from coordinator.leases.renew import ManyLeaseRenewer
from coordinator.protocol.lease import Lease
from coordinator.protocol.membership import Heartbeat

CONCURRENCY = 16
TTL = 30.0  # the daemon's default lease TTL: nothing lapses during a run
RENEW_INTERVALS = (5.0, 1.0)  # the daemon's default renew interval, and a fast one
BIG_CALL_REPEATS = 5


def lease_names(count: int) -> list[str]:
    """The simulated leases, ``lease-0000`` ..."""
    return [f"lease-{i:04d}" for i in range(count)]


def _heartbeat(redis: Any, namespace: str, node: str, instance: str) -> Heartbeat:
    return Heartbeat(redis, namespace=namespace, node_id=node, host=f"host-{node}",
                     role="standby", priority=50, version="bench", instance_id=instance,
                     interval=RENEW_INTERVALS[0], retention=600.0)


async def _in_flight(calls: Sequence[Callable[[], Awaitable[Any]]]) -> None:
    """Run every call once, ``CONCURRENCY`` at a time."""
    queue = iter(calls)

    async def worker() -> None:
        for call in queue:
            await call()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def _acquire_all(leases: Sequence[Lease]) -> None:
    async def one(lease: Lease) -> None:
        if not (await lease.acquire()).is_leader:
            raise RuntimeError(f"bench lease {lease.name} is held by someone else")
    await _in_flight([partial(one, lease) for lease in leases])


async def _priced(redis: Any, rounds: int, round_calls: Sequence[Callable[[], Awaitable[Any]]],
                  leases: int) -> dict[str, Any]:
    """Send ``rounds`` rounds of ``round_calls``; Redis's CPU and script time per round."""
    await _in_flight(round_calls)  # warm: connections, script cache
    cpu_before, stats_before = await cpu_seconds(redis), await command_stats(redis)
    started = time.monotonic()
    for _ in range(rounds):
        await _in_flight(round_calls)
    wall = (time.monotonic() - started) / rounds
    cpu = (await cpu_seconds(redis) - cpu_before) / rounds
    scripts = script_calls(stats_delta(stats_before, await command_stats(redis)))
    script_usec = scripts.usec / rounds if scripts else 0.0
    calls = scripts.calls / rounds if scripts else 0.0
    return {
        "calls_per_round": round(calls, 1),
        "redis_cpu_ms_per_round": round(cpu * 1000, 2),
        "script_ms_per_round": round(script_usec / 1000, 2),
        "redis_cpu_usec_per_lease": round(cpu * 1e6 / leases, 2),
        "script_usec_per_lease": round(script_usec / leases, 2),
        "redis_cpu_percent_at_renew_interval": {
            f"{interval:g}s": round(100 * cpu / interval, 2) for interval in RENEW_INTERVALS},
        "wall_ms_per_round": round(wall * 1000, 1),
    }


async def many_leases(redis: Any, namespace: str, nodes: int, leases: int,
                      rounds: int) -> dict[str, Any]:
    """Price one renew interval of ``nodes`` x ``leases`` both ways (see the module docstring)."""
    names = lease_names(leases)
    many_ns, single_ns, big_ns = f"{namespace}-many", f"{namespace}-single", f"{namespace}-big"

    # many-lease nodes: lease i is node i % nodes's, each node renews its share in one call
    node_ids = [f"node-{k:03d}" for k in range(nodes)]
    shares = [names[k::nodes] for k in range(nodes)]
    await _acquire_all([Lease(redis, holder_id=node_ids[i % nodes], instance_id=f"inst-{i % nodes}",
                              ttl=TTL, name=name, namespace=many_ns, holder_host="bench",
                              history_maxlen=10)
                        for i, name in enumerate(names)])
    renewers = [ManyLeaseRenewer(redis, namespace=many_ns, holder_id=node, instance_id=f"inst-{k}",
                                 ttl=TTL, heartbeat=_heartbeat(redis, many_ns, node, f"inst-{k}"))
                for k, node in enumerate(node_ids)]

    async def check_renewed(renewer: ManyLeaseRenewer, share: list[str]) -> None:
        result = await renewer.renew(share, beat=True)
        if any(r.outcome != "renewed" for r in result.renewals):
            raise RuntimeError("a simulated node lost a lease during the bench")

    await _in_flight([partial(check_renewed, r, s) for r, s in zip(renewers, shares, strict=True)])
    many_calls = [partial(r.renew, s, beat=True) for r, s in zip(renewers, shares, strict=True)]
    many = await _priced(redis, rounds, many_calls, leases)

    # the baseline: one single-lease daemon per lease, a renew and a heartbeat per interval
    daemons = [Lease(redis, holder_id=f"daemon-{i:04d}", instance_id=f"inst-{i}", ttl=TTL,
                     name=name, namespace=single_ns, holder_host="bench", history_maxlen=10)
               for i, name in enumerate(names)]
    await _acquire_all(daemons)
    beats = [_heartbeat(redis, single_ns, d.holder_id, d.instance_id) for d in daemons]
    single_calls: list[Callable[[], Awaitable[Any]]] = []
    for daemon, beat in zip(daemons, beats, strict=True):
        single_calls += [daemon.acquire, beat.beat]
    single = await _priced(redis, rounds, single_calls, leases)

    big = await _one_call_of_all(redis, big_ns, names)
    return {
        "simulation": "faithful simulation of the daemons' Redis traffic from one process "
                      "(the product's own clients and scripts), not real daemons",
        "nodes": nodes, "leases": leases, "leases_per_node": round(leases / nodes, 1),
        "rounds": rounds, "concurrency": CONCURRENCY,
        "renew_many": {**many, "round_trips_per_node_per_interval": round(
            many["calls_per_round"] / nodes, 2)},
        "single_lease_daemons": {**single, "daemons": leases,
                                 "round_trips_per_daemon_per_interval": round(
                                     single["calls_per_round"] / leases, 2)},
        "cpu_ratio_renew_many_to_single": _ratio(many["redis_cpu_ms_per_round"],
                                                 single["redis_cpu_ms_per_round"]),
        "one_call_of_all_leases": big,
    }


async def _one_call_of_all(redis: Any, namespace: str, names: list[str]) -> dict[str, Any]:
    """One node renewing every lease in one call: that call's script time (the design's open
    question of a per-call cap), median of a few."""
    await _acquire_all([Lease(redis, holder_id="node-big", instance_id="inst-big", ttl=TTL,
                              name=name, namespace=namespace, holder_host="bench",
                              history_maxlen=10) for name in names])
    renewer = ManyLeaseRenewer(redis, namespace=namespace, holder_id="node-big",
                               instance_id="inst-big", ttl=TTL)
    await renewer.renew(names)
    usec = []
    for _ in range(BIG_CALL_REPEATS):
        before = await command_stats(redis)
        result = await renewer.renew(names)
        delta = script_calls(stats_delta(before, await command_stats(redis)))
        if delta is not None:
            usec.append(delta.usec / delta.calls)
        if any(r.outcome != "renewed" for r in result.renewals):
            raise RuntimeError("the big node lost a lease during the bench")
    median = statistics.median(usec) if usec else None
    return {"leases": len(names),
            "script_ms": round(median / 1000, 2) if median is not None else None,
            "script_usec_per_lease": round(median / len(names), 2) if median else None}


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if a and b else None
