"""The daemon's metrics: one registry per daemon, observations and state gauges."""

from __future__ import annotations

import math

from prometheus_client import REGISTRY

from coordinator.daemon.metrics import Metrics


def test_each_metrics_object_has_its_own_registry_and_leaves_the_global_one_alone() -> None:
    a, b = Metrics(), Metrics()  # would raise "Duplicated timeseries" on a shared registry
    a.observe_renew(0.003, ok=True)
    assert a.registry.get_sample_value(
        "coordinator_lease_renew_duration_seconds_count", {"result": "ok"}) == 1
    assert b.registry.get_sample_value(
        "coordinator_lease_renew_duration_seconds_count", {"result": "ok"}) == 0
    assert REGISTRY.get_sample_value("coordinator_is_leader") is None


def test_failures_count_and_transitions_are_labelled_by_roles() -> None:
    m = Metrics()
    m.observe_renew(2.0, ok=False)
    m.observe_heartbeat(0.001, ok=True)
    m.observe_heartbeat(0.5, ok=False)
    m.transition("standby", "leader")
    m.transition("leader", "degraded")
    m.transition("standby", "leader")
    get = m.registry.get_sample_value
    assert get("coordinator_lease_renew_failures_total") == 1
    assert get("coordinator_heartbeat_failures_total") == 1
    assert get("coordinator_lease_renew_duration_seconds_bucket",
               {"result": "error", "le": "2.5"}) == 1
    assert get("coordinator_state_transitions_total", {"from": "standby", "to": "leader"}) == 2
    assert get("coordinator_state_transitions_total", {"from": "leader", "to": "degraded"}) == 1
    assert get("coordinator_state_transitions_total", {"from": "degraded", "to": "standby"}) == 0


def test_state_gauges_follow_the_snapshot() -> None:
    m = Metrics()
    m.set_state({"role": "leader", "lease_state": "held", "can_schedule": True,
                 "current_term": 7}, deadline_in=1.25, heartbeat_age=0.2)
    get = m.registry.get_sample_value
    assert (get("coordinator_is_leader"), get("coordinator_lease_term")) == (1, 7)
    assert get("coordinator_role", {"role": "leader"}) == 1
    assert get("coordinator_role", {"role": "standby"}) == 0
    assert get("coordinator_lease_state", {"state": "held"}) == 1
    assert get("coordinator_lease_deadline_seconds") == 1.25
    m.set_state({"role": "degraded", "lease_state": "unknown", "can_schedule": False,
                 "current_term": None}, deadline_in=-0.5, heartbeat_age=None)
    assert (get("coordinator_is_leader"), get("coordinator_lease_term")) == (0, 0)
    assert get("coordinator_lease_deadline_seconds") == 0
    assert get("coordinator_heartbeat_age_seconds") == math.inf
    assert b"coordinator_role{role=\"degraded\"} 1.0" in m.render()


def test_redis_clock_steps_are_counted_by_direction_from_the_first_scrape() -> None:
    m = Metrics()
    get = m.registry.get_sample_value
    assert get("coordinator_redis_clock_jumps_total", {"direction": "forward"}) == 0
    m.redis_clock_jumped(forward=True)
    m.redis_clock_jumped(forward=False)
    m.redis_clock_jumped(forward=True)
    assert get("coordinator_redis_clock_jumps_total", {"direction": "forward"}) == 2
    assert get("coordinator_redis_clock_jumps_total", {"direction": "backward"}) == 1
