"""The history stream: every tenure change in order, read by id or by age; typed events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coordinator import CorruptDataError, InvalidArgumentError, Lease
from coordinator.protocol import keys
from coordinator.protocol.event_models import (
    AutomationModeChanged,
    LeaderChanged,
    LeaseReleased,
    OtherEvent,
    parse_event,
)
from coordinator.protocol.modes import set_automation_mode
from coordinator.watching.history import events_since, next_stream_id, parse_duration_ms, parse_stream_id
from tests.log_capture import capture_logs


def lease(redis: Any, holder: str, ttl: float = 5.0) -> Lease:
    return Lease(redis, holder_id=holder, holder_host=f"{holder}.host", ttl=ttl)


async def test_every_tenure_change_is_kept_in_order(redis: Any) -> None:
    holders = ["a", "b", "c", "a"]
    for holder in holders:
        mine = lease(redis, holder)
        got = await mine.acquire()
        await mine.release(term=got.term)
    history = await events_since(redis, "coordinator")
    ids = [i for i, _ in history]
    assert ids == sorted(ids, key=parse_stream_id) and len(set(ids)) == len(ids)
    changes = [(e.type, e.holder_id, e.term) for _, e in history
               if isinstance(e, LeaderChanged | LeaseReleased)]
    terms = sorted({term for _, _, term in changes})  # one per tenure, increasing
    assert changes == [
        (kind, holder, term)
        for term, holder in zip(terms, holders, strict=True)
        for kind in ("leader_changed", "lease_released")
    ]
    firsts = [e for _, e in history if isinstance(e, LeaderChanged)]
    assert [e.previous_holder_id for e in firsts] == [None, "a", "b", "c"]
    assert all(e.stream_id == i for i, e in history)


async def test_since_an_id_returns_only_what_came_after_it(redis: Any) -> None:
    await lease(redis, "a").acquire()
    await set_automation_mode(redis, "coordinator", "paused")
    await set_automation_mode(redis, "coordinator", "running")
    everything = await events_since(redis, "coordinator")
    after_first = await events_since(redis, "coordinator", everything[0][0])
    assert after_first == everything[1:]
    assert all(isinstance(e, AutomationModeChanged) for _, e in after_first)
    assert await events_since(redis, "coordinator", everything[-1][0]) == []


async def test_since_a_duration_uses_the_redis_clock(redis: Any) -> None:
    await set_automation_mode(redis, "coordinator", "paused")
    await asyncio.sleep(0.25)
    await set_automation_mode(redis, "coordinator", "running")
    recent = await events_since(redis, "coordinator", "150ms")
    assert [e.to_dict()["mode"] for _, e in recent] == ["running"]
    assert len(await events_since(redis, "coordinator", "10m")) == 2


async def test_an_empty_or_missing_history_is_empty(redis: Any) -> None:
    assert await events_since(redis, "coordinator") == []
    assert await events_since(redis, "coordinator", "1h") == []


async def test_a_malformed_entry_is_skipped_not_fatal(redis: Any) -> None:
    history = keys.history_key("coordinator")
    await redis.xadd(history, {"event": "not json"})
    await redis.xadd(history, {"other": "field"})
    await lease(redis, "a").acquire()
    with capture_logs() as logs:
        kept = await events_since(redis, "coordinator")
    assert [e.type for _, e in kept] == ["leader_changed"]
    assert [e["event"] for e in logs] == ["history.malformed_event"] * 2


async def test_a_history_key_of_another_type_is_reported(redis: Any) -> None:
    await redis.set(keys.history_key("coordinator"), "x")
    with pytest.raises(CorruptDataError, match="stream"):
        await events_since(redis, "coordinator")


@pytest.mark.parametrize(("text", "ms"), [
    ("90s", 90_000), ("10m", 600_000), ("2h", 7_200_000), ("1d", 86_400_000),
    ("500ms", 500), ("1.5s", 1500), (" 3m ", 180_000),
])
def test_durations_parse(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "10", "m", "-5m", "10 minutes", "1h30m", "1e3s", "abc"])
async def test_bad_since_is_refused_before_redis(text: str) -> None:
    with pytest.raises(InvalidArgumentError):
        await events_since(object(), "coordinator", text)


def test_stream_ids_compare_and_advance() -> None:
    assert parse_stream_id("1700000000000-2") == (1700000000000, 2)
    assert next_stream_id("5-1") == "5-2"
    assert next_stream_id(f"5-{2**64 - 1}") == "6-0"
    with pytest.raises(InvalidArgumentError):
        parse_stream_id("5")


def test_events_parse_strictly_and_convert_back_exactly() -> None:
    raw = ('{"type":"leader_changed","lease":"global","holder_id":"b","holder_host":"h",'
           '"term":2,"previous_holder_id":"a","at":7}')
    event = parse_event(raw, source="t", stream_id="7-0")
    assert isinstance(event, LeaderChanged) and event.stream_id == "7-0"
    assert event.to_dict() == {"type": "leader_changed", "lease": "global", "holder_id": "b",
                               "holder_host": "h", "term": 2, "previous_holder_id": "a", "at": 7}
    newer = parse_event('{"type":"handoff_requested","to":"b","at":9}', source="t")
    assert isinstance(newer, OtherEvent)
    assert newer.to_dict() == {"type": "handoff_requested", "to": "b", "at": 9}
    for bad in ['{"type":"lease_released","lease":"g","holder_id":"a","term":"1","at":1}',
                '{"type":"resync","lease":"g","holder_id":null,"holder_host":null,"term":null,"at":1}',
                '{"type":"lease_expired","lease":"g","holder_id":"a","term":1,"at":1}',
                '{"type":"automation_mode_changed","mode":"fast","previous_mode":"running","at":1}',
                '{"at":1}', "[]", "garbage"]:
        with pytest.raises(CorruptDataError):
            parse_event(bad, source="t")


def test_events_and_records_give_a_dict_and_json_text() -> None:
    """to_dict() is the JSON object as a dict, to_json() the same object as text."""
    import json

    from coordinator.connection.eviction import RedisReport
    from coordinator.protocol.event_models import parse_event

    event = parse_event(json.dumps({"type": "lease_released", "lease": "global",
                                    "holder_id": "a", "term": 5, "at": 9}), source="test")
    assert isinstance(event.to_dict(), dict)
    assert json.loads(event.to_json()) == event.to_dict()
    report = RedisReport("noeviction")
    assert json.loads(report.to_json()) == report.to_dict() == {
        "maxmemory_policy": "noeviction", "warnings": []}
