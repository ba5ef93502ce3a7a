"""Typed events of a namespace, parsed strictly from their JSON; each converts back exactly."""

from __future__ import annotations

import json
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coordinator.errors import CorruptDataError
from coordinator.json_shapes import JsonShape
from coordinator.protocol.modes import AutomationMode


class _Event(BaseModel, JsonShape):
    # strict: a term of "3" or true is a malformed event, not a guess; unknown extra fields
    # are dropped so to_dict() is exactly the contract whatever a newer publisher adds.
    model_config = ConfigDict(frozen=True, strict=True, extra="ignore", populate_by_name=True)

    type: str
    # the history stream's id for this event; None for resync/disconnected (not stored events)
    stream_id: str | None = Field(default=None, exclude=True)

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object of the contract (no stream id)."""
        return self.model_dump(by_alias=True)

    def summary(self) -> str:
        """One human-readable sentence describing the event."""
        return self.type.replace("_", " ")


class LeaderChanged(_Event):
    """A new tenure began: ``holder_id`` acquired the lease with ``term``."""

    type: Literal["leader_changed"] = "leader_changed"
    lease: str
    holder_id: str
    holder_host: str
    term: int
    previous_holder_id: str | None
    at: int

    def summary(self) -> str:
        """One human-readable line describing the event."""
        was = f" (previous {self.previous_holder_id})" if self.previous_holder_id else ""
        who = f"{self.holder_id} on {self.holder_host}"
        return f"lease {self.lease}: {who} leads, term {self.term}{was}"


class LeaseReleased(_Event):
    """The holder gave the lease up; it is free until someone acquires it."""

    type: Literal["lease_released"] = "lease_released"
    lease: str
    holder_id: str
    term: int
    at: int

    def summary(self) -> str:
        """One human-readable line describing the event."""
        return f"lease {self.lease}: {self.holder_id} released term {self.term}"


class Gap(_Event):
    """The history no longer reaches back to a cursor (trimmed, or Redis restarted empty):
    events after ``cursor`` and before ``oldest_id`` (None: nothing is left) may be lost.

    Made by the reader, never published; a resync follows it in a watch. ``at`` is Redis ms.
    """

    type: Literal["gap"] = "gap"
    cursor: str
    oldest_id: str | None
    lost_at_least: int | None = None  # when it can be counted; None: unknown
    at: int

    def summary(self) -> str:
        """One human-readable line describing the event."""
        left = f"the oldest kept is {self.oldest_id}" if self.oldest_id else "none are left"
        return f"events after {self.cursor} were trimmed or lost: {left}"


class LeaseExpired(_Event):
    """The holder's lease lapsed unrenewed (e.g. its daemon died): nobody leads that tenure.

    Made by the watcher, never published: it re-read the lease after the expiry it knew and
    found it gone with no release or successor recorded. ``at`` is that expiry (Redis ms).
    """

    type: Literal["lease_expired"] = "lease_expired"
    lease: str
    holder_id: str
    term: int
    at: int

    def summary(self) -> str:
        """One human-readable line describing the event."""
        return f"lease {self.lease} expired: {self.holder_id} (term {self.term}) is no longer leader"


class StateChanged(_Event):
    """A daemon's role changed (e.g. standby -> leader); ``at`` is that daemon's wall clock.
    A node of many leases says which of its leases (``lease``); a single lease's daemon
    does not."""

    type: Literal["state_changed"] = "state_changed"
    node_id: str
    host: str
    from_: str = Field(alias="from")
    to: str
    term: int | None
    reason: str | None = None  # why, in a few words ("Redis clock jumped forward 15.0 s")
    lease: str | None = None
    at: int

    def to_dict(self) -> dict[str, Any]:
        """As published; ``reason`` only when the daemon gave one (older daemons do not),
        ``lease`` only from a node of many leases."""
        out = super().to_dict()
        for optional in ("reason", "lease"):
            if out.get(optional) is None:
                out.pop(optional, None)
        return out

    def summary(self) -> str:
        """One human-readable line describing the event."""
        term = "" if self.term is None else f" (term {self.term})"
        why = f": {self.reason}" if self.reason else ""
        lease = f"lease {self.lease}: " if self.lease is not None else ""
        return (f"{lease}{self.node_id} on {self.host} went from {self.from_} to "
                f"{self.to}{term}{why}")


class AutomationModeChanged(_Event):
    """An operator changed the namespace's automation mode, or one lease's (``lease``)."""

    type: Literal["automation_mode_changed"] = "automation_mode_changed"
    mode: AutomationMode
    previous_mode: AutomationMode
    at: int
    lease: str | None = None  # many leases: the lease whose own mode changed

    def summary(self) -> str:
        """One human-readable line describing the event."""
        where = "" if self.lease is None else f"lease {self.lease}: "
        return f"{where}automation mode changed from {self.previous_mode} to {self.mode}"

    def to_dict(self) -> dict[str, Any]:
        """The namespace's change as it always was; a lease's own carries ``lease``."""
        shape = super().to_dict()
        if shape.get("lease") is None:
            shape.pop("lease", None)
        return shape


class LeasesChanged(_Event):
    """An operator (or a daemon registering COORDINATOR_LEASES) changed the registry of many
    leases: ``added`` / ``removed`` names, the registry's new ``version``; ``preferred`` is the
    preferred holders set for the leases in ``preferred_for`` (both empty when none were set)."""

    type: Literal["leases_changed"] = "leases_changed"
    added: list[str]
    removed: list[str]
    version: int
    preferred_for: list[str] = Field(default_factory=list)
    preferred: list[str] = Field(default_factory=list)
    at: int

    def to_dict(self) -> dict[str, Any]:
        """As published: the preferred fields only when preferred holders were set."""
        out = super().to_dict()
        if not self.preferred_for:
            out.pop("preferred_for", None)
            out.pop("preferred", None)
        return out

    def summary(self) -> str:
        """One human-readable line describing the event."""
        parts = [f"{verb} {_counted(names)}" for verb, names in
                 (("added", self.added), ("removed", self.removed)) if names]
        if self.preferred_for:
            parts.append(f"preferred holders {', '.join(self.preferred)} for "
                         f"{_counted(self.preferred_for)}")
        return f"leases {'; '.join(parts) or 'unchanged'} (registry version {self.version})"


def _counted(names: list[str], shown: int = 5) -> str:
    """``3 leases (a, b, c)``; long lists end in "..." after ``shown`` names."""
    listed = ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
    return f"{len(names)} lease{'s' if len(names) != 1 else ''} ({listed})"


class Resync(_Event):
    """The lease as Redis holds it, read after (re)subscribing; holder fields None when free.

    ``lease_expires_at`` (Redis ms) is when the lease lapses unless renewed; the watcher
    re-reads it then. ``at`` is Redis's clock at the read.
    """

    type: Literal["resync"] = "resync"
    lease: str
    holder_id: str | None
    holder_host: str | None
    term: int | None
    lease_expires_at: int | None
    at: int

    def summary(self) -> str:
        """One human-readable line describing the event."""
        if self.holder_id is None:
            return f"lease {self.lease}: free"
        return f"lease {self.lease}: {self.holder_id} on {self.holder_host} leads, term {self.term}"


class Disconnected(_Event):
    """The watcher lost Redis; events may be missed until the next resync. ``at`` is local."""

    type: Literal["disconnected"] = "disconnected"
    at: int

    def summary(self) -> str:
        """One human-readable line describing the event."""
        return "lost Redis; reconnecting (a resync follows)"


class OtherEvent(_Event):
    """A well-formed event of a type this version does not know (from a newer publisher)."""

    model_config = ConfigDict(frozen=True, strict=True, extra="allow")

    at: int

    def to_dict(self) -> dict[str, Any]:
        """The event exactly as it was published."""
        return {"type": self.type, "at": self.at, **(self.model_extra or {})}

    def summary(self) -> str:
        """A sentence: handoff_requested (request_handoff.lua) in words, any other type as
        its name and fields in words (a newer publisher's event, never raw JSON)."""
        extra = self.model_extra or {}
        if self.type == "handoff_requested":
            lease = f"lease {extra['lease']}: " if isinstance(extra.get("lease"), str) else ""
            source = f" from {extra['from']}" if isinstance(extra.get("from"), str) else ""
            return f"{lease}an operator asked to hand leadership over{source} to {extra.get('to')}"
        fields = ", ".join(f"{name} {_words(value)}" for name, value in extra.items())
        return f"{self.type.replace('_', ' ')} (an event of a newer version)" + (
            f": {fields}" if fields else "")


def _words(value: Any) -> str:
    """A field's value in words: lists joined by commas, objects as name value pairs."""
    if isinstance(value, list):
        return ", ".join(_words(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k} {_words(v)}" for k, v in value.items()) or "none"
    if value is None:
        return "none"
    return str(value)


WatchEvent = (
    LeaderChanged | LeaseReleased | StateChanged | AutomationModeChanged | LeasesChanged | Resync
    | Disconnected | LeaseExpired | Gap | OtherEvent
)

_STORED: dict[str, type[_Event]] = {
    model.model_fields["type"].default: model
    for model in (LeaderChanged, LeaseReleased, StateChanged, AutomationModeChanged, LeasesChanged)
}
# published by the watcher itself, never by Redis: on the channel they are forgeries
_WATCHER_ONLY = ("resync", "disconnected", "lease_expired", "gap")


def parse_event(raw: str | bytes, *, source: str, stream_id: str | None = None) -> WatchEvent:
    """Parse one published event, or raise ``CorruptDataError`` naming ``source``."""
    try:
        data = json.loads(raw)
    except RecursionError:  # nested past the parser's depth: one message must not kill a reader
        raise CorruptDataError(source, "event is nested too deeply to be one of ours") from None
    except (TypeError, ValueError) as e:
        raise CorruptDataError(source, f"event is not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise CorruptDataError(source, "event is not a JSON object with a string 'type'")
    kind = data["type"]
    if kind in _WATCHER_ONLY:
        raise CorruptDataError(source, f"{kind!r} events are made by watchers, not published")
    model = _STORED.get(kind, OtherEvent)
    try:
        event = model.model_validate({**data, "stream_id": stream_id})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise CorruptDataError(source, f"malformed {kind!r} event ({problems})") from None
    return cast(WatchEvent, event)
