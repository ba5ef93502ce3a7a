"""The failover/restart epoch: a term granted on a master whose write the promoted replica
never got is not granted again, even when the stored term chain runs ahead of the clock (so
the TIME floor cannot help). Two real redis-servers; the fakeredis cases check that a server
without INFO in scripts (no identity) still grants, without the jump."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis

from coordinator import CorruptDataError
from coordinator.protocol.lease import EPOCH_STEP
from tests.redis_server import free_port, redis_server_binary, running_redis
from tests.test_terms_faults import (
    FENCED,
    LEASE,
    TENURE,
    fail_over,
    lease,
    master_and_replica,
    no_sync_delay,
    redis_now_ms,
    replicate,
)

__all__ = ["master_and_replica"]  # the fixture, re-exported for pytest

AHEAD_US = 3_600 * 10**6  # the stored chain runs an hour ahead of the clock (a stepped clock did)


async def chain_ahead(master: Any) -> int:
    """A tenure whose term runs an hour ahead of TIME, released: every later grant on the same
    server is stored + 1 (the TIME floor is below it)."""
    a = lease(master, "a")
    ahead = await redis_now_ms(master) * 1000 + AHEAD_US
    term = (await a.acquire(highest_seen_term=ahead)).term
    assert (await a.release(term=term)).released
    return term


async def cut_replication(replica: Any) -> None:
    """The replica loses its master (a dead port), keeping its data and replication id."""
    await replica.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
    info = await replica.info("replication")
    assert info["master_link_status"] == "down"


async def test_a_failover_that_lost_a_grant_ahead_of_the_clock_never_grants_it_again(
        master_and_replica: tuple[Any, Any, int]) -> None:
    master, replica, replica_port = master_and_replica
    first = await chain_ahead(master)
    assert await master.execute_command("WAIT", 1, 5000) == 1  # the replica knows it
    await cut_replication(replica)
    b_client = aioredis.Redis(port=master.connection_pool.connection_kwargs["port"])
    try:
        b = lease(b_client, "b")
        lost = (await b.acquire()).term  # on the master only: the write is lost
        assert lost > first
        await replica.execute_command("REPLICAOF", "NO", "ONE")  # the failover
        c = lease(replica, "c")  # a fresh process that never heard of b's term
        got_c = await c.acquire()
        assert got_c.is_leader
        assert got_c.term != lost, "the lost term was granted again"
        assert got_c.term > lost
        await fail_over(b_client, replica_port)
        assert not (await b.fenced_set(FENCED, "from-b", lost, raise_on_refused=False)).accepted
    finally:
        await b_client.aclose()
    # the next grant on the same server is stored + 1 again: one jump per failover
    assert (await c.release(term=got_c.term)).released
    d = await lease(replica, "d").acquire()
    assert d.term == got_c.term + 1


async def test_a_master_demoted_and_promoted_again_jumps_over_its_own_lost_grant(
        master_and_replica: tuple[Any, Any, int]) -> None:
    """A grants X (replicated), then X+1 (lost); B is promoted and grants nothing; A is
    demoted, resyncs from B (its tenure says A granted X) and is promoted back: X+1 again
    unless the promotion itself changes the epoch."""
    master, replica, replica_port = master_and_replica
    await chain_ahead(master)
    assert await master.execute_command("WAIT", 1, 5000) == 1
    await cut_replication(replica)
    lost = (await lease(master, "b").acquire()).term
    await replica.execute_command("REPLICAOF", "NO", "ONE")
    await replicate(master, _Port(replica_port))  # the old master resyncs from the new one
    assert await master.hget(TENURE, "term") == str(lost - 1).encode()
    await master.execute_command("REPLICAOF", "NO", "ONE")
    got = await lease(master, "c").acquire()
    assert got.is_leader
    assert got.term > lost


class _Port:
    def __init__(self, port: int) -> None:
        self.port = port


async def test_the_first_grant_after_a_restart_jumps() -> None:
    """A restart from AOF gives the server a new run id and replication id (measured on 6.2.14
    and 7.0.15, from AOF and from RDB): the first grant after it jumps by the epoch step
    (with appendfsync everysec the restart may have lost the last grants), later ones are
    stored + 1."""
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine")
    with running_redis("--appendonly", "yes", "--appendfsync", "always") as server:
        client = aioredis.Redis(port=server.port)
        try:
            first = await chain_ahead(client)
            before = await client.hget(TENURE, "granted_by")
            server.start_again()
            assert await client.hget(TENURE, "term") == str(first).encode()  # it kept its data
            b = lease(client, "b")
            got = await b.acquire()
            assert got.term >= first + EPOCH_STEP
            assert await client.hget(TENURE, "granted_by") != before
            assert (await b.release(term=got.term)).released
            assert (await lease(client, "c").acquire()).term == got.term + 1
        finally:
            await client.aclose()


async def test_a_chain_behind_the_clock_does_not_jump_after_a_restart() -> None:
    """The TIME floor already covers a chain behind the clock: no jump, the term is the
    clock's (so an old master not yet demoted, granting by the clock too, stays in order)."""
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine")
    with running_redis("--appendonly", "yes", "--appendfsync", "always") as server:
        client = aioredis.Redis(port=server.port)
        try:
            a = lease(client, "a")
            first = (await a.acquire()).term
            assert (await a.release(term=first)).released
            server.start_again()
            got = (await lease(client, "b").acquire()).term
            assert first < got < first + EPOCH_STEP
            assert got >= await redis_now_ms(client) * 1000 - 10**6  # the clock's, not a jump
        finally:
            await client.aclose()


