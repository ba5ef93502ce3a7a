"""A node holding many leases: once per renew interval it renews every lease it holds and
writes its heartbeat in one call, reads where every lease is, and acts on the placement plan.

Each lease it holds is a ``LeaseMember`` (a single lease's daemon, driven from here), made
when the plan first sends this node after that lease and stopped once the node no longer
holds it. What a round does, in order:

1. ``renew_many.lua`` for every lease it believes it holds, the heartbeat riding along (its
   controller record says ``lease = *`` with its capacity and selector);
2. ``read_view``: the registry, the live nodes, every lease's holder;
3. the plan (``placement.actions_for``): hand surplus leases over, reserved for the node
   the plan names (release.lua, as the single lease's handover); release leases no longer
   registered; acquire the free ones planned here (acquire.lua, as a standby would).

A handover's target hears ``lease_released`` and acquires at once (``node_events.py``);
everything else waits for the next round, so a change is acted on within one renew interval.
A crashed node's leases expire at the TTL; the survivors plan them onto themselves once its
heartbeat is three renew intervals old (the TTL is at least three), and take them at their
next round after the expiry: within TTL + one renew interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from coordinator.clock import Clock, bounded
from coordinator.connection.backend import connect
from coordinator.connection.boundary import UNAVAILABLE
from coordinator.connection.eviction import RedisReport
from coordinator.daemon.core import describe
from coordinator.daemon.hooks import Hooks, LeaderContext
from coordinator.daemon.leader_work import Leadership, PassResult
from coordinator.daemon.metrics import Metrics
from coordinator.errors import CoordinatorError
from coordinator.leases.member import LeaseMember
from coordinator.leases.node_events import NodeEvents
from coordinator.leases.node_status import node_snapshot
from coordinator.leases.placement import Actions, Node, actions_from_plan, plan_placement
from coordinator.leases.registry import add_leases
from coordinator.leases.renew import ManyLeaseRenewer
from coordinator.leases.view import LeasesView, read_view
from coordinator.logs import get_logger
from coordinator.protocol.lease import new_instance_id
from coordinator.protocol.membership import Heartbeat
from coordinator.protocol.modes import MODES

SHUTDOWN_STEP_TIMEOUT = 0.3
CONCURRENT_CALLS = 16
EXPIRY_MARGIN = 0.005  # seconds after a dead holder's lease expires before the round that takes it

LeaseHooks = Callable[[str], Awaitable[Hooks]]
LeaseClosed = Callable[[str], Awaitable[None]]


class LeaseNode:
    """One controller placing many leases: heartbeats, renewals and the plan, one round per
    renew interval; each held lease with the single lease's guarantees (``LeaseMember``)."""

    def __init__(self, settings: Any, *, redis: Any = None, hooks: Hooks | None = None,
                 lease_hooks: LeaseHooks | None = None, lease_closed: LeaseClosed | None = None,
                 clock: Clock | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.instance_id = new_instance_id()
        self.redis_report = RedisReport()
        self.log = get_logger("coordinator.leases").bind(node_id=settings.node_id)
        self._clock = clock or Clock()
        self._hooks = hooks or Hooks()
        self._lease_hooks, self._lease_closed = lease_hooks, lease_closed
        self._owns_redis = redis is None
        self._redis = redis if redis is not None else connect(settings)
        self._op_timeout = min(settings.renew_interval, 5.0)
        self._me = Node(settings.node_id, settings.effective_capacity, settings.selector)
        heartbeat = Heartbeat(
            self._redis, namespace=settings.namespace, node_id=settings.node_id,
            host=settings.host, role=settings.role, priority=settings.effective_priority,
            version=settings.version, instance_id=self.instance_id,
            # the beat rides on every renewal: liveness is judged by the renew interval, so a
            # crashed node is seen dead within three of them (at most one TTL)
            interval=settings.renew_interval, retention=settings.heartbeat_retention,
            lease="*", capacity=settings.effective_capacity, selector=settings.lease_selector)
        self._heartbeat = heartbeat
        self._renewer = ManyLeaseRenewer(
            self._redis, namespace=settings.namespace, holder_id=settings.node_id,
            instance_id=self.instance_id, ttl=settings.lease_ttl, heartbeat=heartbeat)
        self._members: dict[str, LeaseMember] = {}
        self._opening: dict[str, asyncio.Task[LeaseMember]] = {}
        self._taking: set[str] = set()  # leases with an acquire in flight
        # acquires and handovers in flight at once: a crashed node's hundreds of leases must
        # not take every pooled connection (redis-py's default pool holds 100), which the
        # next renewal of the leases already held needs
        self._calls = asyncio.Semaphore(CONCURRENT_CALLS)
        self._events = NodeEvents(self)
        self.view: LeasesView | None = None
        self.target: int | None = None  # this node's share in the last plan
        self.consecutive_failures = 0
        self._registered_version = 0  # the registry's version after this node registered
        self.last_error: str | None = None
        self._last_heartbeat_at: int | None = None
        self._last_heartbeat_local: float | None = None
        self._wake = asyncio.Event()
        self._expiry_wake: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._stopping = False
        self.stopped = asyncio.Event()

    # ---- what the library reads ----

    def held_leases(self) -> dict[str, int]:
        """The leases this node may act on now, with their terms (their fencing tokens)."""
        held = {}
        for name, member in sorted(self._members.items()):
            leadership = member.leadership()
            if leadership.leading and leadership.term is not None:
                held[name] = leadership.term
        return held

    def leadership(self, lease: str) -> Leadership:
        """Whether this node holds ``lease`` now and under which term, in one reading."""
        member = self._members.get(lease)
        return member.leadership() if member is not None else Leadership(False, None)

    def can_schedule(self, lease: str | None = None) -> bool:
        """Whether this node may act on ``lease`` now (on any lease, when None)."""
        if lease is None:
            return bool(self.held_leases())
        return self.leadership(lease).leading

    async def run_scheduler_pass(self, work: Callable[[LeaderContext], Awaitable[Any]], *,
                                 lease: str) -> PassResult:
        """``Daemon.run_scheduler_pass`` for one lease this node holds."""
        member = self._members.get(lease)
        if member is None or self._stopping:
            return "skipped_not_leader"
        return await member.run_scheduler_pass(work)

    def members(self) -> dict[str, LeaseMember]:
        """The daemon of every lease this node holds or is taking, by lease name."""
        return dict(self._members)

    def status_snapshot(self) -> dict[str, Any]:
        """The node's status: the single daemon's fields plus its leases."""
        return node_snapshot(self)

    def heartbeat_age(self) -> float | None:
        """Seconds since the last successful heartbeat (the renew call), local clock."""
        if self._last_heartbeat_local is None:
            return None
        return self._clock.monotonic() - self._last_heartbeat_local

    def lease_deadline_in(self) -> float | None:
        """Seconds until the nearest local deadline of a held lease, None when none."""
        deadlines = [d for d in (m.lease_deadline_in() for m in self._members.values())
                     if d is not None]
        return min(deadlines) if deadlines else None

    def loops_running(self) -> bool:
        """True once started and until stopped, while its loops run."""
        return self._started and not self._stopping and all(not t.done() for t in self._tasks)

    # ---- lifecycle ----

    async def start(self) -> None:
        """Register ``COORDINATOR_LEASES``, run the start-up hooks, do a first round, and
        leave the loops running."""
        self.log.info("daemon.starting", redis=self.settings.redis_url_redacted,
                      namespace=self.settings.namespace, leases=self.settings.leases,
                      selector=self.settings.lease_selector,
                      capacity=self.settings.effective_capacity, instance_id=self.instance_id)
        await self._register()
        for name in ("load_local_runs", "reconcile_local_runs"):
            hook = getattr(self._hooks, name)
            if hook is not None:
                try:
                    await hook()
                except Exception:
                    self.log.exception("hook.failed", hook=name)
        # listening before the first round: a handover reserved for this node in that round
        # is announced once, and taken at once only by a node that hears it
        self._tasks.append(asyncio.ensure_future(self._events.run()))
        with contextlib.suppress(TimeoutError):
            await bounded(self._events.subscribed.wait(), self._op_timeout)
        await self.round()
        self._started = True
        self._tasks.append(asyncio.ensure_future(self._loop()))
        self.log.info("daemon.started", leases=len(self.held_leases()))

    async def stop(self) -> None:
        """Hand every held lease over to the node the plan without this one names (the
        others are released), stop every lease's daemon and mark the controller stopping."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        self.log.info("daemon.stopping", leases=len(self.held_leases()))
        if self._expiry_wake is not None:
            self._expiry_wake.cancel()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=SHUTDOWN_STEP_TIMEOUT)
        for opening in self._opening.values():
            opening.cancel()
        # first say it stops, so no other node's plan hands it a lease while it leaves (a
        # lease it still holds meanwhile stays its own: acquire.lua answers "held")
        with contextlib.suppress(CoordinatorError, TimeoutError, *UNAVAILABLE):
            await bounded(self._heartbeat.beat("stopping"), SHUTDOWN_STEP_TIMEOUT)
        handed = await self._hand_over_on_stop()
        await asyncio.gather(*(self._drop(name) for name in list(self._members)),
                             return_exceptions=True)
        await self._events.close()
        if self._owns_redis:
            with contextlib.suppress(Exception):
                await bounded(self._redis.aclose(), SHUTDOWN_STEP_TIMEOUT)
        self.log.info("daemon.stopped", handed_over=handed)
        self.stopped.set()

    async def __aenter__(self) -> LeaseNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _register(self) -> None:
        names = self.settings.lease_names
        if not names:
            return
        try:
            change = await bounded(add_leases(self._redis, self.settings.namespace, names),
                                   self._op_timeout)
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            self.log.warning("leases.register_failed", error=describe(e))
            return
        self._registered_version = change.version
        self.log.info("leases.registered", added=len(change.names), version=change.version)

    # ---- one round ----

    async def _loop(self) -> None:
        interval = self.settings.renew_interval
        while not self._stopping:
            begun = self._clock.monotonic()
            try:
                await self.round()
            except Exception:  # never let the loop die: the next round tries again
                self.log.exception("leases.round_error")
            # the work's own time comes off the wait, so a round starts every interval
            await self._clock.wait(self._wake, max(0.0, interval - (self._clock.monotonic() - begun)))
            self._wake.clear()

    def wake(self) -> None:
        """Start the next round now (an event said something moved)."""
        self._wake.set()

    async def round(self) -> None:
        """Renew and beat, read the view, act on the plan; then publish what the leases'
        state machines announced meanwhile."""
        try:
            await self._round()
        finally:
            await self.publish_events()

    async def publish_events(self) -> None:
        """Publish every lease's queued ``state_changed`` events."""
        await asyncio.gather(*(m.publish_events() for m in list(self._members.values())))

    async def _round(self) -> None:
        if not await self._renew_all():
            return
        sent = self._clock.monotonic()
        try:
            view = await bounded(read_view(self._redis, self.settings.namespace), self._op_timeout)
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            self.log.warning("leases.read_failed", error=describe(e))
            return
        received = self._clock.monotonic()
        self.view = view
        if view.version < self._registered_version:
            # the registry is older than what this node registered: Redis lost it (restarted
            # empty, restored from an older copy). An operator's removal raises the version,
            # so it is never undone here
            self.log.warning("leases.registry_lost", version=view.version,
                             registered_version=self._registered_version)
            await self._register()
        elif self._registered_version == 0 and self.settings.lease_names:
            await self._register()  # Redis was away when it started
        for name, member in self._members.items():  # each lease's own mode (pause --lease)
            member.lease_mode_seen(view.modes.get(name), view.redis_now, sent, received)
        await self._act(view, self._actions(view, leaving=False))

    async def _renew_all(self) -> bool:
        names = [name for name, member in self._members.items() if member.renewing]
        sent = self._clock.monotonic()
        try:
            answer = await bounded(self._renewer.renew(names, beat=True), self._op_timeout)
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            self.consecutive_failures += 1
            self.last_error = describe(e)
            self.metrics.observe_heartbeat(self._clock.monotonic() - sent, ok=False)
            self.log.warning("leases.renew_failed", error=describe(e), leases=len(names),
                             failures=self.consecutive_failures)
            await asyncio.gather(*(self._members[n].renewal_failed(e, sent) for n in names
                                   if n in self._members))
            return False
        received = self._clock.monotonic()
        self.metrics.observe_heartbeat(received - sent, ok=True)
        self.consecutive_failures, self.last_error = 0, None
        if answer.heartbeat_started_at is not None:
            self._last_heartbeat_at, self._last_heartbeat_local = answer.redis_now, received
        foreign = answer.heartbeat_error()
        if foreign is not None:
            self.log.error("heartbeat.failed", error=describe(foreign))
        for renewal in answer.renewals:
            member = self._members.get(renewal.name)
            if member is not None:
                await member.renewal_seen(renewal, answer, sent, received)
        return True

    def _actions(self, view: LeasesView, *, leaving: bool) -> Actions:
        nodes = [n for n in view.nodes if n.node_id != self._me.node_id]
        if not leaving:
            nodes.append(self._me)  # it beat a moment ago, whatever the view read
        holders = dict(view.holders)
        for lease, target in view.reserved.items():  # handed to its target: as if it held it
            holders.setdefault(lease, target)
        for name, member in self._members.items():  # what this process holds, it knows best
            if member.renewing:
                holders[name] = self._me.node_id
        registered = [lease for lease in view.leases if lease not in view.corrupt]
        plan = plan_placement(registered, nodes, holders, view.preferred)
        if not leaving:
            self.target = plan.targets.get(self._me.node_id)
        return actions_from_plan(self._me.node_id, plan, view.leases, holders)

    async def _act(self, view: LeasesView, actions: Actions) -> None:
        me = self._me.node_id
        # reserved for this node by a handover whose announcement it missed (it was starting,
        # or its subscription was down): nobody else may take it meanwhile
        handed = [lease for lease, target in view.reserved.items()
                  if target == me and lease not in view.holders and lease not in actions.acquire]
        moves = [self._hand_over(lease, to) for lease, to in actions.hand_over]
        drops = [self._drop(lease) for lease in actions.release]
        takes = [self.take(lease) for lease in (*actions.acquire, *handed)
                 if lease not in view.corrupt]
        await asyncio.gather(*moves, *drops, *takes)
        self._wake_at_expiry(view, actions.acquire)
        planned = {*actions.acquire, *handed}
        for name, member in list(self._members.items()):  # leases it tried for and lost
            if not (member.renewing or name in planned or name in self._opening
                    or name in self._taking):  # (an acquire in flight may yet grant it)
                await self._drop(name)

    def _wake_at_expiry(self, view: LeasesView, planned: tuple[str, ...]) -> None:
        """A lease planned here is still held by a node that is gone (a crash): its hash
        expires at a known Redis time, so the next round starts then, not up to a renew
        interval later (a crashed node's leases are taken at about the TTL)."""
        ends = [view.expires_at[lease] for lease in planned
                if lease in view.expires_at and view.holders.get(lease) != self._me.node_id]
        if not ends:
            return
        delay = (min(ends) - view.redis_now) / 1000 + EXPIRY_MARGIN
        if 0 < delay < self.settings.renew_interval:
            if self._expiry_wake is not None:
                self._expiry_wake.cancel()
            self._expiry_wake = asyncio.get_running_loop().call_later(delay, self.wake)

    async def take(self, lease: str) -> None:
        """Acquire ``lease`` now (the plan or a handover reserved for this node sends it here)."""
        if self._stopping:
            return
        self._taking.add(lease)
        try:
            member = await self._member(lease)
            if member is not None and not member.renewing:
                async with self._calls:
                    await member.lease_step()
        finally:
            self._taking.discard(lease)

    async def _hand_over(self, lease: str, target: str) -> None:
        member = self._members.get(lease)
        if member is None or not member.renewing:
            return
        self.log.info("leases.hand_over", lease=lease, to=target)
        async with self._calls:
            await member.hand_over(target)
        await self._drop(lease)

    async def _hand_over_on_stop(self) -> int:
        held = [name for name, member in self._members.items() if member.renewing]
        if not held:
            return 0
        try:
            view = await bounded(read_view(self._redis, self.settings.namespace), SHUTDOWN_STEP_TIMEOUT)
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            self.log.warning("leases.hand_over_skipped", error=describe(e),
                             reason="the view could not be read; the leases are released")
            return 0
        actions = self._actions(view, leaving=True)
        await asyncio.gather(*(self._hand_over(lease, to) for lease, to in actions.hand_over),
                             return_exceptions=True)
        return len(actions.hand_over)

    # ---- the members ----

    async def _member(self, lease: str) -> LeaseMember | None:
        member = self._members.get(lease)
        if member is not None:
            return member
        opening = self._opening.get(lease)
        if opening is None:
            opening = self._opening[lease] = asyncio.ensure_future(self._open(lease))
        try:
            return await asyncio.shield(opening)
        except Exception:
            self.log.exception("leases.member_failed", lease=lease)
            return None
        finally:
            self._opening.pop(lease, None)

    async def _open(self, lease: str) -> LeaseMember:
        settings = self.settings.model_copy(update={"lease_name": lease})
        hooks = (await self._lease_hooks(lease) if self._lease_hooks is not None
                 else dataclasses.replace(self._hooks, load_local_runs=None,
                                          reconcile_local_runs=None, on_initial_state=None))
        # its own mode as last read, before its first acquire: a paused lease starts no work
        mode = None if self.view is None else self.view.modes.get(lease)
        member = LeaseMember(settings, redis=self._redis, instance_id=self.instance_id,
                             hooks=hooks, clock=self._clock, metrics=self.metrics,
                             grantor=self._events.grantor(),
                             lease_mode=mode if mode in MODES else "running")
        await member.start()
        self._members[lease] = member
        return member

    async def _drop(self, lease: str) -> None:
        member = self._members.pop(lease, None)
        if member is None:
            return
        await member.stop()  # releases the lease if this process still holds it
        if self._lease_closed is not None:
            try:
                await self._lease_closed(lease)
            except Exception:
                self.log.exception("leases.close_failed", lease=lease)
