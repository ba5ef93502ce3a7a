"""The fence probe: one fenced write per scheduler pass, so a fault harness can check fencing.

Off by default. With ``COORDINATOR_FENCE_PROBE_KEY=NAME``, ``coordinator run`` runs a
scheduler pass every renew interval whose work writes ``{node_id, term, seq}`` to
``{namespace}:fenced:NAME`` through the context's fenced write, and logs ``probe.write``
with whether Redis accepted it, the term, the live term and Redis's time. A refused or
failed write is logged, never fatal: the probe only observes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from coordinator.connection.boundary import UNAVAILABLE
from coordinator.daemon.daemon import Daemon, describe
from coordinator.daemon.hooks import LeaderContext
from coordinator.errors import CoordinatorError, LeaseLostError
from coordinator.logs import get_logger
from coordinator.protocol import keys


async def run_probe(daemon: Daemon, name: str) -> None:
    """Until cancelled: every renew interval, one scheduler pass doing one fenced write."""
    key = keys.fenced_key(daemon.settings.namespace, name)
    log = get_logger("coordinator.probe").bind(node_id=daemon.settings.node_id)
    interval = daemon.settings.renew_interval
    seq = 0

    async def write(ctx: LeaderContext) -> None:
        value = json.dumps({"node_id": ctx.node_id, "term": ctx.term, "seq": seq},
                           separators=(",", ":"))
        result = await ctx.fenced_set(key, value, raise_on_refused=False)  # logs refusals too
        log.info("probe.write", accepted=result.accepted, term=result.term, seq=seq,
                 current_term=result.current_term, redis_now=result.redis_now)

    while True:
        seq += 1
        try:
            await daemon.run_scheduler_pass(write)
        except LeaseLostError as e:
            log.info("probe.interrupted", seq=seq, error=describe(e))
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            # the write may still land (or not): the outcome is unknown, which is what we log
            log.warning("probe.failed", seq=seq, error=describe(e))
        await asyncio.sleep(interval)


def start_probe(daemon: Daemon) -> asyncio.Task[Any] | None:
    """The probe's task if ``fence_probe_key`` is set, else None."""
    name = daemon.settings.fence_probe_key
    if name is None:
        return None
    return asyncio.ensure_future(run_probe(daemon, name))
