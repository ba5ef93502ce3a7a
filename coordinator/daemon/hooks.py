"""What user code plugs into the daemon: hooks, and the context leader work receives."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, fields
from typing import Any

from coordinator.errors import CoordinatorError, InvalidArgumentError
from coordinator.protocol.records import FenceResult


@dataclass(frozen=True)
class LeaderContext:
    """Handed to leader work: who leads, under which term, and fenced writes bound to it.

    Every fenced write is applied only while this context's tenure (its term, this node's
    holder and instance id) is the live lease, atomically in Redis; a refused one raises
    ``FencedWriteRefused`` (``raise_on_refused=False`` returns the result instead)."""

    node_id: str
    host: str
    term: int
    _mode: Callable[[], str]
    _lease: Any  # the daemon's Lease
    # the daemon's loop (where the context was made), for the blocking view
    _loop: asyncio.AbstractEventLoop | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self._loop is None:
            with contextlib.suppress(RuntimeError):  # made outside a loop: no blocking view
                object.__setattr__(self, "_loop", asyncio.get_running_loop())

    @property
    def blocking(self) -> BlockingFence:
        """The fenced writes for a plain (non-async) hook on a worker thread: each blocks
        until the daemon's loop has done it (``ctx.blocking.fenced_set(key, value)``)."""
        return BlockingFence(self)

    @property
    def lease(self) -> str:
        """The name of the lease this tenure holds (one of many, or the single one)."""
        return str(self._lease.name)

    @property
    def automation_mode(self) -> str:
        """The namespace's automation mode now (it may change while the work runs)."""
        return self._mode()

    async def fenced_set(self, key: str, value: str | bytes, *, px_ms: int | None = None,
                         raise_on_refused: bool = True, px: int | None = None) -> FenceResult:
        """SET ``key`` (expiring after ``px_ms`` ms if given; ``px`` is its old name) under
        this context's tenure."""
        result: FenceResult = await self._lease.fenced_set(
            key, value, self.term, px_ms=px_ms, px=px, raise_on_refused=raise_on_refused)
        return result

    async def fenced_delete(self, key: str, *, raise_on_refused: bool = True) -> FenceResult:
        """DEL ``key`` under this context's tenure."""
        result: FenceResult = await self._lease.fenced_delete(
            key, self.term, raise_on_refused=raise_on_refused)
        return result

    async def fenced_hset(self, key: str, mapping: dict[str, str | bytes | int | float], *,
                          raise_on_refused: bool = True) -> FenceResult:
        """HSET ``mapping`` into ``key`` under this context's tenure."""
        result: FenceResult = await self._lease.fenced_hset(
            key, mapping, self.term, raise_on_refused=raise_on_refused)
        return result

    async def fenced_incrby(self, key: str, amount: int, *,
                            raise_on_refused: bool = True) -> FenceResult:
        """INCRBY ``key`` under this context's tenure (the new value in ``.value``)."""
        result: FenceResult = await self._lease.fenced_incrby(
            key, amount, self.term, raise_on_refused=raise_on_refused)
        return result

    async def fenced_eval(self, snippet: str, *, keys: list[str] | tuple[str, ...] = (),
                          args: list[Any] | tuple[Any, ...] = (),
                          raise_on_refused: bool = True) -> FenceResult:
        """Run your own Lua ``snippet`` under this context's tenure (``Lease.fenced_eval``:
        needs EVAL/EVALSHA, so not under an FCALL-only ACL); its reply in ``.value``."""
        result: FenceResult = await self._lease.fenced_eval(
            snippet, self.term, keys=keys, args=args, raise_on_refused=raise_on_refused)
        return result


