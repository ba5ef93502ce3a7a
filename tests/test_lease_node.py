"""Many leases on real nodes (LeaseNode) in one process, on fakeredis and real Redis: fair
placement, calm while membership is steady, graceful moves on join and leave, crashed
nodes' leases re-homed, per-lease fencing and hooks, registry changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from coordinator.daemon.hooks import Hooks, LeaderContext
from coordinator.errors import FencedWriteRefused
from coordinator.leases.node import LeaseNode
from coordinator.leases.registry import add_leases, remove_leases
from coordinator.leases.view import read_view
from coordinator.protocol import keys
from coordinator.settings import Settings, load_settings

TTL, RENEW = 1.5, 0.25


def settings(node: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {"node_id": node, "host": f"{node}.example", "lease_ttl": TTL,
                            "renew_interval": RENEW, "heartbeat_interval": RENEW,
                            "lease_selector": "*", "guardian": False}
    return load_settings(**{**base, **kw})


async def until(check: Callable[[], Any], timeout: float = 5.0, step: float = 0.02) -> Any:
    """Poll ``check`` (sync or async) until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {check}")
        await asyncio.sleep(step)


async def holders(redis: Any) -> dict[str, tuple[str, int]]:
    view = await read_view(redis, "coordinator")
    return {lease: (view.holders[lease], view.terms[lease]) for lease in view.holders}


def counts(nodes: list[LeaseNode]) -> list[int]:
    return [len(n.held_leases()) for n in nodes]


