"""What every ``coordinator`` command shares: exit statuses and the one-line error."""

from __future__ import annotations

import sys

EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE = 0, 1, 2
# `status` read everything but found a key holding data the coordinator did not write
EXIT_CORRUPT = 3


def fail(message: str, status: int) -> int:
    """Print ``coordinator: <message>`` as one line on stderr and return ``status``."""
    print("coordinator: " + " ".join(message.split()), file=sys.stderr)
    return status
