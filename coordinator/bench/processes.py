"""Child processes of the bench: their environment, and their CPU time and memory from /proc."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import coordinator

# the folder holding the ``coordinator`` package, so children import this very copy
PACKAGE_ROOT = str(Path(coordinator.__file__).resolve().parent.parent)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def child_env(redis_url: str, **settings: str) -> dict[str, str]:
    """This environment without any COORDINATOR_* variable, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + path if path else "")
    env["COORDINATOR_REDIS_URL"] = redis_url
    env.update({"COORDINATOR_" + k.upper(): v for k, v in settings.items()})
    return env


def python_module(module: str, *args: str) -> list[str]:
    """The command line running ``python -m module args...`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of ``pid`` (all its threads), or None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # fields after the parenthesised command name; utime and stime are fields 14 and 15
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MB (VmRSS), or None without /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


async def read_line(process: asyncio.subprocess.Process, timeout: float) -> str:
    """The next line ``process`` printed, stripped; TimeoutError after ``timeout`` seconds,
    EOFError if it closed its stdout."""
    if process.stdout is None:
        raise RuntimeError("the process was started without a stdout pipe")
    line = await asyncio.wait_for(process.stdout.readline(), timeout)
    if not line:
        raise EOFError(f"process {process.pid} closed its output")
    return line.decode().strip()


def write_line(process: asyncio.subprocess.Process, line: str) -> None:
    """Send one line to the stdin of ``process``."""
    if process.stdin is None:
        raise RuntimeError("the process was started without a stdin pipe")
    process.stdin.write((line + "\n").encode())
