"""The cluster-wide status: the lease as Redis holds it, and every controller's heartbeat.

A lease key that holds something the coordinator did not write (another type, or a hash with
fields it cannot parse) does not hide the rest: the snapshot still lists the controllers and
the mode, and carries an ``error`` object naming the key, its type and the remedy.

A namespace with many leases registered (``{ns}:leases`` not empty) adds the table of its
leases and, per controller, how many it holds against its share of the placement plan; an
empty registry adds nothing, and nothing of the leases code is even imported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coordinator.connection.boundary import redis_errors, text
from coordinator.connection.eviction import check_eviction
from coordinator.errors import CoordinatorError, CorruptDataError
from coordinator.protocol import keys
from coordinator.protocol.corrupt_keys import corrupt_key_remedy
from coordinator.protocol.lease import read_lease
from coordinator.protocol.membership import list_controllers, redis_time_ms
from coordinator.protocol.records import LeaseRecord

if TYPE_CHECKING:
    from coordinator.settings import Settings

# the columns of the controller table, in order
_HEADER = ("NODE", "HOST", "ROLE", "STATE", "LIVENESS", "HEARTBEAT", "LEASE")
# the columns of the leases table (many leases registered), in order
_LEASE_HEADER = ("LEASE", "HOLDER", "TERM", "LEFT")


def lease_remedy(key: str) -> str:
    """What an operator does about a lease key the coordinator cannot read."""
    return corrupt_key_remedy(key)


async def lease_error(redis: Any, error: CorruptDataError) -> dict[str, Any]:
    """The ``error`` object of a status whose lease key is corrupt or foreign."""
    try:
        with redis_errors(error.key):
            kind = text(await redis.type(error.key)) or "unknown"
    except CoordinatorError:  # the type is a detail; the report must still go out
        kind = "unknown"
    return {"key": error.key, "type": kind, "detail": error.detail,
            "remedy": lease_remedy(error.key)}


def controller_state(controller: dict[str, Any], lease: LeaseRecord | None,
                     lease_name: str, *, lease_readable: bool = True) -> str:
    """leader, standby, degraded or stopping: the heartbeat's status, and the lease's holder
    (unknown for a live controller while the lease key cannot be read)."""
    status = controller.get("status")
    if status in ("degraded", "stopping"):
        return str(status)
    if not lease_readable:
        return "unknown"
    holds = (lease is not None and not lease.reserved
             and lease.holder_id == controller.get("node_id")
             and controller.get("lease") in (None, lease_name))
    return "leader" if holds else "standby"


async def cluster_status(redis: Any, settings: Settings) -> dict[str, Any]:
    """One JSON-ready object: ``lease`` (or None), ``controllers`` (each with its ``state``),
    ``automation_mode``, ``redis`` (its maxmemory-policy and warnings) and ``error`` (None,
    or the unreadable lease key: ``key``, ``type``, ``detail``, ``remedy``)."""
    error = None
    record: LeaseRecord | None = None
    try:
        record = await read_lease(redis, settings.namespace, settings.lease_name)
    except CorruptDataError as e:
        error = await lease_error(redis, e)
    controllers = await list_controllers(
        redis, settings.namespace, retention_ms=round(settings.heartbeat_retention * 1000))
    mode_key = keys.automation_mode_key(settings.namespace)
    with redis_errors(mode_key):
        now = await redis_time_ms(redis)
        mode = text(await redis.get(mode_key)) or "running"
    registry = keys.leases_key(settings.namespace)
    with redis_errors(registry):
        many = bool(await redis.exists(registry))
    redis_report = await check_eviction(redis, timeout=2.0)
    lease = None
    if record is not None:
        lease = {**record.to_dict(), "remaining_ms": max(0, record.lease_expires_at - now)}
    listed = []
    for c in controllers:
        entry = c.to_dict()
        entry["state"] = controller_state(entry, record, settings.lease_name,
                                          lease_readable=error is None)
        listed.append(entry)
    snapshot = {
        "namespace": settings.namespace,
        "lease_name": settings.lease_name,
        "redis_now": now,
        "lease": lease,
        "controllers": listed,
        "automation_mode": mode,
        "redis": redis_report.to_dict(),
        "error": error,
    }
    if many:  # the single-lease status stays exactly as it was
        snapshot.update(await leases_status(redis, settings.namespace, listed))
    return snapshot


async def leases_status(redis: Any, namespace: str,
                        controllers: list[dict[str, Any]]) -> dict[str, Any]:
    """The many leases' part of the status: ``leases`` (the rows of ``leases list --json``,
    None when the registry cannot be read) and ``leases_errors`` (each unreadable key or
    registry member: ``key``, ``type``, ``detail``, ``remedy``, ``message``). Each controller
    in ``controllers`` gains ``leases_held`` and ``leases_target`` (its share in the plan
    every node computes from the same reading; both None for a single-lease controller)."""
    from coordinator.leases.listing import lease_rows, unreadable_parts
    from coordinator.leases.placement import plan_placement
    from coordinator.leases.view import read_view
    from coordinator.protocol.membership import MANY_LEASES

    try:
        view = await read_view(redis, namespace)
    except CorruptDataError as e:
        for c in controllers:
            c["leases_held"] = c["leases_target"] = None
        problem = await lease_error(redis, e)
        problem["message"] = f"{e.key}: {e.detail}: {problem['remedy']}"
        return {"leases": None, "leases_errors": [problem]}
    targets = plan_placement(view.leases, view.nodes, view.holders, view.preferred).targets
    held: dict[str, int] = {}
    for holder in view.holders.values():
        held[holder] = held.get(holder, 0) + 1
    for c in controllers:
        many = c.get("lease") == MANY_LEASES
        c["leases_held"] = held.get(c["node_id"], 0) if many else None
        c["leases_target"] = targets.get(c["node_id"], 0) if many else None
        if many and c["leases_held"] and c.get("state") == "standby":
            c["state"] = "leader"  # of the leases it holds (HELD/SHARE says how many)
    problems = []
    for part in unreadable_parts(view, namespace):
        try:
            with redis_errors(part.key):
                kind = text(await redis.type(part.key)) or "unknown"
        except CoordinatorError:  # the type is a detail; the report must still go out
            kind = "unknown"
        problems.append({"key": part.key, "type": kind, "detail": part.detail,
                         "remedy": part.remedy, "message": part.message})
    return {"leases": lease_rows(view), "leases_errors": problems}


def liveness(controller: dict[str, Any]) -> str:
    """alive, left (it said it was stopping) or stale (its heartbeat is too old)."""
    if controller.get("alive"):
        return "alive"
    return "left" if controller.get("status") == "stopping" else "stale"


def render_status(status: dict[str, Any]) -> str:
    """The human-readable form of ``cluster_status``: a summary, then one table row per
    controller under a header, the leader marked with ``*``; with many leases registered, a
    HELD/SHARE column (leases held against the plan's share) and a table of the leases."""
    lines = []
    lease = status["lease"]
    error = status.get("error")
    if error is not None:
        lines.append(f"leader: unknown: lease key {error['key']} (type {error['type']}) "
                     f"cannot be read: {error['detail']}")
        lines.append(f"remedy: {error['remedy']}")
    elif lease is None:
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
    many = "leases" in status
    lines.extend(_controller_lines(status["controllers"], with_share=many))
    if many:
        lines.extend(_lease_lines(status["leases"], status.get("leases_errors") or []))
    return "\n".join(lines)


def _controller_lines(controllers: list[dict[str, Any]], *, with_share: bool) -> list[str]:
    lines = [f"controllers ({len(controllers)}):"]
    if not controllers:
        return lines
    header = (*_HEADER, "HELD/SHARE") if with_share else _HEADER
    rows: list[tuple[str, ...]] = [header]
    marks = [""]
    children: list[str | None] = [None]
    for c in controllers:
        state = c.get("state") or c.get("status") or "?"
        row: tuple[str, ...] = (
            c["node_id"], c["host"] or "-", c["role"], state, liveness(c),
            f"{c['heartbeat_age_ms'] / 1000:.1f}s ago", c.get("lease") or "?")
        if with_share:
            held, target = c.get("leases_held"), c.get("leases_target")
            row = (*row, "-" if held is None else f"{held}/{target}")
        rows.append(row)
        # the single lease's leader; a node of many leases leads only some (HELD/SHARE)
        marks.append("*" if state == "leader" and c.get("lease") != "*" else "")
        child = (c.get("metadata") or {}).get("child")
        children.append(render_child(child) if isinstance(child, dict) else None)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for mark, row, child in zip(marks, rows, children, strict=True):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append(f"{mark:<2}" + "  ".join(cells).rstrip())
        if child is not None:
            lines.append("    " + child)
    if any(marks):
        lines.append("(* the leader)")
    return lines


def _lease_lines(rows: list[dict[str, Any]] | None, problems: list[dict[str, Any]]) -> list[str]:
    """The leases table (``leases list``'s rows), then each unreadable part and its remedy."""
    lines = []
    if rows is None:
        lines.append("leases: unknown (the registry cannot be read)")
    else:
        lines.append(f"leases ({len(rows)}):")
        cells = [_LEASE_HEADER] + [(
            row["name"],
            "(unreadable)" if "corrupt" in row else row["holder_id"] or "-",
            "-" if row["term"] is None else str(row["term"]),
            "-" if row["expires_in_ms"] is None else f"{row['expires_in_ms'] / 1000:.1f}s",
        ) for row in rows]
        widths = [max(len(line[i]) for line in cells) for i in range(len(_LEASE_HEADER))]
        lines.extend("  " + "  ".join(cell.ljust(width) for cell, width
                                      in zip(line, widths, strict=True)).rstrip()
                     for line in cells)
    lines.extend(f"unreadable: {problem['message']}" for problem in problems)
    return lines


def render_child(child: dict[str, Any]) -> str:
    """One line on a controller's leader-only child (``coordinator run -- CMD``)."""
    if child.get("running"):
        state = f"child running, pid {child.get('pid')}, term {child.get('term')}"
    else:
        last = child.get("last_exit_status")
        state = "child not running" + ("" if last is None else f" (last exit status {last})")
    return f"{state}, {child.get('restarts', 0)} restarts"
