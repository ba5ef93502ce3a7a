"""Typed results of the lease scripts: the lease record and what each operation returned."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from coordinator.errors import CorruptDataError
from coordinator.json_shapes import JsonShape

Operation = Literal["acquire", "renew"]

MAX_TERM = 2**53  # terms are Lua numbers (doubles) inside the scripts: exact below this
_TERM = re.compile(r"[0-9]{1,16}")


def parse_term(value: str | None) -> int:
    """A stored term: decimal digits for an integer from 0 to 2**53 - 1, else ``ValueError``."""
    if value is None or not _TERM.fullmatch(value) or int(value) >= MAX_TERM:
        raise ValueError(f"field 'term' is not an integer from 0 to 2**53 - 1: {value!r}")
    return int(value)


@dataclass(frozen=True)
class LeaseRecord(JsonShape):
    """The lease hash as stored in Redis; times are Redis-clock milliseconds."""

    holder_id: str
    holder_host: str
    instance_id: str
    term: int
    lease_expires_at: int
    renewed_at: int
    acquired_at: int
    preferred_holder_id: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    reserved: bool = False  # a stand-in: the lease is free but promised to holder_id

    @classmethod
    def from_fields(cls, key: str, fields: dict[str, str]) -> LeaseRecord:
        """Parse the hash's fields, or raise ``CorruptDataError`` naming ``key``."""
        try:
            metadata = json.loads(fields.get("metadata_json") or "{}")
            if not isinstance(metadata, dict):
                raise ValueError("metadata_json is not an object")
            return cls(
                holder_id=_required(fields, "holder_id"),
                holder_host=fields.get("holder_host", ""),
                instance_id=_required(fields, "instance_id"),
                term=parse_term(fields.get("term")),
                lease_expires_at=int(_required(fields, "lease_expires_at")),
                renewed_at=int(fields.get("renewed_at") or 0),
                acquired_at=int(fields.get("acquired_at") or 0),
                preferred_holder_id=fields.get("preferred_holder_id") or None,
                metadata=metadata,
                reserved=fields.get("reserved") == "1",
            )
        except (KeyError, ValueError) as e:
            raise CorruptDataError(key, f"not a lease record ({e})") from e

    def renewed(self, lease_expires_at: int, renewed_at: int) -> LeaseRecord:
        """This record with the two fields a renewal moves: ``dataclasses.replace`` of them,
        without the frozen dataclass's ``__init__`` (ten ``object.__setattr__`` calls, most of
        a renewal's Python time: this runs on every renewal)."""
        record = object.__new__(type(self))
        fields = record.__dict__
        fields.update(self.__dict__)
        fields["lease_expires_at"] = lease_expires_at
        fields["renewed_at"] = renewed_at
        return record

    def to_dict(self) -> dict[str, Any]:
        """The public JSON shape of a lease (no instance id: it is an internal detail)."""
        return {
            "holder_id": self.holder_id,
            "holder_host": self.holder_host,
            "term": self.term,
            "lease_expires_at": self.lease_expires_at,
            "renewed_at": self.renewed_at,
            "acquired_at": self.acquired_at,
            "preferred_holder_id": self.preferred_holder_id,
            "metadata": self.metadata,
        }


def _required(fields: dict[str, str], name: str) -> str:
    value = fields.get(name)
    if not value:
        raise KeyError(f"missing field {name!r}")
    return value


def pairs_to_dict(flat: list[Any]) -> dict[str, str]:
    """Turn an HGETALL-style flat list into a dict."""
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


@dataclass(frozen=True)
class LeaseResult:
    """What acquire-or-renew returned: whether the caller leads, and the lease as it now is."""

    is_leader: bool
    operation: Operation | None
    record: LeaseRecord
    redis_now: int
    automation_mode: str = "running"
    replicas_acked: int | None = None  # when the caller asked to WAIT for replicas

    @property
    def holder_id(self) -> str:
        """The current holder's id."""
        return self.record.holder_id

    @property
    def holder_host(self) -> str:
        """The current holder's host."""
        return self.record.holder_host

    @property
    def term(self) -> int:
        """The current tenure's term (the fencing token)."""
        return self.record.term

    @property
    def lease_expires_at(self) -> int:
        """When the lease expires unless renewed, Redis-clock ms."""
        return self.record.lease_expires_at

    @property
    def renewed_at(self) -> int:
        """When the lease was last acquired or renewed, Redis-clock ms."""
        return self.record.renewed_at

    @property
    def remaining_ms(self) -> int:
        """Milliseconds of lease left as Redis saw it when it answered."""
        return max(0, self.record.lease_expires_at - self.redis_now)


@dataclass(frozen=True)
class ReleaseResult:
    """What release returned: ``released`` is False when the caller was not the holder.

    With a handover target, ``reserved_for`` names the node the lease is now reserved for;
    a target found dead or unknown gets no reservation and ``handoff_refused`` says why
    ("unknown node", "status is stopping", "heartbeat is stale").
    """

    released: bool
    current: LeaseRecord | None
    redis_now: int
    reserved_for: str | None = None
    handoff_refused: str | None = None


@dataclass(frozen=True)
class FenceResult:
    """What a fenced write returned: ``accepted`` is False when the term was stale."""

    accepted: bool
    term: int
    current_term: int | None
    redis_now: int
