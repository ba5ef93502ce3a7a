"""The pure state machine: plain values in, plain values out, no clock and no Redis."""

from __future__ import annotations

from dataclasses import replace

from coordinator.daemon.state import (
    DeadlinePassed,
    Failed,
    Granted,
    HeldByOther,
    ModeReading,
    Observation,
    Released,
    Role,
    StartLeading,
    State,
    StopLeading,
    Timing,
    Transition,
    can_schedule,
    mode_reading_is_stale,
    next_attempt_delay,
    redis_clock_jump,
    retry_delay,
    step,
)

T = Timing(lease_ttl=2.0, renew_interval=0.5, renew_failure_threshold=2)


def granted(at: float, term: int = 1, op: str = "acquire") -> Granted:
    return Granted(sent_at=at, received_at=at + 0.001, operation=op,  # type: ignore[arg-type]
                   holder_id="me", term=term, lease_expires_at=0)


def leader(at: float = 10.0, term: int = 1) -> State:
    state, _ = step(State(), granted(at, term), T)
    return state


def test_granted_lease_makes_a_leader_that_may_schedule_until_the_deadline() -> None:
    state, effects = step(State(), granted(10.0), T)
    assert state.role is Role.LEADER and state.term == 1
    assert effects == [Transition(Role.STANDBY, Role.LEADER, 1), StartLeading(1)]
    assert state.deadline == 10.0 + T.lease_ttl - T.safety_margin
    assert can_schedule(state, 11.8)
    assert not can_schedule(state, state.deadline)


def test_renewal_moves_the_deadline_from_the_send_time_and_changes_nothing_else() -> None:
    state = leader(10.0)
    renewed, effects = step(state, granted(10.5, op="renew"), T)
    assert effects == []
    assert renewed.deadline == 10.5 + T.lease_ttl - T.safety_margin
    assert renewed.term == 1 and renewed.last_operation == "renew"


def test_standby_refuses_to_schedule() -> None:
    state, effects = step(State(), HeldByOther(1.0, "other", 7, 5000, 1500), T)
    assert state.role is Role.STANDBY and state.leader_id == "other" and state.term == 7
    assert effects == []
    assert not can_schedule(state, 1.0)
    assert state.highest_seen_term == 7


def test_leader_that_finds_another_holder_steps_down() -> None:
    state, effects = step(leader(), HeldByOther(11.0, "other", 2, 0, 1000), T)
    assert state.role is Role.STANDBY
    assert effects == [StopLeading("lease held by another node"),
                       Transition(Role.LEADER, Role.STANDBY, 2)]


def test_renew_failures_count_up_and_degrade_at_the_threshold() -> None:
    state = leader()
    once, effects = step(state, Failed(10.5, "boom"), T)
    assert (once.role, once.consecutive_failures, effects) == (Role.LEADER, 1, [])
    assert can_schedule(once, 10.6)  # still inside the deadline
    twice, effects = step(once, Failed(11.0, "boom"), T)
    assert twice.role is Role.DEGRADED and twice.last_error == "boom"
    assert not can_schedule(twice, 11.0)
    assert isinstance(effects[0], StopLeading)
    assert effects[1] == Transition(Role.LEADER, Role.DEGRADED, 1)


def test_a_success_resets_the_failure_count() -> None:
    once, _ = step(leader(), Failed(10.5, "boom"), T)
    back, _ = step(once, granted(10.6, op="renew"), T)
    assert back.consecutive_failures == 0
    again, _ = step(back, Failed(11.0, "boom"), T)
    assert again.role is Role.LEADER


def test_unreachable_redis_at_start_degrades_at_once() -> None:
    state, effects = step(State(), Failed(0.0, "connection refused"), T)
    assert state.role is Role.DEGRADED
    assert effects == [Transition(Role.STANDBY, Role.DEGRADED, None)]
    recovered, effects = step(state, granted(1.0), T)
    assert recovered.role is Role.LEADER and StartLeading(1) in effects


def test_deadline_passing_ends_leadership_on_its_own() -> None:
    state = leader(10.0)
    early, effects = step(state, DeadlinePassed(11.0), T)
    assert early == state and effects == []
    assert state.deadline is not None
    late, effects = step(state, DeadlinePassed(state.deadline), T)
    assert late.role is Role.STANDBY and late.deadline is None
    assert isinstance(effects[0], StopLeading)
    failing, _ = step(state, Failed(10.5, "timeout"), T)
    assert step(failing, DeadlinePassed(12.0), T)[0].role is Role.DEGRADED


