"""The registry of many leases (lua/leases_change.lua through coordinator.leases.registry):
adding, removing, the version, affinity, the leases_changed event, the cap, foreign keys and
terms that keep rising across a removal, on real Redis and fakeredis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from coordinator.errors import CorruptDataError, InvalidArgumentError
from coordinator.leases.names import MAX_LEASES
from coordinator.leases.registry import (
    RegistryFullError,
    add_leases,
    list_leases,
    registry_version,
    remove_leases,
)
from coordinator.leases.view import read_view
from coordinator.protocol import keys
from coordinator.protocol.event_models import LeasesChanged, parse_event
from coordinator.protocol.lease import Lease

NS = "registry"


async def _redis_ms(redis: Any) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _history(redis: Any) -> list[Any]:
    entries = await redis.xrange(keys.history_key(NS))
    return [parse_event(fields[b"event"], source="history") for _, fields in entries]


async def test_adding_registers_new_names_scored_by_redis_time(redis: Any) -> None:
    before = await _redis_ms(redis)
    change = await add_leases(redis, NS, ["b", "a", "c"])
    after = await _redis_ms(redis)
    assert change.names == ("b", "a", "c") and change.changed and change.version == 1
    assert before <= change.at <= after
    assert await list_leases(redis, NS) == ("a", "b", "c")
    assert await registry_version(redis, NS) == 1
    scores = {m.decode(): int(s) for m, s in
              await redis.zrange(keys.leases_key(NS), 0, -1, withscores=True)}
    assert set(scores.values()) == {change.at}


async def test_adding_what_is_registered_changes_and_announces_nothing(redis: Any) -> None:
    first = await add_leases(redis, NS, ["a", "b"])
    await asyncio.sleep(0.01)
    again = await add_leases(redis, NS, ["b", "a"])
    assert not again.changed and again.names == () and again.version == first.version == 1
    more = await add_leases(redis, NS, ["a", "c"])
    assert more.names == ("c",) and more.version == 2
    scores = {m.decode(): int(s) for m, s in
              await redis.zrange(keys.leases_key(NS), 0, -1, withscores=True)}
    assert scores["a"] == first.at < scores["c"]  # NX: an existing name keeps its score
    assert [e.added for e in await _history(redis)] == [["a", "b"], ["c"]]


async def test_removing_unregisters_and_removing_nothing_is_no_change(redis: Any) -> None:
    await add_leases(redis, NS, ["a", "b", "c"])
    gone = await remove_leases(redis, NS, ["b", "zz"])
    assert gone.names == ("b",) and gone.version == 2 and gone.action == "remove"
    assert await list_leases(redis, NS) == ("a", "c")
    nothing = await remove_leases(redis, NS, ["b"])
    assert not nothing.changed and nothing.version == 2
    assert await registry_version(redis, NS) == 2


async def test_every_change_is_announced_on_the_channel_and_the_history(redis: Any) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.events_channel(NS))
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    added = await add_leases(redis, NS, ["s-1", "s-2"])
    removed = await remove_leases(redis, NS, ["s-1"])
    published = []
    while len(published) < 2:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
        assert message is not None, "an event was not published"
        published.append(message["data"])
    await pubsub.aclose()
    assert [json.loads(p) for p in published] == [
        {"type": "leases_changed", "added": ["s-1", "s-2"], "removed": [], "version": 1,
         "at": added.at},
        {"type": "leases_changed", "added": [], "removed": ["s-1"], "version": 2,
         "at": removed.at}]
    history = await _history(redis)
    assert [e.to_dict() for e in history] == [json.loads(p) for p in published]
    assert all(isinstance(e, LeasesChanged) for e in history)
    assert [e.summary() for e in history] == [
        "leases added 2 leases (s-1, s-2) (registry version 1)",
        "leases removed 1 lease (s-1) (registry version 2)"]


async def test_preferred_holders_are_set_on_add_and_forgotten_on_remove(redis: Any) -> None:
    await add_leases(redis, NS, ["a", "b"], preferred=["n2", "n1"])
    assert dict((await read_view(redis, NS)).preferred) == {"a": ("n2", "n1"), "b": ("n2", "n1")}
    moved = await add_leases(redis, NS, ["a"], preferred=["n3"])  # registered: affinity only
    assert moved.names == () and moved.preferred_for == ("a",) and moved.version == 2
    first, event = await _history(redis)
    assert first.to_dict()["preferred_for"] == ["a", "b"] and first.to_dict()["added"] == ["a", "b"]
    assert event.to_dict() == {"type": "leases_changed", "added": [], "removed": [], "version": 2,
                               "preferred_for": ["a"], "preferred": ["n3"], "at": moved.at}
    assert event.summary() == "leases preferred holders n3 for 1 lease (a) (registry version 2)"
    same = await add_leases(redis, NS, ["a"], preferred=["n3"])
    assert not same.changed
    await remove_leases(redis, NS, ["a"])
    assert await redis.hgetall(keys.affinity_key(NS)) == {b"b": b"n2,n1"}


async def test_a_name_removed_and_added_again_keeps_its_terms_rising(redis: Any) -> None:
    await add_leases(redis, NS, ["a"])
    lease = Lease(redis, holder_id="n1", ttl=30, name="a", namespace=NS)
    first = (await lease.acquire()).term
    await lease.release()
    await remove_leases(redis, NS, ["a"])
    assert await redis.hget(keys.tenure_key(NS, "a"), "term") == str(first).encode()
    await add_leases(redis, NS, ["a"])
    again = await Lease(redis, holder_id="n2", ttl=30, name="a", namespace=NS).acquire()
    assert again.is_leader and again.term > first


async def test_the_registry_holds_at_most_max_leases(redis: Any) -> None:
    names = [f"s-{i}" for i in range(MAX_LEASES)]
    full = await add_leases(redis, NS, names)
    assert len(full.names) == MAX_LEASES
    assert not (await add_leases(redis, NS, names[:3])).changed  # nothing new: no refusal
    with pytest.raises(RegistryFullError) as refused:
        await add_leases(redis, NS, ["s-0", "one-more"])
    assert (refused.value.registered, refused.value.adding, refused.value.limit) == (
        MAX_LEASES, 1, MAX_LEASES)
    assert await registry_version(redis, NS) == 1 and len(await list_leases(redis, NS)) == MAX_LEASES
    await remove_leases(redis, NS, ["s-0"])
    assert (await add_leases(redis, NS, ["one-more"])).names == ("one-more",)


@pytest.mark.parametrize("which", ["registry", "version", "affinity", "history"])
@pytest.mark.parametrize("action", ["add", "remove"])
async def test_a_key_of_another_type_is_named_and_never_overwritten(
        redis: Any, which: str, action: str) -> None:
    await add_leases(redis, NS, ["a"], preferred=["n1"])
    key = {"registry": keys.leases_key(NS), "version": keys.leases_version_key(NS),
           "affinity": keys.affinity_key(NS), "history": keys.history_key(NS)}[which]
    await redis.delete(key)
    await redis.rpush(key, "not ours")
    others = [keys.leases_key(NS), keys.leases_version_key(NS), keys.affinity_key(NS)]
    before = {k: await redis.dump(k) for k in others}
    with pytest.raises(CorruptDataError) as caught:
        if action == "add":
            await add_leases(redis, NS, ["b"], preferred=["n2"])
        else:
            await remove_leases(redis, NS, ["a"])
    assert caught.value.key == key
    assert await redis.lrange(key, 0, -1) == [b"not ours"]
    assert {k: await redis.dump(k) for k in others} == before


async def test_a_version_that_is_no_number_is_reported_not_incremented(redis: Any) -> None:
    await redis.set(keys.leases_version_key(NS), "four")
    with pytest.raises(CorruptDataError) as caught:
        await add_leases(redis, NS, ["a"])
    assert caught.value.key == keys.leases_version_key(NS)
    assert await list_leases(redis, NS) == ()
    with pytest.raises(CorruptDataError):
        await registry_version(redis, NS)


async def test_reading_a_registry_of_another_type_names_it(redis: Any) -> None:
    await redis.set(keys.leases_key(NS), "x")
    with pytest.raises(CorruptDataError) as caught:
        await list_leases(redis, NS)
    assert caught.value.key == keys.leases_key(NS)


@pytest.mark.parametrize(("names", "preferred"), [
    ([], None), (["bad name"], None), (["-a"], None), (["a"], []), (["a"], ["bad id!"]),
    (["a"], "n1"), ([f"s-{i}" for i in range(MAX_LEASES + 1)], None)])
async def test_bad_names_are_refused_before_redis(names: list[str], preferred: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        await add_leases(object(), NS, names, preferred=preferred)


async def test_the_view_follows_the_registry(redis: Any) -> None:
    await add_leases(redis, NS, ["a", "b"])
    await remove_leases(redis, NS, ["a"])
    view = await read_view(redis, NS)
    assert (view.leases, view.version) == (("b",), 2)
