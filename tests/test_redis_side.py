"""The daemon's defences against what the Redis side can do to it: a publisher on the
events channel, a Redis whose clock steps, a Redis that may evict the lease."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis

from coordinator.clock import Clock
from coordinator.connection.eviction import check_eviction
from coordinator.daemon.daemon import Daemon
from coordinator.daemon.state import Role
from coordinator.protocol import keys
from coordinator.settings import Settings, load_settings
from coordinator.watching.status import cluster_status, render_status
from tests.log_capture import capture_logs
from tests.redis_server import running_redis


def settings(node: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {"node_id": node, "host": f"{node}.example", "lease_ttl": 2,
                            "renew_interval": 0.5, "heartbeat_interval": 0.5}
    return load_settings(**{**base, **kw})


class WakeOnlyClock(Clock):
    """Real time (Redis's clock moves with it, so no step is seen), but the daemon's loops
    wait only for a wake-up: the lease loop never renews on its own."""

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        await event.wait()
        return True


@pytest.mark.parametrize("heard", [(2**53 - 1, 2**53 - 2), (2**53 - 2,)])
async def test_terms_heard_on_the_events_channel_do_not_raise_the_floor(
    redis: Any, heard: tuple[int, ...]
) -> None:
    """The channel is advisory: a publisher's near-2**53 terms neither stop a daemon from
    leading nor push its terms to 2**53."""
    daemon = Daemon(settings("a"), redis=redis, clock=WakeOnlyClock())
    await daemon.start()
    try:
        first = daemon.state.term
        assert daemon.state.role is Role.LEADER and first is not None
        await asyncio.sleep(0.1)  # the daemon's subscription is up
        channel = keys.events_channel("coordinator")
        for term in heard:
            await redis.publish(channel, json.dumps(
                {"type": "leader_changed", "lease": "global", "holder_id": "x",
                 "holder_host": "x", "term": term, "previous_holder_id": None, "at": 1}))
        await asyncio.sleep(0.1)  # both were heard
        await daemon.lease.release()
        await daemon.lease_step()  # a new tenure
        term = daemon.state.term
        assert daemon.state.role is Role.LEADER, daemon.state.last_error
        assert term is not None and first < term < 2**53 - 2
    finally:
        await daemon.stop()


# ---- a Redis that may evict the lease ------------------------------------------------------

async def test_a_redis_that_may_evict_the_lease_is_reported_at_start_and_in_status() -> None:
    with running_redis("--maxmemory-policy", "allkeys-lru") as server:
        client = aioredis.Redis(port=server.port)
        daemon = Daemon(settings("a"), redis=client)
        try:
            with capture_logs() as logs:
                await daemon.start()
            risks = [e for e in logs if e["event"] == "redis.eviction_risk"]
            assert len(risks) == 1 and risks[0]["maxmemory_policy"] == "allkeys-lru"
            assert daemon.redis_report.maxmemory_policy == "allkeys-lru"
            assert daemon.state.role is Role.LEADER  # a warning, it does not stop the daemon
            (warning,) = daemon.redis_report.warnings
            assert "set maxmemory-policy noeviction, or use a dedicated Redis" in warning
            status = await cluster_status(client, settings("a"))
            assert status["redis"] == {"maxmemory_policy": "allkeys-lru", "warnings": [warning]}
            assert f"warning: {warning}" in render_status(status).splitlines()
            await client.config_set("maxmemory-policy", "volatile-ttl")
            status = await cluster_status(client, settings("a"))
            assert status["redis"]["maxmemory_policy"] == "volatile-ttl"
            assert len(status["redis"]["warnings"]) == 1
            await client.config_set("maxmemory-policy", "noeviction")
            status = await cluster_status(client, settings("a"))
            assert status["redis"] == {"maxmemory_policy": "noeviction", "warnings": []}
        finally:
            await daemon.stop()
            await client.aclose()


async def test_a_user_refused_config_get_sees_unknown_and_the_daemon_runs() -> None:
    with running_redis("--maxmemory-policy", "allkeys-lru") as server:
        admin = aioredis.Redis(port=server.port)
        # least privilege, as in deploy/redis/redis.conf: no CONFIG
        await admin.execute_command(
            "ACL", "SETUSER", "coordinator", "on", ">pw", "~{coordinator}:*", "~coordinator:*",
            "&*", "+@all", "-config")
        client = aioredis.Redis(port=server.port, username="coordinator", password="pw")
        daemon = Daemon(settings("a"), redis=client)
        try:
            with capture_logs() as logs:
                await daemon.start()
            assert daemon.state.role is Role.LEADER
            assert daemon.redis_report.to_dict() == {"maxmemory_policy": "unknown", "warnings": []}
            assert [e["event"] for e in logs if e["event"].startswith("redis.")] == [
                "redis.eviction_unknown"]
            status = await cluster_status(client, settings("a"))
            assert status["redis"] == {"maxmemory_policy": "unknown", "warnings": []}
        finally:
            await daemon.stop()
            await client.aclose()
            await admin.aclose()


async def test_a_server_without_config_get_is_unknown_and_the_default_is_safe(redis: Any) -> None:
    report = await check_eviction(redis, timeout=1.0)
    if isinstance(redis, fakeredis.FakeAsyncRedis):  # fakeredis has no CONFIG GET
        assert report.to_dict() == {"maxmemory_policy": "unknown", "warnings": []}
    else:  # the session's server runs with Redis's default
        assert report.to_dict() == {"maxmemory_policy": "noeviction", "warnings": []}


async def test_a_leader_told_another_node_leads_looks_at_redis_and_believes_only_redis(
    redis: Any,
) -> None:
    """The channel is advisory both ways: a (false) leader_changed prompts a renewal at
    once instead of at the next interval, and the reply, not the event, decides."""
    daemon = Daemon(settings("a"), redis=redis, clock=WakeOnlyClock())  # only a wake renews
    await daemon.start()
    try:
        await asyncio.sleep(0.1)  # the daemon's subscription is up
        before = renewals(daemon)
        await redis.publish(keys.events_channel("coordinator"), json.dumps(
            {"type": "leader_changed", "lease": "global", "holder_id": "x", "holder_host": "x",
             "term": 2**53 - 1, "previous_holder_id": "a", "at": 1}))
        for _ in range(200):
            if renewals(daemon) > before:
                break
            await asyncio.sleep(0.01)
        assert renewals(daemon) == before + 1
        assert daemon.state.role is Role.LEADER and daemon.can_schedule()
    finally:
        await daemon.stop()


def renewals(daemon: Daemon) -> float:
    value = daemon.metrics.registry.get_sample_value(
        "coordinator_lease_renew_duration_seconds_count", {"result": "ok"})
    return value or 0.0
