"""``coordinator watch`` and ``coordinator events``: one line per event on stdout."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Collection, Sequence
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


def lease_filter(values: Sequence[str] | None) -> tuple[str, ...] | None:
    """The lease names of ``--lease`` (repeated, comma-separated, ranges), in order, each
    once; None when not given. Raises ``InvalidArgumentError`` for a bad name."""
    if values is None:
        return None
    from coordinator.leases.names import LeaseSettingError, parse_lease_names

    names: list[str] = []
    for value in values:
        try:
            names.extend(parse_lease_names(value))
        except LeaseSettingError as e:
            raise InvalidArgumentError(f"lease: {e.rule} (got {value!r})") from None
        if not value.strip():
            raise InvalidArgumentError("lease: name a lease (got '')")
    return tuple(dict.fromkeys(names))


def concerns(event: WatchEvent, leases: Collection[str] | None) -> bool:
    """Whether ``--lease`` shows ``event``: every event without it; with it, the events of
    the leases named and the namespace-wide ones that name no lease."""
    if leases is None:
        return True
    lease = event.to_dict().get("lease")
    return not isinstance(lease, str) or lease in leases


def _emit(line: str) -> None:
    # flushed at once: a pipe reader sees each event as it happens, not when a buffer fills
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def watch_command(settings: Settings, *, as_json: bool,
                        leases: Sequence[str] | None = None) -> int:
    """Print events until SIGINT/SIGTERM (exit 0); the watcher reconnects by itself. With
    ``leases`` (``--lease``), only those leases' events and the namespace-wide ones."""
    try:
        only = lease_filter(leases)
    except InvalidArgumentError as e:
        return fail(f"--{e}", EXIT_USAGE)
    redis: Any = connect(settings, op_timeout=2.0)
    events = watch(redis, namespace=settings.namespace, lease_name=settings.lease_name,
                   leases=only)

    async def pump() -> None:
        async for event in events:
            if not concerns(event, only):
                continue
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


async def events_command(settings: Settings, *, since: str | None, as_json: bool,
                         leases: Sequence[str] | None = None) -> int:
    """Print the stored history (after an id, or younger than a duration), oldest first;
    with ``leases`` (``--lease``), only those leases' events and the namespace-wide ones."""
    try:
        if since is not None:
            parse_since(since)
        only = lease_filter(leases)
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
            if not concerns(event, only):
                continue
            if as_json:
                _emit(json.dumps({"id": stream_id, **event.to_dict()}, separators=(",", ":")))
            else:
                _emit(f"{stream_id:<16}  {render(event)}")
    except BrokenPipeError:
        return quiet_broken_pipe()
    return EXIT_OK
