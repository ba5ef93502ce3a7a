"""The daemon at default settings when nothing happens: share of one core and resident memory."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from coordinator.bench.daemons import DaemonProcess, wait_started
from coordinator.bench.processes import CLOCK_TICKS, cpu_seconds, rss_mb

SETTLE = 1.0  # seconds after start-up before the window opens


class IdleDaemons:
    """A leader and a standby at default settings, measured over a window the caller sets.

    They run beside the other parts (in a namespace of their own, so nothing reaches them);
    the window closes when ``finish`` is called, but never before ``seconds`` have passed.
    """

    def __init__(self, url: str, namespace: str, workdir: Path, seconds: float) -> None:
        self._seconds = seconds
        self._start = (url, namespace, workdir)
        # the standby starts once the leader holds the lease, so the roles are as named
        self.daemons = {"leader": DaemonProcess(url, namespace, "idle-leader", workdir)}
        self._opened: tuple[float, dict[str, float | None]] | None = None

    async def open_window(self) -> None:
        """Wait for start-up (the leader first), settle, then note each daemon's CPU time."""
        await wait_started([self.daemons["leader"]])
        url, namespace, workdir = self._start
        self.daemons["standby"] = DaemonProcess(url, namespace, "idle-standby", workdir)
        await wait_started([self.daemons["standby"]])
        await asyncio.sleep(SETTLE)
        self._opened = (time.monotonic(), {r: cpu_seconds(d.pid) for r, d in self.daemons.items()})

    async def finish(self) -> dict[str, Any]:
        """Close the window (waiting out its minimum) and stop the daemons."""
        if self._opened is None:
            await self.open_window()
        opened_at, cpu_before = self._opened or (time.monotonic(), {})
        await asyncio.sleep(max(0.0, opened_at + self._seconds - time.monotonic()))
        window = time.monotonic() - opened_at
        out: dict[str, Any] = {"window_s": round(window, 2),
                               "resolution_percent": round(100 / CLOCK_TICKS / window, 3)}
        for role, daemon in self.daemons.items():
            before, after = cpu_before.get(role), cpu_seconds(daemon.pid)
            out[role] = {
                "cpu_percent": (None if before is None or after is None
                                else round(100 * (after - before) / window, 3)),
                "rss_mb": rss_mb(daemon.pid),
            }
        self.close()
        return out

    def close(self) -> None:
        """Stop both daemons."""
        for daemon in self.daemons.values():
            daemon.reap()
