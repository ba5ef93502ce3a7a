"""The machine and software a bench ran on, for the report's header."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from redis.utils import HIREDIS_AVAILABLE

from coordinator.bench.redis_info import server_version


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (a sign of how noisy the run was)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


async def machine_info(redis: Any) -> dict[str, Any]:
    """nproc, CPU model, Redis, Python and client versions, and the load when starting."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "redis_version": await server_version(redis),
        "python_version": platform.python_version(),
        "redis_py_version": _version("redis"),
        "hiredis": bool(HIREDIS_AVAILABLE),
        "load_average_at_start": load_average(),
    }
