"""A subscriber in another process: ``python -m coordinator.bench.subscriber URL NAMESPACE LEASE
pubsub|watcher``. Prints ``ready``, then ``<type> <term> <monotonic ns>`` per tenure change.

``pubsub`` is a bare asyncio subscriber on the events channel; ``watcher`` is the
coordinator's own ``watch()``, which reads each change back from the history stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from coordinator.logs import configure_logging
from coordinator.protocol import keys
from coordinator.protocol.event_models import LeaderChanged, LeaseReleased, Resync
from coordinator.watching.watch import watch

TENURE_EVENTS = ("leader_changed", "lease_released")


def _say(kind: str, term: Any) -> None:
    sys.stdout.write(f"{kind} {term} {time.monotonic_ns()}\n")
    sys.stdout.flush()


async def bare_pubsub(redis: Any, namespace: str) -> None:
    """Print each tenure change published on the namespace's channel."""
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.events_channel(namespace))
    await pubsub.get_message(timeout=5)  # the subscribe confirmation
    print("ready", flush=True)
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
        if message is None:
            continue
        event = json.loads(message["data"])
        if event.get("type") in TENURE_EVENTS:
            _say(event["type"], event.get("term"))


async def coordinator_watcher(redis: Any, namespace: str, lease: str) -> None:
    """Print each tenure change the coordinator's watcher yields."""
    async for event in watch(redis, namespace=namespace, lease_name=lease):
        if isinstance(event, Resync):
            print("ready", flush=True)
        elif isinstance(event, LeaderChanged):
            _say("leader_changed", event.term)
        elif isinstance(event, LeaseReleased):
            _say("lease_released", event.term)


async def main(url: str, namespace: str, lease: str, mode: str) -> None:
    """Subscribe and print until killed."""
    redis = aioredis.Redis.from_url(url)
    if mode == "pubsub":
        await bare_pubsub(redis, namespace)
    else:
        await coordinator_watcher(redis, namespace, lease)


if __name__ == "__main__":
    configure_logging("json", level=logging.WARNING)  # stdout carries the protocol only
    asyncio.run(main(*sys.argv[1:5]))
