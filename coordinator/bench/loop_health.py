"""How healthy this process's side was while in-process nodes ran: the event loop's lag
(a 10 ms sleep's overshoot: every node shares this one loop, so a loop running late makes
every node late), and the warnings the nodes logged, by event name."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from coordinator.bench.stats import summary_ms
from coordinator.logs import ROOT_LOGGER

TICK = 0.01


class LoopHealth:
    """Samples the loop's lag and counts the ``coordinator`` loggers' warnings; ``take()``
    returns both since the last ``take()`` and starts afresh."""

    def __init__(self) -> None:
        self._lags: list[float] = []
        self._warnings: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._handler = _Tally(self._warnings)

    def start(self) -> None:
        """Start sampling and counting."""
        logging.getLogger(ROOT_LOGGER).addHandler(self._handler)
        self._task = asyncio.ensure_future(self._sample())

    async def _sample(self) -> None:
        while True:
            began = time.monotonic()
            await asyncio.sleep(TICK)
            self._lags.append((time.monotonic() - began - TICK) * 1000)

    def take(self) -> dict[str, Any]:
        """``loop_lag_ms`` (summary) and ``node_warnings`` ({event: count}) since last time."""
        out = {"loop_lag_ms": summary_ms(self._lags), "node_warnings": dict(self._warnings)}
        self._lags.clear()
        self._warnings.clear()
        return out

    async def stop(self) -> None:
        """Stop sampling and counting."""
        logging.getLogger(ROOT_LOGGER).removeHandler(self._handler)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class _Tally(logging.Handler):
    def __init__(self, counts: Counter[str]) -> None:
        super().__init__(logging.WARNING)
        self._counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        event = record.msg.get("event") if isinstance(record.msg, dict) else record.getMessage()
        self._counts[str(event)] += 1
