"""The daemon's loops: acquire-or-renew fed to the state machine, heartbeats, and the
re-checks of Redis's configuration."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from coordinator.clock import bounded
from coordinator.connection.boundary import UNAVAILABLE
from coordinator.connection.eviction import (
    UNKNOWN,
    deployment_warnings,
    with_warnings,
)
from coordinator.daemon.core import describe
from coordinator.daemon.following import DaemonFollowing
from coordinator.daemon.state import (
    Failed,
    Granted,
    HeldByOther,
    Observation,
    Role,
    next_attempt_delay,
    redis_clock_jump,
)
from coordinator.errors import CoordinatorError, CorruptDataError
from coordinator.protocol.corrupt_keys import corrupt_key_remedy
from coordinator.protocol.membership import ControllerStatus
from coordinator.protocol.records import LeaseResult


def _retrieve(task: asyncio.Future[Any]) -> None:
    # a lease call nobody awaits any more (its caller was cancelled): no warning for it
    if not task.cancelled():
        task.exception()


class DaemonLoops(DaemonFollowing):
    """Adds the lease and heartbeat loops."""

    async def _check_redis(self) -> None:
        """Warn at start, and when a re-read finds it changed, about a Redis that may evict
        the lease (it never stops us: the lease works until memory runs short, and an
        unreadable setting is no error)."""
        first = not self._deployment_checked
        self._deployment_checked = True
        extra = deployment_warnings(sentinel=bool(self.settings.sentinel_addresses),
                                    min_replicas_ack=self.settings.min_replicas_ack)
        if first:
            for warning in extra:
                self.log.warning("redis.replication_risk", warning=warning)
        changed = await self._eviction.refresh(self._redis, self._op_timeout, self._clock.monotonic())
        self.redis_report = with_warnings(self._eviction.report, extra)
        if not changed:
            return
        policy = self.redis_report.maxmemory_policy
        for warning in self._eviction.report.warnings:
            self.log.warning("redis.eviction_risk", maxmemory_policy=policy, warning=warning)
        if policy == UNKNOWN:
            self.log.info("redis.eviction_unknown", maxmemory_policy=policy,
                          hint="CONFIG GET maxmemory-policy was refused or not answered; "
                          "make sure it is noeviction")

    async def lease_step(self) -> None:
        """One acquire-or-renew, fed to the state machine."""
        self._wake.clear()
        sent = self._clock.monotonic()
        self._last_sent_at = sent
        self._asked_for_lease = True
        try:
            result = await self._lease_request(
                self._lease.acquire(
                    # only terms from Redis's own replies: the events channel is advisory
                    highest_seen_term=self._state.highest_seen_term,
                    preferred_holder_id=self.settings.node_id if self.settings.is_preferred else None,
                    wait_replicas=self.settings.min_replicas_ack,
                    wait_timeout_ms=round(self.settings.replica_ack_timeout * 1000),
                    master=self._grantor(),
                ))
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            await self._lease_failed(e, sent)
            return
        await self._lease_answered(result, sent, self._clock.monotonic())

    def _grantor(self) -> Callable[[], Awaitable[str]] | None:
        """What acquire.lua asks before a grant: the master the Sentinels name (or nothing)."""
        return None if self._masters is None else self._masters.current

    async def _lease_failed(self, error: BaseException, sent: float) -> None:
        """A lease call sent at ``sent`` failed: log (a corrupt key once a minute), observe."""
        self.metrics.observe_renew(self._clock.monotonic() - sent, ok=False)
        if not isinstance(error, CorruptDataError):
            self.log.warning("lease.failed", error=describe(error),
                             failures=self._state.consecutive_failures + 1)
        elif self._corrupt_logged.due(error.key, sent):  # the same every renew: once a minute
            self.log.error("lease.corrupt", key=error.key, error=describe(error),
                           remedy=corrupt_key_remedy(error.key),
                           failures=self._state.consecutive_failures + 1)
        await self._observe(Failed(self._clock.monotonic(), describe(error)))

    async def _lease_answered(self, result: LeaseResult, sent: float, received: float) -> None:
        """Feed Redis's answer to a lease call sent at ``sent`` to the state machine."""
        self.metrics.observe_renew(received - sent, ok=True)
        self._follow_mode(result.automation_mode, result.redis_now, sent, received)
        wanted = self.settings.min_replicas_ack
        if result.is_leader and result.replicas_acked is not None and result.replicas_acked < wanted:
            # only the master has this lease: a failover could lose it, so do not lead on it
            error = f"only {result.replicas_acked} of {wanted} replicas acknowledged the lease"
            self.log.warning("lease.failed", error=error, failures=self._state.consecutive_failures + 1)
            await self._observe(Failed(received, error))
            return
        seen: Observation
        if result.is_leader and result.operation is not None:
            if result.operation == "acquire":
                self.log.info("lease.acquired", term=result.term, lease=self.settings.lease_name)
            seen = Granted(sent, received, result.operation, result.holder_id, result.term,
                           result.lease_expires_at, result.redis_now)
        else:
            seen = HeldByOther(received, result.holder_id, result.term, result.lease_expires_at,
                               result.remaining_ms, result.redis_now, sent)
        self._report_redis_clock(seen)
        await self._observe(seen)

    async def _lease_request(self, call: Coroutine[Any, Any, Any]) -> Any:
        """``call`` within the op timeout; a cancellation of the caller (a stop) leaves it
        running, so the stop can wait for its reply before it releases."""
        task = asyncio.ensure_future(call)
        task.add_done_callback(_retrieve)
        self._lease_call = task
        try:
            return await bounded(asyncio.shield(task), self._op_timeout)
        except TimeoutError:
            task.cancel()
            raise

    def _report_redis_clock(self, seen: Observation) -> None:
        """Log and count a step of Redis's clock this reply shows (the state machine acts)."""
        jump = redis_clock_jump(self._state, seen)
        if jump > self._timing.clock_jump_margin:
            self.metrics.redis_clock_jumped(forward=True)
            leading = self._state.role is Role.LEADER
            self.log.warning("lease.redis_clock_jumped", jump_s=round(jump, 3),
                             term=self._state.term,
                             action="leaving leadership" if leading else "not leading")
        elif jump < -self._timing.clock_jump_margin:
            # a backward step makes the lease outlast the local deadline: longer, not shorter
            self.metrics.redis_clock_jumped(forward=False)
            self.log.warning("lease.redis_clock_jumped", jump_s=round(jump, 3),
                             term=self._state.term, action="none: the lease only lasts longer")

    async def heartbeat_once(self, status: ControllerStatus | None = None) -> None:
        """Write one heartbeat (status follows the role unless given)."""
        if status is None:
            status = "degraded" if self._state.role is Role.DEGRADED else "alive"
        sent = self._clock.monotonic()
        try:
            self._last_heartbeat_at = await bounded(
                self._heartbeat.beat(status, self._status_fields()), self._op_timeout)
            self._last_heartbeat_local = self._clock.monotonic()
            self.metrics.observe_heartbeat(self._last_heartbeat_local - sent, ok=True)
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            self.metrics.observe_heartbeat(self._clock.monotonic() - sent, ok=False)
            self.log.warning("heartbeat.failed", error=describe(e))

    async def lease_round(self) -> None:
        """One round of the lease loop: the planned handover if one is due, else a lease step."""
        if self._handoff_target is not None and self._state.role is Role.LEADER:
            await self.hand_over(self._handoff_target)
            return
        await self.lease_step()

    async def _lease_loop(self) -> None:
        # not `while True`: on Python 3.11 asyncio.wait_for swallows a cancel that lands as
        # its awaitable completes, and stop() would then wait for this loop forever
        while not self._stopping:
            delay = next_attempt_delay(self._state, self._timing, last_sent_at=self._last_sent_at,
                                       now=self._clock.monotonic(), jitter=self._clock.jitter())
            await self._clock.wait(self._wake, delay)
            try:
                await self.lease_round()
            except Exception as e:  # never let the loop die; the state machine degrades
                self.log.exception("lease.loop_error")
                await self._observe(Failed(self._clock.monotonic(), describe(e)))

    async def _heartbeat_loop(self) -> None:
        never = asyncio.Event()
        while not self._stopping:  # see _lease_loop
            await self._clock.wait(never, self.settings.heartbeat_interval)
            await self.heartbeat_once()
            if self._state.role is Role.LEADER:
                await self.consider_handoff()
            await self.recheck_redis_if_due()

    async def recheck_redis_if_due(self) -> None:
        """Re-read the eviction policy once a minute so status and /readyz follow a CONFIG SET."""
        if self._eviction.due(self._clock.monotonic()):
            await self._check_redis()