def test_a_reply_that_arrives_after_the_deadline_is_not_trusted() -> None:
    late = Granted(sent_at=10.0, received_at=12.5, operation="renew", holder_id="me", term=1,
                   lease_expires_at=0)
    state, _ = step(leader(9.9), late, T)
    assert state.consecutive_failures == 1 and not can_schedule(state, 12.5)


def test_a_new_term_while_leading_restarts_leader_work() -> None:
    state, effects = step(leader(term=1), granted(12.0, term=2), T)
    assert state.term == 2
    assert effects == [StopLeading("a new tenure replaced the old one"), StartLeading(2)]


def test_release_returns_to_standby() -> None:
    state, effects = step(leader(), Released(11.0), T)
    assert state.role is Role.STANDBY and state.last_operation == "release"
    assert effects[-1] == Transition(Role.LEADER, Role.STANDBY, 1)


def test_leader_renews_every_interval_counted_from_the_send_time() -> None:
    state = leader(10.0)
    assert abs(next_attempt_delay(state, T, last_sent_at=10.0, now=10.2, jitter=0.0) - 0.3) < 1e-9


def test_standby_aims_at_the_reported_expiry_instead_of_polling() -> None:
    state, _ = step(State(), HeldByOther(5.0, "other", 1, 0, remaining_ms=120), T)
    delay = next_attempt_delay(state, T, last_sent_at=5.0, now=5.0, jitter=0.0)
    assert 0.12 <= delay <= 0.125
    far, _ = step(State(), HeldByOther(5.0, "other", 1, 0, remaining_ms=1900), T)
    assert next_attempt_delay(far, T, last_sent_at=5.0, now=5.0, jitter=0.0) == 0.5


def test_backoff_grows_with_failures_and_is_capped_at_the_renew_interval() -> None:
    delays = [retry_delay(State(consecutive_failures=n), T, jitter=0.999) for n in range(1, 12)]
    assert delays == sorted(delays)
    assert max(delays) <= T.renew_interval
    assert retry_delay(State(consecutive_failures=1), T, jitter=0.0) < 0.05
    degraded = replace(State(), role=Role.DEGRADED, consecutive_failures=3)
    assert next_attempt_delay(degraded, T, last_sent_at=0, now=0, jitter=0.5) <= T.renew_interval


def renewal(sent: float, redis_now: int, *, rtt: float = 0.002, term: int = 1,
            op: str = "renew") -> Granted:
    return Granted(sent_at=sent, received_at=sent + rtt, operation=op,  # type: ignore[arg-type]
                   holder_id="me", term=term, lease_expires_at=redis_now + 2000,
                   redis_now=redis_now)


def leading_on_redis_clock(sent: float = 10.0, redis_now: int = 5_000_000) -> State:
    state, _ = step(State(), renewal(sent, redis_now, op="acquire"), T)
    assert state.role is Role.LEADER and state.redis_clock is not None
    return state


def test_a_forward_step_of_redis_clock_makes_the_leader_stop_at_once_with_the_reason() -> None:
    state = leading_on_redis_clock(10.0, 5_000_000)
    # half a second here, 15.5 s on Redis: its clock stepped 15 s forward
    new, effects = step(state, renewal(10.5, 5_015_500), T)
    assert not can_schedule(new, 10.51) and new.role is Role.STANDBY and new.deadline is None
    assert effects == [StopLeading("Redis clock jumped forward 15.0 s"),
                       Transition(Role.LEADER, Role.STANDBY, 1)]
    transition = effects[1]
    assert isinstance(transition, Transition) and transition.reason == effects[0].reason  # type: ignore[union-attr]
    assert new.last_error == "Redis clock jumped forward 15.0 s"
    # the next renewal finds the clock steady again: leading again, the same tenure
    again, effects = step(new, renewal(11.0, 5_016_000), T)
    assert can_schedule(again, 11.01) and again.term == 1
    assert effects == [Transition(Role.STANDBY, Role.LEADER, 1), StartLeading(1)]


def test_a_forward_step_seen_as_another_holder_is_named_as_the_reason() -> None:
    state = leading_on_redis_clock(10.0, 5_000_000)
    held = HeldByOther(received_at=10.502, holder_id="other", term=2, lease_expires_at=0,
                       remaining_ms=2000, redis_now=5_015_500, sent_at=10.5)
    new, effects = step(state, held, T)
    assert new.role is Role.STANDBY and new.last_error == "Redis clock jumped forward 15.0 s"
    assert effects[0] == StopLeading("Redis clock jumped forward 15.0 s")


