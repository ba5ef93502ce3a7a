"""The registry of a namespace's many leases: adding and removing names
(``lua/leases_change.lua``, one atomic call announcing ``leases_changed``), and reading it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from coordinator.connection.boundary import reading, text
from coordinator.errors import CoordinatorError, CorruptDataError, InvalidArgumentError, UnexpectedReplyError
from coordinator.leases.names import MAX_LEASES
from coordinator.protocol import keys
from coordinator.protocol.lease import DEFAULT_HISTORY_MAXLEN
from coordinator.protocol.scripts import register_scripts, run_script


class RegistryFullError(CoordinatorError):
    """An add would take the registry past ``MAX_LEASES`` names; nothing was changed."""

    def __init__(self, registered: int, adding: int, limit: int) -> None:
        super().__init__(f"the registry holds {registered} leases and may hold at most {limit}: "
                         f"adding {adding} more is refused (nothing was changed)")
        self.registered, self.adding, self.limit = registered, adding, limit


@dataclass(frozen=True)
class RegistryChange:
    """What one add or remove did: the names it added or removed (those already in that state
    are left out), the leases whose preferred holders it set, and the registry's version."""

    action: Literal["add", "remove"]
    names: tuple[str, ...]
    preferred_for: tuple[str, ...]
    version: int
    at: int  # Redis ms

    @property
    def changed(self) -> bool:
        """Whether the call changed anything (and so announced leases_changed)."""
        return bool(self.names or self.preferred_for)


async def add_leases(redis: Any, namespace: str, names: Iterable[str], *,
                     preferred: Sequence[str] | None = None,
                     history_maxlen: int = DEFAULT_HISTORY_MAXLEN) -> RegistryChange:
    """Register ``names`` (those already registered stay as they are); with ``preferred``,
    set their preferred holders, in order. Refused beyond ``MAX_LEASES`` registered."""
    holders = "" if preferred is None else ",".join(_checked_preferred(preferred))
    return await _change(redis, namespace, "add", names, holders, history_maxlen)


async def remove_leases(redis: Any, namespace: str, names: Iterable[str], *,
                        history_maxlen: int = DEFAULT_HISTORY_MAXLEN) -> RegistryChange:
    """Unregister ``names`` and forget their preferred holders; their terms are kept, so a
    name added again keeps its terms rising. The holders release them at their next plan."""
    return await _change(redis, namespace, "remove", names, "", history_maxlen)


async def list_leases(redis: Any, namespace: str) -> tuple[str, ...]:
    """The registered lease names, sorted."""
    key = keys.leases_key(namespace)
    with reading(key, "a sorted set of lease names"):
        members = await redis.zrange(key, 0, -1)
    return tuple(sorted(str(text(m)) for m in members))


async def registry_version(redis: Any, namespace: str) -> int:
    """The registry's version: 0 before its first change, then one more per change."""
    key = keys.leases_version_key(namespace)
    with reading(key, "a version string"):
        raw = await redis.get(key)
    return parse_version(key, raw)


def parse_version(key: str, raw: Any) -> int:
    """The registry's version as read from ``key`` (0 when never changed); anything but
    decimal digits is reported, never guessed."""
    if raw is None:
        return 0
    value = str(text(raw))
    if not value.isascii() or not value.isdigit():
        raise CorruptDataError(key, f"the registry version is not a whole number: {value!r}")
    return int(value)


def _checked_names(names: Iterable[str]) -> list[str]:
    checked = list(dict.fromkeys(keys.check_name("lease name", n) for n in names))
    if not checked:
        raise InvalidArgumentError("name at least one lease")
    if len(checked) > MAX_LEASES:
        raise InvalidArgumentError(f"at most {MAX_LEASES} leases, got {len(checked)}")
    return checked


def _checked_preferred(preferred: Sequence[str]) -> list[str]:
    if isinstance(preferred, str):
        raise InvalidArgumentError("preferred holders are a sequence of node ids, not one string")
    checked = list(dict.fromkeys(keys.check_node_id("preferred holder", n) for n in preferred))
    if not checked:
        raise InvalidArgumentError("name at least one preferred holder, or none at all")
    return checked


async def _change(redis: Any, namespace: str, action: Literal["add", "remove"],
                  names: Iterable[str], preferred: str, history_maxlen: int) -> RegistryChange:
    if not isinstance(history_maxlen, int) or history_maxlen < 1:
        raise InvalidArgumentError("history_maxlen must be an integer >= 1")
    checked = _checked_names(names)
    reply = await run_script(
        register_scripts(redis).leases_change,
        [keys.leases_key(namespace), keys.leases_version_key(namespace),
         keys.affinity_key(namespace), keys.history_key(namespace)],
        [action, keys.events_channel(namespace), history_maxlen, MAX_LEASES, preferred, *checked])
    return _parsed(action, reply)


def _parsed(action: Literal["add", "remove"], reply: list[Any]) -> RegistryChange:
    try:
        code, now = reply[0], int(reply[1])
        if code == "too_many":
            raise RegistryFullError(int(reply[2]), int(reply[4]), int(reply[3]))
        if code not in ("changed", "unchanged"):
            raise ValueError(code)
        version, count = int(reply[2]), int(reply[3])
        names = tuple(str(n) for n in reply[4:4 + count])
        reassigned_count = int(reply[4 + count])
        reassigned = tuple(str(n) for n in reply[5 + count:5 + count + reassigned_count])
        if len(reply) != 5 + count + reassigned_count or len(names) != count:
            raise ValueError("length")
    except (IndexError, TypeError, ValueError) as e:
        raise UnexpectedReplyError(f"leases_change replied {reply!r}") from e
    return RegistryChange(action, names, reassigned, version, now)
