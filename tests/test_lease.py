"""The lease scripts and their Python API, on fakeredis and on a real redis-server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from coordinator import CorruptDataError, InvalidArgumentError, Lease
from coordinator.protocol import keys


def lease(redis: Any, holder: str, ttl: float = 5.0, **kw: Any) -> Lease:
    return Lease(redis, holder_id=holder, holder_host=f"{holder}.host", ttl=ttl, **kw)


async def next_event(pubsub: Any, timeout: float = 1.0) -> dict[str, Any] | None:
    """The next message's JSON on a subscribed pubsub, or None if none came in time."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if msg is not None:
            return dict(json.loads(msg["data"]))
    return None


@pytest.fixture
async def events(redis: Any) -> Any:
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.events_channel("coordinator"))
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    yield pubsub
    await pubsub.aclose()


async def test_first_acquire_takes_a_term_from_the_redis_clock_and_announces_it(redis: Any, events: Any) -> None:
    result = await lease(redis, "a").acquire()
    assert (result.is_leader, result.operation) == (True, "acquire")
    assert result.term >= result.record.acquired_at  # at least TIME in ms: like Unix ms
    assert result.holder_id == "a" and result.holder_host == "a.host"
    assert result.lease_expires_at == result.renewed_at + 5000
    event = await next_event(events)
    assert event == {
        "type": "leader_changed", "lease": "global", "holder_id": "a", "holder_host": "a.host",
        "term": result.term, "previous_holder_id": None, "at": result.redis_now,
    }


async def test_renew_keeps_term_extends_expiry_and_publishes_nothing(redis: Any, events: Any) -> None:
    a = lease(redis, "a")
    first = await a.acquire()
    await next_event(events)
    await asyncio.sleep(0.01)
    second = await a.acquire()
    assert (second.operation, second.term) == ("renew", first.term)
    assert second.lease_expires_at > first.lease_expires_at
    assert second.record.acquired_at == first.record.acquired_at
    assert await next_event(events, timeout=0.1) is None


async def test_another_holder_is_told_who_holds_it_and_changes_nothing(redis: Any) -> None:
    held = await lease(redis, "a").acquire()
    other = await lease(redis, "b").acquire()
    assert (other.is_leader, other.operation) == (False, None)
    assert (other.holder_id, other.term, other.lease_expires_at) == ("a", held.term, held.lease_expires_at)
    assert 0 < other.remaining_ms <= 5000
    assert (await lease(redis, "a").get()) == held.record


async def test_expired_lease_goes_to_the_next_caller_with_a_higher_term(redis: Any, events: Any) -> None:
    first = await lease(redis, "a", ttl=0.15).acquire()
    assert (await lease(redis, "b").acquire()).is_leader is False
    await asyncio.sleep(0.2)
    taken = await lease(redis, "b").acquire()
    assert (taken.is_leader, taken.operation) == (True, "acquire") and taken.term > first.term
    await next_event(events)
    event = await next_event(events)
    assert event is not None and event["previous_holder_id"] == "a" and event["term"] == taken.term


async def test_release_by_holder_frees_it_and_announces_it(redis: Any, events: Any) -> None:
    a = lease(redis, "a")
    got = await a.acquire()
    await next_event(events)
    released = await a.release(term=got.term)
    assert released.released and released.current is None
    assert await next_event(events) == {
        "type": "lease_released", "lease": "global", "holder_id": "a", "term": got.term,
        "at": released.redis_now,
    }
    assert (released.reserved_for, released.handoff_refused) == (None, None)
    assert await a.get() is None
    assert (await lease(redis, "b").acquire()).term > got.term


async def test_release_by_anyone_else_is_refused_and_changes_nothing(redis: Any) -> None:
    a = lease(redis, "a")
    got = await a.acquire()
    refused = await lease(redis, "b").release()
    assert not refused.released and refused.current == got.record
    wrong_term = await a.release(term=got.term + 1)
    assert not wrong_term.released
    same_id_other_process = await lease(redis, "a").release()
    assert not same_id_other_process.released
    assert await a.get() == got.record
    nobody = await lease(redis, "c", name="other").release()
    assert not nobody.released and nobody.current is None


async def test_two_processes_with_one_node_id_never_both_hold_it(redis: Any) -> None:
    first, second = lease(redis, "same"), lease(redis, "same")
    assert (await first.acquire()).is_leader
    assert (await second.acquire()).is_leader is False
    assert (await first.acquire()).operation == "renew"


async def test_restarted_process_gets_a_new_tenure_after_expiry(redis: Any) -> None:
    first = (await lease(redis, "a", ttl=0.1).acquire()).term
    await asyncio.sleep(0.15)
    assert (await lease(redis, "a").acquire()).term > first


async def test_term_never_decreases_and_honours_highest_seen(redis: Any) -> None:
    terms = []
    for i in range(5):
        holder = lease(redis, f"n{i}")
        terms.append((await holder.acquire()).term)
        await holder.release()
    assert terms == sorted(set(terms))  # strictly increasing, even within one millisecond
    ahead = terms[-1] + 10**9  # far beyond the clock for the length of this test
    jumped = lease(redis, "x")
    assert (await jumped.acquire(highest_seen_term=ahead)).term == ahead + 1
    await jumped.release()
    assert (await lease(redis, "y").acquire(highest_seen_term=3)).term == ahead + 2


