"""Events on ``<namespace>:events``: building the daemon's own, and publishing them."""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

from coordinator.clock import Clock
from coordinator.connection.boundary import redis_errors
from coordinator.logs import get_logger
from coordinator.protocol import keys

log = get_logger("coordinator.events")


def encode(event: dict[str, Any]) -> str:
    """The compact JSON form every event is published in."""
    return json.dumps(event, separators=(",", ":"))


async def publish(redis: Any, namespace: str, event: dict[str, Any], *, history_maxlen: int) -> None:
    """PUBLISH ``event`` and append it to the history stream, in one MULTI round trip."""
    data = encode(event)
    history = keys.history_key(namespace)
    with redis_errors(history):
        pipe = redis.pipeline(transaction=True)
        pipe.xadd(history, {"event": data}, maxlen=history_maxlen, approximate=True)
        pipe.publish(keys.events_channel(namespace), data)
        await pipe.execute()


class Outbox:
    """Publishes events in order, holding them while Redis is away (bounded, oldest dropped)."""

    def __init__(
        self, redis: Any, namespace: str, *, history_maxlen: int, clock: Clock,
        retry_cap: float, maxlen: int = 1000,
    ) -> None:
        self._redis, self._namespace = redis, namespace
        self._history_maxlen, self._clock, self._retry_cap = history_maxlen, clock, retry_cap
        self._pending: collections.deque[dict[str, Any]] = collections.deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self._flushing = asyncio.Lock()

    def put(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for publishing."""
        self._pending.append(event)
        self._ready.set()

    async def run(self) -> None:
        """Publish queued events until cancelled."""
        failures = 0
        while True:
            await self._ready.wait()
            if not await self.flush():
                failures += 1
                delay = min(self._retry_cap, 0.05 * 2 ** min(failures, 10))
                await asyncio.sleep(delay * (0.5 + 0.5 * self._clock.jitter()))
            else:
                failures = 0

    async def flush(self) -> bool:
        """Publish what is queued; False if Redis refused or was away (events are kept)."""
        async with self._flushing:  # the loop and a shutdown may flush at once: one at a time
            return await self._flush()

    async def _flush(self) -> bool:
        while self._pending:
            try:
                await publish(self._redis, self._namespace, self._pending[0],
                              history_maxlen=self._history_maxlen)
            except Exception as e:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # redis-py may turn a cancellation into an error; do not swallow it
                    raise asyncio.CancelledError from e
                log.warning("events.publish_failed", error=str(e), queued=len(self._pending))
                return False
            self._pending.popleft()
        self._ready.clear()
        return True
