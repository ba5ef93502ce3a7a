"""The daemon's defences against what the Redis side can do to it: a publisher on the
events channel, a Redis whose clock steps, a Redis that may evict the lease."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from coordinator import keys
from coordinator.daemon import Daemon
from coordinator.settings import Settings, load_settings
from coordinator.state import Role
from tests.fake_clock import FakeClock


def settings(node: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {"node_id": node, "host": f"{node}.example", "lease_ttl": 2,
                            "renew_interval": 0.5, "heartbeat_interval": 0.5}
    return load_settings(**{**base, **kw})


async def pause(clock: FakeClock, seconds: float) -> None:
    """Let real time pass, and the daemon's clock with it: Redis's clock moves on its own,
    and a daemon whose clock stood still would take that for a step of Redis's clock."""
    await asyncio.sleep(seconds)
    clock.advance(seconds)


@pytest.mark.parametrize("heard", [(2**53 - 1, 2**53 - 2), (2**53 - 2,)])
async def test_terms_heard_on_the_events_channel_do_not_raise_the_floor(
    redis: Any, heard: tuple[int, ...]
) -> None:
    """The channel is advisory: a publisher's near-2**53 terms neither stop a daemon from
    leading nor push its terms to 2**53."""
    clock = FakeClock()
    daemon = Daemon(settings("a"), redis=redis, clock=clock)
    await daemon.start()
    try:
        first = daemon.state.term
        assert daemon.state.role is Role.LEADER and first is not None
        await pause(clock, 0.1)  # the daemon's subscription is up
        channel = keys.events_channel("coordinator")
        for term in heard:
            await redis.publish(channel, json.dumps(
                {"type": "leader_changed", "lease": "global", "holder_id": "x",
                 "holder_host": "x", "term": term, "previous_holder_id": None, "at": 1}))
        await pause(clock, 0.1)  # both were heard
        await daemon.lease.release()
        await daemon.lease_step()  # a new tenure
        term = daemon.state.term
        assert daemon.state.role is Role.LEADER, daemon.state.last_error
        assert term is not None and first < term < 2**53 - 2
    finally:
        await daemon.stop()
