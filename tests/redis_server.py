"""The tests start real redis-servers with the package's own helper."""

from coordinator.cli.local_redis import (
    RedisServer,
    free_port,
    redis_server_binary,
    running_redis,
    wait_for_ping,
)

__all__ = ["RedisServer", "free_port", "redis_server_binary", "running_redis", "wait_for_ping"]
