"""The daemon's HTTP endpoint: /healthz, /readyz, /status and /metrics.

A deliberately small HTTP/1.1 server on asyncio: GET only, one request per connection,
no bodies, the request head bounded in size (``MAX_HEAD_BYTES``) and in time
(``HEAD_TIMEOUT``, for the whole head, so a client sending one byte at a time is cut
off), and a cap on open connections that, when reached, drops the connection that has
been reading its head the longest (once that is over ``EVICT_AFTER``). A newcomer that
finds the cap full and nobody evictable yet is not refused at once: it gets an overflow
place (``MAX_OVERFLOW`` of them) and ``OVERFLOW_HEAD_TIMEOUT`` to send its whole head, which
a probe does in a millisecond and a flood's held connection never does; so a steady flood of
new connections holding their heads open (measured: 200 a second) cannot crowd the probes
out. A slow or hostile client costs one bounded buffer and one task; every handler answers
from memory, so none ever waits on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol

from coordinator.connection.eviction import RedisReport
from coordinator.daemon.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from coordinator.daemon.metrics import Metrics
from coordinator.daemon.state import Role
from coordinator.errors import CoordinatorError
from coordinator.logs import get_logger
from coordinator.protocol.membership import ALIVE_INTERVALS
from coordinator.settings import Settings

MAX_HEAD_BYTES = 8192
HEAD_TIMEOUT = 2.0
WRITE_TIMEOUT = 2.0
MAX_CONNECTIONS = 32
# a connection still reading its head after this long may be dropped to make room
EVICT_AFTER = 0.25
# how long a refused connection's request may take to arrive before it is closed
LINGER = 0.05
# beyond the cap: places for newcomers that send their whole head at once (a probe does),
# each given this long to do it; MAX_OVERFLOW / OVERFLOW_HEAD_TIMEOUT (640) new connections
# a second beyond what the cap turns over can come before a probe is refused
MAX_OVERFLOW = 64
OVERFLOW_HEAD_TIMEOUT = 0.1

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_TARGET = re.compile(rb"/[\x21-\x7e]*")

log = get_logger("coordinator.http")


class Observed(Protocol):
    """What the endpoint reads from a daemon (``coordinator.daemon.daemon.Daemon`` provides it)."""

    settings: Settings
    metrics: Metrics
    redis_report: RedisReport

    def status_snapshot(self) -> dict[str, Any]:
        """The /status document."""

    def heartbeat_age(self) -> float | None:
        """Seconds since the last successful heartbeat."""

    def lease_deadline_in(self) -> float | None:
        """Seconds until the local lease deadline."""

    def loops_running(self) -> bool:
        """Whether the daemon's loops are running."""


@dataclass(frozen=True)
class Request:
    """A parsed request head (only what routing needs)."""

    method: str
    path: str


@dataclass(frozen=True)
class Response:
    """A complete response; always sent with ``Connection: close``."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default=())

    def encode(self) -> bytes:
        """The response as bytes on the wire."""
        lines = [
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + self.body


def text(status: int, message: str, *headers: tuple[str, str]) -> Response:
    """A plain-text response of one line."""
    return Response(status, (message + "\n").encode("utf-8"), headers=headers)


class RequestRejected(Exception):
    """The request head broke a rule; carries the response that says which."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.response = text(status, reason)


