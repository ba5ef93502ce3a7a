"""The background-thread facade, against a real redis-server."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from coordinator.daemon.hooks import Hooks, LeaderContext
from coordinator.daemon.threaded import BackgroundDaemon
from coordinator.protocol.modes import set_automation_mode
from coordinator.settings import load_settings
from tests.redis_server import RedisServer


def test_a_non_async_program_can_embed_the_daemon(redis_server: RedisServer) -> None:
    import redis

    redis.Redis(port=redis_server.port).flushall()
    background = BackgroundDaemon(load_settings(
        node_id="threaded", redis_url=redis_server.url, lease_ttl=2, renew_interval=0.5,
        heartbeat_interval=0.5))
    background.start()
    try:
        seen: list[bool] = []
        others = [threading.Thread(target=lambda: seen.append(background.can_schedule()))
                  for _ in range(3)]
        for t in others:
            t.start()
        for t in others:
            t.join()
        assert seen == [True, True, True]
        assert background.status_snapshot()["role"] == "leader"
    finally:
        background.stop()
    assert not background.can_schedule()
    assert redis.Redis(port=redis_server.port).exists("{coordinator}:lease:global") == 0


def make(redis_server: RedisServer, hooks: Hooks | None = None) -> BackgroundDaemon:
    import redis

    redis.Redis(port=redis_server.port).flushall()
    return BackgroundDaemon(load_settings(
        node_id="threaded", redis_url=redis_server.url, lease_ttl=2, renew_interval=0.5,
        heartbeat_interval=0.5), hooks=hooks)


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def test_stop_leaves_leadership_before_anything_else(redis_server: RedisServer) -> None:
    seen: dict[str, Any] = {}
    background: BackgroundDaemon

    async def stopped() -> None:  # on the daemon's loop, while the stop is under way
        seen["can_schedule"] = background.can_schedule()
        seen["role"] = background.status_snapshot()["role"]

    background = make(redis_server, Hooks(on_stopped_leading=stopped))
    background.start()
    assert background.can_schedule()
    background.stop()
    assert seen == {"can_schedule": False, "role": "standby"}


def test_each_mode_means_the_same_through_the_facade(redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    contexts: list[LeaderContext] = []
    cancelled: list[int] = []

    async def lead(ctx: LeaderContext) -> None:
        contexts.append(ctx)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(ctx.term)
            raise

    async def work(ctx: LeaderContext) -> str:
        return ctx.automation_mode

    def set_mode(mode: str) -> None:
        async def go() -> None:
            client = aioredis.Redis(port=redis_server.port)
            try:
                await set_automation_mode(client, "coordinator", mode)
            finally:
                await client.aclose()

        asyncio.run(go())
        assert wait_for(lambda: background.status_snapshot()["automation_mode"] == mode)

    background = make(redis_server, Hooks(on_started_leading=lead))
    background.start()
    try:
        assert wait_for(lambda: len(contexts) == 1)
        assert background.run_scheduler_pass(work) == "scheduled"
        set_mode("paused")
        assert wait_for(lambda: len(cancelled) == 1)  # on_started_leading's work cancelled
        assert background.run_scheduler_pass(work) == "skipped_paused"
        assert background.can_schedule()  # it keeps its lease
        set_mode("draining")
        assert background.run_scheduler_pass(work) == "skipped_draining"
        assert len(contexts) == 1  # nothing new starts while draining
        set_mode("running")
        assert wait_for(lambda: len(contexts) == 2)  # resumed: the work starts again
        assert contexts[1].automation_mode == "running" == contexts[0].automation_mode  # live
        assert background.run_scheduler_pass(work) == "scheduled"
    finally:
        background.stop()
    assert background.run_scheduler_pass(work) == "skipped_not_leader"


def test_a_stop_during_start_ends_it_and_releases_the_lease(redis_server: RedisServer) -> None:
    import redis

    entered = threading.Event()
    led: list[int] = []

    async def loading() -> None:  # the start is under way, the lease already acquired
        entered.set()
        await asyncio.sleep(30)

    async def lead(ctx: LeaderContext) -> None:
        led.append(ctx.term)

    background = make(redis_server, Hooks(load_local_runs=loading, on_started_leading=lead))
    starter = threading.Thread(target=background.start)
    starter.start()
    assert entered.wait(10)
    client = redis.Redis(port=redis_server.port)
    assert client.exists("{coordinator}:lease:global") == 1
    background.stop()
    starter.join(10)
    assert not starter.is_alive()  # start() returned with the stop
    assert client.exists("{coordinator}:lease:global") == 0
    time.sleep(1.0)  # two renew intervals: nothing renews or acquires it again
    assert client.exists("{coordinator}:lease:global") == 0
    assert led == [] and not background.can_schedule()


def test_a_stop_right_after_start_began_leaves_nothing_running(redis_server: RedisServer) -> None:
    import redis

    led: list[int] = []

    async def lead(ctx: LeaderContext) -> None:
        led.append(ctx.term)

    client = redis.Redis(port=redis_server.port)
    for _ in range(3):  # whatever point of the start the stop lands on
        background = make(redis_server, Hooks(on_started_leading=lead))
        starter = threading.Thread(target=background.start)
        starter.start()
        background.stop()
        starter.join(10)
        assert not starter.is_alive()
        time.sleep(0.6)  # past a renew interval: a daemon left running would hold the lease
        assert client.exists("{coordinator}:lease:global") == 0
        assert not background.can_schedule()
    assert led == []


def test_a_stop_before_start_means_start_starts_nothing(redis_server: RedisServer) -> None:
    import redis

    background = make(redis_server)
    background.stop()
    background.start()
    time.sleep(0.3)
    assert redis.Redis(port=redis_server.port).exists("{coordinator}:lease:global") == 0
    assert not background.can_schedule()
