"""Peer programs as real processes, and their failover measured from what they print."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from typing import Any

from coordinator.bench.failover import FLEET, READY_STANDBYS
from coordinator.bench.processes import child_env, python_module
from coordinator.bench.stats import summary_ms


class PeerProcess:
    """One peer program; its protocol lines are collected as they come."""

    def __init__(self, node: str, process: asyncio.subprocess.Process) -> None:
        self.node, self.process = node, process
        self.lines: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        stream = self.process.stdout
        if stream is None:
            return
        while line := await stream.readline():
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))
            self.changed.set()

    def said(self, event: str, since: int = 0) -> dict[str, Any] | None:
        """The first ``event`` line from index ``since`` on."""
        return next((x for x in self.lines[since:] if x.get("event") == event), None)

    @property
    def leading(self) -> bool:
        """Whether its last word about leading was ``leading``."""
        steps = [x["event"] for x in self.lines if x.get("event") in ("leading", "lost",
                                                                        "released")]
        return bool(steps) and steps[-1] == "leading" and self.process.returncode is None

    async def exited(self, timeout: float) -> None:
        """Wait for the process to exit and for its last lines to be read."""
        await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.wait_for(self._reader, timeout)

    async def close(self) -> None:
        """Kill, reap and stop reading."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 2)


class PeerFleet:
    """FLEET processes of one peer program and variant; a stopped one is replaced."""

    def __init__(self, module: str, url: str, prefix: str, variant: str) -> None:
        self._module, self._url, self._prefix, self._variant = module, url, prefix, variant
        self._ids = itertools.count(1)
        self.peers: list[PeerProcess] = []

    async def spawn(self) -> None:
        """Start one more peer process."""
        node = f"peer-{next(self._ids)}"
        process = await asyncio.create_subprocess_exec(
            *python_module(self._module, self._url, self._prefix, node, self._variant),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env=child_env(self._url))
        self.peers.append(PeerProcess(node, process))

    async def leader(self, timeout: float = 60.0) -> PeerProcess:
        """The leading peer, once there is one and enough followers are ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = next((p for p in self.peers if p.leading), None)
            ready = [p for p in self.peers if p is not leader and p.said("ready")
                     and p.process.returncode is None]
            if leader is not None and len(ready) >= READY_STANDBYS:
                return leader
            await asyncio.sleep(0.02)
        raise TimeoutError(f"{self._module} ({self._variant}): no leader with ready followers")

    async def next_leader(self, marks: dict[str, int], timeout: float) -> int | None:
        """Monotonic ns of the first ``leading`` line printed after ``marks``, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = [x["t"] for p in self.peers if (x := p.said("leading", marks.get(p.node, 0)))]
            if seen:
                return int(min(seen))
            await asyncio.sleep(0.005)
        return None

    def marks(self) -> dict[str, int]:
        """How many lines each peer has printed so far."""
        return {p.node: len(p.lines) for p in self.peers}

    async def replace(self, peer: PeerProcess) -> None:
        """Reap ``peer`` and start a replacement."""
        self.peers.remove(peer)
        await self.spawn()
        await peer.close()

    async def close(self) -> None:
        """Kill every peer."""
        for peer in self.peers:
            await peer.close()


async def peer_failover(redis: Any, module: str, lock_key: str, url: str, prefix: str,
                        variant: str, *, handovers: int, crashes: int, crash_cap: float
                        ) -> dict[str, Any]:
    """Graceful gaps and kill -9 failover of one peer and variant, on the host's clock."""
    fleet = PeerFleet(module, url, prefix, variant)
    try:
        for _ in range(FLEET):
            await fleet.spawn()
        gaps, missed = [], 0
        for _ in range(handovers):
            leader = await fleet.leader()
            marks = fleet.marks()
            leader.process.terminate()
            await leader.exited(10)
            released = leader.said("released", marks[leader.node])
            taken = await fleet.next_leader(marks, 10)
            if released is None or taken is None:
                missed += 1
            else:
                gaps.append((taken - released["t"]) / 1e6)
            await fleet.replace(leader)
        crash = await _crashes(redis, fleet, lock_key, crashes, crash_cap)
    finally:
        await fleet.close()
    return {"graceful": {**summary_ms(gaps), "missed": missed}, **crash}


async def _crashes(redis: Any, fleet: PeerFleet, lock_key: str, crashes: int, cap: float
                   ) -> dict[str, Any]:
    from_kill, after_expiry, missed, no_ttl = [], [], 0, False
    for _ in range(crashes):
        leader = await fleet.leader()
        await asyncio.sleep(1.0)  # followers settle into their polling
        marks = fleet.marks()
        leader.process.kill()
        killed = time.monotonic_ns()
        await asyncio.sleep(0.05)
        pttl = int(await redis.pttl(lock_key))
        expires = time.monotonic_ns() + pttl * 1_000_000 if pttl >= 0 else None
        no_ttl = no_ttl or pttl == -1
        taken = await fleet.next_leader(marks, cap if pttl != -1 else min(cap, 3.0))
        if taken is None:
            missed += 1
        else:
            from_kill.append((taken - killed) / 1e6)
            if expires is not None:
                after_expiry.append((taken - expires) / 1e6)
        await fleet.replace(leader)
        if no_ttl:
            await redis.delete(lock_key)  # nobody else ever would: let the next leader in
    return {"crash_from_kill": {**summary_ms(from_kill), "missed": missed},
            "crash_after_expiry": summary_ms(after_expiry),
            "lock_has_no_ttl": no_ttl, "crash_wait_cap_s": cap}
