"""The cluster-wide status: the lease as Redis holds it, and every controller's heartbeat."""

from __future__ import annotations

from typing import Any

from coordinator import keys
from coordinator.boundary import redis_errors, text
from coordinator.eviction import check_eviction
from coordinator.lease import read_lease
from coordinator.membership import list_controllers, redis_time_ms
from coordinator.settings import Settings


async def cluster_status(redis: Any, settings: Settings) -> dict[str, Any]:
    """One JSON-ready object: ``lease`` (or None), ``controllers``, ``automation_mode``,
    ``redis`` (its maxmemory-policy and warnings)."""
    record = await read_lease(redis, settings.namespace, settings.lease_name)
    controllers = await list_controllers(
        redis, settings.namespace, retention_ms=round(settings.heartbeat_retention * 1000))
    mode_key = keys.automation_mode_key(settings.namespace)
    with redis_errors(mode_key):
        now = await redis_time_ms(redis)
        mode = text(await redis.get(mode_key)) or "running"
    redis_report = await check_eviction(redis, timeout=2.0)
    lease = None
    if record is not None:
        lease = {**record.to_json(), "remaining_ms": max(0, record.lease_expires_at - now)}
    return {
        "namespace": settings.namespace,
        "lease_name": settings.lease_name,
        "redis_now": now,
        "lease": lease,
        "controllers": [c.to_json() for c in controllers],
        "automation_mode": mode,
        "redis": redis_report.to_json(),
    }


def render_status(status: dict[str, Any]) -> str:
    """The human-readable form of ``cluster_status``."""
    lines = []
    lease = status["lease"]
    if lease is None:
        lines.append(f"leader: none (lease {status['lease_name']!r} is free)")
    else:
        lines.append(
            f"leader: {lease['holder_id']} on {lease['holder_host']}  term {lease['term']}  "
            f"{lease['remaining_ms'] / 1000:.1f}s left"
        )
    lines.append(f"automation mode: {status['automation_mode']}")
    redis = status.get("redis") or {}
    lines.append(f"redis maxmemory-policy: {redis.get('maxmemory_policy', 'unknown')}")
    lines.extend(f"warning: {w}" for w in redis.get("warnings", []))
    lines.append(f"controllers ({len(status['controllers'])}):")
    for c in status["controllers"]:
        liveness = "alive" if c["alive"] else "not alive"
        lines.append(
            f"  {c['node_id']:<24} {c['host']:<20} {c['role']:<8} {c['status']:<9} "
            f"lease {c.get('lease') or '?':<12} "
            f"heartbeat {c['heartbeat_age_ms'] / 1000:.1f}s ago  {liveness}"
        )
        child = (c.get("metadata") or {}).get("child")
        if isinstance(child, dict):
            lines.append("    " + render_child(child))
    return "\n".join(lines)


def render_child(child: dict[str, Any]) -> str:
    """One line on a controller's leader-only child (``coordinator run -- CMD``)."""
    if child.get("running"):
        state = f"child running, pid {child.get('pid')}, term {child.get('term')}"
    else:
        last = child.get("last_exit_status")
        state = "child not running" + ("" if last is None else f" (last exit status {last})")
    return f"{state}, {child.get('restarts', 0)} restarts"
