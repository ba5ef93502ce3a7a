"""The watchdog's hold on processes: the child's descendants found through /proc, the
kernel's help (child subreaper, parent-death signal), and the sweep that kills and reaps
whatever the child left behind, so that nothing it started outlives it (Linux; elsewhere
these do nothing and the child's process group is all that is signalled).

Standard library only (the watchdog process imports it); the daemon's backstop reads the
process table with ``processes`` and ``descendants`` too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Callable

from coordinator.child.watchdog_rules import now

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
SWEEP_WAIT = 1.0  # for the descendants SIGKILLed after the child's exit to be gone


def descendants(parents: dict[int, int], root: int) -> list[int]:
    """Every process below ``root`` in ``parents`` (pid -> parent pid), parents first."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    seen = {root}
    todo = [root]
    while todo:
        for pid in sorted(children.get(todo.pop(0), ())):
            if pid not in seen:
                seen.add(pid)
                found.append(pid)
                todo.append(pid)
    return found


def processes() -> dict[int, tuple[int, str]]:
    """Every process on the machine: pid -> (parent pid, state letter), from /proc (empty
    where there is none)."""
    found: dict[int, tuple[int, str]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            found[int(entry)] = (int(fields[1]), fields[0].decode())
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return found


def become_subreaper() -> bool:
    """Have the kernel give this process its descendants' orphans, in whatever group or
    session they are, rather than init (Linux 3.4+); True if it did."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return bool(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def parent_death_signal(parent: int) -> Callable[[], None] | None:
    """A pre-exec step that has the kernel SIGKILL the child if the watchdog itself dies
    (e.g. the daemon's whole process group was killed at once); Linux only."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the watchdog died before prctl took effect
            os._exit(1)

    return die_with_parent


def signal_descendants(sig: signal.Signals, outside_group: int | None = None) -> None:
    """Signal every descendant of this process (the child's, and the orphans it adopted);
    with ``outside_group``, only those that left that process group (the group had the
    signal already)."""
    for pid in descendants({p: pp for p, (pp, _) in processes().items()}, os.getpid()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if outside_group is None or os.getpgid(pid) != outside_group:
                os.kill(pid, sig)


def reap_orphans(table: dict[int, tuple[int, str]], child: int | None) -> None:
    """Reap the adopted orphans in ``table`` that exited (never ``child``: its Popen reaps
    it)."""
    mine = os.getpid()
    for pid, (parent, state) in table.items():
        if parent == mine and pid != child and state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def sweep() -> None:
    """Once the child is reaped: SIGKILL every descendant left and reap those adopted,
    until none is left (or a second passed: one stuck in the kernel dies when it leaves it,
    and is reaped then)."""
    end = now() + SWEEP_WAIT
    while True:
        table = processes()
        left = descendants({p: pp for p, (pp, _) in table.items()}, os.getpid())
        for pid in left:
            if table[pid][1] != "Z":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        reap_orphans(table, None)
        if not left or now() >= end:
            return
        time.sleep(0.002)
