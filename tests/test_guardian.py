"""The guardian's parts: what it keeps of the daemon's messages, its RESP client and the
release it sends, on a real redis-server (single, with an ACL user, through Sentinel, on a
Cluster), and its wait for the guarded processes."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
import redis.asyncio as aioredis

from coordinator.guardian import guardian_redis
from coordinator.guardian.guardian import Guarded, Known, apply
from coordinator.guardian.guardian_link import guardian_command, redis_message, release_command
from coordinator.guardian.guardian_redis import send_release
from coordinator.protocol import functions, keys, scripts
from coordinator.protocol.lease import Lease
from coordinator.settings import load_settings
from tests.redis_server import RedisServer, free_port, redis_server_binary, running_redis


def _tenure(lease: Lease, term: int) -> dict[str, Any]:
    command, fallback = release_command(lease, term)
    return {"term": term, "release": command, "fallback": fallback, "wait": 1.0}


def _redis(url: str, **more: Any) -> dict[str, Any]:
    return {"url": url, "sentinels": [], "tls": {}, "timeout": 2.0, **more}


# ---- what it keeps --------------------------------------------------------------------


def test_the_latest_tenure_is_kept_until_its_own_end() -> None:
    known = Known()
    known = apply(known, {"redis": {"url": "redis://x"}})
    known = apply(known, {"guard": 42})
    known = apply(known, {"tenure": {"term": 10, "release": ["EVALSHA"]}})
    known = apply(known, {"ended": {"term": 9}})  # another tenure's end changes nothing
    assert known.tenure is not None and known.tenure["term"] == 10
    known = apply(known, {"tenure": {"term": 12, "release": ["EVALSHA"]}})
    known = apply(known, {"ended": {"term": 10}})
    assert known.tenure is not None and known.tenure["term"] == 12
    known = apply(known, {"ended": {"term": 12}})
    assert known.tenure is None
    assert known.guarded == [42] and known.redis == {"url": "redis://x"}


def test_a_tenure_without_a_command_is_ignored() -> None:
    assert apply(Known(), {"tenure": {"term": 3}}).tenure is None


def test_no_secret_in_the_guardians_command_line() -> None:
    settings = load_settings(node_id="a", redis_url="redis://u:hunter2-pw@127.0.0.1:1/0",
                             redis_sentinel_password="sentinel-pw")
    argv = guardian_command(7, "a")
    assert not any("hunter2" in a or "sentinel-pw" in a for a in argv)
    sent = json.dumps(redis_message(settings))
    assert "hunter2-pw" in sent and "sentinel-pw" in sent  # they go over the socket


# ---- the release, on real servers ------------------------------------------------------


@pytest.fixture
async def real(redis_server: RedisServer) -> Any:
    client = aioredis.Redis(port=redis_server.port)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


def _lease(client: Any, namespace: str = "g") -> Lease:
    return Lease(client, holder_id="a", ttl=30, namespace=namespace)


def _events(url: str, namespace: str) -> list[dict[str, Any]]:
    with contextlib.closing(redis_sync.Redis.from_url(url)) as r:
        return [json.loads(f[b"event"]) for _, f in r.xrange(keys.history_key(namespace))]


@pytest.mark.real
async def test_it_releases_exactly_its_tenure(real: Any, redis_server: RedisServer) -> None:
    lease = _lease(real)
    term = (await lease.acquire()).record.term
    reply = send_release(_redis(redis_server.url), _tenure(lease, term))
    assert reply[0] == "released"
    assert await lease.get() is None
    released = [e for e in _events(redis_server.url, "g") if e["type"] == "lease_released"]
    assert released and released[-1]["holder_id"] == "a" and released[-1]["term"] == term


@pytest.mark.real
async def test_a_stale_release_changes_nothing(real: Any, redis_server: RedisServer) -> None:
    lease = _lease(real)
    old = (await lease.acquire()).record.term
    await lease.release()
    new = (await lease.acquire()).record.term
    assert new > old
    reply = send_release(_redis(redis_server.url), _tenure(lease, old))
    assert reply[0] == "not_holder"
    record = await lease.get()
    assert record is not None and record.term == new
    # nor another instance's tenure of the same holder and term
    other = Lease(real, holder_id="a", ttl=30, namespace="g")
    assert send_release(_redis(redis_server.url), _tenure(other, new))[0] == "not_holder"


@pytest.mark.real
async def test_without_the_script_loaded_it_sends_the_fallback(real: Any,
                                                                 redis_server: RedisServer) -> None:
    lease = _lease(real)
    term = (await lease.acquire()).record.term
    await real.script_flush()
    assert send_release(_redis(redis_server.url), _tenure(lease, term))[0] == "released"


@pytest.mark.real
async def test_it_logs_in_as_an_acl_user_on_its_database() -> None:
    if redis_server_binary() is None:
        pytest.skip("no redis-server")
    with running_redis("--user", "coord", "on", ">pw-x", "~*", "&*", "+@all") as server:
        url = f"redis://coord:pw-x@127.0.0.1:{server.port}/3"
        client = aioredis.Redis.from_url(url)
        try:
            lease = _lease(client)
            term = (await lease.acquire()).record.term
            assert send_release(_redis(url), _tenure(lease, term))[0] == "released"
            assert await lease.get() is None
            with pytest.raises(guardian_redis.RespError):
                send_release(_redis(f"redis://coord:wrong@127.0.0.1:{server.port}/3"),
                             _tenure(lease, term))
        finally:
            await client.aclose()


@pytest.mark.real
async def test_under_the_fcall_only_acl_it_releases_with_fcall() -> None:
    """The shipped ACL grants FCALL of the product's functions and no EVALSHA: the tenure's
    release must be the command on the path the daemon's own client takes."""
    if redis_server_binary() is None:
        pytest.skip("no redis-server")
    with running_redis("--user", "coord", "on", ">pw-x", "~*", "&*", "+@all", "-@scripting",
                       "+fcall") as server:
        admin = aioredis.Redis(port=server.port)
        url = f"redis://coord:pw-x@127.0.0.1:{server.port}/0"
        client = aioredis.Redis.from_url(url)
        try:
            await functions.install(admin)
            lease = _lease(client)
            term = (await lease.acquire()).record.term
            assert scripts.known_path(client) == "functions"
            old_way = release_command(lease, term)  # EVALSHA, as before: refused by this ACL
            with pytest.raises(guardian_redis.RespError, match="NOPERM"):
                send_release(_redis(url), {"term": term, "release": old_way[0],
                                           "fallback": old_way[1], "wait": 1.0})
            command, fallback = release_command(lease, term, scripts.known_path(client))
            assert command[0] == "FCALL" and fallback is None
            tenure = {"term": term, "release": command, "fallback": fallback, "wait": 1.0}
            assert send_release(_redis(url), tenure)[0] == "released"
            assert await lease.get() is None
        finally:
            await client.aclose()
            await admin.aclose()


