"""A daemon facing a corrupt or foreign lease key says so once a minute at most, with the remedy,
instead of the same warning on every renew."""

from __future__ import annotations

from typing import Any

from coordinator.daemon.daemon import Daemon
from coordinator.protocol import keys
from coordinator.settings import load_settings
from tests.fake_clock import FakeClock
from tests.log_capture import capture_logs


async def test_a_foreign_lease_key_is_logged_once_a_minute_with_the_remedy(redis: Any) -> None:
    lease_key = keys.lease_key("coordinator", "global")
    await redis.rpush(lease_key, "someone", "else's")
    clock = FakeClock()
    daemon = Daemon(load_settings(node_id="a", lease_ttl=2, renew_interval=0.5),
                    redis=redis, clock=clock)
    with capture_logs() as logs:
        for _ in range(240):  # two minutes of renewals every half second
            await daemon.lease_step()
            clock.advance(0.5)
    corrupt = [e for e in logs if e["event"] == "lease.corrupt"]
    assert 2 <= len(corrupt) <= 3, [e["event"] for e in logs][:10]
    assert all(e["key"] == lease_key and "DEL" in e["remedy"] for e in corrupt)
    assert all(e["log_level"] == "error" for e in corrupt)
    # the ordinary per-renew warning does not repeat the same error every half second
    assert len([e for e in logs if e["event"] == "lease.failed"]) <= 3
    assert not daemon.can_schedule()
