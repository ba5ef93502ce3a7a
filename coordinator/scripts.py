"""Finds the Lua scripts (installed wheel or source checkout) and registers them per client."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from redis import exceptions as redis_exceptions
from redis.commands.core import AsyncScript

from coordinator.boundary import redis_errors, text
from coordinator.errors import CorruptDataError, UnexpectedReplyError

SCRIPT_NAMES = ("acquire", "renew", "release", "fence", "heartbeat", "set_mode", "request_handoff", "controllers")


def lua_directory() -> Path:
    """The folder holding ``*.lua``: inside the installed package, else the checkout's ``lua/``."""
    packaged = Path(str(resources.files("coordinator"))) / "lua"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "lua"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"Lua scripts not found in {packaged} or {checkout}")


@cache
def script_source(name: str) -> str:
    """The text of ``lua/<name>.lua``, read once per process."""
    if name not in SCRIPT_NAMES:
        raise KeyError(name)
    return (lua_directory() / f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Scripts:
    """The scripts registered on one client; each call is one EVALSHA with NOSCRIPT reload."""

    acquire: AsyncScript
    renew: AsyncScript
    release: AsyncScript
    fence: AsyncScript
    heartbeat: AsyncScript
    set_mode: AsyncScript
    request_handoff: AsyncScript
    controllers: AsyncScript


def register_scripts(redis: Any) -> Scripts:
    """Register every script on ``redis`` (a ``redis.asyncio`` client or FakeAsyncRedis)."""
    return Scripts(**{name: redis.register_script(script_source(name)) for name in SCRIPT_NAMES})


@contextlib.contextmanager
def script_errors() -> Iterator[None]:
    """Inside ``redis_errors``, for a script call: the scripts' error replies for a foreign key
    (``COORDINATOR_WRONGTYPE <key>``, ``COORDINATOR_CORRUPT <key> <field>``) become
    ``CorruptDataError`` naming that key. They are error replies, never values in the
    reply, so no user data (a controller whose host is "wrongtype") can look like one."""
    try:
        yield
    except redis_exceptions.ResponseError as e:
        code, _, rest = str(e).partition(" ")
        bad_key, _, field = rest.partition(" ")
        if code == "COORDINATOR_WRONGTYPE" and bad_key:
            raise CorruptDataError(bad_key, "holds a value of a type the coordinator never writes") from e
        if code == "COORDINATOR_CORRUPT" and bad_key:
            raise CorruptDataError(bad_key, f"field {field!r} is missing, malformed or out of range") from e
        raise


async def run_script(script: AsyncScript, keys: list[str], args: list[Any]) -> list[Any]:
    """Run one script and return its reply with bytes decoded; Redis failures and the
    scripts' error replies are translated at this boundary (see ``script_errors``)."""
    with redis_errors(keys[0]), script_errors():
        reply = await script(keys=keys, args=args)
    return _checked(reply)


async def run_script_and_wait(
    script: AsyncScript, keys: list[str], args: list[Any], *, replicas: int, timeout_ms: int
) -> tuple[list[Any], int]:
    """Run one script, then WAIT for ``replicas`` to acknowledge it, in one round trip.

    WAIT counts the writes of its own connection, so both go down one pipeline; returns the
    checked reply and how many replicas acknowledged.
    """
    with redis_errors(keys[0]), script_errors():
        pipe = script.registered_client.pipeline(transaction=False)
        await script(keys=keys, args=args, client=pipe)  # type: ignore[arg-type]  # pipelines work
        pipe.execute_command("WAIT", replicas, timeout_ms)
        reply, acked = await pipe.execute()
    return _checked(reply), int(acked)


def _checked(reply: Any) -> list[Any]:
    if not isinstance(reply, list) or not reply:
        raise UnexpectedReplyError(f"unexpected script reply {reply!r}")
    return [text(v) for v in reply]
