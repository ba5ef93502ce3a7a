"""What the chaos run of docs/reliability.md (2026-12-07) found in the product, as tests.

``sentinel`` seed 7005, fault #11 (``redis_restart_empty``): c's child (term ...998) and b's
(term ...999) ran at once for 92 ms. Redis came back empty at 15:25:40.351; b, polling as a
standby, was granted a new tenure 17 ms later and started its child; c, the leader, learnt
of it only at its next renewal, 180 ms after b's grant (``state.changed`` leader -> standby
"lease held by another node"), and its child ticked until then. A server that restarted
empty knows nothing of the tenure its clients still believe in, and acquire.lua grants at
once; the old leader keeps leading until its next renewal (up to one renew interval after
Redis answers again, or up to its local deadline, one TTL, if it cannot reach the new
server). The README's Guarantees table says "never" for "one Redis, no persistence" (the
row reads "as above"). Fencing holds (the stale tenure's writes are refused); the overlap
of leader work does not. These tests fail on today's code; they pass once a tenure granted
by a server that restarted within one TTL cannot overlap a tenure granted before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis

from coordinator import Lease
from tests.redis_server import RedisServer, redis_server_binary, running_redis

TTL = 5.0


class Restartable:
    def __init__(self, client: Any, server: RedisServer | None) -> None:
        self.client, self._server = client, server

    async def restart_empty(self) -> None:
        if self._server is None:
            await self.client.flushall()
            return
        self._server.start_again()  # --save "" --appendonly no: it comes back empty
        assert await self.client.dbsize() == 0


@pytest.fixture(params=["fake", "real"])
async def restartable(request: pytest.FixtureRequest) -> AsyncIterator[Restartable]:
    if request.param == "fake":
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        yield Restartable(client, None)
        await client.aclose()
        return
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine")
    with running_redis() as server:
        client = aioredis.Redis(port=server.port)
        try:
            yield Restartable(client, server)
        finally:
            await client.aclose()


def lease(redis: Any, holder: str) -> Lease:
    return Lease(redis, holder_id=holder, holder_host=f"{holder}.host", ttl=TTL)


async def test_a_redis_restarted_empty_grants_no_tenure_while_the_old_one_may_still_lead(
        restartable: Restartable) -> None:
    redis = restartable.client
    a = lease(redis, "a")
    first = await a.acquire()
    assert first.is_leader
    await restartable.restart_empty()
    await asyncio.sleep(0.01)
    b = lease(redis, "b")  # a standby polling: the lease is gone, so it asks for it
    second = await b.acquire()
    seconds, micros = await redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    # a's tenure was granted until first.record.lease_expires_at, and a leads until its next
    # renewal tells it otherwise; a grant to b before then lets both schedule at once
    assert first.record.lease_expires_at > now_ms  # a's tenure still current when b asked
    # fails today: b is granted at once (is_leader True, operation "acquire")
    assert not second.is_leader, (
        f"b granted term {second.term} {first.record.lease_expires_at - now_ms} ms before a's "
        f"tenure (term {first.term}) would have expired: two leaders at once")
