"""A clock the test moves by hand, so daemon tests never sleep for time to pass."""

from __future__ import annotations

import asyncio

from coordinator.clock import Clock


class FakeClock(Clock):
    """Monotonic and wall time advance only when the test moves them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall_ms(self) -> int:
        return int(self.now * 1000)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Only a wake event ends the wait: timed steps are the test's to drive."""
        await event.wait()
        return True

    def jitter(self) -> float:
        return 0.5
