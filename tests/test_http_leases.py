"""A node of many leases behind the HTTP endpoint, on fakeredis and real Redis: ``/status``
lists the leases it holds, ``/metrics`` has one ``coordinator_held_lease_term`` series per
held lease and none for a lease handed away (at most its share: bounded cardinality),
``/healthz`` and ``/readyz`` judge the node on the interval it really beats at; a single
lease's daemon's ``/metrics`` is as it was."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from coordinator.daemon.http import HttpServer
from coordinator.leases.node import LeaseNode
from tests.test_http import fast_settings, get, samples, serving
from tests.test_lease_node import settings, stop, until

# every family of a single lease's daemon: many leases add none of theirs to it
SINGLE_FAMILIES = {
    "coordinator_heartbeat_age_seconds", "coordinator_heartbeat_duration_seconds",
    "coordinator_heartbeat_failures", "coordinator_is_leader",
    "coordinator_lease_deadline_seconds", "coordinator_lease_renew_duration_seconds",
    "coordinator_lease_renew_failures", "coordinator_lease_state", "coordinator_lease_term",
    "coordinator_redis_clock_jumps", "coordinator_redis_master_switches", "coordinator_role",
    "coordinator_state_transitions",
}


@contextlib.asynccontextmanager
async def served(node: LeaseNode) -> AsyncIterator[int]:
    server = HttpServer(node, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield server.address[1]
    finally:
        await server.stop()


def held_terms(body: bytes) -> dict[str, float]:
    return {dict(labels)["lease"]: value for (name, labels), value in samples(body.decode()).items()
            if name == "coordinator_held_lease_term"}


async def test_status_and_metrics_show_the_held_leases_and_drop_one_handed_away(
        redis: Any) -> None:
    a = LeaseNode(settings("a", leases="s-{0..3}"), redis=redis)
    b = LeaseNode(settings("b"), redis=redis)
    await a.start()
    try:
        async with served(a) as port:
            await until(lambda: len(a.held_leases()) == 4)
            status = (await get(port, "/status")).json()
            assert [(row["lease"], row["term"]) for row in status["leases"]] == sorted(
                a.held_leases().items())
            assert (status["leases_held"], status["leases_target"]) == (4, 4)
            metrics = (await get(port, "/metrics")).body
            assert held_terms(metrics) == {lease: float(term)
                                           for lease, term in a.held_leases().items()}
            got = samples(metrics.decode())
            assert got[("coordinator_leases_held", frozenset())] == 4
            assert got[("coordinator_leases_target", frozenset())] == 4

            await b.start()  # a's share halves: it hands two leases over
            await until(lambda: len(a.held_leases()) == 2 and len(b.held_leases()) == 2)
            await until(lambda: a.target == 2)
            kept, given = a.held_leases(), b.held_leases()
            status = (await get(port, "/status")).json()
            assert [row["lease"] for row in status["leases"]] == sorted(kept)
            assert (status["leases_held"], status["leases_target"]) == (2, 2)
            metrics = (await get(port, "/metrics")).body
            # a series per lease held now, none left behind for those handed to b
            assert held_terms(metrics) == {lease: float(term) for lease, term in kept.items()}
            assert not set(held_terms(metrics)) & set(given)
            got = samples(metrics.decode())
            assert got[("coordinator_leases_held", frozenset())] == 2
            assert got[("coordinator_leases_target", frozenset())] == 2
            assert got[("coordinator_is_leader", frozenset())] == 1
    finally:
        await stop([a, b])


async def test_healthz_and_readyz_answer_for_a_node(redis: Any) -> None:
    node = LeaseNode(settings("a", leases="s-{0..1}"), redis=redis)
    async with served(node) as port:
        assert (await get(port, "/healthz")).status == 503  # not started
        await node.start()
        try:
            await until(lambda: len(node.held_leases()) == 2)
            health, ready = await get(port, "/healthz"), await get(port, "/readyz")
            assert (health.status, health.body) == (200, b"ok\n")
            assert (ready.status, ready.body) == (200, b"ready\n")
        finally:
            await node.stop()
        assert (await get(port, "/healthz")).status == 503
        assert (await get(port, "/readyz")).status == 503


async def test_readyz_judges_a_node_on_its_renew_interval_not_the_heartbeat_interval(
        redis: Any) -> None:
    # the node beats once per renew interval (0.6 s); three heartbeat intervals (0.3 s) would
    # call it stale between two of its beats
    node = LeaseNode(settings("a", leases="s-0", lease_ttl=2.0, renew_interval=0.6,
                              heartbeat_interval=0.1, heartbeat_retention=60), redis=redis)
    async with served(node) as port:
        await node.start()
        try:
            await until(lambda: node.held_leases())
            answers = []
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:  # over three of its beats
                reply = await get(port, "/readyz")
                answers.append((reply.status, reply.body.decode().strip()))
                await asyncio.sleep(0.05)
        finally:
            await node.stop()
    assert {answer for answer in answers if answer[0] != 200} == set()
    assert len(answers) > 20


async def test_a_single_lease_daemons_metrics_are_unchanged(redis: Any) -> None:
    async with serving(fast_settings("n1"), redis) as (daemon, port):
        await until(lambda: daemon.state.role.value == "leader")
        body = (await get(port, "/metrics")).body.decode()
        status = (await get(port, "/status")).json()
    families = {f.name for f in text_string_to_metric_families(body)}
    assert {f for f in families if not f.endswith("_created")} == SINGLE_FAMILIES
    assert "leases" not in status and "leases_held" not in status
