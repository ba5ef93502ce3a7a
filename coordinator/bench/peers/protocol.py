"""What peer programs share: their settings and the JSON lines they print."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Any

from coordinator.bench.options import FAILOVER_RENEW, FAILOVER_TTL

VARIANTS = ("defaults", "matched")
MATCHED_TTL = FAILOVER_TTL  # the lock's TTL at matched settings (s)
MATCHED_RETRY = FAILOVER_RENEW  # renew and retry period at matched settings (s)


def say(event: str, **fields: Any) -> None:
    """Print one protocol line, stamped with the host's monotonic clock."""
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic_ns(), **fields}) + "\n")
    sys.stdout.flush()


def stop_on_sigterm() -> threading.Event:
    """An event set by SIGTERM (and SIGINT): the graceful stop."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop
