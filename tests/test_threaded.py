"""The background-thread facade, against a real redis-server."""

from __future__ import annotations

import threading

from coordinator.settings import load_settings
from coordinator.threaded import BackgroundDaemon
from tests.redis_server import RedisServer


def test_a_non_async_program_can_embed_the_daemon(redis_server: RedisServer) -> None:
    import redis

    redis.Redis(port=redis_server.port).flushall()
    background = BackgroundDaemon(load_settings(
        node_id="threaded", redis_url=redis_server.url, lease_ttl=2, renew_interval=0.5,
        heartbeat_interval=0.5))
    background.start()
    try:
        seen: list[bool] = []
        others = [threading.Thread(target=lambda: seen.append(background.can_schedule()))
                  for _ in range(3)]
        for t in others:
            t.start()
        for t in others:
            t.join()
        assert seen == [True, True, True]
        assert background.status_snapshot()["role"] == "leader"
    finally:
        background.stop()
    assert not background.can_schedule()
    assert redis.Redis(port=redis_server.port).exists("{coordinator}:lease:global") == 0
