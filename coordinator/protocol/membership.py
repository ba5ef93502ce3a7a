"""Controller heartbeats and "who is alive": one round trip to write, range queries to read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from coordinator.connection.boundary import redis_errors, text
from coordinator.errors import InvalidArgumentError, UnexpectedReplyError
from coordinator.json_shapes import JsonShape
from coordinator.protocol import keys
from coordinator.protocol.scripts import register_scripts, run_script, script_errors

ControllerStatus = Literal["alive", "degraded", "stopping"]
# a controller is alive while its last heartbeat is younger than this many intervals
ALIVE_INTERVALS = 3
# the lease field of a many-lease node: it competes for every lease its selector allows
MANY_LEASES = "*"


@dataclass(frozen=True)
class Controller(JsonShape):
    """One controller as its last heartbeat described it."""

    node_id: str
    host: str
    role: str
    priority: int
    status: str
    version: str
    started_at: int
    last_heartbeat_at: int
    heartbeat_interval_ms: int
    alive: bool
    heartbeat_age_ms: int
    metadata: dict[str, Any] = field(default_factory=dict)
    preferred: bool = False
    steady_since: int | None = None
    lease: str | None = None  # the lease it competes for (None: a daemon too old to say)
    capacity: int | None = None  # a many-lease node's weight (None: a single-lease node)
    selector: str | None = None  # a many-lease node's selector text (None: single-lease)

    def to_dict(self) -> dict[str, Any]:
        """The public JSON shape used by ``status --json``."""
        return {
            "node_id": self.node_id, "host": self.host, "role": self.role,
            "priority": self.priority, "status": self.status, "version": self.version,
            "started_at": self.started_at, "last_heartbeat_at": self.last_heartbeat_at,
            "heartbeat_age_ms": self.heartbeat_age_ms, "alive": self.alive,
            "preferred": self.preferred, "lease": self.lease, "metadata": self.metadata,
            "capacity": self.capacity, "selector": self.selector,
        }


_NO_METADATA = b"{}"
_STATUS: dict[str, bytes] = {s: s.encode() for s in ("alive", "degraded", "stopping")}


def _arg(value: str | int) -> bytes:
    """One script argument as the client would send it."""
    return str(value).encode()


class Heartbeat:
    """Writes one controller's heartbeats."""

    def __init__(
        self, redis: Any, *, namespace: str, node_id: str, host: str, role: str, priority: int,
        version: str, instance_id: str, interval: float, retention: float,
        preferred: bool = False, lease: str = "global", capacity: int | None = None,
        selector: str = "",
    ) -> None:
        self._preferred = "1" if preferred else "0"
        # "*": a many-lease node, competing for every lease its selector allows
        self._lease = lease if lease == MANY_LEASES else keys.check_name("lease name", lease)
        if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int)
                                     or capacity < 1):
            raise InvalidArgumentError(f"capacity must be an integer >= 1, got {capacity!r}")
        if capacity is None and selector:
            raise InvalidArgumentError("a selector is written only with a capacity (a many-lease node)")
        self._many = ["" if capacity is None else str(capacity), selector]
        self._scripts = register_scripts(redis)
        self._keys = [keys.heartbeats_key(namespace), keys.controller_key(namespace, node_id),
                      keys.preferred_key(namespace)]
        self._interval_ms = round(interval * 1000)
        self._retention_ms = round(retention * 1000)
        # what every beat sends around its status and metadata, encoded once (the client
        # would encode each argument on every beat)
        self._head = [_arg(v) for v in (node_id, host, role, priority)]
        self._middle = [_arg(v) for v in (version, instance_id)]
        self._tail = [_arg(self._retention_ms), _arg(self._interval_ms), _arg(self._preferred),
                      _arg(self._lease), *(_arg(v) for v in self._many)]

    @property
    def script_keys(self) -> list[str]:
        """heartbeat.lua's KEYS: the heartbeats sorted set, this controller's hash, the
        preferred sorted set."""
        return list(self._keys)

    def arguments(self, status: ControllerStatus = "alive",
                  metadata: dict[str, Any] | None = None) -> list[Any]:
        """heartbeat.lua's ARGV for one beat (renew_many.lua takes the same, after its own)."""
        encoded = _NO_METADATA if not metadata else _arg(json.dumps(metadata, separators=(",", ":")))
        return [*self._head, _STATUS.get(status) or _arg(status), *self._middle, encoded,
                *self._tail]

    async def beat(self, status: ControllerStatus = "alive", metadata: dict[str, Any] | None = None) -> int:
        """Write one heartbeat; returns its Redis-clock time in ms."""
        reply = await run_script(self._scripts.heartbeat, self._keys,
                                 self.arguments(status, metadata))
        try:
            return int(reply[0])
        except (TypeError, ValueError) as e:
            raise UnexpectedReplyError(f"heartbeat replied {reply!r}") from e


