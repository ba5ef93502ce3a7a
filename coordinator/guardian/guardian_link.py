"""The daemon's side of the guardian (``coordinator/guardian/guardian.py``): start it before the first
acquire, tell it how to reach Redis and every tenure as it begins and ends, restart it if
it dies.

The daemon prepares each tenure's release command itself (``release_command``) so the
guardian stays dumb: it sends whatever argument list it was given (EVALSHA of release.lua
today, with the script's source as the NOSCRIPT fallback; an FCALL once the function
library is used) and works whatever the script path is.

If the guardian dies, the daemon starts another (after a short backoff that grows while it
keeps dying) and tells it everything again: it holds nothing the daemon cannot resend, and
without it only the speed of a failover after a process crash is lost, never safety; giving
up leadership for its sake would turn a helper's death into a failover.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
from typing import Any

from coordinator.child.watchdog_link import encode, spare, unspare
from coordinator.protocol import keys
from coordinator.protocol.functions import ScriptPath
from coordinator.protocol.lease import Lease
from coordinator.protocol.scripts import known_path, script_command, script_source
from coordinator.settings import ENV_PREFIX, Settings
from coordinator.sidecar import sidecar_command

GUARDIAN_MODULE = "coordinator.guardian.guardian"
RESTART_BASE, RESTART_CAP = 0.1, 10.0
STABLE = 60.0  # a guardian that lived this long before dying starts the backoff afresh
RELEASE_TIMEOUT = 1.0  # per connect, read or write of the guardian's release

# processes of this daemon process that must be gone before a guardian releases (the
# leader-only child's watchdog): told to every guardian of the process, present and future
_GUARDED: set[int] = set()
_LINKS: set[GuardianLink] = set()


def guard(pid: int) -> None:
    """``pid`` must be gone before any guardian of this process releases a lease."""
    _GUARDED.add(pid)
    for link in list(_LINKS):
        link.send({"guard": pid})


def release_command(lease: Lease, term: int, path: ScriptPath | None = None,
                    ) -> tuple[list[Any], list[Any] | None]:
    """The exact release of ``term`` on the script ``path`` the daemon's client takes, and
    what to send instead on NOSCRIPT: FCALL of the function library (no fallback: the
    library is either installed or the release fails and the lease expires at its TTL), or
    EVALSHA of release.lua with EVAL of its source as the fallback (``path`` None: not known
    yet). Holder, instance id and term are checked inside the script; no handover."""
    call_keys = [lease.key, lease.history_key, lease.tenure_key,
                 keys.handoff_key(lease.namespace, lease.name),
                 keys.no_controller_key(lease.namespace)]
    call_args = [lease.holder_id, lease.instance_id, str(int(term)), lease.name, lease.channel,
                 str(lease.history_maxlen), "", str(lease.ttl_ms)]
    if path == "functions":
        return [str(a) for a in script_command("release", call_keys, call_args, path)], None
    command = [str(a) for a in script_command("release", call_keys, call_args, "scripts")]
    tail = command[2:]
    return command, ["EVAL", script_source("release"), *tail]


def connection_fields(url: str) -> dict[str, Any]:
    """Server, database and credentials exactly as the daemon's own client (redis-py) reads
    ``url``: a password or database in the query string included, with its precedence."""
    from redis.connection import parse_url

    parsed: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    return {"host": parsed.get("host"), "port": parsed.get("port"), "path": parsed.get("path"),
            "db": int(parsed.get("db") or 0), "username": parsed.get("username"),
            "password": parsed.get("password"), "tls": url.startswith("rediss://")}


def redis_message(settings: Settings) -> dict[str, Any]:
    """How the guardian reaches Redis: the daemon's URL (credentials included), Sentinel,
    TLS files. Sent over the socket only."""
    url = settings.redis_url.get_secret_value()
    return {"redis": {
        "url": url,
        "connection": connection_fields(url),
        "sentinels": [list(a) for a in settings.sentinel_addresses],
        "service": settings.redis_sentinel_service,
        "sentinel_password": (settings.redis_sentinel_password.get_secret_value()
                              if settings.redis_sentinel_password is not None else None),
        "tls": {"ca": settings.tls_ca_file, "cert": settings.tls_cert_file,
                "key": settings.tls_key_file},
        "timeout": RELEASE_TIMEOUT,
    }}


def guardian_command(control_fd: int, node_id: str) -> list[str]:
    """The guardian's command line: nothing secret in it (``-I``: standard library only)."""
    return sidecar_command(GUARDIAN_MODULE, ["--control-fd", str(control_fd), "--node-id", node_id])


