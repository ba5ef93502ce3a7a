"""Capture the library's log events as dicts, through the standard logging module it uses."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from coordinator.logs import ROOT_LOGGER


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, dict):
            event = dict(record.msg)
            event.setdefault("log_level", event.get("level", record.levelname.lower()))
            self.events.append(event)


@contextlib.contextmanager
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    """Like structlog.testing.capture_logs: every event logged meanwhile, debug included."""
    logger = logging.getLogger(ROOT_LOGGER)
    handler = _Collect()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.events
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
