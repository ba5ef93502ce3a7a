"""The capped history stream: "who led when", read by id or by age."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from coordinator.connection.boundary import reading, redis_errors, text, text_map
from coordinator.errors import CorruptDataError, InvalidArgumentError
from coordinator.logs import get_logger
from coordinator.protocol import keys
from coordinator.protocol.event_models import Gap, WatchEvent, parse_event
from coordinator.protocol.membership import redis_time_ms

log = get_logger("coordinator.history")

PAGE = 500
_STREAM_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_MAX_PART = 2**64 - 1
_MAX_AGE_MS = 100 * 365 * 86_400_000  # a century: anything older is before any event


def parse_stream_id(value: str) -> tuple[int, int]:
    """``"<ms>-<seq>"`` as a comparable pair, or ``InvalidArgumentError``."""
    match = _STREAM_ID.match(value) if isinstance(value, str) else None
    if match is None or max(int(match[1]), int(match[2])) > _MAX_PART:
        raise InvalidArgumentError(f"stream id must look like 1700000000000-0, got {value!r}")
    return int(match[1]), int(match[2])


def next_stream_id(value: str) -> str:
    """The smallest id after ``value`` (an inclusive start that excludes ``value`` itself)."""
    ms, seq = parse_stream_id(value)
    return f"{ms}-{seq + 1}" if seq < _MAX_PART else f"{ms + 1}-0"


def parse_duration_ms(value: str) -> int:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"1d"``, ``"500ms"`` as milliseconds, or raise."""
    match = _DURATION.match(value.strip()) if isinstance(value, str) else None
    amount = float(match[1]) * _UNIT_MS[match[2]] if match is not None else math.nan
    if not math.isfinite(amount):  # no match, or so many digits that it overflows
        raise InvalidArgumentError(
            f"duration must be a number and a unit (ms, s, m, h, d) such as 10m, got {value!r}")
    return round(amount)


@dataclass(frozen=True)
class Since:
    """Where a history read starts: after a stream id, or at an age (ms) before Redis's now."""

    value: str
    start_id: str | None = None  # the inclusive start (the id after the one given)
    age_ms: int | None = None


def parse_since(value: str) -> Since:
    """``--since``: a stream id or a duration, checked whole before Redis is asked.

    Every unusable value is one ``InvalidArgumentError`` naming it: malformed, a stream id
    out of range or with no successor, a duration of zero, too large or not finite."""
    def refuse(why: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"since {value!r}: {why}")

    if not isinstance(value, str):
        raise refuse("must be a stream id such as 1700000000000-0 or a duration such as 10m")
    if is_stream_id(value):
        try:
            ms, seq = parse_stream_id(value)
        except InvalidArgumentError:
            raise refuse(f"each part of a stream id is at most {_MAX_PART}") from None
        if ms == _MAX_PART and seq == _MAX_PART:
            raise refuse("no stream id comes after it")
        return Since(value, start_id=next_stream_id(value))
    try:
        age = parse_duration_ms(value)
    except (InvalidArgumentError, OverflowError, ValueError):
        raise refuse("must be a stream id such as 1700000000000-0 or a duration "
                     "(a number and ms, s, m, h or d) such as 10m") from None
    if age <= 0:
        raise refuse("a duration must be at least 1 ms")
    if age > _MAX_AGE_MS:
        raise refuse("a duration must be at most 100 years")
    return Since(value, age_ms=age)


def is_stream_id(value: str) -> bool:
    """Whether ``value`` looks like a stream id rather than a duration."""
    return isinstance(value, str) and _STREAM_ID.match(value) is not None


async def read_entries(redis: Any, namespace: str, start: str = "-") -> list[tuple[str, str]]:
    """Raw ``(id, event JSON)`` entries from ``start`` (inclusive) to the end, in order."""
    key = keys.history_key(namespace)
    entries: list[tuple[str, str]] = []
    while True:
        page = await _xrange(redis, key, start)
        for entry_id, fields in page:
            entries.append((str(text(entry_id)), text_map(fields).get("event", "")))
        if len(page) < PAGE:
            return entries
        start = next_stream_id(entries[-1][0])