class BlockingFence:
    """A LeaderContext's fenced writes, callable from any thread but the daemon's loop."""

    def __init__(self, ctx: LeaderContext, timeout: float | None = 10.0) -> None:
        self._ctx, self._timeout = ctx, timeout

    def fenced_set(self, key: str, value: str | bytes, *, px_ms: int | None = None,
                   raise_on_refused: bool = True) -> FenceResult:
        """``LeaderContext.fenced_set``, blocking."""
        return self._run(self._ctx.fenced_set(key, value, px_ms=px_ms,
                                              raise_on_refused=raise_on_refused))

    def fenced_delete(self, key: str, *, raise_on_refused: bool = True) -> FenceResult:
        """``LeaderContext.fenced_delete``, blocking."""
        return self._run(self._ctx.fenced_delete(key, raise_on_refused=raise_on_refused))

    def fenced_hset(self, key: str, mapping: dict[str, str | bytes | int | float], *,
                    raise_on_refused: bool = True) -> FenceResult:
        """``LeaderContext.fenced_hset``, blocking."""
        return self._run(self._ctx.fenced_hset(key, mapping, raise_on_refused=raise_on_refused))

    def fenced_incrby(self, key: str, amount: int, *, raise_on_refused: bool = True) -> FenceResult:
        """``LeaderContext.fenced_incrby``, blocking."""
        return self._run(self._ctx.fenced_incrby(key, amount, raise_on_refused=raise_on_refused))

    def fenced_eval(self, snippet: str, *, keys: list[str] | tuple[str, ...] = (),
                    args: list[Any] | tuple[Any, ...] = (),
                    raise_on_refused: bool = True) -> FenceResult:
        """``LeaderContext.fenced_eval``, blocking."""
        return self._run(self._ctx.fenced_eval(snippet, keys=keys, args=args,
                                               raise_on_refused=raise_on_refused))

    def _run(self, call: Coroutine[Any, Any, FenceResult]) -> FenceResult:
        loop = self._ctx._loop
        running: asyncio.AbstractEventLoop | None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop or loop.is_closed():
            call.close()
            raise CoordinatorError("ctx.blocking is for plain hooks on another thread; "
                                   "await the LeaderContext's methods on the daemon's loop")
        return asyncio.run_coroutine_threadsafe(call, loop).result(self._timeout)


Hook = Callable[[], Awaitable[Any]]

# the hooks that may be plain functions: those run on a worker thread (asyncio.to_thread),
# so a blocking hook never holds up the lease loop
_MAY_BE_SYNC = ("load_local_runs", "reconcile_local_runs", "on_lease_state_change",
                "on_started_leading", "on_stopped_leading", "on_automation_mode_change",
                "on_new_leader", "on_initial_state")


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        type(fn).__call__)


def in_thread(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``fn`` (a plain function) as a coroutine function that runs it on a worker thread;
    an awaitable it returns (a lambda returning a coroutine) is awaited on the loop."""

    @functools.wraps(fn)
    async def run(*args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, functools.partial(fn, *args))

        def close_orphan(done: asyncio.Future[Any]) -> None:
            # cancelled while the thread ran: a coroutine it returned is closed, not leaked
            if done.cancelled():
                return
            if done.exception() is None and inspect.iscoroutine(done.result()):
                done.result().close()

        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(close_orphan)
            raise
        if inspect.isawaitable(result):
            return await result
        return result

    return run


@dataclass(frozen=True)
class Hooks:
    """Optional callables; a hook that raises is logged and never kills the loops.

    Each hook but ``on_lease_deadline`` and ``status_fields`` may be a coroutine function
    (run on the daemon's loop: it must not block) or a plain function (run on a worker
    thread, so it may block; a plain ``on_started_leading`` cannot be cancelled: it should
    return when ``BackgroundDaemon.leadership()`` says it no longer leads, and its writes
    are fenced all the same).

    Snapshot fields that could confuse (``on_lease_state_change``, ``on_initial_state``):
    ``role`` is this node's state now (leader / standby / degraded); ``can_schedule`` says
    the lease is held and its local deadline holds; ``scheduler_enabled`` says, besides,
    that the start-up checklist (load_local_runs, reconcile_local_runs) has finished, so
    leader work may start. The first leader callback of a start comes during the checklist:
    ``scheduler_enabled`` false next to ``can_schedule`` true is that moment, and
    ``on_started_leading`` follows once the checklist is done.
    """

    load_local_runs: Hook | None = None
    reconcile_local_runs: Hook | None = None
    on_lease_state_change: Callable[[dict[str, Any]], Awaitable[Any]] | None = None
    on_started_leading: Callable[[LeaderContext], Awaitable[Any]] | None = None
    on_stopped_leading: Hook | None = None
    on_automation_mode_change: Callable[[str], Awaitable[Any]] | None = None
    # on every node, leader or not: called with (holder_id, term) each time the lease is
    # seen under a new tenure (client-go's OnNewLeader), this node's own included
    on_new_leader: Callable[[str, int], Awaitable[Any]] | None = None
    # once per start, when the start-up checklist is done: the status snapshot then
    # (role leader or standby or degraded), so an app knows where it stands from the start
    on_initial_state: Callable[[dict[str, Any]], Awaitable[Any]] | None = None
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
        names = {f.name for f in fields(self)}
        for name in _MAY_BE_SYNC:
            if name not in names:
                continue
            hook = getattr(self, name)
            if hook is None:
                continue
            if not callable(hook):
                raise InvalidArgumentError(f"hook {name} must be callable, got {hook!r}")
            if not _is_async(hook):
                object.__setattr__(self, name, in_thread(hook))


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
