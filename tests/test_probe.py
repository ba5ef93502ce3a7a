"""The fence probe: off by default; on, the leader writes fenced records and a standby does not."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest

from coordinator.daemon.daemon import Daemon
from coordinator.protocol import keys
from coordinator.protocol.probe import start_probe
from coordinator.settings import SettingsError, load_settings
from tests.log_capture import capture_logs


def settings(node: str, **kw: Any) -> Any:
    return load_settings(node_id=node, host=node, lease_ttl=0.6, renew_interval=0.05,
                         heartbeat_interval=0.2, **kw)


async def test_probe_is_off_unless_a_key_is_set(redis: Any) -> None:
    daemon = Daemon(settings("a"), redis=redis)
    assert start_probe(daemon) is None


def test_a_probe_key_must_be_key_safe() -> None:
    with pytest.raises(SettingsError, match="COORDINATOR_FENCE_PROBE_KEY"):
        settings("a", fence_probe_key="has space")


async def test_the_leader_writes_fenced_records_and_a_standby_writes_none(redis: Any) -> None:
    leader = Daemon(settings("a", fence_probe_key="probe"), redis=redis)
    standby = Daemon(settings("b", fence_probe_key="probe"), redis=redis)
    with capture_logs() as logs:
        await leader.start()
        await standby.start()
        probes = [start_probe(leader), start_probe(standby)]
        await asyncio.sleep(0.3)
        for task in probes:
            assert task is not None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await standby.stop()
        await leader.stop()
    writes = [e for e in logs if e["event"] == "probe.write"]
    assert len(writes) >= 3 and {e["node_id"] for e in writes} == {"a"}
    assert all(e["accepted"] and e["term"] == writes[0]["term"] and e["redis_now"] > 0 for e in writes)
    assert [e["seq"] for e in writes] == sorted(e["seq"] for e in writes)
    stored = json.loads(await redis.get(keys.fenced_key("coordinator", "probe")))
    assert stored["node_id"] == "a" and stored["term"] == writes[-1]["term"] and stored["seq"] == writes[-1]["seq"]
