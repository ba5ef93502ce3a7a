"""``coordinator status`` with many leases registered: a table of the leases (holder, term,
time left), each many-lease controller's count against its share, the ``leases`` rows of
``leases list --json``; an empty registry changes nothing, not even what is imported; an
unreadable registry is named with its remedy (exit 3) while the rest is still shown."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from coordinator.leases.placement import plan_placement
from coordinator.leases.registry import add_leases, remove_leases
from coordinator.leases.view import read_view
from coordinator.protocol import keys
from coordinator.protocol.lease import Lease
from coordinator.protocol.membership import Heartbeat
from coordinator.settings import load_settings
from coordinator.watching.status import cluster_status, render_status
from tests.processes import coordinator, coordinator_env
from tests.redis_server import RedisServer

NS = "coordinator"
# the keys of today's single-lease status, in order: an empty registry adds none
SINGLE_KEYS = ["namespace", "lease_name", "redis_now", "lease", "controllers",
               "automation_mode", "redis", "error"]
CONTROLLER_KEYS = ["node_id", "host", "role", "priority", "status", "version", "started_at",
                   "last_heartbeat_at", "heartbeat_age_ms", "alive", "preferred", "lease",
                   "metadata", "capacity", "selector", "state"]


def beat(redis: Any, node: str, *, many: bool = True, capacity: int = 1) -> Heartbeat:
    return Heartbeat(redis, namespace=NS, node_id=node, host=f"{node}.host", role="standby",
                     priority=50, version="1", instance_id=f"{node}-1", interval=5.0,
                     retention=60, lease="*" if many else "global",
                     capacity=capacity if many else None)


async def take(redis: Any, lease: str, node: str) -> None:
    result = await Lease(redis, holder_id=node, holder_host=f"{node}.host", ttl=30, name=lease,
                         namespace=NS).acquire()
    assert result.is_leader


async def two_nodes_six_leases(redis: Any) -> None:
    """a (capacity 2) and b (capacity 1) for 6 leases: shares 4 and 2; a holds 3, b 1."""
    await add_leases(redis, NS, [f"shard-{i}" for i in range(6)])
    await beat(redis, "a", capacity=2).beat()
    await beat(redis, "b").beat()
    await beat(redis, "solo", many=False).beat()
    for lease, node in (("shard-0", "a"), ("shard-1", "a"), ("shard-2", "a"), ("shard-3", "b")):
        await take(redis, lease, node)


async def test_status_lists_every_lease_and_each_nodes_count_against_its_share(
        redis: Any) -> None:
    await two_nodes_six_leases(redis)
    snapshot = await cluster_status(redis, load_settings(node_id="x"))
    view = await read_view(redis, NS)
    # the share is the plan every node computes from the same reading
    assert plan_placement(view.leases, view.nodes, view.holders, view.preferred).targets == {
        "a": 4, "b": 2}
    by_id = {c["node_id"]: c for c in snapshot["controllers"]}
    assert {n: (c["leases_held"], c["leases_target"]) for n, c in by_id.items()} == {
        "a": (3, 4), "b": (1, 2), "solo": (None, None)}
    # a node of many leases that holds some is a leader (of those); "solo" holds no lease
    assert {n: c["state"] for n, c in by_id.items()} == {
        "a": "leader", "b": "leader", "solo": "standby"}
    rows = {row["name"]: row for row in snapshot["leases"]}
    assert list(rows) == [f"shard-{i}" for i in range(6)]
    assert rows["shard-0"]["holder_id"] == "a" and rows["shard-3"]["holder_id"] == "b"
    assert rows["shard-4"] == {"name": "shard-4", "holder_id": None, "term": None,
                               "expires_in_ms": None, "preferred": []}
    assert 29_000 < rows["shard-0"]["expires_in_ms"] <= 30_000
    assert set(rows["shard-0"]) == {"name", "holder_id", "term", "expires_in_ms", "preferred"}
    assert snapshot["leases_errors"] == [] and snapshot["error"] is None

    lines = render_status(snapshot).splitlines()
    header = next(i for i, line in enumerate(lines) if "NODE" in line)
    assert lines[header].split()[-1] == "HELD/SHARE"
    shares = {line.split()[0]: line.split()[-1] for line in lines[header + 1:header + 4]}
    assert shares == {"a": "3/4", "b": "1/2", "solo": "-"}
    table = lines.index("leases (6):")
    assert table > header  # after today's output
    assert lines[table + 1].split() == ["LEASE", "HOLDER", "TERM", "LEFT"]
    cells = {line.split()[0]: line.split() for line in lines[table + 2:]}
    assert cells["shard-0"][:3] == ["shard-0", "a", str(rows["shard-0"]["term"])]
    assert cells["shard-0"][3].endswith("s") and 29.0 <= float(cells["shard-0"][3][:-1]) <= 30.0
    assert cells["shard-5"] == ["shard-5", "-", "-", "-"]
    assert len(cells) == 6


async def test_an_empty_registry_adds_nothing_to_the_status(redis: Any) -> None:
    await beat(redis, "a").beat()  # a many-lease node with nothing registered
    await beat(redis, "solo", many=False).beat()
    await add_leases(redis, NS, ["gone"])
    await remove_leases(redis, NS, ["gone"])  # registered once, empty again
    snapshot = await cluster_status(redis, load_settings(node_id="x"))
    assert list(snapshot) == SINGLE_KEYS
    assert [list(c) for c in snapshot["controllers"]] == [CONTROLLER_KEYS, CONTROLLER_KEYS]
    text = render_status(snapshot)
    assert "HELD/SHARE" not in text and "leases (" not in text and "LEFT" not in text


def test_render_of_a_single_lease_status_is_todays_text() -> None:
    """The text of a snapshot without leases, byte for byte as before many leases."""
    controller = {"node_id": "a", "host": "a.host", "role": "primary", "state": "leader",
                  "status": "alive", "alive": True, "heartbeat_age_ms": 1200, "lease": "global",
                  "metadata": {}}
    snapshot = {"namespace": NS, "lease_name": "global", "redis_now": 1, "automation_mode":
                "running", "redis": {"maxmemory_policy": "noeviction", "warnings": []},
                "error": None, "controllers": [controller],
                "lease": {"holder_id": "a", "holder_host": "a.host", "term": 7,
                          "remaining_ms": 2500}}
    assert render_status(snapshot) == (
        "leader: a on a.host  term 7  2.5s left\n"
        "automation mode: running\n"
        "redis maxmemory-policy: noeviction\n"
        "controllers (1):\n"
        "  NODE  HOST    ROLE     STATE   LIVENESS  HEARTBEAT  LEASE\n"
        "* a     a.host  primary  leader  alive     1.2s ago   global\n"
        "(* the leader)")


async def test_an_unreadable_lease_hash_is_named_in_the_leases_and_the_rest_shown(
        redis: Any) -> None:
    await two_nodes_six_leases(redis)
    key = keys.lease_key(NS, "shard-5")
    await redis.rpush(key, "not", "a", "hash")
    snapshot = await cluster_status(redis, load_settings(node_id="x"))
    rows = {row["name"]: row for row in snapshot["leases"]}
    assert "corrupt" in rows["shard-5"] and rows["shard-0"]["holder_id"] == "a"
    [problem] = snapshot["leases_errors"]
    assert problem["key"] == key and problem["type"] == "list"
    assert key in problem["message"] and f"DEL {key}" in problem["remedy"]
    text = render_status(snapshot)
    assert "(unreadable)" in text and f"unreadable: lease key {key}" in text
    assert "3/4" in text  # the counts are still shown


async def test_a_registry_of_another_type_is_named_and_everything_else_shown(
        redis: Any) -> None:
    await beat(redis, "a").beat()
    await take(redis, "global", "a")
    registry = keys.leases_key(NS)
    await redis.set(registry, "foreign")
    snapshot = await cluster_status(redis, load_settings(node_id="x"))
    assert snapshot["lease"]["holder_id"] == "a" and snapshot["error"] is None
    assert snapshot["leases"] is None
    [problem] = snapshot["leases_errors"]
    assert problem["key"] == registry and problem["type"] == "string"
    assert f"DEL {registry}" in problem["remedy"]
    assert [(c["leases_held"], c["leases_target"]) for c in snapshot["controllers"]] == [
        (None, None)]
    text = render_status(snapshot)
    assert "leader: a on a.host" in text and "leases: unknown" in text
    assert f"unreadable: {registry}" in text


def _cli(redis_server: RedisServer, *args: str) -> subprocess.CompletedProcess[str]:
    return coordinator(*args, redis_url=redis_server.url)


def test_status_cli_with_leases_prints_the_table_and_the_json_rows(
        redis_server: RedisServer) -> None:
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "FLUSHALL"], check=True,
                   capture_output=True)
    added = _cli(redis_server, "leases", "add", "shard-{0..2}")
    assert added.returncode == 0, added.stderr
    done = _cli(redis_server, "status", "--json")
    assert done.returncode == 0, done.stderr
    snapshot = json.loads(done.stdout)
    listed = json.loads(_cli(redis_server, "leases", "list", "--json").stdout)
    assert snapshot["leases"] == listed  # the same rows as `leases list --json`
    human = _cli(redis_server, "status")
    assert human.returncode == 0, human.stderr
    assert "leases (3):" in human.stdout and "shard-2" in human.stdout


def test_status_cli_with_a_corrupt_registry_exits_3_names_it_and_prints_the_rest(
        redis_server: RedisServer) -> None:
    registry = keys.leases_key(NS)
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "FLUSHALL"], check=True,
                   capture_output=True)
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "SET", registry, "foreign"],
                   check=True, capture_output=True)
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "SET",
                    keys.automation_mode_key(NS), "paused"], check=True, capture_output=True)
    human = _cli(redis_server, "status")
    assert human.returncode == 3, human.stderr
    assert "automation mode: paused" in human.stdout
    assert registry in human.stderr and f"DEL {registry}" in human.stderr
    done = _cli(redis_server, "status", "--json")
    assert done.returncode == 3, done.stderr
    snapshot = json.loads(done.stdout)
    assert snapshot["automation_mode"] == "paused" and snapshot["leases"] is None
    assert snapshot["leases_errors"][0]["key"] == registry


def test_status_with_an_empty_registry_imports_no_leases_module(
        redis_server: RedisServer) -> None:
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "FLUSHALL"], check=True,
                   capture_output=True)
    code = ("import sys\nfrom coordinator.cli.main import main\n"
            "status = main(['status', '--json'])\n"
            "print('MODULES', status, ' '.join(sorted(sys.modules)), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=coordinator_env(redis_server.url), timeout=30, check=False)
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES "))
    status, *modules = line.split()[1:]
    assert status == "0", done.stderr
    assert list(json.loads(done.stdout)) == SINGLE_KEYS
    # (the settings check the lease names with coordinator.leases.names, as they did before)
    assert not [m for m in modules if m.startswith("coordinator.leases.")
                and m != "coordinator.leases.names"]


def _masked(stdout: str) -> str:
    """stdout without what moves between two reads (times, ages, Redis's clock)."""
    stdout = re.sub(r'"(redis_now|heartbeat_age_ms|expires_in_ms|remaining_ms)": \d+',
                    r'"\1": 0', stdout)
    return re.sub(r"\d+\.\ds", "N.Ns", stdout)


@pytest.mark.parametrize("mode", [["--json"], []])
def test_the_quick_and_the_full_status_path_agree_with_leases(
        redis_server: RedisServer, tmp_path: Any, mode: list[str]) -> None:
    from tests.test_status_quick import _run

    subprocess.run(["redis-cli", "-p", str(redis_server.port), "FLUSHALL"], check=True,
                   capture_output=True)
    env = coordinator_env(redis_server.url)
    assert _cli(redis_server, "leases", "add", "shard-{0..1}").returncode == 0
    quick, full = _run(["status", *mode], env, tmp_path, full=False), _run(
        ["status", *mode], env, tmp_path, full=True)
    assert (quick[0], _masked(quick[1]), quick[2]) == (full[0], _masked(full[1]), full[2]) == (
        0, _masked(full[1]), "")
    assert "shard-1" in quick[1]
    # a registry of another type: exit 3 and the remedy on both
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "SET", keys.leases_key(NS),
                    "foreign"], check=True, capture_output=True)
    quick, full = _run(["status", *mode], env, tmp_path, full=False), _run(
        ["status", *mode], env, tmp_path, full=True)
    assert (quick[0], _masked(quick[1]), quick[2]) == (full[0], _masked(full[1]), full[2])
    assert quick[0] == 3 and f"DEL {keys.leases_key(NS)}" in quick[2]
