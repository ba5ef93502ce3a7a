"""What a watcher believes about its lease's tenure, and when to re-read it: pure, no I/O.

Nothing is published when a lease simply lapses (its holder died), so a watcher that only
listened would keep showing a dead leader. It therefore remembers the tenure it was told of
and the expiry it last read, and re-reads the lease when that expiry (on Redis's clock,
converted to a local deadline) has passed. A renewed lease has a later expiry: re-arm. A lease
gone with no release or successor recorded has lapsed: report ``lease_expired`` once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.protocol.event_models import (
    LeaderChanged,
    LeaseExpired,
    LeaseReleased,
    Resync,
    WatchEvent,
)
from coordinator.protocol.records import LeaseRecord

# re-read this long after the known expiry: Redis drops the key once its clock passes the
# expiry (PEXPIREAT); this covers the whole-ms rounding and a Redis clock slewed against ours
# over a TTL (NTP slews at most 500 ppm). A read that still finds the lease re-arms and costs
# one more read, so it may err small; the watcher's staleness bound is this plus a re-read.
MARGIN = 0.01
# a record still there long after its own expiry is not expiring (corrupt, or PERSISTed):
# poll it slowly instead of re-reading in a tight loop
OVERDUE_POLL = 1.0


@dataclass(frozen=True)
class Tenure:
    """One tenure as the watcher knows it; ``expires_at`` (Redis ms) None until read."""

    holder_id: str
    term: int
    expires_at: int | None = None


@dataclass(frozen=True)
class Picture:
    """The watcher's view of the lease: who leads, and when (local monotonic s) to re-read."""

    tenure: Tenure | None = None
    recheck_at: float | None = None


@dataclass(frozen=True)
class Reading:
    """One read of the lease: the record, Redis's clock then, and the local clock at the reply."""

    record: LeaseRecord | None
    redis_now: int
    local_now: float


def recheck_deadline(expires_at: int, reading: Reading) -> float:
    """The local time to re-read a lease expiring at ``expires_at`` (Redis ms).

    The Redis clock is mapped onto the local one at the reply, which came after Redis read
    its clock: the deadline errs late by the reply's one-way latency, never early.
    """
    left_ms = expires_at - reading.redis_now
    if left_ms < -1000 * OVERDUE_POLL:
        return reading.local_now + OVERDUE_POLL
    return reading.local_now + max(0, left_ms) / 1000 + MARGIN


def from_reading(reading: Reading) -> Picture:
    """The picture a read gives (a resync): the record's tenure, armed on its expiry."""
    record = reading.record
    if record is None:
        return Picture()
    tenure = Tenure(record.holder_id, record.term, record.lease_expires_at)
    return Picture(tenure, recheck_deadline(record.lease_expires_at, reading))


def touches_tenure(events: Sequence[WatchEvent]) -> bool:
    """Whether ``events`` (already filtered to this lease) change who holds it."""
    return any(isinstance(e, LeaderChanged | LeaseReleased) for e in events)


def after_events(picture: Picture, events: Sequence[WatchEvent], local_now: float) -> Picture:
    """The picture once the stored events of this lease are applied, in order.

    A new tenure's expiry is not in its event: re-read it at once to arm the deadline.
    """
    for event in events:
        if isinstance(event, LeaderChanged):
            picture = Picture(Tenure(event.holder_id, event.term), local_now)
        elif isinstance(event, LeaseReleased):
            picture = Picture()
    return picture


def after_recheck(picture: Picture, lease: str,
                  reading: Reading) -> tuple[Picture, list[WatchEvent]]:
    """Judge a re-read of the lease against the picture (no unapplied events came with it).

    Same tenure: re-arm on its (maybe renewed) expiry. Gone: it lapsed, say so once. Another
    tenure with no event for it (the history lost it, e.g. in a failover): resync onto it.
    """
    tenure, record = picture.tenure, reading.record
    if tenure is None:
        if record is None:
            return Picture(), []
        return from_reading(reading), [resync_of(lease, reading)]
    if record is None:
        at = tenure.expires_at if tenure.expires_at is not None else reading.redis_now
        return Picture(), [LeaseExpired(lease=lease, holder_id=tenure.holder_id,
                                        term=tenure.term, at=at)]
    if (record.holder_id, record.term) == (tenure.holder_id, tenure.term):
        return from_reading(reading), []
    return from_reading(reading), [resync_of(lease, reading)]


def resync_of(lease: str, reading: Reading) -> Resync:
    """The resync event for a read of the lease."""
    record = reading.record
    return Resync(
        lease=lease,
        holder_id=record.holder_id if record else None,
        holder_host=record.holder_host if record else None,
        term=record.term if record else None,
        lease_expires_at=record.lease_expires_at if record else None,
        at=reading.redis_now,
    )
