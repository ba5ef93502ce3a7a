"""The scripts as a Redis 7 function library (FCALL) and as plain scripts (EVALSHA): the same
replies and error replies on both paths, the path each client takes, and a confined user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from coordinator.errors import CoordinatorError, CorruptDataError
from coordinator.protocol import functions, keys
from coordinator.protocol.lease import Lease
from coordinator.protocol.scripts import SCRIPT_NAMES, client_path, release_command, script_source, use_path
from tests.redis_server import RedisServer, redis_server_binary, running_redis
from tests.test_script_errors import CASES, SCRIPTS, _snapshot

PATHS = ("functions", "scripts")


def test_the_library_wraps_every_script_unchanged_under_versioned_names() -> None:
    source = functions.library_source()
    assert source.startswith(f"#!lua name={functions.library_name()}\n")
    for name in SCRIPT_NAMES:
        assert script_source(name).rstrip("\n") in source
        assert f"function_name = '{functions.function_name(name)}'" in source
        assert functions.function_name(name).startswith(functions.library_name() + "_")
    assert len(functions.library_digest()) == 12


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("script", "key"), CASES, ids=[f"{s}-{k}" for s, k in CASES])
async def test_a_foreign_key_is_named_alike_on_both_paths(
    redis: Any, path: str, script: str, key: str,
) -> None:
    use_path(redis, path)  # type: ignore[arg-type]
    _, setup, call = SCRIPTS[script]
    await setup(redis)
    await redis.delete(key)
    await redis.rpush(key, "foreign")
    before = await _snapshot(redis)
    try:
        await call(redis)
    except CorruptDataError as e:
        assert e.key == key, f"{script} on {path} blamed {e.key} for a foreign {key}"
        assert await _snapshot(redis) == before
    else:
        assert (await _snapshot(redis))[key] == before[key]


async def test_a_client_that_may_load_takes_the_functions_and_reloads_them_when_gone(
    redis: Any,
) -> None:
    lease = Lease(redis, holder_id="a", ttl=30, namespace="fn", instance_id="i-a")
    assert (await lease.acquire()).is_leader
    assert await client_path(redis) == "functions"
    await redis.function_flush()  # e.g. a Redis restarted empty: the next call loads again
    assert (await lease.acquire()).operation == "renew"
    assert (await lease.release()).released


@pytest.mark.parametrize("path", PATHS)
async def test_the_raw_release_command_releases(redis: Any, path: str) -> None:
    """What a stdlib-only sender (the guardian) sends: the exact argument list."""
    use_path(redis, path)  # type: ignore[arg-type]
    lease = Lease(redis, holder_id="a", ttl=30, namespace="fn", instance_id="i-a")
    term = (await lease.acquire()).term
    call_keys = [keys.lease_key("fn", "global"), keys.history_key("fn"),
                 keys.tenure_key("fn", "global"), keys.handoff_key("fn", "global"),
                 keys.no_controller_key("fn")]
    call_args = ["a", "i-a", str(term), "global", keys.events_channel("fn"), 100, "", 30000]
    command = await release_command(redis, call_keys, call_args)
    assert command[0] == ("FCALL" if path == "functions" else "EVALSHA")
    if path == "scripts":
        await redis.script_load(script_source("release"))
    reply = await redis.execute_command(*command)
    assert reply[0] in (b"released", "released")
    assert await redis.exists(keys.lease_key("fn", "global")) == 0


# ---- confined users on a real redis-server -------------------------------------------------

RULES = ["on", ">pw", "~{fn}:*", "&fn:events", "-@all", "+type", "+time", "+exists", "+get",
         "+set", "+del", "+hget", "+hmget", "+hset", "+hdel", "+hgetall", "+pexpire",
         "+pexpireat", "+zadd", "+zrem", "+zscore", "+zrangebyscore", "+zrevrangebyscore",
         "+zremrangebyscore", "+xadd", "+xrange", "+xrevrange", "+publish", "+ping"]


@pytest.fixture
def server() -> Iterator[RedisServer]:
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine (apt-get install redis-server)")
    with running_redis() as real:
        yield real


def _user(server: RedisServer, name: str, *extra: str) -> aioredis.Redis:
    admin = redis_sync.Redis(port=server.port)
    admin.execute_command("ACL", "SETUSER", name, "reset", *RULES, *extra)
    admin.close()
    return aioredis.Redis(port=server.port, username=name, password="pw")


async def test_a_confined_user_without_the_library_is_told_to_install_it(server: RedisServer) -> None:
    user = _user(server, "confined", "+fcall")
    try:
        lease = Lease(user, holder_id="a", ttl=30, namespace="fn", instance_id="i-a")
        with pytest.raises(functions.FunctionsNotInstalledError, match="install-functions"):
            await lease.acquire()
        admin = aioredis.Redis(port=server.port)
        assert await functions.install(admin) is True
        assert await functions.install(admin) is False  # idempotent
        await admin.aclose()
        assert (await lease.acquire()).is_leader  # the same client probes again
        assert await client_path(user) == "functions"
        with pytest.raises(NoPermissionError):
            await user.eval("return 1", 0)
    finally:
        await user.aclose()


async def test_a_user_granted_only_evalsha_keeps_the_scripts(server: RedisServer) -> None:
    """The Redis 6.2 ACL (no FCALL): the scripts path, chosen without an error."""
    user = _user(server, "legacy", "+evalsha", "+script|load")
    try:
        lease = Lease(user, holder_id="a", ttl=30, namespace="fn", instance_id="i-a")
        assert (await lease.acquire()).is_leader
        assert await client_path(user) == "scripts"
        assert (await lease.release()).released
    finally:
        await user.aclose()


async def test_a_confined_user_cannot_leave_its_keys_through_a_function(server: RedisServer) -> None:
    admin = aioredis.Redis(port=server.port)
    await functions.install(admin)
    await admin.aclose()
    user = _user(server, "confined", "+fcall")
    try:
        with pytest.raises(CoordinatorError, match=r"permissions|NOPERM"):
            await Lease(user, holder_id="a", ttl=30, namespace="other").acquire()
    finally:
        await user.aclose()


async def test_two_versions_of_the_library_coexist(server: RedisServer) -> None:
    """A rolling upgrade: the old version's daemons call their library while the new one's
    is loaded beside it (function names are global in Redis, so they carry the digest)."""
    admin = aioredis.Redis(port=server.port)
    try:
        other = functions.library_source().replace(functions.library_digest(), "0123456789ab")
        await admin.function_load(other)
        assert await functions.install(admin) is True
        assert await admin.fcall("coordinator_0123456789ab_version", 0) == b"0123456789ab"
        assert (await admin.fcall(functions.function_name("version"), 0)).decode() == (
            functions.library_digest())
    finally:
        await admin.aclose()


def test_install_functions_prunes_other_versions_only_when_asked(server: RedisServer) -> None:
    import subprocess
    import sys

    from tests.processes import coordinator_env

    admin = redis_sync.Redis(port=server.port)
    try:
        old = functions.library_source().replace(functions.library_digest(), "0123456789ab")
        admin.function_load(old)
        admin.function_load("#!lua name=someone_else\n"
                            "redis.register_function('theirs', function() return 1 end)")
        url = f"redis://127.0.0.1:{server.port}/0"
        env = {**coordinator_env(url), "COORDINATOR_REDIS_ADMIN_URL": url}
        command = [sys.executable, "-m", "coordinator", "redis", "install-functions"]

        def libraries() -> set[str]:
            return {dict(zip(e[::2], e[1::2], strict=False))[b"library_name"].decode()
                    for e in admin.function_list()}

        kept = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30,
                              check=False)
        assert kept.returncode == 0, kept.stderr
        assert "also present: coordinator_0123456789ab" in kept.stdout
        assert libraries() == {functions.library_name(), "coordinator_0123456789ab",
                               "someone_else"}
        pruned = subprocess.run([*command, "--prune"], env=env, capture_output=True, text=True,
                                timeout=30, check=False)
        assert pruned.returncode == 0, pruned.stderr
        assert "deleted: coordinator_0123456789ab" in pruned.stdout
        assert libraries() == {functions.library_name(), "someone_else"}
    finally:
        admin.close()
