"""What user code plugs into the daemon: hooks, and the context leader work receives."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from coordinator.errors import InvalidArgumentError
from coordinator.records import FenceResult


@dataclass(frozen=True)
class LeaderContext:
    """Handed to leader work: who leads, under which term, and a fencing helper bound to it."""

    node_id: str
    host: str
    term: int
    _mode: Callable[[], str]
    _fence: Callable[[str, str | bytes, int, int | None], Awaitable[FenceResult]]

    @property
    def automation_mode(self) -> str:
        """The namespace's automation mode now (it may change while the work runs)."""
        return self._mode()

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
    # seconds a stop gives leader work and on_stopped_leading on top of its one-second
    # budget, for hooks that must wait for something outside (a child process's grace);
    # work that is still running after it is abandoned (hook.abandoned) and the lease is
    # released all the same: it was told to stop, and the fence refuses its writes after
    stop_grace: float = 0.0

    def __post_init__(self) -> None:
        grace = self.stop_grace
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace < 3600:
            raise InvalidArgumentError(f"stop_grace must be seconds in [0, 3600), got {grace!r}")


class HookQueue:
    """Runs hook calls one after another, in the order queued, off the caller's path.

    The daemon's loops never wait for user code: a state change queues its hooks here and
    goes on. A call that overruns ``bound`` seconds is abandoned (logged ``hook.abandoned``
    and left to run) so the calls behind it are not held up for ever.
    """

    def __init__(self, log: Any, bound: float) -> None:
        self._log, self._bound = log, bound
        self._last: asyncio.Task[bool] | None = None
        self._links: set[asyncio.Task[bool]] = set()  # referenced, so not collected
        self._abandoned: set[asyncio.Future[Any]] = set()
        self.running: str | None = None  # the name of the call under way, for the logs

    def put(self, name: str, call: Callable[[], Awaitable[Any]]) -> asyncio.Task[bool]:
        """Queue ``call`` behind the others; the task ends True once it has finished
        (raising counts: it is logged ``hook.failed``), False if it was abandoned."""
        previous = self._last

        async def run() -> bool:
            if previous is not None:
                await asyncio.wait([previous])
            self.running = name
            try:
                return await self._bounded(name, call)
            finally:
                self.running = None

        task = asyncio.ensure_future(run())
        self._last = task
        self._links.add(task)
        task.add_done_callback(self._links.discard)
        return task

    def cancel_all(self) -> None:
        """Cancel every call still queued, running or abandoned (the daemon has stopped)."""
        for task in [*self._links, *self._abandoned]:
            task.cancel()

    @property
    def last(self) -> asyncio.Task[bool] | None:
        """The call queued last (done once every call queued so far is done or abandoned)."""
        return self._last

    async def settled(self, timeout: float | None = None) -> bool:
        """Wait until every call queued so far is done or abandoned; False on ``timeout``."""
        last = self._last
        if last is None:
            return True
        done, _ = await asyncio.wait([last], timeout=timeout)
        return bool(done)

    async def _bounded(self, name: str, call: Callable[[], Awaitable[Any]]) -> bool:
        task = asyncio.ensure_future(call())
        try:
            done, _ = await asyncio.wait([task], timeout=self._bound)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            self._log.error("hook.abandoned", hook=name, after=self._bound)
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)
            return False
        if not task.cancelled() and task.exception() is not None:
            self._log.error("hook.failed", hook=name, exc_info=task.exception())
        return True
