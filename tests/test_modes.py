"""The automation mode: set atomically and announced once per change, on both backends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from coordinator import CorruptDataError, InvalidArgumentError
from coordinator.protocol import keys
from coordinator.protocol.modes import get_automation_mode, set_automation_mode
from coordinator.watching.history import events_since


async def published(pubsub: Any, timeout: float = 0.3) -> list[dict[str, Any]]:
    """Every message that arrives on ``pubsub`` within ``timeout`` seconds."""
    out: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if msg is not None:
            out.append(json.loads(msg["data"]))
    return out


async def test_default_mode_is_running(redis: Any) -> None:
    assert await get_automation_mode(redis, "coordinator") == "running"


async def test_a_change_is_stored_published_and_kept_in_history(redis: Any) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.events_channel("coordinator"))
    await pubsub.get_message(timeout=1.0)
    try:
        change = await set_automation_mode(redis, "coordinator", "paused")
        assert (change.changed, change.mode, change.previous_mode) == (True, "paused", "running")
        assert await get_automation_mode(redis, "coordinator") == "paused"
        announced = {"type": "automation_mode_changed", "mode": "paused",
                     "previous_mode": "running", "at": change.at}
        assert await published(pubsub) == [announced]
        (_, stored), = await events_since(redis, "coordinator")
        assert stored.to_dict() == announced
    finally:
        await pubsub.aclose()


async def test_setting_the_same_mode_is_unchanged_and_announces_nothing(redis: Any) -> None:
    await set_automation_mode(redis, "coordinator", "draining")
    again = await set_automation_mode(redis, "coordinator", "draining")
    assert (again.changed, again.mode, again.previous_mode) == (False, "draining", "draining")
    assert len(await events_since(redis, "coordinator")) == 1
    back = await set_automation_mode(redis, "coordinator", "running")
    assert (back.changed, back.previous_mode) == (True, "draining")


@pytest.mark.parametrize("mode", ["PAUSED", "stopped", "", None, 1])
async def test_unknown_mode_is_refused_before_redis(mode: Any) -> None:
    # no backend at all: the refusal must come before any Redis call
    with pytest.raises(InvalidArgumentError, match="automation mode must be one of"):
        await set_automation_mode(object(), "coordinator", mode)


async def test_a_foreign_value_in_the_mode_key_is_reported_not_overwritten(redis: Any) -> None:
    key = keys.automation_mode_key("coordinator")
    await redis.set(key, "turbo")
    with pytest.raises(CorruptDataError, match="turbo"):
        await get_automation_mode(redis, "coordinator")
    with pytest.raises(CorruptDataError):
        await set_automation_mode(redis, "coordinator", "paused")
    assert await redis.get(key) == b"turbo"
    await redis.delete(key)
    await redis.hset(key, "x", "y")
    with pytest.raises(CorruptDataError):
        await get_automation_mode(redis, "coordinator")
