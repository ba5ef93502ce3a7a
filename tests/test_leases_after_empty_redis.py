"""Many leases after Redis lost everything (restarted with no persistence, as the chaos
run's ``redis_restart_empty`` does): the leases the daemons' ``COORDINATOR_LEASES`` names
must be held again, as the single lease is within a renew interval of Redis returning.

Found by the chaos run's ``leases`` setup (seed 15001, faults #11 and #22): after the empty
restart the registry (``{ns}:leases``) is gone, the nodes registered it only at start, so
every lease stays without a holder until some daemon restarts."""

from __future__ import annotations

from typing import Any

from tests.test_lease_node import RENEW, TTL, balanced, start, stop, until


async def test_the_configured_leases_are_held_again_after_redis_lost_everything(
        redis: Any) -> None:
    nodes = await start(redis, "a", "b", leases="s-{0..5}")
    try:
        await until(lambda: balanced(redis, nodes, 6))
        await redis.flushall()  # what an empty restart leaves: no key, no registry
        await until(lambda: balanced(redis, nodes, 6), timeout=TTL + 4 * RENEW)
    finally:
        await stop(nodes)