async def test_fenced_write_lands_only_with_the_live_term(redis: Any) -> None:
    key = keys.fenced_key("coordinator", "shared")
    a = lease(redis, "a", ttl=0.15)
    term_a = (await a.acquire()).term
    assert (await a.fenced_set(key, "from-a", term_a)).accepted
    assert await redis.get(key) == b"from-a"
    await asyncio.sleep(0.2)
    stale_no_lease = await a.fenced_set(key, "late-a", term_a, raise_on_refused=False)
    assert (stale_no_lease.accepted, stale_no_lease.current_term) == (False, None)
    b = lease(redis, "b")
    term_b = (await b.acquire()).term
    stale = await a.fenced_set(key, "late-a", term_a, raise_on_refused=False)
    assert (stale.accepted, stale.current_term) == (False, term_b)
    assert await redis.get(key) == b"from-a"
    assert not (await a.fenced_set(key, "late-a", term_b, raise_on_refused=False)).accepted  # b's term, not a's tenure
    assert (await b.fenced_set(key, "from-b", term_b, px=10_000)).accepted
    assert await redis.get(key) == b"from-b" and await redis.pttl(key) > 0


async def test_history_stream_keeps_every_tenure_change(redis: Any) -> None:
    a = lease(redis, "a")
    await a.acquire()
    await a.acquire()
    await a.release()
    await lease(redis, "b").acquire()
    entries = await redis.xrange(keys.history_key("coordinator"))
    types = [json.loads(fields[b"event"])["type"] for _, fields in entries]
    assert types == ["leader_changed", "lease_released", "leader_changed"]


async def test_foreign_value_of_another_type_is_reported_not_overwritten(redis: Any) -> None:
    key = keys.lease_key("coordinator", "global")
    await redis.set(key, "someone else's")
    with pytest.raises(CorruptDataError) as caught:
        await lease(redis, "a").acquire()
    assert caught.value.key == key
    with pytest.raises(CorruptDataError):
        await lease(redis, "a").release()
    with pytest.raises(CorruptDataError):
        await lease(redis, "a").get()
    assert await redis.get(key) == b"someone else's"


@pytest.mark.parametrize(
    "fields",
    [{"holder_id": "z", "term": "abc", "instance_id": "i", "lease_expires_at": "1"},
     {"foo": "bar"}],
)
async def test_garbage_hash_is_reported_not_overwritten(redis: Any, fields: dict[str, str]) -> None:
    key = keys.lease_key("coordinator", "global")
    await redis.hset(key, mapping=fields)
    with pytest.raises(CorruptDataError, match="lease:global"):
        await lease(redis, "a").acquire()
    with pytest.raises(CorruptDataError):
        await lease(redis, "a").get()
    assert {k.decode(): v.decode() for k, v in (await redis.hgetall(key)).items()} == fields


async def test_corrupt_term_counter_is_reported(redis: Any) -> None:
    await redis.hset(keys.tenure_key("coordinator", "global"), "term", "seven")
    with pytest.raises(CorruptDataError, match="tenure"):
        await lease(redis, "a").acquire()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"holder_id": ""}, "holder id"),
        ({"holder_id": "x" * 129}, "holder id"),
        ({"holder_id": "has space"}, "holder id"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": -1}, "ttl"),
        ({"name": "a}b"}, "lease name"),
        ({"namespace": "ns:{x}"}, "namespace"),
    ],
)
def test_bad_arguments_raise_value_errors_before_redis(kwargs: dict[str, Any], message: str) -> None:
    unreachable = aioredis.Redis(port=1)
    args: dict[str, Any] = {"holder_id": "a", "ttl": 1.0, **kwargs}
    with pytest.raises(InvalidArgumentError, match=message) as caught:
        Lease(unreachable, **args)
    assert isinstance(caught.value, ValueError)


async def test_bad_term_for_fencing_is_refused_before_redis() -> None:
    unreachable = aioredis.Redis(port=1)
    with pytest.raises(InvalidArgumentError):
        await Lease(unreachable, holder_id="a", ttl=1).fenced_set("k", "v", 0)
    await unreachable.aclose()


async def test_all_keys_of_a_namespace_share_one_hash_tag() -> None:
    built = [
        keys.lease_key("ns", "l"), keys.tenure_key("ns", "l"), keys.heartbeats_key("ns"),
        keys.controller_key("ns", "n"), keys.automation_mode_key("ns"), keys.history_key("ns"),
        keys.fenced_key("ns", "x"),
    ]
    assert all(k.startswith("{ns}:") for k in built)


def test_a_highest_seen_term_beyond_exact_lua_numbers_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="highest_seen_term"):
        asyncio.run(Lease(aioredis.Redis(port=1), holder_id="a", ttl=1).acquire(
            highest_seen_term=2**60))


async def test_a_tenure_it_released_is_never_resumed_even_if_the_release_was_lost(redis: Any) -> None:
    # attack on issue 11: a handover's release lost in a Sentinel failover left the old
    # leader's lease on the promoted replica, and its next acquire renewed it: the old term
    # came back after the handover's higher term had been granted (on the old master)
    a = lease(redis, "a")
    first = await a.acquire()
    kept = await redis.hgetall(a.key)  # the lease as a replica that missed the release has it
    left_ms = await redis.pttl(a.key)
    assert (await a.release()).released
    await redis.hset(a.key, mapping=kept)
    await redis.pexpire(a.key, left_ms)
    again = await a.acquire()
    assert again.operation == "acquire", again  # a new tenure, announced, not a renewal
    assert again.record.term > first.record.term
    # and a tenure it did not release is still renewed by acquire.lua (its fallback path)
    a.forget_held()
    assert (await a.acquire()).operation == "renew"
