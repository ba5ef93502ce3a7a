"""The daemon: loops that feed the state machine and carry out its effects.

All decisions live in ``coordinator.state``; this module only does I/O (Redis calls,
timers, tasks, hooks) and keeps the state the machine returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from coordinator import keys
from coordinator.backend import connect, drop_connections, master_kwargs, switch_to
from coordinator.boundary import UNAVAILABLE
from coordinator.clock import Clock, bounded
from coordinator.corrupt_keys import OncePer, corrupt_key_remedy
from coordinator.errors import BackendUnavailableError, CoordinatorError, CorruptDataError
from coordinator.events import Outbox
from coordinator.eviction import (
    UNKNOWN,
    EvictionWatch,
    RedisReport,
    deployment_warnings,
    with_warnings,
)
from coordinator.guardian_link import GuardianLink
from coordinator.handoff import choose_handoff, read_candidates
from coordinator.hooks import HookQueue, Hooks, LeaderContext
from coordinator.leader_work import Leadership, LeaderWork, PassResult
from coordinator.lease import Lease, new_instance_id
from coordinator.logs import get_logger
from coordinator.membership import ControllerStatus, Heartbeat
from coordinator.metrics import Metrics
from coordinator.modes import MODES
from coordinator.records import ReleaseResult
from coordinator.sentinel_follow import MasterSwitch, SentinelFollower
from coordinator.sentinel_master import SentinelMasters
from coordinator.settings import Settings
from coordinator.state import (
    DeadlinePassed,
    Failed,
    Granted,
    HeldByOther,
    MasterSwitched,
    ModeReading,
    Observation,
    Released,
    Resigned,
    Role,
    StartLeading,
    State,
    StopLeading,
    Timing,
    Transition,
    can_schedule,
    mode_reading_is_stale,
    next_attempt_delay,
    redis_clock_jump,
    retry_delay,
    step,
)

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


def describe(error: BaseException) -> str:
    """A one-line description of an error, safe to log and show (no secrets in our messages)."""
    if isinstance(error, TimeoutError):
        return "Redis did not answer in time"
    return str(error) or type(error).__name__


def handover_outcome(result: ReleaseResult) -> dict[str, Any]:
    """Whether a handover's release reserved the lease for its target, or why not."""
    return {"reserved_for": result.reserved_for, "handoff_refused": result.handoff_refused}


DEADLINE_RECHECK = 1.0  # seconds between looks at the local deadline, at most


def _unreachable(url: str, error: BaseException) -> str:
    """Why a start with ``require_redis`` failed, naming the server, never a key."""
    detail = describe(error)
    if "DB index" in detail:
        return (f"Redis at {url} refused the connection's set-up: {detail} (the database "
                "number in COORDINATOR_REDIS_URL is beyond the server's `databases`)")
    return f"Redis at {url} cannot be reached: {detail}"


async def read_mode(redis: Any, namespace: str) -> tuple[str, int]:
    """The automation mode stored in Redis and Redis's clock (ms) as it was read, in one
    transaction; ``running`` when none was ever set."""
    pipe = redis.pipeline(transaction=True)
    pipe.get(keys.automation_mode_key(namespace))
    pipe.time()
    raw, (seconds, micros) = await pipe.execute()
    mode = raw.decode() if isinstance(raw, bytes) else raw
    return (mode if mode is not None else "running"), int(seconds) * 1000 + int(micros) // 1000


def _retrieve(task: asyncio.Future[Any]) -> None:
    # a lease call nobody awaits any more (its caller was cancelled): no warning for it
    if not task.cancelled():
        task.exception()


