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

Standard library only (``python -I``, started through ``coordinator/sidecar.py``): it speaks
RESP itself (``coordinator/guardian/guardian_redis.py``), over TCP, TLS or a Unix socket, finds the
master through Sentinel when told to, and follows Cluster redirects (MOVED/ASK). It connects only when it must
release: a connection held for hours could be dropped by a timeout or a proxy, and the
master may have moved meanwhile.

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
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from coordinator.guardian.guardian_redis import RespError, send_release

WAIT_STEP = 0.002


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
    """``coordinator.guardian.guardian --control-fd N --node-id ID`` (started by ``coordinator.sidecar``)."""
    parser = argparse.ArgumentParser(prog="coordinator-guardian")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--node-id", default="")
    args = parser.parse_args(argv)
    control = socket.socket(fileno=args.control_fd)
    control.setblocking(True)
    return Guardian(control, args.node_id).run()


if __name__ == "__main__":
    sys.exit(main())
