"""Every event published on a namespace's channel, as one subscriber in the bench saw it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from coordinator.protocol import keys

Event = dict[str, Any]
MARKER = "bench_marker"  # not a product event: the bench's own, see ``caught_up``


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class EventsLog:
    """Collects events in the background; ``wait_for`` finds one by a predicate."""

    def __init__(self, redis: Any, namespace: str) -> None:
        self._pubsub = redis.pubsub()
        self._channel = keys.events_channel(namespace)
        self._redis = redis
        # the bench's own channel on the same connection: what is published there after an
        # event arrives after it, so a marker seen means every earlier event was seen
        self._marker_channel = self._channel + ":bench-marker"
        self._markers = 0
        self.events: list[Event] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe (confirmed) and start collecting."""
        await self._pubsub.subscribe(self._channel, self._marker_channel)
        for _ in range(2):  # both confirmations
            await self._pubsub.get_message(timeout=5)
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        while True:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None and _text(message["channel"]) == self._marker_channel:
                self.events.append({"type": MARKER, "n": int(message["data"])})
                self._arrived.set()
            elif message is not None:
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(message["data"]))
                self._arrived.set()

    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float,
                       since: int = 0) -> Event | None:
        """The first event from index ``since`` that matches, or None after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._arrived.clear()  # before looking, so an event arriving meanwhile wakes us
            for event in self.events[since:]:
                if predicate(event):
                    return event
            left = deadline - loop.time()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def caught_up(self, timeout: float = 10.0) -> int:
        """Wait until every event published before now has arrived; the count so far
        (bench markers included), or raise ``TimeoutError``."""
        self._markers += 1
        n = self._markers
        await self._redis.publish(self._marker_channel, str(n))
        if await self.wait_for(lambda e: e.get("type") == MARKER and e.get("n") == n,
                               timeout) is None:
            raise TimeoutError(f"the bench's marker {n} did not come back within {timeout} s")
        return len(self.events)

    def by_lease(self, kind: str, since: int = 0, until: int | None = None) -> dict[str, int]:
        """Events of type ``kind`` among ``events[since:until]``, counted by their lease."""
        counts: dict[str, int] = {}
        for event in self.events[since:until]:
            if event.get("type") == kind:
                lease = str(event.get("lease"))
                counts[lease] = counts.get(lease, 0) + 1
        return counts

    async def close(self) -> None:
        """Stop collecting and drop the subscription."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
