"""Random interleavings of acquire/renew/release/time passing, checked against a small model.

Time passes for real (TTL 20 ms), and the model judges expiry with the Redis clock that
each reply carries, so the check is exact except within 5 ms of an expiry, where either
outcome is allowed and the model follows what Redis did: Redis judges expiry by the time a
script started and the reply carries TIME read a little later, a gap a loaded machine widens.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator import Lease

TTL = 0.02
TTL_MS = 20
AMBIGUOUS_MS = 5
# holders 0-2 have distinct ids; holder 3 is a second process using holder 0's id
HOLDER_IDS = ["h0", "h1", "h2", "h0"]

lease_step = st.tuples(st.sampled_from(["acquire", "release", "release_own_term"]), st.integers(0, 3))
step = st.one_of(lease_step, lease_step, lease_step, st.tuples(st.just("sleep"), st.sampled_from([3, 12, 25])))


@dataclass
class Model:
    holder: int | None = None
    term: int = 0
    expires_at: int = 0

    def live_holder(self, now: int) -> int | str | None:
        """The holder at Redis time ``now``, or 'either' within the ambiguity window."""
        if self.holder is None:
            return None
        if abs(now - self.expires_at) <= AMBIGUOUS_MS:
            return "either"
        return self.holder if now < self.expires_at else None


async def run_steps(client: Any, steps: list[tuple[str, int]]) -> None:
    leases = [Lease(client, holder_id=h, holder_host="host", ttl=TTL) for h in HOLDER_IDS]
    model = Model()
    terms_granted: list[int] = []
    for op, arg in steps:
        if op == "sleep":
            await asyncio.sleep(arg / 1000)
            continue
        lease = leases[arg]
        if op == "acquire":
            result = await lease.acquire()
            live = model.live_holder(result.redis_now)
            if live == "either":
                live = model.holder if result.operation == "renew" or (
                    not result.is_leader and result.holder_id == HOLDER_IDS[model.holder or 0]
                ) else None
            if live is None:
                assert result.operation == "acquire", (model, result)
                assert result.term > model.term and result.term >= result.record.acquired_at
                terms_granted.append(result.term)
                model.holder, model.term = arg, result.term
            elif live == arg:
                assert result.operation == "renew" and result.term == model.term
            else:
                assert not result.is_leader and result.term == model.term
                assert result.record.instance_id == leases[model.holder or 0].instance_id
            if result.is_leader:
                assert result.lease_expires_at == result.redis_now + TTL_MS
                model.expires_at = result.lease_expires_at
        else:
            term = model.term if op == "release_own_term" else None
            released = await lease.release(term=term)
            live = model.live_holder(released.redis_now)
            if live == "either":
                live = arg if released.released else None
            assert released.released == (live == arg), (model, op, arg, released)
            if released.released:
                model.holder = None
    assert terms_granted == sorted(set(terms_granted))


@pytest.fixture(params=["fake", "real"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "real":
        return str(request.getfixturevalue("redis_server").url)
    return "fake"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=14))
def test_lease_matches_the_reference_model(backend: str, steps: list[tuple[str, int]]) -> None:
    async def scenario() -> None:
        if backend == "fake":
            client: Any = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        else:
            client = aioredis.Redis.from_url(backend)
            await client.flushall()
        try:
            await run_steps(client, steps)
        finally:
            await client.aclose()

    asyncio.run(scenario())
