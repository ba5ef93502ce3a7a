"""One bench run: the selected parts in order, in a namespace of its own, cleaned up after."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from coordinator.bench.failover import failover
from coordinator.bench.idle import IdleDaemons
from coordinator.bench.latency import lease_latency, renew_cost
from coordinator.bench.machine import load_average, machine_info
from coordinator.bench.many_leases import many_leases
from coordinator.bench.namespace import BenchNamespace, delete_all, scan_keys
from coordinator.bench.options import BenchOptions
from coordinator.bench.placement import placement
from coordinator.bench.scale import heartbeat_cost, register, status_time, sustained_load
from coordinator.bench.watch_latency import watch_latency


async def run_bench(url: str, options: BenchOptions,
                    progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run the selected parts against ``url`` and return every figure as one JSON-ready dict.

    Whatever happens, every key under the bench's prefix is deleted at the end and the
    result says how many were left (0, checked with SCAN).
    """
    namespace = BenchNamespace()
    started = time.monotonic()
    # one connection for everything timed, so pairs compare like with like
    timed: Any = aioredis.Redis.from_url(url, single_connection_client=True)
    pooled: Any = aioredis.Redis.from_url(url, max_connections=32)
    workdir = Path(tempfile.mkdtemp(prefix="coordinator-bench-"))
    results: dict[str, Any] = {"namespace": namespace.root, "parts": list(options.parts),
                               "machine": await machine_info(timed)}
    idle: IdleDaemons | None = None
    try:
        if options.runs("idle"):
            progress("idle: starting a leader and a standby at default settings")
            idle = IdleDaemons(url, namespace.part("idle"), workdir, options.idle_seconds)
            await idle.open_window()
        await _lease_parts(timed, namespace, options, results, progress)
        await _scale_parts(timed, pooled, url, namespace, options, results, progress)
        if options.runs("many"):
            progress(f"many: {options.many_nodes} nodes x {options.many_leases} leases, one "
                     "renew_many per node per interval, against single-lease daemons")
            results["many_leases"] = await many_leases(
                pooled, namespace.part("many"), options.many_nodes, options.many_leases,
                options.many_rounds)
        if options.runs("placement"):
            progress(f"placement: {options.placement_nodes} real nodes x "
                     f"{options.placement_leases} leases in this process: start, steady, "
                     "join, leave, crash")
            results["placement"] = await placement(
                pooled, url, namespace.part("placement"), nodes=options.placement_nodes,
                leases=options.placement_leases, ttl=options.placement_ttl,
                renew=options.placement_renew, steady=options.placement_steady,
                progress=progress)
        if options.runs("watch"):
            progress("watch: tenure changes to subscribers in other processes")
            results["watch"] = await watch_latency(timed, url, namespace.part("watch"),
                                                   options.watch_events)
        if idle is not None:
            progress("idle: closing the window")
            results["idle"] = await idle.finish()
            idle = None
        if options.runs("failover"):
            progress("failover: real daemons, graceful handovers and kill -9")
            results["failover"] = await failover(
                pooled, url, namespace.part("failover"), workdir,
                handovers=options.handovers, crashes=options.crashes)
        if options.runs("peers"):
            from coordinator.bench.peers.run import run_peers

            results["peers"] = await run_peers(pooled, url, namespace, options, progress)
    finally:
        if idle is not None:
            idle.close()
        results["cleanup"] = await _clean_up(pooled, namespace)
        for client in (timed, pooled):
            with contextlib.suppress(Exception):
                await client.aclose()
        shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["load_average_at_end"] = load_average()
    results["duration_s"] = round(time.monotonic() - started, 1)
    return results


async def _lease_parts(redis: Any, namespace: BenchNamespace, options: BenchOptions,
                       results: dict[str, Any], progress: Callable[[str], None]) -> None:
    if options.runs("latency"):
        progress("latency: renew, acquire and release against a bare EVALSHA")
        results["latency"] = await lease_latency(redis, namespace.part("lease"), options.pairs)
    if options.runs("cpu"):
        progress("cpu: Redis CPU per renew (INFO commandstats)")
        results["redis_cpu"] = await renew_cost(redis, namespace, options.cpu_calls)


async def _scale_parts(timed: Any, pooled: Any, url: str, namespace: BenchNamespace,
                       options: BenchOptions, results: dict[str, Any],
                       progress: Callable[[str], None]) -> None:
    if not (options.runs("cpu") or options.runs("scale")):
        return
    part = namespace.part("scale")
    progress(f"scale: registering {options.controllers} simulated controllers")
    await register(pooled, part, options.controllers)
    if options.runs("cpu"):
        progress("cpu: Redis CPU per heartbeat")
        results.setdefault("redis_cpu", {})["heartbeat"] = await heartbeat_cost(
            timed, part, options.controllers, options.cpu_calls)
    if options.runs("scale"):
        progress(f"scale: {options.controllers} controllers heartbeating once a second")
        load = await sustained_load(timed, url, part, options.controllers, options.scale_seconds)
        progress("scale: status with every controller registered")
        status = await status_time(timed, url, part, options.controllers, options.status_runs)
        results["scale"] = {"load": load, "status": status}


async def _clean_up(redis: Any, namespace: BenchNamespace) -> dict[str, Any]:
    deleted = await delete_all(redis, namespace.key_pattern)
    left = await scan_keys(redis, namespace.key_pattern)
    return {"pattern": namespace.key_pattern, "keys_deleted": deleted, "keys_left": len(left)}
