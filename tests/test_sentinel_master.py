"""acquire.lua's Sentinel check (ARGV[12]): a tenure granted, or renewed through acquire.lua
(the first renewal after a followed switch), only on the server whose run_id the daemon read
from the master the Sentinels name; renew.lua and "held" never refused; no run_id passed, no
check (fakeredis, plain Redis, Cluster). And sentinel_master.py's pure parts."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from coordinator.connection.sentinel_master import REFUSE, agreed, parse_address
from coordinator.errors import NotCurrentMasterError
from coordinator.protocol import keys
from coordinator.protocol.lease import Lease


def lease(redis: Any, node: str) -> Lease:
    return Lease(redis, holder_id=node, name="global", namespace="sm", ttl=5.0)


async def run_id_of(redis: Any) -> str:
    return str((await redis.info("server"))["run_id"])


def fixed(run_id: str) -> Any:
    async def ask() -> str:
        return run_id
    return ask


async def test_no_run_id_passed_means_no_check(redis: Any) -> None:
    assert (await lease(redis, "a").acquire()).is_leader


async def test_a_grant_only_on_the_named_server_renewals_and_held_unchecked(
        redis: Any) -> None:
    a, b = lease(redis, "a"), lease(redis, "b")
    other = "f" * 40
    with pytest.raises(NotCurrentMasterError):
        await a.acquire(master=fixed(other))
    with pytest.raises(NotCurrentMasterError):
        await a.acquire(master=fixed(REFUSE))
    assert not await redis.exists(keys.lease_key("sm", "global"))
    if isinstance(redis, fakeredis.FakeAsyncRedis):
        # fakeredis has no INFO: with a run_id passed it can check nothing, so grants nothing
        with pytest.raises(NotCurrentMasterError):
            await a.acquire(master=fixed("0" * 40))
        return
    own = await run_id_of(redis)
    got = await a.acquire(master=fixed(own))
    assert got.is_leader and got.operation == "acquire"
    # the hot path (renew.lua) and b's "held" are never refused, whatever the Sentinels say
    assert (await a.acquire(master=fixed(other))).operation == "renew"
    assert not (await b.acquire(master=fixed(other))).is_leader
    # after a followed switch the renewal goes through acquire.lua: only on the named server
    a.forget_held()
    with pytest.raises(NotCurrentMasterError):
        await a.acquire(master=fixed(other))
    assert (await a.acquire(master=fixed(own))).operation == "renew"


def test_parse_address() -> None:
    assert parse_address([b"127.0.0.1", b"6379"]) == ("127.0.0.1", 6379)
    assert parse_address(["10.0.0.1", "6380"]) == ("10.0.0.1", 6380)
    assert parse_address(None) is None
    assert parse_address([b"127.0.0.1", b"x"]) is None


def test_agreed() -> None:
    a, b = ("127.0.0.1", 1), ("127.0.0.1", 2)
    assert agreed([a, a, None], 3) == a  # an unreachable Sentinel does not block
    assert agreed([a, a], 3) == a  # nor does one not heard yet: two of three are a majority
    assert agreed([a, b], 2) is None  # a switch that reached one Sentinel only: no grant
    assert agreed([a, b, b], 3) == b  # the majority decides
    assert agreed([a], 3) is None  # a minority left with a replaced master grants nothing
    assert agreed([a], 1) == a  # one Sentinel configured: it is the majority
    assert agreed([None, None], 2) is None  # no Sentinel answered: no grant
    assert agreed([], 1) is None
