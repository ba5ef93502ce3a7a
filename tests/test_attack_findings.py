"""Failures a second session found by attacking the Redis-side promise, each kept as a test:
terms that ran ahead of the clock under grant churn (and so could repeat after a Redis
restarted empty), a planted term or garbage field taken up or overwritten by a renewal, and
one deeply nested message on the events channel killing every event follower."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coordinator.errors import CorruptDataError
from coordinator.protocol import keys
from coordinator.protocol.event_models import parse_event
from coordinator.protocol.lease import Lease
from coordinator.settings import SettingsError, load_settings


async def test_grant_churn_never_pushes_terms_ahead_of_the_redis_clock(redis: Any) -> None:
    # with a millisecond floor, more than one grant per ms ran terms ahead of the clock, and a
    # Redis restarted empty then granted them again (seen: 35 s ahead after 40,000 grants);
    # pipelined like that attack, so grants come faster than one per ms
    from coordinator.protocol.scripts import register_scripts

    scripts = register_scripts(redis)
    lease_keys = [keys.lease_key("churn", "global"), keys.tenure_key("churn", "global"),
                  keys.history_key("churn"), keys.automation_mode_key("churn"),
                  keys.no_controller_key("churn")]
    release_keys = [lease_keys[0], lease_keys[2], lease_keys[1], keys.handoff_key("churn", "global"),
                    lease_keys[4]]
    pipe = redis.pipeline(transaction=False)
    for i in range(400):
        holder, instance = f"h{i}", f"i{i}"
        await scripts.acquire(keys=lease_keys, args=[holder, "host", instance, 30_000, 0, "{}", "",
                                                     "global", "churn:events", 100, ""], client=pipe)
        await scripts.release(keys=release_keys, args=[holder, instance, "", "global",
                                                       "churn:events", 100, "", 30_000], client=pipe)
    await pipe.execute()
    highest = int(await redis.hget(lease_keys[1], "term"))
    await redis.delete(*lease_keys[:3])  # a Redis restarted empty: every grant is forgotten
    fresh = await Lease(redis, holder_id="fresh", ttl=30, namespace="churn").acquire()
    assert fresh.term > highest  # never a term granted before


@pytest.mark.parametrize("planted", ["99999999999999999999", "1e3", "5", "-1"])
async def test_a_term_planted_in_the_live_lease_is_reported_not_taken_up(redis: Any, planted: str) -> None:
    lease = Lease(redis, holder_id="a", ttl=30, namespace="plant")
    got = await lease.acquire()
    key = keys.lease_key("plant", "global")
    await redis.hset(key, "term", planted)
    with pytest.raises(CorruptDataError) as raised:
        await lease.acquire()  # the renewal
    assert raised.value.key == key
    assert (await redis.hget(key, "term")).decode() == planted  # reported, not overwritten
    assert got.term != int(float(planted))


@pytest.mark.parametrize("field", ["lease_expires_at", "renewed_at"])
async def test_garbage_in_the_live_lease_is_reported_not_overwritten(redis: Any, field: str) -> None:
    lease = Lease(redis, holder_id="a", ttl=30, namespace="garbage")
    await lease.acquire()
    key = keys.lease_key("garbage", "global")
    await redis.hset(key, field, "garbage-later")
    with pytest.raises(CorruptDataError) as raised:
        await lease.acquire()
    assert raised.value.key == key
    assert (await redis.hget(key, field)) == b"garbage-later"


def test_a_deeply_nested_event_is_malformed_not_a_crash() -> None:
    with pytest.raises(CorruptDataError):
        parse_event("[" * 100_000 + "]" * 100_000, source="ch")


async def test_a_deeply_nested_message_does_not_kill_the_daemons_follower(redis: Any) -> None:
    from coordinator.daemon.daemon import Daemon

    daemon = Daemon(load_settings(node_id="a", namespace="nested", lease_ttl=2, renew_interval=0.5,
                                  heartbeat_interval=0.5), redis=redis)
    await daemon.start()
    try:
        await asyncio.sleep(0.1)
        await redis.publish(keys.events_channel("nested"), "[" * 100_000 + "]" * 100_000)
        await asyncio.sleep(0.3)
        assert daemon.loops_running()  # /healthz would say 503 and a liveness probe restart it
    finally:
        await daemon.stop()


@pytest.mark.parametrize("ttl", ["40000000", "0.0004", "1e300"])
def test_a_lease_ttl_out_of_range_is_a_settings_error(ttl: str) -> None:
    with pytest.raises(SettingsError, match="COORDINATOR_LEASE_TTL"):
        load_settings(lease_ttl=ttl, renew_interval=0.0001, heartbeat_interval=0.0001)
