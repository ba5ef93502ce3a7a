"""One suite, two backends: every ``redis`` test runs on fakeredis and on a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

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


class Breakable:
    """A Redis the test can take away and bring back: fakeredis's emulated connection
    error, or a real redis-server of the test's own that is stopped and restarted."""

    def __init__(self, client: Any, fake: Any = None, server: RedisServer | None = None) -> None:
        self.client, self._fake, self._server = client, fake, server

    @property
    def url(self) -> str:
        return self._server.url if self._server else "redis://fake"

    def take_away(self) -> None:
        if self._fake is not None:
            self._fake.connected = False
        else:
            assert self._server is not None
            self._server.stop()

    def bring_back(self) -> None:
        if self._fake is not None:
            self._fake.connected = True
        else:
            assert self._server is not None
            self._server.start_again()


@pytest.fixture(params=["fake", "real"])
async def breakable(request: pytest.FixtureRequest) -> AsyncIterator[Breakable]:
    """A Redis of the test's own that it can take away and bring back."""
    if request.param == "fake":
        server = fakeredis.FakeServer()
        yield Breakable(fakeredis.FakeAsyncRedis(server=server), fake=server)
        return
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine (apt-get install redis-server)")
    with running_redis() as real:
        client = aioredis.Redis(port=real.port, socket_timeout=0.5, socket_connect_timeout=0.5,
                                retry=Retry(NoBackoff(), 1))
        try:
            yield Breakable(client, server=real)
        finally:
            await client.aclose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a real redis-server, so ``-m "not real"`` is the quick run."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_real = callspec is not None and "real" in callspec.params.values()
        if on_real or "redis_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real)
