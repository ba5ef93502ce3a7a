"""A handover goes only to a node that competes for this lease: `coordinator handoff --to`
a live node of another lease in the same namespace is refused with exit 2, and the lease is
never reserved for it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.protocol.membership import Heartbeat, list_controllers
from tests.processes import coordinator, coordinator_env, daemons
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e


def _status(server: RedisServer) -> dict[str, object]:
    done = coordinator("status", "--json", redis_url=server.url)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_a_handoff_to_a_node_of_another_lease_is_refused(redis_server: RedisServer, tmp_path: Path) -> None:
    with daemons(redis_server.url, ["a"], tmp_path):
        other_log = (tmp_path / "c.log").open("wb")
        other = subprocess.Popen(  # a live node of the same namespace, for another lease
            [sys.executable, "-m", "coordinator", "run"],
            env=coordinator_env(redis_server.url, COORDINATOR_NODE_ID="c",
                                COORDINATOR_LEASE_NAME="reports"),
            stdout=other_log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status = _status(redis_server)
                lease = status["lease"]
                nodes = {c["node_id"]: c for c in status["controllers"]}  # type: ignore[union-attr,index]
                if lease and "c" in nodes and nodes["c"]["alive"]:
                    break
                time.sleep(0.2)
            assert nodes["c"]["lease"] == "reports" and nodes["a"]["lease"] == "global"
            term = lease["term"]  # type: ignore[index]
            done = coordinator("handoff", "--to", "c", redis_url=redis_server.url, timeout=20)
            assert done.returncode == 2, done.stdout + done.stderr
            assert "reports" in done.stderr and "global" in done.stderr
            time.sleep(1.0)  # a wrongly reserved lease would have changed hands by now
            after = _status(redis_server)["lease"]
            assert after["holder_id"] == "a" and after["term"] == term  # type: ignore[index]
        finally:
            other.terminate()
            other.wait(10)
            other_log.close()


async def test_controller_records_say_which_lease_they_compete_for(redis: object) -> None:
    beat = Heartbeat(redis, namespace="scope", node_id="n", host="h", role="standby", priority=50,
                     version="1", instance_id="i", interval=1, retention=60, lease="reports")
    await beat.beat()
    (found,) = await list_controllers(redis, "scope", retention_ms=60_000)
    assert found.lease == "reports"


async def test_a_release_to_a_node_of_another_lease_reserves_nothing(redis: object) -> None:
    from coordinator.protocol.lease import Lease

    await Heartbeat(redis, namespace="scope", node_id="c", host="h", role="standby", priority=50,
                    version="1", instance_id="i", interval=1, retention=60, lease="reports").beat()
    lease = Lease(redis, holder_id="a", ttl=30, namespace="scope")
    await lease.acquire()
    released = await lease.release(handoff_to="c")
    assert released.released and released.reserved_for is None
    assert released.handoff_refused == "competes for lease reports, not global"
    assert (await Lease(redis, holder_id="b", ttl=30, namespace="scope").acquire()).is_leader
