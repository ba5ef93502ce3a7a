"""``coordinator run`` for a node of many leases: the node, and with ``-- CMD`` one child
per held lease, each under its own watchdog and that lease's deadline, with
``COORDINATOR_LEASE`` and ``COORDINATOR_TERM`` in its environment."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from coordinator.child.child import ChildRunner, Command
from coordinator.cli.common import EXIT_UNAVAILABLE
from coordinator.daemon.hooks import Hooks, LeaderContext
from coordinator.errors import CoordinatorError
from coordinator.leases.node import LeaseNode
from coordinator.logs import get_logger
from coordinator.settings import Settings


class LeaseChildren:
    """One ``ChildRunner`` per lease the node holds, opened before the lease is taken."""

    def __init__(self, settings: Settings, command: Command, on_finished: Any) -> None:
        self._settings, self._command, self._on_finished = settings, command, on_finished
        self._runners: dict[str, ChildRunner] = {}
        self._opening: dict[str, asyncio.Future[None]] = {}
        self._log = get_logger("coordinator.child").bind(node_id=settings.node_id)
        self.exit_status = 0

    async def open(self) -> None:
        """Nothing to start up front: each lease's watchdog starts as the lease is taken."""

    async def open_lease(self, lease: str) -> Hooks:
        """The hooks of ``lease``'s child. Its watchdog starts now, beside the acquire (a new
        process: 0.2-0.5 s here), not before it: a handover is taken in milliseconds, and the
        child starts once the watchdog listens, as for the single lease."""
        runner = ChildRunner(self._settings.model_copy(update={"lease_name": lease}),
                             self._command, on_finished=self._on_finished)
        self._runners[lease] = runner
        opening = self._opening[lease] = asyncio.ensure_future(runner.open())
        hooks = runner.hooks()
        lead_child = hooks.on_started_leading

        async def lead(ctx: LeaderContext) -> None:
            try:
                await asyncio.shield(opening)
            except CoordinatorError as e:  # no watchdog, no child: this node cannot do the work
                self._log.error("watchdog.failed", lease=lease, error=str(e))
                self.exit_status = EXIT_UNAVAILABLE
                self._on_finished()
                return
            if lead_child is not None:  # (ChildRunner.hooks() always sets it)
                await lead_child(ctx)

        return dataclasses.replace(hooks, on_started_leading=lead)

    async def close_lease(self, lease: str) -> None:
        """Stop ``lease``'s child (it is no longer held here) and its watchdog."""
        runner = self._runners.pop(lease, None)
        opening = self._opening.pop(lease, None)
        if opening is not None:  # a watchdog still starting is waited for, then closed
            await asyncio.wait([opening])
        if runner is not None:
            await runner.close()
            self.exit_status = self.exit_status or runner.exit_status

    def begin_shutdown(self) -> None:
        """The node stops: SIGTERM every child now, start no other."""
        for runner in self._runners.values():
            runner.begin_shutdown()

    async def close(self) -> None:
        """Stop every child and watchdog left."""
        await asyncio.gather(*(self.close_lease(lease) for lease in list(self._runners)))


def lease_node(settings: Settings, command: Command | None,
               on_finished: Any) -> tuple[LeaseNode, LeaseChildren | None]:
    """The node ``coordinator run`` runs, and its children when a command was given."""
    if command is None:
        return LeaseNode(settings), None
    children = LeaseChildren(settings, command, on_finished)
    return LeaseNode(settings, lease_hooks=children.open_lease, lease_closed=children.close_lease), children
