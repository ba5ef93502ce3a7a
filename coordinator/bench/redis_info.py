"""What Redis says about itself: version, CPU, per-command stats, and its clock against ours."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CommandStat:
    """Calls and total microseconds of one command, as ``INFO commandstats`` counts them."""

    calls: int
    usec: int


async def command_stats(redis: Any) -> dict[str, CommandStat]:
    """``INFO commandstats`` as ``{command: CommandStat}`` (e.g. ``"evalsha"``)."""
    return parse_command_stats(await redis.info("commandstats"))


def parse_command_stats(info: dict[str, Any]) -> dict[str, CommandStat]:
    """The parsed reply of ``INFO commandstats`` (from a sync or an async client)."""
    out = {}
    for name, fields in info.items():
        if isinstance(fields, dict):
            out[name.removeprefix("cmdstat_")] = CommandStat(int(fields["calls"]),
                                                             int(fields["usec"]))
    return out


def usec_per(before: dict[str, CommandStat], after: dict[str, CommandStat], operations: int,
             commands: tuple[str, ...]) -> float | None:
    """Redis CPU microseconds per operation, from the growth of the operation's own commands.

    Only the commands the client sends count: Redis also counts each command a script calls,
    inside the script's own time, so adding every line would count those twice.
    """
    delta = stats_delta(before, after)
    total = sum(delta[c].usec for c in commands if c in delta)
    return round(total / operations, 3) if operations else None


def stats_delta(before: dict[str, CommandStat], after: dict[str, CommandStat]
                ) -> dict[str, CommandStat]:
    """Per-command growth between two ``command_stats`` readings (INFO itself left out)."""
    out = {}
    for name, stat in after.items():
        old = before.get(name, CommandStat(0, 0))
        if name != "info" and stat.calls > old.calls:
            out[name] = CommandStat(stat.calls - old.calls, stat.usec - old.usec)
    return out


SCRIPT_COMMANDS = ("evalsha", "eval", "fcall", "fcall_ro")


def script_calls(delta: dict[str, CommandStat]) -> CommandStat | None:
    """The growth of script calls in one ``stats_delta``, whichever way they were sent (our
    scripts go by FCALL where the function library is installed, by EVALSHA elsewhere; a bare
    reference call by EVALSHA): None when there was none."""
    stats = [delta[c] for c in SCRIPT_COMMANDS if c in delta]
    if not stats:
        return None
    return CommandStat(sum(s.calls for s in stats), sum(s.usec for s in stats))


async def cpu_seconds(redis: Any) -> float:
    """User plus system CPU seconds the Redis server process has used so far."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def server_version(redis: Any) -> str:
    """The Redis server version string."""
    info = await redis.info("server")
    return str(info.get("redis_version", "unknown"))


async def clock_offset_ms(redis: Any, tries: int = 15) -> float:
    """Redis clock minus the local wall clock, in ms, from the quickest of ``tries`` TIME calls."""
    best = (float("inf"), 0.0)
    for _ in range(max(1, tries)):
        sent = time.time()
        seconds, micros = await redis.time()
        received = time.time()
        rtt = received - sent
        offset = (int(seconds) + int(micros) / 1e6) - (sent + received) / 2
        if rtt < best[0]:
            best = (rtt, offset)
    return best[1] * 1000
