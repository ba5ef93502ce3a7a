"""The daemon's side of the watchdog: start it, tell it things without blocking, hear back.

The watchdog (``coordinator/child/watchdog.py``) is a process of its own; this module starts it
with one end of a socket pair and speaks its line-per-message JSON protocol. Sends never
block the daemon: what the socket does not take at once waits in a buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from coordinator.child.watchdog_processes import descendants, processes
from coordinator.child.watchdog_rules import now
from coordinator.sidecar import sidecar_command

WATCHDOG_MODULE = "coordinator.child.watchdog"

# processes of the daemon that no sweep of the child's descendants may kill (the guardian)
_SPARED: set[int] = set()


def spare(pid: int) -> None:
    """``pid`` is no descendant of the child's: the backstop's sweep leaves it alone."""
    _SPARED.add(pid)


def unspare(pid: int) -> None:
    """``pid`` was reaped: it may be reused by anyone, a descendant of the child's too."""
    _SPARED.discard(pid)


def watchdog_command(control_fd: int, grace: float, node_id: str,
                     outputs: tuple[int, int] | None = None) -> list[str]:
    """The command line that starts the watchdog (``-I``: only the standard library)."""
    args = ["--control-fd", str(control_fd), "--grace", repr(grace), "--node-id", node_id]
    if outputs is not None:
        args += ["--stdout-fd", str(outputs[0]), "--stderr-fd", str(outputs[1])]
    return sidecar_command(WATCHDOG_MODULE, args)


