"""The guardian: a process beside every daemon that releases its lease when the daemon dies.

Most leader deaths are process deaths on a live host (an OOM kill, a segfault, a ``kill -9``);
the kernel then closes the daemon's end of this process's socket at once. The guardian reads
that EOF and, if the daemon was leading, first waits until every process it was told to
guard is gone (the leader-only child's watchdog, which exits only once the child and all it
started are gone), then sends the release the daemon prepared for exactly that tenure (the
product's release script, which checks holder, instance id and term inside Redis, so a stale
one changes nothing; it publishes ``lease_released`` and wakes the standbys), then exits.
A standby takes over in milliseconds instead of a lease TTL.

It never acts while the daemon lives: a frozen (SIGSTOP), starved or cut-off daemon keeps
its end open. A dead host takes the guardian along: the lease then expires at its TTL.

Standard library only (``python -I``): it speaks RESP itself, over TCP, TLS (``ssl``) or a
Unix socket, finds the master through Sentinel when told to, and follows Cluster redirects
(MOVED/ASK). It connects only when it must release: a connection held for hours could be
dropped by a timeout or a proxy, and the master may have moved meanwhile.

It runs in a session of its own and ignores the terminal's and the group's signals (as the
watchdog does), so that what freezes the daemon cannot freeze it.

Protocol: one JSON object per line, from the daemon only (credentials come this way, never
through argv or the environment, so they show neither in ``ps`` nor in a child):
``{"redis": {"url", "connection": {host, port, path, db, username, password, tls} (as the
daemon's client parsed the URL), "sentinels": [[host, port]], "service", "sentinel_password",
"tls": {"ca", "cert", "key"}, "timeout"}}``; ``{"guard": pid}``;
``{"tenure": {"term", "lease", "holder", "instance", "release": [arg, ...],
"fallback": [arg, ...] | null, "wait": seconds}}`` (a tenure began; ``release`` is the exact
command to send, ``fallback`` what to send instead on a NOSCRIPT error); ``{"ended":
{"term"}}``. To the daemon: ``{"ready": {"pid"}}`` once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

WAIT_STEP = 0.002
MAX_REDIRECTS = 3


class RespError(Exception):
    """An error reply from Redis (``-ERR ...``)."""


# ---- the pure part: what to do on EOF ---------------------------------------------------


@dataclass
class Known:
    """What the guardian knows: how to reach Redis, what to guard, the live tenure."""

    redis: dict[str, Any] | None = None
    guarded: list[int] = field(default_factory=list)
    tenure: dict[str, Any] | None = None


def apply(known: Known, message: dict[str, Any]) -> Known:
    """One message from the daemon."""
    if isinstance(message.get("redis"), dict):
        known.redis = message["redis"]
    if isinstance(message.get("guard"), int):
        known.guarded.append(message["guard"])
    tenure = message.get("tenure")
    if isinstance(tenure, dict) and isinstance(tenure.get("release"), list):
        known.tenure = tenure
    ended = message.get("ended")
    if isinstance(ended, dict) and known.tenure is not None and (
            ended.get("term") is None or ended.get("term") == known.tenure.get("term")):
        known.tenure = None
    return known


# ---- RESP ------------------------------------------------------------------------------


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
        self._buffer = b""

    def call(self, *args: Any) -> Any:
        self._sock.sendall(encode_command(list(args)))
        return self._reply()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._fill()
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _fill(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionError("Redis closed the connection")
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
            while len(self._buffer) < size + 2:
                self._fill()
            data, self._buffer = self._buffer[:size], self._buffer[size + 2:]
            return data.decode(errors="replace")
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


# ---- waiting for the guarded processes -------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, 0)
            return False
        return True


class Guarded:
    """The processes that must be gone before a release (pidfds where the system has them,
    opened when told, while the daemon, their parent, lives and their pids are theirs)."""

    def __init__(self) -> None:
        self._fds: dict[int, int | None] = {}

    def add(self, pid: int) -> None:
        if pid in self._fds:
            return
        try:
            self._fds[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            return  # gone already
        except (AttributeError, OSError):
            self._fds[pid] = None  # no pidfds: polled through /proc

    def wait(self, timeout: float) -> bool:
        """True once all are gone; False if some still lives after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while True:
            for pid, fd in list(self._fds.items()):
                exited = _gone(pid) if fd is None else bool(_poll_fd(fd, 0))
                if exited:
                    if fd is not None:
                        os.close(fd)
                    del self._fds[pid]
            if not self._fds:
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            fds = [fd for fd in self._fds.values() if fd is not None]
            if fds and len(fds) == len(self._fds):
                poller = select.poll()
                for fd in fds:
                    poller.register(fd, select.POLLIN)
                poller.poll(max(1, int(left * 1000)))
            else:
                time.sleep(WAIT_STEP)


