"""Real ``coordinator run`` processes for the bench, each logging JSON lines to its own file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path

from coordinator.bench.processes import child_env, python_module


class DaemonProcess:
    """One ``coordinator run`` in a namespace of the bench."""

    def __init__(self, redis_url: str, namespace: str, node_id: str, workdir: Path,
                 **settings: str) -> None:
        self.node_id = node_id
        self.log_path = workdir / f"{namespace}-{node_id}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                python_module("coordinator", "run"),
                env=child_env(redis_url, namespace=namespace, node_id=node_id, log_format="json",
                              **settings),
                stdout=log, stderr=subprocess.STDOUT)
        self.killed_at: float | None = None  # local wall time of a kill -9

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def logged(self, event: str) -> bool:
        """Whether the daemon has logged ``event`` (e.g. ``daemon.started``)."""
        try:
            text = self.log_path.read_text()
        except OSError:
            return False
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                if json.loads(line).get("event") == event:
                    return True
        return False

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def terminate(self) -> None:
        """SIGTERM: the graceful stop that releases a held lease."""
        self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, noting when."""
        self.killed_at = time.time()
        self.process.kill()

    def reap(self) -> None:
        """Make sure the process is gone and waited for."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


async def wait_started(daemons: list[DaemonProcess], timeout: float = 30.0) -> None:
    """Wait until every daemon has logged ``daemon.started`` (its loops are running)."""
    deadline = time.monotonic() + timeout
    while not all(d.logged("daemon.started") for d in daemons):
        dead = [d.node_id for d in daemons if not d.alive()]
        if dead:
            raise RuntimeError(f"daemon(s) {', '.join(dead)} exited while starting")
        if time.monotonic() > deadline:
            raise TimeoutError("daemons did not start in time")
        await asyncio.sleep(0.05)
