"""The daemon's deadline clock counts a suspend (CLOCK_BOOTTIME where the platform has it)."""

from __future__ import annotations

import time

import pytest

from coordinator import clock
from coordinator.clock import Clock


def test_deadlines_are_measured_on_the_boot_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    if getattr(time, "CLOCK_BOOTTIME", None) is None:
        pytest.skip("this platform has no CLOCK_BOOTTIME")
    real = time.clock_gettime
    # a host that was suspended for an hour: the boot clock is an hour ahead of CLOCK_MONOTONIC
    monkeypatch.setattr(time, "clock_gettime", lambda which: real(which) + (
        3600.0 if which == time.CLOCK_BOOTTIME else 0.0))
    assert Clock().monotonic() - time.monotonic() > 3599
    assert clock.boot_monotonic() - time.monotonic() > 3599


def test_without_a_boot_clock_the_monotonic_clock_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "BOOTTIME", None)
    before = time.monotonic()
    assert before <= Clock().monotonic() <= time.monotonic()
