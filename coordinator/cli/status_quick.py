"""``coordinator status`` on the quick path: the settings read without pydantic
(``status_settings``), the snapshot read by the very ``cluster_status`` the full path runs,
through the standard-library client (``connection/resp_client.py``) instead of redis-py.

Importing pydantic-settings and redis-py took most of the command's time. Where this path
cannot answer exactly as the full one would (settings it does not read, Sentinel, Cluster,
TLS, any error reply or failure of the read), it answers None, having printed nothing, and
the full path runs from the start: status only reads, so reading twice changes nothing, and
every message and exit status stays the full path's own."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from coordinator.cli.flags import COMMAND_SETTINGS, overrides_for
from coordinator.cli.status_settings import StatusSettings, status_settings
from coordinator.connection.resp_client import RespClient

# seconds each command to Redis may take, on either path
OP_TIMEOUT = 2.0


def quick_snapshot(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``cluster_status`` snapshot for ``coordinator status ARGS``, or None when the
    full path must answer."""
    if "asyncio" in sys.modules:  # loaded before us (an embedding, a sitecustomize):
        return None  # bounded() would want a running loop, which this path has not got
    try:
        settings = status_settings(overrides_for("status", args), COMMAND_SETTINGS["status"])
        if settings is None:
            return None
        return run_without_a_loop(_read(settings))
    except Exception:  # whatever it was, the full path meets it too, and says so
        return None


T = TypeVar("T")


def run_without_a_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end with no event loop loaded (asyncio is a fifth of the
    start-up): the stdlib client blocks instead of suspending, so no await suspends it. One
    that does waits on a loop this driver has not got: RuntimeError, the full path answers."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("the status read waited on an event loop")


async def _read(settings: StatusSettings) -> dict[str, Any]:
    from coordinator.watching.status import cluster_status

    redis = RespClient(settings.redis_url, timeout=OP_TIMEOUT)
    try:
        # duck-typed: an attribute of Settings beyond StatusSettings' raises AttributeError
        reader: Any = settings
        return await cluster_status(redis, reader)
    finally:
        await redis.aclose()