class Daemon:
    """One controller: heartbeats, the lease loop, the leader gate and leader work."""

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
        # Sentinel's announcements of a new master (coordinator/sentinel_follow.py)
        password = settings.redis_sentinel_password
        self._switches = (SentinelFollower(
            settings.sentinel_addresses, settings.redis_sentinel_service,
            password=None if password is None else password.get_secret_value(),
            timeout=self._op_timeout, on_switch=self._on_master_switch, log=self.log)
            if settings.sentinel_addresses and self._owns_redis else None)
        # who may grant: the master the Sentinels name now (coordinator/sentinel_master.py),
        # asked before each acquire that may grant, whatever the connections reach
        self._masters = (SentinelMasters(
            settings.sentinel_addresses, settings.redis_sentinel_service,
            password=None if password is None else password.get_secret_value(),
            timeout=self._op_timeout,
            server_kwargs=master_kwargs(settings, op_timeout=self._op_timeout))
            if settings.sentinel_addresses else None)

    # ---- the public surface -------------------------------------------------------------

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
        if self._switches is not None:  # before the first grant: no switch goes unheard
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
        with contextlib.suppress(CoordinatorError, TimeoutError, *UNAVAILABLE):
            await bounded(self._heartbeat.beat("stopping"), left())
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

    # ---- one step of each loop (tests drive these directly) -----------------------------

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
                    master=None if self._masters is None else self._masters.current,
                ))
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            self.metrics.observe_renew(self._clock.monotonic() - sent, ok=False)
            if not isinstance(e, CorruptDataError):
                self.log.warning("lease.failed", error=describe(e),
                                 failures=self._state.consecutive_failures + 1)
            elif self._corrupt_logged.due(e.key, sent):  # the same every renew: once a minute
                self.log.error("lease.corrupt", key=e.key, error=describe(e),
                               remedy=corrupt_key_remedy(e.key),
                               failures=self._state.consecutive_failures + 1)
            await self._observe(Failed(self._clock.monotonic(), describe(e)))
            return
        received = self._clock.monotonic()
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

    async def consider_handoff(self) -> None:
        """As leader, decide whether to hand the lease over at the next renew boundary:
        to a preferred controller that has been steady long enough, or as an operator asked."""
        term = self._work.term
        try:
            candidates, requested, now = await bounded(
                read_candidates(self._redis, self.settings.namespace, self.settings.lease_name),
                self._op_timeout)
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            self.log.warning("handoff.check_failed", error=describe(e))
            return
        target = choose_handoff(
            leader_id=self.settings.node_id, leader_is_preferred=self.settings.is_preferred,
            candidates=candidates, requested=requested, now_ms=now,
            steady_intervals=self.settings.handoff_steady_intervals)
        # only for the tenure that asked: one that ended meanwhile took its plan along
        if target is not None and term is not None and self._work.term == term and (
                self._state.role is Role.LEADER):
            self.log.info("handoff.planned", to=target, requested=requested is not None)
            self._handoff_target = target
            if requested is not None:
                self._wake.set()  # an operator is waiting: the next boundary is now

    async def hand_over(self, target: str) -> None:
        """Stop leading, wait for leader work to stop, then release the lease reserved for
        ``target`` if Redis still sees it alive (the next term is then theirs)."""
        self._handoff_target = None
        term, deadline = self._state.term, self._state.deadline
        await self._observe(Released(self._clock.monotonic()))  # work stops before the release
        # the lease is still ours until its deadline: leader work may use that long to stop
        wait = 0.0 if deadline is None else max(0.0, deadline - self._clock.monotonic())
        if not await self._work.stopped(wait, during="handover"):
            self.log.warning("lease.handover_skipped", to=target, term=term,
                             reason="leader work did not stop in time; the lease expires")
            return
        try:
            result = await bounded(
                self._lease.release(term=term, handoff_to=target), self._op_timeout)
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            self.log.warning("lease.handover_failed", to=target, error=describe(e))
            return
        self.log.info("lease.handed_over", to=target, term=term, released=result.released,
                      **handover_outcome(result))

    async def lease_round(self) -> None:
        """One round of the lease loop: the planned handover if one is due, else a lease step."""
        if self._handoff_target is not None and self._state.role is Role.LEADER:
            await self.hand_over(self._handoff_target)
            return
        await self.lease_step()

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

    # ---- the loops ----------------------------------------------------------------------

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

    async def _follow_events(self) -> None:
        """Listen on the events channel so a standby acquires the moment a lease is released."""
        failures = 0
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(keys.events_channel(self.settings.namespace))
                failures = 0
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._on_event(message.get("data"))
            except (*UNAVAILABLE, CoordinatorError) as e:
                failures += 1
                self.log.debug("events.follow_failed", error=describe(e))
                self._background_safe_close(pubsub)
                await asyncio.sleep(retry_delay(
                    State(consecutive_failures=failures), self._timing, self._clock.jitter()))

    def _on_event(self, data: Any) -> None:
        try:
            event = json.loads(data)
        except (TypeError, ValueError, RecursionError):  # anyone may publish: never fatal
            return
        if not isinstance(event, dict):
            return
        if event.get("type") == "automation_mode_changed":
            # a prompt, never the mode itself: anyone who may PUBLISH could forge it
            self._read_mode_soon()
            return
        if event.get("lease") != self.settings.lease_name:
            return
        # the channel is advisory: anyone who may PUBLISH can write to it, so nothing heard
        # here (a term above all) may raise the term floor or stop this daemon from leading;
        # an event only prompts an earlier look at Redis
        kind = event.get("type")
        if kind == "leader_changed" and self._state.role is Role.LEADER:
            if event.get("holder_id") != self.settings.node_id:
                # someone says another node leads: a prompt, not a verdict. Look at Redis
                # now rather than at the next renewal (e.g. after Redis's clock stepped,
                # the key lapsed early and another node took it); only the reply decides
                self._look_early()
        elif kind == "lease_released" and self._state.role is not Role.LEADER:
            if event.get("handoff_to") in (None, self.settings.node_id):
                self._wake.set()
        elif kind == "handoff_requested" and self._state.role is Role.LEADER:
            self._background(self.consider_handoff())

    def _on_master_switch(self, switch: MasterSwitch) -> None:
        # the old master renews our tenure until Sentinel demotes it: leave now, before any
        # round trip (a node on the new master may be granted a term there at once), then
        # renew on the new master, whose reply decides whether we lead again
        if not switch_to(self._redis, switch.new):
            return
        self.metrics.master_switched()
        self.log.warning("redis.master_switched", announcement=switch.event,
                         old=None if switch.old is None else f"{switch.old[0]}:{switch.old[1]}",
                         new=f"{switch.new[0]}:{switch.new[1]}",
                         sentinel=f"{switch.sentinel[0]}:{switch.sentinel[1]}",
                         role=self._state.role.value, term=self._state.term)
        self._observe_now(MasterSwitched(self._clock.monotonic()))
        # the next renewal goes through acquire.lua, which renews only on the master the
        # Sentinels name: a connection still on the old one cannot give the tenure back
        self._lease.forget_held()

        async def renew_there() -> None:
            with contextlib.suppress(Exception):  # a failure shows in the renewal that follows
                await drop_connections(self._redis)
            self._wake.set()

        self._background(renew_there())

    def _look_early(self) -> None:
        # at once, or as soon as the last early look is a tenth of a renew interval old: a
        # flood of events on the channel costs at most ten extra renewals per interval
        if self._early_look is not None:
            return
        wait = self._last_early_look + self._timing.renew_interval / 10 - self._clock.monotonic()

        def look() -> None:
            self._early_look = None
            self._last_early_look = self._clock.monotonic()
            self._wake.set()

        if wait <= 0:
            look()
        else:
            self._early_look = asyncio.get_running_loop().call_later(wait, look)

    def _read_mode_soon(self) -> None:
        # one read at a time; events heard meanwhile make one more read after it
        if self._mode_reader is not None:
            self._mode_read_again = True
            return
        self._mode_reader = asyncio.ensure_future(self._read_modes())

    async def _read_modes(self) -> None:
        try:
            again = True
            while again and not self._stopping:
                self._mode_read_again = False
                sent = self._clock.monotonic()
                try:
                    mode, at = await bounded(read_mode(self._redis, self.settings.namespace),
                                             self._op_timeout)
                except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
                    self.log.warning("automation_mode.read_failed", error=describe(e))
                else:
                    self.log.debug("automation_mode.read", mode=str(mode)[:40], redis_now=at)
                    self._follow_mode(mode, at, sent, self._clock.monotonic())
                again = self._mode_read_again
        finally:
            self._mode_reader = None

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

    # ---- carrying out the state machine's effects ---------------------------------------

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
