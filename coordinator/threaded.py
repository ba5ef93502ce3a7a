"""Run the daemon on a background thread, for programs that are not async."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from coordinator.daemon import Daemon
from coordinator.errors import CoordinatorError
from coordinator.hooks import Hooks
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
        """True only while this node leads with a live lease (reads an immutable state)."""
        return self._daemon is not None and self._daemon.can_schedule()

    def status_snapshot(self) -> dict[str, Any]:
        """The daemon's status fields."""
        if self._daemon is None:
            raise CoordinatorError("not started")
        return self._daemon.status_snapshot()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the daemon (releasing its lease) and the thread."""
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
            loop.close()
