"""The side-by-side part: each peer at its defaults and at settings matched to ours."""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coordinator.bench.namespace import BenchNamespace
from coordinator.bench.options import BenchOptions
from coordinator.bench.peers import redis_lock_peer, tooz_peer
from coordinator.bench.peers.cost import redis_lock_cost, tooz_cost
from coordinator.bench.peers.harness import peer_failover
from coordinator.bench.peers.protocol import MATCHED_RETRY, MATCHED_TTL, VARIANTS


@dataclass(frozen=True)
class Peer:
    """A peer program, the distribution it needs, and how to price its renew."""

    module: str
    distribution: str
    lock_key: Callable[[str], str]
    renew_cost: Callable[[str, str, int], dict[str, Any]]
    defaults: str
    matched: str


PEERS = {
    "redis-py Lock": Peer(
        redis_lock_peer.__name__, "redis", redis_lock_peer.lock_key,
        lambda url, prefix, pairs: redis_lock_cost(url, redis_lock_peer.lock_key(prefix), pairs),
        defaults="Lock(name): no TTL, acquire polls every 0.1 s",
        matched=f"Lock(name, timeout={MATCHED_TTL:g}, sleep={MATCHED_RETRY:g}), "
                f"a thread extends every {MATCHED_RETRY:g} s"),
    "tooz (Redis driver)": Peer(
        "coordinator.bench.peers.tooz_peer", "tooz", tooz_peer.lock_key, tooz_cost,
        defaults="timeout=30 (lock and membership), tooz's heart thread beats every 15 s, "
                 f"run_watchers every {MATCHED_RETRY:g} s",
        matched=f"timeout=lock_timeout=membership_timeout={MATCHED_TTL:g}, heartbeat() and "
                f"run_watchers every {MATCHED_RETRY:g} s"),
}


def _installed(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None."""
    if importlib.util.find_spec(distribution) is None:
        return None
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


async def run_peers(redis: Any, url: str, namespace: BenchNamespace, options: BenchOptions,
                    progress: Callable[[str], None]) -> dict[str, Any]:
    """Every peer: renew cost, then failover at each variant; a peer that cannot be
    installed or run is reported as such, never given a figure."""
    out: dict[str, Any] = {}
    for index, (name, peer) in enumerate(PEERS.items()):
        version = _installed(peer.distribution)
        if version is None:
            out[name] = {"installed": False,
                         "error": f"{peer.distribution} is not installed "
                                  "(pip install 'coordinator[bench]')"}
            continue
        entry: dict[str, Any] = {"installed": True, "version": version,
                                 "settings": {"defaults": peer.defaults, "matched": peer.matched}}
        progress(f"peers: {name} renew cost")
        try:
            entry["renew_cost"] = await asyncio.to_thread(
                peer.renew_cost, url, namespace.peer_prefix(f"peer{index}-cost"),
                min(options.pairs, 1000))
        except Exception as e:  # a peer's failure is a finding, not the end of the run
            entry["renew_cost"] = {"error": f"{type(e).__name__}: {e}"}
        entry["variants"] = {}
        for variant in VARIANTS:
            progress(f"peers: {name} failover at {variant}")
            prefix = namespace.peer_prefix(f"peer{index}-{variant}")
            try:
                entry["variants"][variant] = await peer_failover(
                    redis, peer.module, peer.lock_key(prefix), url, prefix, variant,
                    handovers=options.peer_handovers,
                    crashes=options.peer_crashes if variant == "matched" else 1,
                    crash_cap=options.peer_crash_cap)
            except Exception as e:
                entry["variants"][variant] = {"error": f"{type(e).__name__}: {e}"}
        out[name] = entry
    return out
