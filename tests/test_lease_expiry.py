"""The watcher's lease-expiry decisions on plain values: when to re-read, what a re-read means."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from coordinator.cli.watch import render
from coordinator.protocol.event_models import LeaderChanged, LeaseExpired, LeaseReleased, Resync
from coordinator.protocol.records import LeaseRecord
from coordinator.watching.lease_expiry import (
    MARGIN,
    OVERDUE_POLL,
    Picture,
    Reading,
    Tenure,
    after_events,
    after_recheck,
    from_reading,
    recheck_deadline,
)

TERM = 1_796_000_000_000  # terms look like Unix ms


def record(holder: str = "a", term: int = TERM, expires_at: int = 50_000) -> LeaseRecord:
    return LeaseRecord(holder_id=holder, holder_host=f"{holder}.host", instance_id="i",
                       term=term, lease_expires_at=expires_at, renewed_at=48_000,
                       acquired_at=40_000, preferred_holder_id=None)


def changed(holder: str, term: int) -> LeaderChanged:
    return LeaderChanged(lease="global", holder_id=holder, holder_host="h", term=term,
                         previous_holder_id=None, at=1)


def test_the_deadline_maps_the_redis_expiry_onto_the_local_clock_plus_the_margin() -> None:
    # Redis says 48.0 s when our clock says 7.0 s: an expiry at Redis 50.0 s is local 9.0 s
    assert recheck_deadline(50_000, Reading(None, 48_000, 7.0)) == pytest.approx(9.0 + MARGIN)
    # already past (a read in the last instant before Redis dropped the key): re-read soon
    assert recheck_deadline(50_000, Reading(None, 50_001, 7.0)) == pytest.approx(7.0 + MARGIN)
    # long past yet still there: it is not expiring, poll it slowly rather than spin
    assert recheck_deadline(50_000, Reading(None, 60_000, 7.0)) == pytest.approx(
        7.0 + OVERDUE_POLL)


def test_a_resync_read_arms_the_deadline_on_the_record_and_a_free_lease_arms_nothing() -> None:
    picture = from_reading(Reading(record(), 48_000, 7.0))
    assert picture.tenure == Tenure("a", TERM, 50_000)
    assert picture.recheck_at == pytest.approx(9.0 + MARGIN)
    assert from_reading(Reading(None, 48_000, 7.0)) == Picture()


def test_a_new_tenure_is_re_read_at_once_and_a_release_disarms() -> None:
    picture = after_events(Picture(), [changed("b", TERM + 5)], local_now=3.0)
    assert picture == Picture(Tenure("b", TERM + 5), 3.0)
    released = LeaseReleased(lease="global", holder_id="b", term=TERM + 5, at=2)
    assert after_events(picture, [released], local_now=4.0) == Picture()
    # in order: the last word wins
    assert after_events(Picture(), [released, changed("c", TERM + 9)], 5.0).tenure == Tenure(
        "c", TERM + 9)


def test_a_renewed_lease_re_arms_on_its_later_expiry_and_reports_nothing() -> None:
    known = from_reading(Reading(record(expires_at=50_000), 48_000, 7.0))
    picture, events = after_recheck(known, "global", Reading(record(expires_at=51_500), 50_030,
                                                             9.03))
    assert events == []
    assert picture.tenure == Tenure("a", TERM, 51_500)
    assert picture.recheck_at == pytest.approx(9.03 + 1.47 + MARGIN)


def test_a_lease_gone_is_reported_expired_once_at_the_expiry_last_read() -> None:
    known = from_reading(Reading(record(expires_at=50_000), 48_000, 7.0))
    picture, events = after_recheck(known, "global", Reading(None, 50_026, 9.03))
    assert events == [LeaseExpired(lease="global", holder_id="a", term=TERM, at=50_000)]
    assert picture == Picture()  # nothing left to watch: no second report
    assert after_recheck(picture, "global", Reading(None, 51_000, 10.0)) == (Picture(), [])


def test_a_tenure_gone_before_its_expiry_was_read_is_stamped_with_the_read() -> None:
    known = after_events(Picture(), [changed("a", TERM)], local_now=3.0)
    _, events = after_recheck(known, "global", Reading(None, 50_026, 3.001))
    assert events == [LeaseExpired(lease="global", holder_id="a", term=TERM, at=50_026)]


def test_another_tenure_with_no_event_for_it_is_resynced_onto() -> None:
    known = from_reading(Reading(record("a"), 48_000, 7.0))
    now = Reading(record("b", TERM + 3, 52_000), 50_030, 9.03)
    picture, events = after_recheck(known, "global", now)
    assert picture.tenure == Tenure("b", TERM + 3, 52_000)
    assert events == [Resync(lease="global", holder_id="b", holder_host="b.host",
                             term=TERM + 3, lease_expires_at=52_000, at=50_030)]


def test_the_human_line_says_who_is_no_longer_leader() -> None:
    at = 1_764_400_000_000
    line = render(LeaseExpired(lease="global", holder_id="a", term=TERM, at=at))
    when = datetime.fromtimestamp(at / 1000, UTC).isoformat(timespec="milliseconds")
    assert line == (f"{when.replace('+00:00', 'Z')}  lease_expired            "
                    f"lease global expired: a (term {TERM}) is no longer leader")
