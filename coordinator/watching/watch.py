"""Watching a namespace without missing a change: a resync on every (re)connect, replay by id.

The history stream is the record; the pub/sub channel is the doorbell that says "something
was appended". Every stored event a watcher yields therefore carries its stream id, events
missed while Redis was away are replayed from the stream, and none is yielded twice.

A lease that lapses publishes nothing, so the watcher also re-reads its lease when the expiry
it knows has passed (coordinator.watching.lease_expiry decides) and reports a lapse as
``lease_expired``, a local event of the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
import types
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from coordinator.clock import Clock
from coordinator.connection.boundary import redis_errors
from coordinator.errors import BackendUnavailableError, CorruptDataError, InvalidArgumentError
from coordinator.logs import get_logger
from coordinator.protocol import keys
from coordinator.protocol.event_models import (
    Disconnected,
    LeaderChanged,
    LeaseExpired,
    LeaseReleased,
    Resync,
    WatchEvent,
    parse_event,
)
from coordinator.protocol.lease import read_lease
from coordinator.protocol.membership import redis_time_ms
from coordinator.watching.history import (
    last_entry_id,
    next_stream_id,
    parse_entries,
    parse_stream_id,
    reach_gap,
    read_entries,
)
from coordinator.watching.lease_expiry import (
    Picture,
    Reading,
    after_events,
    after_recheck,
    from_reading,
    resync_of,
    touches_tenure,
)

log = get_logger("coordinator.watch")

# under a second even at full jitter, so the resync follows Redis's return within ~1 s
MAX_BACKOFF = 0.8
ATTEMPT_TIMEOUT = 2.0
IDLE_PING = 5.0
_OUTAGE = (BackendUnavailableError, TimeoutError)


def raise_if_cancelled() -> None:
    """Re-raise a cancellation of the current task that a library call swallowed.

    redis-py sends each command under ``asyncio.wait_for``, which on Python 3.11 returns
    normally when a cancellation arrives just as the send completes; the request stays
    counted on the task. Without this check the watch would wait on, uncancellable.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def backoff_delay(failures: int, cap: float, jitter: float) -> float:
    """Seconds before reconnect attempt ``failures`` (>= 1): doubling from 50 ms, capped."""
    return min(cap, 0.05 * 2.0 ** min(max(failures, 1) - 1, 16)) * (0.5 + 0.5 * jitter)


def _private_pool(redis: Any) -> ConnectionPool | None:
    """A one-connection pool like ``redis``'s but without retries, or None if we cannot copy it.

    redis-py's pub/sub silently reconnects and resubscribes under its retry policy, which
    would hide an outage (and the events dropped in it) from the watcher.
    """
    pool = getattr(redis, "connection_pool", None)
    # a subclass (e.g. Sentinel's) may build connections we cannot copy from kwargs
    if not isinstance(pool, ConnectionPool) or type(pool) not in (
            ConnectionPool, BlockingConnectionPool):
        return None
    kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
    return ConnectionPool(connection_class=pool.connection_class, max_connections=1, **kwargs)


