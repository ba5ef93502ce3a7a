"""``coordinator handoff --to NODE``: ask the leader to hand the lease over, and confirm it."""

from __future__ import annotations

import asyncio
from typing import Any

from coordinator.cli.common import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, fail
from coordinator.connection.backend import connect
from coordinator.daemon.handoff_choice import request_handoff
from coordinator.errors import CoordinatorError, InvalidArgumentError
from coordinator.protocol.lease import read_lease
from coordinator.settings import Settings


async def handoff_command(settings: Settings, target: str) -> int:
    """Request the handover, then wait (bounded) until ``target`` holds the lease."""
    redis: Any = connect(settings, op_timeout=2.0)
    try:
        request = await request_handoff(
            redis, settings.namespace, settings.lease_name, target,
            ttl_ms=round((settings.lease_ttl + settings.heartbeat_interval) * 1000),
            history_maxlen=settings.history_maxlen)
        if request.outcome == "not_alive":
            return fail(f"refusing to hand over to {target}: {request.reason}", EXIT_USAGE)
        if request.outcome == "no_leader":
            return fail("no node holds the lease: nothing to hand over", EXIT_UNAVAILABLE)
        if request.outcome == "already_leader":
            print(f"{target} already holds the lease")
            return EXIT_OK
        print(f"handover to {target} requested")
        bound = settings.heartbeat_interval + settings.renew_interval + 2.0
        loop = asyncio.get_running_loop()
        end = loop.time() + bound
        while loop.time() < end:
            record = await read_lease(redis, settings.namespace, settings.lease_name)
            if record is not None and record.holder_id == target and not record.reserved:
                print(f"{target} holds the lease now (term {record.term})")
                return EXIT_OK
            await asyncio.sleep(0.05)
        return fail(f"{target} did not take the lease over within {bound:.1f}s", EXIT_UNAVAILABLE)
    except InvalidArgumentError as e:
        return fail(str(e), EXIT_USAGE)
    except CoordinatorError as e:
        return fail(f"cannot hand over on {settings.redis_url_redacted}: {e}", EXIT_UNAVAILABLE)
    finally:
        await redis.aclose()
