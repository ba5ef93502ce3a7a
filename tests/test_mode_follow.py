"""The mode a daemon applies is the one stored in Redis, and only the freshest reading of
it: an automation_mode_changed event only prompts a read (anyone who may PUBLISH could
forge one), and a lease reply that left Redis before a newer reading never undoes it. On
fakeredis and real Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from coordinator.daemon.daemon import Daemon
from coordinator.daemon.hooks import Hooks, LeaderContext
from coordinator.protocol import keys
from coordinator.protocol.modes import set_automation_mode
from tests.fake_clock import FakeClock
from tests.log_capture import capture_logs
from tests.test_lifecycle import HANG, forever, settings, settle, until


def mode_of(daemon: Daemon) -> str:
    return str(daemon.status_snapshot()["automation_mode"])


async def test_a_forged_mode_event_does_not_override_the_mode_in_redis(redis: Any) -> None:
    led: list[int] = []

    async def lead(ctx: LeaderContext) -> None:
        led.append(ctx.term)
        await forever()

    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock(),
                    hooks=Hooks(on_started_leading=lead))
    await daemon.start()
    try:
        await until(lambda: len(led) == 1)
        await set_automation_mode(redis, "coordinator", "paused")
        await until(lambda: mode_of(daemon) == "paused")
        with capture_logs() as logs:
            forged = {"type": "automation_mode_changed", "mode": "running",
                      "previous_mode": "paused", "at": 0}
            await redis.publish(keys.events_channel("coordinator"), json.dumps(forged))
            # the daemon heard it: it read the mode again (or, before, simply obeyed)
            await until(lambda: mode_of(daemon) == "running" or any(
                e["event"] == "automation_mode.read" for e in logs))
        await settle()
        assert mode_of(daemon) == "paused"
        assert len(led) == 1  # the paused work did not start again
    finally:
        await daemon.stop()


async def test_a_stale_lease_reply_does_not_undo_a_newer_pause(redis: Any) -> None:
    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock())
    await daemon.start()
    try:
        assert mode_of(daemon) == "running"
        # a renewal that Redis answers now ("running") but whose reply is slow to come back
        real_acquire = daemon.lease.acquire
        answered, let_go = asyncio.Event(), asyncio.Event()

        async def slow_reply(**kw: Any) -> Any:
            result = await real_acquire(**kw)
            answered.set()
            await let_go.wait()
            return result

        daemon.lease.acquire = slow_reply  # type: ignore[method-assign]
        renewing = asyncio.ensure_future(daemon.lease_step())
        await asyncio.wait_for(answered.wait(), HANG)
        await set_automation_mode(redis, "coordinator", "paused")  # after Redis answered
        await until(lambda: mode_of(daemon) == "paused")  # via the event (and a read)
        with capture_logs() as logs:
            let_go.set()
            await asyncio.wait_for(renewing, HANG)
        assert mode_of(daemon) == "paused"
        assert "automation_mode.stale_ignored" in [e["event"] for e in logs]
        daemon.lease.acquire = real_acquire  # type: ignore[method-assign]
        await daemon.lease_step()  # a fresh reply agrees
        assert mode_of(daemon) == "paused"
    finally:
        await daemon.stop()
