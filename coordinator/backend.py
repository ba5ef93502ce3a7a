"""Builds the redis.asyncio client a daemon or CLI command talks to: one server, Sentinel
or Cluster, with TLS where the URL says ``rediss://``."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from coordinator.settings import Settings


def connect(settings: Settings, *, op_timeout: float | None = None) -> Any:
    """A client for the configured Redis; every command is bounded by ``op_timeout`` seconds.

    One immediate retry lets a command survive a pooled connection that Redis closed (for
    example across a Redis restart or a Sentinel failover); anything longer is the daemon's
    backoff's job.
    """
    timeout = op_timeout if op_timeout is not None else min(settings.renew_interval, 5.0)
    url = settings.redis_url.get_secret_value()
    common: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                              **_tls(settings, url)}
    if settings.redis_cluster:
        return RedisCluster.from_url(url, **common)
    if settings.sentinel_addresses:
        return _sentinel_master(settings, url, common)
    return aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **common)


def _tls(settings: Settings, url: str) -> dict[str, Any]:
    if urlsplit(url).scheme != "rediss":
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": "required"}
    if settings.tls_ca_file:
        options["ssl_ca_certs"] = settings.tls_ca_file
    if settings.tls_cert_file:
        options["ssl_certfile"] = settings.tls_cert_file
        options["ssl_keyfile"] = settings.tls_key_file
    return options


def _sentinel_master(settings: Settings, url: str, common: dict[str, Any]) -> Any:
    """The master of ``settings.redis_sentinel_service``, re-discovered after a failover.

    The URL gives the master's credentials and database; its host is ignored."""
    parts = urlsplit(url)
    master: dict[str, Any] = dict(common)
    if parts.username:
        master["username"] = unquote(parts.username)
    if parts.password:
        master["password"] = unquote(parts.password)
    if parts.path.strip("/").isdigit():
        master["db"] = int(parts.path.strip("/"))
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": common["socket_timeout"],
                                       "socket_connect_timeout": common["socket_connect_timeout"]}
    if settings.redis_sentinel_password is not None:
        sentinel_kwargs["password"] = settings.redis_sentinel_password.get_secret_value()
    # through Any: redis-py before 8 leaves Sentinel untyped, 8 types it; either passes
    make_sentinel: Any = Sentinel
    sentinel = make_sentinel(settings.sentinel_addresses, sentinel_kwargs=sentinel_kwargs, **master)
    return sentinel.master_for(settings.redis_sentinel_service, retry=Retry(NoBackoff(), 1))
