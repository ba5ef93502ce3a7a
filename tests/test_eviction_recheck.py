"""A running daemon re-reads maxmemory-policy once a minute (on its heartbeat loop), so
``status`` and ``/readyz`` follow a CONFIG SET; it warns when the policy changes, not on every
read. Real redis-servers: fakeredis has no CONFIG GET."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from coordinator.clock import Clock
from coordinator.connection.eviction import RECHECK_EVERY
from coordinator.daemon.daemon import Daemon
from tests.log_capture import capture_logs
from tests.redis_server import redis_server_binary, running_redis
from tests.test_redis_side import settings

pytestmark = pytest.mark.skipif(redis_server_binary() is None, reason="no redis-server binary")


class SteppableClock(Clock):
    """Real time plus an offset the test adds to; the loops wait only for a wake-up."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return super().monotonic() + self.offset

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        await event.wait()
        return True


def risks(logs: list[dict[str, Any]]) -> list[str]:
    return [e["maxmemory_policy"] for e in logs if e["event"] == "redis.eviction_risk"]


async def test_the_policy_is_re_read_once_a_minute_and_a_change_is_warned_once() -> None:
    with running_redis() as server:
        client = aioredis.Redis(port=server.port)
        clock = SteppableClock()
        daemon = Daemon(settings("a"), redis=client, clock=clock)
        try:
            with capture_logs() as logs:
                await daemon.start()
                assert daemon.redis_report.to_dict() == {"maxmemory_policy": "noeviction",
                                                         "warnings": []}
                await client.config_set("maxmemory-policy", "allkeys-lru")
                await daemon.recheck_redis_if_due()  # not yet due: no extra CONFIG GET
                assert daemon.redis_report.maxmemory_policy == "noeviction"
                clock.offset += RECHECK_EVERY + 1
                await daemon.recheck_redis_if_due()
                assert daemon.redis_report.maxmemory_policy == "allkeys-lru"
                (warning,) = daemon.redis_report.warnings
                assert "noeviction" in warning
                clock.offset += RECHECK_EVERY + 1
                await daemon.recheck_redis_if_due()  # unchanged: no second warning
                assert risks(logs) == ["allkeys-lru"]
                await client.config_set("maxmemory-policy", "noeviction")
                clock.offset += RECHECK_EVERY + 1
                await daemon.recheck_redis_if_due()
                assert daemon.redis_report.to_dict() == {"maxmemory_policy": "noeviction",
                                                         "warnings": []}
        finally:
            await daemon.stop()
            await client.aclose()


async def test_the_heartbeat_loop_does_the_re_read() -> None:
    with running_redis() as server:
        client = aioredis.Redis(port=server.port)
        daemon = Daemon(settings("a", heartbeat_interval=0.2), redis=client)
        daemon._eviction.every = 0.1  # the loop's wiring, not the minute
        try:
            await daemon.start()
            assert daemon.redis_report.maxmemory_policy == "noeviction"
            await client.config_set("maxmemory-policy", "volatile-ttl")
            deadline = time.monotonic() + 20  # generous: a loaded machine
            while daemon.redis_report.maxmemory_policy != "volatile-ttl":
                assert time.monotonic() < deadline, "the heartbeat loop never re-read the policy"
                await asyncio.sleep(0.05)
            assert len(daemon.redis_report.warnings) == 1
        finally:
            await daemon.stop()
            await client.aclose()
