"""Attacks on issue 11's promise (safety across Redis faults), on real servers.

Each test is a reproduction that fails on the code it was written against; see the report.
Real servers: redis-server masters and replicas, three real redis-sentinel processes, TCP
proxies (tests/chaos/proxy.py) for the network cuts between a daemon and a Sentinel, and
per-Sentinel ACL users for the cuts between a Sentinel and a Redis server (a Sentinel whose
user is switched off on a server can no longer reach it: no PING, no INFO, no hello)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from coordinator.cli.local_redis import debian_or_path_tool, free_port
from coordinator.daemon.daemon import Daemon
from coordinator.daemon.handoff_choice import request_handoff
from coordinator.protocol import keys
from coordinator.settings import Settings, load_settings
from tests.chaos.proxy import ProxyHost
from tests.chaos.servers import SERVICE as CHAOS_SERVICE
from tests.chaos.servers import Servers, server_role
from tests.redis_server import redis_server_binary, running_redis

pytestmark = [pytest.mark.real, pytest.mark.skipif(
    redis_server_binary() is None, reason="no redis-server binary (apt-get install redis-server)")]

SERVICE = "mymaster"
NS = "attack11"
SENTINEL_PASSWORD = "s-pass"
PEER_PASSWORD = "peer-pass"  # what the Sentinels log in to each other with
ROOT_PASSWORD = "root-pass"  # the default user: daemons, replication, the test itself


def chaos_sentinel_node(servers: Servers, name: str, *, ttl: float, renew: float,
                        ack: int = 0) -> Settings:
    """A daemon's settings for the chaos harness's master + replica + Sentinel."""
    return Settings(redis_url="redis://127.0.0.1:1/0",
                    redis_sentinels=f"127.0.0.1:{servers.sentinel_port}",
                    redis_sentinel_service=CHAOS_SERVICE, node_id=name, lease_ttl=ttl,
                    renew_interval=renew, heartbeat_interval=0.5, guardian=False,
                    namespace=NS, min_replicas_ack=ack)


def _sync(port: int) -> Any:
    return redis.Redis(port=port, password=ROOT_PASSWORD, socket_timeout=1, socket_connect_timeout=1,
                       decode_responses=True)


def _sentinel(port: int) -> Any:
    return redis.Redis(port=port, password=SENTINEL_PASSWORD, socket_timeout=1,
                       socket_connect_timeout=1, decode_responses=True)


class ThreeSentinels:
    """A master, one replica and three Sentinels (quorum 2), each Sentinel with an ACL user
    of its own on both servers, so that one Sentinel can be cut from one server."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.binary = debian_or_path_tool("redis-server") or "redis-server"
        self.redis_ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port(), free_port(), free_port()]
        self.processes: list[subprocess.Popen[bytes]] = []

    def _spawn(self, args: list[str], log: Path) -> None:
        with log.open("ab") as out:
            self.processes.append(subprocess.Popen([self.binary, *args], stdout=out,
                                                   stderr=subprocess.STDOUT))

    def start(self) -> None:
        users = "".join(f"user s{i} on >{SENTINEL_PASSWORD} ~* &* +@all\n" for i in range(3))
        for index, port in enumerate(self.redis_ports):
            directory = self.workdir / f"redis-{index}"
            directory.mkdir()
            (directory / "users.acl").write_text(f"user default on >{ROOT_PASSWORD} ~* &* +@all\n" + users)
            args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
                    "--save", "", "--appendonly", "no", "--masterauth", ROOT_PASSWORD, "--aclfile",
                    str(directory / "users.acl"), "--repl-diskless-sync-delay", "0"]
            if index == 1:
                args += ["--replicaof", "127.0.0.1", str(self.redis_ports[0])]
            self._spawn(args, directory / "redis.log")
        self._until(lambda: _sync(self.redis_ports[1]).info("replication")
                    .get("master_link_status") == "up", 15, "replica link")
        for port in self.redis_ports:  # the first sync started at once; later ones (after a
            client = _sync(port)  # failover) wait Redis's default again
            try:
                client.config_set("repl-diskless-sync-delay", 5)
            finally:
                client.close()
        for index, port in enumerate(self.sentinel_ports):
            conf = self.workdir / f"sentinel-{index}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.redis_ports[0]} 2\n"
                f"sentinel auth-user {SERVICE} s{index}\n"
                f"sentinel auth-pass {SERVICE} {SENTINEL_PASSWORD}\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 4000\n"
                f"user default on >{SENTINEL_PASSWORD} ~* &* +@all\n"
                f"user peer on >{PEER_PASSWORD} ~* &* +@all\n"
                f"sentinel sentinel-user peer\nsentinel sentinel-pass {PEER_PASSWORD}\n")
            self._spawn([str(conf), "--sentinel"], self.workdir / f"sentinel-{index}.log")
        for port in self.sentinel_ports:
            self._until(lambda p=port: int(_sentinel(p).sentinel_master(SERVICE).get(  # type: ignore[misc]
                "num-other-sentinels", 0)) >= 2 and int(_sentinel(p).sentinel_master(SERVICE).get(
                    "num-slaves", 0)) >= 1, 20, f"sentinel {port} sees the others")

    @staticmethod
    def _until(predicate: Any, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with contextlib.suppress(redis.RedisError, OSError):
                if predicate():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")

    def cut_sentinel_from_server(self, sentinel_index: int, redis_port: int) -> None:
        client = _sync(redis_port)
        try:
            client.execute_command("ACL", "SETUSER", f"s{sentinel_index}", "off")
            client.execute_command("CLIENT", "KILL", "USER", f"s{sentinel_index}")
        finally:
            client.close()

    def cut_sentinel_from_sentinels(self, sentinel_index: int) -> None:
        """The other Sentinels can no longer reach this one (their hellos stop arriving)."""
        client = redis.Redis(port=self.sentinel_ports[sentinel_index], password=SENTINEL_PASSWORD,
                             socket_timeout=1, decode_responses=True)
        try:
            client.execute_command("ACL", "SETUSER", "peer", "off")
            client.execute_command("CLIENT", "KILL", "USER", "peer")
        finally:
            client.close()

    def named(self, sentinel_index: int) -> int | None:
        client = redis.Redis(port=self.sentinel_ports[sentinel_index], password=SENTINEL_PASSWORD,
                             socket_timeout=1, decode_responses=True)
        try:
            addr = client.sentinel_get_master_addr_by_name(SERVICE)
            return int(addr[1]) if addr else None
        except redis.RedisError:
            return None
        finally:
            client.close()

    def role(self, port: int) -> str | None:
        return server_role(port)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.wait(timeout=5)


def sentinel_settings(node: str, sentinels: list[int], *, ttl: float = 2.0,
                      renew: float = 0.5) -> Settings:
    return Settings(redis_url=f"redis://default:{ROOT_PASSWORD}@127.0.0.1:1/0",
                    redis_sentinels=",".join(f"127.0.0.1:{p}" for p in sentinels),
                    redis_sentinel_service=SERVICE, node_id=node, lease_ttl=ttl,
                    renew_interval=renew, heartbeat_interval=0.5, guardian=False, namespace=NS,
                    redis_sentinel_password=SENTINEL_PASSWORD)


async def overlap_while(a: Daemon, get_b: Any, seconds: float) -> float:
    """Seconds during which both daemons were allowed to schedule, sampled every 1 ms for
    ``seconds`` (``get_b`` returns the second daemon once it exists)."""
    total = 0.0
    end = time.monotonic() + seconds
    last = time.monotonic()
    while time.monotonic() < end:
        await asyncio.sleep(0.001)
        now = time.monotonic()
        b = get_b()
        if b is not None and a.can_schedule() and b.can_schedule():
            total += now - last
        last = now
    return total


async def lease_on(port: int) -> dict[str, str]:
    client = aioredis.Redis(port=port, password=ROOT_PASSWORD, decode_responses=True,
                            socket_timeout=1)
    try:
        return dict(await client.hgetall(keys.lease_key(NS, "global")))
    except (redis.RedisError, OSError):
        return {}
    finally:
        await client.aclose()


# the Sentinel asks of a daemon that cannot reach some Sentinels take seconds (redis-py retries
# a refused connection with backoff), so the operation timeout (the renew interval, at most
# 5 s) must cover them for an acquire to complete at all (see the next test)
TTL, RENEW = 15.0, 5.0


async def test_a_partition_leaves_two_leaders_one_on_the_master_sentinel_replaced(
        tmp_path: Path) -> None:
    """A partition: {S0, S1, M1, A} | {S2, M0, B}. S0 and S1 lose the master M0, agree it is
    down and promote M1; S2 cannot reach M1 nor the other Sentinels, so it names M0 on and
    on, and nobody can demote M0 (classic Sentinel split brain). Daemons that start now (or
    standbys that acquire now) ask the Sentinels they reach: A hears S0 and S1 name M1, B
    hears S2 name M0, and M0's run_id matches what S2 names, so acquire.lua grants on the
    replaced master too. README (Guarantees, Sentinel without acknowledgement): "a replaced
    master that Sentinel has not demoted yet grants nothing", two nodes allowed to schedule
    "0 overlap"; the promise: "term T accepted after a term above T was granted anywhere"."""
    servers = ThreeSentinels(tmp_path)
    await asyncio.to_thread(servers.start)
    proxies = ProxyHost()
    a = b = None
    try:
        old, new = servers.redis_ports
        s0, s1, s2 = servers.sentinel_ports
        a_s2 = proxies.add("a-s2", s2).port
        b_s0 = proxies.add("b-s0", s0).port
        b_s1 = proxies.add("b-s1", s1).port
        for name in ("a-s2", "b-s0", "b-s1"):  # the daemons' side of the cut: refused
            proxies._call(proxies.proxies[name].close())
        await asyncio.to_thread(servers.cut_sentinel_from_server, 0, old)
        await asyncio.to_thread(servers.cut_sentinel_from_server, 1, old)
        await asyncio.to_thread(servers.cut_sentinel_from_server, 2, new)
        await asyncio.to_thread(servers.cut_sentinel_from_sentinels, 2)
        end = time.monotonic() + 15
        while time.monotonic() < end and not (
                await asyncio.to_thread(servers.named, 0) == new
                and await asyncio.to_thread(servers.named, 1) == new
                and await asyncio.to_thread(servers.role, new) == "master"):
            await asyncio.sleep(0.1)
        named = [await asyncio.to_thread(servers.named, i) for i in range(3)]
        assert named == [new, new, old], f"the partition did not split the Sentinels: {named}"

        a = Daemon(sentinel_settings("node-a", [s0, s1, a_s2], ttl=TTL, renew=RENEW))
        b = Daemon(sentinel_settings("node-b", [b_s0, b_s1, s2], ttl=TTL, renew=RENEW))
        await asyncio.gather(a.start(), b.start())
        both_total = 0.0
        end = time.monotonic() + 15
        last = time.monotonic()
        while time.monotonic() < end and both_total < 1.0:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            if a.can_schedule() and b.can_schedule():
                both_total += now - last
            last = now
        terms = {"A": a.state.term, "B": b.state.term}
        stale = None
        if a.can_schedule() and b.can_schedule() and terms["A"] and terms["B"]:
            lower = b if terms["B"] < terms["A"] else a
            write = await lower.lease.fenced_set(keys.fenced_key(NS, "job"), "stale",
                                                 lower.state.term, raise_on_refused=False)
            stale = (lower.settings.node_id, lower.state.term, write.accepted)
        roles = [await asyncio.to_thread(servers.role, p) for p in (old, new)]
        old_lease, new_lease = await lease_on(old), await lease_on(new)
        print(f"Sentinels name {named} (old master {old}, new {new}); roles {roles}; "
              f"A term {terms['A']} can_schedule={a.can_schedule()}; B term {terms['B']} "
              f"can_schedule={b.can_schedule()}; lease on old master "
              f"holder={old_lease.get('holder_id')} term={old_lease.get('term')}; on new "
              f"master holder={new_lease.get('holder_id')} term={new_lease.get('term')}; both "
              f"allowed to schedule for {both_total:.2f} s (stopped measuring at 1 s); fenced "
              f"write of the lower term (node, term, accepted): {stale}")
        broken = [what for what, bad in [
            ("the master the Sentinels' majority replaced granted a tenure", bool(old_lease)),
            (f"A and B were both allowed to schedule for {both_total:.2f} s", both_total > 0),
            ("a fenced write of a term below a granted one was accepted",
             bool(stale and stale[2]))] if bad]
        assert not broken, broken
    finally:
        for daemon in (b, a):
            if daemon is not None:
                with contextlib.suppress(Exception):
                    await daemon.stop()
        proxies.close()
        await asyncio.to_thread(servers.close)


@pytest.mark.parametrize("fault", ["refused", "slow"])
async def test_one_sentinel_of_three_down_does_not_stop_every_grant(
        tmp_path: Path, fault: str) -> None:
    """One Sentinel of three is down (its host refuses connections); two answer and agree.
    README: "No new tenure is granted while no Sentinel answers, or while the Sentinels that
    answer name different masters": here two answer and agree, so a free lease should be
    granted. The Sentinel asks retry the refused connection with backoff (seconds), longer
    than the operation timeout (the renew interval), so every acquire times out."""
    servers = ThreeSentinels(tmp_path)
    await asyncio.to_thread(servers.start)
    proxies = ProxyHost()
    a = None
    try:
        s0, s1, s2 = servers.sentinel_ports
        down = proxies.add("s2-host", s2).port
        if fault == "refused":
            proxies._call(proxies.proxies["s2-host"].close())  # S2's host: connection refused
        else:
            proxies.delay("s2-host", 0.6)  # S2 answers, 0.6 s late
        a = Daemon(sentinel_settings("node-a", [s0, s1, down]))
        started = time.monotonic()
        await a.start()
        led = await a.wait_until_leader(10)
        print(f"one Sentinel of three {fault}: led={led} after "
              f"{time.monotonic() - started:.2f} s (TTL 2 s, renew 0.5 s); status "
              f"{a.state.role} last_error={getattr(a.state, 'last_error', None)}")
        assert led, "no grant in 10 s although two of three Sentinels answer and agree"
    finally:
        if a is not None:
            with contextlib.suppress(Exception):
                await a.stop()
        proxies.close()
        await asyncio.to_thread(servers.close)


async def test_a_master_restarted_empty_under_sentinel_overlaps_at_most_a_renew_interval(
        tmp_path: Path) -> None:
    """The Sentinel master is killed -9 and comes back empty before Sentinel counts it down
    (a restart, no failover: no +switch-master to hear). A fresh daemon B starts at once and
    is granted on the empty server (with ack=1 once the replica has resynced from it, empty
    too); A leads on until its next renewal finds the lease gone. README, Guarantees:
    Sentinel without acknowledgement said "0 overlap" until this test; it now states the
    one-server bound (up to one renew interval), which the test checks.
    (With COORDINATOR_MIN_REPLICAS_ACK=1 the same run showed 0 overlap: held.)"""
    ack = 0
    servers = Servers(tmp_path, replica=True, libfaketime=None)
    await asyncio.to_thread(servers.start)
    a = b = None

    def node(name: str) -> Settings:
        return chaos_sentinel_node(servers, name, ttl=6.0, renew=2.0, ack=ack)
    try:
        a = Daemon(node("node-a"))
        await a.start()
        assert await a.wait_until_leader(5)
        await asyncio.sleep(0.3)  # just after a renewal: the window is the rest of the interval
        await asyncio.to_thread(servers.restart_master, kill=True, empty=True)
        b = Daemon(node("node-b"))
        sampler = asyncio.ensure_future(overlap_while(a, lambda: b, 6))
        await b.start()
        both_total = await sampler
        print(f"ack={ack}: master restarted empty, Sentinel names "
              f"{servers.sentinel_master()} (master {servers.master_port}); A term "
              f"{a.state.term} leads={a.can_schedule()}; B term {b.state.term} "
              f"leads={b.can_schedule()}; both allowed to schedule for {both_total:.3f} s")
        # the README's bound when Redis lost the live lease without a failover (a master
        # restarted empty before Sentinel saw it down; an evicted lease): the old leader
        # learns at its next renewal, about a round trip when it hears the new leader's
        # event (measured 1-16 ms); the README claimed 0 for these until the attack
        assert both_total <= 2.0 + 0.25, (  # renew interval 2 s, plus the round trip
            f"A and B were both allowed to schedule for {both_total:.3f} s")
    finally:
        for daemon in (b, a):
            if daemon is not None:
                with contextlib.suppress(Exception):
                    await daemon.stop()
        await asyncio.to_thread(servers.close)


async def test_a_handover_lost_in_a_failover_gives_the_old_term_back_to_the_old_leader(
        tmp_path: Path) -> None:
    """`coordinator handoff --to B` while the replica's link is down: A releases the lease
    reserved for B and B is granted term T_B > T_A, all on the old master only. Sentinel
    then fails over: the promoted replica still holds A's lease of term T_A (unexpired). B
    hears the switch, leaves, finds A's lease there. A, a standby since its handover, asks
    acquire.lua, which finds A's own holder and instance id and *renews* it: A leads again
    under T_A, after T_B > T_A was granted, and its fenced writes of T_A are accepted.
    Promise: "term T accepted after a term above T was granted anywhere" never happens."""
    servers = Servers(tmp_path, replica=True, libfaketime=None)
    await asyncio.to_thread(servers.start)
    a = b = None

    def node(name: str) -> Settings:
        return chaos_sentinel_node(servers, name, ttl=20.0, renew=0.5)
    try:
        a = Daemon(node("node-a"))
        await a.start()
        assert await a.wait_until_leader(5)
        b = Daemon(node("node-b"))
        await b.start()
        await asyncio.sleep(1.5)  # B's heartbeats reach the replica: it is alive there too
        t_a = a.state.term
        assert t_a is not None
        await asyncio.to_thread(servers.cut_replication)
        old = servers.master_port
        client = aioredis.Redis(port=old)
        try:
            asked = await request_handoff(client, NS, "global", "node-b", ttl_ms=10_000)
        finally:
            await client.aclose()
        assert asked.outcome == "requested", asked
        assert await b.wait_until_leader(5), "the handover did not reach B"
        t_b = b.state.term
        assert t_b is not None and t_b > t_a
        new = None
        for _ in range(10):  # Sentinel may refuse at first (NOGOODSLAVE until its next INFO)
            new = await asyncio.to_thread(servers.force_failover)
            if new is not None:
                break
            await asyncio.sleep(0.5)
        assert new is not None and new != old
        end = time.monotonic() + 5
        while time.monotonic() < end and not a.can_schedule():
            await asyncio.sleep(0.02)
        led_again = a.can_schedule() and a.state.term == t_a
        write = None
        if led_again:
            write = await a.lease.fenced_set(keys.fenced_key(NS, "job"), "stale", t_a,
                                             raise_on_refused=False)
        lease = await lease_on_plain(new)
        print(f"T_A={t_a}, T_B={t_b} (granted on the old master {old}, lost); new master "
              f"{new} lease holder={lease.get('holder_id')} term={lease.get('term')}; A leads "
              f"again under T_A: {led_again}; A's fenced write of T_A accepted: "
              f"{None if write is None else write.accepted}; B leads={b.can_schedule()}")
        assert not led_again, "A leads again under T_A after T_B > T_A was granted"
    finally:
        for daemon in (b, a):
            if daemon is not None:
                with contextlib.suppress(Exception):
                    await daemon.stop()
        await asyncio.to_thread(servers.close)


async def lease_on_plain(port: int) -> dict[str, str]:
    client = aioredis.Redis(port=port, decode_responses=True, socket_timeout=1)
    try:
        return dict(await client.hgetall(keys.lease_key(NS, "global")))
    finally:
        await client.aclose()


async def test_an_evicted_lease_overlaps_at_most_a_renew_interval() -> None:
    """One Redis (the guaranteed "never" row): an operator sets maxmemory with an allkeys
    policy (the daemon only warns: redis.eviction_risk); a burst of other data evicts the
    lease hash. A fresh daemon B is granted at once; A leads on until its next renewal (or
    until B's event prompts it to look). Promise: memory policy cannot silently end a lease
    early while the old leader still schedules; README one-server row: two nodes allowed to
    schedule "never, except after a forward step of Redis's clock"."""
    with running_redis() as server:
        def node(name: str) -> Settings:
            return load_settings(redis_url=server.url, node_id=name, lease_ttl=6.0,
                                 renew_interval=2.0, heartbeat_interval=0.5, guardian=False,
                                 namespace=NS)
        a = Daemon(node("node-a"))
        b = None
        client = aioredis.Redis.from_url(server.url)
        try:
            await a.start()
            assert await a.wait_until_leader(5)
            await asyncio.sleep(0.2)  # just after a renewal
            used = int((await client.info("memory"))["used_memory"])
            await client.config_set("maxmemory-policy", "allkeys-random")
            await client.config_set("maxmemory", str(used + 2_000_000))
            lease_key = keys.lease_key(NS, "global")
            filler = 0
            while await client.exists(lease_key) and filler < 20_000:
                await client.set(f"junk:{filler}", b"x" * 2000)
                filler += 1
            evicted = not await client.exists(lease_key)
            b = Daemon(node("node-b"))
            sampler = asyncio.ensure_future(overlap_while(a, lambda: b, 3))
            await b.start()
            both_total = await sampler
            print(f"lease evicted={evicted} after {filler} filler keys; A leads="
                  f"{a.can_schedule()} term {a.state.term}; B leads={b.can_schedule()} term "
                  f"{b.state.term}; both allowed to schedule for {both_total:.3f} s")
            assert evicted, "the lease was not evicted: no attack"
            # the README's bound when Redis lost the live lease without a failover (a master
            # restarted empty before Sentinel saw it down; an evicted lease): the old leader
            # learns at its next renewal, about a round trip when it hears the new leader's
            # event (measured 1-16 ms); the README claimed 0 for these until the attack
            assert both_total <= 2.0 + 0.25, (  # renew interval 2 s, plus the round trip
                f"A and B were both allowed to schedule for {both_total:.3f} s")
        finally:
            for daemon in (b, a):
                if daemon is not None:
                    with contextlib.suppress(Exception):
                        await daemon.stop()
            await client.aclose()
