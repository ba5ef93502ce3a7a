"""Handing the lease over: the pure choice, the reservation in Lua, and daemons doing it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from coordinator import Lease
from coordinator.daemon.daemon import Daemon
from coordinator.daemon.handoff_choice import Candidate, choose_handoff, request_handoff
from coordinator.daemon.state import Role
from coordinator.protocol import keys
from coordinator.protocol.membership import Heartbeat, list_controllers
from coordinator.settings import load_settings

NOW = 100_000


def candidate(node: str, *, priority: int = 100, steady_for: int | None = 1000,
              age: int = 10, status: str = "alive") -> Candidate:
    return Candidate(node_id=node, priority=priority, status=status,
                     last_heartbeat_at=NOW - age, heartbeat_interval_ms=100,
                     steady_since=None if steady_for is None else NOW - steady_for)


def choose(candidates: list[Candidate], *, requested: Candidate | None = None,
           leader_is_preferred: bool = False) -> str | None:
    return choose_handoff(leader_id="leader", leader_is_preferred=leader_is_preferred,
                          candidates=candidates, requested=requested, now_ms=NOW,
                          steady_intervals=3)


def test_a_steady_preferred_node_gets_the_lease_back() -> None:
    assert choose([candidate("p")]) == "p"


def test_a_node_not_steady_for_long_enough_or_flapping_does_not() -> None:
    assert choose([candidate("p", steady_for=299)]) is None
    assert choose([candidate("p", steady_for=None)]) is None  # degraded: no steady run
    assert choose([candidate("p", age=250)]) is None  # heartbeat stale
    assert choose([candidate("p", status="stopping")]) is None


def test_a_preferred_leader_keeps_the_lease_and_the_highest_priority_wins() -> None:
    assert choose([candidate("p")], leader_is_preferred=True) is None
    assert choose([candidate("p1", priority=10), candidate("p2", priority=90)]) == "p2"
    assert choose([candidate("leader")]) is None


def test_an_operator_request_wins_if_its_target_is_healthy() -> None:
    assert choose([], requested=candidate("x", steady_for=None), leader_is_preferred=True) == "x"
    assert choose([], requested=candidate("x", age=500)) is None


def heartbeat(redis: Any, node: str, interval: float = 5.0) -> Heartbeat:
    return Heartbeat(redis, namespace="coordinator", node_id=node, host="h", role="standby",
                     priority=50, version="1", instance_id=f"{node}-1", interval=interval, retention=60)


async def last_event(redis: Any) -> dict[str, Any]:
    entries = await redis.xrange(keys.history_key("coordinator"))
    return dict(json.loads(entries[-1][1][b"event"]))


async def test_release_with_a_handover_reserves_the_lease_for_the_target(redis: Any) -> None:
    await heartbeat(redis, "target").beat()
    old = Lease(redis, holder_id="old", ttl=0.3)
    term = (await old.acquire()).term
    released = await old.release(term=term, handoff_to="target")
    assert (released.released, released.reserved_for, released.handoff_refused) == (True, "target", None)
    assert (await last_event(redis))["handoff_to"] == "target"
    other = await Lease(redis, holder_id="other", ttl=5).acquire()
    assert not other.is_leader and other.record.reserved and other.holder_id == "target"
    assert 0 < other.remaining_ms <= 300
    taken = await Lease(redis, holder_id="target", ttl=5).acquire()
    assert taken.is_leader and taken.term > term


async def test_an_unclaimed_reservation_lapses_after_one_ttl(redis: Any) -> None:
    await heartbeat(redis, "silent").beat()  # alive, but it never claims the lease
    old = Lease(redis, holder_id="old", ttl=0.1)
    await old.acquire()
    assert (await old.release(handoff_to="silent")).reserved_for == "silent"
    await asyncio.sleep(0.15)
    assert (await Lease(redis, holder_id="other", ttl=5).acquire()).is_leader


async def make_stale(redis: Any, node: str) -> None:
    """The node's last heartbeat is now three of its intervals old: it counts as dead."""
    await redis.hset(keys.controller_key("coordinator", node), "last_heartbeat_at", 0)


