"""The boundary with redis-py: its exceptions become ours, its bytes become text."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from coordinator.connection import redis_exceptions
from coordinator.connection.redis_exceptions import unavailable
from coordinator.errors import BackendUnavailableError, CoordinatorError, CorruptDataError

if TYPE_CHECKING:
    from coordinator.connection.redis_exceptions import Unavailable

    UNAVAILABLE: Unavailable


def __getattr__(name: str) -> Any:
    # UNAVAILABLE names redis-py's classes: built when a module imports it, so that importing
    # this one loads no redis-py (see coordinator/connection/redis_exceptions.py)
    if name == "UNAVAILABLE":
        return unavailable()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextlib.contextmanager
def redis_errors(key: str) -> Iterator[None]:
    """Translate redis-py errors raised in the block; ``key`` names what was touched."""
    try:
        yield
    except unavailable() as e:
        raise BackendUnavailableError(f"Redis unavailable: {type(e).__name__}: {e}") from e
    except redis_exceptions.RedisError as e:
        if _during_connection_setup(e):
            raise BackendUnavailableError(f"Redis refused the connection's set-up: {e}") from e
        raise CoordinatorError(f"Redis refused an operation on {key}: {e}") from e


def _during_connection_setup(error: BaseException) -> bool:
    """Whether redis-py raised ``error`` while setting a new connection up (AUTH, SELECT,
    HELLO: a wrong password or database index), not while running the command on ``key``."""
    import traceback  # only once an error is on its way

    frames = traceback.walk_tb(error.__traceback__)
    return any(frame.f_code.co_name.startswith("on_connect") for frame, _ in frames)


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
