"""Finds the Lua scripts (installed wheel or source checkout) and registers them per client."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from coordinator.connection import redis_exceptions
from coordinator.connection.boundary import redis_errors
from coordinator.errors import (
    CorruptDataError,
    InvalidArgumentError,
    NotCurrentMasterError,
    UnexpectedReplyError,
)
from coordinator.protocol import functions

SCRIPT_NAMES = ("acquire", "renew", "release", "fence", "heartbeat", "set_mode", "request_handoff", "controllers",
                "renew_many", "leases_change")
# Lua shared by several scripts: a script naming one in a line "-- include: NAME" gets its
# text in front of its own (one source for renew.lua's per-lease check and renew_many.lua's)
FRAGMENT_NAMES = ("renew_lease", "write_heartbeat")
INCLUDE = "-- include: "


def lua_directory() -> Path:
    """The folder holding ``*.lua``: inside the installed package, else the checkout's ``lua/``."""
    packaged = Path(str(resources.files("coordinator"))) / "lua"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "lua"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"Lua scripts not found in {packaged} or {checkout}")


@cache
def script_source(name: str) -> str:
    """The text of ``lua/<name>.lua`` after the fragments it includes, read once per process."""
    if name not in SCRIPT_NAMES:
        raise KeyError(name)
    body = _lua_text(name)
    included = [line.removeprefix(INCLUDE).strip() for line in body.splitlines()
                if line.startswith(INCLUDE)]
    unknown = [f for f in included if f not in FRAGMENT_NAMES]
    if unknown:
        raise KeyError(f"lua/{name}.lua includes unknown fragment(s) {unknown}")
    return "".join(_lua_text(f) for f in included) + body


def _lua_text(name: str) -> str:
    return (lua_directory() / f"{name}.lua").read_text(encoding="utf-8")


# the path each client takes, found on its first call (see ``functions.probe_path``)
_paths: weakref.WeakKeyDictionary[Any, functions.ScriptPath] = weakref.WeakKeyDictionary()
# each client's registered scripts (weakly: a closed client takes its entry along)
_registered: weakref.WeakKeyDictionary[Any, Scripts] = weakref.WeakKeyDictionary()


def use_path(redis: Any, path: functions.ScriptPath | None) -> None:
    """Pin ``redis`` to FCALL ("functions") or EVALSHA ("scripts"); None: probe on next call."""
    if path is None:
        _paths.pop(redis, None)
    elif path in ("functions", "scripts"):
        _paths[redis] = path
    else:
        raise InvalidArgumentError(f"script path must be 'functions' or 'scripts', not {path!r}")


def known_path(redis: Any) -> functions.ScriptPath | None:
    """The path ``redis`` was seen to take (pinned or probed), without a round trip; None
    before its first script call."""
    return _paths.get(redis)


async def client_path(redis: Any) -> functions.ScriptPath:
    """The path ``redis`` takes: pinned, found before, or probed now (one round trip)."""
    path = _paths.get(redis)
    if path is None:
        with redis_errors("the coordinator's function library"):
            path = await functions.probe_path(redis)
        _paths[redis] = path
    return path


@cache
def script_sha(name: str) -> str:
    return hashlib.sha1(script_source(name).encode("utf-8"), usedforsecurity=False).hexdigest()


def script_command(name: str, keys: Sequence[str], args: Sequence[Any],
                   path: functions.ScriptPath) -> list[Any]:
    """The exact Redis command that runs script ``name`` on ``path``, as an argument list to
    send raw: ``FCALL <function> <numkeys> keys... args...`` or ``EVALSHA <sha> <numkeys> ...``
    (an EVALSHA answered NOSCRIPT needs ``SCRIPT LOAD <script_source(name)>`` first)."""
    head = ["FCALL", functions.function_name(name)] if path == "functions" else [
        "EVALSHA", script_sha(name)]
    return [*head, len(keys), *keys, *args]


class ScriptRunner:
    """One product script on one client, called like redis-py's ``AsyncScript``
    (``await runner(keys=, args=, client=)``): FCALL of the installed function library where
    this client may, EVALSHA (with SCRIPT LOAD on NOSCRIPT) otherwise. Replies, and the error
    replies ``script_errors`` maps, are the same on both paths."""

    def __init__(self, redis: Any, name: str) -> None:
        self.registered_client = redis
        self.name = name
        self._script = redis.register_script(script_source(name))
        # the FCALL head, built once: this runs on every renewal and heartbeat
        self._fcall_head = ("FCALL", functions.function_name(name))

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = (),
                       client: Any = None) -> Any:
        for attempt in range(2):
            path = _paths.get(self.registered_client) or await client_path(self.registered_client)
            try:
                if path == "scripts":
                    return await self._script(keys=keys, args=args, client=client)
                target = client if client is not None else self.registered_client
                pending = target.execute_command(*self._fcall_head, len(keys), *keys, *args)
                return await pending if inspect.isawaitable(pending) else pending
            except redis_exceptions.ResponseError as e:
                if attempt or not functions.is_function_missing(e):
                    raise
                use_path(self.registered_client, None)  # e.g. Redis restarted empty: probe again
        raise AssertionError("unreachable")


    def prepared(self, keys: Sequence[str], args: Sequence[Any]) -> PreparedCall:
        """A call of this script whose keys and args never change (a lease's renewal)."""
        return PreparedCall(self, keys, args)


