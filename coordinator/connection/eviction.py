"""Whether the Redis may evict the lease: its maxmemory-policy, read at start and again every
RECHECK_EVERY seconds (EvictionWatch), so ``status`` and ``/readyz`` follow a CONFIG SET.

Under ``volatile-*`` the lease hash (it has a TTL) may be evicted under memory pressure
(``volatile-ttl`` picks it first: its TTL is the shortest around); under ``allkeys-*`` the
tenure hash may go too. An evicted lease is a free lease: a standby takes it while the
leader, whose local deadline has not passed, still schedules. Only ``noeviction`` is safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coordinator.clock import bounded
from coordinator.connection import redis_exceptions
from coordinator.connection.boundary import text
from coordinator.connection.redis_exceptions import unavailable
from coordinator.json_shapes import JsonShape

RECHECK_EVERY = 60.0  # seconds between two reads of the policy by a running daemon
SAFE_POLICY = "noeviction"
UNKNOWN = "unknown"
REMEDY = "set maxmemory-policy noeviction, or use a dedicated Redis"


@dataclass(frozen=True)
class RedisReport(JsonShape):
    """What the daemon found out about its Redis's configuration."""

    maxmemory_policy: str = UNKNOWN
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The ``redis`` object of ``status --json`` and ``/status``."""
        return {"maxmemory_policy": self.maxmemory_policy, "warnings": list(self.warnings)}


REPLICATION_RISK = (
    "Sentinel without COORDINATOR_MIN_REPLICAS_ACK: replication is asynchronous, so a "
    "failover can lose the last writes the old master accepted (fenced writes included); "
    "leadership follows Sentinel's announcements, but a leader that hears none of them keeps "
    "renewing on the old master until Sentinel demotes it: set COORDINATOR_MIN_REPLICAS_ACK=1 "
    "(or min-replicas-to-write 1 on the servers)")


def deployment_warnings(*, sentinel: bool, min_replicas_ack: int) -> tuple[str, ...]:
    """Warnings the settings alone justify (README, Guarantees)."""
    return (REPLICATION_RISK,) if sentinel and min_replicas_ack == 0 else ()


def with_warnings(report: RedisReport, extra: tuple[str, ...]) -> RedisReport:
    """``report`` with ``extra`` warnings after its own."""
    return RedisReport(report.maxmemory_policy, (*report.warnings, *extra)) if extra else report


def report_for(policies: set[str]) -> RedisReport:
    """The report for the policies the servers answered (a cluster answers per node)."""
    if not policies:
        return RedisReport()
    risky = sorted(p for p in policies if p != SAFE_POLICY)
    shown = risky[0] if risky else SAFE_POLICY
    if len(policies) > 1:
        shown = ",".join(sorted(policies))
    warnings = tuple(
        f"maxmemory-policy {p} lets Redis evict the lease under memory pressure, and another "
        f"node take it while the leader still trusts it: {REMEDY}" for p in risky)
    return RedisReport(shown, warnings)


async def check_eviction(redis: Any, timeout: float) -> RedisReport:
    """Read maxmemory-policy; "unknown" (and no warning) where CONFIG GET is refused, as it
    is for a least-privilege ACL user, or Redis does not answer. Never raises for Redis."""
    try:
        reply = await bounded(redis.config_get("maxmemory-policy"), timeout)
    except (redis_exceptions.RedisError, TimeoutError, *unavailable()):
        return RedisReport()
    return report_for(set(_policies(reply)))


def _policies(reply: Any) -> list[str]:
    """The policy values in a CONFIG GET reply: a dict, or one dict per node (Cluster)."""
    if not isinstance(reply, dict):
        return []
    found = []
    for key, value in reply.items():
        if isinstance(value, dict):
            found.extend(_policies(value))
        elif text(key) == "maxmemory-policy" and value is not None:
            found.append(str(text(value)))
    return found


class EvictionWatch:
    """The daemon's last report, re-read at most once per ``every`` seconds of its clock
    (one CONFIG GET a minute: cheap). ``refresh`` says whether the report changed, so the
    daemon logs a warning when the policy changes, not on every read."""

    def __init__(self, every: float = RECHECK_EVERY) -> None:
        self.every = every
        self.report = RedisReport()
        self._next: float | None = None  # when the next read is due (None: never read yet)

    def due(self, now: float) -> bool:
        return self._next is None or now >= self._next

    async def refresh(self, redis: Any, timeout: float, now: float) -> bool:
        """Read the policy now; True when the report differs from the last one."""
        first = self._next is None
        self._next = now + self.every
        report = await check_eviction(redis, timeout)
        changed = first or report != self.report
        self.report = report
        return changed