def spawn_watchdog(grace: float, node_id: str, *, env: Mapping[str, str],
                   prefix_output: bool = False
                   ) -> tuple[subprocess.Popen[bytes], socket.socket, tuple[int, int] | None]:
    """Start a watchdog; returns it, the daemon's end of the control socket, and (when the
    child's output is to be prefixed) the read ends of the child's stdout/stderr pipes."""
    ours, theirs = socket.socketpair()
    pipes = [os.pipe(), os.pipe()] if prefix_output else []
    write_ends = (pipes[0][1], pipes[1][1]) if pipes else None
    try:
        process = subprocess.Popen(
            watchdog_command(theirs.fileno(), grace, node_id, write_ends),
            pass_fds=[theirs.fileno(), *(write_ends or ())], env=dict(env),
            stdin=subprocess.DEVNULL,
            # out of reach of a stop of the daemon's process group or terminal (Ctrl-Z):
            # the watchdog must keep time while the daemon is frozen. It still ends with
            # the daemon: it reads EOF on the socket when the daemon dies.
            start_new_session=True,
        )
    except BaseException:
        ours.close()
        for r, _ in pipes:
            os.close(r)
        raise
    finally:
        theirs.close()
        for fd in write_ends or ():
            os.close(fd)
    ours.setblocking(False)
    return process, ours, (pipes[0][0], pipes[1][0]) if pipes else None


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class WatchdogLink:
    """Non-blocking messages to the watchdog and its reports back, on the daemon's loop."""

    def __init__(self, control: socket.socket, *, on_report: Callable[[dict[str, Any]], None],
                 on_lost: Callable[[], None]) -> None:
        self._control = control
        self._on_report, self._on_lost = on_report, on_lost
        self._loop = asyncio.get_running_loop()
        self._outgoing = bytearray()
        self._inbox = b""
        self._closed = False
        self._loop.add_reader(control.fileno(), self._readable)

    def send(self, message: dict[str, Any]) -> None:
        """Queue ``message``; it is written now if the socket takes it, else when it can."""
        if self._closed:
            return
        waiting = bool(self._outgoing)
        self._outgoing += encode(message)
        if not waiting:
            self._flush()

    def close(self) -> None:
        """Close the daemon's end: the watchdog reads EOF, stops any child and exits."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._control.fileno())
            self._loop.remove_writer(self._control.fileno())
        self._control.close()

    def _flush(self) -> None:
        try:
            sent = self._control.send(self._outgoing)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._lost()
            return
        del self._outgoing[:sent]
        if self._outgoing:
            self._loop.add_writer(self._control.fileno(), self._flush)
        else:
            self._loop.remove_writer(self._control.fileno())

    def _readable(self) -> None:
        try:
            data = self._control.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        self._inbox += data
        *lines, self._inbox = self._inbox.split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                report = json.loads(line)
                if isinstance(report, dict):
                    self._on_report(report)

    def _lost(self) -> None:
        if not self._closed:
            self.close()
            self._on_lost()


class OutputRelay:
    """Copies the child's output to the daemon's stdout/stderr, each line prefixed."""

    def __init__(self, read_ends: tuple[int, int], prefix: bytes) -> None:
        self._loop = asyncio.get_running_loop()
        self._prefix = prefix
        self._partial: dict[int, bytes] = {}
        self._targets = dict(zip(read_ends, (1, 2), strict=True))
        for fd in read_ends:
            os.set_blocking(fd, False)
            self._partial[fd] = b""
            self._loop.add_reader(fd, self._readable, fd)

    def drain(self) -> None:
        """Copy what is left (the writers are gone) and close the pipes."""
        for fd in list(self._targets):
            while fd in self._targets:
                self._readable(fd, final=True)

    def _readable(self, fd: int, final: bool = False) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:  # at the end: a writer that escaped the sweep is not waited for
            if final:
                self._finish(fd)
            return
        except OSError:
            data = b""
        if not data:
            self._finish(fd)
            return
        *lines, self._partial[fd] = (self._partial[fd] + data).split(b"\n")
        if lines:
            self._write(fd, b"".join(self._prefix + line + b"\n" for line in lines))

    def _finish(self, fd: int) -> None:
        if self._partial.get(fd):
            self._write(fd, self._prefix + self._partial[fd] + b"\n")
        self._loop.remove_reader(fd)
        os.close(fd)
        del self._targets[fd], self._partial[fd]

    def _write(self, fd: int, data: bytes) -> None:
        target = self._targets[fd]
        with contextlib.suppress(OSError):
            while data:
                data = data[os.write(target, data):]


class Backstop:
    """The daemon's own hold on the child, for when the watchdog is alive but cannot act
    (stopped on its own, by pid): the child's pidfd, and SIGKILL for the child and its
    process group at the lease deadline, or when asked because the watchdog did not report
    the child gone. When the watchdog works it has ended the child by then and this does
    nothing; when the daemon is the one frozen, the watchdog acts alone.

    Killing by process group is safe only while the group's leader is not reaped (the id
    cannot be reused before): the pidfd says so, as signalling it fails once it is reaped.
    What left the group goes too: every descendant of the daemon but the watchdog (a child
    subreaper, the watchdog adopts the child's orphans, in whatever session; the daemon,
    one too, adopts them when the watchdog dies)."""

    def __init__(self, on_kill: Callable[[int, str], None]) -> None:
        self._on_kill = on_kill
        self._adopter: subprocess.Popen[bytes] | None = None
        self._heir = False  # the daemon inherits the watchdog's orphans (a subreaper too)
        self._pid: int | None = None
        self._pidfd: int | None = None
        self._bound: float | None = None
        self._held = False
        self._timer: asyncio.TimerHandle | None = None

    def adopted_by(self, watchdog: subprocess.Popen[bytes], *, heir: bool) -> None:
        """The watchdog: the child's orphans are its children; with ``heir``, this process
        is a subreaper dedicated to the watchdog (``coordinator run``), and what the
        watchdog had passes to it when the watchdog dies."""
        self._adopter, self._heir = watchdog, heir

    def watch(self, pid: int, bound: float | None) -> None:
        """The watchdog started the child ``pid``; it must be gone by ``bound``."""
        self.forget()
        try:
            self._pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # gone already, or no pidfds (before Linux 5.3)
            return
        self._pid, self._bound, self._held = pid, bound, False
        self._arm()

    def renewed(self, deadline: float) -> None:
        """The lease was renewed: the bound moves, unless the child is being stopped."""
        if self._pidfd is not None and not self._held:
            self._bound = deadline
            self._arm()

    def hold(self) -> None:
        """The child is being stopped: its bound no longer moves (as in the watchdog)."""
        self._held = True

    def forget(self) -> None:
        """The child was reported gone (or a new one replaces it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pidfd is not None:
            os.close(self._pidfd)
        self._pid = self._pidfd = None

    def exited(self) -> bool:
        """Whether the child is known to have exited (True when none is watched)."""
        if self._pidfd is None:
            return True
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        return bool(poller.poll(0))

    def kill(self, reason: str) -> None:
        """SIGKILL the child and its process group now, if the watchdog has not reaped it."""
        if self._pidfd is None or self._pid is None:
            return
        alive = not self.exited()
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            return  # reaped: the watchdog swept its group then
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, signal.SIGKILL)
        self._kill_descendants()
        if alive:  # else it only swept what the exited child left in its group
            self._on_kill(self._pid, reason)

    async def kill_and_wait(self, reason: str, timeout: float) -> bool:
        """``kill``, then wait until the child has exited; True if it has."""
        self.kill(reason)
        end = now() + timeout
        while not self.exited() and now() < end:
            await asyncio.sleep(0.01)
        return self.exited()

    def _kill_descendants(self) -> None:
        """SIGKILL what the child started that left its group: everything below the daemon
        but the watchdog itself (frozen, it cannot reap what it adopted, so their pids stay
        theirs; dead or dying, what it had passes to the daemon, a subreaper too)."""
        parents = {pid: parent for pid, (parent, _) in processes().items()}
        spared = {self._pid, *_SPARED}
        roots = [os.getpid()] if self._heir else []
        if self._adopter is not None and self._adopter.returncode is None:
            spared.add(self._adopter.pid)  # its pid is its own until the daemon reaps it
            roots.append(self._adopter.pid)
        below = {pid for root in roots for pid in descendants(parents, root)}
        for pid in below - spared:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._bound is not None:
            self._timer = asyncio.get_running_loop().call_later(
                max(0.0, self._bound - now()), self._due)

    def _due(self) -> None:
        self._timer = None
        if self._bound is not None and now() < self._bound:  # the loop's clock ran ahead
            self._arm()
            return
        self.kill("the lease deadline passed")