def guardian_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The daemon's environment without any COORDINATOR_* setting (no secret passes)."""
    return {k: v for k, v in environ.items() if not k.upper().startswith(ENV_PREFIX)}


class GuardianLink:
    """The guardian process and the daemon's end of its socket."""

    def __init__(self, settings: Settings, lease: Lease, log: Any) -> None:
        self._settings, self._lease, self.log = settings, lease, log
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._outgoing = bytearray()
        self._tenure: dict[str, Any] | None = None  # the live one, resent to a new guardian
        self._closed = False
        self._failures = 0
        self._restart: asyncio.TimerHandle | None = None
        self._started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start a guardian and tell it all it must know (messages wait in the socket until
        it reads them: no wait for it here)."""
        if self._closed:
            return
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                guardian_command(theirs.fileno(), self._settings.node_id),
                pass_fds=[theirs.fileno()], env=guardian_env(os.environ),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # out of reach of a stop of the daemon's group
            )
        except OSError as e:
            ours.close()
            self.log.error("guardian.failed", error=str(e))
            self._schedule_restart()
            return
        finally:
            theirs.close()
        spare(self._process.pid)
        self._started_at = time.monotonic()
        ours.setblocking(False)
        self._control = ours
        _LINKS.add(self)
        loop = asyncio.get_running_loop()
        loop.add_reader(ours.fileno(), self._readable)
        self.send(redis_message(self._settings))
        for pid in sorted(_GUARDED):
            self.send({"guard": pid})
        if self._tenure is not None:
            self.send({"tenure": self._tenure})
        self.log.info("guardian.started", pid=self._process.pid)

    def began(self, term: int) -> None:
        """A tenure of ``term`` began (or was led again): the guardian may release it."""
        if self._tenure is not None and self._tenure["term"] == term:
            return
        command, fallback = release_command(self._lease, term, known_path(self._lease.client))
        self._tenure = {"term": term, "lease": self._lease.name, "holder": self._lease.holder_id,
                        "instance": self._lease.instance_id, "release": command,
                        "fallback": fallback, "wait": self._settings.lease_ttl}
        self.send({"tenure": self._tenure})

    def ended(self) -> None:
        """The tenure ended: the guardian must not release it any more."""
        if self._tenure is None:
            return
        term, self._tenure = self._tenure["term"], None
        self.send({"ended": {"term": term}})

    def send(self, message: dict[str, Any]) -> None:
        if self._control is None:
            return
        waiting = bool(self._outgoing)
        self._outgoing += encode(message)
        if not waiting:
            self._flush()

    def close(self) -> None:
        """The daemon is done (it released what it held): the guardian reads EOF and exits."""
        self._closed = True
        if self._restart is not None:
            self._restart.cancel()
        self._drop()

    # ---- the socket ----

    def _flush(self) -> None:
        control = self._control
        if control is None:
            return
        try:
            sent = control.send(self._outgoing)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._lost()
            return
        del self._outgoing[:sent]
        loop = asyncio.get_running_loop()
        if self._outgoing:
            loop.add_writer(control.fileno(), self._flush)
        else:
            loop.remove_writer(control.fileno())

    def _readable(self) -> None:
        control = self._control
        if control is None:
            return
        try:
            data = control.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
        # the guardian's only report is "ready": nothing else to read

    def _drop(self) -> None:
        _LINKS.discard(self)
        control, self._control = self._control, None
        self._outgoing.clear()
        if control is not None:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(control.fileno())
                loop.remove_writer(control.fileno())
            control.close()

    def _lost(self) -> None:
        self._drop()
        process = self._process
        status = process.poll() if process is not None else None
        if process is not None and status is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                status = process.wait(timeout=0.1)
        if process is not None and status is not None:
            unspare(process.pid)
        if self._closed:
            return
        self.log.error("guardian.lost", pid=process.pid if process else None, status=status)
        if time.monotonic() - self._started_at >= STABLE:
            self._failures = 0
        self._schedule_restart()

    def _schedule_restart(self) -> None:
        if self._closed:
            return
        self._failures += 1
        delay = min(RESTART_CAP, RESTART_BASE * 2 ** (self._failures - 1))
        self._restart = asyncio.get_running_loop().call_later(delay, self.start)
