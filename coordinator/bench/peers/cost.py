"""What one renew costs each peer, against a bare EVALSHA on that peer's own connection."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from coordinator.bench.latency import BARE_SCRIPT
from coordinator.bench.peers.protocol import MATCHED_TTL
from coordinator.bench.redis_info import parse_command_stats, usec_per
from coordinator.bench.stats import ns_to_ms, ratio, summary_ms


def paired(client: Any, renew: Callable[[], Any], pairs: int, commands: tuple[str, ...]
           ) -> dict[str, Any]:
    """``renew`` and a bare EVALSHA on ``client``, pair by pair, then ``renew`` alone for the
    Redis CPU it costs (``commands`` are the ones it sends)."""
    bare = client.register_script(BARE_SCRIPT)
    for _ in range(50):
        bare()
        renew()
    renew_ns: list[int] = []
    bare_ns: list[int] = []
    for i in range(pairs):
        order = (renew, bare) if i % 2 else (bare, renew)
        for call in order:
            start = time.perf_counter_ns()
            call()
            (renew_ns if call is renew else bare_ns).append(time.perf_counter_ns() - start)
    before = parse_command_stats(client.info("commandstats"))
    for _ in range(pairs):
        renew()
    after = parse_command_stats(client.info("commandstats"))
    renew_ms, bare_ms = summary_ms(ns_to_ms(renew_ns)), summary_ms(ns_to_ms(bare_ns))
    return {"renew": renew_ms, "bare_evalsha": bare_ms,
            "renew_to_bare_p50_ratio": ratio(renew_ms["p50_ms"], bare_ms["p50_ms"]),
            "round_trips": len(commands), "redis_usec_per_renew": usec_per(
                before, after, pairs, commands)}


def redis_lock_cost(url: str, key: str, pairs: int) -> dict[str, Any]:
    """``Lock.extend`` (resetting the TTL, as the extending thread does)."""
    client = redis.Redis.from_url(url, single_connection_client=True)
    lock = client.lock(key, timeout=MATCHED_TTL, thread_local=False)
    lock.acquire()
    try:
        return paired(client, lambda: lock.extend(MATCHED_TTL, replace_ttl=True), pairs,
                      ("evalsha",))
    finally:
        lock.release()
        client.close()


def tooz_cost(url: str, prefix: str, pairs: int) -> dict[str, Any]:
    """tooz's ``heartbeat()`` while leading: the member key, then the leader lock."""
    from tooz import coordination

    from coordinator.bench.peers.tooz_peer import GROUP, coordinator_url

    coord = coordination.get_coordinator(coordinator_url(url, prefix, "matched"), b"cost")
    coord.start(start_heart=False)
    try:
        coord.create_group(GROUP).get()
        coord.join_group(GROUP).get()
        coord.watch_elected_as_leader(GROUP, lambda event: None)
        coord.run_watchers()
        client = coord._client  # tooz's own connection (tooz is typed as Any here)
        return paired(client, coord.heartbeat, pairs, ("psetex", "evalsha"))
    finally:
        coord.stop()