async def test_a_server_without_an_identity_grants_without_the_jump() -> None:
    """fakeredis has no INFO inside scripts: the identity is unknown (""), nothing jumps and
    terms stay stored + 1 (documented: the epoch needs a real Redis)."""
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    try:
        first = await chain_ahead(client)
        assert await client.hget(TENURE, "granted_by") == b""
        second = (await lease(client, "b").acquire()).term
        assert second == first + 1
    finally:
        await client.aclose()


@pytest.mark.parametrize("value", ["not hex!", "x" * 300, "abc"])
async def test_a_foreign_granted_by_is_corrupt_and_never_overwritten(redis: Any, value: str) -> None:
    await chain_ahead(redis)
    await redis.hset(TENURE, "granted_by", value)
    with pytest.raises(CorruptDataError) as raised:
        await lease(redis, "b").acquire()
    assert raised.value.key == TENURE
    assert "granted_by" in raised.value.detail
    assert await redis.hget(TENURE, "granted_by") == value.encode()
    assert not await redis.exists(LEASE)


async def test_an_acl_user_refused_info_grants_without_the_jump() -> None:
    """deploy/redis/redis.conf must allow +info for the epoch: where INFO is refused the
    identity is unknown (""), grants still work and nothing jumps (the TIME floor alone)."""
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine")
    with running_redis() as server:
        admin = aioredis.Redis(port=server.port)
        await admin.execute_command("ACL", "SETUSER", "coord", "on", ">pw", "~*", "&*", "+@all",
                                    "-info")
        client = aioredis.Redis(port=server.port, username="coord", password="pw")
        try:
            first = await chain_ahead(client)
            assert await admin.hget(TENURE, "granted_by") == b""
            assert (await lease(client, "b").acquire()).term == first + 1
        finally:
            await client.aclose()
            await admin.aclose()


async def test_a_masters_first_replica_is_no_failover_and_does_not_jump() -> None:
    """A master that creates its replication backlog from scratch (its first replica after a
    start) takes a new replication id with no past history (master_replid2 all zeros). That
    is the same server, not a failover: jumping there put the old master's terms on the same
    stored + 10^8 a promoted replica jumps to, and the chaos run (seed 7006, sentinel) saw one
    term granted to two tenures that way."""
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine")
    with running_redis() as master_server, running_redis() as replica_server:
        master = aioredis.Redis(port=master_server.port)
        replica = aioredis.Redis(port=replica_server.port)
        try:
            first = await chain_ahead(master)
            before = (await master.info("replication"))["master_replid"]
            await no_sync_delay(master_server.port)
            await replica.execute_command("REPLICAOF", "127.0.0.1", str(master_server.port))
            assert await master.execute_command("WAIT", 1, 5000) == 1
            assert (await master.info("replication"))["master_replid"] != before  # as claimed
            got = (await lease(master, "b").acquire()).term
            assert got == first + 1  # the same server's chain: stored + 1, no jump
        finally:
            await master.aclose()
            await replica.aclose()
