"""What a many-lease node hears, once for all its leases: the namespace's events channel (a
lease handed over to it, a lease freed, the registry or the mode changed) and Sentinel's
announcements of a new master. As for the single lease, an event is a prompt to look at
Redis, never a verdict: anyone who may PUBLISH can write to the channel."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from coordinator.clock import bounded
from coordinator.connection.backend import drop_connections, master_kwargs, switch_to
from coordinator.connection.boundary import UNAVAILABLE
from coordinator.connection.sentinel_follow import MasterSwitch, SentinelFollower
from coordinator.connection.sentinel_master import SentinelMasters
from coordinator.daemon.core import describe
from coordinator.daemon.following import read_mode
from coordinator.errors import CoordinatorError
from coordinator.protocol import keys

if TYPE_CHECKING:
    from coordinator.leases.node import LeaseNode

RETRY_WAIT = 1.0  # seconds between attempts to subscribe again
# a flood of events on the channel costs at most this many extra rounds per renew interval
EARLY_ROUNDS_PER_INTERVAL = 10


class NodeEvents:
    """The node's one subscription to its events channel, its Sentinel follower, and the
    master check every lease's acquire asks."""

    def __init__(self, node: LeaseNode) -> None:
        self._node = node
        settings = node.settings
        self._channel = keys.events_channel(settings.namespace)
        self._last_wake = float("-inf")
        self._background: set[asyncio.Task[Any]] = set()
        self.subscribed = asyncio.Event()  # set once the channel is heard
        password = settings.redis_sentinel_password
        secret = None if password is None else password.get_secret_value()
        timeout = min(settings.renew_interval, 5.0)
        self._masters = (SentinelMasters(
            settings.sentinel_addresses, settings.redis_sentinel_service, password=secret,
            timeout=timeout, server_kwargs=master_kwargs(settings, op_timeout=timeout))
            if settings.sentinel_addresses else None)
        self._switches = (SentinelFollower(
            settings.sentinel_addresses, settings.redis_sentinel_service, password=secret,
            timeout=timeout, on_switch=self._on_master_switch, log=node.log)
            if settings.sentinel_addresses and node._owns_redis else None)

    def grantor(self) -> Callable[[], Awaitable[str]] | None:
        """What every lease's acquire asks before a grant: the master the Sentinels name."""
        return None if self._masters is None else self._masters.current

    async def run(self) -> None:
        """Until cancelled: follow the channel (and Sentinel, when configured)."""
        if self._switches is not None:
            self._spawn(self._switches.run())
        redis = self._node._redis
        # not `while True`: a cancel can reach redis-py's pubsub read as a connection error
        # (and on Python 3.11 a wait_for may swallow it), so the node's stop is checked too
        while not self._node._stopping:
            pubsub = redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                self.subscribed.set()
                while not self._node._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self.heard(message.get("data"))
            except (*UNAVAILABLE, CoordinatorError) as e:
                self._spawn(_close(pubsub))
                if self._node._stopping:
                    return
                self._node.log.debug("events.follow_failed", error=describe(e))
                await asyncio.sleep(RETRY_WAIT)
            except asyncio.CancelledError:
                self._spawn(_close(pubsub))
                raise

    async def close(self) -> None:
        """Stop what runs in the background and close the Sentinel connections."""
        for task in list(self._background):
            task.cancel()
        if self._masters is not None:
            with contextlib.suppress(Exception):
                await bounded(self._masters.aclose(), 0.3)

    def heard(self, data: Any) -> None:
        """One message from the channel."""
        try:
            event = json.loads(data)
        except (TypeError, ValueError, RecursionError):
            return
        if not isinstance(event, dict):
            return
        kind, lease = event.get("type"), event.get("lease")
        node = self._node
        if kind == "automation_mode_changed" and isinstance(lease, str):
            self._wake_soon()  # one lease's own mode: the next round's view reads it
        elif kind == "automation_mode_changed":
            self._spawn(self._read_mode())
        elif kind == "lease_released" and isinstance(lease, str):
            if event.get("handoff_to") == node.settings.node_id:
                self._spawn(node.take(lease))  # reserved for us: take it now, not next round
            else:
                self._wake_soon()  # free now: it may be planned here
        elif kind == "leases_changed" or (kind == "state_changed" and event.get("to") == "stopping"):
            self._wake_soon()

    def _wake_soon(self) -> None:
        now = self._node._clock.monotonic()
        if now - self._last_wake >= self._node.settings.renew_interval / EARLY_ROUNDS_PER_INTERVAL:
            self._last_wake = now
            self._node.wake()

    async def _read_mode(self) -> None:
        node = self._node
        sent = node._clock.monotonic()
        try:
            mode, at = await bounded(read_mode(node._redis, node.settings.namespace),
                                     min(node.settings.renew_interval, 5.0))
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            node.log.warning("automation_mode.read_failed", error=describe(e))
            return
        received = node._clock.monotonic()
        for member in node.members().values():
            member.mode_seen(mode, at, sent, received)

    def _on_master_switch(self, switch: MasterSwitch) -> None:
        # as the single lease (daemon/following.py): leave every lease's leadership before
        # any round trip, then renew on the new master through acquire.lua
        node = self._node
        if not switch_to(node._redis, switch.new):
            return
        node.metrics.master_switched()
        node.log.warning("redis.master_switched", announcement=switch.event,
                         new=f"{switch.new[0]}:{switch.new[1]}", leases=len(node.held_leases()))
        for member in node.members().values():
            member.master_switched()

        async def renew_there() -> None:
            with contextlib.suppress(Exception):
                await drop_connections(node._redis)
            node.wake()

        self._spawn(renew_there())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _close(pubsub: Any) -> None:
    with contextlib.suppress(Exception):
        await pubsub.aclose()
