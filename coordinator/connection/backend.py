"""Builds the redis.asyncio client a daemon or CLI command talks to: one server, Sentinel
or Cluster, with TLS where the URL says ``rediss://``."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
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


def master_kwargs(settings: Settings, *, op_timeout: float) -> dict[str, Any]:
    """The keyword arguments a client to one of the Sentinel service's servers needs (the
    URL's credentials, database and TLS; its host is ignored), without host and port."""
    url = settings.redis_url.get_secret_value()
    parts = urlsplit(url)
    master: dict[str, Any] = {"socket_timeout": op_timeout, "socket_connect_timeout": op_timeout,
                              **_tls(settings, url)}
    if parts.username:
        master["username"] = unquote(parts.username)
    if parts.password:
        master["password"] = unquote(parts.password)
    if parts.path.strip("/").isdigit():
        master["db"] = int(parts.path.strip("/"))
    return master


def _sentinel_master(settings: Settings, url: str, common: dict[str, Any]) -> Any:
    """The master of ``settings.redis_sentinel_service``, re-discovered after a failover."""
    master = master_kwargs(settings, op_timeout=common["socket_timeout"])
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": common["socket_timeout"],
                                       "socket_connect_timeout": common["socket_connect_timeout"]}
    if settings.redis_sentinel_password is not None:
        sentinel_kwargs["password"] = settings.redis_sentinel_password.get_secret_value()
    sentinel = _FollowingSentinel(settings.sentinel_addresses, sentinel_kwargs=sentinel_kwargs,
                                  **master)
    return sentinel.master_for(settings.redis_sentinel_service, retry=Retry(NoBackoff(), 1),
                               connection_pool_class=_FollowingPool)


# how long an announced master is preferred over what the Sentinels asked say: they all agree
# within seconds of a switch; a pin outliving a later switch this client missed lasts no longer
PIN_LIMIT_S = 60.0

# through Any: redis-py before 8 leaves Sentinel untyped, 8 types it; either passes
_SentinelBase: Any = Sentinel


class _FollowingSentinel(_SentinelBase):  # type: ignore[misc]
    """A Sentinel manager that, once told a switch was announced, sends new connections to
    the announced master until the Sentinels it asks name it too.

    redis-py asks ``SENTINEL MASTERS``, which keeps naming the old master until that
    Sentinel's own ``+switch-master``; the failover leader has named the promoted replica to
    ``get-master-addr-by-name`` since ``+promoted-slave``, and a Sentinel may switch seconds
    after another. Without the pin a renewal right after the announcement could land on
    the old master again and be granted there."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pins: dict[str, tuple[tuple[str, int], float]] = {}
        self.followed: dict[str, tuple[str, int]] = {}

    def pin(self, service: str, address: tuple[str, int]) -> bool:
        """Prefer ``address`` for ``service`` from now on; False when that switch was
        followed already (the last address announced stays known after its pin is gone)."""
        if self.followed.get(service) == address:
            return False
        self.followed[service] = address
        self.pins[service] = (address, time.monotonic())
        return True

    def _pinned(self, service_name: str) -> tuple[tuple[str, int], float] | None:
        pinned = self.pins.get(service_name)
        if pinned is not None and time.monotonic() - pinned[1] > PIN_LIMIT_S:
            del self.pins[service_name]
            pinned = None
        return pinned

    async def discover_master(self, service_name: str) -> Any:
        try:
            found = await super().discover_master(service_name)
        except MasterNotFoundError:
            pinned = self._pinned(service_name)
            if pinned is None:
                raise
            return pinned[0]
        # the pin is read after the Sentinel's answer, never before: a discovery in flight
        # when the switch was announced got the old master from a Sentinel that had not
        # switched yet, and returned it after drop_connections ran (the connection it made
        # then stayed in the pool: redis-py's asyncio pool never re-checks an address)
        pinned = self._pinned(service_name)
        if pinned is None:
            return found
        if (str(found[0]), int(found[1])) == pinned[0]:
            del self.pins[service_name]  # the Sentinels caught up: no pin needed any more
        return pinned[0]


class _FollowingPool(SentinelConnectionPool):
    """A Sentinel pool that hands out no connection to a master it no longer names.

    redis-py's asyncio pool re-uses any connected connection, wherever it was dialled; a
    connection that reached the old master (its connect raced the switch) would stay there
    for good. At every checkout the connection's address is compared with the pool's master
    (``switch_to`` moves it at the announcement); one elsewhere is closed and dialled again."""

    async def ensure_connection(self, connection: Any) -> None:
        await super().ensure_connection(connection)
        master = self.master_address
        if self.is_master and master is not None and (
                connection.host, connection.port) != (str(master[0]), int(master[1])):
            await connection.disconnect()
            await super().ensure_connection(connection)


def switch_to(client: Any, address: tuple[str, int]) -> bool:
    """Send ``client``'s new connections (one ``connect`` made for Sentinel) to the master at
    ``address``; False, doing nothing, when this switch was followed already, the client is
    on that master already, or the client is not one of ours. ``drop_connections`` then
    ends the connections it has."""
    pool = getattr(client, "connection_pool", None)
    manager = getattr(pool, "sentinel_manager", None)
    if pool is None or not isinstance(manager, _FollowingSentinel):
        return False
    master = getattr(pool, "master_address", None)
    if master is not None and (str(master[0]), int(master[1])) == address:
        manager.followed[pool.service_name] = address
        return False
    if not manager.pin(pool.service_name, address):
        return False
    pool.master_address = address  # checkouts now refuse connections to any other server
    return True


async def drop_connections(client: Any) -> None:
    """Close every pooled connection, those in use too: a command in flight fails and is
    retried once on a new connection, which goes where Sentinel (or a pin) says."""
    await client.connection_pool.disconnect(inuse_connections=True)
