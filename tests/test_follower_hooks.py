"""Hooks for followers (issue 14): on_new_leader on every node, on_initial_state once."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis

from coordinator.daemon.daemon import Daemon
from coordinator.daemon.hooks import Hooks
from coordinator.settings import load_settings


def _daemon(server: Any, node: str, hooks: Hooks) -> Daemon:
    return Daemon(load_settings(node_id=node, lease_ttl=2, renew_interval=0.5,
                                heartbeat_interval=0.5),
                  redis=fakeredis.FakeAsyncRedis(server=server), hooks=hooks)


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_every_node_hears_of_each_new_leader_and_its_initial_state() -> None:
    server = fakeredis.FakeServer()
    heard: dict[str, list[tuple[str, int]]] = {"a": [], "b": []}
    initial: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}

    def hooks(node: str) -> Hooks:
        async def on_new_leader(holder_id: str, term: int) -> None:
            heard[node].append((holder_id, term))

        def on_initial_state(snapshot: dict[str, Any]) -> None:  # a plain def works too
            initial[node].append(snapshot)

        return Hooks(on_new_leader=on_new_leader,
                     on_initial_state=on_initial_state)  # type: ignore[arg-type]

    a, b = _daemon(server, "a", hooks("a")), _daemon(server, "b", hooks("b"))
    await a.start()
    await b.start()
    try:
        await _until(lambda: heard["a"] and heard["b"] and initial["a"] and initial["b"])
        term_a = a.leadership().term
        assert term_a is not None
        assert heard["a"] == [("a", term_a)] and heard["b"] == [("a", term_a)]
        assert [s["role"] for s in initial["a"]] == ["leader"]
        assert initial["a"][0]["scheduler_enabled"] and initial["a"][0]["can_schedule"]
        assert [s["role"] for s in initial["b"]] == ["standby"]
        assert initial["b"][0]["current_leader_id"] == "a"
        await a.stop()
        await _until(lambda: len(heard["b"]) == 2)
        holder, term_b = heard["b"][1]
        assert holder == "b" and term_b > term_a
    finally:
        await a.stop()
        await b.stop()
    assert len(initial["a"]) == len(initial["b"]) == 1