class _Subscription:
    """The channel subscription; it reports a dead link instead of reconnecting behind us."""

    def __init__(self, redis: Any, channel: str, *, idle_ping: float, answer_timeout: float,
                 clock: Clock) -> None:
        self._redis, self._channel, self._clock = redis, channel, clock
        self._idle_ping, self._answer_timeout = idle_ping, answer_timeout
        # kept across calls: a wait cut short by a lease deadline must not postpone the PING
        self._heard_at = clock.monotonic()
        self._pinged_at: float | None = None
        self._pool = _private_pool(redis)
        client = aioredis.Redis(connection_pool=self._pool) if self._pool is not None else redis
        self._pubsub: Any = client.pubsub()

    async def open(self) -> None:
        """Subscribe and wait until Redis confirms it."""
        with redis_errors(self._channel):
            await self._pubsub.subscribe(self._channel)
            reply = await self._pubsub.get_message(timeout=self._answer_timeout)
        if reply is None or reply.get("type") != "subscribe":
            raise BackendUnavailableError("Redis did not confirm the events subscription")
        self._heard_at, self._pinged_at = self._clock.monotonic(), None

    async def next_payload(self, until: float | None = None) -> Any:
        """The next published payload, or None once the local time ``until`` has come.

        Raises ``BackendUnavailableError`` if the link died.
        """
        while True:
            raise_if_cancelled()
            now = self._clock.monotonic()
            if self._pinged_at is not None and now - self._pinged_at >= self._answer_timeout:
                raise BackendUnavailableError("Redis did not answer a PING on the subscription")
            if self._pinged_at is None and now - self._heard_at >= self._idle_ping:
                with redis_errors(self._channel):
                    await self._pubsub.ping()
                self._pinged_at = now
                continue
            if until is not None and now >= until:
                return None
            wait = (self._idle_ping - (now - self._heard_at) if self._pinged_at is None
                    else self._answer_timeout - (now - self._pinged_at))
            if until is not None:
                wait = min(wait, until - now)
            with redis_errors(self._channel):
                message = await self._pubsub.get_message(timeout=wait)
            if message is None:
                continue
            # any reply proves the link
            self._heard_at, self._pinged_at = self._clock.monotonic(), None
            if message["type"] == "message":
                return message["data"]
            if message["type"] == "subscribe":  # a client with its own retries reconnected
                raise BackendUnavailableError("the subscription was re-established under us")

    async def close(self) -> None:
        """Drop the subscription and its connection; never raises."""
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await self._pool.disconnect()


