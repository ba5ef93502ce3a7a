"""History never hides a gap: when the stream no longer reaches back to a cursor (trimmed, or
Redis restarted empty), a resumed watch yields a `gap` before its resync, and
`events --since ID` says so first, exiting 0."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis as sync_redis

from coordinator.protocol import keys
from coordinator.protocol.modes import set_automation_mode
from coordinator.watching.history import events_since
from coordinator.watching.watch import watch
from tests.processes import coordinator
from tests.redis_server import RedisServer

NS = "gaps"


async def _three_mode_changes(redis: Any) -> list[str]:
    ids = []
    for mode in ("paused", "draining", "running"):
        await set_automation_mode(redis, NS, mode)
        newest = await redis.xrevrange(keys.history_key(NS), count=1)
        entry_id = newest[0][0]
        ids.append(entry_id.decode() if isinstance(entry_id, bytes) else entry_id)
    return ids


async def _first_events(redis: Any, resume_from: str, count: int) -> list[Any]:
    events = watch(redis, namespace=NS, resume_from=resume_from)
    got: list[Any] = []
    try:
        async with asyncio.timeout(10):
            async for event in events:
                got.append(event)
                if len(got) == count:
                    break
    finally:
        await events.aclose()
    return got


async def test_a_resumed_watch_reports_a_trimmed_history(redis: Any) -> None:
    ids = await _three_mode_changes(redis)
    await redis.xtrim(keys.history_key(NS), maxlen=1, approximate=False)  # ids[0], ids[1] gone
    got = await _first_events(redis, ids[0], 3)
    assert [e.type for e in got] == ["gap", "automation_mode_changed", "resync"]
    gap = got[0].to_dict()
    assert (gap["cursor"], gap["oldest_id"]) == (ids[0], ids[2])


async def test_a_resumed_watch_reports_an_emptied_history(redis: Any) -> None:
    ids = await _three_mode_changes(redis)
    await redis.delete(keys.history_key(NS))  # as a Redis restarted with no persistence
    got = await _first_events(redis, ids[1], 2)
    assert [e.type for e in got] == ["gap", "resync"]
    assert got[0].to_dict()["oldest_id"] is None


async def test_no_gap_while_the_history_reaches_back(redis: Any) -> None:
    ids = await _three_mode_changes(redis)
    got = await _first_events(redis, ids[0], 3)
    assert [e.type for e in got] == ["automation_mode_changed", "automation_mode_changed", "resync"]
    history = await events_since(redis, NS, ids[0])
    assert [e.type for _, e in history] == ["automation_mode_changed", "automation_mode_changed"]


async def test_events_since_a_trimmed_id_starts_with_the_gap(redis: Any) -> None:
    ids = await _three_mode_changes(redis)
    await redis.xtrim(keys.history_key(NS), maxlen=1, approximate=False)
    history = await events_since(redis, NS, ids[0])
    assert [e.type for _, e in history] == ["gap", "automation_mode_changed"]


@pytest.mark.e2e
def test_the_events_command_says_events_were_trimmed_and_exits_0(redis_server: RedisServer) -> None:
    client = sync_redis.Redis(port=redis_server.port)
    try:
        for command in ("pause", "drain", "resume"):
            done = coordinator(command, redis_url=redis_server.url, COORDINATOR_NAMESPACE=NS)
            assert done.returncode == 0, done.stderr
        ids = [i.decode() for i, _ in client.xrange(keys.history_key(NS))][-3:]
        client.xtrim(keys.history_key(NS), maxlen=1, approximate=False)
        as_json = coordinator("events", "--since", ids[0], "--json", redis_url=redis_server.url,
                              COORDINATOR_NAMESPACE=NS)
        assert as_json.returncode == 0, as_json.stderr
        first = json.loads(as_json.stdout.splitlines()[0])
        assert (first["type"], first["cursor"], first["oldest_id"]) == ("gap", ids[0], ids[2])
        human = coordinator("events", "--since", ids[0], redis_url=redis_server.url,
                            COORDINATOR_NAMESPACE=NS)
        assert human.returncode == 0 and "trimmed" in human.stdout.splitlines()[0], human.stdout
    finally:
        client.delete(keys.history_key(NS), keys.automation_mode_key(NS))
        client.close()
