"""Summaries of timing samples: percentiles by nearest rank, in milliseconds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(samples: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``samples`` by nearest rank."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(samples_ms: Sequence[float]) -> dict[str, Any]:
    """``n``, ``min``, ``p50``, ``p99`` and ``max`` of samples already in ms (None if empty)."""
    if not samples_ms:
        return {"n": 0, "min_ms": None, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "n": len(samples_ms),
        "min_ms": round(min(samples_ms), 4),
        "p50_ms": round(percentile(samples_ms, 50), 4),
        "p99_ms": round(percentile(samples_ms, 99), 4),
        "max_ms": round(max(samples_ms), 4),
    }


def ns_to_ms(samples_ns: Sequence[int]) -> list[float]:
    """Nanosecond durations as milliseconds."""
    return [s / 1e6 for s in samples_ns]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` rounded, or None when either is missing or zero."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)
