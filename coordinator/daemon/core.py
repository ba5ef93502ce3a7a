"""The daemon's core: its parts, the read-only surface, and carrying out the state machine's
effects (one synchronous step per observation: state, timers, cancellations, hooks queued).

All decisions live in ``coordinator.daemon.state``; the modules of the daemon only do I/O.
The daemon is one class built in layers, each a module of one concern: this core, the
handover (``handover``), following the events channel, the mode and Sentinel
(``following``), the lease and heartbeat loops (``loops``) and the lifecycle (``daemon``:
start and stop).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from coordinator.clock import Clock
from coordinator.connection.backend import connect, master_kwargs
from coordinator.connection.eviction import (
    EvictionWatch,
    RedisReport,
)
from coordinator.connection.sentinel_follow import SentinelFollower
from coordinator.connection.sentinel_master import SentinelMasters
from coordinator.daemon.hooks import HookQueue, Hooks, LeaderContext
from coordinator.daemon.leader_work import Leadership, LeaderWork
from coordinator.daemon.metrics import Metrics
from coordinator.daemon.state import (
    DeadlinePassed,
    ModeReading,
    Observation,
    Role,
    StartLeading,
    State,
    StopLeading,
    Timing,
    Transition,
    can_schedule,
    mode_reading_is_stale,
    step,
)
from coordinator.guardian.guardian_link import GuardianLink
from coordinator.logs import get_logger
from coordinator.protocol.corrupt_keys import OncePer
from coordinator.protocol.events import Outbox
from coordinator.protocol.lease import Lease, new_instance_id
from coordinator.protocol.membership import Heartbeat
from coordinator.protocol.modes import MODES
from coordinator.protocol.records import ReleaseResult
from coordinator.settings import Settings


def describe(error: BaseException) -> str:
    """A one-line description of an error, safe to log and show (no secrets in our messages)."""
    if isinstance(error, TimeoutError):
        return "Redis did not answer in time"
    return str(error) or type(error).__name__


def handover_outcome(result: ReleaseResult) -> dict[str, Any]:
    """Whether a handover's release reserved the lease for its target, or why not."""
    return {"reserved_for": result.reserved_for, "handoff_refused": result.handoff_refused}

DEADLINE_RECHECK = 1.0  # seconds between looks at the local deadline, at most


