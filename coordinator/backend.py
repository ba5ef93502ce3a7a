"""Builds the redis.asyncio client a daemon or CLI command talks to."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from coordinator.settings import Settings


def connect(settings: Settings, *, op_timeout: float | None = None) -> Any:
    """A client for ``settings.redis_url``; every command is bounded by ``op_timeout`` seconds.

    One immediate retry lets a command survive a pooled connection that Redis closed (for
    example across a Redis restart); anything longer is the daemon's backoff's job.
    """
    timeout = op_timeout if op_timeout is not None else min(settings.renew_interval, 5.0)
    return aioredis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )
