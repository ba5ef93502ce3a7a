"""A real redis-py client that counts its own round trips, by what they were: a product
script (by name, whether sent as FCALL or EVALSHA), a pipeline (one round trip however many
commands it carries), or a plain command. For the placement part: what a real node sends.

Counted on the client, where a round trip is one request and one wait for its reply: the
Redis side's ``INFO commandstats`` also counts the commands a script runs, so it cannot say
how many requests came. A node's events subscription is its own connection (``pubsub()``),
one long-lived SUBSCRIBE, and is not counted.
"""

from __future__ import annotations

import time
from collections import Counter
from functools import cache
from typing import Any

from coordinator.protocol.functions import function_name
from coordinator.protocol.scripts import SCRIPT_NAMES, script_sha


@cache
def _script_names() -> dict[str, str]:
    """FCALL function name or EVALSHA digest -> script name."""
    names = {function_name(n): n for n in SCRIPT_NAMES}
    names.update({script_sha(n): n for n in SCRIPT_NAMES})
    return names


def call_kind(args: tuple[Any, ...]) -> str:
    """``script:renew_many``, ``command:GET``, ... for one command's arguments."""
    head = str(args[0]).upper() if args else "?"
    if head in ("FCALL", "EVALSHA", "FCALL_RO") and len(args) > 1:
        target = args[1].decode() if isinstance(args[1], bytes) else str(args[1])
        return "script:" + _script_names().get(target, "other")
    return "command:" + head


class CallCounter:
    """Round trips of one client by kind, and how long each ``renew_many`` call took."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.pipelined_commands = 0
        self.renew_many_ms: list[float] = []

    def reset(self) -> None:
        """Start counting afresh (the window of a measurement)."""
        self.calls.clear()
        self.pipelined_commands = 0
        self.renew_many_ms.clear()

    @property
    def round_trips(self) -> int:
        """Every counted request."""
        return sum(self.calls.values())


def counted(redis: Any, counter: CallCounter) -> Any:
    """``redis`` itself, its ``execute_command`` and ``pipeline`` counting into ``counter``."""
    send = redis.execute_command
    open_pipeline = redis.pipeline

    async def execute_command(*args: Any, **options: Any) -> Any:
        kind = call_kind(args)
        began = time.monotonic()
        try:
            return await send(*args, **options)
        finally:
            counter.calls[kind] += 1
            if kind == "script:renew_many":
                counter.renew_many_ms.append((time.monotonic() - began) * 1000)

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = open_pipeline(*args, **kwargs)
        run = pipe.execute

        async def execute(*a: Any, **kw: Any) -> Any:
            counter.calls["pipeline"] += 1
            counter.pipelined_commands += len(pipe.command_stack)
            return await run(*a, **kw)

        pipe.execute = execute
        return pipe

    redis.execute_command = execute_command
    redis.pipeline = pipeline
    return redis
