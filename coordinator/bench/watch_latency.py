"""Tenure change to a subscriber in another process: from the script call to its receipt."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from coordinator.bench.latency import bench_lease
from coordinator.bench.processes import child_env, python_module, read_line
from coordinator.bench.stats import ns_to_ms, summary_ms

SUBSCRIBER_KINDS = ("pubsub", "watcher")


async def watch_latency(redis: Any, url: str, namespace: str, events: int) -> dict[str, Any]:
    """p50/p99 from sending the acquire/release script to the subscriber receiving its event,
    for a bare pub/sub subscriber and for the coordinator's watcher, one after the other.

    Both ends read the system-wide monotonic clock of this host, so no clock is compared
    with Redis's; timing from the send makes each figure an upper bound by the request's trip.
    """
    lease = bench_lease(redis, namespace)
    return {kind: await _one_kind(lease, url, namespace, events, kind)
            for kind in SUBSCRIBER_KINDS}


async def _one_kind(lease: Any, url: str, namespace: str, events: int, kind: str
                    ) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        *python_module("coordinator.bench.subscriber", url, namespace, lease.name, kind),
        stdout=asyncio.subprocess.PIPE, env=child_env(url))
    latencies: list[int] = []
    round_trips: list[int] = []
    missed, term = 0, 0
    try:
        if await read_line(child, 30) != "ready":
            raise RuntimeError(f"the {kind} subscriber did not start")
        for i in range(events):
            sent = time.monotonic_ns()
            if i % 2 == 0:
                term = (await lease.acquire()).term
                want = f"leader_changed {term}"
            else:
                await lease.release()
                want = f"lease_released {term}"
            round_trips.append(time.monotonic_ns() - sent)
            received = await _receipt(child, want)
            if received is None:
                missed += 1
            else:
                latencies.append(received - sent)
            await asyncio.sleep(0.002)  # let both sides go idle, as between real changes
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        await lease.release()
    return {**summary_ms(ns_to_ms(latencies)), "missed": missed,
            "script_round_trip": summary_ms(ns_to_ms(round_trips))}


async def _receipt(child: asyncio.subprocess.Process, want: str) -> int | None:
    """The monotonic ns at which the child printed ``want``, or None after a second."""
    deadline = time.monotonic() + 1.0
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = await read_line(child, left)
        except TimeoutError:
            return None
        kind, term, at = line.rsplit(" ", 2)
        if f"{kind} {term}" == want:
            return int(at)
    return None
