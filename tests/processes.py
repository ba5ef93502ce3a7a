"""Real ``coordinator run`` processes for end-to-end tests, and what they logged."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAST = {"COORDINATOR_LEASE_TTL": "2", "COORDINATOR_RENEW_INTERVAL": "0.5",
        "COORDINATOR_HEARTBEAT_INTERVAL": "0.5"}


def coordinator_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a coordinator process run from this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    env.update(PYTHONPATH=str(ROOT), COORDINATOR_REDIS_URL=redis_url,
               COORDINATOR_LOG_FORMAT="json", **FAST)
    env.update(extra)
    return env


def coordinator(*args: str, redis_url: str, timeout: float = 15, **env: str) -> subprocess.CompletedProcess[str]:
    """Run one ``coordinator`` command to completion."""
    return subprocess.run([sys.executable, "-m", "coordinator", *args], env=coordinator_env(
        redis_url, **env), capture_output=True, text=True, timeout=timeout, check=False)


def wait_for(check: Any, timeout: float, what: str = "the condition") -> Any:
    """Poll ``check`` every 20 ms until it returns something truthy (returned); fail the test
    after ``timeout`` seconds."""
    import pytest

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"{what}: not within {timeout} s")


def spread(held: dict[str, Any]) -> list[int]:
    """How many leases each holder holds, fewest first (``held``: lease -> holder, or
    lease -> (holder, term))."""
    per: dict[str, int] = {}
    for value in held.values():
        node = value[0] if isinstance(value, tuple) else value
        per[node] = per.get(node, 0) + 1
    return sorted(per.values())


@dataclass
class DaemonProcess:
    """One ``coordinator run`` and its log file."""

    node_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    killed_at: float | None = None  # wall time of a kill -9
    lines: list[dict[str, Any]] = field(default_factory=list)

    def signal(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            self.killed_at = time.time()
        self.process.send_signal(sig)

    def logs(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far."""
        out = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def leadership_intervals(self, end: float) -> list[tuple[float, float]]:
        """Wall-time intervals during which this process may have scheduled."""
        intervals, start = [], None
        for entry in self.logs():
            at = datetime.fromisoformat(entry["timestamp"]).timestamp()
            if entry["event"] == "leader.started":
                start = at
            elif entry["event"] == "leader.stopped" and start is not None:
                intervals.append((start, at))
                start = None
        if start is not None:
            intervals.append((start, self.killed_at or end))
        return intervals


@contextlib.contextmanager
def daemons(redis_url: str, node_ids: list[str], workdir: Path, **env: str) -> Iterator[dict[str, DaemonProcess]]:
    """Start one daemon per node id; every one is gone when the block ends."""
    started: dict[str, DaemonProcess] = {}
    try:
        for node in node_ids:
            log_path = workdir / f"{node}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "coordinator", "run"],
                    env=coordinator_env(redis_url, COORDINATOR_NODE_ID=node, **env),
                    stdout=log, stderr=subprocess.STDOUT,
                )
            started[node] = DaemonProcess(node, process, log_path)
        yield started
    finally:
        for d in started.values():
            if d.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    d.process.send_signal(signal.SIGCONT)
                    d.process.kill()
            d.process.wait(timeout=10)
