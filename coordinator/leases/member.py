"""One lease of a many-lease node: a ``Daemon`` for that lease whose loops the node drives.

Each lease a node holds keeps every guarantee of the single lease because it *is* the single
lease's daemon (its state machine, local deadline, leader gate, hooks, leader work, fenced
writes, handover), with four differences, all of them the node's (``coordinator/leases/node.py``):

- no loops of its own: the node renews every lease it holds in one call and hands each
  member its part (``renewal_seen``), and acquires a lease only when the placement plans it
  here (``lease_step``);
- no heartbeat, no events subscription, no Sentinel, no guardian: one of each per node;
- the node's process identity (instance id), so one ``renew_many.lua`` call can check it;
- its ``state_changed`` events name the lease.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from coordinator.clock import bounded
from coordinator.daemon.daemon import Daemon
from coordinator.daemon.hooks import Hooks
from coordinator.daemon.state import MasterSwitched
from coordinator.errors import CorruptDataError
from coordinator.leases.renew import LeaseRenewal, ManyRenewed
from coordinator.protocol import keys
from coordinator.protocol.corrupt_keys import OncePer
from coordinator.protocol.lease import Lease
from coordinator.protocol.modes import MODES, AutomationMode, stricter


class LeaseMember(Daemon):
    """The daemon of one lease on a node that holds many."""

    def __init__(self, settings: Any, *, redis: Any, instance_id: str, hooks: Hooks | None,
                 clock: Any, metrics: Any,
                 grantor: Callable[[], Awaitable[str]] | None = None,
                 lease_mode: AutomationMode = "running") -> None:
        super().__init__(settings, redis=redis, hooks=hooks, clock=clock, metrics=metrics)
        self.instance_id = instance_id  # the node's: renew_many.lua checks one per call
        self._lease = Lease(
            self._redis, holder_id=settings.node_id, holder_host=settings.host,
            ttl=settings.lease_ttl, name=settings.lease_name, namespace=settings.namespace,
            instance_id=instance_id, history_maxlen=settings.history_maxlen)
        self._node_grantor = grantor
        self._namespace_mode: AutomationMode = "running"
        self._lease_mode: AutomationMode = lease_mode
        self._bad_mode_logged = OncePer()
        self._masters = None  # the node's Sentinel check (grantor) is used instead

    @property
    def name(self) -> str:
        """The lease's name."""
        return str(self.settings.lease_name)

    @property
    def renewing(self) -> bool:
        """Whether the node should renew this lease in its next call (it believes it holds it)."""
        return self._lease.believes_held and not self._stopping

    def _grantor(self) -> Callable[[], Awaitable[str]] | None:
        return self._node_grantor

    async def _start_up(self) -> None:
        # the node did the checklist (Redis's configuration, the first heartbeat, the
        # start-up hooks) once for all its leases; it publishes this lease's events at the end
        # of each of its rounds (publish_events), so no task of this lease outlives a stop
        self._checklist_done = True

    async def publish_events(self) -> None:
        """Publish what this lease's state machine announced since the last call (bounded;
        what fails stays queued for the next)."""
        with contextlib.suppress(TimeoutError):
            await bounded(self._outbox.flush(), self._op_timeout)

    async def _beat_stopping(self, wait: float) -> None:
        return None  # the node's heartbeat says it stops, once

    async def renewal_seen(self, renewal: LeaseRenewal, answer: ManyRenewed, sent: float,
                           received: float) -> None:
        """Take this lease's part of the node's ``renew_many`` call sent at ``sent``."""
        if renewal.outcome == "renewed" and renewal.term is not None and (
                renewal.lease_expires_at is not None):
            result = self._lease.renewed_together(
                redis_now=answer.redis_now, automation_mode=answer.automation_mode,
                term=renewal.term, lease_expires_at=renewal.lease_expires_at)
            await self._lease_answered(result, sent, received)
        elif renewal.outcome == "corrupt":
            error = renewal.corrupt_error()
            await self._lease_failed(error or CorruptDataError(renewal.key, "corrupt"), sent)
        else:  # lost: the acquire the node sends next says who holds it now
            self._lease.lost_together()

    async def renewal_failed(self, error: BaseException, sent: float) -> None:
        """The node's ``renew_many`` call sent at ``sent`` failed (Redis away, a timeout)."""
        self._last_sent_at = sent
        await self._lease_failed(error, sent)

    def master_switched(self) -> None:
        """Sentinel announced a new master: leave leadership now; the next renewal of this
        lease goes through acquire.lua, which renews only on the master the Sentinels name."""
        self._observe_now(MasterSwitched(self._clock.monotonic()))
        self._lease.forget_held()

    def mode_seen(self, mode: str, redis_now: int, sent: float, received: float) -> None:
        """The namespace's mode as the node read it (after an announced change)."""
        self._follow_mode(mode, redis_now, sent, received)

    def lease_mode_seen(self, mode: str | None, redis_now: int, sent: float,
                        received: float) -> None:
        """This lease's own mode as the node read it (None: it has none): from now on the
        stricter of it and the namespace's applies."""
        if mode is not None and mode not in MODES:
            if self._bad_mode_logged.due(mode, received):
                self.log.warning("automation_mode.unknown", mode=mode[:40],
                                 key=keys.lease_mode_key(self.settings.namespace, self.name))
            return
        self._lease_mode = "running" if mode is None else mode
        self._follow_mode(self._namespace_mode, redis_now, sent, received)

    def _follow_mode(self, mode: Any, redis_now: int, sent_at: float, received_at: float) -> None:
        # every reading of the namespace's mode (lease replies, reads) comes through here
        if mode in MODES:
            self._namespace_mode = mode
            mode = stricter(mode, self._lease_mode)
        super()._follow_mode(mode, redis_now, sent_at, received_at)
