"""Failover between real daemons: graceful (SIGTERM) handovers and kill -9, on Redis's clock."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coordinator import keys
from coordinator.bench.daemons import DaemonProcess, wait_started
from coordinator.bench.events_log import Event, EventsLog
from coordinator.bench.options import FAILOVER_RENEW, FAILOVER_TTL
from coordinator.bench.redis_info import clock_offset_ms
from coordinator.bench.stats import summary_ms

FLEET = 5  # running daemons; a stopped one is replaced so handovers keep their competition
READY_STANDBYS = 2  # started standbys a handover waits for
LEASE = "global"


def released_by(node_id: str) -> Callable[[Event], bool]:
    """Matches the lease_released event of ``node_id``."""
    return lambda e: e.get("type") == "lease_released" and e.get("holder_id") == node_id


def leader_after_term(term: int) -> Callable[[Event], bool]:
    """Matches a leader_changed event with a term above ``term``."""
    return lambda e: e.get("type") == "leader_changed" and int(e.get("term", 0)) > term


def leader_after(node_id: str) -> Callable[[Event], bool]:
    """Matches the leader_changed event that took over from ``node_id``."""
    return lambda e: e.get("type") == "leader_changed" and e.get("previous_holder_id") == node_id


class Fleet:
    """The daemons of the failover part; replaces the ones it stops."""

    def __init__(self, redis: Any, url: str, namespace: str, workdir: Path) -> None:
        self._redis, self._url, self._namespace, self._workdir = redis, url, namespace, workdir
        self._ids = itertools.count(1)
        self.daemons: list[DaemonProcess] = []
        self.lease_key = keys.lease_key(namespace, LEASE)

    def spawn(self) -> None:
        """Start one more daemon at the failover settings."""
        self.daemons.append(DaemonProcess(
            self._url, self._namespace, f"node-{next(self._ids)}", self._workdir,
            lease_ttl=str(FAILOVER_TTL), renew_interval=str(FAILOVER_RENEW),
            heartbeat_interval=str(FAILOVER_RENEW)))

    async def leader(self, timeout: float = 30.0) -> DaemonProcess:
        """The running daemon holding the lease, once there is one and enough standbys."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            holder = await self._redis.hget(self.lease_key, "holder_id")
            holder = holder.decode() if isinstance(holder, bytes) else holder
            leader = next((d for d in self.daemons if d.node_id == holder and d.alive()), None)
            ready = [d for d in self.daemons
                     if d is not leader and d.alive() and d.logged("daemon.started")]
            if leader is not None and len(ready) >= READY_STANDBYS:
                return leader
            await asyncio.sleep(0.02)
        raise TimeoutError("no leader with enough started standbys")

    async def replace(self, daemon: DaemonProcess) -> None:
        """Start a replacement, then reap ``daemon`` without blocking the event loop."""
        self.daemons.remove(daemon)
        self.spawn()
        await asyncio.to_thread(daemon.reap)

    def close(self) -> None:
        """Kill and reap every daemon."""
        for daemon in self.daemons:
            daemon.reap()


async def failover(redis: Any, url: str, namespace: str, workdir: Path, *, handovers: int,
                   crashes: int) -> dict[str, Any]:
    """Graceful handover gaps and kill -9 failover times, in Redis-clock ms."""
    events = EventsLog(redis, namespace)
    await events.start()
    fleet = Fleet(redis, url, namespace, workdir)
    try:
        for _ in range(FLEET):
            fleet.spawn()
        await wait_started(fleet.daemons)
        graceful = await _graceful(fleet, events, handovers)
        crash = await _crashes(redis, fleet, events, crashes)
    finally:
        await asyncio.to_thread(fleet.close)
        await events.close()
    return {"settings": {"lease_ttl_s": FAILOVER_TTL, "renew_interval_s": FAILOVER_RENEW,
                         "daemons": FLEET},
            "graceful": graceful, **crash}


async def _graceful(fleet: Fleet, events: EventsLog, handovers: int) -> dict[str, Any]:
    """SIGTERM the leader; the gap is lease_released -> the next leader_changed."""
    gaps, missed = [], 0
    for _ in range(handovers):
        leader = await fleet.leader()
        mark = len(events.events)
        leader.terminate()
        released = await events.wait_for(released_by(leader.node_id), 5, mark)
        taken = None if released is None else await events.wait_for(
            leader_after_term(released["term"]), 5, mark)
        if released is None or taken is None:
            missed += 1
        else:
            gaps.append(float(taken["at"] - released["at"]))
        await fleet.replace(leader)
    return {**summary_ms(gaps), "missed": missed}


async def _crashes(redis: Any, fleet: Fleet, events: EventsLog, crashes: int) -> dict[str, Any]:
    """kill -9 the leader; time to the next leader_changed from the kill and from the expiry."""
    offset = await clock_offset_ms(redis)
    from_kill, after_expiry, missed = [], [], 0
    for _ in range(crashes):
        leader = await fleet.leader()
        await asyncio.sleep(2 * FAILOVER_RENEW)  # every standby has seen the lease's expiry
        mark = len(events.events)
        leader.kill()
        await asyncio.sleep(0.05)  # a renewal already on its way lands before we read
        expires = int(await redis.hget(fleet.lease_key, "lease_expires_at") or 0)
        taken = await events.wait_for(leader_after(leader.node_id), FAILOVER_TTL + 5, mark)
        if taken is None or leader.killed_at is None or not expires:
            missed += 1
        else:
            from_kill.append(taken["at"] - (leader.killed_at * 1000 + offset))
            after_expiry.append(float(taken["at"] - expires))
        await fleet.replace(leader)
    return {"crash_from_kill": {**summary_ms(from_kill), "missed": missed},
            "crash_after_expiry": summary_ms(after_expiry),
            "clock_offset_ms": round(offset, 3)}
