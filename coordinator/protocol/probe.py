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


async def run_lease_probes(node: Any, name: str) -> None:
    """A node of many leases: every renew interval, one fenced write per lease it holds, to
    ``{namespace}:fenced:NAME.LEASE`` (each lease has its own terms)."""
    log = get_logger("coordinator.probe").bind(node_id=node.settings.node_id)
    seq = 0

    async def probe(lease: str) -> None:
        key = keys.fenced_key(node.settings.namespace, f"{name}.{lease}")

        async def write(ctx: LeaderContext) -> None:
            value = json.dumps({"node_id": ctx.node_id, "term": ctx.term, "seq": seq,
                                "lease": lease}, separators=(",", ":"))
            result = await ctx.fenced_set(key, value, raise_on_refused=False)
            log.info("probe.write", lease=lease, accepted=result.accepted, term=result.term,
                     seq=seq, current_term=result.current_term, redis_now=result.redis_now)

        try:
            await node.run_scheduler_pass(write, lease=lease)
        except LeaseLostError as e:
            log.info("probe.interrupted", lease=lease, seq=seq, error=describe(e))
        except (CoordinatorError, TimeoutError, *UNAVAILABLE) as e:
            log.warning("probe.failed", lease=lease, seq=seq, error=describe(e))

    while True:
        seq += 1
        await asyncio.gather(*(probe(lease) for lease in node.held_leases()))
        await asyncio.sleep(node.settings.renew_interval)


def start_probe(daemon: Any) -> asyncio.Task[Any] | None:
    """The probe's task if ``fence_probe_key`` is set, else None (a daemon, or a node of
    many leases)."""
    name = daemon.settings.fence_probe_key
    if name is None:
        return None
    if daemon.settings.many_leases:
        return asyncio.ensure_future(run_lease_probes(daemon, name))
    return asyncio.ensure_future(run_probe(daemon, name))