async def balanced(redis: Any, nodes: list[LeaseNode], leases: int) -> bool:
    """Every lease held, by the node that believes it holds it, spread floor/ceiling."""
    seen = await holders(redis)
    if len(seen) != leases:
        return False
    share = leases / len(nodes)
    held = {n.settings.node_id: set(n.held_leases()) for n in nodes}
    return all(int(share) <= len(h) <= -(-leases // len(nodes)) for h in held.values()) and all(
        lease in held.get(holder, set()) for lease, (holder, _) in seen.items()) and share > 0


async def start(redis: Any, *names: str, **kw: Any) -> list[LeaseNode]:
    nodes = [LeaseNode(settings(name, **kw), redis=redis) for name in names]
    for node in nodes:
        await node.start()
    return nodes


async def stop(nodes: list[LeaseNode]) -> None:
    await asyncio.gather(*(n.stop() for n in nodes))


async def test_leases_are_spread_by_share_each_with_one_holder(redis: Any) -> None:
    nodes = await start(redis, "a", "b", "c", leases="s-{0..11}")
    try:
        await until(lambda: balanced(redis, nodes, 12))
        assert sorted(counts(nodes)) == [4, 4, 4]
        seen = await holders(redis)
        assert sorted(seen) == sorted(f"s-{i}" for i in range(12))
        # a lease held twice would show in two nodes' held sets
        every = [lease for n in nodes for lease in n.held_leases()]
        assert len(every) == len(set(every)) == 12
    finally:
        await stop(nodes)


async def test_capacity_weights_the_share(redis: Any) -> None:
    a = LeaseNode(settings("a", leases="s-{0..8}", capacity=2), redis=redis)
    b = LeaseNode(settings("b"), redis=redis)
    await a.start()
    await b.start()
    try:
        await until(lambda: len(a.held_leases()) == 6 and len(b.held_leases()) == 3)
    finally:
        await stop([a, b])


async def test_nothing_moves_while_membership_is_steady(redis: Any) -> None:
    nodes = await start(redis, "a", "b", "c", leases="s-{0..8}")
    try:
        await until(lambda: balanced(redis, nodes, 9))
        before = await holders(redis)
        await asyncio.sleep(12 * RENEW)  # a dozen rounds of every node
        assert await holders(redis) == before  # same holder, same term: no move, no re-grant
    finally:
        await stop(nodes)


async def test_a_joining_node_takes_its_share_and_no_more(redis: Any) -> None:
    nodes = await start(redis, "a", "b", leases="s-{0..11}")
    try:
        await until(lambda: balanced(redis, nodes, 12))
        before = await holders(redis)
        nodes += await start(redis, "c")
        await until(lambda: balanced(redis, nodes, 12))
        after = await holders(redis)
        moved = [lease for lease in after if after[lease][0] != before[lease][0]]
        assert len(moved) == 4  # its share: 12 / 3
        assert all(after[lease][0] == "c" for lease in moved)
        assert all(after[lease][1] > before[lease][1] for lease in moved)  # a new term each
        unmoved = [lease for lease in after if lease not in moved]
        assert all(after[lease] == before[lease] for lease in unmoved)
    finally:
        await stop(nodes)


async def test_a_leaving_node_hands_its_leases_over_at_once(redis: Any) -> None:
    nodes = await start(redis, "a", "b", "c", leases="s-{0..8}")
    try:
        await until(lambda: balanced(redis, nodes, 9))
        before = await holders(redis)
        leaving = nodes.pop()
        gone = set(leaving.held_leases())
        await leaving.stop()
        # handed over, reserved for their targets: taken within milliseconds, not a TTL
        await until(lambda: all(len(n.held_leases()) == 4 or len(n.held_leases()) == 5
                                for n in nodes) and sum(counts(nodes)) == 9, timeout=RENEW)
        after = await holders(redis)
        assert all(after[lease][0] in ("a", "b") and after[lease][1] > before[lease][1]
                   for lease in gone)
    finally:
        await stop(nodes)


async def test_a_crashed_nodes_leases_are_rehomed_within_ttl_and_a_round(redis: Any) -> None:
    nodes = await start(redis, "a", "b", "c", leases="s-{0..5}")
    crashed = nodes[-1]
    try:
        await until(lambda: balanced(redis, nodes, 6))
        lost = set(crashed.held_leases())
        assert lost
        # a crash: its rounds stop and nothing is released (its leases run out at the TTL).
        # _stopping first: on Python 3.11 a cancel landing as a wait completes can be
        # swallowed, and the loop (while not stopping) would then go on renewing
        crashed._stopping = True
        for task in crashed._tasks:
            task.cancel()
        began = time.monotonic()
        survivors = nodes[:2]
        await until(lambda: sum(counts(survivors)) == 6, timeout=TTL + 4 * RENEW)
        took = time.monotonic() - began
        assert took <= TTL + 2 * RENEW, took  # TTL + one round, and a round of slack
        assert sorted(counts(survivors)) == [3, 3]
    finally:
        await stop(nodes[:2])
        for member in crashed.members().values():
            await member.stop()


async def test_each_lease_fences_with_its_own_term(redis: Any) -> None:
    a, = await start(redis, "a", leases="x,y")
    b: LeaseNode | None = None
    try:
        await until(lambda: set(a.held_leases()) == {"x", "y"})
        contexts: dict[str, LeaderContext] = {}

        async def keep(ctx: LeaderContext) -> None:
            contexts[ctx.lease] = ctx

        for lease in ("x", "y"):
            assert await a.run_scheduler_pass(keep, lease=lease) == "scheduled"
        key = keys.fenced_key("coordinator", "data")
        assert (await contexts["x"].fenced_set(key, "a")).accepted
        b = LeaseNode(settings("b"), redis=redis)
        await b.start()
        await until(lambda: len(a.held_leases()) == 1 and len(b.held_leases()) == 1)
        moved = next(iter(b.held_leases()))
        with pytest.raises(FencedWriteRefused):
            await contexts[moved].fenced_set(key, "stale")
        kept = next(iter(a.held_leases()))
        assert (await contexts[kept].fenced_set(key, "fresh")).accepted
        assert await redis.get(key) == b"fresh"
    finally:
        await stop([a] if b is None else [a, b])


async def test_hooks_get_the_lease_they_lead(redis: Any) -> None:
    started: list[tuple[str, int]] = []
    stopped: list[str] = []

    async def lead(ctx: LeaderContext) -> None:
        started.append((ctx.lease, ctx.term))

    async def leave() -> None:
        stopped.append("stopped")

    node = LeaseNode(settings("a", leases="p,q,r"), redis=redis,
                     hooks=Hooks(on_started_leading=lead, on_stopped_leading=leave))
    await node.start()
    try:
        await until(lambda: len(started) == 3)
        assert dict(started) == node.held_leases()
    finally:
        await node.stop()
    assert len(stopped) == 3  # every lease's tenure ended with the stop


async def test_registry_changes_reach_every_node_within_a_round(redis: Any) -> None:
    nodes = await start(redis, "a", "b")
    try:
        await add_leases(redis, "coordinator", ["n-1", "n-2", "n-3", "n-4"])
        await until(lambda: sum(counts(nodes)) == 4, timeout=3 * RENEW)
        await remove_leases(redis, "coordinator", ["n-1", "n-2"])
        await until(lambda: sum(counts(nodes)) == 2, timeout=3 * RENEW)
        assert set(await holders(redis)) == {"n-3", "n-4"}  # removed ones were released
    finally:
        await stop(nodes)


async def test_a_selector_keeps_a_node_to_its_leases(redis: Any) -> None:
    nodes = [LeaseNode(settings("eu", leases="eu-1,eu-2,us-1,us-2", lease_selector="eu-*"),
                       redis=redis),
             LeaseNode(settings("any"), redis=redis)]
    for node in nodes:
        await node.start()
    try:
        # its share of the eu class (one of two); the us-* leases only "any" may hold
        await until(lambda: counts(nodes) == [1, 3])
        assert all(lease.startswith("eu-") for lease in nodes[0].held_leases())
        await asyncio.sleep(4 * RENEW)
        assert counts(nodes) == [1, 3] and all(
            lease.startswith("eu-") for lease in nodes[0].held_leases())
    finally:
        await stop(nodes)


async def test_a_lease_can_be_paused_and_drained_on_its_own(redis: Any) -> None:
    from coordinator.protocol.modes import set_automation_mode

    node, = await start(redis, "a", leases="x,y")
    try:
        await until(lambda: set(node.held_leases()) == {"x", "y"})

        async def work(ctx: LeaderContext) -> None:
            return None

        async def passes() -> dict[str, str]:
            return {lease: await node.run_scheduler_pass(work, lease=lease) for lease in "xy"}

        change = await set_automation_mode(redis, "coordinator", "paused", lease="x")
        assert change.changed
        await until(lambda: node.members()["x"].status_snapshot()["automation_mode"] == "paused",
                    timeout=3 * RENEW)
        assert await passes() == {"x": "skipped_paused", "y": "scheduled"}
        # the namespace's mode applies to every lease; the stricter of the two wins
        await set_automation_mode(redis, "coordinator", "draining")
        await until(lambda: node.members()["y"].status_snapshot()["automation_mode"] == "draining",
                    timeout=3 * RENEW)
        assert await passes() == {"x": "skipped_paused", "y": "skipped_draining"}
        await set_automation_mode(redis, "coordinator", "running")
        await set_automation_mode(redis, "coordinator", "running", lease="x")
        await until(lambda: node.members()["x"].status_snapshot()["automation_mode"] == "running",
                    timeout=3 * RENEW)
        assert await passes() == {"x": "scheduled", "y": "scheduled"}
        assert set(node.held_leases()) == {"x", "y"}  # a pause keeps the leases where they are
    finally:
        await node.stop()


async def test_a_paused_lease_starts_no_work_on_its_new_holder(redis: Any) -> None:
    from coordinator.protocol.modes import set_automation_mode

    await add_leases(redis, "coordinator", ["x"])
    await set_automation_mode(redis, "coordinator", "paused", lease="x")
    started: list[str] = []

    async def lead(ctx: LeaderContext) -> None:
        started.append(ctx.automation_mode)

    node = LeaseNode(settings("a"), redis=redis, hooks=Hooks(on_started_leading=lead))
    await node.start()
    try:
        await until(lambda: "x" in node.held_leases())
        await asyncio.sleep(2 * RENEW)
        assert node.members()["x"].status_snapshot()["automation_mode"] == "paused"
        assert started in ([], ["paused"])  # never a tenure that began running
    finally:
        await node.stop()