class _Watcher:
    """The watcher's I/O: connect (replay + resync), next events, drop; it keeps the cursor.

    It follows the tenure of each lease in ``lease_names`` (one picture each): a resync per
    lease, their leader changes and releases, and a lapse of any of them."""

    def __init__(self, redis: Any, namespace: str, lease_names: tuple[str, ...],
                 resume_from: str | None, *, attempt_timeout: float, idle_ping: float,
                 clock: Clock) -> None:
        self._redis, self._namespace, self._lease_names = redis, namespace, lease_names
        self._channel = keys.events_channel(namespace)
        self._attempt_timeout, self._idle_ping, self._clock = attempt_timeout, idle_ping, clock
        # the id of the last stored event handled; None until the first connect if not resuming
        self.cursor = resume_from
        self._subscription: _Subscription | None = None
        # each lease's tenure as last learnt, and when to re-read it
        self._pictures = dict.fromkeys(lease_names, Picture())

    @property
    def connected(self) -> bool:
        """Whether a subscription is up (a resync has been produced for it)."""
        return self._subscription is not None

    async def connect(self) -> list[WatchEvent]:
        """Subscribe, then replay what was stored after the cursor, then read the lease."""
        subscription = _Subscription(self._redis, self._channel, idle_ping=self._idle_ping,
                                     answer_timeout=self._attempt_timeout, clock=self._clock)
        try:
            async with asyncio.timeout(self._attempt_timeout):
                await subscription.open()
                missed = await self._replay()
                readings = {name: await self._read_lease(name) for name in self._lease_names}
        except BaseException:
            await subscription.close()
            raise
        self._subscription = subscription
        resyncs = []
        for name, reading in readings.items():
            self._pictures[name] = from_reading(reading)
            resync = resync_of(name, reading)
            log.info("watch.resynced", lease=resync.lease, holder_id=resync.holder_id,
                     term=resync.term, replayed=len(missed))
            resyncs.append(resync)
        return [*missed, *resyncs]

    def _recheck_at(self) -> float | None:
        """The earliest local time a followed lease is to be re-read (None: none is)."""
        due = [p.recheck_at for p in self._pictures.values() if p.recheck_at is not None]
        return min(due) if due else None

    def _apply(self, events: list[WatchEvent], local_now: float) -> None:
        for name, picture in self._pictures.items():
            self._pictures[name] = after_events(picture, _of_lease(events, name), local_now)

    async def next_events(self) -> list[WatchEvent]:
        """Wait for the doorbell or the lease's recheck, then return what changed (maybe none)."""
        if self._subscription is None:
            raise RuntimeError("next_events() before connect()")
        payload = await self._subscription.next_payload(until=self._recheck_at())
        if payload is None:
            return await self._recheck()
        try:
            parse_event(payload, source=self._channel)
        except CorruptDataError as e:
            log.warning("watch.malformed_event", channel=self._channel, error=e.detail)
            return []
        async with asyncio.timeout(self._attempt_timeout):
            events = await self._read_after(self.cursor or "0-0")
        self._apply(events, self._clock.monotonic())
        return events

    async def _recheck(self) -> list[WatchEvent]:
        """Re-read the leases due, then the history after the cursor, and judge each lease.

        The history is read after the leases: a release or a successor recorded before a
        lease read is then among the events. If any such event of a lease came, its read may
        predate it, so the events are applied and the lease is re-read at once instead of
        judged.
        """
        now = self._clock.monotonic()
        due = [name for name, p in self._pictures.items()
               if p.recheck_at is not None and p.recheck_at <= now]
        async with asyncio.timeout(self._attempt_timeout):
            readings = {name: await self._read_lease(name) for name in due}
            events = await self._read_after(self.cursor or "0-0")
        found: list[WatchEvent] = []
        for name, reading in readings.items():
            own = _of_lease(events, name)
            if touches_tenure(own):
                self._pictures[name] = after_events(self._pictures[name], own, reading.local_now)
                continue
            self._pictures[name], judged = after_recheck(self._pictures[name], name, reading)
            for event in judged:
                if isinstance(event, LeaseExpired):
                    log.info("watch.lease_expired", lease=event.lease, holder_id=event.holder_id,
                             term=event.term, expired_at=event.at, seen_at=reading.redis_now)
                else:  # the lease changed hands with nothing in the history to say so
                    log.warning("watch.unannounced_change", lease=name,
                                holder_id=reading.record.holder_id if reading.record else None)
            found.extend(judged)
        for name in self._pictures.keys() - readings.keys():  # not due: the events still count
            self._pictures[name] = after_events(self._pictures[name], _of_lease(events, name), now)
        return [*events, *found]

    async def drop(self) -> None:
        """Close the subscription (after an outage, or when the watch ends)."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.close()

    async def _replay(self) -> list[WatchEvent]:
        newest = await last_entry_id(self._redis, self._namespace) or "0-0"
        if self.cursor is None:
            # a fresh watcher starts at the present; the resync covers the past
            self.cursor = newest
            return []
        # the history may no longer reach back to the cursor (trimmed while we were away, or
        # Redis restarted empty): say so, then replay what is left; the resync follows
        gap = await reach_gap(self._redis, self._namespace, self.cursor)
        missed: list[WatchEvent] = [gap] if gap is not None else []
        if parse_stream_id(newest) < parse_stream_id(self.cursor):
            # the stream is older than our cursor: Redis restarted empty or failed over
            log.warning("watch.history_reset", cursor=self.cursor, newest=newest)
            self.cursor = newest
            return missed
        if newest == self.cursor:
            return missed
        return [*missed, *await self._read_after(self.cursor)]

    async def _read_after(self, cursor: str) -> list[WatchEvent]:
        entries = await read_entries(self._redis, self._namespace, next_stream_id(cursor))
        if entries:
            self.cursor = entries[-1][0]
        return [event for _, event in parse_entries(entries, self._namespace)
                if self._concerns_our_lease(event)]

    def _concerns_our_lease(self, event: WatchEvent) -> bool:
        # other leases of the namespace share the channel; the resync speaks of ours only
        return not isinstance(event, LeaderChanged | LeaseReleased) or (
            event.lease in self._pictures)

    async def _read_lease(self, name: str) -> Reading:
        record = await read_lease(self._redis, self._namespace, name)
        with redis_errors(self._channel):
            now = await redis_time_ms(self._redis)
        return Reading(record, now, self._clock.monotonic())


def _of_lease(events: list[WatchEvent], name: str) -> list[WatchEvent]:
    """The tenure events of lease ``name`` among ``events``."""
    return [e for e in events if not isinstance(e, LeaderChanged | LeaseReleased)
            or e.lease == name]


def watch(
    redis: Any,
    *,
    namespace: str = "coordinator",
    lease_name: str = "global",
    leases: Sequence[str] | None = None,
    resume_from: str | None = None,
    max_backoff: float = MAX_BACKOFF,
    attempt_timeout: float = ATTEMPT_TIMEOUT,
    idle_ping: float = IDLE_PING,
    clock: Clock | None = None,
) -> AsyncGenerator[WatchEvent, None]:
    """Yield the namespace's events: a resync first and after every reconnect, then changes.

    A lease that lapses unrenewed is reported as ``lease_expired`` (a local event: the
    watcher re-reads the lease just after the expiry it knows). Runs until closed or
    cancelled. ``resume_from`` (a stream id) replays what was stored after it before the
    first resync. ``leases`` (names, at least one) follows those leases instead of
    ``lease_name``: a resync each, their tenure events, a lapse of any. Arguments are checked
    here, before any Redis call.
    """
    keys.check_name("namespace", namespace)
    keys.check_name("lease name", lease_name)
    followed: tuple[str, ...] = (lease_name,)
    if leases is not None:
        followed = tuple(dict.fromkeys(keys.check_name("lease name", n) for n in leases))
        if not followed:
            raise InvalidArgumentError("leases: name at least one lease")
    if resume_from is not None:
        parse_stream_id(resume_from)
    for name, value in (("max_backoff", max_backoff), ("attempt_timeout", attempt_timeout),
                        ("idle_ping", idle_ping)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise InvalidArgumentError(f"{name} must be a number of seconds > 0, got {value!r}")
    clock = clock or Clock()
    watcher = _Watcher(redis, namespace, followed, resume_from,
                       attempt_timeout=attempt_timeout, idle_ping=idle_ping, clock=clock)
    return _run(watcher, clock, max_backoff)


async def _run(watcher: _Watcher, clock: Clock, max_backoff: float) -> AsyncGenerator[
        WatchEvent, None]:
    never = asyncio.Event()
    failures = 0
    try:
        while True:
            raise_if_cancelled()
            try:
                if watcher.connected:
                    batch = await watcher.next_events()
                else:
                    batch = await watcher.connect()
                    failures = 0
            except _OUTAGE as e:
                await watcher.drop()
                failures += 1
                batch = []
                if failures == 1:  # once per outage
                    log.warning("watch.disconnected", error=str(e) or type(e).__name__)
                    batch = [Disconnected(at=clock.wall_ms())]
            for event in batch:
                yield event
            if failures:
                await clock.wait(never, backoff_delay(failures, max_backoff, clock.jitter()))
    finally:
        await watcher.drop()


async def watch_with_callbacks(
    redis: Any,
    *,
    namespace: str = "coordinator",
    lease_name: str = "global",
    on_new_leader: Callable[[str, int], Awaitable[Any] | Any] | None = None,
    on_event: Callable[[WatchEvent], Awaitable[Any] | Any] | None = None,
    resume_from: str | None = None,
    max_backoff: float = MAX_BACKOFF,
    attempt_timeout: float = ATTEMPT_TIMEOUT,
    idle_ping: float = IDLE_PING,
    clock: Clock | None = None,
) -> None:
    """Watch until cancelled: ``on_event`` for each event, ``on_new_leader(id, term)`` per tenure.

    Callbacks may be plain or async; one that raises is logged and the watch goes on.
    """
    events = watch(redis, namespace=namespace, lease_name=lease_name, resume_from=resume_from,
                   max_backoff=max_backoff, attempt_timeout=attempt_timeout,
                   idle_ping=idle_ping, clock=clock)
    leader: tuple[str, int] | None = None
    async with contextlib.aclosing(events):
        async for event in events:
            if on_event is not None:
                await _call("on_event", on_event, event)
            seen = _leader_in(event)
            if seen is not None and seen != leader:
                leader = seen
                if on_new_leader is not None:
                    await _call("on_new_leader", on_new_leader, *seen)


def _leader_in(event: WatchEvent) -> tuple[str, int] | None:
    if isinstance(event, LeaderChanged):
        return event.holder_id, event.term
    if isinstance(event, Resync) and event.holder_id is not None and event.term is not None:
        return event.holder_id, event.term
    return None


async def _call(name: str, callback: Callable[..., Any], *args: Any) -> None:
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("watch.callback_failed", callback=name)


class _CallableModule(types.ModuleType):
    """This module, callable as its ``watch()``. The package exports ``watch`` lazily (so
    ``coordinator status`` need not import this module), and importing a submodule binds the
    package's attribute of that name to the module: once anything imported
    ``coordinator.watching.watch``, ``from coordinator import watch`` gives this module, which must
    then behave as the function it stands for."""

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncGenerator[WatchEvent, None]:
        return watch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
