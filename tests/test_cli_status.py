"""``coordinator status``: a table an operator reads at a glance, and a corrupt lease key that
is named (with its type and the remedy) while everything else is still shown."""

from __future__ import annotations

from typing import Any

from coordinator.protocol import keys
from coordinator.protocol.lease import Lease
from coordinator.protocol.membership import Heartbeat
from coordinator.settings import load_settings
from coordinator.watching.status import cluster_status, render_status

NS = "coordinator"


def heartbeat(redis: Any, node: str, role: str = "standby") -> Heartbeat:
    return Heartbeat(redis, namespace=NS, node_id=node, host=f"{node}.host", role=role,
                     priority=50, version="1", instance_id=f"{node}-1", interval=5.0,
                     retention=60)


async def three_controllers(redis: Any) -> None:
    await Lease(redis, holder_id="a", holder_host="a.host", ttl=30).acquire()
    await heartbeat(redis, "a", role="primary").beat()
    await heartbeat(redis, "b").beat("degraded")
    await heartbeat(redis, "c").beat("stopping")


async def test_status_json_adds_each_controllers_state_and_keeps_its_fields(redis: Any) -> None:
    await three_controllers(redis)
    snapshot = await cluster_status(redis, load_settings(node_id="x"))
    by_id = {c["node_id"]: c for c in snapshot["controllers"]}
    assert {n: c["state"] for n, c in by_id.items()} == {
        "a": "leader", "b": "degraded", "c": "stopping"}
    # today's fields stay: role is the configured role, status the heartbeat's word
    assert by_id["a"]["role"] == "primary" and by_id["a"]["status"] == "alive"
    assert {"node_id", "host", "role", "priority", "status", "version", "started_at",
            "last_heartbeat_at", "heartbeat_age_ms", "alive", "preferred", "lease",
            "metadata"} <= set(by_id["b"])
    assert snapshot["error"] is None


async def test_a_live_standby_is_in_state_standby(redis: Any) -> None:
    await Lease(redis, holder_id="a", ttl=30).acquire()
    await heartbeat(redis, "b").beat()
    snapshot = await cluster_status(redis, load_settings(node_id="x"))
    assert [c["state"] for c in snapshot["controllers"]] == ["standby"]


async def test_status_table_has_a_header_marks_the_leader_and_splits_role_state_liveness(
        redis: Any) -> None:
    await three_controllers(redis)
    text = render_status(await cluster_status(redis, load_settings(node_id="x")))
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if "NODE" in line)
    assert lines[header].split() == ["NODE", "HOST", "ROLE", "STATE", "LIVENESS", "HEARTBEAT",
                                     "LEASE"]
    rows = {line.split()[1] if line.lstrip().startswith("*") else line.split()[0]: line
            for line in lines[header + 1:header + 4]}
    assert rows["a"].lstrip().startswith("*")  # the leader is marked
    assert not rows["b"].lstrip().startswith("*")
    assert rows["a"].split()[1:6] == ["a", "a.host", "primary", "leader", "alive"]
    assert rows["b"].split()[:4] == ["b", "b.host", "standby", "degraded"]
    assert rows["c"].split()[3:5] == ["stopping", "left"]
    assert "not alive" not in text
    assert "leader: a on a.host" in text


async def test_a_foreign_lease_key_is_named_with_its_type_and_the_rest_is_still_shown(
        redis: Any) -> None:
    await heartbeat(redis, "b").beat()
    await redis.set(keys.automation_mode_key(NS), "paused")
    lease_key = keys.lease_key(NS, "global")
    await redis.rpush(lease_key, "not", "a", "hash")
    snapshot = await cluster_status(redis, load_settings(node_id="x"))
    assert [c["node_id"] for c in snapshot["controllers"]] == ["b"]
    assert snapshot["automation_mode"] == "paused"
    assert snapshot["lease"] is None
    error = snapshot["error"]
    assert error["key"] == lease_key and error["type"] == "list"
    assert "DEL" in error["remedy"] and lease_key in error["remedy"]
    text = render_status(snapshot)
    assert lease_key in text and "list" in text and "DEL" in text
    assert "b.host" in text and "automation mode: paused" in text


async def test_a_lease_hash_with_garbage_fields_is_reported_as_corrupt(redis: Any) -> None:
    await heartbeat(redis, "b").beat()
    lease_key = keys.lease_key(NS, "global")
    await redis.hset(lease_key, mapping={"holder_id": "a", "instance_id": "a-1", "term": "banana",
                                              "lease_expires_at": "1"})
    snapshot = await cluster_status(redis, load_settings(node_id="x"))
    assert snapshot["error"]["key"] == lease_key and snapshot["error"]["type"] == "hash"
    assert "term" in snapshot["error"]["detail"]
    assert [c["node_id"] for c in snapshot["controllers"]] == ["b"]
    # with the lease unreadable, nobody is shown as leader or as standby
    assert [c["state"] for c in snapshot["controllers"]] == ["unknown"]


def test_status_with_a_foreign_lease_key_exits_3_and_still_prints_the_rest(
        redis_server: Any, tmp_path: Any) -> None:
    import json
    import subprocess

    from tests.processes import coordinator

    lease_key = keys.lease_key(NS, "global")
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "FLUSHALL"], check=True,
                   capture_output=True)
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "SET", lease_key, "foreign"],
                   check=True, capture_output=True)
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "SET",
                    keys.automation_mode_key(NS), "draining"], check=True, capture_output=True)
    human = coordinator("status", redis_url=redis_server.url)
    assert human.returncode == 3, human.stderr
    assert "automation mode: draining" in human.stdout
    assert lease_key in human.stdout + human.stderr and "string" in human.stdout
    done = coordinator("status", "--json", redis_url=redis_server.url)
    assert done.returncode == 3, done.stderr
    snapshot = json.loads(done.stdout)
    assert snapshot["automation_mode"] == "draining" and snapshot["controllers"] == []
    assert snapshot["error"]["key"] == lease_key and snapshot["error"]["type"] == "string"
