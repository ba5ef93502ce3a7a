"""One suite, two backends: every ``redis`` test runs on fakeredis and on a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis

from tests.redis_server import RedisServer, redis_server_binary, running_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's real redis-server (skipped, with the reason, where none is installed)."""
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine (apt-get install redis-server)")
    with running_redis() as server:
        yield server


@pytest.fixture(params=["fake", "real"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """An empty Redis: fakeredis with Lua, or the real server flushed for this test."""
    if request.param == "fake":
        client: Any = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        client = aioredis.Redis(port=server.port)
        await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()
