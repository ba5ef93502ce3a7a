"""The stdlib client ``coordinator status`` reads through answers as redis.asyncio does (text
where redis-py gives bytes), against the same real Redis, replies of many reads included."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from coordinator.connection.boundary import text, text_map
from coordinator.connection.resp_client import RespClient, RespError
from coordinator.guardian.guardian_redis import Connection, encode_command
from tests.redis_server import RedisServer


@pytest.fixture
async def both(redis_server: RedisServer) -> AsyncIterator[tuple[RespClient, Any]]:
    theirs = aioredis.Redis(port=redis_server.port)
    await theirs.flushall()
    ours = RespClient(redis_server.url, timeout=2.0)
    try:
        yield ours, theirs
    finally:
        await ours.aclose()
        await theirs.flushall()
        await theirs.aclose()


def _decoded(value: Any) -> Any:
    if isinstance(value, dict):
        return text_map(value)
    if isinstance(value, list | tuple):
        return [_decoded(v) for v in value]
    return text(value)


async def test_each_read_answers_as_redis_py_does(both: tuple[RespClient, Any]) -> None:
    ours, theirs = both
    await theirs.hset("h", mapping={"a": "1", "b": "é"})
    await theirs.set("s", "value")
    await theirs.zadd("z", {"x": 1.5, "y": 3, "w": 2})
    for name, args, kwargs in [("hgetall", ("h",), {}), ("hgetall", ("nothing",), {}),
                               ("get", ("s",), {}), ("get", ("nothing",), {}),
                               ("type", ("h",), {}), ("type", ("nothing",), {}),
                               ("zrevrangebyscore", ("z", "+inf", 2), {"withscores": True}),
                               ("config_get", ("maxmemory-policy",), {})]:
        mine = await getattr(ours, name)(*args, **kwargs)
        assert _decoded(mine) == _decoded(await getattr(theirs, name)(*args, **kwargs)), name
    seconds, micros = await ours.time()
    assert isinstance(seconds, int) and isinstance(micros, int)


async def test_an_error_reply_is_none_of_redis_pys_exceptions(both: tuple[RespClient, Any]) -> None:
    ours, theirs = both
    await theirs.set("s", "value")
    with pytest.raises(RespError, match="WRONGTYPE"):
        await ours.hgetall("s")


async def test_a_script_is_loaded_on_noscript_and_then_run(both: tuple[RespClient, Any]) -> None:
    ours, theirs = both
    await theirs.script_flush()
    script = ours.register_script("return {KEYS[1], ARGV[1]}")
    assert await script(keys=["k"], args=["v"]) == ["k", "v"]
    assert await script(keys=["k2"], args=["v2"]) == ["k2", "v2"]


def test_a_reply_longer_than_many_reads_arrives_whole() -> None:
    """Thousands of values, one larger than a read, sent a few bytes at a time."""
    values = [f"value-{i}" for i in range(5000)] + ["x" * 200_000, ""]
    reply = encode_command(values)
    ours, theirs = socket.socketpair()

    def send_slowly() -> None:
        for start in range(0, len(reply), 7919):
            theirs.sendall(reply[start:start + 7919])

    sender = threading.Thread(target=send_slowly)
    sender.start()
    try:
        connection = Connection(ours)
        ours.settimeout(5)
        assert connection.call("LRANGE", "l", 0, -1) == values  # the peer ignores the command
    finally:
        sender.join()
        ours.close()
        theirs.close()
