"""The guardian's Redis client, standard library only: RESP2 over TCP, TLS (``ssl``) or a
Unix socket; the master found through Sentinel when sentinels are given; Cluster redirects
(MOVED/ASK) followed. ``send_release`` is all the guardian (``coordinator/guardian/guardian.py``)
asks of it: one connection, opened when it must release, closed after.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_REDIRECTS = 3


class RespError(Exception):
    """An error reply from Redis (``-ERR ...``)."""


def encode_command(args: list[Any]) -> bytes:
    """A RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Connection:
    """One blocking RESP2 connection with a timeout on every read and write."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        # what was received and not parsed yet starts at _start: a reply of thousands of
        # lines (`coordinator status` of many controllers) is parsed without copying the
        # rest of the buffer at every line
        self._buffer = bytearray()
        self._start = 0

    def call(self, *args: Any) -> Any:
        self._sock.sendall(encode_command(list(args)))
        return self._reply()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n", self._start)) < 0:
            self._fill()
        line = bytes(self._buffer[self._start:end])
        self._start = end + 2
        return line

    def _take(self, size: int) -> bytes:
        """The next ``size`` bytes and the CRLF after them."""
        while len(self._buffer) - self._start < size + 2:
            self._fill()
        data = bytes(self._buffer[self._start:self._start + size])
        self._start += size + 2
        return data

    def _fill(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionError("Redis closed the connection")
        del self._buffer[:self._start]
        self._start = 0
        self._buffer += data

    def _reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            return self._take(size).decode(errors="replace")
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise ConnectionError(f"unexpected reply {line[:40]!r}")


def connect(host: str, port: int, *, timeout: float, tls: dict[str, Any] | None,
            path: str | None = None) -> Connection:
    """A connection to one server (TCP, TLS with ``tls``, or a Unix socket at ``path``)."""
    if path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(path)
        return Connection(sock)
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is not None:
        import ssl  # here: `coordinator status` on a plain redis:// URL does without it

        # as the daemon's client does: the server's certificate must verify (against the CA
        # given, else the system's), its name is not checked
        context = ssl.create_default_context(cafile=tls.get("ca") or None)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        if tls.get("cert"):
            context.load_cert_chain(tls["cert"], tls.get("key") or None)
        sock = context.wrap_socket(sock)
    return Connection(sock)


@dataclass(frozen=True)
class Target:
    """Where and how to talk to the master: parsed from the daemon's ``redis`` message."""

    host: str
    port: int
    path: str | None
    tls: dict[str, Any] | None
    username: str | None
    password: str | None
    db: int


def target(redis: dict[str, Any]) -> Target:
    """The server and credentials of the daemon's URL (``redis://``, ``rediss://``,
    ``unix://``)."""
    given = redis.get("connection")
    if isinstance(given, dict):  # what the daemon's own client parsed from its URL
        return Target(
            host=str(given.get("host") or "127.0.0.1"), port=int(given.get("port") or 6379),
            path=given.get("path"), tls=(redis.get("tls") or {}) if given.get("tls") else None,
            username=given.get("username"), password=given.get("password"),
            db=int(given.get("db") or 0))
    parts = urlsplit(redis["url"])
    query = parse_qs(parts.query)
    db_text = (parts.path or "/").lstrip("/") if parts.scheme != "unix" else ""
    db = int(db_text or query.get("db", ["0"])[0] or 0)
    tls = (redis.get("tls") or {}) if parts.scheme == "rediss" else None
    return Target(
        host=parts.hostname or "127.0.0.1", port=parts.port or 6379,
        path=parts.path if parts.scheme == "unix" else None, tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None, db=db)


def open_master(redis: dict[str, Any]) -> Connection:
    """A connection to the master, authenticated, on the right database; through Sentinel
    when sentinels are given (asked in turn for the service's master)."""
    where = target(redis)
    timeout = float(redis.get("timeout", 1.0))
    host, port = where.host, where.port
    sentinels = redis.get("sentinels") or []
    if sentinels:
        host, port = _ask_sentinels(sentinels, redis, timeout)
    conn = connect(host, port, timeout=timeout, tls=where.tls,
                   path=None if sentinels else where.path)
    try:
        _login(conn, where)
    except BaseException:
        conn.close()
        raise
    return conn


def _login(conn: Connection, where: Target) -> None:
    if where.password is not None:
        if where.username:
            conn.call("AUTH", where.username, where.password)
        else:
            conn.call("AUTH", where.password)
    if where.db:
        conn.call("SELECT", where.db)


def _ask_sentinels(sentinels: list[Any], redis: dict[str, Any], timeout: float) -> tuple[str, int]:
    errors = []
    for host, port in sentinels:
        try:
            conn = connect(host, int(port), timeout=timeout, tls=None)
        except OSError as e:
            errors.append(f"{host}:{port}: {e}")
            continue
        try:
            if redis.get("sentinel_password"):
                conn.call("AUTH", redis["sentinel_password"])
            reply = conn.call("SENTINEL", "get-master-addr-by-name", redis.get("service", ""))
            if isinstance(reply, list) and len(reply) == 2:
                return str(reply[0]), int(reply[1])
            errors.append(f"{host}:{port}: no master")
        except (OSError, RespError, ValueError) as e:
            errors.append(f"{host}:{port}: {e}")
        finally:
            conn.close()
    raise ConnectionError("no sentinel named a master: " + "; ".join(errors))


def send_release(redis: dict[str, Any], tenure: dict[str, Any]) -> Any:
    """Send the tenure's release command (its fallback on NOSCRIPT), following Cluster
    redirects; returns the reply."""
    conn = open_master(redis)
    where = target(redis)
    timeout = float(redis.get("timeout", 1.0))
    try:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                return _call_with_fallback(conn, tenure)
            except RespError as e:
                code, _, rest = str(e).partition(" ")
                if code not in ("MOVED", "ASK"):
                    raise
                address = rest.split()[-1]
                host, _, port = address.rpartition(":")
                conn.close()
                conn = connect(host or where.host, int(port), timeout=timeout, tls=where.tls)
                _login(conn, replace_db(where))
                if code == "ASK":
                    conn.call("ASKING")
        raise ConnectionError("too many redirects")
    finally:
        conn.close()


def replace_db(where: Target) -> Target:
    """A Cluster node has database 0 only."""
    return Target(where.host, where.port, None, where.tls, where.username, where.password, 0)


def _call_with_fallback(conn: Connection, tenure: dict[str, Any]) -> Any:
    try:
        return conn.call(*tenure["release"])
    except RespError as e:
        if not str(e).startswith("NOSCRIPT") or not tenure.get("fallback"):
            raise
        return conn.call(*tenure["fallback"])
