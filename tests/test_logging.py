"""An embedded daemon logs through the standard logging module, never to stdout."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pytest

from coordinator.daemon.daemon import Daemon
from coordinator.settings import load_settings

FAST = {"lease_ttl": 2, "renew_interval": 0.5, "heartbeat_interval": 0.5}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_an_embedded_daemon_logs_through_logging_and_not_to_stdout(
    redis: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = _Records()
    logger = logging.getLogger("coordinator")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        daemon = Daemon(load_settings(node_id="embedded", namespace="logging", **FAST), redis=redis)
        await daemon.start()
        await daemon.stop()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    out = capsys.readouterr()
    assert out.out == "", out.out  # the application's stdout is its own
    names = {r.name for r in handler.records}
    assert "coordinator.daemon" in names
    events = [r.msg.get("event") for r in handler.records if isinstance(r.msg, dict)]
    assert "daemon.started" in events and "daemon.stopped" in events
    assert all(r.levelno >= logging.INFO for r in handler.records)  # no debug at INFO


def test_the_library_leaves_global_logging_alone() -> None:
    # a host that set up structlog its own way keeps it: importing and running the daemon's
    # logging does not call structlog.configure
    code = (
        "import structlog, coordinator.daemon.daemon, coordinator.logs\n"
        "before = structlog.get_config()['processors']\n"
        "coordinator.logs.get_logger('coordinator.x').info('x.y')\n"
        "assert structlog.get_config()['processors'] == before\n"
        "import logging; assert logging.getLogger().handlers == []\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
