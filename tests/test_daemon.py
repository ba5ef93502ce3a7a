"""The daemon on fakeredis and real Redis, with an injected clock: the seed's state tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from coordinator.daemon.daemon import Daemon
from coordinator.daemon.hooks import Hooks, LeaderContext
from coordinator.daemon.state import Role
from coordinator.errors import LeaseLostError
from coordinator.protocol import keys
from coordinator.protocol.membership import list_controllers
from coordinator.settings import Settings, load_settings
from tests.conftest import Breakable
from tests.fake_clock import FakeClock
from tests.log_capture import capture_logs


def settings(node: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {"node_id": node, "host": f"{node}.example", "lease_ttl": 2,
                            "renew_interval": 0.5, "heartbeat_interval": 0.5}
    return load_settings(**{**base, **kw})


class Recorder:
    """Hooks that record what was called, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.contexts: list[LeaderContext] = []
        self.work_cancelled = asyncio.Event()

    def hooks(self) -> Hooks:
        async def load() -> None:
            self.calls.append("load_local_runs")

        async def reconcile() -> None:
            self.calls.append("reconcile_local_runs")

        async def started(ctx: LeaderContext) -> None:
            self.calls.append(f"started:{ctx.term}")
            self.contexts.append(ctx)
            try:
                await asyncio.Event().wait()  # long-running leader work
            except asyncio.CancelledError:
                self.work_cancelled.set()
                raise

        async def stopped() -> None:
            self.calls.append("stopped")

        async def changed(snapshot: dict[str, Any]) -> None:
            self.calls.append(f"changed:{snapshot['role']}")

        return Hooks(load_local_runs=load, reconcile_local_runs=reconcile,
                     on_started_leading=started, on_stopped_leading=stopped,
                     on_lease_state_change=changed)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def until(predicate: Any, timeout: float = 10.0) -> None:
    """Hooks run off the loops, in order: wait (generously) until they got somewhere."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_checklist_runs_in_order_and_the_leader_may_schedule(redis: Any) -> None:
    rec = Recorder()
    daemon = Daemon(settings("a"), redis=redis, hooks=rec.hooks(), clock=FakeClock())
    await daemon.start()
    await settle()
    try:
        term = daemon.state.term
        assert term is not None
        # on_lease_state_change is a notification, on a queue of its own: the checklist
        # does not wait for it, so only its presence is certain, not its place
        assert [c for c in rec.calls if c != "changed:leader"][:3] == [
            "load_local_runs", "reconcile_local_runs", f"started:{term}"]
        await until(lambda: "changed:leader" in rec.calls)
        assert daemon.can_schedule()
        seen: list[LeaderContext] = []

        async def work(ctx: LeaderContext) -> None:
            seen.append(ctx)
            assert (await ctx.fenced_set(keys.fenced_key("coordinator", "x"), "v")).accepted

        assert await daemon.run_scheduler_pass(work) == "scheduled"
        assert [(c.node_id, c.host, c.term) for c in seen] == [("a", "a.example", term)]
        snap = daemon.status_snapshot()
        assert (snap["role"], snap["lease_state"], snap["can_schedule"], snap["current_term"]) == (
            "leader", "held", True, term)
        assert snap["scheduler_enabled"] is True and snap["last_heartbeat_at"] is not None
    finally:
        await daemon.stop()


async def test_standby_refuses_to_schedule(redis: Any) -> None:
    clock = FakeClock()
    leader = Daemon(settings("a"), redis=redis, clock=clock)
    standby = Daemon(settings("b"), redis=redis, clock=clock)
    await leader.start()
    await standby.start()
    try:
        called = []

        async def work(ctx: LeaderContext) -> None:
            called.append(ctx)

        assert standby.state.role is Role.STANDBY and not standby.can_schedule()
        assert await standby.run_scheduler_pass(work) == "skipped_not_leader"
        assert called == []
        snap = standby.status_snapshot()
        assert (snap["lease_state"], snap["current_leader_id"], snap["scheduler_enabled"]) == (
            "held_by_other", "a", False)
    finally:
        await standby.stop()
        await leader.stop()


async def test_renew_failures_degrade_at_the_threshold_and_recover(breakable: Breakable) -> None:
    rec = Recorder()
    clock = FakeClock()
    daemon = Daemon(settings("a"), redis=breakable.client, hooks=rec.hooks(), clock=clock)
    await daemon.start()
    await settle()
    try:
        assert daemon.state.role is Role.LEADER
        breakable.take_away()
        clock.advance(0.5)
        await daemon.lease_step()
        assert daemon.state.role is Role.LEADER and daemon.state.consecutive_failures == 1
        assert daemon.can_schedule()  # still inside the local deadline
        clock.advance(0.1)
        await daemon.lease_step()
        assert daemon.state.role is Role.DEGRADED and not daemon.can_schedule()
        # (on_stopped_leading and the notification run on separate queues: either first)
        await until(lambda: sorted(rec.calls[-2:]) == ["changed:degraded", "stopped"])
        assert rec.work_cancelled.is_set()
        assert daemon.status_snapshot()["last_error"]
        breakable.bring_back()
        await daemon.lease_step()
        # after the Redis restart (real) the old lease is gone: a new tenure; on fakeredis
        # the lease survived and is renewed.
        assert daemon.state.role is Role.LEADER and daemon.can_schedule()
    finally:
        await daemon.stop()


async def test_leader_stops_scheduling_at_the_local_deadline_by_itself(redis: Any) -> None:
    rec = Recorder()
    clock = FakeClock()
    daemon = Daemon(settings("a"), redis=redis, hooks=rec.hooks(), clock=clock)
    await daemon.start()
    await settle()
    try:
        deadline = daemon.state.deadline
        assert deadline is not None
        clock.now = deadline - 0.001
        assert daemon.can_schedule()
        clock.now = deadline
        assert not daemon.can_schedule()  # at once, before any timer or loop runs
        daemon.check_deadline()
        await asyncio.wait_for(rec.work_cancelled.wait(), 1)
        for _ in range(50):
            if daemon.state.role is not Role.LEADER:
                break
            await asyncio.sleep(0.01)
        assert daemon.state.role is Role.STANDBY
        await until(lambda: "stopped" in rec.calls)
    finally:
        await daemon.stop()


async def test_unreachable_redis_at_start_is_degraded_not_a_crash(breakable: Breakable) -> None:
    breakable.take_away()
    daemon = Daemon(settings("a"), redis=breakable.client, clock=FakeClock())
    await daemon.start()
    try:
        assert daemon.state.role is Role.DEGRADED
        breakable.bring_back()
        await daemon.lease_step()
        assert daemon.state.role is Role.LEADER
    finally:
        await daemon.stop()


async def test_a_hook_that_raises_is_logged_and_the_daemon_goes_on(redis: Any) -> None:
    async def broken() -> None:
        raise RuntimeError("hook bug")

    with capture_logs() as logs:
        daemon = Daemon(settings("a"), redis=redis, clock=FakeClock(),
                        hooks=Hooks(load_local_runs=broken, on_started_leading=lambda ctx: broken()))
        await daemon.start()
        assert daemon.can_schedule()
        # on_started_leading runs off the loops: wait for it (a few yields were not always
        # enough on real Redis with the machine busy)
        await until(lambda: any(e["event"] == "hook.failed" and e["hook"] == "on_started_leading"
                                for e in logs))
        await daemon.stop()
    failed = [e for e in logs if e["event"] == "hook.failed"]
    assert {e["hook"] for e in failed} == {"load_local_runs", "on_started_leading"}


async def test_losing_the_lease_mid_pass_cancels_the_work(redis: Any) -> None:
    clock = FakeClock()
    daemon = Daemon(settings("a"), redis=redis, clock=clock)
    await daemon.start()
    started = asyncio.Event()

    async def slow(ctx: LeaderContext) -> None:
        started.set()
        await asyncio.Event().wait()

    try:
        passing = asyncio.ensure_future(daemon.run_scheduler_pass(slow))
        await started.wait()
        assert daemon.state.deadline is not None
        clock.now = daemon.state.deadline
        daemon.check_deadline()
        with pytest.raises(LeaseLostError):
            await asyncio.wait_for(passing, 1)
    finally:
        await daemon.stop()


async def test_graceful_stop_releases_announces_and_marks_stopping(redis: Any) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.events_channel("coordinator"))
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    daemon = Daemon(settings("a"), redis=redis)
    await daemon.start()
    await daemon.stop()
    seen = []
    while (msg := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3)) is not None:
        seen.append(json.loads(msg["data"]))
    await pubsub.aclose()
    # the node stops leading first, and says so, then releases
    assert [e["type"] for e in seen] == ["leader_changed", "state_changed", "state_changed",
                                         "lease_released"]
    term = seen[0]["term"]
    assert seen[1] == {"type": "state_changed", "node_id": "a", "host": "a.example",
                       "from": "standby", "to": "leader", "term": term,
                       "reason": "lease acquired", "at": seen[1]["at"]}
    assert (seen[2]["from"], seen[2]["to"], seen[2]["term"], seen[2]["reason"]) == (
        "leader", "standby", term, "daemon stopping")
    assert seen[3]["term"] == term
    assert await daemon.lease.get() is None
    (me,) = await list_controllers(redis, "coordinator", retention_ms=60_000)
    assert (me.status, me.alive) == ("stopping", False)


async def test_standby_takes_over_at_once_when_the_leader_releases(redis: Any) -> None:
    leader = Daemon(settings("a", lease_ttl=30, renew_interval=5), redis=redis)
    standby = Daemon(settings("b", lease_ttl=30, renew_interval=5), redis=redis)
    await leader.start()
    await standby.start()
    await asyncio.sleep(0.1)  # let the standby's subscription settle
    try:
        assert standby.state.role is Role.STANDBY
        old_term = leader.state.term
        assert old_term is not None
        await leader.stop()
        for _ in range(100):
            if standby.state.role is Role.LEADER:
                break
            await asyncio.sleep(0.01)
        # without the release event the standby would wait for its 5 s renew interval
        assert standby.state.role is Role.LEADER and (standby.state.term or 0) > old_term
    finally:
        await standby.stop()


async def test_heartbeats_list_every_controller_with_liveness(redis: Any) -> None:
    daemons = [Daemon(settings(n, role=r), redis=redis, clock=FakeClock())
               for n, r in [("a", "primary"), ("b", "standby")]]
    for d in daemons:
        await d.start()
    try:
        found = {c.node_id: c for c in await list_controllers(redis, "coordinator",
                                                              retention_ms=60_000)}
        assert set(found) == {"a", "b"}
        assert (found["a"].role, found["a"].priority, found["a"].status) == ("primary", 100, "alive")
        assert (found["b"].role, found["b"].priority, found["b"].alive) == ("standby", 50, True)
        assert found["a"].host == "a.example" and found["a"].started_at > 0
    finally:
        for d in daemons:
            await d.stop()


async def test_each_mode_says_what_a_scheduler_pass_does(redis: Any) -> None:
    from coordinator.protocol.modes import set_automation_mode

    clock = FakeClock()
    # a TTL that real time cannot run out (fakeredis and Redis expire on the real clock): on
    # a loaded machine 2 s passed between steps once, the lease lapsed and was granted anew
    daemon = Daemon(settings("a", lease_ttl=30, renew_interval=5), redis=redis, clock=clock)
    await daemon.start()
    modes: list[str] = []

    async def work(ctx: LeaderContext) -> None:
        modes.append(ctx.automation_mode)

    try:
        for mode, result in [("paused", "skipped_paused"), ("draining", "skipped_draining"),
                             ("running", "scheduled")]:
            await set_automation_mode(redis, "coordinator", mode)
            # time moves on: a reading whose request left after the last one came back is
            # fresh; with a clock that stands still, readings within one Redis ms would tie
            clock.advance(0.002)
            await daemon.lease_step()  # the mode rides on the renew reply
            assert await daemon.run_scheduler_pass(work) == result
            assert daemon.can_schedule() and daemon.state.role is Role.LEADER  # keeps its lease
            assert daemon.status_snapshot()["automation_mode"] == mode
        assert modes == ["running"]
    finally:
        await daemon.stop()


async def test_status_reads_many_controllers_and_reports_a_foreign_key(redis: Any) -> None:
    from coordinator.errors import CorruptDataError
    from coordinator.protocol.membership import Heartbeat

    # more than one read batch; a long interval, so a loaded machine cannot make them stale
    for i in range(2500):
        await Heartbeat(redis, namespace="coordinator", node_id=f"n{i}", host="h", role="standby",
                        priority=50, version="1", instance_id="i", interval=60, retention=600).beat()
    found = await list_controllers(redis, "coordinator", retention_ms=600_000)
    assert len(found) == 2500 and all(c.alive and c.host == "h" for c in found)
    await redis.delete(keys.controller_key("coordinator", "n7"))
    await redis.set(keys.controller_key("coordinator", "n7"), "not a hash")
    with pytest.raises(CorruptDataError, match="controller:n7"):
        await list_controllers(redis, "coordinator", retention_ms=600_000)


async def test_garbage_on_the_events_channel_cannot_push_the_terms(redis: Any) -> None:
    clock = FakeClock()
    daemon = Daemon(settings("a"), redis=redis, clock=clock)
    await daemon.start()
    try:
        await asyncio.sleep(0.1)  # the daemon's subscription is up
        clock.advance(0.1)  # else Redis's clock seems to step forward against the daemon's
        channel = keys.events_channel("coordinator")
        for junk in ["not json", "[1, 2]", json.dumps({"lease": "global", "term": 10**300}),
                     json.dumps({"type": "lease_released", "lease": "global", "term": "x"})]:
            await redis.publish(channel, junk)
        await asyncio.sleep(0.1)
        old_term = daemon.state.term
        assert old_term is not None
        clock.advance(0.1)
        await daemon.lease.release()
        await daemon.lease_step()  # a new tenure, informed by what it heard
        term = daemon.state.term
        assert daemon.state.role is Role.LEADER and term is not None and term > old_term
        assert term < 2**53  # the junk term was not taken up
    finally:
        await daemon.stop()
