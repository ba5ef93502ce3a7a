"""What every ``coordinator`` command shares: exit statuses and the one-line error."""

from __future__ import annotations

import contextlib
import os
import sys

EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE = 0, 1, 2
# `status` read everything but found a key holding data the coordinator did not write
EXIT_CORRUPT = 3


def fail(message: str, status: int) -> int:
    """Print ``coordinator: <message>`` as one line on stderr and return ``status``."""
    print("coordinator: " + " ".join(message.split()), file=sys.stderr)
    return status


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader has closed it (POLLERR or POLLHUP on
    the write end): a BrokenPipeError from anywhere else is a real failure."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError):  # no file descriptor (an embedding's StringIO): not a pipe
        return False


def quiet_broken_pipe() -> int:
    """The reader of stdout went away (``| head``): point stdout at /dev/null, so neither
    this process nor the interpreter's final flush prints a traceback, and exit 0."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK
