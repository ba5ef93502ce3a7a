"""Lease round trips against a bare ``EVALSHA`` of ``return 1``, pair by pair on one connection."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from coordinator.bench.namespace import BenchNamespace
from coordinator.bench.redis_info import command_stats, script_calls, stats_delta
from coordinator.bench.stats import ns_to_ms, percentile, ratio, summary_ms
from coordinator.protocol.lease import Lease

BARE_SCRIPT = "return 1"
# the "lease-like script", priced beside ours so machines can be compared
REFERENCE_SCRIPT = """
local t = redis.call('TIME')
redis.call('HGET', KEYS[1], 'holder_id')
redis.call('HSET', KEYS[1], 'holder_id', ARGV[1], 'expires', t[1], 'renewed', t[2], 'host', ARGV[2])
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[1], 30000)
return {1, t[1]}
"""
HOLDER = "bench-holder"
WINDOWS = 5  # INFO commandstats windows per figure


async def _timed(call: Callable[[], Awaitable[Any]]) -> int:
    start = time.perf_counter_ns()
    await call()
    return time.perf_counter_ns() - start


def bench_lease(redis: Any, namespace: str, ttl: float = 30.0) -> Lease:
    """The lease the bench acquires, renews and releases (long TTL: it never lapses mid-run)."""
    return Lease(redis, holder_id=HOLDER, ttl=ttl, name="bench", namespace=namespace,
                 holder_host="bench", history_maxlen=1000)


async def lease_latency(redis: Any, namespace: str, pairs: int) -> dict[str, Any]:
    """Renew, acquire and release latency, each paired with a bare EVALSHA sent next to it.

    The order inside a pair alternates, so neither side always gets the warmer connection.
    """
    bare_script = redis.register_script(BARE_SCRIPT)
    lease = bench_lease(redis, namespace)

    async def bare() -> Any:
        return await bare_script()

    for _ in range(50):  # warm up: script cache, connection, allocator
        await bare()
        await lease.acquire()
    renew_ns, bare_renew_ns = [], []
    for i in range(pairs):
        if i % 2:
            bare_renew_ns.append(await _timed(bare))
            renew_ns.append(await _timed(lease.acquire))
        else:
            renew_ns.append(await _timed(lease.acquire))
            bare_renew_ns.append(await _timed(bare))
    await lease.release()

    acquire_ns, release_ns, bare_acquire_ns = [], [], []
    for _ in range(max(1, pairs // 4)):
        bare_acquire_ns.append(await _timed(bare))
        acquire_ns.append(await _timed(lease.acquire))
        release_ns.append(await _timed(lease.release))

    renew, bare_renew = summary_ms(ns_to_ms(renew_ns)), summary_ms(ns_to_ms(bare_renew_ns))
    acquire, bare_acq = summary_ms(ns_to_ms(acquire_ns)), summary_ms(ns_to_ms(bare_acquire_ns))
    release = summary_ms(ns_to_ms(release_ns))
    return {
        "renew": renew,
        "bare_evalsha": bare_renew,
        "renew_to_bare_p50_ratio": ratio(renew["p50_ms"], bare_renew["p50_ms"]),
        "acquire": acquire,
        "bare_evalsha_beside_acquire": bare_acq,
        "acquire_to_bare_p50_ratio": ratio(acquire["p50_ms"], bare_acq["p50_ms"]),
        "release": release,
        "release_to_bare_p50_ratio": ratio(release["p50_ms"], bare_acq["p50_ms"]),
        "round_trips": {"acquire": 1, "renew": 1, "release": 1},
    }


async def evalsha_cost(redis: Any, calls: int, call: Callable[[], Awaitable[Any]],
                       windows: int = WINDOWS) -> dict[str, Any]:
    """Redis CPU per ``call`` (one EVALSHA each) from the ``INFO commandstats`` growth.

    Redis times a command on the wall clock, so a Redis process that loses its core to
    another mid-script inflates the figure: the calls are split into ``windows`` and the
    median window is reported (with the lowest). Other clients' EVALSHAs in a window show up
    as ``foreign_calls`` and are mixed in.
    """
    per_window, foreign = [], 0
    size = max(1, calls // windows)
    for _ in range(max(1, windows)):
        before = await command_stats(redis)
        for _ in range(size):
            await call()
        delta = script_calls(stats_delta(before, await command_stats(redis)))
        if delta is not None:
            per_window.append(delta.usec / delta.calls)
            foreign += delta.calls - size
    if not per_window:
        return {"usec_per_call": None, "min_usec_per_call": None, "calls": 0, "foreign_calls": 0}
    return {"usec_per_call": round(percentile(per_window, 50), 3),
            "min_usec_per_call": round(min(per_window), 3),
            "calls": size * len(per_window), "windows": len(per_window),
            "foreign_calls": foreign}


async def renew_cost(redis: Any, namespace: BenchNamespace, calls: int) -> dict[str, Any]:
    """Redis CPU per renew, per bare EVALSHA and per reference lease-like script."""
    part = namespace.part("lease")
    bare_script = redis.register_script(BARE_SCRIPT)
    reference_script = redis.register_script(REFERENCE_SCRIPT)
    reference_keys = [namespace.key("lease", "reference"), namespace.key("lease", "counter")]
    lease = bench_lease(redis, part)
    await lease.acquire()

    async def bare() -> Any:
        return await bare_script()

    async def reference() -> Any:
        return await reference_script(keys=reference_keys, args=["bench-holder", "bench"])

    try:
        return {"renew": await evalsha_cost(redis, calls, lease.acquire),
                "bare_evalsha": await evalsha_cost(redis, calls, bare),
                "reference_lease_like": await evalsha_cost(redis, calls, reference)}
    finally:
        await lease.release()
