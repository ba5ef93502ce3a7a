"""The watchdog's pure decisions: which signal to send its child when, and whether a start
still belongs to a live tenure. Plain values in, plain values out; the clock is ``now()``.

Standard library only: the watchdog process imports it (``coordinator/child/watchdog.py``), and so
do the daemon's child runner and its backstop, which read the same clock.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, replace

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


def now() -> float:
    """Seconds on the clock every deadline is measured on, in the daemon, the watchdog and
    the child runner alike (deadlines cross the socket): CLOCK_BOOTTIME where the platform
    has it (it keeps counting while the machine is suspended), else ``time.monotonic()``."""
    if _BOOTTIME is not None:
        return time.clock_gettime(_BOOTTIME)
    return time.monotonic()



# ---- which signal, when ----------------------------------------------------------------


@dataclass(frozen=True)
class Watch:
    """What the watchdog knows about its running child (seconds on ``now()``)."""

    deadline: float | None  # the lease is trusted until then
    stop_requested: bool = False
    term_sent_at: float | None = None
    kill_sent: bool = False


def with_deadline(watch: Watch, deadline: float | None) -> Watch:
    """A deadline from the daemon; None means leadership ended, which is a stop request.

    Once the child is being stopped its bound no longer moves: a renewal that comes after
    the SIGTERM does not give a child that is on its way out more time."""
    if watch.stop_requested or watch.term_sent_at is not None:
        return watch
    if deadline is None:
        return replace(watch, stop_requested=True)
    return replace(watch, deadline=deadline)


def with_stop(watch: Watch) -> Watch:
    """A stop request: leadership lost, paused, daemon stopping or gone."""
    return replace(watch, stop_requested=True)


def due(watch: Watch, now: float, grace: float) -> tuple[Watch, signal.Signals | None]:
    """The signal to send now, if any, and the watch after sending it."""
    if watch.kill_sent:
        return watch, None
    if watch.term_sent_at is None:
        if watch.stop_requested or watch.deadline is None or now >= watch.deadline - grace:
            return replace(watch, term_sent_at=now), signal.SIGTERM
        return watch, None
    if now >= kill_time(watch, grace):
        return replace(watch, kill_sent=True), signal.SIGKILL
    return watch, None


def kill_time(watch: Watch, grace: float) -> float:
    """When SIGKILL is due once SIGTERM was sent: after the grace, never past the deadline."""
    start = watch.term_sent_at if watch.term_sent_at is not None else -math.inf
    return min(start + grace, watch.deadline if watch.deadline is not None else math.inf)


def next_wake(watch: Watch, grace: float) -> float | None:
    """The time ``due`` may next act (-inf: now), or None if nothing is pending."""
    if watch.kill_sent:
        return None
    if watch.term_sent_at is None:
        if watch.stop_requested or watch.deadline is None:
            return -math.inf
        return watch.deadline - grace
    return kill_time(watch, grace)


def startable(deadline: float | None, now: float, grace: float) -> bool:
    """Whether a child may start: only with enough of the lease left to stop it in time."""
    return deadline is not None and now < deadline - grace


# ---- whether a start belongs to a live tenure ------------------------------------------


@dataclass(frozen=True)
class Tenure:
    """What the watchdog knows of the daemon's leadership: the latest deadline heard, the
    term it belongs to (None: not said), and the highest term known to have ended."""

    deadline: float | None = None
    term: int | None = None
    ended: int | None = None


def stale(tenure: Tenure, term: int | None) -> bool:
    """Whether a start names a tenure already known to have ended."""
    return term is not None and tenure.ended is not None and term <= tenure.ended


def outdated(tenure: Tenure, term: int | None) -> bool:
    """Whether a deadline message names a tenure older than one heard of since (terms only
    grow: such a message can only be a leftover), or repeats the end of an ended one."""
    if term is None:
        return False
    if tenure.term is not None and term < tenure.term:
        return True
    return tenure.ended is not None and term < tenure.ended


def heard_deadline(tenure: Tenure, deadline: float | None, term: int | None) -> Tenure:
    """A deadline message: a new bound for the tenure, or (None) the end of it.

    A fresh deadline for the term that ended last leads it again: messages come in the
    order they were sent, so it was sent after the end, when the daemon led that term
    again (degraded, then renewed). One that names an older tenure changes nothing."""
    if outdated(tenure, term):
        return tenure
    if deadline is None:
        if stale(tenure, term):
            return tenure  # that end was heard already
        gone = term if term is not None else tenure.term
        ended = tenure.ended if gone is None else max(gone, tenure.ended or gone)
        return Tenure(None, None, ended)
    if term is None:
        return Tenure(deadline, tenure.term, tenure.ended)
    return Tenure(deadline, term, None if term == tenure.ended else tenure.ended)


def refusal(tenure: Tenure, term: int | None) -> str | None:
    """Why a start for ``term`` must not run (its tenure is over), or None."""
    if term is None:
        return None
    if stale(tenure, term):
        return f"the tenure of term {term} ended"
    if tenure.term is not None and term < tenure.term:
        return f"term {term} is older than term {tenure.term} of the latest deadline"
    return None


def belongs(term: int | None, to: int | None) -> bool:
    """Whether a message for ``term`` is about the tenure ``to`` (an unsaid term is)."""
    return term is None or to is None or term == to
