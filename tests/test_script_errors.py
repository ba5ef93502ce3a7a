"""No script signals an error in band, and a foreign key fails the whole call with nothing
applied: for every script and every key it declares, a value of another type at that key is
either untouched by a call that succeeds, or named by a CorruptDataError with nothing changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from coordinator.daemon.handoff_choice import request_handoff
from coordinator.errors import CorruptDataError
from coordinator.leases.registry import add_leases, remove_leases
from coordinator.leases.renew import ManyLeaseRenewer
from coordinator.protocol import keys
from coordinator.protocol.lease import Lease
from coordinator.protocol.membership import Heartbeat, list_controllers
from coordinator.protocol.modes import set_automation_mode

NS = "errs"


def _beat(redis: Any, node: str, *, preferred: bool = False, host: str = "h") -> Heartbeat:
    return Heartbeat(redis, namespace=NS, node_id=node, host=host, role="standby", priority=50,
                     version="1", instance_id=f"i-{node}", interval=1, retention=600,
                     preferred=preferred)


async def _snapshot(redis: Any) -> dict[str, Any]:
    """Every key of the namespace with its type and content (comparable across calls)."""
    out: dict[str, Any] = {}
    for raw in await redis.keys("{" + NS + "}*"):
        key = raw.decode() if isinstance(raw, bytes) else raw
        kind = await redis.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "hash":
            value: Any = await redis.hgetall(key)
        elif kind == "string":
            value = await redis.get(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = [entry_id for entry_id, _ in await redis.xrange(key)]
        else:
            value = await redis.lrange(key, 0, -1)
        out[key] = (kind, value)
    return out


# each script: (the keys it declares, a setup that makes the call touch as many of them as it
# can, the call through its Python wrapper)
Call = Callable[[Any], Awaitable[Any]]


def _lease(redis: Any, holder: str = "a") -> Lease:
    return Lease(redis, holder_id=holder, ttl=30, namespace=NS, instance_id=f"inst-{holder}")


async def _setup_acquire(redis: Any) -> None:
    await set_automation_mode(redis, NS, "running")


_granted: dict[int, int] = {}  # id(redis) -> the term the setup was granted


async def _setup_leader(redis: Any) -> None:
    await _beat(redis, "b").beat()
    _granted[id(redis)] = (await _lease(redis).acquire()).term


async def _call_release(redis: Any) -> Any:
    return await _lease(redis).release(handoff_to="b")  # same holder and instance as the setup


SCRIPTS: dict[str, tuple[list[str], Callable[[Any], Awaitable[None]], Call]] = {
    "acquire": ([keys.lease_key(NS, "global"), keys.tenure_key(NS, "global"),
                 keys.history_key(NS), keys.automation_mode_key(NS)],
                _setup_acquire, lambda r: _lease(r).acquire()),
    "renew": ([keys.lease_key(NS, "global"), keys.automation_mode_key(NS)],
              _setup_leader, lambda r: _lease(r).acquire()),
    "release": ([keys.lease_key(NS, "global"), keys.history_key(NS), keys.tenure_key(NS, "global"),
                 keys.handoff_key(NS, "global"), keys.controller_key(NS, "b")],
                _setup_leader, _call_release),
    "fence": ([keys.lease_key(NS, "global"), keys.fenced_key(NS, "x")],
              _setup_leader, lambda r: _fence(r)),
    # the fenced ops share fence.lua (its op argument); DEL takes a key of any type
    "fence_hset": ([keys.lease_key(NS, "global"), keys.fenced_key(NS, "x")],
                   _setup_leader, lambda r: _lease(r).fenced_hset(
                       keys.fenced_key(NS, "x"), {"f": "v"}, _granted[id(r)])),
    "fence_incrby": ([keys.lease_key(NS, "global"), keys.fenced_key(NS, "x")],
                     _setup_leader, lambda r: _lease(r).fenced_incrby(
                         keys.fenced_key(NS, "x"), 2, _granted[id(r)])),
    "fence_delete": ([keys.lease_key(NS, "global")],
                     _setup_leader, lambda r: _lease(r).fenced_delete(
                         keys.fenced_key(NS, "x"), _granted[id(r)])),
    "fence_eval": ([keys.lease_key(NS, "global")],
                   _setup_leader, lambda r: _lease(r).fenced_eval(
                       "return redis.call('SET', KEYS[1], 'v')", _granted[id(r)],
                       keys=[keys.fenced_key(NS, "x")])),
    "heartbeat": ([keys.heartbeats_key(NS), keys.controller_key(NS, "b"), keys.preferred_key(NS)],
                  _setup_leader, lambda r: _beat(r, "b").beat()),
    "set_mode": ([keys.automation_mode_key(NS), keys.history_key(NS)],
                 _setup_acquire, lambda r: set_automation_mode(r, NS, "paused")),
    "request_handoff": ([keys.handoff_key(NS, "global"), keys.controller_key(NS, "b"),
                         keys.lease_key(NS, "global"), keys.history_key(NS)],
                        _setup_leader,
                        lambda r: request_handoff(r, NS, "global", "b", ttl_ms=5000)),
    "controllers": ([keys.controller_key(NS, "b")], _setup_leader,
                    lambda r: list_controllers(r, NS, retention_ms=600_000)),
    # every lease and the heartbeat in one call: a foreign key is left alone and reported in
    # the typed result (a lease "lost", the beat "wrongtype"), the rest is renewed
    "renew_many": ([keys.automation_mode_key(NS), keys.heartbeats_key(NS),
                    keys.controller_key(NS, "b"), keys.preferred_key(NS),
                    keys.lease_key(NS, "global")],
                   _setup_leader, lambda r: ManyLeaseRenewer(
                       r, namespace=NS, holder_id="a", instance_id="inst-a", ttl=30,
                       heartbeat=_beat(r, "b")).renew(["global"], beat=True)),
    # the registry of many leases: an add that sets affinity touches every key it declares
    "leases_change": ([keys.leases_key(NS), keys.leases_version_key(NS), keys.affinity_key(NS),
                       keys.history_key(NS)],
                      lambda r: _setup_registry(r),
                      lambda r: add_leases(r, NS, ["s-2"], preferred=["b"])),
    "leases_change_remove": ([keys.leases_key(NS), keys.leases_version_key(NS),
                              keys.affinity_key(NS), keys.history_key(NS)],
                             lambda r: _setup_registry(r),
                             lambda r: remove_leases(r, NS, ["s-1"])),
}


async def _setup_registry(redis: Any) -> None:
    await add_leases(redis, NS, ["s-1"], preferred=["a"])


async def _fence(redis: Any) -> Any:
    return await _lease(redis).fenced_set(keys.fenced_key(NS, "x"), "v", _granted[id(redis)])


CASES = [(name, key) for name, (declared, _, _) in SCRIPTS.items() for key in declared]


@pytest.mark.parametrize(("script", "key"), CASES, ids=[f"{s}-{k}" for s, k in CASES])
async def test_a_foreign_key_is_named_and_nothing_is_applied(redis: Any, script: str, key: str) -> None:
    _, setup, call = SCRIPTS[script]
    await setup(redis)
    await redis.delete(key)
    await redis.rpush(key, "foreign")  # a list: no key of the coordinator is one
    before = await _snapshot(redis)
    try:
        await call(redis)
    except CorruptDataError as e:
        assert e.key == key, f"{script} blamed {e.key} for a foreign {key}"
        assert await _snapshot(redis) == before, f"{script} wrote before failing on {key}"
    else:
        assert (await _snapshot(redis))[key] == before[key], f"{script} overwrote {key}"


async def test_a_controller_whose_host_is_wrongtype_does_not_break_status(redis: Any) -> None:
    # the controllers script once said "wrong type" with a magic first string in its reply,
    # which a controller's own data could equal
    await _beat(redis, "a", host="wrongtype").beat()
    found = await list_controllers(redis, NS, retention_ms=600_000)
    assert [(c.node_id, c.host) for c in found] == [("a", "wrongtype")]


async def test_a_foreign_preferred_key_fails_every_beat_naming_it_with_nothing_applied(redis: Any) -> None:
    # the pruning branch (about one beat in sixteen) once used the preferred key unchecked,
    # after the beat's other writes, with an error naming the heartbeats key
    beat = _beat(redis, "a")
    await beat.beat()
    await redis.delete(keys.preferred_key(NS))
    await redis.set(keys.preferred_key(NS), "foreign")
    controller = keys.controller_key(NS, "a")
    for _ in range(64):  # a pruning beat among them with probability 1 - (15/16)**64 > 98 %
        before = await redis.hget(controller, "last_heartbeat_at")
        with pytest.raises(CorruptDataError) as raised:
            await beat.beat()
        assert raised.value.key == keys.preferred_key(NS)
        assert await redis.hget(controller, "last_heartbeat_at") == before


async def test_a_fenced_incrby_of_a_string_that_is_no_integer_names_it_with_nothing_applied(
        redis: Any) -> None:
    await _setup_leader(redis)
    target = keys.fenced_key(NS, "x")
    await redis.set(target, "not a number")
    with pytest.raises(CorruptDataError) as raised:
        await _lease(redis).fenced_incrby(target, 1, _granted[id(redis)])
    assert raised.value.key == target
    assert await redis.get(target) == b"not a number"
