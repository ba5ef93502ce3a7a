"""A leader on a master that Sentinel replaced without it: the failover lost its grant
(asynchronous replication, no COORDINATOR_MIN_REPLICAS_ACK) and Sentinel demotes the old
master only at its next INFO refresh, seconds later. Until then the old master still accepts
the old tenure's renewals and fenced writes; the daemon must follow Sentinel's announcement
of the switch instead, and stop leading on the old master at once.

Real servers: a master, its replica, a real Sentinel (tests/chaos/servers.py), the replica's
link cut through its ACL user so the grant reaches the master only."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from coordinator.daemon.daemon import Daemon
from coordinator.protocol import keys
from coordinator.settings import Settings
from tests.chaos.servers import SERVICE, Servers
from tests.redis_server import redis_server_binary

pytestmark = [pytest.mark.real, pytest.mark.skipif(
    redis_server_binary() is None, reason="no redis-server binary (apt-get install redis-server)")]

# a TTL long enough that the lease outlives the whole scenario: only the switch can end it
TTL = 20.0


def settings(node: str, sentinel_port: int) -> Settings:
    return Settings(redis_url="redis://127.0.0.1:1/0", redis_sentinels=f"127.0.0.1:{sentinel_port}",
                    redis_sentinel_service=SERVICE, node_id=node, lease_ttl=TTL,
                    renew_interval=0.5, heartbeat_interval=0.5, guardian=False,
                    namespace="switch")


async def lease_on(port: int) -> dict[str, str]:
    client = aioredis.Redis(port=port, decode_responses=True)
    try:
        return dict(await client.hgetall(keys.lease_key("switch", "global")))
    finally:
        await client.aclose()


async def announcements(sentinel_port: int, seen: dict[str, float]) -> None:
    """When (monotonic) Sentinel announced each step of the failover, first time each."""
    client = aioredis.Redis(port=sentinel_port, decode_responses=True)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe("+promoted-slave", "+switch-master")
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                seen.setdefault(message["channel"], time.monotonic())
    finally:
        await pubsub.aclose()
        await client.aclose()


async def until(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await predicate():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_a_leader_whose_grant_a_failover_lost_stops_on_the_switch_announcement(
        tmp_path: Path) -> None:
    servers = Servers(tmp_path, replica=True, libfaketime=None)
    await asyncio.to_thread(servers.start)
    seen: dict[str, float] = {}
    listener = asyncio.ensure_future(announcements(servers.sentinel_port or 0, seen))
    b = c = None
    try:
        old_port = servers.master_port
        await asyncio.to_thread(servers.cut_replication)  # B's grant reaches the master only
        b = Daemon(settings("node-b", servers.sentinel_port or 0))
        await b.start()
        assert await b.wait_until_leader(5)
        term = b.state.term
        assert term is not None
        fenced = keys.fenced_key("switch", "job")
        assert (await b.lease.fenced_set(fenced, "before", term, raise_on_refused=False)).accepted

        left_at: list[float] = []

        async def watch_b() -> None:
            while b is not None and b.can_schedule() and b.state.term == term:
                await asyncio.sleep(0.002)
            left_at.append(time.monotonic())

        watcher = asyncio.ensure_future(watch_b())
        new_port = None
        for _ in range(10):  # Sentinel may refuse at first (NOGOODSLAVE until its next INFO)
            new_port = await asyncio.to_thread(servers.force_failover)
            if new_port is not None:
                break
            await asyncio.sleep(0.5)
        assert new_port is not None and new_port != old_port
        # C arrives on the new master (a fresh connection: Sentinel names the new one)
        c = Daemon(settings("node-c", servers.sentinel_port or 0))
        await c.start()

        async def granted_above() -> bool:
            lease = await lease_on(new_port)
            return bool(lease) and int(lease.get("term", 0)) > term

        assert await until(granted_above, 10), "nobody was granted a term on the new master"
        granted_at = time.monotonic()
        new_lease = await lease_on(new_port)
        old_master = await servers_role(old_port)

        write = await b.lease.fenced_set(fenced, "stale", term, raise_on_refused=False)
        stepped_down = not (b.can_schedule() and b.state.term == term)
        switch = seen.get("+promoted-slave") or seen.get("+switch-master")
        if left_at and switch is not None:
            print(f"B left term {term} {round(left_at[0] - switch, 4)} s after the announcement")
        watcher.cancel()
        print(f"old master {old_port} role {old_master}; new master {new_port} lease "
              f"holder={new_lease.get('holder_id')} term={new_lease.get('term')} (B's {term}); "
              f"B's term-{term} fenced write accepted={write.accepted}; B can_schedule="
              f"{b.can_schedule()} term={b.state.term}; announced "
              f"{sorted(seen)} {None if switch is None else round(granted_at - switch, 3)} s "
              "before the grant was seen")
        assert old_master == "master", "Sentinel demoted the old master already: no window left"
        assert not write.accepted, "the old tenure's fenced write was accepted after the new grant"
        assert stepped_down, "B still schedules under the old term after the new master's grant"
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        for daemon in (c, b):
            if daemon is not None:
                await daemon.stop()
        await asyncio.to_thread(servers.close)


async def servers_role(port: int) -> str:
    client = aioredis.Redis(port=port, decode_responses=True)
    try:
        return str((await client.execute_command("ROLE"))[0])
    finally:
        await client.aclose()


async def test_no_grant_on_a_master_sentinel_replaced_whatever_the_connection_reaches(
        tmp_path: Path) -> None:
    """After the switch the old master stays writable until Sentinel's next INFO of it; a
    daemon whose connection still reaches it (here a plain client to its port: a connect
    that raced the switch, a client that missed the announcement) must not be granted there."""
    servers = Servers(tmp_path, replica=True, libfaketime=None)
    await asyncio.to_thread(servers.start)
    stale = aioredis.Redis(port=servers.master_port)
    x = None
    try:
        old_port = servers.master_port
        new_port = None
        for _ in range(10):  # Sentinel may refuse at first (NOGOODSLAVE until its next INFO)
            new_port = await asyncio.to_thread(servers.force_failover)
            if new_port is not None:
                break
            await asyncio.sleep(0.5)
        assert new_port is not None and new_port != old_port
        assert await servers_role(old_port) == "master", "no window: the old master is demoted"
        x = Daemon(settings("node-x", servers.sentinel_port or 0), redis=stale)
        await x.start()
        led = await x.wait_until_leader(3)
        lease = await lease_on(old_port)
        old_role = await servers_role(old_port)
        print(f"old master {old_port} role {old_role}; new master {new_port}; X led={led} "
              f"term={x.state.term}; lease on the old master: {lease}")
        assert old_role == "master", "Sentinel demoted the old master meanwhile: no window left"
        assert not led, "X was granted a tenure on the master Sentinel replaced"
        assert not lease, "the replaced master holds a lease granted after the switch"
    finally:
        if x is not None:
            await x.stop()
        await stale.aclose()
        await asyncio.to_thread(servers.close)
