"""A stop is a clean end of leadership whatever the hooks do and whenever it comes: leader
work is told to stop, waited for a bounded while, then the lease is ALWAYS released (so the
fence refuses a task that would not stop); hooks that are not leader work delay neither the
release nor the next on_started_leading; a stop during start() ends the start too. On
fakeredis and real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coordinator.daemon.daemon import Daemon
from coordinator.daemon.hooks import Hooks, LeaderContext
from tests.fake_clock import FakeClock
from tests.log_capture import capture_logs
from tests.test_lifecycle import HANG, forever, settings, settle, until


@pytest.mark.parametrize("misbehaving", ["ignores_cancel", "on_stopped_leading_hangs"])
async def test_a_stop_releases_the_lease_even_when_leader_work_will_not_stop(
        redis: Any, misbehaving: str) -> None:
    contexts: list[LeaderContext] = []
    unblock = asyncio.Event()

    async def lead(ctx: LeaderContext) -> None:
        contexts.append(ctx)
        while not unblock.is_set():
            try:
                await unblock.wait()
            except asyncio.CancelledError:
                if misbehaving != "ignores_cancel":
                    raise  # swallowed otherwise: it goes on as if nothing happened

    async def stopped() -> None:
        if misbehaving == "on_stopped_leading_hangs":
            await unblock.wait()

    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock(),
                    hooks=Hooks(on_started_leading=lead, on_stopped_leading=stopped))
    await daemon.start()
    await until(lambda: len(contexts) == 1)
    try:
        with capture_logs() as logs:
            await asyncio.wait_for(daemon.stop(), HANG)
        events = [e["event"] for e in logs]
        assert "hook.abandoned" in events  # what did not finish is named
        assert "lease.released" in events and "lease.release_skipped" not in events
        assert await daemon.lease.get() is None
        # the released lease is what makes the fence refuse a task that did not stop
        result = await contexts[0].fenced_set("{coordinator}:job", "late", raise_on_refused=False)
        assert not result.accepted
    finally:
        unblock.set()


async def test_a_hanging_on_lease_state_change_delays_neither_leading_nor_the_release(
        redis: Any) -> None:
    # not leader work: a hook that hangs for ever (bounded only by the TTL, 30 s here)
    led = asyncio.Event()

    async def changed(snapshot: dict[str, Any]) -> None:
        await forever()

    async def lead(ctx: LeaderContext) -> None:
        led.set()
        await forever()

    daemon = Daemon(settings("a", lease_ttl=30, renew_interval=5), redis=redis, clock=FakeClock(),
                    hooks=Hooks(on_lease_state_change=changed, on_started_leading=lead))
    await asyncio.wait_for(daemon.start(), HANG)
    await asyncio.wait_for(led.wait(), HANG)  # not behind the hanging hook
    with capture_logs() as logs:
        await asyncio.wait_for(daemon.stop(), HANG)
    events = [e["event"] for e in logs]
    assert "lease.released" in events
    assert await daemon.lease.get() is None


async def test_a_stop_while_start_awaits_ends_the_start_and_releases(redis: Any) -> None:
    entered = asyncio.Event()
    led: list[int] = []

    async def loading() -> None:
        entered.set()
        await forever()  # a start-up hook that takes for ever

    async def lead(ctx: LeaderContext) -> None:
        led.append(ctx.term)

    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock(),
                    hooks=Hooks(load_local_runs=loading, on_started_leading=lead))
    starting = asyncio.ensure_future(daemon.start())
    await asyncio.wait_for(entered.wait(), HANG)
    assert await daemon.lease.get() is not None  # the start acquired the lease
    await asyncio.wait_for(daemon.stop(), HANG)
    await asyncio.wait_for(starting, HANG)  # the start ended with the stop, quietly
    assert await daemon.lease.get() is None
    assert not daemon.loops_running() and not daemon.can_schedule()
    await settle()
    assert led == []
    assert await daemon.lease.get() is None


async def test_a_stop_before_start_means_the_start_does_nothing(redis: Any) -> None:
    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock())
    await asyncio.wait_for(daemon.stop(), HANG)
    await asyncio.wait_for(daemon.start(), HANG)
    assert await daemon.lease.get() is None
    assert not daemon.loops_running() and not daemon.can_schedule()


@pytest.mark.parametrize("pause_ms", [300, 500])
async def test_a_stop_while_the_first_acquire_is_in_flight_releases_what_it_granted(
        redis_server: Any, pause_ms: int) -> None:
    # the acquire waits in Redis (CLIENT PAUSE) as the stop begins; the grant it brings
    # back belongs to a stopped daemon, which must release it rather than let it expire.
    # 500 ms outlasts the stop's wait for the reply: the release is then held up too, and
    # Redis may serve it before the acquire
    import redis.asyncio as aioredis

    control = aioredis.Redis(port=redis_server.port)
    await control.flushall()
    daemon = Daemon(settings("a", redis_url=redis_server.url))
    first_step = daemon.lease_step

    async def paused_step() -> None:
        await control.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
        await first_step()

    daemon.lease_step = paused_step  # type: ignore[method-assign]
    starting = asyncio.ensure_future(daemon.start())
    try:
        await asyncio.sleep(0.05)  # the acquire is on its way, held up in Redis
        await asyncio.wait_for(daemon.stop(), HANG)
        await asyncio.wait_for(starting, HANG)
        assert await control.exists("{coordinator}:lease:global") == 0
        await asyncio.sleep(0.5)  # nothing granted later either
        assert await control.exists("{coordinator}:lease:global") == 0
    finally:
        await control.execute_command("CLIENT", "UNPAUSE")
        await control.aclose()