@pytest.mark.parametrize(("target_is", "reason"), [
    ("unknown", "unknown node"), ("stopping", "status is stopping"), ("stale", "heartbeat is stale")])
async def test_release_to_a_dead_target_is_not_reserved_and_wakes_everyone(
        redis: Any, target_is: str, reason: str) -> None:
    if target_is != "unknown":
        await heartbeat(redis, "target").beat("stopping" if target_is == "stopping" else "alive")
    if target_is == "stale":
        await make_stale(redis, "target")
    old = Lease(redis, holder_id="old", ttl=5)
    term = (await old.acquire()).term
    released = await old.release(term=term, handoff_to="target")
    assert (released.released, released.reserved_for, released.handoff_refused) == (True, None, reason)
    event = await last_event(redis)
    assert event["type"] == "lease_released" and "handoff_to" not in event
    assert not await redis.hexists(keys.tenure_key("coordinator", "global"), "reserved_for")
    other = await Lease(redis, holder_id="other", ttl=5).acquire()
    assert other.is_leader and other.term > term


@pytest.mark.parametrize("death", ["record deleted", "heartbeat stale", "stopping"])
async def test_a_reservation_ends_early_once_its_target_is_seen_dead(redis: Any, death: str) -> None:
    target = heartbeat(redis, "target")
    await target.beat()
    old = Lease(redis, holder_id="old", ttl=5)
    await old.acquire()
    assert (await old.release(handoff_to="target")).reserved_for == "target"
    other = Lease(redis, holder_id="other", ttl=5)
    waiting = await other.acquire()
    assert not waiting.is_leader and waiting.record.reserved and waiting.holder_id == "target"
    assert not (await other.acquire()).is_leader  # the target is alive: the reservation holds
    if death == "record deleted":
        await redis.delete(keys.controller_key("coordinator", "target"))
    elif death == "heartbeat stale":
        await make_stale(redis, "target")
    else:
        await target.beat("stopping")
    taken = await other.acquire()  # long before the reservation's TTL (5 s) ends
    assert (taken.is_leader, taken.operation) == (True, "acquire")
    assert not await redis.hexists(keys.tenure_key("coordinator", "global"), "reserved_for")


async def test_a_remembered_target_that_is_no_longer_the_reserved_one_ends_nothing(redis: Any) -> None:
    await heartbeat(redis, "x").beat()
    await heartbeat(redis, "y").beat()
    old = Lease(redis, holder_id="old", ttl=5)
    await old.acquire()
    await old.release(handoff_to="x")
    other = Lease(redis, holder_id="other", ttl=5)
    assert (await other.acquire()).holder_id == "x"  # other now remembers x
    x = Lease(redis, holder_id="x", ttl=5)
    assert (await x.acquire()).is_leader
    assert (await x.release(handoff_to="y")).reserved_for == "y"
    await redis.delete(keys.controller_key("coordinator", "x"))  # x dies; y is alive
    still = await other.acquire()
    assert (still.is_leader, still.record.reserved, still.holder_id) == (False, True, "y")
    assert not (await other.acquire()).is_leader


async def test_steady_run_survives_regular_beats_and_restarts_after_a_gap(redis: Any) -> None:
    def beat_for(instance: str) -> Heartbeat:
        return Heartbeat(redis, namespace="coordinator", node_id="p", host="h", role="primary",
                         priority=100, version="1", instance_id=instance, interval=0.05,
                         retention=60, preferred=True)

    async def steady_since() -> int | None:
        (c,) = await list_controllers(redis, "coordinator", retention_ms=60_000)
        return c.steady_since

    hb = beat_for("i1")
    await hb.beat()
    first = await steady_since()
    await asyncio.sleep(0.03)
    await hb.beat()
    assert await steady_since() == first
    await asyncio.sleep(0.12)  # a gap of more than two intervals
    await hb.beat()
    assert (await steady_since() or 0) > (first or 0)
    await hb.beat("degraded")
    assert await steady_since() is None
    assert await redis.zscore(keys.preferred_key("coordinator"), "p") is not None