async def reach_gap(redis: Any, namespace: str, cursor: str) -> Gap | None:
    """A ``Gap`` if the history no longer reaches back to ``cursor``, else None.

    Trimming removes the oldest entries: while the cursor's own entry is there, nothing after
    it is gone. A cursor whose entry is gone with only newer entries left, or a stream that is
    empty or whose newest entry is older than the cursor (Redis restarted empty), is a gap.
    The start of time ("0-0") never is."""
    if parse_stream_id(cursor) == (0, 0):
        return None
    key = keys.history_key(namespace)
    with reading(key, "a stream"):
        at_cursor = await redis.xrange(key, min=cursor, max=cursor, count=1)
        if at_cursor:
            return None
        oldest = await redis.xrange(key, min="-", max="+", count=1)
        newest = await redis.xrevrange(key, count=1)
    with redis_errors(key):
        now = await redis_time_ms(redis)
    oldest_id = str(text(oldest[0][0])) if oldest else None
    newest_id = str(text(newest[0][0])) if newest else None
    reset = newest_id is None or parse_stream_id(newest_id) < parse_stream_id(cursor)
    if not reset and oldest_id is not None and parse_stream_id(oldest_id) < parse_stream_id(cursor):
        return None  # the cursor's entry was deleted on its own, not trimmed away
    log.warning("history.gap", cursor=cursor, oldest_id=None if reset else oldest_id)
    return Gap(cursor=cursor, oldest_id=None if reset else oldest_id, at=now)


async def last_entry_id(redis: Any, namespace: str) -> str | None:
    """The id of the newest entry, or None when the stream is empty or missing."""
    key = keys.history_key(namespace)
    with reading(key, "a stream"):
        newest = await redis.xrevrange(key, count=1)
    return str(text(newest[0][0])) if newest else None


def parse_entries(entries: list[tuple[str, str]], namespace: str) -> list[tuple[str, WatchEvent]]:
    """Typed events of raw entries; a malformed entry is logged and skipped, never fatal."""
    source = keys.history_key(namespace)
    parsed: list[tuple[str, WatchEvent]] = []
    for entry_id, raw in entries:
        try:
            parsed.append((entry_id, parse_event(raw, source=source, stream_id=entry_id)))
        except CorruptDataError as e:
            log.warning("history.malformed_event", id=entry_id, error=e.detail)
    return parsed


async def events_since(
    redis: Any, namespace: str, since: str | None = None
) -> list[tuple[str, WatchEvent]]:
    """Every stored event after a stream id, or younger than a duration (Redis clock), in
    order; after a stream id the history no longer reaches back to, a ``Gap`` comes first."""
    keys.check_name("namespace", namespace)
    start = "-"
    if since is not None:
        wanted = parse_since(since)  # bad input is refused before Redis is asked
        with redis_errors(keys.history_key(namespace)):
            now = await redis_time_ms(redis)
        if wanted.age_ms is not None:
            start = f"{max(0, now - wanted.age_ms)}-0"
        elif wanted.start_id is not None:
            if parse_stream_id(since)[0] > now:
                raise InvalidArgumentError(f"since {since!r}: is later than Redis's clock")
            start = wanted.start_id
            gap = await reach_gap(redis, namespace, since)
            if gap is not None:
                return [(since, gap), *parse_entries(await read_entries(redis, namespace, start),
                                                     namespace)]
    return parse_entries(await read_entries(redis, namespace, start), namespace)


async def _xrange(redis: Any, key: str, start: str) -> list[Any]:
    with reading(key, "a stream"):
        return list(await redis.xrange(key, min=start, max="+", count=PAGE))
