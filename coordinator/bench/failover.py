"""Failover between real daemons, on Redis's clock: graceful (SIGTERM) handovers, process
crashes (kill -9 of the leading daemon's pid only: its guardian releases the lease) and host
crashes (kill -9 of the daemon and its guardian, which a dead host takes along: the lease
expires at its TTL)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coordinator.bench.daemons import DaemonProcess, wait_started
from coordinator.bench.events_log import Event, EventsLog
from coordinator.bench.options import FAILOVER_RENEW, FAILOVER_TTL
from coordinator.bench.redis_info import clock_offset_ms
from coordinator.bench.stats import summary_ms
from coordinator.protocol import keys

FLEET = 5  # running daemons; a stopped one is replaced so handovers keep their competition
READY_STANDBYS = 2  # started standbys a handover waits for
LEASE = "global"
# process crashes are quick (no TTL to wait): a full run (3 or more host crashes) measures at
# least 20 of them, the p99 the bar is set on; a quick run as many as host crashes
PROCESS_CRASHES_MIN = 20


def process_crash_count(crashes: int) -> int:
    """How many process crashes go with ``crashes`` host crashes."""
    return max(crashes, PROCESS_CRASHES_MIN) if crashes >= 3 else crashes


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


def guardian_pid(daemon: DaemonProcess) -> int | None:
    """The pid of the daemon's guardian (the last one it logged starting), if any."""
    found = None
    with contextlib.suppress(OSError):
        for line in daemon.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                entry = json.loads(line)
                if entry.get("event") == "guardian.started":
                    found = int(entry["pid"])
    return found


async def failover(redis: Any, url: str, namespace: str, workdir: Path, *, handovers: int,
                   crashes: int, process_crashes: int | None = None) -> dict[str, Any]:
    """Graceful handover gaps, process-crash and host-crash failover times, in Redis-clock
    ms. ``crash_from_kill`` / ``crash_after_expiry`` are the host crash (the figures the
    peers' kill -9 compares with); ``process_crash`` the kill -9 of the daemon alone."""
    events = EventsLog(redis, namespace)
    await events.start()
    fleet = Fleet(redis, url, namespace, workdir)
    try:
        for _ in range(FLEET):
            fleet.spawn()
        await wait_started(fleet.daemons)
        graceful = await _graceful(fleet, events, handovers)
        process = await _process_crashes(
            redis, fleet, events,
            process_crash_count(crashes) if process_crashes is None else process_crashes)
        crash = await _crashes(redis, fleet, events, crashes)
    finally:
        await asyncio.to_thread(fleet.close)
        await events.close()
    return {"settings": {"lease_ttl_s": FAILOVER_TTL, "renew_interval_s": FAILOVER_RENEW,
                         "daemons": FLEET},
            "graceful": graceful, "process_crash": process, **crash}


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


async def _process_crashes(redis: Any, fleet: Fleet, events: EventsLog,
                           crashes: int) -> dict[str, Any]:
    """kill -9 the leading daemon's pid only; time from the kill to the guardian's
    lease_released and to the next leader_changed."""
    offset = await clock_offset_ms(redis)
    from_kill, released_after, missed = [], [], 0
    for _ in range(crashes):
        leader = await fleet.leader()
        await asyncio.sleep(FAILOVER_RENEW)
        mark = len(events.events)
        leader.kill()
        killed = (leader.killed_at or 0) * 1000 + offset
        taken = await events.wait_for(leader_after(leader.node_id), FAILOVER_TTL + 5, mark)
        released = [e for e in events.events[mark:] if released_by(leader.node_id)(e)]
        if taken is None or not released:
            missed += 1  # no guardian release: taken at the TTL, or not at all
        else:
            from_kill.append(taken["at"] - killed)
            released_after.append(released[0]["at"] - killed)
        await fleet.replace(leader)
    return {**summary_ms(from_kill), "missed": missed,
            "released_from_kill": summary_ms(released_after)}


def kill_host(daemon: DaemonProcess) -> None:
    """What a dead host does to the node: the guardian goes with the daemon (first here,
    so that it cannot see the daemon die)."""
    pid = guardian_pid(daemon)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    daemon.kill()


async def _crashes(redis: Any, fleet: Fleet, events: EventsLog, crashes: int) -> dict[str, Any]:
    """Host crash: kill -9 the leader and its guardian; time to the next leader_changed
    from the kill and from the expiry."""
    offset = await clock_offset_ms(redis)
    from_kill, after_expiry, missed = [], [], 0
    for _ in range(crashes):
        leader = await fleet.leader()
        await asyncio.sleep(2 * FAILOVER_RENEW)  # every standby has seen the lease's expiry
        mark = len(events.events)
        kill_host(leader)
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
