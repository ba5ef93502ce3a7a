"""The fault schedule replays from its seed and mixes every kind in each round."""

from __future__ import annotations

import itertools
from typing import Any

from tests.chaos.faults import DESCRIPTIONS, choose, plan
from tests.chaos.recording import ALL_KINDS, KINDS


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
