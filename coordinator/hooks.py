"""What user code plugs into the daemon: hooks, and the context leader work receives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from coordinator.records import FenceResult


@dataclass(frozen=True)
class LeaderContext:
    """Handed to leader work: who leads, under which term, and a fencing helper bound to it."""

    node_id: str
    host: str
    term: int
    automation_mode: str
    _fence: Callable[[str, str | bytes, int, int | None], Awaitable[FenceResult]]

    async def fenced_set(self, key: str, value: str | bytes, *, px: int | None = None) -> FenceResult:
        """SET ``key`` only while this context's term is still the live lease's term."""
        return await self._fence(key, value, self.term, px)


Hook = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Hooks:
    """Optional async callables; a hook that raises is logged and never kills the loops."""

    load_local_runs: Hook | None = None
    reconcile_local_runs: Hook | None = None
    on_lease_state_change: Callable[[dict[str, Any]], Awaitable[Any]] | None = None
    on_started_leading: Callable[[LeaderContext], Awaitable[Any]] | None = None
    on_stopped_leading: Hook | None = None
    on_automation_mode_change: Callable[[str], Awaitable[Any]] | None = None
    # plain (not async) and quick: called with the local monotonic deadline until which the
    # lease is trusted (None when not leading) each time it moves, e.g. to tell a watchdog
    on_lease_deadline: Callable[[float | None], None] | None = None
    # plain and quick: extra fields merged into status_snapshot() and carried in each
    # heartbeat's metadata, so `coordinator status` shows them too (e.g. the child's state)
    status_fields: Callable[[], dict[str, Any]] | None = None
