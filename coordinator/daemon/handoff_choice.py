"""Handing the lease over: to a preferred controller once it is steady, or on request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coordinator.connection.boundary import redis_errors, text, text_map
from coordinator.errors import InvalidArgumentError, UnexpectedReplyError
from coordinator.protocol import keys
from coordinator.protocol.lease import DEFAULT_HISTORY_MAXLEN
from coordinator.protocol.membership import redis_time_ms
from coordinator.protocol.scripts import register_scripts, run_script


@dataclass(frozen=True)
class Candidate:
    """What a leader knows of a controller that could take the lease over."""

    node_id: str
    priority: int
    status: str
    last_heartbeat_at: int
    heartbeat_interval_ms: int
    steady_since: int | None

    def healthy(self, now_ms: int) -> bool:
        """Alive, and heard from within two of its heartbeat intervals."""
        return self.status == "alive" and now_ms - self.last_heartbeat_at < 2 * self.heartbeat_interval_ms


def choose_handoff(
    *, leader_id: str, leader_is_preferred: bool, candidates: list[Candidate],
    requested: Candidate | None, now_ms: int, steady_intervals: int,
) -> str | None:
    """The node to hand the lease to now, or None.

    A request by an operator wins if its target is healthy. Otherwise a leader that is not
    itself preferred hands over to the healthy preferred controller with the highest priority
    that has heartbeated without a break for ``steady_intervals`` intervals; a flapping one
    never qualifies, because every break restarts its steady run.
    """
    if requested is not None and requested.node_id != leader_id and requested.healthy(now_ms):
        return requested.node_id
    if leader_is_preferred:
        return None
    steady = [
        c for c in candidates
        if c.node_id != leader_id and c.healthy(now_ms) and c.steady_since is not None
        and now_ms - c.steady_since >= steady_intervals * c.heartbeat_interval_ms
    ]
    if not steady:
        return None
    return max(steady, key=lambda c: (c.priority, c.node_id)).node_id


async def read_candidates(redis: Any, namespace: str, lease: str) -> tuple[list[Candidate], Candidate | None, int]:
    """Preferred controllers heard from recently, the requested target (if any), Redis now."""
    preferred_key, request_key = keys.preferred_key(namespace), keys.handoff_key(namespace, lease)
    with redis_errors(preferred_key):
        now = await redis_time_ms(redis)
        pipe = redis.pipeline(transaction=False)
        pipe.zrangebyscore(preferred_key, now - 60_000, "+inf")
        pipe.get(request_key)
        members, requested_id = await pipe.execute()
        ids = [str(text(m)) for m in members]
        requested = str(text(requested_id)) if requested_id else None
        wanted = [*ids, requested] if requested and requested not in ids else ids
        pipe = redis.pipeline(transaction=False)
        for node_id in wanted:
            pipe.hgetall(keys.controller_key(namespace, node_id))
        records = await pipe.execute() if wanted else []
    found = {n: _candidate(n, text_map(r)) for n, r in zip(wanted, records, strict=True) if r}
    return ([found[n] for n in ids if n in found],
            found.get(requested) if requested else None, now)


def _candidate(node_id: str, fields: dict[str, str]) -> Candidate:
    def number(name: str) -> int:
        try:
            return int(fields.get(name) or 0)
        except ValueError:
            return 0

    return Candidate(node_id=node_id, priority=number("priority"), status=fields.get("status", ""),
                     last_heartbeat_at=number("last_heartbeat_at"),
                     heartbeat_interval_ms=number("heartbeat_interval_ms") or 5000,
                     steady_since=number("steady_since") or None)


@dataclass(frozen=True)
class HandoffRequest:
    """What asking for a handover did."""

    outcome: str  # requested | already_leader | no_leader | not_alive
    reason: str | None
    at: int


async def request_handoff(
    redis: Any, namespace: str, lease: str, target: str, *, ttl_ms: int,
    history_maxlen: int = DEFAULT_HISTORY_MAXLEN,
) -> HandoffRequest:
    """Ask the leader to hand ``lease`` over to ``target``; refused unless it is alive."""
    keys.check_node_id("handover target", target)
    if ttl_ms < 1:
        raise InvalidArgumentError("ttl_ms must be >= 1")
    reply = await run_script(
        register_scripts(redis).request_handoff,
        [keys.handoff_key(namespace, lease), keys.controller_key(namespace, target),
         keys.lease_key(namespace, lease), keys.history_key(namespace)],
        [target, ttl_ms, keys.events_channel(namespace), history_maxlen, lease],
    )
    if reply[0] not in ("requested", "already_leader", "no_leader", "not_alive"):
        raise UnexpectedReplyError(f"request_handoff replied {reply!r}")
    return HandoffRequest(outcome=reply[0], reason=reply[2] if len(reply) > 2 else None,
                          at=int(reply[1]))
