"""The daemon: loops that feed the state machine and carry out its effects.

All decisions live in ``coordinator.daemon.state``; the daemon only does I/O (Redis calls,
timers, tasks, hooks) and keeps the state the machine returned.

The class is built in layers, one module each: ``core`` (parts, state, effects),
``handover``, ``following`` (events channel, mode, Sentinel's announcements), ``loops`` (lease
and heartbeat loops) and this one, the lifecycle: start, stop and the leader gate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from coordinator.clock import bounded
from coordinator.connection.boundary import UNAVAILABLE
from coordinator.connection.sentinel_follow import SentinelFollower
from coordinator.daemon.core import describe, handover_outcome
from coordinator.daemon.following import read_mode
from coordinator.daemon.hooks import LeaderContext
from coordinator.daemon.leader_work import Leadership, PassResult
from coordinator.daemon.loops import DaemonLoops
from coordinator.daemon.state import (
    Released,
    Resigned,
    Role,
)
from coordinator.errors import BackendUnavailableError, CoordinatorError

__all__ = ["Daemon", "Leadership", "PassResult", "describe", "handover_outcome", "read_mode"]

SHUTDOWN_STEP_TIMEOUT = 0.3
SHUTDOWN_BUDGET = 0.8

# of the budget: how long leader work and on_stopped_leading get to finish before a stop
# gives up on them (logged hook.abandoned) and releases the lease anyway: they were told to
# stop, and the released lease makes the fence refuse whatever they still try to write
LEADER_STOP_WAIT = 0.5

# the release always gets this long, even when leader work used up the budget: it is what
# spares the next leader a TTL (so a stop may take up to about a second)
RELEASE_MIN_WAIT = 0.2


def _unreachable(url: str, error: BaseException) -> str:
    """Why a start with ``require_redis`` failed, naming the server, never a key."""
    detail = describe(error)
    if "DB index" in detail:
        return (f"Redis at {url} refused the connection's set-up: {detail} (the database "
                "number in COORDINATOR_REDIS_URL is beyond the server's `databases`)")
    return f"Redis at {url} cannot be reached: {detail}"


class Daemon(DaemonLoops):
    """One controller: heartbeats, the lease loop, the leader gate and leader work."""

    async def wait_until_leader(self, timeout: float | None = None) -> bool:
        """Wait until this node leads (True), or ``timeout`` seconds pass or the daemon
        stops (False)."""
        while not self._stopping:
            if self.leadership().leading:
                return True
            leading = asyncio.ensure_future(self._work.leading.wait())
            stopped = asyncio.ensure_future(self.stopped.wait())
            try:
                done, _ = await asyncio.wait([leading, stopped], timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                leading.cancel()
                stopped.cancel()
            if not done:
                return self.leadership().leading
        return False

    async def __aenter__(self) -> Daemon:
        """Start (unless ``start()`` ran already, e.g. with ``require_redis=True``)."""
        if not self._start_called:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run_scheduler_pass(
        self, work: Callable[[LeaderContext], Awaitable[Any]]
    ) -> PassResult:
        """Run ``work(context)`` once if this node may schedule and the mode is running.

        The work is cancelled if the leadership ends while it runs (``LeaseLostError``) or
        the mode turns paused (then the result is ``"skipped_paused"``); draining lets it
        finish. The checks and the start are one step: a stop or a pause that begins later
        finds the work and cancels it.
        """
        term = self._state.term
        if (self._stopping or not self._checklist_done or self._work.term is None
                or not self.can_schedule() or term is None):
            return "skipped_not_leader"
        if self._automation_mode == "paused":
            return "skipped_paused"
        if self._automation_mode == "draining":
            return "skipped_draining"
        return await self._work.run_pass(term, work)

    async def start(self, *, require_redis: bool = False) -> None:
        """Run the start-up checklist, then leave the loops running.

        A ``stop()`` before or during the start ends it: the start then returns without
        error, having started nothing that outlives the stop. With ``require_redis``, a
        start whose Redis cannot be reached (or refuses the connection's set-up, e.g. a
        database index out of range) stops the daemon and raises
        ``BackendUnavailableError`` saying why, instead of running on ``degraded``."""
        self._start_called = True
        if self._stopping:
            return
        if require_redis:
            await self._require_redis()
        checklist = asyncio.ensure_future(self._start_up())
        self._starting = checklist
        try:
            await checklist
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._stopping and checklist.cancelled() and not (
                    current is not None and current.cancelling()):
                self.log.info("daemon.start_ended", reason="stopped during start")
                return
            raise
        finally:
            self._starting = None
        if require_redis and self._state.role is Role.DEGRADED and not self._stopping:
            error = self._state.last_error or "the lease could not be read"
            await self.stop()
            raise BackendUnavailableError(
                f"Redis at {self.settings.redis_url_redacted} did not serve the lease: {error}")

    async def _require_redis(self) -> None:
        try:
            await bounded(self._redis.ping(), self._op_timeout)
        except Exception as e:  # every failure here is the connection's, not a key's
            await self.stop()
            raise BackendUnavailableError(_unreachable(self.settings.redis_url_redacted, e)) from e

    async def _start_up(self) -> None:
        self.log.info("daemon.starting", redis=self.settings.redis_url_redacted,
                      namespace=self.settings.namespace, lease=self.settings.lease_name,
                      instance_id=self.instance_id)
        if self._guardian is not None:
            self._guardian.start()  # before the first acquire
        settings = self.settings
        if settings.sentinel_addresses and self._owns_redis:  # before the first grant
            password = settings.redis_sentinel_password
            self._switches = SentinelFollower(
                settings.sentinel_addresses, settings.redis_sentinel_service,
                password=None if password is None else password.get_secret_value(),
                timeout=self._op_timeout, on_switch=self._on_master_switch, log=self.log)
            self._spawn(self._switches.run())
        await self._check_redis()
        await self.heartbeat_once()  # 1. register the controller, first heartbeat
        self._spawn(self._heartbeat_loop())  # 2. heartbeat loop
        self._spawn(self._outbox.run())
        self._spawn(self._follow_events())
        await self.lease_step()  # 3. acquire or renew
        # (on_lease_state_change is a notification: the checklist does not wait for it)
        await self._run_hook("load_local_runs", self._hooks.load_local_runs)  # 4.
        await self._run_hook("reconcile_local_runs", self._hooks.reconcile_local_runs)  # 5.
        if self._stopping:  # a hook swallowed the stop's cancellation: start nothing more
            return
        self._checklist_done = True  # 6. scheduling may start (leader only)
        if self._state.role is Role.LEADER and self._state.term is not None:
            self._work.start(self._state.term)
        self._spawn(self._lease_loop())
        initial = self._hooks.on_initial_state
        if initial is not None:
            snapshot = self.status_snapshot()
            self._hook_queue.put("on_initial_state", lambda: initial(snapshot))
        self.log.info("daemon.started", role=self._state.role.value, term=self._state.term)

    async def stop(self) -> None:
        """Leave leadership at once (and end a start under way), give leader work a bounded
        while to stop, then release the lease (also one a reply in flight granted) and mark
        the controller stopping; within about a second (plus ``Hooks.stop_grace``) whatever
        the hooks do, unless a hook blocks the event loop itself (``time.sleep``)."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        self.log.info("daemon.stopping", role=self._state.role.value)
        # every wait below is bounded, and all of them together by one budget, so a stop
        # takes under a second even with Redis gone or a hook that will not finish
        loop = asyncio.get_running_loop()
        grace = self._hooks.stop_grace
        ends = loop.time() + SHUTDOWN_BUDGET + grace

        def left(cap: float = SHUTDOWN_STEP_TIMEOUT, floor: float = 0.01) -> float:
            return max(floor, min(cap, ends - loop.time()))

        # first, in one step: no renewal or acquire any more, nothing new admitted,
        # can_schedule() false, every leader task cancelled, on_stopped_leading queued; a
        # start under way ends too
        starting = self._starting
        if starting is asyncio.current_task():
            starting = None  # a start-up hook asked for the stop: it ends with this task
        if starting is not None:
            starting.cancel()
        for task in self._loops:
            task.cancel()
        if self._mode_reader is not None:
            self._mode_reader.cancel()
        self._observe_now(Resigned(self._clock.monotonic()))
        # leader work was told to stop: it gets a bounded while to finish (what does not is
        # logged hook.abandoned), then the lease is released whatever it does, so nobody waits
        # a TTL and the fence refuses a task that would not stop
        work_stopped = await self._work.stopped(left(LEADER_STOP_WAIT + grace), during="stop")
        # bounded: a library that swallows a cancellation must not hold up the shutdown
        waits = [*self._loops, *([starting] if starting is not None else [])]
        if waits:
            await asyncio.wait(waits, timeout=left())
        self._cancel_deadline_timer()
        await self._release_on_stop(left, work_stopped=work_stopped)
        await self._beat_stopping(left())
        with contextlib.suppress(TimeoutError):
            await bounded(self._outbox.flush(), left())
        if self._owns_redis:
            with contextlib.suppress(Exception):
                await bounded(self._redis.aclose(), left())
        if self._masters is not None:
            with contextlib.suppress(Exception):
                await bounded(self._masters.aclose(), left())
        # the last hooks (on_lease_state_change for the stop) within what is left; what
        # overran the budget was abandoned: cancel it once more, leave nothing behind
        if self._guardian is not None:
            self._guardian.ended()  # released above (or tried): nothing left for it to release
            self._guardian.close()  # it exits
        await self._hook_queue.settled(left())
        self._work.cancel_all()
        self._work_queue.cancel_all()
        self._hook_queue.cancel_all()
        self.log.info("daemon.stopped")
        self.stopped.set()

    async def _beat_stopping(self, wait: float) -> None:
        """Mark the controller stopping (one heartbeat), within ``wait`` seconds."""
        with contextlib.suppress(CoordinatorError, TimeoutError, *UNAVAILABLE):
            await bounded(self._heartbeat.beat("stopping"), wait)

    async def _release_on_stop(self, left: Callable[..., float], *, work_stopped: bool) -> None:
        # an acquire or renew in flight as the stop began may yet grant the lease: let its
        # reply land first (bounded), so the release comes after the grant in Redis
        call = self._lease_call
        if call is not None and not call.done():
            await asyncio.wait([call], timeout=left())
        if not self._asked_for_lease:
            return  # never asked Redis for the lease: nothing to give back
        with contextlib.suppress(TimeoutError):  # announce earlier changes first, in order
            await bounded(self._outbox.flush(), left())
        unanswered = call if call is not None and not call.done() else None
        released = await self._release_once(left, work_stopped=work_stopped)
        if unanswered is None:
            return
        # still unanswered at the release: Redis may run it after the release (e.g. both
        # held up by a CLIENT PAUSE, then served in another order), and an acquire then
        # grants a fresh tenure to this stopped daemon. Wait what is left, release again
        if not unanswered.done():
            await asyncio.wait([unanswered], timeout=left(cap=SHUTDOWN_BUDGET))
        if not unanswered.done():
            unanswered.cancel()
            if not released:
                self.log.warning("lease.release_uncertain",
                                 reason="a lease request sent before the stop did not answer; "
                                 "if Redis grants it, that lease expires after one TTL")
        elif (not unanswered.cancelled() and unanswered.exception() is None
              and unanswered.result().is_leader):
            await self._release_once(left, work_stopped=work_stopped)

    async def _release_once(self, left: Callable[..., float], *, work_stopped: bool) -> bool:
        started = asyncio.get_running_loop().time()
        try:
            # any term of this holder's instance (release.lua checks both): also a lease a
            # reply granted that this daemon never observed; never another node's or tenure's
            result = await bounded(self._lease.release(), left(floor=RELEASE_MIN_WAIT))
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            self.log.warning("lease.release_failed", error=describe(e),
                             waited_s=round(asyncio.get_running_loop().time() - started, 3))
            return False
        self.log.info("lease.released", term=self._state.term, released=result.released,
                      leader_work_finished=work_stopped)
        if result.released:
            await self._observe(Released(self._clock.monotonic()))
        return result.released
