"""The watchdog: a process of its own that runs the leader-only child and ends it in time.

The daemon keeps it told of the local lease deadline over a socket. Because the daemon
may be frozen (SIGSTOP, starvation) or killed, the watchdog decides by itself, on its own
timers: SIGTERM at (deadline - grace), SIGKILL at the deadline; on a stop request
SIGTERM at once and SIGKILL after the grace, never past the deadline; when the daemon's
end of the socket closes (even after ``kill -9``) it stops the child that way and exits.

It imports only the standard library (and the package's stdlib-only modules: its decisions
in ``watchdog_rules``, its hold on processes in ``watchdog_processes``) and is started with
``python -I`` through ``coordinator/sidecar.py``, so it starts fast and does not load the
daemon's dependencies.

It runs in a session of its own and ignores the terminal's stop signals, so that neither a
stop of the daemon's process group (``kill -STOP -PGID``) nor Ctrl-Z in the daemon's
terminal can freeze it together with the daemon.

Protocol: one JSON object per line. From the daemon: ``{"deadline": float | null,
"term": int | null}`` (null deadline: that tenure ended; the term may be left out when not
yet known), ``{"start": {"term", "argv", "executable", "env", "deadline"}}``,
``{"stop": true}``. To the daemon: ``{"ready": {"pid"}}`` once, then
``{"started": {"pid", "term", "at"}}``, ``{"exited": {"pid", "term", "status",
"signalled"}}``, ``{"failed": {"term", "error"}}``, ``{"cancelled": {"term", "reason"}}``;
every ``start`` gets ``failed``, ``cancelled`` or ``started`` then ``exited``.

A start never runs for a tenure that ended, whatever order the messages come in: a start
for a term at or below one whose deadline was withdrawn, or below the term of the latest
deadline, is cancelled; a start queued behind a child still on its way out is cancelled
when its tenure ends and otherwise runs to the latest deadline heard, not its own.

Everything readable on the socket is read and applied before anything is acted on, so a
watchdog that was frozen and reads a backlog acts on where the daemon is now, not on where
it was: a start only becomes pending, and runs after the batch if its tenure is still live
and no stop came after it.

The socket is FIFO: a deadline for a term whose end was heard was sent after that end, so
the daemon leads that term again (Redis stalled, the leader degraded, then renewed): the
term is live again. Starts never revive a term; the daemon's runner says the term with the
deadline before it sends a start.

Nothing the child starts outlives it: the watchdog is a child subreaper (Linux), so the
child's orphaned descendants, even those that left its process group and session, become
the watchdog's; when it kills the child it kills every descendant of its own, and when the
child is gone it sweeps them all and reaps them.

Deadlines are seconds on ``now()`` (CLOCK_BOOTTIME where available), the clock the daemon
reads too: it is one clock for every process on the machine.
"""


from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from coordinator.child.watchdog_processes import (
    become_subreaper,
    parent_death_signal,
    processes,
    reap_orphans,
    signal_descendants,
    sweep,
)
from coordinator.child.watchdog_rules import (
    Tenure,
    Watch,
    belongs,
    due,
    heard_deadline,
    next_wake,
    now,
    outdated,
    refusal,
    stale,
    startable,
    with_deadline,
    with_stop,
)


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    term: int | None
    watch: Watch
    pidfd: int | None
    signalled: str | None = None


