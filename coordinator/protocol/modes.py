"""The namespace's automation mode (running | draining | paused): read it, set it atomically."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from coordinator.connection.boundary import reading, text
from coordinator.errors import (
    CorruptDataError,
    InvalidArgumentError,
    UnexpectedReplyError,
)
from coordinator.protocol import keys
from coordinator.protocol.lease import DEFAULT_HISTORY_MAXLEN
from coordinator.protocol.scripts import register_scripts, run_script

AutomationMode = Literal["running", "draining", "paused"]
MODES: tuple[AutomationMode, ...] = ("running", "draining", "paused")
DEFAULT_MODE: AutomationMode = "running"


def check_mode(mode: object) -> AutomationMode:
    """Return ``mode`` if it is a known automation mode, else raise ``InvalidArgumentError``."""
    if mode not in MODES:
        known = ", ".join(MODES)
        raise InvalidArgumentError(f"automation mode must be one of {known}, got {mode!r}")
    return mode


@dataclass(frozen=True)
class ModeChange:
    """What setting the mode did: ``changed`` is False when it already had that mode."""

    changed: bool
    mode: AutomationMode
    previous_mode: AutomationMode
    at: int


def stricter(a: AutomationMode, b: AutomationMode) -> AutomationMode:
    """The stricter of two modes (paused over draining over running)."""
    return a if MODES.index(a) >= MODES.index(b) else b


async def set_automation_mode(
    redis: Any, namespace: str, mode: str, *, history_maxlen: int = DEFAULT_HISTORY_MAXLEN,
    lease: str | None = None,
) -> ModeChange:
    """Set the mode in one script; a change is announced as ``automation_mode_changed``.
    With ``lease``, that lease's own mode (many leases): the stricter of it and the
    namespace's applies to the lease; its event carries ``lease``."""
    wanted = check_mode(mode)
    if isinstance(history_maxlen, bool) or not isinstance(history_maxlen, int) or (
        history_maxlen < 1
    ):
        raise InvalidArgumentError(
            f"history_maxlen must be an integer >= 1, got {history_maxlen!r}")
    reply = await run_script(
        register_scripts(redis).set_mode,
        [keys.automation_mode_key(namespace) if lease is None
         else keys.lease_mode_key(namespace, lease), keys.history_key(namespace)],
        [wanted, keys.events_channel(namespace), history_maxlen, lease or ""],
    )
    if len(reply) != 3 or reply[0] not in ("changed", "unchanged") or reply[2] not in MODES:
        raise UnexpectedReplyError(f"set_mode replied {reply!r}")
    return ModeChange(changed=reply[0] == "changed", mode=wanted,
                      previous_mode=cast(AutomationMode, reply[2]), at=int(reply[1]))


async def get_automation_mode(redis: Any, namespace: str) -> AutomationMode:
    """The namespace's mode; ``running`` when none was ever set."""
    key = keys.automation_mode_key(namespace)
    with reading(key, "an automation mode"):
        raw = text(await redis.get(key))
    if raw is None:
        return DEFAULT_MODE
    if raw not in MODES:
        raise CorruptDataError(key, f"holds {raw!r}, not an automation mode")
    return cast(AutomationMode, raw)
