"""Simulated controllers: the real ``Heartbeat`` client, many of them, paced or as fast as asked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Protocol

from coordinator.protocol.membership import Heartbeat

HEARTBEAT_INTERVAL = 1.0  # the "heartbeating once a second"
RETENTION = 600.0  # the daemon's default


class Beating(Protocol):
    """Anything the load loop can send once per turn: a ``Heartbeat``, or a bare call."""

    async def beat(self) -> Any: ...


def node_id(index: int) -> str:
    """The node id of simulated controller ``index``."""
    return f"sim-{index:05d}"


def simulated(redis: Any, namespace: str, indices: range) -> list[Heartbeat]:
    """One ``Heartbeat`` writer per index, as a daemon would build it."""
    return [
        Heartbeat(redis, namespace=namespace, node_id=node_id(i), host=f"host-{i % 500}",
                  role="standby", priority=50, version="bench", instance_id=f"bench-{i}",
                  interval=HEARTBEAT_INTERVAL, retention=RETENTION)
        for i in indices
    ]


async def beat_all(beats: Sequence[Beating], *, concurrency: int, rate: float | None = None,
                   seconds: float | None = None) -> int:
    """Beat each writer in turn from ``concurrency`` tasks; returns how many beats were sent.

    With ``rate`` (beats/s over all tasks) and ``seconds``, keep going round the list at that
    pace until the time is up; otherwise beat each writer once, as fast as Redis answers.
    """
    sent = 0
    start = time.monotonic()

    async def worker(k: int) -> None:
        nonlocal sent
        mine = beats[k::concurrency]
        if not mine:
            return
        if rate is None or seconds is None:
            for beat in mine:
                await beat.beat()
                sent += 1
            return
        period = concurrency / rate  # each task's share of the pace
        n = 0
        while (due := start + n * period) < start + seconds:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await mine[n % len(mine)].beat()
            sent += 1
            n += 1

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return sent
