"""The pure leader/standby/degraded state machine.

``step(state, observation, timing)`` says what comes next for a plain state and a plain
observation at a plain monotonic time; it does no I/O and reads no clock. The daemon
feeds it and carries out the effects it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

# how long after the reported expiry a standby tries: Redis keeps a key at its expiry ms
EXPIRY_AIM = 0.002
# Redis's TIME reaches the scripts truncated to whole ms: two readings are off by up to 2 ms
REDIS_TIME_RESOLUTION = 0.002


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

    @property
    def clock_jump_margin(self) -> float:
        """How much further Redis's clock may move between two renewals than this node's
        did before the leader stops trusting the lease: the safety margin (a forward step
        up to it still expires the key after the local deadline, so it cannot let another
        node in), plus the resolution of Redis's TIME. Rate drift (NTP slews at most
        500 ppm: 2.5 ms over a 5 s interval) stays well inside it; a step does not."""
        return self.safety_margin + REDIS_TIME_RESOLUTION


@dataclass(frozen=True)
class RedisClockMark:
    """Redis's clock as one reply read it, and when (local) the request went and came back."""

    redis_now: int  # Redis-clock ms
    sent_at: float
    received_at: float


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
    # Redis's clock at the last grant, to compare the next one with (None: not leading)
    redis_clock: RedisClockMark | None = None
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
    redis_now: int | None = None  # Redis-clock ms when the script ran


@dataclass(frozen=True)
class HeldByOther:
    """Acquire-or-renew answered: someone else holds the lease."""

    received_at: float
    holder_id: str
    term: int
    lease_expires_at: int
    remaining_ms: int
    redis_now: int | None = None  # Redis-clock ms when the script ran
    sent_at: float | None = None


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


@dataclass(frozen=True)
class MasterSwitched:
    """Sentinel announced that another server is now the master: the grants this process
    holds are on the old one, which keeps accepting them until Sentinel demotes it."""

    at: float


Observation = Granted | HeldByOther | Failed | DeadlinePassed | Released | Resigned | MasterSwitched


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
    reason: str = field(default="", compare=False)  # a short human sentence, for the event


Effect = StartLeading | StopLeading | Transition


@dataclass(frozen=True)
class ModeReading:
    """The automation mode as one Redis reply read it: Redis's clock (ms) when it was read,
    and when (local monotonic) the request went and its reply came back."""

    mode: str
    redis_now: int
    sent_at: float
    received_at: float


def mode_reading_is_stale(applied: ModeReading | None, seen: ModeReading) -> bool:
    """True if ``seen`` may be older than the reading applied last, so must not undo it.

    A request sent after the applied reading came back was answered after it (Redis runs
    commands one at a time): fresh, whatever Redis's clock says (it may have stepped back).
    One sent before that is fresh only if Redis read it later, by Redis's own clock; in the
    same millisecond the order is unknown and the applied reading stays (the next renewal,
    one interval on, decides).
    """
    if applied is None or seen.sent_at > applied.received_at:
        return False
    return seen.redis_now <= applied.redis_now


def can_schedule(state: State, now: float) -> bool:
    """True only while leader, the lease is known held, and the local deadline has not passed."""
    return state.role is Role.LEADER and state.deadline is not None and now < state.deadline


def redis_clock_jump(state: State, seen: Observation) -> float:
    """Seconds by which Redis's clock moved further between this node's last grant and
    ``seen`` than this node's own clock can have: positive for a forward step, negative
    for a backward one, 0 when the two agree or there is nothing to compare.

    Each reading was taken somewhere between its request's send and its reply, so the
    local clock moved at least ``seen.sent - last.received`` and at most
    ``seen.received - last.sent``; only a movement outside that window is a step.
    """
    last = state.redis_clock
    if last is None or not isinstance(seen, Granted | HeldByOther) or seen.redis_now is None:
        return 0.0
    sent = seen.sent_at if seen.sent_at is not None else seen.received_at
    redis_moved = (seen.redis_now - last.redis_now) / 1000
    if redis_moved > seen.received_at - last.sent_at:
        return redis_moved - (seen.received_at - last.sent_at)
    if redis_moved < sent - last.received_at:
        return redis_moved - (sent - last.received_at)
    return 0.0


def jumped_forward(state: State, seen: Observation, timing: Timing) -> float | None:
    """The forward step of Redis's clock ``seen`` shows, if beyond the margin, else None."""
    jump = redis_clock_jump(state, seen)
    return jump if jump > timing.clock_jump_margin else None


