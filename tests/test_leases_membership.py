"""A many-lease node's controller record: ``lease = "*"`` with its capacity and selector, and
the three handover scripts taking such a node as competing for every lease (while a node of
another single lease is still refused), on real Redis and fakeredis."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator.daemon.handoff_choice import request_handoff
from coordinator.errors import InvalidArgumentError
from coordinator.leases.renew import ManyLeaseRenewer
from coordinator.protocol import keys
from coordinator.protocol.lease import Lease
from coordinator.protocol.membership import Heartbeat, list_controllers

NS = "members"


def _beat(redis: Any, node: str, *, lease: str = "*", capacity: int | None = 2,
          selector: str = "eu-*") -> Heartbeat:
    return Heartbeat(redis, namespace=NS, node_id=node, host=f"{node}.host", role="standby",
                     priority=50, version="1", instance_id=f"{node}-1", interval=5,
                     retention=60, lease=lease, capacity=capacity, selector=selector)


async def _record(redis: Any, node: str) -> dict[str, str]:
    raw = await redis.hgetall(keys.controller_key(NS, node))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def test_a_many_lease_record_has_capacity_selector_and_star(redis: Any) -> None:
    await _beat(redis, "m").beat()
    record = await _record(redis, "m")
    assert (record["lease"], record["capacity"], record["selector"]) == ("*", "2", "eu-*")
    (found,) = await list_controllers(redis, NS, retention_ms=60_000)
    assert (found.lease, found.capacity, found.selector) == ("*", 2, "eu-*")
    assert {"capacity": 2, "selector": "eu-*"}.items() <= found.to_dict().items()


async def test_a_single_lease_record_is_unchanged(redis: Any) -> None:
    await _beat(redis, "s", lease="global", capacity=None, selector="").beat()
    record = await _record(redis, "s")
    assert "capacity" not in record and "selector" not in record and record["lease"] == "global"
    (found,) = await list_controllers(redis, NS, retention_ms=60_000)
    assert found.capacity is None and found.selector is None
    shape = found.to_dict()
    assert shape["capacity"] is None and shape["selector"] is None


async def test_the_heartbeat_riding_on_renew_many_writes_the_same_record(redis: Any) -> None:
    beat = _beat(redis, "m", capacity=3, selector="")
    renewer = ManyLeaseRenewer(redis, namespace=NS, holder_id="m", instance_id="m-1", ttl=30,
                               heartbeat=beat)
    renewed = await renewer.renew([], beat=True)
    assert renewed.heartbeat_started_at is not None
    record = await _record(redis, "m")
    assert (record["lease"], record["capacity"], record["selector"]) == ("*", "3", "")


@pytest.mark.parametrize("capacity", [0, -1, True, "2"])
def test_a_bad_capacity_is_refused_before_redis(capacity: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        _beat(object(), "m", capacity=capacity)


async def test_a_release_to_a_star_node_reserves_the_lease_for_it(redis: Any) -> None:
    await _beat(redis, "c").beat()
    lease = Lease(redis, holder_id="a", ttl=30, name="shard-1", namespace=NS)
    await lease.acquire()
    released = await lease.release(handoff_to="c")
    assert released.released and released.reserved_for == "c" and not released.handoff_refused
    other = Lease(redis, holder_id="b", ttl=30, name="shard-1", namespace=NS)
    for _ in range(2):  # the second call names the reservation's node: acquire.lua checks it
        assert not (await other.acquire()).is_leader
    assert (await Lease(redis, holder_id="c", ttl=30, name="shard-1", namespace=NS).acquire()).is_leader


async def test_a_release_to_a_node_of_another_lease_is_still_refused(redis: Any) -> None:
    await _beat(redis, "c", lease="reports", capacity=None, selector="").beat()
    lease = Lease(redis, holder_id="a", ttl=30, name="shard-1", namespace=NS)
    await lease.acquire()
    released = await lease.release(handoff_to="c")
    assert released.reserved_for is None
    assert released.handoff_refused == "competes for lease reports, not shard-1"


async def test_a_handoff_request_to_a_star_node_is_accepted(redis: Any) -> None:
    await _beat(redis, "c").beat()
    await _beat(redis, "r", lease="reports", capacity=None, selector="").beat()
    await Lease(redis, holder_id="a", ttl=30, name="shard-1", namespace=NS).acquire()
    accepted = await request_handoff(redis, NS, "shard-1", "c", ttl_ms=10_000)
    assert accepted.outcome == "requested"
    refused = await request_handoff(redis, NS, "shard-1", "r", ttl_ms=10_000)
    assert (refused.outcome, refused.reason) == ("not_alive", "competes for lease reports, not shard-1")