def _poll_fd(fd: int, timeout_ms: int) -> list[tuple[int, int]]:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return poller.poll(timeout_ms)


# ---- the process -----------------------------------------------------------------------


class Guardian:
    """Reads the daemon's messages until its end closes, then releases if it led."""

    def __init__(self, control: socket.socket, node_id: str) -> None:
        self._control, self._node_id = control, node_id
        self._known = Known()
        self._guarded = Guarded()
        self._inbox = b""
        for ignored in (signal.SIGINT, signal.SIGHUP, signal.SIGTSTP, signal.SIGTTIN,
                        signal.SIGTTOU, signal.SIGPIPE):
            signal.signal(ignored, _ignore)

    def run(self) -> int:
        with contextlib.suppress(OSError):
            self._control.sendall(b'{"ready":{"pid":%d}}\n' % os.getpid())
        while True:
            try:
                data = self._control.recv(65536)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                break
            self._inbox += data
            *lines, self._inbox = self._inbox.split(b"\n")
            for line in lines:
                self._handle(line)
        return self._daemon_gone()

    def _handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            self._log("guardian.bad_message", size=len(line))
            return
        if not isinstance(message, dict):
            return
        self._known = apply(self._known, message)
        if isinstance(message.get("guard"), int):
            self._guarded.add(message["guard"])

    def _daemon_gone(self) -> int:
        tenure, redis = self._known.tenure, self._known.redis
        if tenure is None:
            self._log("guardian.exiting", reason="the daemon's end closed; it was not leading")
            return 0
        self._log("guardian.daemon_gone", term=tenure.get("term"), lease=tenure.get("lease"))
        if not self._guarded.wait(float(tenure.get("wait", 10.0))):
            self._log("guardian.not_released", level="warning", term=tenure.get("term"),
                      reason="a guarded process (the child's watchdog) is still running; "
                      "the lease expires at its TTL")
            return 1
        if redis is None:
            self._log("guardian.not_released", level="warning", term=tenure.get("term"),
                      reason="never told how to reach Redis")
            return 1
        try:
            reply = send_release(redis, tenure)
        except (OSError, RespError, ValueError, KeyError, TypeError) as e:
            self._log("guardian.not_released", level="warning", term=tenure.get("term"),
                      reason=f"the release failed ({type(e).__name__}: {e}); the lease "
                      "expires at its TTL")
            return 1
        code = reply[0] if isinstance(reply, list) and reply else reply
        self._log("guardian.released", term=tenure.get("term"), lease=tenure.get("lease"),
                  released=code == "released", reply=code,
                  redis_now=reply[1] if isinstance(reply, list) and len(reply) > 1 else None)
        return 0

    def _log(self, event: str, **fields: Any) -> None:
        """One JSON line on stderr, shaped like the daemon's structlog lines."""
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
        line = {"event": event, "node_id": self._node_id, "level": "info",
                "timestamp": stamp, **fields}
        with contextlib.suppress(OSError, ValueError):
            print(json.dumps(line), file=sys.stderr, flush=True)


def _ignore(signum: int, frame: Any) -> None:
    """Signal handler that does nothing (handlers, unlike SIG_IGN, are not inherited)."""


def main(argv: list[str] | None = None) -> int:
    """``python -I guardian.py --control-fd N --node-id ID``."""
    parser = argparse.ArgumentParser(prog="coordinator-guardian")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--node-id", default="")
    args = parser.parse_args(argv)
    control = socket.socket(fileno=args.control_fd)
    control.setblocking(True)
    return Guardian(control, args.node_id).run()


if __name__ == "__main__":
    sys.exit(main())
