"""A redis.asyncio look-alike over the guardian's standard-library RESP connection, for a
one-shot command (``coordinator status``) that must start without loading redis-py.

It has only the methods the status read calls, each returning what redis-py's returns
(text where redis-py gives bytes: every caller decodes with ``boundary.text``). The socket
calls block: nothing else runs in the command's event loop. An error reply raises
``RespError``, which is none of redis-py's exceptions, so no caller mistakes it for an answer:
the command gives up on this client and reads again through redis-py
(``coordinator/cli/status_quick.py``)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from coordinator.guardian.guardian_redis import Connection, RespError, open_master

__all__ = ["RespClient", "RespError"]


class RespClient:
    """One connection to the server of a ``redis://`` URL, opened at the first command."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self._redis = {"url": url, "timeout": timeout}
        self._connection: Connection | None = None

    def _call(self, *args: Any) -> Any:
        if self._connection is None:
            self._connection = open_master(self._redis)  # AUTH and SELECT as the URL says
        return self._connection.call(*args)

    async def execute_command(self, *args: Any) -> Any:
        return self._call(*args)

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def get(self, key: str) -> Any:
        return self._call("GET", key)

    async def type(self, key: str) -> Any:
        return self._call("TYPE", key)

    async def exists(self, *names: str) -> int:
        return int(self._call("EXISTS", *names))

    async def hgetall(self, key: str) -> dict[str, Any]:
        return _pairs(self._call("HGETALL", key))

    async def time(self) -> tuple[int, int]:
        seconds, micros = self._call("TIME")
        return int(seconds), int(micros)

    async def zrevrangebyscore(self, key: str, high: Any, low: Any, *,
                               withscores: bool = False) -> list[Any]:
        if not withscores:
            return list(self._call("ZREVRANGEBYSCORE", key, high, low))
        flat = self._call("ZREVRANGEBYSCORE", key, high, low, "WITHSCORES")
        return [(member, float(score)) for member, score in zip(flat[::2], flat[1::2], strict=True)]

    async def config_get(self, pattern: str) -> dict[str, Any]:
        return _pairs(self._call("CONFIG", "GET", pattern))

    async def fcall(self, function: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self._call("FCALL", function, numkeys, *keys_and_args)

    def register_script(self, source: str) -> _Script:
        return _Script(self, source)


class _Script:
    """``await script(keys=, args=)``: EVALSHA, loading the script once on NOSCRIPT, as
    redis-py's ``AsyncScript`` does."""

    def __init__(self, client: RespClient, source: str) -> None:
        self._client = client
        self._source = source
        self._sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = (),
                       client: Any = None) -> Any:
        if client is not None and client is not self._client:
            raise RespError("a stdlib script runs on its own client only")
        command = ("EVALSHA", self._sha, len(keys), *keys, *args)
        try:
            return self._client._call(*command)
        except RespError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
        self._client._call("SCRIPT", "LOAD", self._source)
        return self._client._call(*command)


def _pairs(flat: list[Any]) -> dict[str, Any]:
    """A flat RESP2 array of names and values as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
