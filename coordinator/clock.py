"""The clock, injected so tests advance time instead of sleeping."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")

# CLOCK_BOOTTIME counts the time a host spends suspended; CLOCK_MONOTONIC (time.monotonic)
# stops, so a lease deadline measured on it would outlive a suspend that outlasted the TTL
BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def boot_monotonic() -> float:
    """Seconds on the clock every process of one node measures lease deadlines on:
    CLOCK_BOOTTIME where the platform has it (Linux), else ``time.monotonic()``.

    Deadlines cross from the daemon to the child runner and the watchdog, so all of them
    must read this function. asyncio's timers run on ``time.monotonic()``: convert a
    deadline to a delay (``deadline - boot_monotonic()``) before handing it to the loop.
    """
    if BOOTTIME is not None:
        return time.clock_gettime(BOOTTIME)
    return time.monotonic()


async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
    """``await awaitable``, raising TimeoutError after ``seconds``.

    Used instead of ``asyncio.wait_for``, which on Python 3.11 can swallow a cancellation
    that arrives just as the awaited call completes (and then a stop waits forever).

    Where nothing imported asyncio no event loop runs: the coroutine is driven by hand, as
    ``coordinator status`` drives its read through the blocking stdlib client
    (``cli/status_quick.py``), each await completing at once within that client's socket
    timeout; there is nothing to time out, and loading asyncio would cost the command a
    fifth of its start-up.
    """
    if "asyncio" not in sys.modules:
        return await awaitable
    import asyncio

    async with asyncio.timeout(seconds):
        return await awaitable


class Clock:
    """Monotonic time for deadlines, wall time for event stamps, waits and jitter."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps and counts a suspend (``boot_monotonic``)."""
        return boot_monotonic()

    def wall_ms(self) -> int:
        """Wall-clock milliseconds, only for stamping this daemon's own events."""
        return time.time_ns() // 1_000_000

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout`` seconds pass; True if it was set."""
        if timeout <= 0:
            return event.is_set()
        try:
            await bounded(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def jitter(self) -> float:
        """A number in [0, 1) to spread retries."""
        return random.random()