@contextlib.contextmanager
def _sentinel(master: RedisServer, workdir: Path) -> Iterator[int]:
    port = free_port()
    conf = workdir / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                    f"sentinel monitor svc 127.0.0.1 {master.port} 1\n")
    binary = redis_server_binary()
    assert binary is not None
    process = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        client = redis_sync.Redis(port=port)
        for _ in range(200):
            with contextlib.suppress(redis_sync.RedisError):
                if client.sentinel_get_master_addr_by_name("svc"):
                    break
            time.sleep(0.05)
        client.close()
        yield port
    finally:
        process.kill()
        process.wait()


@pytest.mark.real
async def test_it_finds_the_master_through_sentinel(real: Any, redis_server: RedisServer,
                                                    tmp_path: Path) -> None:
    lease = _lease(real)
    term = (await lease.acquire()).record.term
    with _sentinel(redis_server, tmp_path) as port:
        # the URL's host is not the master's: Sentinel names it
        config = _redis("redis://127.0.0.1:1/0", service="svc",
                        sentinels=[["127.0.0.1", free_port()], ["127.0.0.1", port]])
        assert send_release(config, _tenure(lease, term))[0] == "released"
    assert await lease.get() is None


@pytest.mark.e2e
async def test_on_a_cluster_it_follows_the_redirect_to_the_leases_node() -> None:
    from tests.test_topologies import three_master_cluster

    with three_master_cluster() as nodes:
        url = nodes[0].url
        client = aioredis.RedisCluster.from_url(url)
        try:
            lease = _lease(client, namespace="c" + uuid.uuid4().hex[:6])
            term = (await lease.acquire()).record.term
            owner = await client.cluster_keyslot(lease.key)
            # every node, the owner of the slot or not: the others answer MOVED
            for node in nodes:
                assert send_release(_redis(node.url), _tenure(lease, term))[0] in (
                    "released", "not_holder")
            assert await lease.get() is None, owner
        finally:
            await client.aclose()


# ---- the wait for the guarded processes ------------------------------------------------


def test_the_wait_ends_when_every_guarded_process_is_gone() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        guarded = Guarded()
        guarded.add(sleeper.pid)
        assert guarded.wait(0.05) is False
        sleeper.kill()
        sleeper.wait()
        assert guarded.wait(5.0) is True
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


def test_a_process_gone_before_it_was_guarded_is_not_waited_for() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    guarded = Guarded()
    guarded.add(int(done.stdout))
    assert guarded.wait(0.0) is True


@pytest.mark.e2e
async def test_it_speaks_tls_with_a_client_certificate(tmp_path: Path) -> None:
    from tests.test_topologies import make_certificates, wait_until

    files = make_certificates(tmp_path)
    port = free_port()
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server")
    server = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--tls-cert-file", str(files["server.crt"]), "--tls-key-file", str(files["server.key"]),
         "--tls-ca-cert-file", str(files["ca.crt"]), "--tls-auth-clients", "yes",
         "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tls = {"ssl": True, "ssl_ca_certs": str(files["ca.crt"]),
           "ssl_certfile": str(files["client.crt"]), "ssl_keyfile": str(files["client.key"])}
    try:
        sync = redis_sync.Redis(port=port, **tls)
        assert wait_until(sync.ping, 10)
        sync.close()
        client = aioredis.Redis(port=port, **tls)
        try:
            lease = _lease(client)
            term = (await lease.acquire()).record.term
            config = _redis(f"rediss://127.0.0.1:{port}/0",
                            tls={"ca": str(files["ca.crt"]), "cert": str(files["client.crt"]),
                                 "key": str(files["client.key"])})
            assert send_release(config, _tenure(lease, term))[0] == "released"
            assert await lease.get() is None
        finally:
            await client.aclose()
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6390/0?password=qpw&db=3",
    "redis://u:p@127.0.0.1:6390/2?db=5",
    "redis://127.0.0.1:6390/1?username=v&password=q",
    "unix:///tmp/r.sock?db=4&password=z",
])
def test_the_guardian_reaches_redis_exactly_as_the_daemons_client_does(url: str) -> None:
    """Whatever form the URL takes (a password or a database in the query), the guardian
    must log in as the daemon's own client does, or its release is refused or misses."""
    from redis.connection import parse_url

    where = guardian_redis.target(redis_message(load_settings(node_id="a", redis_url=url))["redis"])
    want = parse_url(url)
    assert where.password == want.get("password")
    assert where.username == want.get("username")
    assert where.db == int(want.get("db") or 0)
    assert (where.path, where.host if "path" not in want else None) == (
        want.get("path"), want.get("host"))
