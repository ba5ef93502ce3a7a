"""Terms across Redis faults: a failover that lost the last grant, a Redis restarted empty,
a fresh process that heard nothing; and the range a term must stay in.

The failover cases need two real redis-servers (replication); the others run on fakeredis
and on a real server alike.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis

from coordinator import CorruptDataError, InvalidArgumentError, Lease, LeaseRecord
from coordinator.protocol import keys
from coordinator.protocol.lease import MAX_TERM
from tests.redis_server import RedisServer, redis_server_binary, running_redis

FENCED = keys.fenced_key("coordinator", "shared")
TENURE = keys.tenure_key("coordinator", "global")
LEASE = keys.lease_key("coordinator", "global")


def lease(redis: Any, holder: str, ttl: float = 5.0, **kw: Any) -> Lease:
    return Lease(redis, holder_id=holder, holder_host=f"{holder}.host", ttl=ttl, **kw)


async def redis_now_ms(redis: Any) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


# ---- a failover that lost the last grant (two real servers) ------------------------------

async def no_sync_delay(master_port: int) -> None:
    """The master starts a replica's full sync at once: Redis 7 waits repl-diskless-sync-delay
    (5 s) for more replicas to share one transfer, a wait only these tests' set-up would pay."""
    admin = aioredis.Redis(port=master_port)
    try:
        await admin.config_set("repl-diskless-sync-delay", 0)
    finally:
        await admin.aclose()


async def replicate(replica: Any, master: RedisServer) -> None:
    await no_sync_delay(master.port)
    await replica.execute_command("REPLICAOF", "127.0.0.1", str(master.port))
    for _ in range(500):
        info = await replica.info("replication")
        if info.get("master_link_status") == "up":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the replica never linked up")


async def fail_over(client: Any, port: int) -> None:
    """Point ``client`` at the new master, as a Sentinel-aware client would after a failover."""
    pool = client.connection_pool
    pool.connection_kwargs["port"] = port
    await pool.disconnect()
    pool.reset()  # forget the old connections: new ones go to the new master
    assert (await client.info("server"))["tcp_port"] == port


@pytest.fixture
async def master_and_replica() -> AsyncIterator[tuple[Any, Any, int]]:
    """A master's client, a replica's client and the replica's port."""
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine")
    with running_redis() as master, running_redis() as replica:
        m, r = aioredis.Redis(port=master.port), aioredis.Redis(port=replica.port)
        try:
            await replicate(r, master)
            yield m, r, replica.port
        finally:
            await m.aclose()
            await r.aclose()


async def test_a_failover_that_lost_the_last_grant_never_grants_its_term_again(
        master_and_replica: tuple[Any, Any, int]) -> None:
    master, replica, replica_port = master_and_replica
    a = lease(master, "a")
    term_a = (await a.acquire()).term
    assert (await a.release(term=term_a)).released
    assert await master.execute_command("WAIT", 1, 5000) == 1  # the replica knows term_a
    # the replica is promoted before b's grant reaches it: that write is lost
    await replica.execute_command("REPLICAOF", "NO", "ONE")
    b_client = aioredis.Redis(port=master.connection_pool.connection_kwargs["port"])
    try:
        b = lease(b_client, "b")
        term_b = (await b.acquire()).term
        await asyncio.sleep(0.01)  # a failover takes time (the clocks agree within it)
        c = lease(replica, "c")  # a fresh process that never heard of term_b
        got_c = await c.acquire()
        assert got_c.is_leader
        assert got_c.term > term_b > term_a
        # b still trusts its local deadline and writes through the new master
        await fail_over(b_client, replica_port)
        stale = await b.fenced_set(FENCED, "from-b", term_b, raise_on_refused=False)
    finally:
        await b_client.aclose()
    assert (stale.accepted, stale.current_term) == (False, got_c.term)
    assert await replica.get(FENCED) is None
    assert (await c.fenced_set(FENCED, "from-c", got_c.term)).accepted


