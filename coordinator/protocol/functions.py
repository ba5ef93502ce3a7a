"""The product's Lua scripts as one Redis 7 function library, and the choice per client
between FCALL of that library and EVALSHA of the plain scripts.

The library is generated at run time from the same ``lua/*.lua`` files: each body becomes the
callback of one registered function, unchanged (a function receives KEYS and ARGV as its
two arguments, which the wrapper names KEYS and ARGV, so a body reads them as a script does).
Its name carries a digest of every script's text, and so does every function's name (function
names are global in Redis), so two versions of the coordinator can run side by side during a
rolling upgrade, each calling its own library.

Why: a runtime user granted only ``+fcall`` can run these functions and nothing else; one
granted ``EVALSHA`` + ``SCRIPT LOAD`` can run any Lua, including a loop that wedges Redis.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any, Literal

from coordinator.connection import redis_exceptions
from coordinator.errors import CoordinatorError

ScriptPath = Literal["functions", "scripts"]
LIBRARY_PREFIX = "coordinator_"
VERSION_FUNCTION = "version"  # FCALL <library>_version 0 -> the digest; probes the path


class FunctionsNotInstalledError(CoordinatorError):
    """Redis has no function library of this version, this user may not load it, and it may
    not run plain scripts either (the confined ACL): an administrator must install it."""


@cache
def library_digest() -> str:
    """12 hex digits of the SHA-1 over every script's name and text."""
    from coordinator.protocol.scripts import SCRIPT_NAMES, script_source

    digest = hashlib.sha1(usedforsecurity=False)
    for name in SCRIPT_NAMES:
        digest.update(name.encode() + b"\0" + script_source(name).encode() + b"\0")
    return digest.hexdigest()[:12]


def library_name() -> str:
    """``coordinator_<digest>``: the library this code calls."""
    return LIBRARY_PREFIX + library_digest()


def function_name(script: str) -> str:
    """The registered name of one script's function, e.g. ``coordinator_<digest>_acquire``."""
    return f"{library_name()}_{script}"


@cache
def library_source() -> str:
    """The library's code for FUNCTION LOAD: every script's body, wrapped, unchanged."""
    from coordinator.protocol.scripts import SCRIPT_NAMES, script_source

    parts = [f"#!lua name={library_name()}", ""]
    for name in SCRIPT_NAMES:
        parts += [f"-- lua/{name}.lua", "redis.register_function{",
                  f"  function_name = '{function_name(name)}',",
                  "  callback = function(KEYS, ARGV)", script_source(name).rstrip("\n"),
                  "end}", ""]
    parts += ["redis.register_function{", f"  function_name = '{function_name(VERSION_FUNCTION)}',",
              f"  callback = function() return '{library_digest()}' end,",
              "  flags = {'no-writes'}}", ""]
    return "\n".join(parts)


def install_hint() -> str:
    return (f"the coordinator's Redis function library {library_name()} is not loaded, this user "
            "may not load it and may not run plain scripts: run `coordinator redis "
            "install-functions` with COORDINATOR_REDIS_ADMIN_URL set to an administrative user")


def is_function_missing(error: BaseException) -> bool:
    return isinstance(error, redis_exceptions.ResponseError) and (
        "function not found" in str(error).lower())


def _is_unknown_command(error: redis_exceptions.ResponseError) -> bool:
    return "unknown command" in str(error).lower()


async def install(redis: Any) -> bool:
    """FUNCTION LOAD this version's library; False if that version was already there."""
    try:
        await redis.function_load(library_source())
    except redis_exceptions.ResponseError as e:
        if "already exists" in str(e).lower():
            return False
        raise
    return True


async def probe_path(redis: Any) -> ScriptPath:
    """Which path this client takes, in one round trip in the usual cases:

    FCALL of the library's version function answers -> functions; it is missing and this user
    may load it -> load it (a daemon whose user may), functions; FCALL unknown (Redis < 7) or
    refused by the ACL, or FUNCTION LOAD refused -> scripts (EVALSHA), unless the user may not
    EVALSHA either (checked with a harmless unknown sha), then ``FunctionsNotInstalledError``.
    Connection errors propagate (nothing is decided).
    """
    try:
        reply = await redis.fcall(function_name(VERSION_FUNCTION), 0)
    except redis_exceptions.ResponseError as e:
        if isinstance(e, redis_exceptions.NoPermissionError) or _is_unknown_command(e):
            return "scripts"
        if not is_function_missing(e):
            raise
    else:
        if _text(reply) == library_digest():
            return "functions"
        raise CoordinatorError(f"function {function_name(VERSION_FUNCTION)} replied {reply!r}")
    try:
        await install(redis)
    except redis_exceptions.NoPermissionError:
        return await _scripts_allowed(redis)
    except redis_exceptions.ResponseError as e:
        if _is_unknown_command(e):
            return await _scripts_allowed(redis)
        raise
    return "functions"


async def _scripts_allowed(redis: Any) -> ScriptPath:
    try:
        await redis.evalsha("0" * 40, 0)
    except redis_exceptions.NoScriptError:
        return "scripts"
    except redis_exceptions.NoPermissionError as e:
        raise FunctionsNotInstalledError(install_hint()) from e
    return "scripts"


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value