class Watchdog:
    """The watchdog's loop: reads the daemon's messages, starts the child, signals it."""

    def __init__(self, control: socket.socket, grace: float, node_id: str,
                 stdout_fd: int | None, stderr_fd: int | None) -> None:
        self._control, self._grace, self._node_id = control, grace, node_id
        self._outputs = (stdout_fd, stderr_fd)
        self._tenure = Tenure()
        self._child: _Child | None = None
        self._pending: dict[str, Any] | None = None
        self._closing = False
        self._sigterm = False
        self._inbox = b""
        self._poll = select.poll()
        self._poll.register(control.fileno(), select.POLLIN)
        self._wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(wake_w, False)
        self._poll.register(self._wake_r, select.POLLIN)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        # an adopted orphan's exit wakes the loop, which reaps it
        signal.signal(signal.SIGCHLD, _ignore)
        become_subreaper()
        # Ctrl-C and hang-ups reach the daemon too; it (or its end of the socket) says when
        # to stop. A handler rather than SIG_IGN: handlers are reset at exec, so the child
        # gets the default dispositions.
        # The stop signals too: its own session already keeps the terminal's and a group
        # stop of the daemon away, and nothing may freeze the one process that enforces the
        # deadline. (SIGSTOP cannot be caught: it takes a kill aimed at this pid.)
        for ignored in (signal.SIGINT, signal.SIGHUP, signal.SIGTSTP, signal.SIGTTIN,
                        signal.SIGTTOU):
            signal.signal(ignored, _ignore)
        self._die_with_me = parent_death_signal(os.getpid())

    def run(self) -> int:
        """Serve until the daemon is gone and no child is left; returns the exit status."""
        self._report("ready", pid=os.getpid())
        while not (self._closing and self._child is None):
            self._enforce()
            for fd, _ in self._poll.poll(self._timeout_ms()):
                if fd == self._control.fileno():
                    self._read_control()
                elif fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 512)
                    reap_orphans(processes(), self._child.process.pid if self._child is not None else None)
                elif self._child is not None and fd == self._child.pidfd:
                    self._reap()
            if self._sigterm:
                self._daemon_gone("SIGTERM")
            child = self._child
            if child is not None and child.pidfd is None and child.process.poll() is not None:
                self._reap()  # no pidfd on this system: polled on a tick
            self._start_pending()
        sweep()
        return 0

    # ---- messages ----

    def _read_control(self) -> None:
        """Read everything the socket holds, then apply it all, in order: a frozen
        watchdog's backlog is one batch, so a start in it is judged by what came after it
        too (nothing is started here: see ``_start_pending``)."""
        if self._closing:
            return
        chunks: list[bytes] = []
        eof = False
        while True:
            try:
                data = self._control.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                eof = True
                break
            chunks.append(data)
        self._inbox += b"".join(chunks)
        *lines, self._inbox = self._inbox.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                self._log("watchdog.bad_message", size=len(line))
                continue
            if isinstance(message, dict):
                self._handle(message)
        if eof:
            self._daemon_gone("the daemon's end of the socket closed")

    def _handle(self, message: dict[str, Any]) -> None:
        if "deadline" in message:
            self._heard_deadline(message["deadline"], message.get("term"))
        if "start" in message:
            self._heard_start(message["start"])
        if message.get("stop"):
            self._cancel_pending("stop requested")
            if self._child is not None:
                self._child.watch = with_stop(self._child.watch)

    def _heard_deadline(self, deadline: float | None, term: int | None) -> None:
        if outdated(self._tenure, term) or (deadline is None and stale(self._tenure, term)):
            self._log("watchdog.stale_deadline", term=term)
            return
        self._tenure = heard_deadline(self._tenure, deadline, term)
        pending = self._pending
        if pending is not None and (deadline is None or not belongs(term, pending.get("term"))):
            self._cancel_pending("leadership ended" if deadline is None else
                                 f"a deadline of term {term} came")
        child = self._child
        if child is not None:
            if belongs(term, child.term):
                child.watch = with_deadline(child.watch, deadline)
            else:  # a deadline of another tenure: the child's own is over
                child.watch = with_stop(child.watch)

    def _heard_start(self, start: dict[str, Any]) -> None:
        term = start.get("term")
        reason = refusal(self._tenure, term)
        if reason is not None:
            self._report("cancelled", term=term, reason=reason)
            return
        # the start was sent after every deadline before it: its own is the latest one
        deadline = start.get("deadline", self._tenure.deadline)
        self._tenure = Tenure(deadline, term if term is not None else self._tenure.term,
                              self._tenure.ended)
        # pending until the batch it came in is applied (and, if the old child is still on
        # its way out, until that one is gone)
        if self._child is not None and not belongs(term, self._child.term):
            self._child.watch = with_stop(self._child.watch)
        self._cancel_pending("superseded by a later start")
        self._pending = start

    def _start_pending(self) -> None:
        """Start the pending start, once no child is left and nothing more is to be read:
        what the daemon sent after it (the end of its tenure, a stop) cancels it first."""
        if self._pending is None or self._child is not None:
            return
        self._read_control()
        if self._pending is None or self._child is not None:
            return
        start, self._pending = self._pending, None
        self._spawn(start)

    def _daemon_gone(self, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self._log("watchdog.daemon_gone", reason=reason, child_running=self._child is not None)
        with contextlib.suppress(KeyError, ValueError):
            self._poll.unregister(self._control.fileno())
        self._cancel_pending("the daemon is gone")
        if self._child is not None:
            self._child.watch = with_stop(self._child.watch)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._sigterm = True  # acted on by the loop, which the wakeup fd brings round

    def _cancel_pending(self, reason: str) -> None:
        if self._pending is not None:
            self._report("cancelled", term=self._pending.get("term"), reason=reason)
            self._pending = None

    # ---- the child ----

    def _spawn(self, start: dict[str, Any]) -> None:
        """Start the child on the tenure as it is now (a queued start's own deadline is
        stale by the time it runs)."""
        term = start.get("term")
        reason = refusal(self._tenure, term)
        if reason is not None:
            self._report("cancelled", term=term, reason=reason)
            return
        if self._closing or not startable(self._tenure.deadline, now(), self._grace):
            self._report("failed", term=term, error="too little of the lease left to start")
            return
        env = {**os.environ, **start.get("env", {})}
        try:
            process = subprocess.Popen(
                start["argv"], executable=start.get("executable"), env=env,
                stdin=subprocess.DEVNULL, stdout=self._outputs[0], stderr=self._outputs[1],
                process_group=0, preexec_fn=self._die_with_me, close_fds=True,
            )
        except (OSError, subprocess.SubprocessError, KeyError, TypeError) as e:
            self._report("failed", term=term, error=str(e) or type(e).__name__)
            return
        pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):  # before Linux 5.3: polled instead
            pidfd = os.pidfd_open(process.pid)
            self._poll.register(pidfd, select.POLLIN)
        self._child = _Child(process, term, Watch(self._tenure.deadline), pidfd)
        self._report("started", pid=process.pid, term=term, at=time.time_ns() // 1_000_000)

    def _enforce(self) -> None:
        child = self._child
        while child is not None:
            child.watch, sig = due(child.watch, now(), self._grace)
            if sig is None:
                return
            child.signalled = sig.name
            self._log("watchdog.signalled", pid=child.process.pid, term=child.term,
                      signal=sig.name, level="warning" if sig is signal.SIGKILL else "info")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, sig)
            signal_descendants(sig, outside_group=child.process.pid)

    def _reap(self) -> None:
        child = self._child
        if child is None:
            return
        # The leader of the group is a zombie until waited for, so the group id cannot be
        # reused yet: sweep whatever it left behind, so nothing outlives the child.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, signal.SIGKILL)
        status = child.process.wait()
        if child.pidfd is not None:
            self._poll.unregister(child.pidfd)
            os.close(child.pidfd)
        self._child = None
        # and whatever it started that left its group (even its session): the orphans were
        # adopted by the watchdog, the rest are still below it
        sweep()
        self._report("exited", pid=child.process.pid, term=child.term, status=status,
                     signalled=child.signalled)

    def _timeout_ms(self) -> int:
        if self._child is None:
            return -1
        tick = 50 if self._child.pidfd is None else -1
        wake = next_wake(self._child.watch, self._grace)
        if wake is None:
            return tick
        ms = max(0, math.ceil((wake - now()) * 1000))
        return ms if tick < 0 else min(ms, tick)

    # ---- output ----

    def _report(self, kind: str, **fields: Any) -> None:
        data = json.dumps({kind: fields}, separators=(",", ":")).encode() + b"\n"
        try:  # never block on a frozen daemon: a lost report is logged, enforcement goes on
            self._control.send(data)
        except OSError:
            self._log("watchdog.report_lost", report=kind)

    def _log(self, event: str, **fields: Any) -> None:
        """One JSON line on stderr, shaped like the daemon's structlog lines."""
        line = {"event": event, "node_id": self._node_id, "level": "info",
                "timestamp": _utc_now(), **fields}
        with contextlib.suppress(OSError, ValueError):
            print(json.dumps(line), file=sys.stderr, flush=True)


def _utc_now() -> str:
    """ISO 8601 UTC with microseconds, as structlog's TimeStamper writes it."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def _ignore(signum: int, frame: Any) -> None:
    """Signal handler that does nothing (see ``Watchdog.__init__``)."""




def main(argv: list[str] | None = None) -> int:
    """``coordinator.child.watchdog --control-fd N --grace S --node-id ID [--stdout-fd ...]`` (started
    by ``coordinator.sidecar``)."""
    parser = argparse.ArgumentParser(prog="coordinator-watchdog")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--grace", type=float, required=True)
    parser.add_argument("--node-id", default="")
    parser.add_argument("--stdout-fd", type=int)
    parser.add_argument("--stderr-fd", type=int)
    args = parser.parse_args(argv)
    control = socket.socket(fileno=args.control_fd)
    control.setblocking(False)
    return Watchdog(control, args.grace, args.node_id, args.stdout_fd, args.stderr_fd).run()


def _exit_now(status: int) -> None:
    """Exit without the interpreter's teardown: the guardian waits for this process to be
    gone before it releases the lease, so every millisecond here delays the next leader."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    _exit_now(main())
