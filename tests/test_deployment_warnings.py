"""A deployment that cannot keep the product's promise says so: Sentinel without replica
acknowledgement can lose the lease's last writes in a failover (two leaders until Sentinel
demotes the old master, its fenced writes accepted and then lost), so the daemon warns at
start and in /status and /readyz, with the remedy."""

from __future__ import annotations

import fakeredis

from coordinator.daemon.daemon import Daemon
from coordinator.settings import load_settings
from tests.log_capture import capture_logs


def _settings(**more: object) -> object:
    return load_settings(node_id="a", lease_ttl=2, renew_interval=0.5, heartbeat_interval=0.5,
                         **more)


async def test_sentinel_without_replica_acknowledgement_is_warned_about() -> None:
    settings = _settings(redis_sentinels="127.0.0.1:26379")
    daemon = Daemon(settings, redis=fakeredis.FakeAsyncRedis())  # type: ignore[arg-type]
    with capture_logs() as logs:
        await daemon.start()
        try:
            warnings = daemon.redis_report.warnings
            assert any("COORDINATOR_MIN_REPLICAS_ACK" in w for w in warnings), warnings
            assert any(e.get("event") == "redis.replication_risk" for e in logs), logs
        finally:
            await daemon.stop()


async def test_no_such_warning_with_acknowledgement_or_without_sentinel() -> None:
    for settings in (_settings(), _settings(redis_sentinels="127.0.0.1:26379",
                                            min_replicas_ack=1)):
        daemon = Daemon(settings, redis=fakeredis.FakeAsyncRedis())  # type: ignore[arg-type]
        await daemon.start()
        try:
            assert not any("MIN_REPLICAS_ACK" in w for w in daemon.redis_report.warnings)
        finally:
            await daemon.stop()
