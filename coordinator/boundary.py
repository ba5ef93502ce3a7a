"""The boundary with redis-py: its exceptions become ours, its bytes become text."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from redis import exceptions as redis_exceptions

from coordinator.errors import BackendUnavailableError, CoordinatorError, CorruptDataError

UNAVAILABLE = (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError, OSError)


@contextlib.contextmanager
def redis_errors(key: str) -> Iterator[None]:
    """Translate redis-py errors raised in the block; ``key`` names what was touched."""
    try:
        yield
    except UNAVAILABLE as e:
        raise BackendUnavailableError(f"Redis unavailable: {type(e).__name__}: {e}") from e
    except redis_exceptions.RedisError as e:
        raise CoordinatorError(f"Redis refused an operation on {key}: {e}") from e


def text(value: Any) -> Any:
    """``value`` decoded if it is bytes, else unchanged (clients may or may not decode)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def text_map(raw: dict[Any, Any]) -> dict[str, str]:
    """A hash reply with keys and values decoded."""
    return {str(text(k)): str(text(v)) for k, v in raw.items()}


@contextlib.contextmanager
def reading(key: str, what: str) -> Iterator[None]:
    """``redis_errors`` for a read: a refused read (wrong type) means the key holds data we
    did not write, reported as ``CorruptDataError`` naming ``key``."""
    try:
        with redis_errors(key):
            yield
    except CoordinatorError as e:
        if isinstance(e.__cause__, redis_exceptions.ResponseError):
            raise CorruptDataError(key, f"cannot be read as {what} ({e.__cause__})") from e
        raise
