"""The pure leader/standby/degraded state machine.

``step(state, observation, timing)`` says what comes next for a plain state and a plain
observation at a plain monotonic time; it does no I/O and reads no clock. The daemon
feeds it and carries out the effects it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

# how long after the reported expiry a standby tries: Redis keeps a key at its expiry ms
EXPIRY_AIM = 0.002


class Role(StrEnum):
    """The three states a daemon can be in."""

    LEADER = "leader"
    STANDBY = "standby"
    DEGRADED = "degraded"


@dataclass(frozen=True)
class Timing:
    """The numbers the machine decides with (seconds)."""

    lease_ttl: float
    renew_interval: float
    renew_failure_threshold: int

    @property
    def safety_margin(self) -> float:
        """How far before the TTL a leader stops trusting its lease (clock-rate drift, timers)."""
        return min(0.1, self.lease_ttl * 0.05)


@dataclass(frozen=True)
class State:
    """Everything the daemon knows about its own leadership."""

    role: Role = Role.STANDBY
    term: int | None = None
    leader_id: str | None = None
    lease_expires_at: int | None = None  # Redis-clock ms, as last reported
    other_expires_local: float | None = None  # local monotonic estimate of another's expiry
    deadline: float | None = None  # local monotonic: the lease is trusted until then
    consecutive_failures: int = 0
    ever_reached_redis: bool = False
    last_error: str | None = None
    last_operation: Literal["acquire", "renew", "observe", "release"] | None = None
    highest_seen_term: int = 0
    stopping: bool = False  # resigned for good: a grant is recorded but never led on


@dataclass(frozen=True)
class Granted:
    """Acquire-or-renew answered: this process holds the lease."""

    sent_at: float
    received_at: float
    operation: Literal["acquire", "renew"]
    holder_id: str
    term: int
    lease_expires_at: int


@dataclass(frozen=True)
class HeldByOther:
    """Acquire-or-renew answered: someone else holds the lease."""

    received_at: float
    holder_id: str
    term: int
    lease_expires_at: int
    remaining_ms: int


@dataclass(frozen=True)
class Failed:
    """A lease operation failed (Redis unreachable, timed out, refused)."""

    at: float
    error: str


@dataclass(frozen=True)
class DeadlinePassed:
    """The local lease deadline timer fired."""

    at: float


@dataclass(frozen=True)
class Released:
    """This process released its lease (graceful stop or handover)."""

    at: float


@dataclass(frozen=True)
class Resigned:
    """This process is stopping: it leaves leadership now, before it releases the lease."""

    at: float


Observation = Granted | HeldByOther | Failed | DeadlinePassed | Released | Resigned


@dataclass(frozen=True)
class StartLeading:
    """Effect: leadership began under ``term``; start leader work."""

    term: int


@dataclass(frozen=True)
class StopLeading:
    """Effect: leadership ended; cancel leader work, run on_stopped_leading."""

    reason: str


@dataclass(frozen=True)
class Transition:
    """Effect: the role changed; announce it."""

    from_role: Role
    to_role: Role
    term: int | None


Effect = StartLeading | StopLeading | Transition


def can_schedule(state: State, now: float) -> bool:
    """True only while leader, the lease is known held, and the local deadline has not passed."""
    return state.role is Role.LEADER and state.deadline is not None and now < state.deadline


def step(state: State, seen: Observation, timing: Timing) -> tuple[State, list[Effect]]:
    """The next state and the effects to carry out, for one observation."""
    if isinstance(seen, Granted) and state.stopping:
        # a reply that was in flight as the stop began: remember the lease is ours (so the
        # stop releases it) without leading on it
        return replace(
            state, term=seen.term, leader_id=seen.holder_id, lease_expires_at=seen.lease_expires_at,
            consecutive_failures=0, ever_reached_redis=True, last_operation=seen.operation,
            highest_seen_term=max(state.highest_seen_term, seen.term),
        ), []
    if isinstance(seen, Granted):
        return _granted(state, seen, timing)
    if isinstance(seen, Resigned):
        new = replace(state, stopping=True, deadline=None,
                      role=Role.STANDBY if state.role is Role.LEADER else state.role)
        return new, _moved(state, new, "daemon stopping")
    if isinstance(seen, HeldByOther):
        new = replace(
            state, role=Role.STANDBY, term=seen.term, leader_id=seen.holder_id,
            lease_expires_at=seen.lease_expires_at, deadline=None, consecutive_failures=0,
            other_expires_local=seen.received_at + seen.remaining_ms / 1000,
            ever_reached_redis=True, last_operation="observe",
            highest_seen_term=max(state.highest_seen_term, seen.term),
        )
        return new, _moved(state, new, "lease held by another node")
    if isinstance(seen, Failed):
        failures = state.consecutive_failures + 1
        degrade = failures >= timing.renew_failure_threshold or not state.ever_reached_redis
        new = replace(
            state, consecutive_failures=failures, last_error=seen.error,
            role=Role.DEGRADED if degrade else state.role,
            deadline=None if degrade else state.deadline,
        )
        return new, _moved(state, new, f"{failures} consecutive lease failures")
    if isinstance(seen, DeadlinePassed):
        if state.role is not Role.LEADER or state.deadline is None or seen.at < state.deadline:
            return state, []
        new = replace(
            state, role=Role.DEGRADED if state.consecutive_failures else Role.STANDBY,
            deadline=None, last_error="local lease deadline passed without a renewal",
        )
        return new, _moved(state, new, "local lease deadline passed")
    new = replace(state, role=Role.STANDBY, deadline=None, leader_id=None,
                  lease_expires_at=None, last_operation="release")
    return new, _moved(state, new, "lease released")


def _granted(state: State, seen: Granted, timing: Timing) -> tuple[State, list[Effect]]:
    deadline = seen.sent_at + timing.lease_ttl - timing.safety_margin
    if seen.received_at >= deadline:
        # The answer came too late to trust: by now another node may hold the lease.
        late = Failed(seen.received_at, "lease reply arrived after the local deadline")
        return step(replace(state, ever_reached_redis=True), late, timing)
    new = replace(
        state, role=Role.LEADER, term=seen.term, leader_id=seen.holder_id,
        lease_expires_at=seen.lease_expires_at, deadline=deadline, consecutive_failures=0,
        other_expires_local=None, ever_reached_redis=True, last_operation=seen.operation,
        highest_seen_term=max(state.highest_seen_term, seen.term),
    )
    effects: list[Effect] = []
    if state.role is Role.LEADER and state.term != seen.term:
        effects.append(StopLeading("a new tenure replaced the old one"))
    if state.role is not Role.LEADER or state.term != seen.term:
        effects.append(StartLeading(seen.term))
    if state.role is not Role.LEADER:
        effects.insert(0, Transition(state.role, Role.LEADER, seen.term))
    return new, effects


def _moved(old: State, new: State, reason: str) -> list[Effect]:
    if old.role is new.role:
        return []
    effects: list[Effect] = [Transition(old.role, new.role, new.term)]
    if old.role is Role.LEADER:
        effects.insert(0, StopLeading(reason))
    return effects


def retry_delay(state: State, timing: Timing, jitter: float) -> float:
    """Seconds to wait before retrying after failures: exponential, jittered, capped at the
    renew interval so a daemon is back within about one interval of Redis returning.
    ``jitter`` is a number in [0, 1) supplied by the caller."""
    exponent = min(30, max(0, state.consecutive_failures - 1))
    base = min(timing.renew_interval, 0.05 * float(2**exponent))
    return base * (0.5 + 0.5 * jitter)


def next_attempt_delay(
    state: State, timing: Timing, *, last_sent_at: float, now: float, jitter: float
) -> float:
    """Seconds until the next acquire-or-renew.

    A leader renews every renew interval counted from when the last request was sent; a
    standby also aims at the expiry Redis reported, so it acquires right after a dead
    holder's lease lapses instead of polling blindly; after failures, back off.
    """
    if state.consecutive_failures or state.role is Role.DEGRADED:
        return retry_delay(state, timing, jitter)
    wait = last_sent_at + timing.renew_interval - now
    if state.role is Role.STANDBY and state.other_expires_local is not None:
        wait = min(wait, state.other_expires_local + EXPIRY_AIM - now)
    return max(0.0, wait)