async def test_handover_request_refuses_unknown_and_dead_nodes(redis: Any) -> None:
    leader = Lease(redis, holder_id="a", ttl=5)
    await leader.acquire()
    unknown = await request_handoff(redis, "coordinator", "global", "nobody", ttl_ms=1000)
    assert (unknown.outcome, unknown.reason) == ("not_alive", "unknown node")
    stopping = Heartbeat(redis, namespace="coordinator", node_id="b", host="h", role="standby",
                         priority=50, version="1", instance_id="i", interval=1, retention=60)
    await stopping.beat("stopping")
    assert (await request_handoff(redis, "coordinator", "global", "b", ttl_ms=1000)).outcome == (
        "not_alive")
    await stopping.beat("alive")
    ok = await request_handoff(redis, "coordinator", "global", "b", ttl_ms=1000)
    assert ok.outcome == "requested"
    assert await redis.get(keys.handoff_key("coordinator", "global")) == b"b"


def fast(node: str, role: str, **kw: Any) -> Any:
    return load_settings(node_id=node, host=node, role=role, lease_ttl=1, renew_interval=0.2,
                         heartbeat_interval=0.1, **kw)


async def wait_until(predicate: Any, timeout: float) -> bool:
    end = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < end:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


async def test_preferred_primary_takes_over_once_when_steady(redis: Any) -> None:
    standby = Daemon(fast("s", "standby"), redis=redis)
    await standby.start()
    primary = Daemon(fast("p", "primary"), redis=redis)
    await primary.start()
    try:
        assert standby.state.role is Role.LEADER and primary.state.role is Role.STANDBY
        first = standby.state.term
        assert await wait_until(lambda: primary.state.role is Role.LEADER, 3)
        handed_over = primary.state.term  # a release and one acquire: a larger term
        assert handed_over is not None and first is not None and handed_over > first
        await asyncio.sleep(0.6)
        assert primary.state.term == handed_over and standby.state.role is Role.STANDBY
        assert not (primary.can_schedule() and standby.can_schedule())
    finally:
        await primary.stop()
        await standby.stop()


async def test_a_flapping_preferred_node_never_takes_over(redis: Any) -> None:
    standby = Daemon(fast("s", "standby", handoff_steady_intervals=5), redis=redis)
    await standby.start()
    first = standby.state.term
    try:
        for _ in range(6):  # restarts every 0.25 s: never 5 steady intervals (0.5 s)
            flapper = Daemon(fast("p", "primary", handoff_steady_intervals=5), redis=redis)
            await flapper.start()
            await asyncio.sleep(0.25)
            assert flapper.state.role is Role.STANDBY
            await flapper.stop()
        assert standby.state.role is Role.LEADER and standby.state.term == first
    finally:
        await standby.stop()


async def test_who_is_alive_and_who_went_stale_are_range_queries(redis: Any) -> None:
    from coordinator.protocol.membership import alive_node_ids, stale_node_ids

    def beat(node: str) -> Heartbeat:
        return Heartbeat(redis, namespace="coordinator", node_id=node, host="h", role="standby",
                         priority=50, version="1", instance_id=node, interval=0.05, retention=60)

    await beat("old").beat()
    await asyncio.sleep(0.2)
    await beat("new").beat()
    assert await alive_node_ids(redis, "coordinator", within_ms=150) == ["new"]
    assert await stale_node_ids(redis, "coordinator", older_than_ms=150) == ["old"]
    assert sorted(await alive_node_ids(redis, "coordinator", within_ms=60_000)) == ["new", "old"]
