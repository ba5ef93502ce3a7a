"""The overlap of two children after Redis restarted empty is judged against the bound the
README states for Redis without persistence (one renew interval: the old leader learns at its
next renew that Redis forgot its lease, plus CHILD_STOP_MS for its child to exit), reported
with its figure and that bound, never hidden; anywhere else an overlap stays a violation."""

from __future__ import annotations

from tests.chaos.checker import CHILD_STOP_MS, check, restart_empty_bound_ms
from tests.chaos.recording import ChildRun, Fault, Recording
from tests.chaos.report import _bound
from tests.test_chaos_checker import SETTINGS, T0, changed, clean


def restarted_empty(overlap_ms: int, kind: str = "redis_restart_empty") -> Recording:
    """a leads term 1; Redis comes back empty at T0+8000; b takes term 2 at once and starts
    its child at T0+8050, while a's child runs on for ``overlap_ms``."""
    rec = clean()
    rec.faults = [Fault(0, kind, T0 + 1000, T0 + 8000, None, "a", 1, [],
                        {"lifted_ms": T0 + 7950}, T0 + 9000)]
    rec.channel = [changed(1, "a", T0)]
    rec.history = [changed(1, "a", T0), changed(2, "b", T0 + 8040, "a")]
    rec.children = [ChildRun("a", 100, 1, T0, [[T0, T0 + 8050 + overlap_ms]]),
                    ChildRun("b", 200, 2, T0 + 8050, [[T0 + 8050, T0 + 9000]])]
    return rec


def test_an_overlap_within_the_bound_after_an_empty_restart_is_measured_not_a_violation() -> None:
    verdict = check(restarted_empty(111))
    assert not [v for v in verdict.violations if v.check == "child_overlap"], verdict.violations
    assert verdict.longest_overlap() == 111  # still reported
    assert [(o.ms, o.allowed, o.bound_ms) for o in verdict.overlaps] == [
        (111, True, restart_empty_bound_ms(SETTINGS.renew_interval))]


def test_an_overlap_beyond_the_bound_after_an_empty_restart_is_a_violation() -> None:
    bound = restart_empty_bound_ms(SETTINGS.renew_interval)
    assert bound == 500 + CHILD_STOP_MS
    verdict = check(restarted_empty(bound + 1))
    assert "child_overlap" in {v.check for v in verdict.violations}
    assert verdict.longest_overlap() == bound + 1


def test_the_same_overlap_in_another_fault_is_still_a_violation() -> None:
    verdict = check(restarted_empty(111, kind="redis_outage"))
    assert "child_overlap" in {v.check for v in verdict.violations}


def test_the_report_states_the_bound_with_the_figure() -> None:
    text = _bound("redis_restart_empty", 2.0, 0.5)
    assert "children overlap" in text and f"{0.5 + CHILD_STOP_MS / 1000:g} s" in text
