"""The bench's own namespaces (one random prefix) and leaving Redis as it was found."""

from __future__ import annotations

import secrets
from typing import Any


class BenchNamespace:
    """``bench-<random>`` and its parts (``bench-<random>-watch``, ...), all under one prefix.

    Every key the bench or its processes write starts with ``{bench-<random>``: the hash tag
    of each part's namespace opens with it, and peers are given it as their key prefix.
    """

    def __init__(self, token: str | None = None) -> None:
        self.root = "bench-" + (token or secrets.token_hex(4))

    def part(self, name: str) -> str:
        """The namespace of one part of the bench, e.g. ``bench-1a2b3c4d-failover``."""
        return f"{self.root}-{name}"

    def key(self, part: str, name: str) -> str:
        """A key of the bench's own (not a coordinator key) under ``part``'s hash tag."""
        return "{" + self.part(part) + "}:bench:" + name

    @property
    def key_pattern(self) -> str:
        """SCAN pattern matching every key of every part (``{`` is not special in patterns)."""
        return "{" + self.root + "*"

    def peer_prefix(self, name: str) -> str:
        """A key prefix for a peer library, inside the bench's pattern."""
        return "{" + self.part(name) + "}"


async def scan_keys(redis: Any, pattern: str) -> list[str]:
    """Every key matching ``pattern`` (SCAN, never KEYS)."""
    found = []
    async for key in redis.scan_iter(match=pattern, count=1000):
        found.append(key.decode() if isinstance(key, bytes) else str(key))
    return found


async def delete_all(redis: Any, pattern: str) -> int:
    """Delete every key matching ``pattern``; returns how many were deleted."""
    doomed = await scan_keys(redis, pattern)
    for i in range(0, len(doomed), 500):
        await redis.unlink(*doomed[i:i + 500])
    return len(doomed)
