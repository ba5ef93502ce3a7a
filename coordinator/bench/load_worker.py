"""A process of simulated controllers: ``python -m coordinator.bench.load_worker URL NS FIRST COUNT
RATE SECONDS``. Prints ``ready``, waits for a line on stdin, heartbeats at RATE for SECONDS,
then prints ``{"beats": n, "elapsed": s}``."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import redis.asyncio as aioredis

from coordinator.bench.controllers import beat_all, simulated

CONCURRENCY = 16


async def main(url: str, namespace: str, first: int, count: int, rate: float,
               seconds: float) -> None:
    """Run one worker (see the module docstring)."""
    redis = aioredis.Redis.from_url(url, max_connections=CONCURRENCY)
    try:
        beats = simulated(redis, namespace, range(first, first + count))
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
    asyncio.run(main(url, namespace, int(first), int(count), float(rate), float(seconds)))