def test_redis_clock_moving_as_fast_as_ours_within_the_round_trips_is_no_step() -> None:
    state = leading_on_redis_clock(10.0, 5_000_000)
    # the first reading may have been taken as the request left, the second as the reply came
    # back: Redis's clock may move up to (10.5 + rtt) - 10.0 = 0.51 s, plus the margin
    edge = 5_000_000 + round((0.510 + T.clock_jump_margin) * 1000) - 1
    new, effects = step(state, renewal(10.5, edge, rtt=0.010), T)
    assert new.role is Role.LEADER and effects == []
    assert redis_clock_jump(state, renewal(10.5, 5_000_500)) == 0.0


def test_a_step_just_beyond_the_margin_is_one() -> None:
    state = leading_on_redis_clock(10.0, 5_000_000)
    beyond = 5_000_000 + round((0.510 + T.clock_jump_margin) * 1000) + 2
    new, _ = step(state, renewal(10.5, beyond, rtt=0.010), T)
    assert new.role is Role.STANDBY


def test_a_backward_step_keeps_the_leader_it_only_lengthens_the_lease() -> None:
    state = leading_on_redis_clock(10.0, 5_000_000)
    seen = renewal(10.5, 4_990_500)  # Redis went 9.5 s back
    assert redis_clock_jump(state, seen) < -9
    new, effects = step(state, seen, T)
    assert new.role is Role.LEADER and effects == [] and can_schedule(new, 10.6)


def test_a_standby_has_no_redis_clock_to_compare_with() -> None:
    state, _ = step(State(), HeldByOther(1.0, "other", 7, 5000, 1500, redis_now=3500), T)
    assert state.redis_clock is None
    new, _ = step(state, renewal(2.0, 9_000_000, op="acquire"), T)  # much later on Redis
    assert new.role is Role.LEADER


def test_every_transition_says_why() -> None:
    state = leading_on_redis_clock(10.0, 5_000_000)
    cases: list[tuple[State, Observation, str]] = [
        (State(), renewal(1.0, 1000, op="acquire"), "lease acquired"),
        (state, HeldByOther(10.6, "other", 2, 0, 1000), "lease held by another node"),
        (state, DeadlinePassed(20.0), "local lease deadline passed"),
        (state, Released(10.6), "lease released"),
        (replace(state, consecutive_failures=1), Failed(10.6, "Redis did not answer in time"),
         "2 consecutive lease failures: Redis did not answer in time"),
    ]
    for before, seen, reason in cases:
        _, effects = step(before, seen, T)
        transitions = [e for e in effects if isinstance(e, Transition)]
        assert [t.reason for t in transitions] == [reason], seen


# ---- which reading of the automation mode wins -------------------------------------------

PAUSE_READ = ModeReading("paused", redis_now=5_000, sent_at=10.0, received_at=10.2)


def test_the_first_reading_of_the_mode_is_never_stale() -> None:
    assert not mode_reading_is_stale(None, PAUSE_READ)


def test_a_reply_redis_gave_before_the_applied_reading_is_stale() -> None:
    # sent before the pause's reading came back, read by Redis earlier: it must not undo it
    old = ModeReading("running", redis_now=4_990, sent_at=9.9, received_at=10.3)
    assert mode_reading_is_stale(PAUSE_READ, old)
    same_ms = ModeReading("running", redis_now=5_000, sent_at=10.1, received_at=10.3)
    assert mode_reading_is_stale(PAUSE_READ, same_ms)  # order unknown: the applied one stays


def test_a_reply_redis_gave_later_is_fresh_even_if_sent_earlier() -> None:
    later = ModeReading("running", redis_now=5_001, sent_at=10.1, received_at=10.3)
    assert not mode_reading_is_stale(PAUSE_READ, later)


def test_a_request_sent_after_the_applied_reading_came_back_is_fresh_whatever_the_redis_clock(
) -> None:
    # Redis's clock stepped back (or a failover to a server behind): causality still orders
    stepped_back = ModeReading("running", redis_now=1_000, sent_at=10.25, received_at=10.3)
    assert not mode_reading_is_stale(PAUSE_READ, stepped_back)
