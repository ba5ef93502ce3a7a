"""One node's renewal of every lease it holds, with its heartbeat riding along, in one round
trip (``lua/renew_many.lua``): the per-lease outcome is exactly what ``Lease`` renewing each
lease alone would have seen (renewed, lost, corrupt), typed per lease."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from coordinator.errors import CorruptDataError, InvalidArgumentError, UnexpectedReplyError
from coordinator.protocol import keys
from coordinator.protocol.lease import ttl_to_ms
from coordinator.protocol.membership import ControllerStatus, Heartbeat
from coordinator.protocol.scripts import register_scripts, run_script

RenewOutcome = Literal["renewed", "lost", "corrupt"]
_HEARTBEAT_ARGS = 14  # heartbeat.lua's ARGV, passed after renew_many.lua's own four
_CODES: dict[str, RenewOutcome] = {"renew": "renewed", "lost": "lost", "corrupt": "corrupt"}


@dataclass(frozen=True)
class LeaseRenewal:
    """One lease's outcome: ``renewed`` (with its term and new expiry), ``lost`` (not this
    holder's and process's any more: expired, taken, or of another type), or ``corrupt`` (a
    field this holder could not have written; nothing was changed)."""

    name: str
    key: str
    outcome: RenewOutcome
    term: int | None = None
    lease_expires_at: int | None = None
    corrupt_field: str | None = None

    def corrupt_error(self) -> CorruptDataError | None:
        """The error a single renewal of this lease raises (``Lease.acquire``), or None."""
        if self.outcome != "corrupt":
            return None
        return CorruptDataError(self.key, f"field {self.corrupt_field!r} is missing, malformed "
                                          "or out of range")


@dataclass(frozen=True)
class ManyRenewed:
    """What one ``renew_many`` call returned, on one reading of the Redis clock."""

    redis_now: int
    automation_mode: str
    renewals: tuple[LeaseRenewal, ...]
    heartbeat_started_at: int | None = None  # the beat's started_at; None: no beat was sent
    heartbeat_foreign_key: str | None = None  # the beat found this key of another type

    def heartbeat_error(self) -> CorruptDataError | None:
        """The error heartbeat.lua alone raises for the key of another type, or None."""
        if self.heartbeat_foreign_key is None:
            return None
        return CorruptDataError(self.heartbeat_foreign_key,
                                "holds a value of a type the coordinator never writes")

    def outcome(self, name: str) -> LeaseRenewal:
        """The renewal of lease ``name`` (KeyError if it was not in the call)."""
        for renewal in self.renewals:
            if renewal.name == name:
                return renewal
        raise KeyError(name)


class ManyLeaseRenewer:
    """Renews a list of leases one holder (one process) holds, in one round trip."""

    def __init__(self, redis: Any, *, namespace: str, holder_id: str, instance_id: str,
                 ttl: float, heartbeat: Heartbeat | None = None) -> None:
        self.namespace = keys.check_name("namespace", namespace)
        self.holder_id = keys.check_node_id("holder id", holder_id)
        self.instance_id = instance_id
        self.ttl_ms = ttl_to_ms(ttl)
        self._scripts = register_scripts(redis)
        self._heartbeat = heartbeat
        heartbeat_keys = heartbeat.script_keys if heartbeat is not None else [
            keys.heartbeats_key(namespace), keys.controller_key(namespace, holder_id),
            keys.preferred_key(namespace)]  # passed, never touched, when no beat rides along
        self._head_keys = [keys.automation_mode_key(namespace), *heartbeat_keys]
        self._lease_keys: dict[str, str] = {}

    def _lease_key(self, name: str) -> str:
        key = self._lease_keys.get(name)
        if key is None:
            key = self._lease_keys[name] = keys.lease_key(
                self.namespace, keys.check_name("lease name", name))
        return key

    async def renew(self, names: Sequence[str], *, beat: bool = False,
                    status: ControllerStatus = "alive",
                    metadata: dict[str, Any] | None = None) -> ManyRenewed:
        """Renew every lease in ``names``; with ``beat``, write the heartbeat in the same call
        (needs the ``Heartbeat`` given at construction)."""
        if beat and self._heartbeat is None:
            raise InvalidArgumentError("beat=True needs the Heartbeat given to ManyLeaseRenewer")
        if len(set(names)) != len(names):
            raise InvalidArgumentError("each lease may be renewed once per call")
        lease_keys = [self._lease_key(n) for n in names]
        beat_args = (self._heartbeat.arguments(status, metadata)
                     if beat and self._heartbeat is not None else [""] * _HEARTBEAT_ARGS)
        reply = await run_script(
            self._scripts.renew_many, [*self._head_keys, *lease_keys],
            [self.holder_id, self.instance_id, self.ttl_ms, "1" if beat else "0", *beat_args])
        return _parsed(reply, names, lease_keys)


def _parsed(reply: list[Any], names: Sequence[str], lease_keys: list[str]) -> ManyRenewed:
    if len(reply) != 4 + 3 * len(names):
        raise UnexpectedReplyError(f"renew_many replied {len(reply)} values for {len(names)} leases")
    try:
        now, mode, beat, beat_value = int(reply[0]), str(reply[1] or "running"), reply[2], reply[3]
        renewals = []
        for i, (name, key) in enumerate(zip(names, lease_keys, strict=True)):
            code, a, b = reply[4 + 3 * i: 7 + 3 * i]
            outcome = _CODES[code]
            if outcome == "renewed":
                renewals.append(LeaseRenewal(name, key, outcome, int(a), int(b)))
            elif outcome == "corrupt":
                renewals.append(LeaseRenewal(name, key, outcome, corrupt_field=str(a)))
            else:
                renewals.append(LeaseRenewal(name, key, outcome))
        started_at = int(beat_value) if beat == "beat" else None
        foreign = str(beat_value) if beat == "wrongtype" else None
        if beat not in ("none", "beat", "wrongtype"):
            raise ValueError(beat)
    except (KeyError, TypeError, ValueError) as e:
        raise UnexpectedReplyError(f"renew_many replied {reply!r}") from e
    return ManyRenewed(now, mode, tuple(renewals), started_at, foreign)
