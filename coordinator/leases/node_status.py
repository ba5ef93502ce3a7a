"""The status of a many-lease node: the single daemon's snapshot fields (so ``/status``,
``/healthz`` and ``/metrics`` read it alike) and a table of the leases it holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coordinator.leases.node import LeaseNode


def node_snapshot(node: LeaseNode) -> dict[str, Any]:
    """``/status``'s object for a node holding many leases.

    ``role`` is ``leader`` while the node may act on at least one lease, ``degraded`` while
    its renew calls fail as often as ``COORDINATOR_RENEW_FAILURE_THRESHOLD``, else
    ``standby``; the single lease's per-tenure fields (``current_term``, ...) are null and
    ``leases`` says, per held lease, what they say for one."""
    settings = node.settings
    members = node.members()
    leases = []
    for name, member in sorted(members.items()):
        state = member.state
        leadership = member.leadership()
        if not (leadership.leading or member.renewing):
            continue
        leases.append({"lease": name, "term": state.term, "can_schedule": leadership.leading,
                       "lease_expires_at": state.lease_expires_at,
                       "consecutive_renew_failures": state.consecutive_failures})
    leading = any(lease["can_schedule"] for lease in leases)
    failing = node.consecutive_failures >= settings.renew_failure_threshold
    role = "degraded" if failing else "leader" if leading else "standby"
    view = node.view
    return {
        "node_id": settings.node_id,
        "host": settings.host,
        "role": role,
        "lease_state": "held" if leading else "unknown",
        "scheduler_enabled": leading,
        "can_schedule": leading,
        "current_leader_id": None,
        "current_term": None,
        "lease_expires_at": None,
        "last_heartbeat_at": node._last_heartbeat_at,
        "last_lease_operation": None,
        "next_lease_operation": "renew" if leases else "acquire",
        "consecutive_renew_failures": node.consecutive_failures,
        "last_error": node.last_error,
        "automation_mode": _mode(members),
        "capacity": settings.effective_capacity,
        "selector": settings.lease_selector,
        "leases_registered": None if view is None else len(view.leases),
        "leases_target": node.target,
        "leases_held": len(leases),
        "leases": leases,
    }


def _mode(members: dict[str, Any]) -> str:
    # every lease follows the namespace's one mode: any member's reading will do
    for member in members.values():
        return str(member.status_snapshot()["automation_mode"])
    return "running"
