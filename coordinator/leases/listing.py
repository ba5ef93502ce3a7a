"""What ``coordinator leases list`` and ``coordinator status`` show of a namespace's many
leases: one row per registered lease, and each unreadable part named with its remedy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from coordinator.leases.view import LeasesView
from coordinator.protocol import keys
from coordinator.protocol.corrupt_keys import corrupt_key_remedy


def lease_rows(view: LeasesView) -> list[dict[str, Any]]:
    """The JSON shape: one object per registered lease, holder fields null when free."""
    rows = []
    for lease in view.leases:
        held = lease in view.holders
        row: dict[str, Any] = {
            "name": lease,
            "holder_id": view.holders[lease] if held else None,
            "term": view.terms[lease] if held else None,
            "expires_in_ms": max(0, view.expires_at[lease] - view.redis_now) if held else None,
            "preferred": list(view.preferred.get(lease, ())),
        }
        if lease in view.corrupt:
            row["corrupt"] = view.corrupt[lease]
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Unreadable:
    """One part of the registry the coordinator cannot use: a lease hash, or a member."""

    key: str
    subject: str  # "lease key KEY", or the registry key for a member
    detail: str  # what is wrong
    remedy: str  # what an operator does about it

    @property
    def message(self) -> str:
        """The whole sentence: the key, what is wrong, the remedy."""
        return f"{self.subject}: {self.detail}: {self.remedy}"


def unreadable_parts(view: LeasesView, namespace: str) -> list[Unreadable]:
    """Every unreadable lease hash and every registry member that is no lease name."""
    found = []
    for lease, why in view.corrupt.items():
        if lease in view.leases:
            key = keys.lease_key(namespace, lease)
            found.append(Unreadable(key, f"lease key {key}", why, corrupt_key_remedy(key)))
        else:  # a registry member no lease can have: removed with ZREM, not the whole key
            registry = keys.leases_key(namespace)
            found.append(Unreadable(
                registry, registry, f"member {lease!r} is {why.removeprefix('registered, but ')}",
                f"remove it (redis-cli ZREM {registry} {json.dumps(lease)})"))
    return found