class DaemonCore:
    """The daemon's parts and state; what every layer above builds on."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis: Any = None,
        hooks: Hooks | None = None,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.instance_id = new_instance_id()
        self._clock = clock or Clock()
        self._corrupt_logged = OncePer()
        self._hooks = hooks or Hooks()
        self._owns_redis = redis is None
        self._redis = redis if redis is not None else connect(settings)
        self._timing = Timing(settings.lease_ttl, settings.renew_interval,
                              settings.renew_failure_threshold)
        self._op_timeout = min(settings.renew_interval, 5.0)
        self._lease = Lease(
            self._redis, holder_id=settings.node_id, holder_host=settings.host,
            ttl=settings.lease_ttl, name=settings.lease_name, namespace=settings.namespace,
            instance_id=self.instance_id, history_maxlen=settings.history_maxlen,
        )
        self._heartbeat = Heartbeat(
            self._redis, namespace=settings.namespace, node_id=settings.node_id,
            host=settings.host, role=settings.role, priority=settings.effective_priority,
            version=settings.version, instance_id=self.instance_id,
            interval=settings.heartbeat_interval, retention=settings.heartbeat_retention,
            preferred=settings.is_preferred, lease=settings.lease_name,
        )
        self._outbox = Outbox(self._redis, settings.namespace, history_maxlen=settings.history_maxlen,
                              clock=self._clock, retry_cap=settings.renew_interval)
        self._state = State()
        self._last_sent_at = 0.0
        self._last_early_look = float("-inf")
        self._early_look: asyncio.TimerHandle | None = None
        self._last_heartbeat_at: int | None = None
        self._last_heartbeat_local: float | None = None
        self._automation_mode = "running"
        # the reading the mode last applied came from: a stale one never undoes it
        self._mode_reading: ModeReading | None = None
        self._mode_reader: asyncio.Task[None] | None = None
        self._mode_read_again = False
        self._starting: asyncio.Task[None] | None = None  # start()'s checklist, while it runs
        self._lease_call: asyncio.Future[Any] | None = None  # the acquire/renew in flight
        self._asked_for_lease = False
        self._handoff_target: str | None = None  # planned by this tenure, forgotten with it
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._pending_background: set[asyncio.Task[None]] = set()
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._checklist_done = False
        self._start_called = False
        self.redis_report = RedisReport()  # what start() found about Redis's configuration
        self._eviction = EvictionWatch()  # re-read once a minute on the heartbeat loop
        self._deployment_checked = False  # the settings' own warnings, logged once
        self._stopping = False
        self.stopped = asyncio.Event()
        self.log = get_logger("coordinator.daemon").bind(node_id=settings.node_id)
        if settings.many_leases:  # one daemon per lease of a node: every line names its lease
            self.log = self.log.bind(lease=settings.lease_name)
        # hooks run in order, off the loops; one that overruns a TTL is abandoned. Two
        # queues: notifications (on_lease_state_change, on_automation_mode_change) never
        # hold up leader work (the wait for it, on_stopped_leading, on_started_leading)
        self._hook_queue = HookQueue(self.log, bound=settings.lease_ttl)
        self._work_queue = HookQueue(self.log, bound=settings.lease_ttl)
        self._work = LeaderWork(self._hooks, self._work_queue, self.log, self._context,
                                self._mode_now)
        # releases the lease if this process dies while leading (COORDINATOR_GUARDIAN)
        # (only on a connection made from the settings: it reaches Redis with them)
        self._guardian = (GuardianLink(settings, self._lease, self.log)
                          if settings.guardian and self._owns_redis else None)
        # Sentinel's announcements of a new master (coordinator/connection/sentinel_follow.py), followed
        # from the start-up on (daemon.py) by the daemon's own connection only
        self._switches: SentinelFollower | None = None
        # who may grant: the master the Sentinels name now (coordinator/connection/sentinel_master.py),
        # asked before each acquire that may grant, whatever the connections reach
        password = settings.redis_sentinel_password
        self._masters = (SentinelMasters(
            settings.sentinel_addresses, settings.redis_sentinel_service,
            password=None if password is None else password.get_secret_value(),
            timeout=self._op_timeout,
            server_kwargs=master_kwargs(settings, op_timeout=self._op_timeout))
            if settings.sentinel_addresses else None)

    @property
    def state(self) -> State:
        """The state machine's current state (an immutable value)."""
        return self._state

    @property
    def lease(self) -> Lease:
        """The lease this daemon competes for."""
        return self._lease

    def can_schedule(self) -> bool:
        """True only while leader, the lease is known held, and the local deadline holds."""
        return can_schedule(self._state, self._clock.monotonic())

    def leadership(self) -> Leadership:
        """Whether this node leads now and under which term, from one reading of the state
        (two reads, ``can_schedule()`` then ``state.term``, could straddle a change)."""
        state = self._state  # immutable: one reading
        leading = (not self._stopping and self._checklist_done and self._work.term is not None
                   and state.term is not None and can_schedule(state, self._clock.monotonic()))
        return Leadership(leading, state.term if leading else None)

    def status_snapshot(self) -> dict[str, Any]:
        """The seed's status fields, snake_case, JSON-ready."""
        s = self._state
        now = self._clock.monotonic()
        held = can_schedule(s, now)
        if held:
            lease_state = "held"
        elif s.role is Role.STANDBY and s.leader_id is not None:
            lease_state = "held_by_other"
        elif s.role is Role.STANDBY and s.last_operation == "release":
            lease_state = "released"
        else:
            lease_state = "unknown"
        snapshot = {
            "node_id": self.settings.node_id,
            "host": self.settings.host,
            "role": s.role.value,
            "lease_state": lease_state,
            "scheduler_enabled": self._checklist_done and s.role is Role.LEADER,
            "can_schedule": held,
            "current_leader_id": s.leader_id,
            "current_term": s.term,
            "lease_expires_at": s.lease_expires_at,
            "last_heartbeat_at": self._last_heartbeat_at,
            "last_lease_operation": s.last_operation,
            "next_lease_operation": "renew" if s.role is Role.LEADER else "acquire",
            "consecutive_renew_failures": s.consecutive_failures,
            "last_error": s.last_error,
            "automation_mode": self._automation_mode,
        }
        return {**snapshot, **self._status_fields()}

    def heartbeat_age(self) -> float | None:
        """Seconds since the last successful heartbeat, on the local monotonic clock."""
        if self._last_heartbeat_local is None:
            return None
        return self._clock.monotonic() - self._last_heartbeat_local

    def lease_deadline_in(self) -> float | None:
        """Seconds until the local lease deadline (negative once passed), None when not leading."""
        deadline = self._state.deadline
        return None if deadline is None else deadline - self._clock.monotonic()

    def loops_running(self) -> bool:
        """True once started and until stopped, while none of the loops has died."""
        return self._checklist_done and not self._stopping and all(
            not task.done() for task in self._loops)

    def check_deadline(self) -> None:
        """Leave leadership now if the local deadline has passed (the timer calls this)."""
        self._deadline_timer = None
        deadline = self._state.deadline
        if deadline is None:
            return
        now = self._clock.monotonic()
        if now < deadline:
            self._arm_deadline_timer()
            return
        self._observe_now(DeadlinePassed(now))  # leader work is cancelled in this step

    def _follow_mode(self, mode: Any, redis_now: int, sent_at: float, received_at: float) -> None:
        """Apply a mode Redis reported (a lease reply, or a read the events channel
        prompted), unless the reading is older than the one applied last."""
        seen = ModeReading(str(mode), redis_now, sent_at, received_at)
        if mode_reading_is_stale(self._mode_reading, seen):
            if mode != self._automation_mode:
                applied = self._mode_reading
                self.log.info("automation_mode.stale_ignored", mode=seen.mode[:40],
                              redis_now=redis_now, applied_mode=self._automation_mode,
                              applied_at=None if applied is None else applied.redis_now)
            return
        self._mode_reading = seen
        if mode == self._automation_mode:
            return
        if mode not in MODES:
            self.log.warning("automation_mode.unknown", mode=str(mode)[:40])
            return
        previous, self._automation_mode = self._automation_mode, mode
        self.log.info("automation_mode.changed", mode=mode, previous_mode=previous)
        if mode == "paused":
            self._work.pause()
        elif mode == "running":
            self._work.resume()  # again, if a pause cancelled it or it never began
        hook = self._hooks.on_automation_mode_change
        if hook is not None:
            self._hook_queue.put("on_automation_mode_change", lambda: hook(mode))

    async def _observe(self, seen: Observation) -> None:
        self._observe_now(seen)

    def _observe_now(self, seen: Observation) -> None:
        # one synchronous step: the new state, the timer, the cancellations are in place
        # before anything else runs; the hooks are queued, never awaited here
        old = self._state
        new, effects = step(old, seen, self._timing)
        self._state = new
        self._arm_deadline_timer()
        if self._guardian is not None:  # it learns each tenure as it begins and ends
            if new.role is Role.LEADER and new.term is not None and not new.stopping:
                self._guardian.began(new.term)
            elif not new.stopping:
                self._guardian.ended()
            # while stopping, the tenure it knows stays until the stop's own release: a
            # kill in the middle of a stop (a supervisor's stop timeout) is then released by
            # the guardian, not left to the TTL (its release is conditional: never a later one)
        if new.deadline != old.deadline and self._hooks.on_lease_deadline is not None:
            try:
                self._hooks.on_lease_deadline(new.deadline)
            except Exception:
                self.log.exception("hook.failed", hook="on_lease_deadline")
        for effect in effects:
            if isinstance(effect, Transition):
                self._announce(effect)
            elif isinstance(effect, StopLeading):
                self._leave_leadership(effect.reason)
            elif isinstance(effect, StartLeading) and self._checklist_done:
                self._work.start(effect.term)
        new_leader = self._hooks.on_new_leader
        if (new_leader is not None and new.leader_id is not None and new.term is not None
                and (new.leader_id, new.term) != (old.leader_id, old.term)):
            holder, tenure = new.leader_id, new.term
            self._hook_queue.put("on_new_leader", lambda: new_leader(holder, tenure))
        hook = self._hooks.on_lease_state_change
        if hook is not None and any(isinstance(e, Transition) for e in effects):
            snapshot = self.status_snapshot()
            self._hook_queue.put("on_lease_state_change", lambda: hook(snapshot))

    def _announce(self, change: Transition) -> None:
        self.metrics.transition(change.from_role.value, change.to_role.value)
        self.log.info("state.changed", **{"from": change.from_role.value, "to": change.to_role.value},
                      term=change.term, reason=change.reason, error=self._state.last_error)
        self._outbox.put({
            "type": "state_changed", "node_id": self.settings.node_id, "host": self.settings.host,
            "from": change.from_role.value, "to": change.to_role.value, "term": change.term,
            "reason": change.reason, "at": self._clock.wall_ms(),
            # one node holds many leases: say which one changed (a single lease's event
            # stays as it always was)
            **({"lease": self.settings.lease_name} if self.settings.many_leases else {}),
        })

    def _status_fields(self) -> dict[str, Any]:
        hook = self._hooks.status_fields
        if hook is None:
            return {}
        try:
            return hook()
        except Exception:
            self.log.exception("hook.failed", hook="status_fields")
            return {}

    def _context(self, term: int) -> LeaderContext:
        return LeaderContext(node_id=self.settings.node_id, host=self.settings.host, term=term,
                             _mode=self._mode_now, _lease=self._lease)

    def _mode_now(self) -> str:
        return self._automation_mode

    def _leave_leadership(self, reason: str) -> None:
        if self._work.term is None:
            return
        self._handoff_target = None  # planned for this tenure: the next must choose afresh
        self._work.stop(reason)

    def _arm_deadline_timer(self) -> None:
        self._cancel_deadline_timer()
        deadline = self._state.deadline
        if deadline is not None and not self._stopping:
            # at most a second: the loop's timers run on CLOCK_MONOTONIC, which stands still
            # while the host is suspended, and the deadline (CLOCK_BOOTTIME) does not; each
            # wake re-arms, so a resumed host drops leadership within a second
            delay = min(DEADLINE_RECHECK, max(0.0, deadline - self._clock.monotonic()))
            self._deadline_timer = asyncio.get_running_loop().call_later(delay, self.check_deadline)

    def _cancel_deadline_timer(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    async def _run_hook(self, name: str, hook: Callable[..., Awaitable[Any]] | None,
                        *args: Any) -> None:
        if hook is None:
            return
        try:
            await hook(*args)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("hook.failed", hook=name)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._stopping:  # a start that went on after a stop starts no loop
            coro.close()
            return
        self._loops.append(asyncio.ensure_future(coro))

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._pending_background.add(task)  # a reference, so the task is not collected
        task.add_done_callback(self._pending_background.discard)

    def _background_safe_close(self, pubsub: Any) -> None:
        async def close() -> None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        self._background(close())
