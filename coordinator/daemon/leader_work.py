"""Leader work: what runs while this node leads (on_started_leading, scheduler passes),
and how it starts, pauses and stops.

The daemon says when (leadership began or ended, the mode changed); this module keeps
the tasks, cancels them in the same step, and queues the hooks that follow in order.
Nothing here waits for user code except ``stopped()``, and that with a bound.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Literal, NamedTuple

from coordinator.daemon.hooks import HookQueue, Hooks, LeaderContext
from coordinator.errors import LeaseLostError

PassResult = Literal["scheduled", "skipped_not_leader", "skipped_paused", "skipped_draining"]


class Leadership(NamedTuple):
    """One atomic reading: whether this node leads now, and under which term (None when not
    leading). Unpacks as a pair: ``leading, term = daemon.leadership()``."""

    leading: bool
    term: int | None


class LeaderWork:
    """The leader tasks of one daemon, under one term at a time."""

    def __init__(self, hooks: Hooks, queue: HookQueue, log: Any,
                 context: Callable[[int], LeaderContext], mode: Callable[[], str]) -> None:
        self._hooks, self._queue, self._log = hooks, queue, log
        self._context, self._mode = context, mode
        self.term: int | None = None  # the term being led; None when not leading
        self._tasks: set[asyncio.Task[Any]] = set()  # on_started_leading and passes
        self._paused: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self._hook_due = False  # on_started_leading is to (re)start once the mode is running
        self._wind_down: tuple[asyncio.Task[bool], ...] = ()  # the last leadership end's hooks
        self.leading = asyncio.Event()  # set while a term is led (for wait_until_leader)

    def start(self, term: int) -> None:
        """Leadership began under ``term``: start on_started_leading (if the mode lets it)."""
        if self.term is not None:
            return
        self.term = term
        self.leading.set()
        self._log.info("leader.started", term=term)
        self._hook_due = True
        self.resume()

    def resume(self) -> None:
        """Start on_started_leading if it is due (never begun this tenure, or cancelled by a
        pause) and the mode is running; one that finished by itself is not started again."""
        hook, term = self._hooks.on_started_leading, self.term
        if hook is None or term is None or not self._hook_due or self._mode() != "running":
            return
        self._hook_due = False
        # after the hooks queued so far: the last tenure's work and on_stopped_leading first
        gate = self._queue.last

        async def lead() -> None:
            if gate is not None:
                await asyncio.wait([gate])
            try:
                await hook(self._context(term))
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("hook.failed", hook="on_started_leading")

        task = asyncio.ensure_future(lead())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def pause(self) -> None:
        """Paused: cancel every leader task now; on_started_leading starts again on resume."""
        tasks = list(self._tasks)
        if self.term is None or not tasks:
            return
        if self._hooks.on_started_leading is not None:
            self._hook_due = True
        for task in tasks:
            self._paused.add(task)
            task.cancel()
        self._log.info("leader.paused", term=self.term, cancelled=len(tasks))
        self._queue.put("leader_work", lambda: asyncio.wait(tasks))

    def stop(self, reason: str) -> None:
        """Leadership ended: in this very step, cancel every leader task; queue the wait for
        them, then on_stopped_leading."""
        if self.term is None:
            return
        term, self.term = self.term, None
        self.leading.clear()
        self._hook_due = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        self._log.info("leader.stopped", term=term, reason=reason)
        links = []
        if tasks:
            links.append(self._queue.put("leader_work", lambda: asyncio.wait(tasks)))
        hook = self._hooks.on_stopped_leading
        if hook is not None:
            links.append(self._queue.put("on_stopped_leading", hook))
        self._wind_down = tuple(links)

    async def stopped(self, timeout: float, *, during: str) -> bool:
        """Wait up to ``timeout`` for the last leadership end's tasks and on_stopped_leading;
        True if they all finished (else the one under way is logged ``hook.abandoned``)."""
        links = self._wind_down
        if not links:
            return True
        if timeout > 0:
            done, _ = await asyncio.wait(links, timeout=timeout)
        else:
            done = {link for link in links if link.done()}
        if len(done) < len(links):
            self._log.error("hook.abandoned", hook=self._queue.running or "leader_work",
                            during=during, after=round(timeout, 3))
            return False
        return all(link.result() for link in links)

    def cancel_all(self) -> None:
        """Cancel whatever leader task is left (the daemon has stopped; some swallowed the
        first cancellation)."""
        for task in list(self._tasks):
            task.cancel()

    async def run_pass(self, term: int, work: Callable[[LeaderContext], Awaitable[Any]]) -> PassResult:
        """Run one admitted pass as a leader task, so a pause or the end of leadership
        cancels it: ``"skipped_paused"`` after a pause, ``LeaseLostError`` after the end."""
        task = asyncio.ensure_future(work(self._context(term)))
        self._tasks.add(task)
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            if task in self._paused:
                return "skipped_paused"
            raise LeaseLostError(f"leadership of term {term} ended while the pass ran") from None
        finally:
            self._tasks.discard(task)
        return "scheduled"
