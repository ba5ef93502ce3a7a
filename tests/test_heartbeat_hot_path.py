"""The heartbeat's hot path writes only what moved and moves the record's expiry once per
period: what readers see after each beat, and the record's lifetime, stay as they were."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from coordinator.protocol import keys
from coordinator.protocol.membership import Heartbeat
from coordinator.protocol.records import LeaseRecord

NS = "hot"


def _beat(redis: Any, *, interval: float, retention: float) -> Heartbeat:
    return Heartbeat(redis, namespace=NS, node_id="n", host="h", role="standby", priority=5,
                     version="1", instance_id="i-n", interval=interval, retention=retention)


async def _record(redis: Any) -> dict[str, str]:
    raw = await redis.hgetall(keys.controller_key(NS, "n"))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def test_each_beat_leaves_the_record_as_if_every_field_had_been_written(redis: Any) -> None:
    beat = _beat(redis, interval=1, retention=600)
    first = await beat.beat()
    started = await _record(redis)
    assert started["steady_since"] == str(first) and started["metadata_json"] == "{}"
    # (status, metadata, what steady_since must be): a degraded beat ends the run, the next
    # alive beat starts a new one; metadata is what the last beat sent
    steps: list[tuple[Any, Any, str | None]] = [
        ("alive", None, str(first)), ("alive", {"k": 1}, str(first)),
        ("alive", {"k": 1}, str(first)), ("degraded", {"k": 2}, ""),
        ("degraded", None, ""), ("alive", None, "now"), ("alive", {"k": 3}, None)]
    steady = ""
    for status, metadata, expected in steps:
        now = await beat.beat(status, metadata)
        record = await _record(redis)
        steady = str(now) if expected == "now" else (steady if expected is None else expected)
        assert record["status"] == status
        assert record["last_heartbeat_at"] == str(now)
        assert record["metadata_json"] == (f'{{"k":{metadata["k"]}}}' if metadata else "{}")
        assert record["steady_since"] == steady
        # the fixed fields, written by the first beat, stay
        assert {k: record[k] for k in ("node_id", "host", "role", "priority", "version",
                                       "instance_id", "heartbeat_interval_ms", "preferred",
                                       "lease")} == {
            "node_id": "n", "host": "h", "role": "standby", "priority": "5", "version": "1",
            "instance_id": "i-n", "heartbeat_interval_ms": "1000", "preferred": "0",
            "lease": "global"}
        assert record["started_at"] == started["started_at"]
        assert await redis.zscore(keys.heartbeats_key(NS), "n") == now


async def test_the_record_lives_at_least_the_retention_after_its_last_beat_and_at_most_a_period_more(
        redis: Any) -> None:
    # interval 10 ms: the expiry moves once per period of 16 intervals (160 ms), so 40 beats
    # 15 ms apart cross several periods and many beats inside one
    interval_ms, retention_ms = 10, 1000
    period_ms = min(16 * interval_ms, retention_ms)
    beat = _beat(redis, interval=interval_ms / 1000, retention=retention_ms / 1000)
    key = keys.controller_key(NS, "n")
    expiries = set()
    for _ in range(40):
        now = await beat.beat()
        expires_at = await redis.pexpiretime(key)
        assert now + retention_ms <= expires_at <= now + retention_ms + period_ms, (
            f"beat at {now}: the record expires at {expires_at}")
        expiries.add(expires_at)
        await asyncio.sleep(0.015)
    assert len(expiries) < 40, "the expiry moved on every beat"


def test_a_renewed_record_is_the_record_with_its_two_moved_fields_replaced() -> None:
    held = LeaseRecord("h", "host", "i", 7, 100, 50, 40, "p", {"m": [1]}, True)
    renewed = held.renewed(200, 150)
    assert renewed == dataclasses.replace(held, lease_expires_at=200, renewed_at=150)
    assert type(renewed) is LeaseRecord and renewed is not held
    assert (held.lease_expires_at, held.renewed_at) == (100, 50)
