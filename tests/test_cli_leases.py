"""``coordinator leases add | remove | list``: real processes against a real redis-server, as an
operator runs them (output, JSON shape, exit statuses, the leases_changed sentence)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from coordinator.leases.names import MAX_LEASES
from coordinator.protocol import keys
from coordinator.protocol.lease import Lease
from tests.processes import coordinator
from tests.redis_server import RedisServer

UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def namespace() -> str:
    return "cli-" + uuid.uuid4().hex[:8]


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Any]:
    redis = aioredis.Redis(port=redis_server.port)
    try:
        yield redis
    finally:
        await redis.aclose()


def _leases(server: RedisServer, namespace: str, *args: str, url: str | None = None) -> Any:
    return coordinator("leases", *args, redis_url=url or server.url,
                       COORDINATOR_NAMESPACE=namespace)


def test_add_list_remove_as_an_operator_runs_them(redis_server: RedisServer, namespace: str) -> None:
    added = _leases(redis_server, namespace, "add", "shard-{0..2}", "orders,billing")
    assert (added.returncode, added.stdout.strip(), added.stderr) == (0, "added 5 leases (version 1)", "")
    again = _leases(redis_server, namespace, "add", "orders", "extra")
    assert again.returncode == 0
    assert again.stdout.strip() == "added 1 lease, 1 lease registered already (version 2)"
    removed = _leases(redis_server, namespace, "remove", "shard-1", "nope")
    assert removed.returncode == 0
    assert removed.stdout.strip() == "removed 1 lease, 1 lease not registered (version 3)"
    listed = _leases(redis_server, namespace, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["LEASE", "HOLDER", "TERM", "LEFT", "PREFERRED"]
    assert [line.split()[0] for line in lines[1:]] == ["billing", "extra", "orders", "shard-0",
                                                       "shard-2"]
    assert all(line.split()[1:] == ["-", "-", "-", "-"] for line in lines[1:])


async def test_list_shows_holders_terms_time_left_and_preferred_holders(
        redis_server: RedisServer, namespace: str, client: Any) -> None:
    done = _leases(redis_server, namespace, "add", "a,b", "--prefer", "n2,n1")
    assert done.returncode == 0 and "set the preferred holders of 2 leases" in done.stdout
    held = await Lease(client, holder_id="n1", ttl=30, name="a", namespace=namespace).acquire()
    listed = _leases(redis_server, namespace, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [set(row) for row in rows] == [{"name", "holder_id", "term", "expires_in_ms",
                                           "preferred"}] * 2
    a, b = rows
    assert (a["name"], a["holder_id"], a["term"], a["preferred"]) == ("a", "n1", held.term,
                                                                     ["n2", "n1"])
    assert 0 < a["expires_in_ms"] <= 30_000
    assert b == {"name": "b", "holder_id": None, "term": None, "expires_in_ms": None,
                 "preferred": ["n2", "n1"]}
    table = _leases(redis_server, namespace, "list").stdout.splitlines()
    row_a = table[1].split()
    assert row_a[:3] == ["a", "n1", str(held.term)] and row_a[3].endswith("s")
    assert row_a[4] == "n2,n1"


def test_the_change_prints_as_a_sentence_in_the_history(redis_server: RedisServer,
                                                         namespace: str) -> None:
    assert _leases(redis_server, namespace, "add", "s-{0..1}").returncode == 0
    events = coordinator("events", redis_url=redis_server.url, COORDINATOR_NAMESPACE=namespace)
    assert events.returncode == 0, events.stderr
    assert "leases_changed" in events.stdout
    assert "leases added 2 leases (s-0, s-1) (registry version 1)" in events.stdout
    assert "{" not in events.stdout


@pytest.mark.parametrize("args", [
    ("add", "bad name"), ("add", "s-{3..1}"), ("add", "a,a"), ("add", "a,,b"),
    ("add", "a", "--prefer", "bad id!"), ("add", "a", "--prefer", "n1,,n2"),
    ("remove", "ü"), ("remove", "a/b"), ("add", f"s-{{0..{MAX_LEASES}}}"),
])
def test_bad_input_exits_2_before_touching_redis(redis_server: RedisServer, namespace: str,
                                                 args: tuple[str, ...]) -> None:
    done = _leases(redis_server, namespace, *args, url=UNREACHABLE)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("coordinator: ") and len(done.stderr.splitlines()) == 1
    assert "unavailable" not in done.stderr.lower()


@pytest.mark.parametrize(("args", "said"), [(("add", "a"), "cannot change the leases on"),
                                            (("remove", "a"), "cannot change the leases on"),
                                            (("list",), "cannot read the leases from")])
def test_an_unreachable_redis_exits_1_saying_so(redis_server: RedisServer, namespace: str,
                                                args: tuple[str, ...], said: str) -> None:
    done = _leases(redis_server, namespace, *args, url=UNREACHABLE)
    assert done.returncode == 1
    assert done.stderr.startswith(f"coordinator: {said} {UNREACHABLE}: Redis unavailable")


async def test_a_full_registry_refuses_the_add_with_exit_2(redis_server: RedisServer,
                                                           namespace: str, client: Any) -> None:
    await client.zadd(keys.leases_key(namespace), {f"s-{i}": 1 for i in range(MAX_LEASES)})
    done = _leases(redis_server, namespace, "add", "one-more")
    assert done.returncode == 2
    assert f"at most {MAX_LEASES}" in done.stderr and "nothing was changed" in done.stderr
    assert await client.zcard(keys.leases_key(namespace)) == MAX_LEASES


async def test_an_unreadable_lease_is_listed_and_named_with_exit_3(
        redis_server: RedisServer, namespace: str, client: Any) -> None:
    assert _leases(redis_server, namespace, "add", "bad,good").returncode == 0
    bad_key = keys.lease_key(namespace, "bad")
    await client.rpush(bad_key, "not a lease")
    done = _leases(redis_server, namespace, "list")
    assert done.returncode == 3
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:]}
    assert rows["bad"][1] == "(unreadable)" and rows["good"][1] == "-"
    assert bad_key in done.stderr and f"redis-cli DEL {bad_key}" in done.stderr
    shown = json.loads(_leases(redis_server, namespace, "list", "--json").stdout)
    assert [row["name"] for row in shown] == ["bad", "good"] and "corrupt" in shown[0]


async def test_a_registry_of_another_type_is_named_and_left_alone(
        redis_server: RedisServer, namespace: str, client: Any) -> None:
    await client.set(keys.leases_key(namespace), "not ours")
    listed = _leases(redis_server, namespace, "list")
    assert listed.returncode == 3 and keys.leases_key(namespace) in listed.stderr
    added = _leases(redis_server, namespace, "add", "a")
    assert added.returncode == 1 and keys.leases_key(namespace) in added.stderr
    assert await client.get(keys.leases_key(namespace)) == b"not ours"


async def test_a_registry_member_that_is_no_lease_name_is_named_with_exit_3(
        redis_server: RedisServer, namespace: str, client: Any) -> None:
    assert _leases(redis_server, namespace, "add", "good").returncode == 0
    await client.zadd(keys.leases_key(namespace), {"bad name": 1})
    done = _leases(redis_server, namespace, "list")
    assert done.returncode == 3
    assert [line.split()[0] for line in done.stdout.splitlines()[1:]] == ["good"]
    assert "'bad name'" in done.stderr and f"ZREM {keys.leases_key(namespace)}" in done.stderr