def jump_reason(jump: float) -> str:
    """The reason a leader gives for leaving after Redis's clock stepped forward."""
    return f"Redis clock jumped forward {jump:.1f} s"


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
        jump = jumped_forward(state, seen, timing) if state.role is Role.LEADER else None
        reason = jump_reason(jump) if jump is not None else "lease held by another node"
        new = replace(
            state, role=Role.STANDBY, term=seen.term, leader_id=seen.holder_id,
            lease_expires_at=seen.lease_expires_at, deadline=None, consecutive_failures=0,
            other_expires_local=seen.received_at + seen.remaining_ms / 1000,
            ever_reached_redis=True, last_operation="observe",
            highest_seen_term=max(state.highest_seen_term, seen.term), redis_clock=None,
            last_error=reason if jump is not None else state.last_error,
        )
        return new, _moved(state, new, reason)
    if isinstance(seen, Failed):
        failures = state.consecutive_failures + 1
        degrade = failures >= timing.renew_failure_threshold or not state.ever_reached_redis
        new = replace(
            state, consecutive_failures=failures, last_error=seen.error,
            role=Role.DEGRADED if degrade else state.role,
            deadline=None if degrade else state.deadline,
            redis_clock=None if degrade else state.redis_clock,
        )
        return new, _moved(state, new, f"{failures} consecutive lease failures: {seen.error}")
    if isinstance(seen, MasterSwitched):
        if state.role is not Role.LEADER:
            return state, []
        # leave now, before any round trip: a node that reaches the new master may be granted
        # a term there at once; the next renewal (on the new master) leads again if it has us
        new = replace(state, role=Role.STANDBY, deadline=None, redis_clock=None)
        return new, _moved(state, new, "Sentinel switched the Redis master")
    if isinstance(seen, DeadlinePassed):
        if state.role is not Role.LEADER or state.deadline is None or seen.at < state.deadline:
            return state, []
        new = replace(
            state, role=Role.DEGRADED if state.consecutive_failures else Role.STANDBY,
            deadline=None, last_error="local lease deadline passed without a renewal",
            redis_clock=None,
        )
        return new, _moved(state, new, "local lease deadline passed")
    new = replace(state, role=Role.STANDBY, deadline=None, leader_id=None,
                  lease_expires_at=None, last_operation="release", redis_clock=None)
    return new, _moved(state, new, "lease released")


def _granted(state: State, seen: Granted, timing: Timing) -> tuple[State, list[Effect]]:
    deadline = seen.sent_at + timing.lease_ttl - timing.safety_margin
    if seen.received_at >= deadline:
        # The answer came too late to trust: by now another node may hold the lease.
        late = Failed(seen.received_at, "lease reply arrived after the local deadline")
        return step(replace(state, ever_reached_redis=True), late, timing)
    mark = (RedisClockMark(seen.redis_now, seen.sent_at, seen.received_at)
            if seen.redis_now is not None else None)
    jump = jumped_forward(state, seen, timing)
    if jump is not None:
        # Redis expires the key on its own clock: one that stepped forward may have let the
        # key lapse, and another node in, while this node still trusted its deadline. Stop
        # at once; the next renewal (one interval on) that finds the clock steady leads again.
        reason = jump_reason(jump)
        new = replace(
            state, role=Role.STANDBY, term=seen.term, leader_id=None,
            lease_expires_at=seen.lease_expires_at, deadline=None, consecutive_failures=0,
            other_expires_local=None, ever_reached_redis=True, last_operation=seen.operation,
            highest_seen_term=max(state.highest_seen_term, seen.term), last_error=reason,
            redis_clock=mark,
        )
        return new, _moved(state, new, reason)
    new = replace(
        state, role=Role.LEADER, term=seen.term, leader_id=seen.holder_id,
        lease_expires_at=seen.lease_expires_at, deadline=deadline, consecutive_failures=0,
        other_expires_local=None, ever_reached_redis=True, last_operation=seen.operation,
        highest_seen_term=max(state.highest_seen_term, seen.term), redis_clock=mark,
    )
    effects: list[Effect] = []
    if state.role is Role.LEADER and state.term != seen.term:
        effects.append(StopLeading("a new tenure replaced the old one"))
    if state.role is not Role.LEADER or state.term != seen.term:
        effects.append(StartLeading(seen.term))
    if state.role is not Role.LEADER:
        reason = "lease acquired" if seen.operation == "acquire" else "lease renewed"
        effects.insert(0, Transition(state.role, Role.LEADER, seen.term, reason))
    return new, effects


def _moved(old: State, new: State, reason: str) -> list[Effect]:
    if old.role is new.role:
        return []
    effects: list[Effect] = [Transition(old.role, new.role, new.term, reason)]
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
