"""Real many-lease nodes (``LeaseNode``) in this process, each on its own counted redis-py
client to the real Redis, as a fleet: start some, let one leave or crash, and read from Redis
who holds what and how fair that is."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from coordinator.bench.counted_client import CallCounter, counted
from coordinator.connection.backend import connect
from coordinator.leases.node import LeaseNode
from coordinator.leases.view import read_view
from coordinator.settings import Settings, load_settings

POLL = 0.01  # seconds between looks at the nodes' own beliefs (no Redis traffic)


@dataclass(frozen=True)
class Holders:
    """Who holds each lease, and under which term, on one reading of Redis."""

    holder: dict[str, str]
    term: dict[str, int]


async def read_holders(redis: Any, namespace: str) -> Holders:
    """Every live lease's holder and term (``read_view``: two round trips)."""
    view = await read_view(redis, namespace)
    return Holders(dict(view.holders), dict(view.terms))


def changes(before: Holders, after: Holders) -> dict[str, int]:
    """Leases whose holder changed, and whose term changed (a new tenure, moved or not)."""
    return {"leases_moved": sum(1 for lease, node in after.holder.items()
                                if before.holder.get(lease) != node),
            "leases_new_term": sum(1 for lease, term in after.term.items()
                                   if before.term.get(lease) != term)}


def share_bounds(leases: int, nodes: int) -> tuple[int, int]:
    """Floor and ceiling of each node's share (every node capacity 1, selector ``*``)."""
    return leases // nodes, -(-leases // nodes)


def balance(holders: Holders, node_ids: list[str], leases: int) -> dict[str, Any]:
    """Most and fewest leases per live node in Redis, against floor and ceiling of the share."""
    per_node = dict.fromkeys(node_ids, 0)
    strangers = 0  # held by a node not in the fleet (a crashed one, before its TTL)
    for node in holders.holder.values():
        if node in per_node:
            per_node[node] += 1
        else:
            strangers += 1
    floor, ceiling = share_bounds(leases, len(node_ids))
    most, fewest = max(per_node.values()), min(per_node.values())
    held = len(holders.holder)
    return {"nodes": len(node_ids), "leases": leases, "held": held,
            "held_by_others": strangers, "most": most, "fewest": fewest,
            "share": round(leases / len(node_ids), 2), "floor": floor, "ceiling": ceiling,
            "balanced": held == leases and not strangers and floor <= fewest and most <= ceiling}


class LeaseFleet:
    """The nodes of the placement part, all in one namespace at one TTL and renew interval."""

    def __init__(self, url: str, namespace: str, *, ttl: float, renew: float) -> None:
        self._url, self.namespace, self._ttl, self._renew = url, namespace, ttl, renew
        self._ids = itertools.count()
        self.nodes: list[LeaseNode] = []  # live, in start order
        self.counters: dict[str, CallCounter] = {}
        self._clients: list[Any] = []
        self._crashed: list[LeaseNode] = []

    def _settings(self, node_id: str) -> Settings:
        # every field the node reads is given, so the caller's COORDINATOR_* cannot leak in
        return load_settings(
            redis_url=self._url, namespace=self.namespace, node_id=node_id,
            host=f"{node_id}.bench", lease_ttl=self._ttl, renew_interval=self._renew,
            heartbeat_interval=self._renew, leases="", lease_selector="*", capacity=1,
            guardian=False, redis_sentinels="", redis_cluster=False)

    async def start(self, count: int) -> list[LeaseNode]:
        """Start ``count`` more nodes at once (a deploy), each on its own counted client."""
        fresh = []
        for _ in range(count):
            settings = self._settings(f"node-{next(self._ids):03d}")
            counter = self.counters[settings.node_id] = CallCounter()
            client = counted(connect(settings), counter)
            self._clients.append(client)
            fresh.append(LeaseNode(settings, redis=client))
        await asyncio.gather(*(node.start() for node in fresh))
        self.nodes += fresh
        return fresh

    @property
    def node_ids(self) -> list[str]:
        """The live nodes' ids."""
        return [node.settings.node_id for node in self.nodes]

    async def leave(self, node: LeaseNode) -> tuple[int, float, list[float] | None]:
        """Stop ``node`` gracefully: how many leases it held, seconds its ``stop()`` took, and
        seconds from calling it until each of them was held by another node (as that node
        believes; None if not all within 30 s)."""
        gone = set(node.held_leases())
        self.nodes.remove(node)
        began = time.monotonic()

        async def stop() -> float:
            await node.stop()
            return time.monotonic() - began

        stopping = asyncio.ensure_future(stop())
        rehomed = await self._until_held(gone, began)
        return len(gone), await stopping, rehomed

    async def crash(self, node: LeaseNode, bound: float) -> tuple[set[str], list[float] | None]:
        """Stop ``node``'s rounds without releasing anything (its leases run out at their
        TTL); the leases it held, and seconds until each was held by another node."""
        gone = set(node.held_leases())
        self.nodes.remove(node)
        self._crashed.append(node)
        began = time.monotonic()
        for task in node._tasks:  # as a dead host: no more rounds, nothing handed over
            task.cancel()
        return gone, await self._until_held(gone, began, timeout=bound)

    async def _until_held(self, leases: set[str], began: float,
                          timeout: float = 30.0) -> list[float] | None:
        """Seconds from ``began`` until each of ``leases`` was first seen held by a live node,
        in order; None if not all within ``timeout``."""
        seen: dict[str, float] = {}
        while True:
            now = time.monotonic() - began
            for lease in leases - seen.keys():
                if any(n.leadership(lease).leading for n in self.nodes):
                    seen[lease] = now
            if len(seen) == len(leases):
                return sorted(seen.values())
            if now > timeout:
                return None
            await asyncio.sleep(POLL)

    async def until(self, check: Callable[[], Awaitable[bool]], timeout: float,
                    step: float) -> float | None:
        """Seconds until ``check()`` is true, polling every ``step``; None after ``timeout``."""
        began = time.monotonic()
        while not await check():
            if time.monotonic() - began > timeout:
                return None
            await asyncio.sleep(step)
        return time.monotonic() - began

    def reset_counters(self) -> None:
        """Start every node's round-trip count afresh."""
        for counter in self.counters.values():
            counter.reset()

    async def close(self) -> None:
        """Stop every live node, silence the crashed ones, close every client."""
        await asyncio.gather(*(node.stop() for node in self.nodes), return_exceptions=True)
        for node in self._crashed:
            node._stopping = True  # nothing of it may run any more
            await asyncio.gather(*(m.stop() for m in node.members().values()),
                                 return_exceptions=True)
            with contextlib.suppress(Exception):
                await node._events.close()
        self.nodes, self._crashed = [], []
        for client in self._clients:
            with contextlib.suppress(Exception):
                await client.aclose()
