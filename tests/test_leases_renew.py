"""renew_many.lua through ``ManyLeaseRenewer``: one call renewing a list of leases is, lease by
lease, what renew.lua called once per lease does (held, lost, corrupt, expired, a foreign
type), on real Redis and fakeredis; the heartbeat riding along writes what heartbeat.lua writes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from coordinator.errors import CorruptDataError, InvalidArgumentError
from coordinator.leases.renew import ManyLeaseRenewer, ManyRenewed
from coordinator.protocol import keys
from coordinator.protocol.membership import Heartbeat
from coordinator.protocol.scripts import register_scripts, run_script, use_path

NS = "many"
HOLDER, INSTANCE, TTL_MS = "node-a", "inst-a", 30_000
TIMES = ("lease_expires_at", "renewed_at")  # written from the call's own clock reading
TERM = "1765000000000123"


def _fields(holder: str = HOLDER, instance: str = INSTANCE, **changes: str) -> dict[str, str]:
    """A lease hash as acquire.lua writes it."""
    fields = {"holder_id": holder, "holder_host": "host-a", "instance_id": instance,
              "term": TERM, "acquired_at": "1765000000000", "lease_expires_at": "1765000030000",
              "renewed_at": "1765000000000", "metadata_json": "{}"}
    fields.update(changes)
    return fields


async def _put(redis: Any, name: str, fields: dict[str, str], ttl_ms: int = 60_000) -> None:
    key = keys.lease_key(NS, name)
    await redis.hset(key, mapping=fields)
    await redis.pexpire(key, ttl_ms)


async def _expired(redis: Any, name: str) -> None:
    await _put(redis, name, _fields(), ttl_ms=1)
    await asyncio.sleep(0.01)


async def _foreign(redis: Any, name: str) -> None:
    await redis.rpush(keys.lease_key(NS, name), "not a lease")


# every outcome a single renewal can have, one lease each
SETUPS: dict[str, Callable[[Any, str], Awaitable[None]]] = {
    "held": lambda r, n: _put(r, n, _fields()),
    "held-no-renewed-at": lambda r, n: _put(r, n, {k: v for k, v in _fields().items()
                                                   if k != "renewed_at"}),
    "lost-other-holder": lambda r, n: _put(r, n, _fields(holder="node-b")),
    "lost-other-instance": lambda r, n: _put(r, n, _fields(instance="inst-old")),
    "lost-free": lambda r, n: _nothing(),
    "expired": _expired,
    "foreign-type": _foreign,
    "corrupt-term-letters": lambda r, n: _put(r, n, _fields(term="12a")),
    "corrupt-term-too-big": lambda r, n: _put(r, n, _fields(term="9007199254740992")),
    "corrupt-term-missing": lambda r, n: _put(r, n, {k: v for k, v in _fields().items()
                                                     if k != "term"}),
    "corrupt-expires": lambda r, n: _put(r, n, _fields(lease_expires_at="soon")),
    "corrupt-renewed-at": lambda r, n: _put(r, n, _fields(renewed_at="x")),
}
NAMES = [f"lease-{i}" for i in range(len(SETUPS))]


async def _nothing() -> None:
    return None


async def _set_up(redis: Any) -> None:
    await redis.flushall()
    await redis.set(keys.automation_mode_key(NS), "paused")  # as set_mode.lua stores it
    for name, setup in zip(NAMES, SETUPS.values(), strict=True):
        await setup(redis, name)


async def _state(redis: Any) -> dict[str, Any]:
    """Every key of the namespace: type, content without the two time fields, and whether it
    expires; plus, per lease hash, its two times (checked against the reply apart)."""
    out: dict[str, Any] = {}
    for raw in sorted(await redis.keys("{" + NS + "}*")):
        key = raw.decode() if isinstance(raw, bytes) else raw
        kind = await redis.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        value: Any
        if kind == "hash":
            value = {k.decode(): v.decode() for k, v in (await redis.hgetall(key)).items()}
            value = {k: v for k, v in value.items() if k not in TIMES}
        elif kind == "string":
            value = await redis.get(key)
        elif kind == "stream":
            value = [fields for _, fields in await redis.xrange(key)]
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1)
        else:
            value = await redis.lrange(key, 0, -1)
        out[key] = (kind, value, await redis.pttl(key) > 0)
    return out


async def _times(redis: Any, name: str) -> tuple[Any, Any] | None:
    key = keys.lease_key(NS, name)
    if await redis.type(key) not in (b"hash", "hash"):
        return None
    got = await redis.hmget(key, *TIMES)
    return (_int_or_raw(got[0]), _int_or_raw(got[1]))


def _int_or_raw(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


async def _single_renewals(redis: Any) -> dict[str, Any]:
    """renew.lua once per lease, as ``Lease`` sends it: each reply or the error it raised."""
    runner = register_scripts(redis).renew
    out: dict[str, Any] = {}
    for name in NAMES:
        try:
            out[name] = await run_script(runner, [keys.lease_key(NS, name),
                                                  keys.automation_mode_key(NS)],
                                         [HOLDER, INSTANCE, TTL_MS])
        except CorruptDataError as e:
            out[name] = e
    return out


def _renewer(redis: Any, heartbeat: Heartbeat | None = None) -> ManyLeaseRenewer:
    return ManyLeaseRenewer(redis, namespace=NS, holder_id=HOLDER, instance_id=INSTANCE,
                            ttl=TTL_MS / 1000, heartbeat=heartbeat)


async def _equal_to_single_renewals(redis: Any) -> ManyRenewed:
    await _set_up(redis)
    singles = await _single_renewals(redis)
    after_singles = await _state(redis)
    single_times = {n: await _times(redis, n) for n in NAMES}

    await _set_up(redis)
    many = await _renewer(redis).renew(NAMES)
    assert await _state(redis) == after_singles
    assert many.automation_mode == "paused"
    for name, renewal in zip(NAMES, many.renewals, strict=True):
        single = singles[name]
        assert renewal.name == name and renewal.key == keys.lease_key(NS, name)
        if isinstance(single, CorruptDataError):
            assert renewal.outcome == "corrupt", name
            error = renewal.corrupt_error()
            assert error is not None and (error.key, str(error)) == (single.key, str(single))
            assert await _times(redis, name) == single_times[name]  # nothing written
        elif single[0] == "lost":
            assert (renewal.outcome, renewal.term, renewal.lease_expires_at) == ("lost", None, None)
            assert await _times(redis, name) == single_times[name]
        else:
            assert single[0] == "renew" and renewal.outcome == "renewed", name
            assert renewal.term == int(single[3]) == int(TERM)
            # each call writes its own clock reading: now and now + ttl, like the single one
            assert await _times(redis, name) == (many.redis_now + TTL_MS, many.redis_now)
            assert renewal.lease_expires_at == many.redis_now + TTL_MS
            assert int(single[4]) - int(single[1]) == TTL_MS
    return many


async def test_one_call_equals_a_single_renewal_per_lease_in_every_outcome(redis: Any) -> None:
    many = await _equal_to_single_renewals(redis)
    outcomes = {name: r.outcome for name, r in zip(SETUPS, many.renewals, strict=True)}
    assert outcomes == {
        "held": "renewed", "held-no-renewed-at": "renewed", "lost-other-holder": "lost",
        "lost-other-instance": "lost", "lost-free": "lost", "expired": "lost",
        "foreign-type": "lost", "corrupt-term-letters": "corrupt",
        "corrupt-term-too-big": "corrupt", "corrupt-term-missing": "corrupt",
        "corrupt-expires": "corrupt", "corrupt-renewed-at": "corrupt"}
    assert many.heartbeat_started_at is None and many.heartbeat_foreign_key is None


async def test_equal_on_the_plain_script_path_too(redis: Any) -> None:
    use_path(redis, "scripts")  # EVALSHA of renew_many.lua with its fragments in front
    await _equal_to_single_renewals(redis)


async def test_a_renewed_lease_expires_at_its_new_time(redis: Any) -> None:
    await _set_up(redis)
    await _renewer(redis).renew(["lease-0"])
    pttl = await redis.pttl(keys.lease_key(NS, "lease-0"))
    assert TTL_MS - 5_000 < pttl <= TTL_MS


async def test_an_empty_list_renews_nothing_and_reads_the_clock(redis: Any) -> None:
    await _set_up(redis)
    before = await _state(redis)
    many = await _renewer(redis).renew([])
    assert many.renewals == () and many.redis_now > 0
    assert await _state(redis) == before


def _heartbeat(redis: Any) -> Heartbeat:
    return Heartbeat(redis, namespace=NS, node_id=HOLDER, host="host-a", role="standby",
                     priority=50, version="1", instance_id=INSTANCE, interval=1, retention=600,
                     preferred=True)


async def _heartbeat_state(redis: Any) -> dict[str, Any]:
    hb = _heartbeat(redis)
    zset, controller, preferred = hb.script_keys
    fields = {k.decode(): v.decode() for k, v in (await redis.hgetall(controller)).items()}
    moving = ("started_at", "last_heartbeat_at", "steady_since")
    return {"controller": {k: v for k, v in fields.items() if k not in moving},
            "times_equal": len({fields[k] for k in moving}) == 1,
            "members": [m.decode() for m in await redis.zrange(zset, 0, -1)],
            "preferred": [m.decode() for m in await redis.zrange(preferred, 0, -1)],
            "expires": await redis.pttl(controller) > 0}


async def test_the_heartbeat_riding_along_writes_what_heartbeat_lua_writes(redis: Any) -> None:
    await redis.flushall()
    started = await _heartbeat(redis).beat(metadata={"k": "v"})
    alone = await _heartbeat_state(redis)
    assert started > 0 and alone["times_equal"] and alone["members"] == [HOLDER]

    await _set_up(redis)
    many = await _renewer(redis, _heartbeat(redis)).renew(["lease-0"], beat=True,
                                                          metadata={"k": "v"})
    assert await _heartbeat_state(redis) == alone
    assert many.heartbeat_started_at == many.redis_now
    assert many.outcome("lease-0").outcome == "renewed"
    # a second beat of the same process keeps started_at, as heartbeat.lua does
    again = await _renewer(redis, _heartbeat(redis)).renew([], beat=True)
    assert again.heartbeat_started_at == many.redis_now


async def test_a_foreign_heartbeat_key_is_reported_and_the_leases_are_renewed_all_the_same(
    redis: Any,
) -> None:
    await _set_up(redis)
    zset, controller, _ = _heartbeat(redis).script_keys
    await redis.rpush(zset, "foreign")
    many = await _renewer(redis, _heartbeat(redis)).renew(["lease-0", "lease-2"], beat=True)
    assert many.heartbeat_foreign_key == zset and many.heartbeat_started_at is None
    with pytest.raises(CorruptDataError) as alone:
        await _heartbeat(redis).beat()
    error = many.heartbeat_error()
    assert error is not None and (error.key, str(error)) == (alone.value.key, str(alone.value))
    assert await redis.exists(controller) == 0  # nothing of the beat was applied
    assert [r.outcome for r in many.renewals] == ["renewed", "lost"]


@pytest.mark.parametrize("call", [
    lambda r: _renewer(r).renew(["a", "a"]),
    lambda r: _renewer(r).renew(["a"], beat=True),
    lambda r: _renewer(r).renew(["no spaces"]),
])
async def test_bad_calls_are_refused_before_any_round_trip(
    redis: Any, call: Callable[[Any], Awaitable[Any]],
) -> None:
    with pytest.raises(InvalidArgumentError):
        await call(redis)