def parse_head(head: bytes) -> Request:
    """Parse a request head ending in CRLF CRLF, strictly; raise ``RequestRejected``."""
    request_line, *header_lines = head.removesuffix(b"\r\n\r\n").split(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise RequestRejected(400, "malformed request line")
    method, target, version = parts
    if not _VERSION.fullmatch(version):
        raise RequestRejected(400, "malformed HTTP version")
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        raise RequestRejected(505, "only HTTP/1.0 and HTTP/1.1 are served")
    if not _TARGET.fullmatch(target):
        raise RequestRejected(400, "the target must be a path")
    headers: dict[bytes, list[bytes]] = {}
    for line in header_lines:
        name, colon, value = line.partition(b":")
        value = value.strip(b" \t")
        # a leading space (obsolete line folding), a bare CR or LF, or a control character
        # makes the name or the value fail here
        if not colon or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise RequestRejected(400, "malformed header field")
        headers.setdefault(name.lower(), []).append(value)
    if version == b"HTTP/1.1" and len(headers.get(b"host", [])) != 1:
        raise RequestRejected(400, "HTTP/1.1 needs exactly one Host header")
    lengths = headers.get(b"content-length", [])
    if b"transfer-encoding" in headers or any(v != b"0" for v in lengths):
        raise RequestRejected(413, "requests with a body are not accepted")
    return Request(method.decode("ascii"), target.split(b"?", 1)[0].decode("ascii"))


def readiness(daemon: Observed) -> str | None:
    """None when ready (leader or standby with a fresh heartbeat), else the reason why not."""
    if not daemon.loops_running():
        return "not running"
    role = daemon.status_snapshot()["role"]
    if role not in (Role.LEADER.value, Role.STANDBY.value):
        return f"role is {role}"
    age = daemon.heartbeat_age()
    if age is None:
        return "no heartbeat yet"
    if age >= ALIVE_INTERVALS * beat_interval(daemon.settings):
        return f"last heartbeat {age:.1f}s ago"
    return None


def beat_interval(settings: Settings) -> float:
    """Seconds between two heartbeats: a node of many leases beats with each renew call
    (every renew interval, the interval its liveness is judged on), a single lease's daemon
    every heartbeat interval."""
    return settings.renew_interval if settings.many_leases else settings.heartbeat_interval


def route(daemon: Observed, request: Request) -> Response:
    """The response to one parsed request."""
    if request.method != "GET":
        return text(405, "only GET is served", ("Allow", "GET"))
    if request.path == "/healthz":
        return text(200, "ok") if daemon.loops_running() else text(503, "not running")
    if request.path == "/readyz":
        # a Redis that may evict the lease is a warning in the body, not unreadiness: every
        # daemon shares that Redis, so all would go unready at once (a rollout or a
        # PodDisruptionBudget would stall) and none would be safer for it
        reason = readiness(daemon)
        warnings = [f"warning: {w}" for w in daemon.redis_report.warnings]
        if reason is None:
            return text(200, "\n".join(["ready", *warnings]))
        return text(503, "\n".join([f"not ready: {reason}", *warnings]))
    if request.path == "/status":
        status = {**daemon.status_snapshot(), "redis": daemon.redis_report.to_dict()}
        body = json.dumps(status, separators=(",", ":")).encode("utf-8")
        return Response(200, body, "application/json")
    if request.path == "/metrics":
        daemon.metrics.set_state(daemon.status_snapshot(), deadline_in=daemon.lease_deadline_in(),
                                 heartbeat_age=daemon.heartbeat_age())
        return Response(200, daemon.metrics.render(), METRICS_CONTENT_TYPE)
    return text(404, "not found")


class HttpServer:
    """The listener; ``start`` binds (port 0 picks a free one), ``stop`` closes everything."""

    def __init__(
        self, daemon: Observed, *, host: str, port: int,
        max_connections: int = MAX_CONNECTIONS, head_timeout: float = HEAD_TIMEOUT,
        max_overflow: int = MAX_OVERFLOW,
    ) -> None:
        self._daemon, self._host, self._port = daemon, host, port
        self._max_connections, self._head_timeout = max_connections, head_timeout
        self._max_overflow, self._overflow = max_overflow, 0
        self._server: asyncio.Server | None = None
        self._open: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}
        # connections still reading their head, by when they came, oldest first
        self._reading: dict[asyncio.StreamWriter, float] = {}
        self._responding = 0

    @property
    def address(self) -> tuple[str, int]:
        """The host and port actually bound (the first socket's, if the host has several)."""
        if self._server is None or not self._server.sockets:
            raise CoordinatorError("the HTTP server is not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        """Bind and start serving; raise ``CoordinatorError`` if the address is unusable."""
        try:
            self._server = await asyncio.start_server(
                self._serve, self._host, self._port, limit=MAX_HEAD_BYTES)
        except OSError as e:
            raise CoordinatorError(
                f"cannot listen for HTTP on {self._host}:{self._port}: {e.strerror or e}") from e
        host, port = self.address
        log.info("http.listening", host=host, port=port)

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is None:
            return
        self._server.close()
        # aborting ends every handler through its own error path: no task is cancelled,
        # so none can leave a transport open behind it
        for writer in list(self._open):
            writer.transport.abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WRITE_TIMEOUT):
                await asyncio.gather(*self._open.values(), return_exceptions=True)
                await self._server.wait_closed()
        self._server = None
        log.info("http.stopped")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._admit():
            if self._overflow >= self._max_overflow:
                log.debug("http.rejected", status=503, reason="too many connections")
                await _send(writer, text(503, "too many connections"), unread=reader)
                return
            await self._serve_overflow(reader, writer)
            return
        task = asyncio.current_task()
        if task is not None:
            self._open[writer] = task
        self._reading[writer] = time.monotonic()
        try:
            response = await self._answer(reader)
            evicted = writer not in self._reading
            self._reading.pop(writer, None)
            if evicted or response is None:
                return
            self._responding += 1
            try:
                await _send(writer, response)
            finally:
                self._responding -= 1
        finally:
            self._reading.pop(writer, None)
            self._open.pop(writer, None)
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _serve_overflow(self, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        """A newcomer beyond the cap: answered if its whole head comes within
        ``OVERFLOW_HEAD_TIMEOUT``, else refused with 503 (never evicts anyone)."""
        self._overflow += 1
        task = asyncio.current_task()
        if task is not None:
            self._open[writer] = task
        try:
            response = await self._answer(reader, OVERFLOW_HEAD_TIMEOUT)
            if response is not None and response.status == 408:
                response = text(503, "too many connections")
            if response is not None:
                await _send(writer, response)
        finally:
            self._overflow -= 1
            self._open.pop(writer, None)
            if not writer.transport.is_closing():
                writer.transport.abort()

    def _admit(self) -> bool:
        """Make room for one more connection if need be, by dropping the one that has read
        its head the longest, once that is longer than ``EVICT_AFTER``: a real request reads
        its head in milliseconds, so slow clients evict each other, never the probes; a burst
        of new connections is refused instead, so it cannot evict a probe either."""
        if len(self._reading) + self._responding < self._max_connections:
            return True
        oldest, since = next(iter(self._reading.items()), (None, 0.0))
        if oldest is None or time.monotonic() - since < EVICT_AFTER:
            return False
        del self._reading[oldest]
        oldest.transport.abort()  # its read ends at once; its handler finishes on its own
        log.debug("http.evicted", reason="connection slowest to send its head")
        return True

    async def _answer(self, reader: asyncio.StreamReader,
                      head_timeout: float | None = None) -> Response | None:
        limit = self._head_timeout if head_timeout is None else head_timeout
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow stop()'s cancel
            async with asyncio.timeout(limit):
                head = await reader.readuntil(b"\r\n\r\n")
            request = parse_head(head)
        except asyncio.LimitOverrunError:
            return _rejected(431, f"request head over {MAX_HEAD_BYTES} bytes")
        except TimeoutError:
            return _rejected(408, f"request head not complete within {limit}s")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None  # the client went away (or was evicted); nobody to answer
        except RequestRejected as e:
            log.debug("http.rejected", status=e.response.status, reason=str(e))
            return e.response
        try:
            response = route(self._daemon, request)
        except Exception:
            log.exception("http.handler_failed", path=request.path)
            return text(500, "internal error")
        log.debug("http.request", method=request.method, path=request.path,
                  status=response.status)
        return response


def _rejected(status: int, reason: str) -> Response:
    log.debug("http.rejected", status=status, reason=reason)
    return text(status, reason)


async def _send(
    writer: asyncio.StreamWriter, response: Response, *, unread: asyncio.StreamReader | None = None
) -> None:
    """Write the response and close; a client that does not read is cut off.

    With ``unread``, the request was never read: take in a little of it first (briefly),
    because closing a socket with unread input resets it and the client would lose the
    response.
    """
    try:
        writer.write(response.encode())
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.drain()
        if unread is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LINGER):
                    await unread.read(MAX_HEAD_BYTES)
        async with asyncio.timeout(WRITE_TIMEOUT):
            writer.close()
            await writer.wait_closed()
    except (TimeoutError, ConnectionError, OSError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
    finally:
        with contextlib.suppress(Exception):
            writer.close()
