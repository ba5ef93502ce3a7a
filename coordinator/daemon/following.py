"""Following what the daemon hears: the namespace's events channel and automation mode
(prompts to look at Redis early, never verdicts: anyone who may PUBLISH can write to the
channel), and Sentinel's announcements of a new master (leave leadership at once, renew there)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from coordinator.clock import bounded
from coordinator.connection.backend import drop_connections, switch_to
from coordinator.connection.boundary import UNAVAILABLE
from coordinator.connection.sentinel_follow import MasterSwitch
from coordinator.daemon.core import describe
from coordinator.daemon.handover import DaemonHandover
from coordinator.daemon.state import (
    MasterSwitched,
    Role,
    State,
    retry_delay,
)
from coordinator.errors import CoordinatorError
from coordinator.protocol import keys


async def read_mode(redis: Any, namespace: str) -> tuple[str, int]:
    """The automation mode stored in Redis and Redis's clock (ms) as it was read, in one
    transaction; ``running`` when none was ever set."""
    pipe = redis.pipeline(transaction=True)
    pipe.get(keys.automation_mode_key(namespace))
    pipe.time()
    raw, (seconds, micros) = await pipe.execute()
    mode = raw.decode() if isinstance(raw, bytes) else raw
    return (mode if mode is not None else "running"), int(seconds) * 1000 + int(micros) // 1000


class DaemonFollowing(DaemonHandover):
    """Adds the events channel and the mode reads."""

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