def _encoded(value: Any) -> Any:
    """An argument as redis-py would send it (str as UTF-8, numbers as their text)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value).encode()
    raise InvalidArgumentError(f"a script argument must be bytes, str or a number, not {value!r}")


class PreparedCall:
    """One ``ScriptRunner`` call with fixed keys and args: on the FCALL path the whole
    command is built and encoded once (the client would encode every argument on every call);
    on the EVALSHA path, or when the library went missing, it is the runner's own call."""

    def __init__(self, runner: ScriptRunner, keys: Sequence[str], args: Sequence[Any]) -> None:
        self._runner = runner
        self._client = runner.registered_client
        self.keys, self.args = list(keys), list(args)
        name = runner._fcall_head[1]
        self._fcall = ("FCALL", name.encode(), len(self.keys),
                       *(_encoded(k) for k in self.keys), *(_encoded(a) for a in self.args))

    async def __call__(self) -> Any:
        if _paths.get(self._client) == "functions":
            try:
                pending = self._client.execute_command(*self._fcall)
                return await pending if inspect.isawaitable(pending) else pending
            except redis_exceptions.ResponseError as e:
                if not functions.is_function_missing(e):
                    raise
                use_path(self._client, None)  # e.g. Redis restarted empty: probe again
        return await self._runner(keys=self.keys, args=self.args)


@dataclass(frozen=True)
class Scripts:
    """The scripts registered on one client (see ``ScriptRunner``)."""

    acquire: ScriptRunner
    renew: ScriptRunner
    release: ScriptRunner
    fence: ScriptRunner
    heartbeat: ScriptRunner
    set_mode: ScriptRunner
    request_handoff: ScriptRunner
    controllers: ScriptRunner
    renew_many: ScriptRunner
    leases_change: ScriptRunner


def register_scripts(redis: Any) -> Scripts:
    """Register every script on ``redis`` (a ``redis.asyncio`` client or FakeAsyncRedis),
    once per client: a node of many leases makes a lease's objects each time it takes one,
    and hashing every script again for each was most of that cost."""
    try:
        scripts = _registered.get(redis)
    except TypeError:  # a client that cannot be weakly referenced: registered each time
        scripts = None
    if scripts is None:
        scripts = Scripts(**{name: ScriptRunner(redis, name) for name in SCRIPT_NAMES})
        with contextlib.suppress(TypeError):
            _registered[redis] = scripts
    return scripts


async def release_command(redis: Any, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
    """The release script's raw command on the path ``redis`` takes (for a stdlib-only sender
    such as the guardian): the same keys and args as ``Lease.release`` passes."""
    return script_command("release", keys, args, await client_path(redis))


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
        if code == "COORDINATOR_NOT_MASTER":
            named = ("no master the Sentinels agree on" if field == "-"
                     else f"the master the Sentinels name (run_id {field})")
            raise NotCurrentMasterError(
                f"no grant or renewal here: this server (run_id {bad_key}) is not {named}") from e
        raise


async def run_script(script: ScriptRunner, keys: list[str], args: list[Any]) -> list[Any]:
    """Run one script and return its reply with bytes decoded; Redis failures and the
    scripts' error replies are translated at this boundary (see ``script_errors``)."""
    try:
        reply = await script(keys=keys, args=args)
    except Exception:
        # translated only when raised: two context managers cost more than the rest of a
        # renewal's Python side, and the happy path of a try costs nothing
        with redis_errors(keys[0]), script_errors():
            raise
    return _checked(reply)


async def run_script_and_wait(
    script: ScriptRunner, keys: list[str], args: list[Any], *, replicas: int, timeout_ms: int
) -> tuple[list[Any], int]:
    """Run one script, then WAIT for ``replicas`` to acknowledge it, in one round trip.

    WAIT counts the writes of its own connection, so both go down one pipeline; returns the
    checked reply and how many replicas acknowledged.
    """
    with redis_errors(keys[0]), script_errors():
        for attempt in range(2):
            pipe = script.registered_client.pipeline(transaction=False)
            await script(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            try:
                reply, acked = await pipe.execute()
                break
            except redis_exceptions.ResponseError as e:
                if attempt or not functions.is_function_missing(e):
                    raise
                use_path(script.registered_client, None)  # the library vanished: probe again
    return _checked(reply), int(acked)


def _checked(reply: Any) -> list[Any]:
    if not isinstance(reply, list) or not reply:
        raise UnexpectedReplyError(f"unexpected script reply {reply!r}")
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in reply]
