"""A process of simulated controllers: ``python -m coordinator.bench.load_worker URL NS FIRST COUNT
RATE SECONDS [KIND]``. Prints ``ready``, waits for a line on stdin, heartbeats at RATE for
SECONDS, then prints ``{"beats": n, "elapsed": s}``. KIND ``bare`` sends a bare ``EVALSHA`` of
``return 1`` instead of each heartbeat, from the same loop and connections: the baseline the
heartbeat's Redis CPU is compared with."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from coordinator.bench.controllers import Beating, beat_all, simulated

CONCURRENCY = 16
BARE_SCRIPT = "return 1"


class BareCall:
    """One bare ``EVALSHA`` per ``beat()``: the same round trip as a heartbeat, no work."""

    def __init__(self, script: Any) -> None:
        self._script = script

    async def beat(self) -> Any:
        """Send the bare script once."""
        return await self._script()


async def main(url: str, namespace: str, first: int, count: int, rate: float,
               seconds: float, kind: str = "heartbeat") -> None:
    """Run one worker (see the module docstring)."""
    redis = aioredis.Redis.from_url(url, max_connections=CONCURRENCY)
    try:
        beats: list[Beating]
        if kind == "bare":
            beats = [BareCall(redis.register_script(BARE_SCRIPT))] * count
        else:
            beats = list(simulated(redis, namespace, range(first, first + count)))
        await redis.ping()
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        start = time.monotonic()
        sent = await beat_all(beats, concurrency=CONCURRENCY, rate=rate, seconds=seconds)
        print(json.dumps({"beats": sent, "elapsed": time.monotonic() - start}), flush=True)
    finally:
        await redis.aclose()


if __name__ == "__main__":
    url, namespace, first, count, rate, seconds = sys.argv[1:7]
    kind = sys.argv[7] if len(sys.argv) > 7 else "heartbeat"
    asyncio.run(main(url, namespace, int(first), int(count), float(rate), float(seconds), kind))
