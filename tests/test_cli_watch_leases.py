"""``coordinator watch --lease NAME`` and ``coordinator events --lease NAME`` as an operator
runs them: the named leases' events (a resync each, their tenures, their members' state
changes, a lapse of any) and the namespace-wide events that name no lease; nothing of the
other leases."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from coordinator import Lease
from coordinator.leases.registry import add_leases
from coordinator.protocol.events import publish
from coordinator.protocol.modes import set_automation_mode
from tests.redis_server import RedisServer
from tests.test_cli_watch import WatchProcess, coordinator

pytestmark = pytest.mark.e2e
NS = "e2e-lease-filter"


def state_changed(node: str, lease: str | None) -> dict[str, Any]:
    event = {"type": "state_changed", "node_id": node, "host": f"{node}.host",
             "from": "standby", "to": "leader", "term": 1, "reason": None,
             "at": int(time.time() * 1000)}
    return event if lease is None else {**event, "lease": lease}


async def test_watch_lease_shows_the_named_leases_and_the_namespace_wide_events(
        redis_server: RedisServer) -> None:
    redis = aioredis.Redis(port=redis_server.port)
    await redis.flushall()
    watcher = WatchProcess(redis_server.url, NS)
    watcher._args += ["--lease", "shard-1", "--lease", "shard-3,shard-1"]
    try:
        await watcher.start()
        resyncs = [await watcher.next_event(), await watcher.next_event()]
        assert [(e["type"], e["lease"], e["holder_id"]) for e in resyncs] == [
            ("resync", "shard-1", None), ("resync", "shard-3", None)]
        for lease, node in (("shard-0", "a"), ("shard-1", "b")):
            assert (await Lease(redis, holder_id=node, ttl=30, name=lease,
                                namespace=NS).acquire()).is_leader
        for lease in ("shard-0", "shard-1", None):
            await publish(redis, NS, state_changed("b", lease), history_maxlen=100)
        await set_automation_mode(redis, NS, "paused")
        await add_leases(redis, NS, ["shard-9"])
        # a lease that lapses unrenewed: the watcher follows each named lease's expiry
        lapsing = await Lease(redis, holder_id="c", ttl=1, name="shard-3",
                              namespace=NS).acquire()
        seen = await watcher.until("lease_expired")
        await set_automation_mode(redis, NS, "running")
        seen += await watcher.until("automation_mode_changed", mode="running")
        status, stderr = await watcher.stop(signal.SIGTERM)
    finally:
        if watcher.process.returncode is None:
            watcher.process.kill()
            await watcher.process.wait()
        await redis.aclose()
    assert status == 0, stderr
    assert [(e["type"], e.get("lease")) for e in seen] == [
        ("leader_changed", "shard-1"),
        ("state_changed", "shard-1"),
        ("state_changed", None),  # a single lease's daemon names no lease: namespace-wide
        ("automation_mode_changed", None),
        ("leases_changed", None),
        ("leader_changed", "shard-3"),
        ("lease_expired", "shard-3"),
        ("automation_mode_changed", None),
    ]
    assert seen[-2]["term"] == lapsing.term and seen[-2]["holder_id"] == "c"

    # the history, filtered alike
    done = coordinator("events", "--json", "--lease", "shard-0", "--redis-url",
                       redis_server.url, "--namespace", NS)
    assert done.returncode == 0, done.stderr
    stored = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["type"], e.get("lease")) for e in stored] == [
        ("leader_changed", "shard-0"), ("state_changed", "shard-0"), ("state_changed", None),
        ("automation_mode_changed", None), ("leases_changed", None),
        ("automation_mode_changed", None)]
    text = coordinator("events", "--lease", "shard-1", "--redis-url", redis_server.url,
                       "--namespace", NS)
    assert text.returncode == 0, text.stderr
    assert "lease shard-1: b on b.host went from standby to leader" in text.stdout
    assert "shard-0" not in text.stdout and "shard-3" not in text.stdout
    everything = coordinator("events", "--json", "--redis-url", redis_server.url,
                             "--namespace", NS)
    assert len(everything.stdout.splitlines()) == 9  # unfiltered: all of them, as before


def test_a_bad_lease_name_is_refused_before_redis() -> None:
    for command in ("watch", "events"):
        done = coordinator(command, "--lease", "no spaces", "--redis-url",
                           "redis://127.0.0.1:1/0")
        assert done.returncode == 2 and done.stdout == "", done.stderr
        assert "--lease" in done.stderr and "no spaces" in done.stderr


async def test_watch_lease_a_range_follows_every_lease_of_it(redis_server: RedisServer) -> None:
    watcher = WatchProcess(redis_server.url, NS + "-range")
    watcher._args += ["--lease", "shard-{0..2}"]
    try:
        await watcher.start()
        leases = [(await watcher.next_event())["lease"] for _ in range(3)]
        assert leases == ["shard-0", "shard-1", "shard-2"]
        status, stderr = await watcher.stop(signal.SIGINT)
        assert status == 0, stderr
    finally:
        if watcher.process.returncode is None:
            watcher.process.kill()
            await asyncio.wait_for(watcher.process.wait(), 10)
