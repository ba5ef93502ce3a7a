"""The clock, injected so tests advance time instead of sleeping."""

from __future__ import annotations

import asyncio
import random
import time


class Clock:
    """Monotonic time for deadlines, wall time for event stamps, waits and jitter."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (deadlines are measured on it)."""
        return time.monotonic()

    def wall_ms(self) -> int:
        """Wall-clock milliseconds, only for stamping this daemon's own events."""
        return time.time_ns() // 1_000_000

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout`` seconds pass; True if it was set."""
        if timeout <= 0:
            return event.is_set()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def jitter(self) -> float:
        """A number in [0, 1) to spread retries."""
        return random.random()
