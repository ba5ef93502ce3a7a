"""Run the daemon on a background thread, for programs that are not async."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from coordinator.daemon import Daemon, PassResult
from coordinator.errors import CoordinatorError
from coordinator.hooks import Hooks, LeaderContext
from coordinator.settings import Settings


class BackgroundDaemon:
    """A ``Daemon`` on its own thread and event loop; every method is safe from any thread."""

    def __init__(self, settings: Settings, *, hooks: Hooks | None = None) -> None:
        self._settings, self._hooks = settings, hooks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._daemon: Daemon | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping = False

    def start(self, timeout: float = 10.0) -> None:
        """Start the thread and wait until the daemon's start-up checklist is done."""
        if self._thread is not None:
            raise CoordinatorError("already started")
        self._thread = threading.Thread(target=self._main, name="coordinator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise CoordinatorError(f"the daemon did not start within {timeout}s")
        if self._error is not None:
            raise CoordinatorError(f"the daemon failed to start: {self._error}") from self._error

    def can_schedule(self) -> bool:
        """True only while this node leads with a live lease and no stop was asked for
        (reads an immutable state)."""
        return not self._stopping and self._daemon is not None and self._daemon.can_schedule()

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
        """Stop the daemon (leaving leadership first, then releasing its lease) and the thread."""
        # first, from the caller's thread: no pass is admitted and can_schedule() is false
        # from here on, before the daemon's loop even picks the stop up
        self._stopping = True
        loop, daemon, thread = self._loop, self._daemon, self._thread
        if loop is None or daemon is None or thread is None:
            return
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(daemon.stop(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._daemon = Daemon(self._settings, hooks=self._hooks)
            loop.run_until_complete(self._daemon.start())
        except BaseException as e:  # reported to start()'s caller
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            # what the stop abandoned (a hook that would not finish) is cancelled, not leaked
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            loop.close()
