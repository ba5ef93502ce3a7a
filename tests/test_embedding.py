"""The embedding API (issue 14): sync hooks, leadership(), redis= injection, with /
async with, start(require_redis=True), wait_until_leader, on fakeredis (and real Redis)."""

from __future__ import annotations

import threading
import time
from typing import Any

import fakeredis
import pytest

from coordinator.daemon.daemon import Daemon
from coordinator.daemon.hooks import Hooks, LeaderContext
from coordinator.daemon.threaded import BackgroundDaemon
from coordinator.errors import BackendUnavailableError
from coordinator.settings import load_settings
from tests.redis_server import RedisServer


def _settings(node: str = "embedded", **over: Any) -> Any:
    return load_settings(node_id=node, lease_ttl=2, renew_interval=0.5, heartbeat_interval=0.5,
                         **over)


def test_a_threaded_app_runs_on_fakeredis_with_sync_hooks_and_with() -> None:
    started, changes, threads = threading.Event(), [], set()

    def on_started_leading(ctx: LeaderContext) -> None:  # a plain def, blocking a while
        threads.add(threading.current_thread().name)
        started.set()

    def on_lease_state_change(snapshot: dict[str, Any]) -> None:
        changes.append(snapshot["role"])

    hooks = Hooks(on_started_leading=on_started_leading,  # type: ignore[arg-type]
                  on_lease_state_change=on_lease_state_change)  # type: ignore[arg-type]
    with BackgroundDaemon(_settings(), hooks=hooks, redis=fakeredis.FakeAsyncRedis()) as bg:
        assert bg.wait_until_leader(timeout=10)
        leadership = bg.leadership()
        assert leadership.leading and leadership.term is not None
        leading, term = leadership  # unpacks as a pair
        assert leading
        assert started.wait(10)
        # the notification runs on its own worker thread, in its own queue: not ordered
        # with on_started_leading, so wait for it rather than expect it already there
        deadline = time.monotonic() + 10
        while "leader" not in changes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "leader" in changes
        assert threads and "coordinator" not in threads  # not on the daemon's loop thread
        result = bg.fenced_set("{coordinator}:job", "v", term=term)
        assert result.accepted
    assert not bg.leadership().leading
    assert bg.leadership().term is None


def test_start_can_be_told_to_fail_when_redis_is_unreachable() -> None:
    bg = BackgroundDaemon(_settings(redis_url="redis://127.0.0.1:1/0"))
    with pytest.raises(BackendUnavailableError, match=r"127\.0\.0\.1:1"):
        bg.start(timeout=10, require_redis=True)
    assert not bg.leadership().leading


@pytest.mark.real
def test_a_bad_database_index_is_not_blamed_on_the_lease_key(redis_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/99"
    bg = BackgroundDaemon(_settings(redis_url=url))
    with pytest.raises(BackendUnavailableError) as caught:
        bg.start(timeout=10, require_redis=True)
    message = str(caught.value)
    assert "lease" not in message and "DB index is out of range" in message
    assert "database" in message


async def test_async_with_and_wait_until_leader_on_fakeredis() -> None:
    async with Daemon(_settings(), redis=fakeredis.FakeAsyncRedis()) as daemon:
        assert await daemon.wait_until_leader(timeout=10)
        leading, term = daemon.leadership()
        assert leading and term is not None and term == daemon.state.term
    assert daemon.leadership() == (False, None)


async def test_async_start_can_be_told_to_fail_when_redis_is_unreachable() -> None:
    daemon = Daemon(_settings(redis_url="redis://127.0.0.1:1/0"))
    with pytest.raises(BackendUnavailableError):
        await daemon.start(require_redis=True)
    assert daemon.stopped.is_set()


async def test_a_plain_def_hook_runs_off_the_loop_without_a_traceback() -> None:
    import asyncio

    loop_thread = threading.current_thread()
    ran: list[threading.Thread] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_lease_state_change(snapshot: dict[str, Any]) -> None:
        ran.append(threading.current_thread())
        loop.call_soon_threadsafe(done.set)

    hooks = Hooks(on_lease_state_change=on_lease_state_change)  # type: ignore[arg-type]
    async with Daemon(_settings(), redis=fakeredis.FakeAsyncRedis(), hooks=hooks) as daemon:
        await asyncio.wait_for(done.wait(), 10)
        await daemon._hook_queue.settled(5)
        assert ran and ran[0] is not loop_thread
        assert daemon.metrics is not None


async def test_a_plain_def_leader_hook_writes_fenced_through_the_blocking_view() -> None:
    import asyncio

    redis = fakeredis.FakeAsyncRedis()
    wrote: list[Any] = []

    def on_started_leading(ctx: LeaderContext) -> None:  # on a worker thread
        wrote.append(ctx.blocking.fenced_incrby("{coordinator}:runs", 1).value)

    hooks = Hooks(on_started_leading=on_started_leading)  # type: ignore[arg-type]
    async with Daemon(_settings(), redis=redis, hooks=hooks):
        async with asyncio.timeout(10):
            while not wrote:
                await asyncio.sleep(0.01)
    assert wrote == [1]
    assert await redis.get("{coordinator}:runs") == b"1"


@pytest.mark.real
async def test_a_bad_database_index_is_a_connection_error_not_a_lease_error(
    redis_server: RedisServer,
) -> None:
    """Without require_redis the same fault must read as Redis refusing the connection."""
    import redis.asyncio as aioredis

    from coordinator.connection.boundary import redis_errors

    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{redis_server.port}/99")
    try:
        with (
            pytest.raises(BackendUnavailableError, match="set-up") as caught,
            redis_errors("{coordinator}:lease:global"),
        ):
            await client.hgetall("{coordinator}:lease:global")
        assert "lease" not in str(caught.value)
    finally:
        await client.aclose()


async def test_namespace_is_a_keyword_everywhere() -> None:
    """The README's promise: `namespace=` works in every public function (and
    `from coordinator import watch` is callable even after the submodule was imported)."""
    import coordinator.watching.watch  # noqa: F401  (binds the package's attribute to the module)
    from coordinator import events_since, get_automation_mode, read_lease, watch
    from coordinator.protocol.membership import alive_node_ids, list_controllers, stale_node_ids

    redis = fakeredis.FakeAsyncRedis()
    assert await alive_node_ids(redis, namespace="ns", within_ms=1000) == []
    assert await stale_node_ids(redis, namespace="ns", older_than_ms=1000) == []
    assert await list_controllers(redis, namespace="ns", retention_ms=1000) == []
    assert await events_since(redis, namespace="ns", since="10m") == []
    assert await get_automation_mode(redis, namespace="ns") == "running"
    assert await read_lease(redis, namespace="ns", name="global") is None
    stream = watch(redis, namespace="ns")
    await stream.aclose()
