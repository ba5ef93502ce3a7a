"""The daemon's lifecycle: a stop that leaves leadership first and is bounded, hooks that
cannot stall the lease, a planned handover that dies with the leadership, and the
automation modes (one meaning everywhere). On fakeredis and real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coordinator.daemon.daemon import LEADER_STOP_WAIT, Daemon
from coordinator.daemon.handoff_choice import request_handoff
from coordinator.daemon.hooks import Hooks, LeaderContext
from coordinator.daemon.state import (
    Granted,
    Resigned,
    Role,
    StartLeading,
    State,
    StopLeading,
    Timing,
    Transition,
    can_schedule,
    step,
)
from coordinator.errors import LeaseLostError
from coordinator.protocol.membership import Heartbeat
from coordinator.protocol.modes import set_automation_mode
from coordinator.settings import Settings, load_settings
from tests.fake_clock import FakeClock
from tests.log_capture import capture_logs

# generous: only a hang (or a very loaded machine) gets anywhere near it
HANG = 10.0


def settings(node: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {"node_id": node, "host": f"{node}.example", "lease_ttl": 2,
                            "renew_interval": 0.5, "heartbeat_interval": 0.5}
    return load_settings(**{**base, **kw})


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def until(predicate: Any) -> None:
    async with asyncio.timeout(HANG):
        while not predicate():
            await asyncio.sleep(0.005)


async def forever() -> None:
    await asyncio.Event().wait()


# ---- item 2: stop() leaves leadership first ---------------------------------------------


async def test_stop_leaves_leadership_before_it_releases(redis: Any) -> None:
    seen: dict[str, Any] = {}
    daemon: Daemon

    async def quick(ctx: LeaderContext) -> None:
        await asyncio.sleep(0)

    async def stopped() -> None:
        # runs while stop() is under way, before the release
        seen["can_schedule"] = daemon.can_schedule()
        seen["role"] = daemon.status_snapshot()["role"]
        seen["lease"] = await daemon.lease.get()
        seen["pass"] = await daemon.run_scheduler_pass(quick)

    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock(),
                    hooks=Hooks(on_started_leading=lambda ctx: forever(), on_stopped_leading=stopped))
    await daemon.start()
    term = daemon.state.term
    await settle()
    await asyncio.wait_for(daemon.stop(), HANG)
    assert seen["can_schedule"] is False and seen["role"] != "leader"
    assert seen["pass"] == "skipped_not_leader"
    assert seen["lease"] is not None and seen["lease"].term == term  # not released yet
    assert await daemon.lease.get() is None  # released once leader work had stopped


async def test_a_pass_asked_for_while_stop_runs_is_refused_and_a_running_one_cancelled(
        redis: Any) -> None:
    cancel_seen, let_go = asyncio.Event(), asyncio.Event()

    async def lead(ctx: LeaderContext) -> None:
        try:
            await forever()
        except asyncio.CancelledError:
            cancel_seen.set()
            await let_go.wait()  # slow to clean up: stop() waits here for a while
            raise

    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock(),
                    hooks=Hooks(on_started_leading=lead))
    await daemon.start()
    await settle()
    running_started = asyncio.Event()

    async def slow(ctx: LeaderContext) -> None:
        running_started.set()
        await forever()

    running = asyncio.ensure_future(daemon.run_scheduler_pass(slow))
    await running_started.wait()
    stopping = asyncio.ensure_future(daemon.stop())
    await asyncio.wait_for(cancel_seen.wait(), HANG)
    assert not stopping.done()
    ran: list[int] = []

    async def late(ctx: LeaderContext) -> None:
        ran.append(ctx.term)

    assert await daemon.run_scheduler_pass(late) == "skipped_not_leader"
    assert ran == [] and not daemon.can_schedule()
    with pytest.raises(LeaseLostError):
        await asyncio.wait_for(running, HANG)
    let_go.set()
    await asyncio.wait_for(stopping, HANG)


async def test_on_lease_state_change_hears_the_stop_before_stop_returns(redis: Any) -> None:
    roles: list[str] = []

    async def changed(snapshot: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)  # a hook that takes a moment
        roles.append(snapshot["role"])

    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock(),
                    hooks=Hooks(on_lease_state_change=changed))
    await daemon.start()
    await asyncio.wait_for(daemon.stop(), HANG)
    assert roles == ["leader", "standby"]


# ---- item 3: stop() is bounded, hooks cannot stall observations --------------------------


@pytest.mark.parametrize("hanging", ["on_started_leading", "on_stopped_leading"])
async def test_stop_is_bounded_when_a_hook_hangs(redis: Any, hanging: str) -> None:
    unblock = asyncio.Event()

    async def lead(ctx: LeaderContext) -> None:
        try:
            await forever()
        except asyncio.CancelledError:
            if hanging == "on_started_leading":
                await unblock.wait()  # awaits inside its cancellation handler
            raise

    async def stopped() -> None:
        if hanging == "on_stopped_leading":
            await unblock.wait()

    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock(),
                    hooks=Hooks(on_started_leading=lead, on_stopped_leading=stopped))
    await daemon.start()
    await settle()
    try:
        with capture_logs() as logs:
            stopping = asyncio.ensure_future(daemon.stop())
            await asyncio.sleep(0)
            assert daemon.status_snapshot()["role"] != "leader" and not daemon.can_schedule()
            await asyncio.wait_for(stopping, HANG)
        events = [e["event"] for e in logs]
        assert "hook.abandoned" in events and "daemon.stopped" in events
        # leader work was told to stop and did not finish in time: abandoned, and the lease
        # released all the same (the fence refuses what it still tries)
        assert "lease.released" in events and "lease.release_skipped" not in events
        assert await daemon.lease.get() is None
    finally:
        unblock.set()


async def test_observations_go_on_while_on_stopped_leading_is_slow(redis: Any) -> None:
    calls: list[str] = []
    let_go = asyncio.Event()

    async def lead(ctx: LeaderContext) -> None:
        calls.append("started")
        await forever()

    async def stopped() -> None:
        calls.append("stopping")
        await let_go.wait()
        calls.append("stopped")

    clock = FakeClock()
    daemon = Daemon(settings("a"), redis=redis, clock=clock,
                    hooks=Hooks(on_started_leading=lead, on_stopped_leading=stopped))
    await daemon.start()
    await until(lambda: calls == ["started"])
    try:
        assert daemon.state.deadline is not None
        clock.now = daemon.state.deadline
        daemon.check_deadline()
        await until(lambda: calls == ["started", "stopping"])
        await until(lambda: daemon.state.role is Role.STANDBY)
        await asyncio.wait_for(daemon.lease_step(), HANG)  # not stuck behind the hook
        assert daemon.state.role is Role.LEADER and daemon.can_schedule()
        await settle()
        assert calls == ["started", "stopping"]  # the next tenure's work waits for the hook
        let_go.set()
        await until(lambda: len(calls) == 4)
        assert calls == ["started", "stopping", "stopped", "started"]
    finally:
        let_go.set()
        await daemon.stop()


# ---- item 4: a planned handover dies with the leadership ---------------------------------


async def test_a_planned_handover_is_forgotten_when_leadership_ends(redis: Any) -> None:
    clock = FakeClock()
    daemon = Daemon(settings("a"), redis=redis, clock=clock)
    await daemon.start()
    target = Heartbeat(redis, namespace="coordinator", node_id="p", host="h", role="primary",
                       priority=100, version="1", instance_id="p1", interval=0.5, retention=60)
    try:
        await target.beat("alive")
        assert (await request_handoff(redis, "coordinator", "global", "p",
                                      ttl_ms=60_000)).outcome == "requested"
        with capture_logs() as logs:
            await daemon.consider_handoff()
        # (the handoff_requested event may prompt a second, identical look meanwhile)
        assert {e["to"] for e in logs if e["event"] == "handoff.planned"} == {"p"}
        assert daemon.state.deadline is not None
        clock.now = daemon.state.deadline  # leadership ends before the handover happens
        daemon.check_deadline()
        await until(lambda: daemon.state.role is Role.STANDBY)
        await target.beat("stopping")  # meanwhile the target went away
        await daemon.lease_step()
        assert daemon.state.role is Role.LEADER
        await daemon.lease_round()  # the next round: no handover to the stale target
        assert daemon.state.role is Role.LEADER
        lease = await daemon.lease.get()
        assert lease is not None and lease.holder_id == "a" and not lease.reserved
    finally:
        await daemon.stop()


# ---- item 8: the automation modes --------------------------------------------------------


class Work:
    """on_started_leading work that records each start and cancellation."""

    def __init__(self) -> None:
        self.contexts: list[LeaderContext] = []
        self.cancelled = 0
        self.finish = asyncio.Event()

    async def lead(self, ctx: LeaderContext) -> None:
        self.contexts.append(ctx)
        try:
            await self.finish.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def hooks(self) -> Hooks:
        return Hooks(on_started_leading=self.lead)


async def set_mode(redis: Any, daemon: Daemon, mode: str) -> None:
    await set_automation_mode(redis, "coordinator", mode)
    # time moves on: a reading whose request left after the last one came back is fresh;
    # with a fake clock that stands still, two readings within one Redis ms would tie and
    # the later one would be ignored (state.mode_reading_is_stale)
    clock = daemon._clock
    if isinstance(clock, FakeClock):
        clock.advance(0.002)
    await daemon.lease_step()  # the mode rides on the renew reply
    await settle()


async def test_paused_cancels_leader_work_and_running_passes_and_resume_restarts_it(
        redis: Any) -> None:
    work = Work()
    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock(), hooks=work.hooks())
    await daemon.start()
    await until(lambda: len(work.contexts) == 1)
    in_pass = asyncio.Event()

    async def slow(ctx: LeaderContext) -> None:
        in_pass.set()
        await forever()

    try:
        running = asyncio.ensure_future(daemon.run_scheduler_pass(slow))
        await in_pass.wait()
        await set_mode(redis, daemon, "paused")
        assert work.cancelled == 1
        assert await asyncio.wait_for(running, HANG) == "skipped_paused"  # interrupted

        async def never(ctx: LeaderContext) -> None:
            raise AssertionError("a pass ran while paused")

        assert await daemon.run_scheduler_pass(never) == "skipped_paused"
        assert daemon.state.role is Role.LEADER and daemon.can_schedule()  # keeps its lease
        assert daemon.status_snapshot()["automation_mode"] == "paused"
        await set_mode(redis, daemon, "running")
        await until(lambda: len(work.contexts) == 2)
        first, second = work.contexts
        assert second.term == first.term and second.automation_mode == "running"
    finally:
        await daemon.stop()


async def test_draining_lets_running_work_finish_and_starts_nothing_new(redis: Any) -> None:
    work = Work()
    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock(), hooks=work.hooks())
    await daemon.start()
    await until(lambda: len(work.contexts) == 1)
    in_pass, end_pass = asyncio.Event(), asyncio.Event()
    modes_seen: list[str] = []

    async def slow(ctx: LeaderContext) -> None:
        in_pass.set()
        await end_pass.wait()
        modes_seen.append(ctx.automation_mode)  # the live mode, not the one at the start

    try:
        running = asyncio.ensure_future(daemon.run_scheduler_pass(slow))
        await in_pass.wait()
        await set_mode(redis, daemon, "draining")
        assert work.cancelled == 0 and work.contexts[0].automation_mode == "draining"

        async def never(ctx: LeaderContext) -> None:
            raise AssertionError("a pass started while draining")

        assert await daemon.run_scheduler_pass(never) == "skipped_draining"
        end_pass.set()
        assert await asyncio.wait_for(running, HANG) == "scheduled"
        assert modes_seen == ["draining"]
        await set_mode(redis, daemon, "running")
        assert len(work.contexts) == 1 and work.cancelled == 0  # still running: not doubled

        async def quick(ctx: LeaderContext) -> None:
            modes_seen.append(ctx.automation_mode)

        assert await daemon.run_scheduler_pass(quick) == "scheduled"
        assert modes_seen == ["draining", "running"]
    finally:
        await daemon.stop()


@pytest.mark.parametrize("mode", ["paused", "draining"])
async def test_leadership_that_begins_while_not_running_starts_work_only_on_resume(
        redis: Any, mode: str) -> None:
    await set_automation_mode(redis, "coordinator", mode)
    work = Work()
    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock(), hooks=work.hooks())
    await daemon.start()
    try:
        await settle()
        assert daemon.state.role is Role.LEADER and work.contexts == []
        await set_mode(redis, daemon, "running")
        await until(lambda: len(work.contexts) == 1)
        assert work.contexts[0].automation_mode == "running"
    finally:
        await daemon.stop()


# ---- the state machine's part: pure ----------------------------------------------------


def test_resigning_leaves_leadership_and_a_late_grant_is_recorded_not_led_on() -> None:
    timing = Timing(lease_ttl=2.0, renew_interval=0.5, renew_failure_threshold=2)
    leader, _ = step(State(), Granted(10.0, 10.001, "acquire", "me", 7, 0), timing)
    resigned, effects = step(leader, Resigned(10.2), timing)
    assert resigned.role is Role.STANDBY and resigned.stopping and resigned.deadline is None
    assert effects == [StopLeading("daemon stopping"), Transition(Role.LEADER, Role.STANDBY, 7)]
    assert not can_schedule(resigned, 10.2)
    assert resigned.leader_id == "me" and resigned.term == 7  # the lease may still be ours
    late, effects = step(resigned, Granted(10.1, 10.3, "renew", "me", 9, 0), timing)
    assert effects == [] and late.role is Role.STANDBY and not can_schedule(late, 10.3)
    assert (late.term, late.leader_id) == (9, "me")  # so the stop releases what it was granted
    assert not any(isinstance(e, StartLeading) for e in effects)
    degraded = State(role=Role.DEGRADED)
    assert step(degraded, Resigned(1.0), timing) == (State(role=Role.DEGRADED, stopping=True), [])


@pytest.mark.parametrize("grace", [0.0, 5.0])
async def test_stop_grace_gives_a_slow_on_stopped_leading_time_before_the_release(
        redis: Any, grace: float) -> None:
    # a hook that needs longer than the stop's own wait for leader work (e.g. for a child
    # process to exit): without a grace it is abandoned (and the lease released all the
    # same); with one the stop waits for it, then releases
    async def stopped() -> None:
        await asyncio.sleep(LEADER_STOP_WAIT + 0.3)

    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock(),
                    hooks=Hooks(on_stopped_leading=stopped, stop_grace=grace))
    await daemon.start()
    with capture_logs() as logs:
        await asyncio.wait_for(daemon.stop(), HANG)
    events = [e["event"] for e in logs]
    if grace:
        assert "lease.released" in events and "hook.abandoned" not in events
        assert await daemon.lease.get() is None
    else:
        assert "hook.abandoned" in events and "lease.released" in events
        (released,) = [e for e in logs if e["event"] == "lease.released"]
        assert released["leader_work_finished"] is False
        assert await daemon.lease.get() is None


@pytest.mark.parametrize("grace", [-1, float("nan"), True, 3600])
def test_a_stop_grace_out_of_range_is_refused(grace: Any) -> None:
    from coordinator.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="stop_grace"):
        Hooks(stop_grace=grace)


async def test_a_handover_stops_leader_work_before_the_release_and_logs_the_outcome(
        redis: Any) -> None:
    seen: list[Any] = []
    daemon: Daemon

    async def stopped() -> None:
        seen.append(await daemon.lease.get())  # the lease is still ours while work stops

    daemon = Daemon(settings("a"), redis=redis, clock=FakeClock(),
                    hooks=Hooks(on_started_leading=lambda ctx: forever(), on_stopped_leading=stopped))
    await daemon.start()
    target = Heartbeat(redis, namespace="coordinator", node_id="p", host="h", role="primary",
                       priority=100, version="1", instance_id="p1", interval=0.5, retention=60)
    try:
        await target.beat("alive")
        await request_handoff(redis, "coordinator", "global", "p", ttl_ms=60_000)
        with capture_logs() as logs:
            await daemon.consider_handoff()  # an operator asked: the lease loop acts at once
            await until(lambda: any(e["event"] == "lease.handed_over" for e in logs))
        (handed,) = [e for e in logs if e["event"] == "lease.handed_over"]
        assert (handed["to"], handed["released"]) == ("p", True)
        # what release.lua decided about the target (the values come with the protocol's
        # liveness check: reserved_for "p" here, or handoff_refused with a reason)
        assert {"reserved_for", "handoff_refused"} <= set(handed)
        assert [r.holder_id for r in seen] == ["a"]
        assert daemon.state.role is Role.STANDBY and not daemon.can_schedule()
    finally:
        await daemon.stop()