async def redis_time_ms(redis: Any) -> int:
    """The Redis server's clock in ms."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def alive_node_ids(redis: Any, namespace: str, *, within_ms: int) -> list[str]:
    """Node ids that heartbeated within the last ``within_ms`` (a range query)."""
    return await _heard(redis, namespace, newer_than=within_ms)


async def stale_node_ids(redis: Any, namespace: str, *, older_than_ms: int) -> list[str]:
    """Node ids whose last heartbeat is older than ``older_than_ms`` but still retained."""
    return await _heard(redis, namespace, older_than=older_than_ms)


async def _heard(redis: Any, namespace: str, *, newer_than: int | None = None,
                 older_than: int | None = None) -> list[str]:
    key = keys.heartbeats_key(namespace)
    with redis_errors(key):
        now = await redis_time_ms(redis)
        low = now - newer_than if newer_than is not None else "-inf"
        high = f"({now - older_than}" if older_than is not None else "+inf"
        members = await redis.zrangebyscore(key, low, high)
    return [str(text(m)) for m in members]


_BATCH = 2000
# what status reads of each controller, in this order
_FIELDS = ("host", "role", "priority", "status", "version", "started_at", "last_heartbeat_at",
           "heartbeat_interval_ms", "metadata_json", "preferred", "steady_since", "lease",
           "capacity", "selector")


async def list_controllers(redis: Any, namespace: str, *, retention_ms: int) -> list[Controller]:
    """Every controller that heartbeated within the retention window, newest first."""
    key = keys.heartbeats_key(namespace)
    with redis_errors(key):
        now = await redis_time_ms(redis)
        scored = await redis.zrevrangebyscore(key, "+inf", now - retention_ms, withscores=True)
    ids = [str(text(m)) for m, _ in scored]
    records: list[list[Any]] = []
    read = register_scripts(redis).controllers
    for start in range(0, len(ids), _BATCH):  # bounded batches keep Redis responsive
        batch = [keys.controller_key(namespace, n) for n in ids[start:start + _BATCH]]
        with redis_errors(key), script_errors():
            flat = await read(keys=batch, args=list(_FIELDS))
        width = len(_FIELDS)
        records.extend(flat[i:i + width] for i in range(0, len(flat), width))
    return [
        _controller(node_id, int(score), raw, now)
        for (node_id, (_, score)), raw in zip(zip(ids, scored, strict=True), records, strict=True)
        if any(v is not None for v in raw)
    ]


def _number(value: Any, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _controller(node_id: str, score: int, raw: list[Any], now: int) -> Controller:
    (host, role, priority, status, version, started_at, last_heartbeat_at, interval_ms,
     metadata_json, preferred, steady_since, lease, capacity, selector) = (
        v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in raw)
    try:
        metadata = json.loads(metadata_json or "{}")
    except ValueError:
        metadata = {"unparsed": metadata_json}
    interval = _number(interval_ms, 5000)
    last = _number(last_heartbeat_at, score)
    status = status or "unknown"
    age = max(0, now - last)
    return Controller(
        node_id=node_id, host=host or "", role=role or "", priority=_number(priority),
        status=status, version=version or "", started_at=_number(started_at),
        last_heartbeat_at=last, heartbeat_interval_ms=interval,
        alive=age < ALIVE_INTERVALS * interval and status != "stopping", heartbeat_age_ms=age,
        metadata=metadata if isinstance(metadata, dict) else {"unparsed": metadata},
        preferred=preferred == "1", steady_since=_number(steady_since) or None,
        lease=lease or None, capacity=_number(capacity) or None,
        selector=selector if capacity is not None else None,
    )
