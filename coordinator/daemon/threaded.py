"""Run the daemon on a background thread, for programs that are not async."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from coordinator.daemon.daemon import Daemon, PassResult
from coordinator.daemon.hooks import Hooks, LeaderContext
from coordinator.daemon.leader_work import Leadership
from coordinator.errors import CoordinatorError
from coordinator.protocol.lease import FencedWrite, Lease
from coordinator.protocol.records import FenceResult
from coordinator.settings import Settings

__all__ = ["BackgroundDaemon"]


class BackgroundDaemon:
    """A ``Daemon`` on its own thread and event loop; every method is safe from any thread.

    ``stop()`` may come at any moment, before, during or after ``start()``: it ends with the
    loops stopped and the lease released (a ``start()`` it overtakes returns quietly)."""

    def __init__(self, settings: Settings, *, hooks: Hooks | None = None,
                 redis: Any = None) -> None:
        """``redis``: an async client to use instead of one made from the settings (e.g.
        ``fakeredis.FakeAsyncRedis()`` in tests); it is used only on the daemon's thread,
        and not closed by ``stop()``."""
        self._settings, self._hooks, self._redis = settings, hooks, redis
        self._require_redis = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._daemon: Daemon | None = None
        self._thread: threading.Thread | None = None
        self._created = threading.Event()  # the loop and the daemon exist (or failed to)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping = False
        self._lock = threading.Lock()

    def __enter__(self) -> BackgroundDaemon:
        """Start (unless ``start()`` ran already: ``with bg.start(require_redis=True):``)."""
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0, *, require_redis: bool = False) -> BackgroundDaemon:
        """Start the thread and wait until the daemon's start-up checklist is done (or a
        ``stop()`` ended it). With ``require_redis``, a Redis that cannot be reached fails
        the start (``BackendUnavailableError``, the daemon stopped) instead of leaving it
        running ``degraded``."""
        with self._lock:
            if self._thread is not None:
                raise CoordinatorError("already started")
            self._require_redis = require_redis
            self._thread = threading.Thread(target=self._main, name="coordinator", daemon=True)
            if self._stopping:
                return self  # stopped before it started: nothing to start
            self._thread.start()
        if not self._ready.wait(timeout):
            raise CoordinatorError(f"the daemon did not start within {timeout}s")
        if self._error is not None:
            if isinstance(self._error, CoordinatorError):
                raise self._error
            raise CoordinatorError(f"the daemon failed to start: {self._error}") from self._error
        return self

    def can_schedule(self) -> bool:
        """True only while this node leads with a live lease and no stop was asked for
        (reads an immutable state)."""
        return not self._stopping and self._daemon is not None and self._daemon.can_schedule()

    def leadership(self) -> Leadership:
        """One atomic reading ``(leading, term)``: whether this node leads now and under
        which term (None when not leading)."""
        daemon = self._daemon
        if self._stopping or daemon is None:
            return Leadership(False, None)
        return daemon.leadership()

    def wait_until_leader(self, timeout: float | None = None) -> bool:
        """Block until this node leads (True), or ``timeout`` passes or it stops (False)."""
        loop, daemon = self._loop, self._daemon
        if loop is None or daemon is None:
            raise CoordinatorError("not started")
        if self._stopping or not loop.is_running():
            return False
        future = asyncio.run_coroutine_threadsafe(daemon.wait_until_leader(timeout), loop)
        try:
            return future.result(None if timeout is None else timeout + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return False

    def fenced_set(self, key: str, value: str | bytes, *, term: int, px_ms: int | None = None,
                   raise_on_refused: bool = True, timeout: float | None = 10.0) -> FenceResult:
        """``Lease.fenced_set`` from any thread: SET ``key`` only while ``term`` (from
        ``leadership()`` or the LeaderContext) is this node's live tenure. A refused write
        raises ``FencedWriteRefused`` unless ``raise_on_refused=False``."""
        return self._on_loop(self._lease().fenced_set(
            key, value, term, px_ms=px_ms, raise_on_refused=raise_on_refused), timeout)

    def fenced_delete(self, key: str, *, term: int, raise_on_refused: bool = True,
                      timeout: float | None = 10.0) -> FenceResult:
        """``Lease.fenced_delete`` from any thread."""
        return self._on_loop(self._lease().fenced_delete(
            key, term, raise_on_refused=raise_on_refused), timeout)

    def fenced_hset(self, key: str, mapping: dict[str, str | bytes | int | float], *, term: int,
                    raise_on_refused: bool = True, timeout: float | None = 10.0) -> FenceResult:
        """``Lease.fenced_hset`` from any thread."""
        return self._on_loop(self._lease().fenced_hset(
            key, mapping, term, raise_on_refused=raise_on_refused), timeout)

    def fenced_incrby(self, key: str, amount: int, *, term: int, raise_on_refused: bool = True,
                      timeout: float | None = 10.0) -> FenceResult:
        """``Lease.fenced_incrby`` from any thread."""
        return self._on_loop(self._lease().fenced_incrby(
            key, amount, term, raise_on_refused=raise_on_refused), timeout)

    def fenced_eval(self, snippet: str, *, term: int, keys: list[str] | tuple[str, ...] = (),
                    args: list[Any] | tuple[Any, ...] = (), raise_on_refused: bool = True,
                    timeout: float | None = 10.0) -> FenceResult:
        """``Lease.fenced_eval`` from any thread (needs EVAL/EVALSHA)."""
        return self._on_loop(self._lease().fenced_eval(
            snippet, term, keys=keys, args=args, raise_on_refused=raise_on_refused), timeout)

    def _lease(self) -> Lease:
        if self._daemon is None:
            raise CoordinatorError("not started")
        return self._daemon.lease

    def _on_loop(self, coro: Coroutine[Any, Any, FencedWrite], timeout: float | None) -> FencedWrite:
        loop = self._loop
        if loop is None or not loop.is_running():
            coro.close()
            raise CoordinatorError("not running")
        if threading.current_thread() is self._thread:
            coro.close()
            raise CoordinatorError("this would block the daemon's own loop; await the "
                                   "LeaderContext's or the Lease's method there instead")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the fenced write did not end within {timeout}s") from None

    def run_scheduler_pass(self, work: Callable[[LeaderContext], Awaitable[Any]],
                           timeout: float | None = None) -> PassResult:
        """``Daemon.run_scheduler_pass`` from any other thread: ``work`` (a coroutine
        function) runs on the daemon's loop; this blocks until it ends or ``timeout``
        passes (then the pass is cancelled and ``TimeoutError`` raised)."""
        loop, daemon = self._loop, self._daemon
        if loop is None or daemon is None:
            raise CoordinatorError("not started")
        if threading.current_thread() is self._thread:
            raise CoordinatorError("run_scheduler_pass would block the daemon's own loop; "
                                   "await Daemon.run_scheduler_pass there instead")
        if self._stopping or not loop.is_running():
            return "skipped_not_leader"
        future = asyncio.run_coroutine_threadsafe(daemon.run_scheduler_pass(work), loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the scheduler pass did not end within {timeout}s") from None

    def status_snapshot(self) -> dict[str, Any]:
        """The daemon's status fields."""
        if self._daemon is None:
            raise CoordinatorError("not started")
        return self._daemon.status_snapshot()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the daemon (leaving leadership first, then releasing its lease) and the
        thread; also while ``start()`` is still under way on another thread."""
        # first, from the caller's thread: no pass is admitted and can_schedule() is false
        # from here on, before the daemon's loop even picks the stop up
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is None or thread.ident is None:
            return  # never started (and now never will)
        self._created.wait(timeout)
        loop, daemon = self._loop, self._daemon
        if loop is not None and daemon is not None and not daemon.stopped.is_set():
            # RuntimeError: the loop closed meanwhile (the start failed and stopped the daemon)
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(daemon.stop(), loop).result(timeout)
        thread.join(timeout)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            daemon = Daemon(self._settings, hooks=self._hooks, redis=self._redis)
        except BaseException as e:  # reported to start()'s caller
            self._error = e
            self._created.set()
            self._ready.set()
            loop.close()
            return
        self._loop, self._daemon = loop, daemon
        self._created.set()
        try:
            loop.run_until_complete(self._run(daemon))
        finally:
            # what the stop abandoned (a hook that would not finish) is cancelled, not leaked
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            loop.close()

    async def _run(self, daemon: Daemon) -> None:
        # the whole life of the daemon is this one coroutine: a stop at any point of it
        # (even inside start()) is daemon.stop() on this loop, and the loop ends after it
        try:
            await daemon.start(require_redis=self._require_redis)
        except Exception as e:  # reported to start()'s caller
            self._error = e
            self._ready.set()
            await daemon.stop()  # what the start began (a lease, loops) ends with it
            return
        self._ready.set()
        await daemon.stopped.wait()
