"""Keys holding data the coordinator did not write: the remedy an operator applies, and a
limit on how often a daemon repeats the same complaint."""

from __future__ import annotations

CORRUPT_LOG_INTERVAL = 60.0  # seconds between two log lines about the same corrupt key


def corrupt_key_remedy(key: str) -> str:
    """What an operator does about a key the coordinator cannot read."""
    return (f"inspect it (redis-cli TYPE {key}), then delete it (redis-cli DEL {key}) so the "
            "coordinator can write it afresh; if another application uses this key, give the "
            "coordinator its own COORDINATOR_NAMESPACE")


class OncePer:
    """``due(key, now)`` is True the first time for a key, then once per ``interval`` seconds."""

    def __init__(self, interval: float = CORRUPT_LOG_INTERVAL) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}

    def due(self, key: str, now: float) -> bool:
        """Whether to log about ``key`` now (and remember that it was)."""
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            return False
        self._last[key] = now
        return True