async def test_a_holder_whose_grant_was_lost_re_acquires_above_it(
        master_and_replica: tuple[Any, Any, int]) -> None:
    """The renew fallback: renew.lua says "lost" on the new master, acquire.lua grants anew,
    and the new term is above the lost one even though nobody passed it in."""
    master, replica, replica_port = master_and_replica
    await replica.execute_command("REPLICAOF", "NO", "ONE")  # b's grant will be lost
    b_client = aioredis.Redis(port=master.connection_pool.connection_kwargs["port"])
    try:
        b = lease(b_client, "b")
        ahead = await redis_now_ms(master) + 10**9  # a term the clock will not reach in the test
        lost = (await b.acquire(highest_seen_term=ahead)).term
        await fail_over(b_client, replica_port)
        again = await b.acquire()
        assert (again.is_leader, again.operation) == (True, "acquire")
        assert again.term > lost
        assert not (await b.fenced_set(FENCED, "old tenure", lost, raise_on_refused=False)).accepted
        assert (await b.fenced_set(FENCED, "new tenure", again.term)).accepted
    finally:
        await b_client.aclose()


# ---- a Redis restarted empty (fake: FLUSHALL; real: a restart without persistence) --------

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


async def test_a_redis_restarted_empty_never_grants_an_old_term_again(restartable: Restartable) -> None:
    redis = restartable.client
    a = lease(redis, "a")
    term_a = (await a.acquire()).term
    await restartable.restart_empty()
    await asyncio.sleep(0.002)
    c = lease(redis, "c")  # a fresh process: it heard nothing
    term_c = (await c.acquire()).term
    assert term_c > term_a
    stale = await a.fenced_set(FENCED, "from-a", term_a, raise_on_refused=False)
    assert (stale.accepted, stale.current_term) == (False, term_c)
    held = await a.acquire()  # renew "lost", then acquire: held by c
    assert (held.is_leader, held.holder_id, held.term) == (False, "c", term_c)


async def test_the_renew_fallback_starts_above_the_term_it_lost(restartable: Restartable) -> None:
    redis = restartable.client
    b = lease(redis, "b")
    ahead = await redis_now_ms(redis) * 1000 + 10**9  # far above the clock (in µs)
    lost = (await b.acquire(highest_seen_term=ahead)).term
    await restartable.restart_empty()
    again = await b.acquire()  # nobody passes the lost term in: the Lease remembers it
    assert (again.is_leader, again.operation) == (True, "acquire")
    assert again.term > lost
    assert not (await b.fenced_set(FENCED, "old tenure", lost, raise_on_refused=False)).accepted
    assert (await b.fenced_set(FENCED, "new tenure", again.term)).accepted


async def test_a_fenced_write_needs_the_tenure_not_only_its_term(redis: Any) -> None:
    """Terms can collide beyond the clock's help (two masters both told the same highest
    term); the fence then still tells the tenures apart by their instance id."""
    ahead = await redis_now_ms(redis) * 1000 + 10**9  # far above the clock (in µs)
    b = lease(redis, "b")
    term_b = (await b.acquire(highest_seen_term=ahead)).term
    # a master that never heard of b's grant
    await redis.delete(LEASE, TENURE)
    c = lease(redis, "c")
    term_c = (await c.acquire(highest_seen_term=ahead)).term
    assert term_c == term_b  # the collision this test is about
    stale = await b.fenced_set(FENCED, "from-b", term_b, raise_on_refused=False)
    assert (stale.accepted, stale.current_term) == (False, term_c)
    assert await redis.get(FENCED) is None
    same_holder_other_process = lease(redis, "c")
    assert not (await same_holder_other_process.fenced_set(FENCED, "x", term_c, raise_on_refused=False)).accepted
    assert (await c.fenced_set(FENCED, "from-c", term_c)).accepted
    assert await redis.get(FENCED) == b"from-c"


async def test_a_new_term_is_at_least_the_redis_clock_in_microseconds(redis: Any) -> None:
    before = await redis_now_ms(redis)
    first = await lease(redis, "a").acquire()
    assert first.term >= before * 1000 and first.term >= first.record.acquired_at * 1000
    terms = [first.term]
    for holder in "bcde":  # back to back, within one millisecond or not: strictly larger
        await redis.delete(LEASE)
        terms.append((await lease(redis, holder).acquire()).term)
    assert terms == sorted(set(terms))


async def identity_of(redis: Any) -> str:
    """The identity acquire.lua records for this server: "" on fakeredis (no INFO inside
    scripts), else "<run_id>:<master_replid>"."""
    if isinstance(redis, fakeredis.FakeAsyncRedis):
        return ""
    server, replication = await redis.info("server"), await redis.info("replication")
    return f"{server['run_id']}:{replication['master_replid']}"


# ---- the range a term stays in ------------------------------------------------------------

@pytest.mark.parametrize("stored", [str(MAX_TERM - 1), str(MAX_TERM), "abc", "-5", "1.5", "1e3", " 7", ""])
async def test_a_tenure_term_out_of_range_is_reported_never_used(redis: Any, stored: str) -> None:
    await redis.hset(TENURE, mapping={"term": stored, "holder_id": "old"})
    with pytest.raises(CorruptDataError) as caught:
        await lease(redis, "a").acquire()
    assert caught.value.key == TENURE
    assert await redis.hget(TENURE, "term") == stored.encode()
    assert not await redis.exists(LEASE)


async def test_the_last_term_below_2_53_is_granted_exactly(redis: Any) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.events_channel("coordinator"))
    await pubsub.get_message(timeout=1.0)
    try:
        # granted here (this server's identity): no epoch jump, so stored + 1 is exactly the last
        await redis.hset(TENURE, mapping={"term": str(MAX_TERM - 2),
                                          "granted_by": await identity_of(redis)})
        got = await lease(redis, "a").acquire()
        assert got.term == MAX_TERM - 1
        assert await redis.hget(LEASE, "term") == str(MAX_TERM - 1).encode()
        assert await redis.hget(TENURE, "term") == str(MAX_TERM - 1).encode()
        message = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                break
        assert message is not None
        assert json.loads(message["data"])["term"] == MAX_TERM - 1  # not rounded to 15 digits
        entries = await redis.xrange(keys.history_key("coordinator"))
        assert json.loads(entries[-1][1][b"event"])["term"] == MAX_TERM - 1
        await redis.delete(LEASE)  # the lease lapses
        with pytest.raises(CorruptDataError) as caught:  # no term left below 2**53: refused
            await lease(redis, "b").acquire()
        assert caught.value.key == TENURE
        assert await redis.hget(TENURE, "term") == str(MAX_TERM - 1).encode()
    finally:
        await pubsub.aclose()


async def test_a_highest_seen_term_leads_to_the_last_term_and_no_further(redis: Any) -> None:
    got = await lease(redis, "a").acquire(highest_seen_term=MAX_TERM - 2)
    assert got.term == MAX_TERM - 1
    with pytest.raises(InvalidArgumentError):
        await lease(redis, "b").acquire(highest_seen_term=MAX_TERM - 1)


@pytest.mark.parametrize("stored", [str(MAX_TERM), "abc", "-5", "9" * 20])
async def test_a_lease_term_out_of_range_is_reported_by_every_operation(redis: Any, stored: str) -> None:
    fields = {"holder_id": "z", "instance_id": "i", "term": stored, "lease_expires_at": "9" * 13,
              "holder_host": "h"}
    await redis.hset(LEASE, mapping=fields)
    for operation in (lease(redis, "a").acquire(), lease(redis, "a").release(),
                      lease(redis, "a").fenced_set(FENCED, "v", 5), lease(redis, "a").get()):
        with pytest.raises(CorruptDataError) as caught:
            await operation
        assert caught.value.key == LEASE
    assert {k.decode(): v.decode() for k, v in (await redis.hgetall(LEASE)).items()} == fields
    assert await redis.get(FENCED) is None


@pytest.mark.parametrize("term", [str(MAX_TERM), "-5", "1_000", " 7", "+7", "7.0", "٣"])
def test_a_lease_record_with_a_term_out_of_range_is_corrupt(term: str) -> None:
    fields = {"holder_id": "z", "instance_id": "i", "term": term, "lease_expires_at": "1"}
    with pytest.raises(CorruptDataError, match="term"):
        LeaseRecord.from_fields(LEASE, fields)


def test_a_lease_record_takes_every_term_in_range() -> None:
    for term in (0, 1, 1_765_000_000_000, MAX_TERM - 1):
        fields = {"holder_id": "z", "instance_id": "i", "term": str(term), "lease_expires_at": "1"}
        assert LeaseRecord.from_fields(LEASE, fields).term == term


async def test_a_fenced_write_with_a_term_out_of_range_is_refused_before_redis() -> None:
    unreachable = aioredis.Redis(port=1)
    for term in (0, -1, MAX_TERM, True):
        with pytest.raises(InvalidArgumentError):
            await Lease(unreachable, holder_id="a", ttl=1).fenced_set("k", "v", term)  # type: ignore[arg-type]
    await unreachable.aclose()
