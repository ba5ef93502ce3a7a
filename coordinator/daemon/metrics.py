"""Prometheus metrics of one daemon, in a registry of its own.

The daemon reports what it measured (``observe_renew``, ``observe_heartbeat``,
``transition``); the gauges that describe its current state are set from a snapshot
right before each scrape (``set_state``), so they are never stale.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from coordinator.daemon.state import Role

# the classic text format, which every Prometheus version parses; newer prometheus-client
# releases label the same bytes "version=1.0.0", which older servers do not know
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LEASE_STATES = ("held", "held_by_other", "released", "unknown")
# round trips of a healthy daemon take milliseconds; the top buckets catch the op timeout (<= 5 s)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """One daemon's metrics; several daemons in one process never share a registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._many: tuple[Gauge, Gauge, Gauge] | None = None
        r = self.registry
        self._is_leader = Gauge("coordinator_is_leader",
                                "1 while this node holds the lease and may schedule", registry=r)
        self._term = Gauge("coordinator_lease_term",
                           "Term of the lease as last seen by this node (0: none seen yet)",
                           registry=r)
        self._role = Gauge("coordinator_role", "1 for the role this node is in", ["role"],
                           registry=r)
        self._lease_state = Gauge("coordinator_lease_state",
                                  "1 for the lease state this node reports", ["state"], registry=r)
        self._deadline = Gauge("coordinator_lease_deadline_seconds",
                               "Seconds until the local lease deadline (0 when not leader)",
                               registry=r)
        self._heartbeat_age = Gauge("coordinator_heartbeat_age_seconds",
                                    "Seconds since the last successful heartbeat (+Inf: none yet)",
                                    registry=r)
        self._renew = Histogram("coordinator_lease_renew_duration_seconds",
                                "Duration of acquire-or-renew round trips, by result",
                                ["result"], buckets=LATENCY_BUCKETS, registry=r)
        self._heartbeat = Histogram("coordinator_heartbeat_duration_seconds",
                                    "Duration of heartbeat round trips, by result",
                                    ["result"], buckets=LATENCY_BUCKETS, registry=r)
        self._renew_failures = Counter("coordinator_lease_renew_failures",
                                       "Acquire-or-renew attempts that failed or timed out",
                                       registry=r)
        self._heartbeat_failures = Counter("coordinator_heartbeat_failures",
                                           "Heartbeats that failed or timed out", registry=r)
        self._clock_jumps = Counter("coordinator_redis_clock_jumps",
                                    "Steps of the Redis server's clock seen between two lease "
                                    "replies, beyond the margin (forward ones end leadership)",
                                    ["direction"], registry=r)
        for direction in ("forward", "backward"):
            self._clock_jumps.labels(direction=direction)
        self._master_switches = Counter("coordinator_redis_master_switches",
                                        "Sentinel announcements of a new master this node "
                                        "followed (connections dropped, leadership left)",
                                        registry=r)
        self._transitions = Counter("coordinator_state_transitions",
                                    "Role changes of this node", ["from", "to"], registry=r)
        for role in Role:  # every series exists from the first scrape, so rate() sees the first 1
            self._role.labels(role=role.value)
            for other in Role:
                if other is not role:
                    self._transitions.labels(**{"from": role.value, "to": other.value})
        for result in ("ok", "error"):
            self._renew.labels(result=result)
            self._heartbeat.labels(result=result)

    def observe_renew(self, seconds: float, *, ok: bool) -> None:
        """Record one acquire-or-renew round trip (failures include timeouts)."""
        self._renew.labels(result="ok" if ok else "error").observe(seconds)
        if not ok:
            self._renew_failures.inc()

    def observe_heartbeat(self, seconds: float, *, ok: bool) -> None:
        """Record one heartbeat round trip."""
        self._heartbeat.labels(result="ok" if ok else "error").observe(seconds)
        if not ok:
            self._heartbeat_failures.inc()

    def redis_clock_jumped(self, *, forward: bool) -> None:
        """Count one step of Redis's clock."""
        self._clock_jumps.labels(direction="forward" if forward else "backward").inc()

    def master_switched(self) -> None:
        """Count one followed Sentinel switch."""
        self._master_switches.inc()

    def transition(self, from_role: str, to_role: str) -> None:
        """Count one role change."""
        self._transitions.labels(**{"from": from_role, "to": to_role}).inc()

    def set_state(self, snapshot: dict[str, object], *, deadline_in: float | None,
                  heartbeat_age: float | None) -> None:
        """Set the state gauges from a status snapshot (called right before a scrape)."""
        role, lease_state = snapshot.get("role"), snapshot.get("lease_state")
        term = snapshot.get("current_term")
        self._is_leader.set(1 if snapshot.get("can_schedule") else 0)
        self._term.set(term if isinstance(term, int) else 0)
        for r in Role:
            self._role.labels(role=r.value).set(1 if r.value == role else 0)
        for s in LEASE_STATES:
            self._lease_state.labels(state=s).set(1 if s == lease_state else 0)
        self._deadline.set(max(0.0, deadline_in) if deadline_in is not None else 0.0)
        self._heartbeat_age.set(heartbeat_age if heartbeat_age is not None else math.inf)
        leases = snapshot.get("leases")
        if isinstance(leases, list):  # a node of many leases
            self._set_leases(leases, snapshot.get("leases_target"))

    def _set_leases(self, leases: list[Any], target: Any) -> None:
        # made at the first scrape of a many-lease node: a single lease's /metrics is unchanged
        if self._many is None:
            self._many = (
                # a series per lease this node holds: at most its share, and the registry's
                # 4,096 across all nodes; a lease handed on leaves no series behind
                Gauge("coordinator_held_lease_term", "The term of each lease this node holds",
                      ["lease"], registry=self.registry),
                Gauge("coordinator_leases_held", "Leases this node holds", registry=self.registry),
                Gauge("coordinator_leases_target", "Leases the placement plan gives this node",
                      registry=self.registry))
        held_term, held, planned = self._many
        held_term.clear()
        for lease in leases:
            if isinstance(lease, dict) and lease.get("can_schedule"):
                held_term.labels(lease=str(lease["lease"])).set(lease.get("term") or 0)
        held.set(len(leases))
        planned.set(target if isinstance(target, int) else 0)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
