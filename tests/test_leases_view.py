"""read_view: what a many-lease node reads to plan, from data the coordinator's own scripts
wrote (acquire.lua, heartbeat.lua), on real Redis and fakeredis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coordinator.errors import CorruptDataError
from coordinator.leases.names import ALL_LEASES, LeaseSelector
from coordinator.leases.placement import Node
from coordinator.leases.view import read_view
from coordinator.protocol import keys
from coordinator.protocol.lease import Lease
from coordinator.protocol.membership import ControllerStatus, Heartbeat

NS = "view"


def _beat(redis: Any, node: str, *, lease: str = "*", capacity: int | None = 1,
          selector: str = "", interval: float = 5.0) -> Heartbeat:
    return Heartbeat(redis, namespace=NS, node_id=node, host=f"{node}.host", role="standby",
                     priority=50, version="1", instance_id=f"{node}-1", interval=interval,
                     retention=600, lease=lease, capacity=capacity, selector=selector)


async def _register(redis: Any, *names: str, version: int = 1) -> None:
    """The registry as leases_change.lua writes it (ZADD score = Redis ms, version INCRed)."""
    await redis.zadd(keys.leases_key(NS), {name: 1765000000000 + i for i, name in enumerate(names)})
    await redis.set(keys.leases_version_key(NS), str(version))


async def _acquire(redis: Any, lease: str, holder: str) -> Any:
    result = await Lease(redis, holder_id=holder, ttl=30, name=lease, namespace=NS).acquire()
    assert result.is_leader
    return result


async def _redis_ms(redis: Any) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_an_empty_namespace_is_an_empty_view(redis: Any) -> None:
    before = await _redis_ms(redis)
    view = await read_view(redis, NS)
    after = await _redis_ms(redis)
    assert (view.version, view.leases, view.nodes) == (0, (), ())
    assert not view.holders and not view.terms and not view.preferred and not view.corrupt
    assert before <= view.redis_now <= after


async def test_registered_leases_sorted_with_their_live_holders(redis: Any) -> None:
    await _register(redis, "shard-2", "shard-10", "orders", version=4)
    taken = await _acquire(redis, "shard-2", "node-a")
    other = await _acquire(redis, "orders", "node-b")
    await _acquire(redis, "unregistered", "node-c")  # a lease outside the registry: not read
    view = await read_view(redis, NS)
    assert view.version == 4
    assert view.leases == ("orders", "shard-10", "shard-2")
    assert dict(view.holders) == {"shard-2": "node-a", "orders": "node-b"}
    assert dict(view.terms) == {"shard-2": taken.term, "orders": other.term}
    assert dict(view.expires_at) == {"shard-2": taken.lease_expires_at,
                                     "orders": other.lease_expires_at}
    assert taken.lease_expires_at - 30_000 <= view.redis_now < taken.lease_expires_at
    assert not view.corrupt


async def test_a_released_or_expired_lease_is_free(redis: Any) -> None:
    await _register(redis, "a", "b")
    released = Lease(redis, holder_id="node-a", ttl=30, name="a", namespace=NS)
    await released.acquire()
    await released.release()
    await Lease(redis, holder_id="node-b", ttl=0.05, name="b", namespace=NS).acquire()
    await asyncio.sleep(0.1)
    view = await read_view(redis, NS)
    assert view.leases == ("a", "b") and not view.holders and not view.terms


async def test_nodes_are_the_live_records_competing_for_many_leases(redis: Any) -> None:
    await _beat(redis, "big", capacity=3).beat()
    await _beat(redis, "eu", capacity=1, selector="eu-*,shard-1?").beat()
    await _beat(redis, "single", lease="global", capacity=None).beat()  # one lease: not many
    statuses: dict[str, ControllerStatus] = {"degraded": "degraded", "stopping": "stopping"}
    for node, status in statuses.items():
        await _beat(redis, node).beat(status)
    stale = _beat(redis, "stale", interval=0.02)  # dead after 3 x 20 ms
    await stale.beat()
    await asyncio.sleep(0.1)
    view = await read_view(redis, NS)
    assert view.nodes == (Node("big", 3, ALL_LEASES),
                          Node("eu", 1, LeaseSelector(("eu-*", "shard-1?"))))


async def test_a_node_is_live_by_its_own_heartbeat_interval(redis: Any) -> None:
    slow, fast = _beat(redis, "slow", interval=5), _beat(redis, "fast", interval=0.2)
    await slow.beat()
    await fast.beat()
    assert [n.node_id for n in (await read_view(redis, NS)).nodes] == ["fast", "slow"]
    await asyncio.sleep(0.65)  # past 3 x 200 ms
    assert [n.node_id for n in (await read_view(redis, NS)).nodes] == ["slow"]
    await fast.beat()
    assert [n.node_id for n in (await read_view(redis, NS)).nodes] == ["fast", "slow"]


async def test_a_star_record_without_a_capacity_is_no_node(redis: Any) -> None:
    await _beat(redis, "no-capacity", capacity=None).beat()
    await _beat(redis, "bad-capacity").beat()
    await redis.hset(keys.controller_key(NS, "bad-capacity"), "capacity", "lots")
    await _beat(redis, "bad-selector").beat()
    await redis.hset(keys.controller_key(NS, "bad-selector"), "selector", "eu/*")
    await _beat(redis, "fine").beat()
    await redis.rpush(keys.controller_key(NS, "foreign"), "x")
    await redis.zadd(keys.heartbeats_key(NS), {"foreign": 1765000000000})
    assert [n.node_id for n in (await read_view(redis, NS)).nodes] == ["fine"]


async def test_preferred_holders_come_from_the_affinity_hash(redis: Any) -> None:
    await _register(redis, "a", "b")
    await redis.hset(keys.affinity_key(NS), mapping={"a": "n2,n1", "b": "", "gone": "n1"})
    view = await read_view(redis, NS)
    assert dict(view.preferred) == {"a": ("n2", "n1")}


@pytest.mark.parametrize("corruption", ["foreign-type", "term-letters", "no-holder", "no-expiry"])
async def test_one_unreadable_lease_is_reported_and_the_rest_read(redis: Any, corruption: str) -> None:
    await _register(redis, "bad", "good")
    good = await _acquire(redis, "good", "node-a")
    bad_key = keys.lease_key(NS, "bad")
    if corruption == "foreign-type":
        await redis.rpush(bad_key, "not a lease")
    else:
        await _acquire(redis, "bad", "node-b")
        if corruption == "term-letters":
            await redis.hset(bad_key, "term", "12a")
        else:
            await redis.hdel(bad_key, "holder_id" if corruption == "no-holder" else "lease_expires_at")
    view = await read_view(redis, NS)
    assert list(view.corrupt) == ["bad"] and view.corrupt["bad"]
    assert dict(view.holders) == {"good": "node-a"} and dict(view.terms) == {"good": good.term}


@pytest.mark.parametrize("which", ["registry", "version", "version-text", "heartbeats", "affinity"])
async def test_a_namespace_key_of_another_type_is_refused_naming_it(redis: Any, which: str) -> None:
    await _register(redis, "a")
    key = {"registry": keys.leases_key(NS), "version": keys.leases_version_key(NS),
           "version-text": keys.leases_version_key(NS), "heartbeats": keys.heartbeats_key(NS),
           "affinity": keys.affinity_key(NS)}[which]
    await redis.delete(key)
    if which == "version-text":
        await redis.set(key, "four")
    else:
        await redis.rpush(key, "not ours")
    with pytest.raises(CorruptDataError) as caught:
        await read_view(redis, NS)
    assert caught.value.key == key
    assert await redis.type(key) in (b"list", b"string")  # reported, never overwritten


class _Counting:
    """A client that counts round trips: each pipeline execute and each direct command."""

    def __init__(self, redis: Any) -> None:
        self._redis, self.round_trips = redis, 0

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = self._redis.pipeline(*args, **kwargs)
        execute = pipe.execute

        async def counted(*a: Any, **k: Any) -> Any:
            self.round_trips += 1
            return await execute(*a, **k)

        pipe.execute = counted
        return pipe

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._redis, name)
        if not callable(attribute):
            return attribute

        def counted(*a: Any, **k: Any) -> Any:
            self.round_trips += 1
            return attribute(*a, **k)

        return counted


async def test_two_round_trips_whatever_the_numbers(redis: Any) -> None:
    names = [f"s-{i}" for i in range(200)]
    await _register(redis, *names)
    for i in range(20):
        await _beat(redis, f"n{i}").beat()
        await _acquire(redis, names[i], f"n{i}")
    counting = _Counting(redis)
    view = await read_view(counting, NS)
    # a third only because some leases are free: their handover reservations are read
    assert counting.round_trips == 3
    assert len(view.leases) == 200 and len(view.holders) == 20 and len(view.nodes) == 20
    await redis.zrem(keys.leases_key(NS), *names[20:])
    counting = _Counting(redis)
    view = await read_view(counting, NS)
    assert counting.round_trips == 2  # a steady round: every lease held
    assert len(view.leases) == 20 and view.reserved == {}


async def test_a_free_lease_reserved_by_a_handover_names_its_target(redis: Any) -> None:
    await _register(redis, "x", "y")
    await _beat(redis, "a").beat()
    await _beat(redis, "b").beat()
    lease = Lease(redis, holder_id="a", ttl=30, name="x", namespace=NS)
    await lease.acquire()
    released = await lease.release(handoff_to="b")
    assert released.reserved_for == "b"
    view = await read_view(redis, NS)
    assert view.reserved == {"x": "b"} and "x" not in view.holders  # y: free, not reserved


async def test_a_registry_member_that_is_no_lease_name_is_reported_not_placed(redis: Any) -> None:
    await _register(redis, "good", "bad name", "x" * 65)
    view = await read_view(redis, NS)
    assert view.leases == ("good",)
    assert sorted(view.corrupt) == ["bad name", "x" * 65]
