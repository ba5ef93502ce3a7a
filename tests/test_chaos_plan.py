"""The fault schedule replays from its seed and mixes every kind in each round."""

from __future__ import annotations

import itertools
from typing import Any

from tests.chaos.faults import DESCRIPTIONS, choose, plan
from tests.chaos.harness import runnable
from tests.chaos.recording import ALL_KINDS, KINDS
from tests.chaos.servers import faketime_capable_binary
from tests.chaos.setups import SETUPS


def first(seed: int, n: int, kinds: tuple[str, ...] = KINDS) -> list[tuple[str, dict[str, Any], float]]:
    return list(itertools.islice(plan(seed, ttl=2.0, renew=0.5, kinds=kinds), n))


def test_one_seed_one_schedule_and_another_seed_another() -> None:
    assert first(42, 30) == first(42, 30)
    assert first(42, 30) != first(43, 30)


def test_every_round_holds_every_kind_once() -> None:
    schedule = [kind for kind, _, _ in first(5, 3 * len(KINDS))]
    for r in range(3):
        assert sorted(schedule[r * len(KINDS):(r + 1) * len(KINDS)]) == sorted(KINDS)


def test_numbers_stay_within_the_documented_ranges() -> None:
    for kind, params, calm in first(9, 200):
        assert 0.2 <= calm <= 1.0
        if kind == "pause_leader":
            assert 2.5 <= float(params["hold_s"]) <= 3.5  # > TTL
        if kind == "slow_redis":
            assert 0.15 <= 2 * float(params["one_way_s"]) <= 0.5  # a round trip near the renew interval
        if kind == "clock_jump":
            assert 30 <= abs(int(params["offset_s"])) <= 3600


def test_a_kind_left_out_is_never_scheduled_and_every_kind_is_described() -> None:
    kinds = tuple(k for k in KINDS if k != "clock_jump")
    assert "clock_jump" not in {kind for kind, _, _ in first(1, 50, kinds)}
    assert set(DESCRIPTIONS) == set(ALL_KINDS)


def test_choose_is_by_sorted_position() -> None:
    assert choose(["c", "a", "b"], 0.0) == "a" and choose(["c", "a", "b"], 0.99) == "c"


def test_the_new_faults_numbers_are_what_their_checks_assume() -> None:
    for kind, params, _ in first(13, 300, ALL_KINDS):
        if kind == "redis_clock_step":  # far beyond a run's length: a stepped stamp is never real
            assert 1800 <= abs(int(params["offset_s"])) <= 3600
            assert 2.0 <= float(params["hold_s"]) <= 4.0
        if kind in ("group_stop_leader", "freeze_leader_host"):
            assert float(params["hold_s"]) > 2 * 2.0  # past 2 x TTL
        if kind == "lost_write_failover":
            assert 0.5 <= float(params["lag_s"]) <= 1.5


def test_each_setup_runs_only_what_its_topology_allows() -> None:
    libfaketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
    kinds, notes = runnable(("kill_leader", "lost_write_failover", "partition_leader"), "single",
                            libfaketime)
    assert kinds == ("kill_leader", "partition_leader") and "Sentinel" in notes[0]
    kinds, notes = runnable(("lost_write_failover", "partition_leader", "slow_redis"), "sentinel",
                            libfaketime)
    assert kinds == ("lost_write_failover",) and len(notes) == 2
    assert runnable(("clock_jump",), "single", None) == ((), [
        "libfaketime not found (apt-get install faketime): clock_jump left out"])
    for setup in SETUPS.values():
        assert set(setup.kinds) <= set(ALL_KINDS)
        assert runnable(setup.kinds, setup.topology, libfaketime)[0] == setup.kinds or (
            faketime_capable_binary() is None)
    assert {s.min_replicas_ack for s in SETUPS.values() if s.topology == "sentinel"} == {0, 1}
