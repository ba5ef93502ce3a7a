"""``coordinator watch`` and ``coordinator events``: one line per event on stdout."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from coordinator.cli.common import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, fail, quiet_broken_pipe
from coordinator.connection.backend import connect
from coordinator.errors import CoordinatorError, InvalidArgumentError
from coordinator.protocol.event_models import WatchEvent
from coordinator.settings import Settings
from coordinator.watching.history import events_since, parse_since
from coordinator.watching.watch import watch


def render(event: WatchEvent) -> str:
    """The human-readable line for ``event``: UTC time, type, summary."""
    when = datetime.fromtimestamp(event.at / 1000, UTC).isoformat(timespec="milliseconds")
    return f"{when.replace('+00:00', 'Z')}  {event.type:<23}  {event.summary()}"


def _emit(line: str) -> None:
    # flushed at once: a pipe reader sees each event as it happens, not when a buffer fills
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def watch_command(settings: Settings, *, as_json: bool) -> int:
    """Print events until SIGINT/SIGTERM (exit 0); the watcher reconnects by itself."""
    redis: Any = connect(settings, op_timeout=2.0)
    events = watch(redis, namespace=settings.namespace, lease_name=settings.lease_name)

    async def pump() -> None:
        async for event in events:
            _emit(json.dumps(event.to_dict(), separators=(",", ":")) if as_json else render(event))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    printing = asyncio.create_task(pump())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({printing, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (printing, stopping):
            task.cancel()
        await asyncio.gather(printing, stopping, return_exceptions=True)
        await events.aclose()
        await redis.aclose()
    error = printing.exception() if printing.done() and not printing.cancelled() else None
    if isinstance(error, BrokenPipeError):
        return quiet_broken_pipe()
    if isinstance(error, CoordinatorError):
        return fail(f"stopped watching {settings.redis_url_redacted}: {error}", EXIT_UNAVAILABLE)
    if error is not None:
        raise error
    return EXIT_OK


async def events_command(settings: Settings, *, since: str | None, as_json: bool) -> int:
    """Print the stored history (after an id, or younger than a duration), oldest first."""
    try:
        if since is not None:
            parse_since(since)
    except InvalidArgumentError as e:
        return fail(f"--{e}", EXIT_USAGE)
    redis: Any = connect(settings, op_timeout=2.0)
    try:
        history = await events_since(redis, settings.namespace, since)
    except InvalidArgumentError as e:  # a stream id later than Redis's clock
        return fail(f"--{e}", EXIT_USAGE)
    except CoordinatorError as e:
        return fail(f"cannot read the event history from {settings.redis_url_redacted}: {e}",
                    EXIT_UNAVAILABLE)
    finally:
        await redis.aclose()
    try:
        for stream_id, event in history:
            if as_json:
                _emit(json.dumps({"id": stream_id, **event.to_dict()}, separators=(",", ":")))
            else:
                _emit(f"{stream_id:<16}  {render(event)}")
    except BrokenPipeError:
        return quiet_broken_pipe()
    return EXIT_OK
