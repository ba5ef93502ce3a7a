"""Handing the lease over, as leader: deciding when (a steady preferred controller, or an
operator's request) and carrying it out (stop leading, let leader work stop, release reserved
for the target)."""

from __future__ import annotations

from coordinator.clock import bounded
from coordinator.connection.boundary import UNAVAILABLE
from coordinator.daemon.core import DaemonCore, describe, handover_outcome
from coordinator.daemon.handoff_choice import choose_handoff, read_candidates
from coordinator.daemon.state import (
    Released,
    Role,
)
from coordinator.errors import CoordinatorError


class DaemonHandover(DaemonCore):
    """Adds the handover to the core."""

    async def consider_handoff(self) -> None:
        """As leader, decide whether to hand the lease over at the next renew boundary:
        to a preferred controller that has been steady long enough, or as an operator asked."""
        term = self._work.term
        try:
            candidates, requested, now = await bounded(
                read_candidates(self._redis, self.settings.namespace, self.settings.lease_name),
                self._op_timeout)
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            self.log.warning("handoff.check_failed", error=describe(e))
            return
        target = choose_handoff(
            leader_id=self.settings.node_id, leader_is_preferred=self.settings.is_preferred,
            candidates=candidates, requested=requested, now_ms=now,
            steady_intervals=self.settings.handoff_steady_intervals)
        # only for the tenure that asked: one that ended meanwhile took its plan along
        if target is not None and term is not None and self._work.term == term and (
                self._state.role is Role.LEADER):
            self.log.info("handoff.planned", to=target, requested=requested is not None)
            self._handoff_target = target
            if requested is not None:
                self._wake.set()  # an operator is waiting: the next boundary is now

    async def hand_over(self, target: str) -> None:
        """Stop leading, wait for leader work to stop, then release the lease reserved for
        ``target`` if Redis still sees it alive (the next term is then theirs)."""
        self._handoff_target = None
        term, deadline = self._state.term, self._state.deadline
        await self._observe(Released(self._clock.monotonic()))  # work stops before the release
        # the lease is still ours until its deadline: leader work may use that long to stop
        wait = 0.0 if deadline is None else max(0.0, deadline - self._clock.monotonic())
        if not await self._work.stopped(wait, during="handover"):
            self.log.warning("lease.handover_skipped", to=target, term=term,
                             reason="leader work did not stop in time; the lease expires")
            return
        try:
            result = await bounded(
                self._lease.release(term=term, handoff_to=target), self._op_timeout)
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            self.log.warning("lease.handover_failed", to=target, error=describe(e))
            return
        self.log.info("lease.handed_over", to=target, term=term, released=result.released,
                      **handover_outcome(result))
